"""Peel-v0 behind the ``Task`` contract: the simulated force arm, through the safety layer the
recorder uses, with scenes drawn by seed from disjoint split ranges."""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from robopref.envs.peel import PeelConfig, PeelEnv, PeelExpert, PeelExpertConfig
from robopref.envs.peel.config import OBS_DIM, STATE_DIM
from robopref.envs.peel.task import STEP_METRIC_NAMES
from robopref.envs.task import Task
from robopref.errors import ConfigError
from robopref.registry import build_config

# Scene seeds of each split. The recorder draws episode i of a session from ``record.seed + i``
# (default 0), so recorded and scripted demos live in the train range; test scenes start far
# above anything a recording session reaches.
PEEL_SPLIT_STARTS = {"train": 0, "validation": 1_000_000, "test": 2_000_000}
PEEL_SPLIT_SIZE = 1_000_000


@dataclass
class PeelTaskConfig:
    """Peel-v0 in the preference loop.

    Attributes:
        task: the task name (only ``"peel-v0"``).
        peel: ``PeelConfig`` options (episode length, control rate, step limits, scene).
        safety: ``robopref.hardware.safety.SafetyConfig`` options; the arm runs behind
            ``SafeArm`` as it does when recording.
        expert: ``PeelExpertConfig`` options of the scripted expert (m, rad).
        reward_scale: per-step true reward of good cutting (removed fraction per tick).
    """

    task: str = "peel-v0"
    peel: dict = field(default_factory=dict)
    safety: dict = field(default_factory=dict)
    expert: dict = field(default_factory=lambda: {"action_noise": 0.001})
    reward_scale: float = 0.005

    def __post_init__(self) -> None:
        if self.task != "peel-v0":
            raise ConfigError(f"env=peel runs task peel-v0, not '{self.task}'")
        if not self.reward_scale > 0:
            raise ConfigError(f"env.reward_scale must be > 0, got {self.reward_scale}")


class VariationEnv(gym.Wrapper):
    """Starts Peel-v0 from a scene seed: ``reset(options={"variation": seed})`` or
    ``next_variation`` (set per worker by a vector env)."""

    def __init__(self, env: PeelEnv):
        super().__init__(env)
        self.next_variation: int | None = None
        self.variation: int | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        variation = (options or {}).get("variation", self.next_variation)
        self.next_variation = None
        if variation is not None:
            seed = int(variation)
        obs, info = self.env.reset(seed=seed)
        self.variation = seed
        info["variation"] = seed
        return obs, info


class PeelV0Task(Task):
    """Peel-v0 on the simulated force arm. Variations are scene seeds; actions are TCP deltas
    in m and rad per control tick, bounded by the task's step limits."""

    name = "peel-v0"
    action_units = "m, rad per tick"
    state_dim = STATE_DIM
    obs_dim = OBS_DIM
    act_dim = 6
    step_metric_names = STEP_METRIC_NAMES
    quality_metric_names = (
        "removed_fraction",
        "gouged_fraction",
        "peak_contact_force_n",
        "mean_contact_force_n",
    )
    # A whole episode's true return is its removed fraction minus the gouging and force
    # penalties: scored over [0, 1] removed, i.e. (0, 1 / reward_scale) reward_scale units.
    score_basis = "episode"

    def __init__(self, config: PeelTaskConfig):
        from robopref.hardware.safety import SafetyConfig

        self.config = config
        self.peel_config = build_config(PeelConfig, dict(config.peel), "env.peel")
        self.safety_config = build_config(SafetyConfig, dict(config.safety), "env.safety")
        self.expert_config = build_config(PeelExpertConfig, dict(config.expert), "env.expert")
        c = self.peel_config
        self.episode_steps = c.episode_steps
        self.fps = int(round(c.control_hz))
        high = np.array([c.max_translation_step_m] * 3 + [c.max_rotation_step_rad] * 3)
        self.action_low, self.action_high = -high.astype(np.float32), high.astype(np.float32)
        self.reward_scale = config.reward_scale
        self.score_range = (0.0, 1.0 / config.reward_scale)

    def variations(self, split: str) -> range:
        self.check_split(split)
        start = PEEL_SPLIT_STARTS[split]
        return range(start, start + PEEL_SPLIT_SIZE)

    def make_env(self, seed: int = 0) -> VariationEnv:
        return VariationEnv(PeelEnv(self.peel_config, seed=seed, safety=self.safety_config))

    def episode_meta(self) -> dict:
        # Peel-v0 rollouts store no frames: the labelling page replays them from these.
        from robopref.envs.peel.replay import replay_spec

        # A peel succeeds by its end state: a gouge or force peak after the removed fraction
        # crossed the bar undoes it (Episode.success reads this).
        return {"replay": replay_spec(self.peel_config, self.safety_config),
                "success_at_end": True}

    def make_expert(self, options: dict | None, num_envs: int, seed: int = 0) -> PeelExpert:
        config = self.expert_config
        if options:
            config = build_config(PeelExpertConfig, {**vars(config), **options}, "env.expert")
        return PeelExpert(config, self.peel_config, seed=seed)
