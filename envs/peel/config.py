"""Peel-v0 settings (``PeelConfig``) and the observation layout, shared by task, env and expert.

Observation ``(OBS_DIM,)`` = ``(35,)``: the arm's state ``(STATE_DIM,)`` = joint positions (6,
rad), joint velocities (6, rad/s), TCP pose (6, m and rad) and wrench (6, N and N*m), then the
task's environment state ``(ENV_STATE_DIM,)`` = ``(11,)`` (see ``PeelTask.environment_state``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from robopref.errors import ConfigError

__all__ = [
    "ENV_STATE_DIM",
    "FLESH",
    "GYM_ID",
    "N_LANES",
    "OBS_DIM",
    "SKIN",
    "STATE_DIM",
    "TOOL_DOWN",
    "TOOL_DOWN_ROTVEC",
    "PeelConfig",
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
