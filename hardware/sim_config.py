"""Settings of the simulated MuJoCo arm: ``SimArmConfig`` and its defaults (the packaged
``force_arm.xml`` and a home posture with the tool pointing down)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from robopref.errors import ConfigError

__all__ = ["HOME_JOINT_POSITIONS", "SimArmConfig", "default_model_path", "finite_floats"]

# Elbow up, tool pointing straight down, TCP at (0.45, 0, 0.26) m: 11 cm above the fruit.
HOME_JOINT_POSITIONS = (-0.3024, -0.1197, 1.9351, -0.2447, -1.5708, -1.8732)


def default_model_path() -> str:
    """Path of the packaged ``force_arm.xml`` (inside ``robopref.envs``)."""
    return str(resources.files("robopref.envs") / "assets" / "force_arm.xml")


def finite_floats(name: str, value, n: int, example: str) -> tuple[float, ...]:
    """``value`` as ``n`` finite floats, or a ``ConfigError`` naming ``name`` and ``example``."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{name}={value!r} is not numeric: give {n} numbers, e.g. {example}"
        ) from exc
    if array.shape != (n,) or not np.all(np.isfinite(array)):
        raise ConfigError(f"{name}={value!r} must be {n} finite numbers, e.g. {example}")
    return tuple(float(v) for v in array)


@dataclass
class SimArmConfig:
    """Settings of ``SimForceArm``.

    Attributes:
        control_hz: command rate (Hz), meant for 10-30 Hz. The control period is rounded to a
            whole number of physics ticks (``SimForceArm.control_period_s`` gives the result).
        stiffness: ``(6,)`` Cartesian stiffness of the TCP: translational x, y, z (N/m) then
            rotational about x, y, z (N*m/rad), base frame.
        damping_ratio: zeta of the Cartesian damping (1 = critically damped per axis).
        posture_stiffness: joint stiffness (N*m/rad) pulling toward
            ``initial_joint_positions`` in the null space of the TCP task.
        initial_joint_positions: ``(6,)`` joint angles (rad) at construction and ``reset()``.
        model_path: MJCF file; defaults to the packaged ``force_arm.xml``. It must contain the
            sites ``tcp`` and ``ft_site``, the sensors ``ft_force`` and ``ft_torque``, and six
            hinge joints each driven by one motor.
        camera_width: default rendered image width (pixels), at most 640.
        camera_height: default rendered image height (pixels), at most 480.
    """

    control_hz: float = 20.0
    stiffness: Sequence[float] = (2000.0, 2000.0, 2000.0, 60.0, 60.0, 60.0)
    damping_ratio: float = 1.0
    posture_stiffness: float = 20.0
    initial_joint_positions: Sequence[float] = HOME_JOINT_POSITIONS
    model_path: str = field(default_factory=default_model_path)
    camera_width: int = 128
    camera_height: int = 128

    def __post_init__(self) -> None:
        if not (
            isinstance(self.control_hz, int | float)
            and not isinstance(self.control_hz, bool)
            and 1.0 <= self.control_hz <= 250.0
        ):
            raise ConfigError(
                f"sim arm control_hz={self.control_hz!r} must be a number of Hz in [1, 250] "
                "(physics runs at 500 Hz), e.g. control_hz=20"
            )
        self.stiffness = finite_floats(
            "sim arm stiffness", self.stiffness, 6, "(2000,)*3 + (60,)*3"
        )
        if min(self.stiffness) <= 0:
            raise ConfigError(
                f"sim arm stiffness={self.stiffness} must be positive (N/m, N*m/rad), "
                "e.g. (2000, 2000, 2000, 60, 60, 60)"
            )
        for name in ("damping_ratio", "posture_stiffness"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 <= value < math.inf):
                raise ConfigError(f"sim arm {name}={value!r} must be a finite number >= 0")
        if self.damping_ratio <= 0:
            raise ConfigError(
                f"sim arm damping_ratio={self.damping_ratio} must be > 0, e.g. 1.0 (critical)"
            )
        self.initial_joint_positions = finite_floats(
            "sim arm initial_joint_positions", self.initial_joint_positions, 6, "(0,)*6 rad"
        )
        if not Path(self.model_path).is_file():
            raise ConfigError(
                f"sim arm model_path={self.model_path!r} is not a file: omit it to use the "
                "packaged force_arm.xml"
            )
        for name, limit in (("camera_width", 640), ("camera_height", 480)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
                raise ConfigError(
                    f"sim arm {name}={value!r} must be an integer in [1, {limit}] "
                    "(the model's offscreen buffer), e.g. 128"
                )
