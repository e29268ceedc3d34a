"""Tasks for rounds run on an arm rather than in a vector env: ``ArmTask`` (the ``Task``
contract for any arm and arm-side task) and ``ReachTask``, a free-space target-reaching task
for arms without a fruit (the UR and Franka fakes are kinematic), so a dry run has a ground
truth a scripted teacher can judge.

An arm-side task is what ``robopref.recording.Recorder`` drives: ``reset(arm, rng)`` at each
episode start, ``update(arm)`` after every command, ``environment_state() -> (k,)``,
``metrics() -> dict`` (with ``success``), and ``step_metrics() -> dict`` (the last control
step's metrics and its true ``reward``). ``robopref.envs.peel.PeelTask`` is one (sim arm only).
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from robopref.envs.task import Task
from robopref.errors import ConfigError
from robopref.geometry import compose_delta

# Scene seeds of each split, as Peel-v0 draws them (train from 0, validation from 1,000,000,
# test from 2,000,000), so a recording session's seeds stay in train.
ARM_SPLIT_STARTS = {"train": 0, "validation": 1_000_000, "test": 2_000_000}
ARM_SPLIT_SIZE = 1_000_000


class ArmTask(Task):
    """An arm plus an arm-side task behind the ``Task`` contract. Observations are the arm's
    state (joint positions and velocities, TCP pose, wrench: ``2 n_joints + 12``) then the
    task's environment state; actions are TCP deltas in m and rad per tick, bounded by the
    safety layer's step limits. It has no simulated env: refiners that collect their own
    episodes (PPO) cannot use it."""

    action_units = "m, rad per tick"
    act_dim = 6

    def __init__(self, name: str, n_joints: int, env_state_dim: int, episode_steps: int,
                 fps: int, max_step_m: float, max_step_rad: float, reward_scale: float,
                 step_metric_names: tuple[str, ...] = (),
                 quality_metric_names: tuple[str, ...] = ()):
        if episode_steps < 1 or fps < 1 or not reward_scale > 0:
            raise ConfigError("an arm task needs episode_steps >= 1, fps >= 1, reward_scale > 0")
        self.name, self.episode_steps, self.fps = name, int(episode_steps), int(fps)
        self.state_dim = 2 * int(n_joints) + 12
        self.obs_dim = self.state_dim + int(env_state_dim)
        high = np.array([max_step_m] * 3 + [max_step_rad] * 3, dtype=np.float32)
        self.action_low, self.action_high = -high, high
        self.reward_scale = float(reward_scale)
        self.step_metric_names = tuple(step_metric_names)
        self.quality_metric_names = tuple(quality_metric_names)

    def variations(self, split: str) -> range:
        self.check_split(split)
        start = ARM_SPLIT_STARTS[split]
        return range(start, start + ARM_SPLIT_SIZE)

    def make_env(self, seed: int = 0) -> gym.Env:
        raise ConfigError(
            f"task '{self.name}' runs on an arm only, with no simulated env: use a refiner that "
            "learns from the recorded rollouts (refine=rwr or awr with refine.residual=true)"
        )

    def make_expert(self, options: dict, num_envs: int, seed: int = 0):
        raise ConfigError(
            f"task '{self.name}' has no scripted expert: refine a trained policy (base=DIR)"
        )


@dataclass
class ReachConfig:
    """Attributes:
    target_range_m: targets are drawn uniformly in a cube of this half-width (m) around the
        home position.
    success_radius_m: the episode succeeds once the TCP comes this close to the target (m).
    home_steps: at most this many commands (each within the safety layer's step limit) bring
        the TCP back to its home pose at every reset; home is where the first episode began.
    reward_scale: per-step true reward of good reaching: 1 mm of progress toward the target
        per tick (m).
    """

    target_range_m: float = 0.04
    success_radius_m: float = 0.01
    home_steps: int = 100
    reward_scale: float = 0.001

    def __post_init__(self) -> None:
        for name in ("target_range_m", "success_radius_m", "reward_scale"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"reach {name} must be > 0 (m), got {getattr(self, name)}")
        if self.home_steps < 0:
            raise ConfigError(f"reach home_steps must be >= 0, got {self.home_steps}")


class ReachTask:
    """Move the TCP to a target point in free space (see the module docstring); no contact,
    so it runs on any arm, including kinematic fakes. Environment state ``(3,)``: the target
    minus the TCP position (m, base frame). Per-step reward: progress toward the target (m)."""

    def __init__(self, config: ReachConfig | None = None):
        self.config = config or ReachConfig()
        self.home: np.ndarray | None = None
        self.target = np.zeros(3)
        self.tcp = np.zeros(3)
        self._distance = self._previous = self._closest = 0.0

    def reset(self, arm, rng: np.random.Generator) -> None:
        pose = np.asarray(arm.get_observation().tcp_pose, dtype=np.float64)
        if self.home is None:
            self.home = pose.copy()
        for _ in range(self.config.home_steps):  # back home, within the arm's step limits
            if np.linalg.norm(pose[:3] - self.home[:3]) < 1e-4:
                break
            step = np.clip(self.home[:3] - pose[:3], -0.005, 0.005)
            pose = np.asarray(arm.send_action(compose_delta(pose, np.r_[step, 0, 0, 0])))
        r = self.config.target_range_m
        self.target = self.home[:3] + rng.uniform(-r, r, 3)
        self.tcp = np.asarray(arm.get_observation().tcp_pose, dtype=np.float64)[:3]
        self._distance = self._previous = self._closest = self._gap()

    def _gap(self) -> float:
        return float(np.linalg.norm(self.target - self.tcp))

    def update(self, arm) -> None:
        self.tcp = np.asarray(arm.get_observation().tcp_pose, dtype=np.float64)[:3]
        self._previous, self._distance = self._distance, self._gap()
        self._closest = min(self._closest, self._distance)

    def environment_state(self) -> np.ndarray:
        return (self.target - self.tcp).astype(np.float32)

    def step_metrics(self) -> dict[str, float]:
        return {"distance_m": self._distance, "reward": self._previous - self._distance}

    def metrics(self) -> dict:
        return {
            "distance_m": self._distance,
            "closest_m": self._closest,
            "success": bool(self._closest <= self.config.success_radius_m),
        }
