"""Peel-v0: the simulated stand-in for knife peeling, on the MuJoCo force-sensing arm.

The "fruit" is a horizontal capsule along the world x axis (``force_arm.xml``). A thin skin
layer covers the top of its cylindrical part: ``|x - cx| <= layer_half_length_m`` along the
axis and ``|theta| <= layer_half_angle_rad`` around it (theta = 0 at the top, positive toward
+y). The layer is a grid of patches kept in NumPy (``n_segments * patches_per_segment`` rows
along x by ``n_arc`` columns around the arc), not MuJoCo bodies.

Every physics tick (500 Hz) the blade tip's depth below the *original* skin surface is
computed analytically from the tip sphere's centre: ``depth = radius - (rho - tip_radius)``
with ``rho`` the distance of the centre from the axis segment (this is MuJoCo's penetration of
the tip into the soft fruit contact, about 5 kN/m). Then:

- ``min_depth_m <= depth <= max_depth_m`` (the peel band, default 0.5-2.5 mm around a 1.5 mm
  target): patches under the blade (a square footprint of half-width ``blade_half_width_m``
  along x and along the arc) are removed;
- ``depth > max_depth_m``: the patches under the blade are gouged (an error);
- a tool contact force above ``force_limit_n`` counts against success.

``success`` = removed fraction >= ``success_removed_fraction`` and gouged fraction <=
``success_max_gouged_fraction`` and peak contact force <= ``force_limit_n``.

The arc is also split into ``N_LANES`` (3) equal lanes, one blade stroke wide each; their
removed fractions are part of the observation, so what is left to peel is visible to a policy
(a scripted schedule would otherwise be hidden state that behaviour cloning cannot follow).
So is the blade tip's position in the fruit's own coordinates (axial offset, angle around the
axis, depth below the skin): the quantities a peeler acts on, which a policy would otherwise
have to compute from the TCP pose and the fruit's pose to sub-millimetre precision.

``PeelTask`` does this bookkeeping for any ``SimForceArm`` (the recorder uses it directly);
``PeelEnv`` is the gymnasium env around it; ``PeelExpert`` is a scripted demonstrator with
quality knobs. Control runs at ``control_hz`` (20 Hz), physics at 500 Hz.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from robopref.errors import ConfigError, NonFiniteError
from robopref.hardware.sim import (
    SimArmConfig,
    SimForceArm,
    matrix_from_rotvec,
    rotvec_from_matrix,
    unwrap_rotvec,
)

__all__ = [
    "ENV_STATE_DIM",
    "GYM_ID",
    "N_LANES",
    "OBS_DIM",
    "PeelConfig",
    "PeelEnv",
    "PeelExpert",
    "PeelExpertConfig",
    "PeelTask",
    "make_peel_env",
    "register_gym_envs",
]

GYM_ID = "robopref/Peel-v0"
# Lanes: the layer's arc split into this many equal sectors, each peeled by one stroke. Their
# removed fractions are observed, so which lane comes next is visible, not a hidden counter.
N_LANES = 3
# environment_state: [object x, y, z (m), object radius (m), removed fraction, N_LANES lane
# removed fractions, tip axial offset (m), tip angle (rad), tip depth below the skin (m)]
ENV_STATE_DIM = 5 + N_LANES + 3
# observation: joint pos (6) | joint vel (6) | tcp pose (6) | wrench (6) | environment state (11)
STATE_DIM = 24
OBS_DIM = STATE_DIM + ENV_STATE_DIM
# Tool pointing straight down, tool x along base x: the expert's and the home orientation.
TOOL_DOWN = np.diag([1.0, -1.0, -1.0])
TOOL_DOWN_ROTVEC = np.array([math.pi, 0.0, 0.0])
# Rendered colours (RGBA) of an unpeeled and a fully peeled fruit.
SKIN = np.array([0.35, 0.6, 0.2, 1.0])
FLESH = np.array([0.93, 0.88, 0.6, 1.0])


@dataclass
class PeelConfig:
    """Peel-v0 settings. Lengths m, angles rad, forces N.

    Attributes:
        episode_steps: episode length in control steps (400 at 20 Hz = 20 s simulated).
        control_hz: command rate (Hz); physics runs at the model's 500 Hz.
        max_translation_step_m: largest |dx|, |dy|, |dz| of one action (per component).
        max_rotation_step_rad: largest |drx|, |dry|, |drz| of one action (per component).
        target_depth_m: ideal cutting depth below the original skin (the layer is ~1.5 mm).
        min_depth_m: shallowest depth that removes skin.
        max_depth_m: deepest depth that still peels; deeper gouges the flesh.
        force_limit_n: tool contact force above which an episode cannot succeed.
        layer_half_length_m: the layer spans ``cx +- layer_half_length_m`` along the axis.
        layer_half_angle_rad: the layer spans ``+- layer_half_angle_rad`` around the top.
        n_segments: segments along the axis reported in ``depth_error_per_segment``.
        patches_per_segment: patch rows per segment.
        n_arc: patch columns around the arc (at least ``N_LANES``; a column belongs to the
            lane holding its centre).
        blade_half_width_m: half-width of the square footprint the blade removes.
        object_center_m: nominal centre of the fruit ``(3,)``.
        object_jitter_m: ``(3,)`` half-range of the uniform random offset of the centre.
        radius_range_m: ``(2,)`` range of the uniform random fruit radius.
        initial_joint_noise_rad: half-range of the uniform noise on the home joint angles.
        success_removed_fraction: removed fraction needed for success.
        success_max_gouged_fraction: gouged fraction allowed for success.
    """

    episode_steps: int = 400
    control_hz: float = 20.0
    max_translation_step_m: float = 0.01
    max_rotation_step_rad: float = 0.05
    target_depth_m: float = 0.0015
    min_depth_m: float = 0.0005
    max_depth_m: float = 0.0025
    force_limit_n: float = 30.0
    layer_half_length_m: float = 0.06
    layer_half_angle_rad: float = 0.35
    n_segments: int = 6
    patches_per_segment: int = 4
    n_arc: int = 8
    blade_half_width_m: float = 0.006
    object_center_m: Sequence[float] = (0.5, 0.0, 0.15)
    object_jitter_m: Sequence[float] = (0.02, 0.02, 0.01)
    radius_range_m: Sequence[float] = (0.035, 0.045)
    initial_joint_noise_rad: float = 0.02
    success_removed_fraction: float = 0.8
    success_max_gouged_fraction: float = 0.05

    def __post_init__(self) -> None:
        for name in ("episode_steps", "n_segments", "patches_per_segment", "n_arc"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"peel {name}={value!r} must be a positive integer")
        if self.n_arc < N_LANES:
            raise ConfigError(
                f"peel n_arc={self.n_arc} must be >= {N_LANES}: every lane needs a patch column"
            )
        positive = (
            "control_hz",
            "max_translation_step_m",
            "max_rotation_step_rad",
            "target_depth_m",
            "max_depth_m",
            "force_limit_n",
            "layer_half_length_m",
            "layer_half_angle_rad",
            "blade_half_width_m",
        )
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value < math.inf):
                raise ConfigError(f"peel {name}={value!r} must be a positive finite number")
        if not 0 <= self.min_depth_m <= self.target_depth_m <= self.max_depth_m:
            raise ConfigError(
                f"peel depths must satisfy 0 <= min_depth_m ({self.min_depth_m}) <= "
                f"target_depth_m ({self.target_depth_m}) <= max_depth_m ({self.max_depth_m})"
            )
        if self.layer_half_angle_rad >= math.pi / 2:
            raise ConfigError(
                f"peel layer_half_angle_rad={self.layer_half_angle_rad} must be < pi/2: the "
                "layer covers the top of the fruit, e.g. 0.35"
            )
        self.object_center_m = _vector("object_center_m", self.object_center_m, 3)
        self.object_jitter_m = _vector("object_jitter_m", self.object_jitter_m, 3)
        if min(self.object_jitter_m) < 0:
            raise ConfigError(f"peel object_jitter_m={self.object_jitter_m} must be >= 0")
        self.radius_range_m = _vector("radius_range_m", self.radius_range_m, 2)
        low, high = self.radius_range_m
        if not 0.02 <= low <= high <= 0.06:
            raise ConfigError(
                f"peel radius_range_m={self.radius_range_m} must be ordered and within "
                "[0.02, 0.06] m, e.g. (0.035, 0.045)"
            )
        if not 0 <= self.initial_joint_noise_rad <= 0.2:
            raise ConfigError(
                f"peel initial_joint_noise_rad={self.initial_joint_noise_rad} must lie in "
                "[0, 0.2] rad"
            )
        for name in ("success_removed_fraction", "success_max_gouged_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"peel {name}={getattr(self, name)} must lie in [0, 1]")


def _vector(name: str, value, n: int) -> tuple[float, ...]:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"peel {name}={value!r} must be {n} numbers") from exc
    if array.shape != (n,) or not np.all(np.isfinite(array)):
        raise ConfigError(f"peel {name}={value!r} must be {n} finite numbers")
    return tuple(float(v) for v in array)


def _sim_arm(arm) -> SimForceArm:
    """The ``SimForceArm`` inside ``arm`` (a ``SafeArm`` keeps the wrapped arm in ``.arm``)."""
    inner = arm
    for _ in range(8):
        if isinstance(inner, SimForceArm):
            return inner
        inner = getattr(inner, "arm", None)
    raise ConfigError(
        f"the peel task needs a SimForceArm (or a SafeArm around one), got {type(arm).__name__}"
    )


class PeelTask:
    """Peel-layer bookkeeping for a ``SimForceArm`` (see the module docstring).

    Call ``reset(arm, rng)`` at the start of an episode and ``update(arm)`` after every
    ``send_action`` (it consumes the arm's per-tick trace, so no physics tick is missed even
    if calls are skipped). ``arm`` may be a ``SafeArm`` wrapping the sim arm.
    """

    def __init__(self, config: PeelConfig | None = None):
        self.config = config if config is not None else PeelConfig()
        c = self.config
        self.n_rows = c.n_segments * c.patches_per_segment
        self._row_centres = -c.layer_half_length_m + (np.arange(self.n_rows) + 0.5) * (
            2 * c.layer_half_length_m / self.n_rows
        )
        self._col_angles = -c.layer_half_angle_rad + (np.arange(c.n_arc) + 0.5) * (
            2 * c.layer_half_angle_rad / c.n_arc
        )
        self._lane = np.minimum((np.arange(c.n_arc) + 0.5) / c.n_arc * N_LANES, N_LANES - 1).astype(
            int
        )
        self.center = np.array(c.object_center_m)
        self.radius = float(np.mean(c.radius_range_m))
        self.half_length = 0.08
        self.tip_radius = 0.004
        self.tip = self.center + np.array([0.0, 0.0, 0.1])  # blade tip centre (m, base frame)
        self._clear()

    def _clear(self) -> None:
        c = self.config
        self.removed = np.zeros((self.n_rows, c.n_arc), dtype=bool)
        self.gouged = np.zeros((self.n_rows, c.n_arc), dtype=bool)
        self._segment_error_sum = np.zeros(c.n_segments)
        self._segment_count = np.zeros(c.n_segments)
        self._peak_force = 0.0
        self._force_sum = 0.0
        self._contact_ticks = 0
        self._over_force_ticks = 0

    # ----------------------------------------------------------------- episode
    def reset(self, arm, rng: np.random.Generator) -> None:
        """Draws the fruit's centre (``object_center_m +- object_jitter_m``) and radius
        (``radius_range_m``), writes them into the model, and puts the arm at rest at its
        home joint angles plus uniform noise of ``initial_joint_noise_rad``."""
        sim = _sim_arm(arm)
        c = self.config
        m = sim.model
        self.center = np.array(c.object_center_m) + rng.uniform(-1, 1, 3) * np.array(
            c.object_jitter_m
        )
        self.radius = float(rng.uniform(*c.radius_range_m))
        body, geom = m.body("fruit").id, m.geom("fruit").id
        self.half_length = float(m.geom_size[geom][1])
        self.tip_radius = float(m.geom_size[m.geom("blade_tip").id][0])
        m.body_pos[body] = self.center
        m.geom_size[geom][0] = self.radius
        # Collision culling reads these bounds; keep them in step with the new radius.
        m.geom_rbound[geom] = self.radius + self.half_length
        m.geom_aabb[geom][3:] = [self.radius, self.radius, self.radius + self.half_length]
        try:
            holder = m.geom("holder").id
            m.geom_pos[holder][2] = -(self.radius + m.geom_size[holder][2])
        except KeyError:
            pass
        noise = rng.uniform(-1, 1, 6) * c.initial_joint_noise_rad
        m.geom_rgba[geom] = SKIN
        sim.reset(np.array(sim.config.initial_joint_positions) + noise)
        sim.pop_trace()
        self.tip = np.array(sim.data.site_xpos[m.site("tcp").id], dtype=np.float64)
        self._clear()

    def update(self, arm) -> None:
        """Processes every physics tick run since the last call."""
        sim = _sim_arm(arm)
        trace = sim.pop_trace()
        self.process_trace(trace["tcp_position"], trace["contact_force"])
        # Cameras see progress too: the skin's green fades toward flesh as it comes off.
        removed = float(self.removed.mean())
        sim.model.geom_rgba[sim.model.geom("fruit").id] = (1 - removed) * SKIN + removed * FLESH

    def process_trace(self, tip: np.ndarray, force: np.ndarray) -> None:
        """Books physics ticks: ``tip (N, 3)`` blade tip centres (m, base frame) and
        ``force (N,)`` tool contact normal forces (N), as ``SimForceArm.pop_trace`` gives."""
        tip = np.asarray(tip, dtype=np.float64).reshape(-1, 3)
        force = np.asarray(force, dtype=np.float64).reshape(-1)
        if len(tip) == 0:
            return
        self.tip = tip[-1].copy()
        c = self.config
        rel = tip - self.center
        axial = np.clip(rel[:, 0], -self.half_length, self.half_length)
        rho = np.sqrt((rel[:, 0] - axial) ** 2 + rel[:, 1] ** 2 + rel[:, 2] ** 2)
        depth = self.radius - (rho - self.tip_radius)
        touching = depth > 0
        self._peak_force = max(self._peak_force, float(force.max()))
        self._over_force_ticks += int(np.count_nonzero(force > c.force_limit_n))
        if not touching.any():
            return
        self._contact_ticks += int(np.count_nonzero(touching))
        self._force_sum += float(force[touching].sum())
        x = rel[touching, 0]
        d = depth[touching]
        theta = np.arctan2(rel[touching, 1], rel[touching, 2])
        segment = np.floor(
            (x + c.layer_half_length_m) / (2 * c.layer_half_length_m) * c.n_segments
        ).astype(int)
        inside = (segment >= 0) & (segment < c.n_segments)
        np.add.at(self._segment_error_sum, segment[inside], np.abs(d[inside] - c.target_depth_m))
        np.add.at(self._segment_count, segment[inside], 1)
        w = c.blade_half_width_m
        cutting = d >= c.min_depth_m
        if not cutting.any():
            return
        # (ticks, rows, cols): which patches lie under the blade's footprint at each tick.
        rows = np.abs(self._row_centres[None, :] - x[cutting, None]) <= w
        cols = np.abs(self._col_angles[None, :] - theta[cutting, None]) * self.radius <= w
        under = rows[:, :, None] & cols[:, None, :]
        deep = d[cutting] > c.max_depth_m
        # Gouging takes the skin off too, badly: removed and gouged.
        self.removed |= under.any(axis=0)
        if deep.any():
            self.gouged |= under[deep].any(axis=0)

    # ----------------------------------------------------------------- readouts
    def lane_removed_fractions(self) -> np.ndarray:
        """``(N_LANES,)``: removed fraction of each lane, the arc's equal sectors from -theta
        to +theta (a patch column belongs to the sector holding its centre angle)."""
        return np.array([self.removed[:, self._lane == k].mean() for k in range(N_LANES)])

    def tip_in_fruit_frame(self) -> np.ndarray:
        """``(3,)``: the blade tip's axial offset from the fruit's centre (m, along +x), its
        angle around the axis (rad, 0 at the top, positive toward +y) and its depth below the
        original skin (m, negative above it), from the last physics tick booked."""
        rel = self.tip - self.center
        rho = math.hypot(rel[1], rel[2])
        depth = self.radius - (rho - self.tip_radius)
        return np.array([rel[0], math.atan2(rel[1], rel[2]), depth])

    def environment_state(self) -> np.ndarray:
        """``(11,)`` float32: fruit centre x, y, z (m), radius (m), removed fraction, the
        removed fraction of each of the ``N_LANES`` lanes (see ``lane_removed_fractions``),
        then the blade tip's axial offset (m), angle (rad) and depth below the skin (m) (see
        ``tip_in_fruit_frame``)."""
        return np.array(
            [
                *self.center,
                self.radius,
                self.removed.mean(),
                *self.lane_removed_fractions(),
                *self.tip_in_fruit_frame(),
            ],
            dtype=np.float32,
        )

    def metrics(self) -> dict:
        """Episode metrics so far.

        ``removed_fraction``, ``gouged_fraction`` in [0, 1]; ``depth_error_per_segment``: one
        float per segment along the axis, the mean |depth - target_depth_m| (m) over ticks the
        blade touched the fruit there, or ``target_depth_m`` for a segment never touched (as if
        cut at zero depth); ``peak_contact_force_n`` over all ticks and ``mean_contact_force_n``
        over ticks touching the fruit (N); ``over_force_ticks``; ``success`` (bool).
        """
        c = self.config
        errors = np.where(
            self._segment_count > 0,
            self._segment_error_sum / np.maximum(self._segment_count, 1),
            c.target_depth_m,
        )
        removed = float(self.removed.mean())
        gouged = float(self.gouged.mean())
        peak = float(self._peak_force)
        return {
            "removed_fraction": removed,
            "gouged_fraction": gouged,
            "depth_error_per_segment": [float(e) for e in errors],
            "peak_contact_force_n": peak,
            "mean_contact_force_n": self._force_sum / max(self._contact_ticks, 1),
            "over_force_ticks": int(self._over_force_ticks),
            "success": bool(
                removed >= c.success_removed_fraction
                and gouged <= c.success_max_gouged_fraction
                and peak <= c.force_limit_n
            ),
        }


def compose_target(previous: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """``previous (6,)`` TCP target moved by ``delta (6,)``: translation added, rotation
    ``delta[3:]`` applied in the base frame (``R = R_delta @ R_previous``); m, rad. The
    recorder's convention, so recorded actions replay in the env."""
    rotation = matrix_from_rotvec(delta[3:]) @ matrix_from_rotvec(previous[3:])
    rotvec = unwrap_rotvec(rotvec_from_matrix(rotation), previous[3:])
    return np.concatenate([previous[:3] + delta[:3], rotvec])


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
    layer, a protective stop terminates. ``info`` holds ``PeelTask.metrics()`` plus
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
        self._last = self.task.metrics()
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
        self._last = self.task.metrics()
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
                self.arm.send_action(compose_target(self._target, delta)), dtype=np.float64
            )
        except _protective_stop():
            stopped = True
        self.task.update(self.arm)
        self._steps += 1
        metrics = self.task.metrics()
        c = self.config
        reward = (
            (metrics["removed_fraction"] - self._last["removed_fraction"])
            - 2.0 * (metrics["gouged_fraction"] - self._last["gouged_fraction"])
            - 0.01 * (metrics["over_force_ticks"] - self._last["over_force_ticks"])
        )
        self._last = metrics
        obs = self._observation()
        truncated = self._steps >= c.episode_steps
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


# ===================================================================== scripted expert
@dataclass
class PeelExpertConfig:
    """Quality knobs of ``PeelExpert``.

    Attributes:
        action_noise: std of Gaussian noise added to every action component (m for
            translation, rad for rotation).
        depth_offset_m: bias on the depth the expert aims for (positive cuts deeper).
        pause_prob: per-step probability of starting a pause (zero actions).
        pause_steps: length of a pause in control steps.
        stroke_speed_m_s: speed of the target along the fruit during a stroke.
    """

    action_noise: float = 0.0
    depth_offset_m: float = 0.0
    pause_prob: float = 0.0
    pause_steps: int = 5
    stroke_speed_m_s: float = 0.08

    def __post_init__(self) -> None:
        if not (isinstance(self.action_noise, int | float) and 0 <= self.action_noise < 1):
            raise ConfigError(f"peel expert action_noise={self.action_noise!r} must be in [0, 1)")
        if not (isinstance(self.depth_offset_m, int | float) and abs(self.depth_offset_m) < 0.02):
            raise ConfigError(
                f"peel expert depth_offset_m={self.depth_offset_m!r} must be within +-0.02 m"
            )
        if not 0 <= self.pause_prob <= 1:
            raise ConfigError(f"peel expert pause_prob={self.pause_prob} must lie in [0, 1]")
        if isinstance(self.pause_steps, bool) or not isinstance(self.pause_steps, int):
            raise ConfigError(f"peel expert pause_steps={self.pause_steps!r} must be an integer")
        if self.pause_steps < 0:
            raise ConfigError(f"peel expert pause_steps={self.pause_steps} must be >= 0")
        if not 0 < self.stroke_speed_m_s <= 0.3:
            raise ConfigError(
                f"peel expert stroke_speed_m_s={self.stroke_speed_m_s} must be in (0, 0.3]"
            )


def _clip_norm(vector: np.ndarray, limit: float) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector * (limit / norm) if norm > limit else vector


class PeelExpert:
    """A scripted peeler whose every action is a function of the current Peel-v0 observation
    (``robopref.policies.Policy`` interface: ``begin_episodes(n)``, then
    ``act(obs (B, 35)) -> (B, 6)`` float32). The only state it keeps is the pause knob's
    countdown, so behaviour cloning can learn it: a cloned policy sees everything the expert
    decides from.

    From the TCP pose (the blade tip) and the fruit's centre and radius it computes the tip's
    axial position ``x``, angle ``theta`` around the axis (0 at the top) and depth below the
    skin. Every lane (``N_LANES`` sectors of the arc, their removed fractions observed) is cut
    in one stroke toward +x, from ``-stroke_end_x`` to ``+stroke_end_x``. Then, in order:

    - every lane peeled (removed fraction >= ``LANE_DONE``): rise ``RETREAT_CLEARANCE_M`` above
      the skin and hold;
    - in the cutting zone (less than ``CONTACT_M`` above the skin, along the layer) before the
      stroke's end: cut the lane nearest ``theta``. The depth follows a proportional law on the
      measured depth (the env integrates the deltas, so the commanded target settles where
      the depth is right); the blade advances at the stroke speed, slowed while the depth is
      off by more than ``SETTLE_M - 1 mm`` (a cut starts only once the depth has settled), and
      is steered to the lane's centre angle. A blade that lost contact mid-stroke by a few
      millimetres is pressed back here, not sent around again;
    - in the zone past the stroke's end: lift straight off;
    - in the air: approach the first unpeeled lane's start down a funnel, the clearance
      allowed above the skin growing with the distance from the start (``FUNNEL_*``), and
      rise straight up first when far below the funnel.

    One stroke direction and one continuous approach rule keep the expert free of the
    discontinuities a cloned policy blends into stalls: with alternating directions, a policy
    between two lanes averaged +x and -x into standing still.

    Free-space moves correct a fraction ``MOVE_GAIN`` of the pose error per step with a floor
    of ``MIN_STEP_M``: the arm's pose lags its commanded target, so correcting all of it would
    overshoot, and a slow approach is a weak attractor that a cloned policy's small errors can
    cancel.
    """

    TRAVEL_CLEARANCE_M = 0.012
    RETREAT_CLEARANCE_M = 0.03
    # Closer than this to the skin counts as the cutting zone (m): a blade that lost contact
    # mid-stroke by a few millimetres is pressed back by the depth law, not sent around again.
    CONTACT_M = 0.005
    ZONE_OVERRUN_M = 0.015  # the zone reaches this far past a stroke's end along x (m)
    MAX_DEPTH_STEP_M = 0.004  # the depth law moves the target at most this far in per step (m)
    SETTLE_M = 0.0015  # the blade stands still along x while the depth is off by this (m)
    DEPTH_GAIN = 1.0  # fraction of the measured depth error corrected per step
    ANGLE_GAIN = 0.5  # fraction of the lane-angle error corrected per step
    STROKE_MARGIN_M = 0.008  # strokes run this far beyond the layer along x (m)
    LANE_DONE = 0.95
    FUNNEL_MOUTH_M = 0.004  # within this distance of a stroke's start the blade goes down (m)
    FUNNEL_LENGTH_M = 0.012  # ... and the allowed clearance reaches travel height this far on
    FUNNEL_SLACK_M = 0.003  # lower than the funnel by this: rise straight up first (m)
    MOVE_GAIN = 0.5
    MIN_STEP_M = 0.002

    def __init__(
        self, config: PeelExpertConfig | None = None, task: PeelConfig | None = None, seed=0
    ):
        self.config = config if config is not None else PeelExpertConfig()
        self.task = task if task is not None else PeelConfig()
        self.rng = np.random.default_rng(seed)
        self._high = np.array(
            [self.task.max_translation_step_m] * 3 + [self.task.max_rotation_step_rad] * 3
        )
        t = self.task
        self.lane_angles = t.layer_half_angle_rad * (-1 + (2 * np.arange(N_LANES) + 1) / N_LANES)
        self.stroke_end_x = t.layer_half_length_m + self.STROKE_MARGIN_M
        self.tip_radius = 0.004
        self.mode = "travel"
        self.begin_episodes(1)

    def begin_episodes(self, n: int) -> None:
        self._n = n
        self._pause = np.zeros(n, dtype=int)

    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        if obs.ndim == 1:
            return self.act(obs[None])[0]
        if len(obs) != self._n:
            self.begin_episodes(len(obs))
        return np.stack([self._act_one(i, row) for i, row in enumerate(obs)]).astype(np.float32)

    def _act_one(self, i: int, obs: np.ndarray) -> np.ndarray:
        if self._pause[i] > 0:
            self._pause[i] -= 1
            return np.zeros(6)
        if self.config.pause_prob and self.rng.random() < self.config.pause_prob:
            self._pause[i] = self.config.pause_steps
        action = self.clean_action(obs)
        if self.config.action_noise:
            action = action + self.rng.normal(0.0, self.config.action_noise, 6)
        return np.clip(action, -self._high, self._high)

    def clean_action(self, obs: np.ndarray) -> np.ndarray:
        """The noise- and pause-free action ``(6,)`` for one observation ``(35,)``; sets
        ``self.mode`` to the rule that chose it (done, cut, lift, descend, travel)."""
        t = self.task
        obs = np.asarray(obs, dtype=np.float64)
        env = obs[STATE_DIM:]
        center, radius, lanes = env[:3], float(env[3]), env[5 : 5 + N_LANES]
        tcp = obs[12:18]
        rel = tcp[:3] - center
        x = float(rel[0])
        rho = math.hypot(rel[1], rel[2])
        theta = math.atan2(rel[1], rel[2])
        surface = radius + self.tip_radius  # tip-centre distance from the axis at zero depth
        depth = surface - rho
        error = t.target_depth_m + self.config.depth_offset_m - depth
        travel_rho = surface + self.TRAVEL_CLEARANCE_M
        end = self.stroke_end_x
        todo = np.flatnonzero(lanes < self.LANE_DONE)
        if len(todo) == 0:
            self.mode = "done"
            goal = (x, theta, surface + self.RETREAT_CLEARANCE_M)
        elif depth > -self.CONTACT_M and abs(x) < end + self.ZONE_OVERRUN_M:
            if x < end:
                self.mode = "cut"
                return self._cut(center, tcp, x, theta, rho, error)
            self.mode = "lift"
            goal = (x, theta, travel_rho)
        else:
            start, lane = -end, self.lane_angles[todo[0]]
            distance = math.hypot(start - x, (lane - theta) * rho)
            # The clearance allowed above the skin grows with the distance from the start, so
            # the way down is one continuous rule.
            clearance = self.TRAVEL_CLEARANCE_M * float(
                np.clip((distance - self.FUNNEL_MOUTH_M) / self.FUNNEL_LENGTH_M, 0.0, 1.0)
            )
            if -depth < clearance - self.FUNNEL_SLACK_M:
                self.mode = "lift"  # below the funnel: rise straight up to it
                goal = (x, theta, surface + clearance)
            else:
                self.mode = "descend" if clearance < self.TRAVEL_CLEARANCE_M else "travel"
                goal = (start, lane, max(surface + clearance, rho - self.MAX_DEPTH_STEP_M))
        offset = self._toward(center, goal) - tcp[:3]
        gain = 1.0 if self.mode == "lift" else self.MOVE_GAIN
        step = _clip_norm(gain * offset, t.max_translation_step_m)
        if np.linalg.norm(offset) > 2 * self.MIN_STEP_M > 2 * np.linalg.norm(step):
            step = _clip_norm(offset, self.MIN_STEP_M)
        return self._with_tool_down(step, tcp)

    def _cut(self, center, tcp, x, theta, rho, error) -> np.ndarray:
        """The cutting action: advance along +x, steer to the nearest lane, hold the depth."""
        t = self.task
        advance = self.config.stroke_speed_m_s / t.control_hz
        advance *= float(np.clip((self.SETTLE_M - abs(error)) / 0.001, 0.0, 1.0))
        # Slow down over the stroke's last centimetre: the arm overshoots a sudden stop.
        advance *= float(np.clip((self.stroke_end_x - x) / 0.01, 0.3, 1.0))
        near = int(np.argmin(np.abs(self.lane_angles - theta)))
        turn = self.ANGLE_GAIN * (self.lane_angles[near] - theta)
        plunge = min(self.DEPTH_GAIN * error, self.MAX_DEPTH_STEP_M)
        step = self._toward(center, (x + advance, theta + turn, rho - plunge)) - tcp[:3]
        return self._with_tool_down(step, tcp)

    def _with_tool_down(self, step: np.ndarray, tcp: np.ndarray) -> np.ndarray:
        """``step (3,)`` (m) clipped, plus the rotation that turns the tool straight down."""
        t = self.task
        turn = TOOL_DOWN @ matrix_from_rotvec(tcp[3:]).T
        return np.concatenate(
            [
                _clip_norm(step, t.max_translation_step_m),
                _clip_norm(rotvec_from_matrix(turn), t.max_rotation_step_rad),
            ]
        )

    @staticmethod
    def _toward(center: np.ndarray, goal: tuple[float, float, float]) -> np.ndarray:
        """The base-frame point ``(3,)`` at axial ``x``, angle ``theta`` and distance ``rho``
        (m, rad, m) from the fruit's axis."""
        x, theta, rho = goal
        return center + np.array([x, rho * math.sin(theta), rho * math.cos(theta)])
