"""A kinematic force-sensing arm that lives in-process: the generic fake for dry runs and tests.

It stands in for no particular vendor. Control is synchronous: every ``send_action`` advances
the arm's own simulated clock by one control period and moves the TCP a fixed fraction of
the way to the target, so tests and dry runs never sleep. The measured wrench is whatever a
test injects (zero by default); joint positions are a smooth, deterministic function of the
TCP pose, not real inverse kinematics.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from robopref.errors import ConfigError, NonFiniteError
from robopref.hardware.base import ArmObservation, ForceArm, NotConnectedError, ProtectiveStop

__all__ = ["FakeArmConfig", "FakeForceArm"]

# Pointing the tool straight down (180 deg about base x) is the usual home of a table-top arm.
_HOME = (0.4, 0.0, 0.3, math.pi, 0.0, 0.0)


@dataclass
class FakeArmConfig:
    """Settings of ``FakeForceArm``.

    Attributes:
        control_hz: command rate (Hz); each command advances the fake clock by ``1/control_hz`` s.
        initial_pose: ``(6,)`` TCP pose at start ``[x, y, z, rx, ry, rz]`` (m, rad).
        tracking: fraction (0, 1] of the remaining position and orientation error closed per
            command; 1 jumps to the target in one tick.
        n_joints: number of joints reported in observations.
        history: how many of the latest accepted commands ``FakeForceArm.commands`` keeps.
    """

    control_hz: float = 100.0
    initial_pose: Sequence[float] = _HOME
    tracking: float = 0.5
    n_joints: int = 6
    history: int = 10_000

    def __post_init__(self) -> None:
        if not (isinstance(self.control_hz, int | float) and 0 < self.control_hz < math.inf):
            raise ConfigError(
                f"fake arm control_hz={self.control_hz!r} must be a positive number of Hz, "
                "e.g. control_hz=100"
            )
        try:
            pose = np.asarray(self.initial_pose, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"fake arm initial_pose={self.initial_pose!r} is not numeric: "
                "give 6 numbers [x, y, z, rx, ry, rz] (m, rad)"
            ) from exc
        if pose.shape != (6,) or not np.all(np.isfinite(pose)):
            raise ConfigError(
                f"fake arm initial_pose={self.initial_pose!r} must be 6 finite numbers "
                "[x, y, z, rx, ry, rz] (m, rad)"
            )
        self.initial_pose = tuple(float(v) for v in pose)
        if not (isinstance(self.tracking, int | float) and 0 < self.tracking <= 1):
            raise ConfigError(
                f"fake arm tracking={self.tracking!r} must be in (0, 1]: the fraction of the "
                "error closed per tick, e.g. tracking=0.5"
            )
        if isinstance(self.n_joints, bool) or not isinstance(self.n_joints, int):
            raise ConfigError(f"fake arm n_joints={self.n_joints!r} must be an integer, e.g. 6")
        if self.n_joints < 1:
            raise ConfigError(f"fake arm n_joints={self.n_joints} must be at least 1, e.g. 6")
        if isinstance(self.history, bool) or not isinstance(self.history, int) or self.history < 1:
            raise ConfigError(
                f"fake arm history={self.history!r} must be a positive integer, e.g. 10000"
            )


def _joint_map(n_joints: int) -> np.ndarray:
    """``(n_joints, 12)`` fixed weights from pose features to joint angles (rad).

    The features are the position and the rotation-matrix entries rather than the rotation
    vector, whose sign flips near 180 deg would make the joints jump.
    """
    rng = np.random.default_rng(20240605)
    return rng.uniform(-1.0, 1.0, size=(n_joints, 12)) / 3.0


class FakeForceArm(ForceArm):
    """In-process kinematic arm, synchronous, for tests and dry runs (see module docstring).

    Test hooks: ``inject_wrench(wrench (6,))`` sets the measured wrench (N, N*m);
    ``inject_nan_observation(True)`` makes observations non-finite until switched off;
    ``commands`` holds the latest accepted commands and ``n_commands`` counts them all.

    Timestamps are the fake clock (s since construction, one control period per command),
    not ``time.monotonic()``.
    """

    def __init__(self, config: FakeArmConfig | None = None) -> None:
        self.config = config if config is not None else FakeArmConfig()
        self._period = 1.0 / float(self.config.control_hz)
        self._weights = _joint_map(self.config.n_joints)
        self._pose = np.array(self.config.initial_pose, dtype=np.float64)
        self._joints = self._joints_of(self._pose)
        self._joint_velocities = np.zeros(self.config.n_joints)
        self._wrench = np.zeros(6)
        self._nan_observation = False
        self._connected = False
        # A latched stop survives a reconnect, as on real controllers: only recover() clears it.
        self._stopped = False
        self._clock = 0.0
        self.commands: deque[np.ndarray] = deque(maxlen=self.config.history)
        self.n_commands = 0

    @property
    def n_joints(self) -> int:
        return self.config.n_joints

    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def control_period_s(self) -> float:
        return self._period

    @property
    def is_stopped(self) -> bool:
        return self._stopped

    def connect(self) -> None:
        self._connected = True

    def disconnect(self) -> None:
        self._joint_velocities = np.zeros(self.config.n_joints)
        self._connected = False

    def _require_connection(self) -> None:
        if not self._connected:
            raise NotConnectedError("fake arm is not connected: call connect() or use 'with arm:'")

    def _joints_of(self, pose: np.ndarray) -> np.ndarray:
        matrix = Rotation.from_rotvec(pose[3:]).as_matrix().ravel()
        return self._weights @ np.concatenate([pose[:3], matrix])

    def get_observation(self) -> ArmObservation:
        self._require_connection()
        pose = self._pose.copy()
        wrench = self._wrench.copy()
        if self._nan_observation:
            pose[:] = np.nan
            wrench[:] = np.nan
        return ArmObservation(
            joint_positions=self._joints.copy(),
            joint_velocities=self._joint_velocities.copy(),
            tcp_pose=pose,
            wrench=wrench,
            timestamp=self._clock,
            protective_stop=self._stopped,
        )

    def send_action(self, target_pose: np.ndarray) -> np.ndarray:
        """Moves ``tracking`` of the way to ``target_pose`` ``(6,)`` (m, rad) in one tick and
        returns the target unchanged (the fake does no clipping of its own)."""
        self._require_connection()
        target = np.array(target_pose, dtype=np.float64)
        if target.shape != (6,):
            raise ValueError(
                f"fake arm expects a (6,) TCP target [x, y, z, rx, ry, rz], got {target.shape}"
            )
        if not np.all(np.isfinite(target)):
            raise NonFiniteError(f"fake arm refused a non-finite TCP target {target.tolist()}")
        if self._stopped:
            raise ProtectiveStop("fake arm is in a protective stop: call recover() first")

        alpha = self.config.tracking
        position = self._pose[:3] + alpha * (target[:3] - self._pose[:3])
        current = Rotation.from_rotvec(self._pose[3:])
        relative = Rotation.from_rotvec(target[3:]) * current.inv()
        rotation = Rotation.from_rotvec(alpha * relative.as_rotvec()) * current
        self._pose = np.concatenate([position, rotation.as_rotvec()])

        joints = self._joints_of(self._pose)
        self._joint_velocities = (joints - self._joints) / self._period
        self._joints = joints
        self._clock += self._period
        self.commands.append(target.copy())
        self.n_commands += 1
        return target

    def stop(self) -> None:
        self._joint_velocities = np.zeros(self.config.n_joints)
        self._stopped = True

    def recover(self) -> None:
        self._require_connection()
        self._stopped = False

    def inject_wrench(self, wrench: np.ndarray) -> None:
        """Sets the wrench ``(6,)`` ``[fx, fy, fz, tx, ty, tz]`` (N, N*m) later observations
        report; it may be non-finite, to test how callers handle a broken sensor."""
        value = np.array(wrench, dtype=np.float64)
        if value.shape != (6,):
            raise ValueError(f"inject_wrench expects a (6,) wrench, got {value.shape}")
        self._wrench = value

    def inject_nan_observation(self, enabled: bool = True) -> None:
        """While enabled, observations report NaN for the TCP pose and wrench."""
        self._nan_observation = bool(enabled)
