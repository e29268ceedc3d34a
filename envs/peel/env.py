"""``PeelEnv``: Peel-v0 as a gymnasium env (``robopref/Peel-v0``), and its factory.

Each action is composed onto the previous TCP target with ``robopref.geometry.compose_delta``
(translation added, rotation applied in the base frame): the recorder's convention, so
recorded actions replay in the env.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from robopref.envs.peel.config import GYM_ID, OBS_DIM, PeelConfig
from robopref.envs.peel.task import STEP_METRIC_NAMES, PeelTask
from robopref.errors import ConfigError, NonFiniteError
from robopref.geometry import compose_delta
from robopref.hardware.sim import SimArmConfig, SimForceArm

__all__ = ["PeelEnv", "make_peel_env", "register_gym_envs"]


class PeelEnv(gym.Env):
    """Peel-v0 as a gymnasium env.

    Observation ``(35,)`` float32::

        [0:6]   joint positions (rad)        [6:12]  joint velocities (rad/s)
        [12:18] TCP pose x, y, z, rx, ry, rz (m, rad; base frame)
        [18:24] wrist wrench fx..tz (N, N*m; tool frame, load on the sensor)
        [24:35] environment state: fruit centre x, y, z (m), radius (m), removed fraction,
                removed fraction of each of the N_LANES = 3 lanes (thirds of the arc),
                blade tip axial offset (m), angle around the axis (rad), depth below the
                skin (m)

    The first 24 entries are what the recorder writes as ``observation.state`` (+ wrench) and
    the last 11 as ``observation.environment_state``.

    Action ``(6,)``: TCP delta ``[dx, dy, dz, drx, dry, drz]`` (m, rad, base frame) per control
    tick, clipped per component to ``max_translation_step_m`` / ``max_rotation_step_rad`` and
    composed onto the previous target (the measured pose after reset), as the recorder does.

    Reward: gain in removed fraction minus twice the gain in gouged fraction, minus 0.01 per
    tick over the force limit. Episodes are truncated after ``episode_steps``; with a safety
    layer, a protective stop terminates. ``info`` holds ``PeelTask.metrics()`` (the episode so
    far), the step's own ``STEP_METRIC_NAMES`` (``PeelTask.step_metrics``; zeros on reset),
    ``true_reward`` and ``protective_stop`` on every reset and step.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        config: PeelConfig | None = None,
        seed: int = 0,
        safety=None,
        render_mode: str | None = None,
        camera: str = "front",
    ):
        """``safety``: an optional ``robopref.hardware.safety.SafetyConfig``; the sim arm is
        then wrapped in ``SafeArm`` so the env exercises the same limits as the robot."""
        self.config = config if config is not None else PeelConfig()
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(f"peel render_mode={render_mode!r}: use 'rgb_array' or None")
        self.render_mode = render_mode
        self.camera = camera
        self.metadata = {**self.metadata, "render_fps": self.config.control_hz}
        self.sim = SimForceArm(SimArmConfig(control_hz=self.config.control_hz))
        self.arm = self.sim
        if safety is not None:
            from robopref.hardware.safety import SafeArm

            self.arm = SafeArm(self.sim, safety)
        self.task = PeelTask(self.config)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
        c = self.config
        high = np.array([c.max_translation_step_m] * 3 + [c.max_rotation_step_rad] * 3)
        self.action_space = gym.spaces.Box(
            -high.astype(np.float32), high.astype(np.float32), dtype=np.float32
        )
        self._high = high
        self._steps = 0
        self._target = np.zeros(6)
        self._last = {**self.task.metrics(), **dict.fromkeys(STEP_METRIC_NAMES, 0.0)}
        self._default_seed = seed
        self._seeded = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is None and not self._seeded:
            seed = self._default_seed
        super().reset(seed=seed)
        self._seeded = True
        if not self.arm.is_connected:
            self.arm.connect()
        self.task.reset(self.sim, self.np_random)
        # The reset teleports the arm: recover() clears any stop of the last episode and makes
        # a safety layer count its step limits from the new pose, not the old episode's end.
        self.arm.recover()
        self._target = np.asarray(self.arm.get_observation().tcp_pose, dtype=np.float64).copy()
        self._steps = 0
        self._last = {**self.task.metrics(), **dict.fromkeys(STEP_METRIC_NAMES, 0.0)}
        return self._observation(), self._info(0.0, False)

    def step(self, action):
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (6,):
            raise ValueError(f"peel action has shape {action.shape}; expected (6,)")
        if not np.all(np.isfinite(action)):
            raise NonFiniteError(f"action {action} has NaN/inf: check the policy producing it")
        delta = np.clip(action, -self._high, self._high)
        stopped = False
        try:
            self._target = np.asarray(
                self.arm.send_action(compose_delta(self._target, delta)), dtype=np.float64
            )
        except _protective_stop():
            stopped = True
        self.task.update(self.arm)
        self._steps += 1
        step = self.task.step_metrics()
        reward = step.pop("reward")
        self._last = {**self.task.metrics(), **step}
        obs = self._observation()
        truncated = self._steps >= self.config.episode_steps
        return obs, float(reward), stopped, truncated, self._info(float(reward), stopped)

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        return self.sim.render(self.camera)

    def close(self) -> None:
        self.arm.disconnect()

    def _observation(self) -> np.ndarray:
        state = self.sim.get_observation().state_vector()
        obs = np.concatenate([state, self.task.environment_state()]).astype(np.float32)
        if not np.all(np.isfinite(obs)):
            raise NonFiniteError("Peel-v0 observation has NaN/inf: the simulation diverged")
        return obs

    def _info(self, reward: float, stopped: bool) -> dict:
        return {**self._last, "true_reward": reward, "protective_stop": stopped}


def _protective_stop():
    from robopref.hardware.base import ProtectiveStop

    return ProtectiveStop


def make_peel_env(config: PeelConfig, seed: int = 0) -> PeelEnv:
    return PeelEnv(config, seed=seed)


def register_gym_envs() -> None:
    """Registers ``robopref/Peel-v0`` with gymnasium (idempotent); ``gym.make`` kwargs go to
    ``PeelEnv`` (``config``, ``seed``, ``safety``, ``render_mode``)."""
    if GYM_ID not in gym.registry:
        gym.register(id=GYM_ID, entry_point="robopref.envs.peel:PeelEnv")
