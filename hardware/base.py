"""The hardware contracts: one ABC per role (arm, wrist force/torque sensor, teleop device).

Units are SI everywhere: metres, radians, newtons, newton-metres, seconds. Poses are
``(6,)`` float64 arrays ``[x, y, z, rx, ry, rz]``: position in the arm's base frame (m) and
orientation as a rotation vector (axis * angle, rad) in the same frame, the convention of
UR's RTDE interface. Wrenches are ``(6,)`` ``[fx, fy, fz, tx, ty, tz]`` (N, N*m) in the tool
frame. Timestamps are ``time.monotonic()`` seconds unless a backend says otherwise.

An arm takes an absolute target pose for its tool centre point (TCP) each control tick and
returns the command it actually sent after its own clipping (lerobot's ``send_action``
convention). Policies and teleop produce pose *deltas*; the recorder and the env turn them
into absolute targets, so the safety layer always sees the full command.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np


class HardwareError(RuntimeError):
    """A device failed or refused a command; the message names the device and the fix."""


class NotConnectedError(HardwareError):
    """An operation that needs a connection was called on a disconnected device."""


class ProtectiveStop(HardwareError):
    """Motion is halted and latched until ``recover()``: raised by ``send_action`` while
    stopped, so a control loop cannot keep commanding a stopped arm by accident."""


@dataclass(frozen=True)
class ArmObservation:
    """One reading of an arm's state.

    Attributes:
        joint_positions: ``(n_joints,)`` rad.
        joint_velocities: ``(n_joints,)`` rad/s.
        tcp_pose: ``(6,)`` TCP pose ``[x, y, z, rx, ry, rz]`` (m, rad) in the base frame.
        wrench: ``(6,)`` ``[fx, fy, fz, tx, ty, tz]`` (N, N*m): the wrench the environment
            applies to the tool, in the tool frame (pressing the tool down onto a surface
            reads a force pointing up, away from the surface).
        timestamp: s, when the state was read.
        protective_stop: the arm (or its safety layer) has latched a protective stop.
    """

    joint_positions: np.ndarray
    joint_velocities: np.ndarray
    tcp_pose: np.ndarray
    wrench: np.ndarray
    timestamp: float
    protective_stop: bool = False

    def state_vector(self) -> np.ndarray:
        """``(2 * n_joints + 12,)`` float32: joint positions, joint velocities, TCP pose, wrench,
        the order of ``observation_features`` (datasets' ``observation.state``)."""
        return np.concatenate(
            [self.joint_positions, self.joint_velocities, self.tcp_pose, self.wrench]
        ).astype(np.float32)

    def as_dict(self) -> dict[str, np.ndarray]:
        """Flat feature dict keyed like ``ForceArm.observation_features`` (float32)."""
        return {
            "joint_positions": np.asarray(self.joint_positions, dtype=np.float32),
            "joint_velocities": np.asarray(self.joint_velocities, dtype=np.float32),
            "tcp_pose": np.asarray(self.tcp_pose, dtype=np.float32),
            "wrench": np.asarray(self.wrench, dtype=np.float32),
        }


class ForceArm(ABC):
    """A position-controlled arm with a wrist wrench reading, simulated or real.

    Lifecycle: ``connect()`` ... ``disconnect()``, or ``with arm:``. ``observation_features``
    and ``action_features`` are readable while disconnected (they come from the config).
    ``send_action(target_pose (6,))`` streams one absolute TCP target and returns the target
    actually sent after clipping. ``stop()`` halts motion at once and latches a protective
    stop; ``recover()`` clears it (and the device's own stop) so commands are accepted again.
    """

    @property
    @abstractmethod
    def n_joints(self) -> int: ...

    @property
    def observation_features(self) -> dict[str, tuple[int, ...]]:
        return {
            "joint_positions": (self.n_joints,),
            "joint_velocities": (self.n_joints,),
            "tcp_pose": (6,),
            "wrench": (6,),
        }

    @property
    def action_features(self) -> dict[str, tuple[int, ...]]:
        return {"tcp_target": (6,)}

    @property
    @abstractmethod
    def is_connected(self) -> bool: ...

    @property
    @abstractmethod
    def control_period_s(self) -> float:
        """Seconds between commands the arm expects (1 / control rate in Hz)."""

    @abstractmethod
    def connect(self) -> None: ...

    @abstractmethod
    def disconnect(self) -> None:
        """Stops motion and releases the device; safe to call twice."""

    @abstractmethod
    def get_observation(self) -> ArmObservation: ...

    @abstractmethod
    def send_action(self, target_pose: np.ndarray) -> np.ndarray:
        """Command TCP target ``(6,)`` (m, rad); returns the ``(6,)`` command actually sent.
        Raises ``ProtectiveStop`` while a stop is latched."""

    @abstractmethod
    def stop(self) -> None:
        """Halt motion now and latch a protective stop until ``recover()``."""

    @abstractmethod
    def recover(self) -> None:
        """Clear a latched protective stop; the next command starts from the current pose."""

    @property
    @abstractmethod
    def is_stopped(self) -> bool: ...

    def __enter__(self) -> ForceArm:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()


class SensorStatus(enum.IntFlag):
    """Status bits of one wrench reading (0 = healthy)."""

    OK = 0
    STALE = 1  # no fresh sample within the sensor's timeout: value is the last good one
    DEVICE_ERROR = 2  # the device flagged an error (e.g. Net F/T status word, bad CRC run)
    SATURATED = 4  # a channel is at its range limit


@dataclass(frozen=True)
class WrenchReading:
    """One wrist force/torque sample.

    Attributes:
        wrench: ``(6,)`` ``[fx, fy, fz, tx, ty, tz]`` (N, N*m), bias removed, sensor frame.
        timestamp: s (``time.monotonic()``) when the sample arrived.
        status: ``SensorStatus`` flags; ``OK`` when healthy.
        sequence: device sample counter when the protocol has one, else a local count.
    """

    wrench: np.ndarray
    timestamp: float
    status: SensorStatus = SensorStatus.OK
    sequence: int = 0

    @property
    def ok(self) -> bool:
        return self.status == SensorStatus.OK


class WrenchSensor(ABC):
    """A 6-axis force/torque sensor: ``start()``, ``read()``, ``bias()``, ``stop()``.

    ``bias()`` zeroes the sensor at its current load (the mean of a few samples) and later
    readings subtract it. ``read()`` returns the newest sample without blocking; a sample
    older than the sensor's timeout comes back flagged ``STALE``.
    """

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None:
        """Safe to call twice."""

    @property
    @abstractmethod
    def is_running(self) -> bool: ...

    @abstractmethod
    def bias(self) -> None: ...

    @abstractmethod
    def read(self) -> WrenchReading: ...

    def __enter__(self) -> WrenchSensor:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass(frozen=True)
class TeleopCommand:
    """One reading of a teleop device.

    Attributes:
        delta_pose: ``(6,)`` requested TCP motion for this tick ``[dx, dy, dz, drx, dry, drz]``
            (m, rad), base frame, after deadzone and scaling.
        enabled: the dead-man / enable control is held; when False the arm should hold.
        intervention: the person takes over from a running policy this tick.
        buttons: named momentary buttons pressed since the last read, e.g.
            ``{"save", "discard", "rerecord", "quit"}``.
        timestamp: s (``time.monotonic()``).
        intended: ``(6,)`` the motion the operator meant, where it differs from
            ``delta_pose`` (a scripted operator that executes its commands with injected
            noise, DART-style); ``None`` for devices that only know what they send.
    """

    delta_pose: np.ndarray
    enabled: bool = True
    intervention: bool = False
    buttons: frozenset[str] = field(default_factory=frozenset)
    timestamp: float = 0.0
    intended: np.ndarray | None = None


class Teleop(ABC):
    """A human (or scripted) input device; a background thread reads it, ``read()`` never
    blocks and returns the latest command.

    ``reports_intended_action`` is True for devices whose every command carries
    ``TeleopCommand.intended`` (a recorder then stores it as ``action.intended``)."""

    reports_intended_action: bool = False

    @abstractmethod
    def connect(self) -> None: ...

    @abstractmethod
    def disconnect(self) -> None:
        """Safe to call twice."""

    @property
    @abstractmethod
    def is_connected(self) -> bool: ...

    @abstractmethod
    def read(self) -> TeleopCommand: ...

    def observe(self, observation: ArmObservation) -> None:  # noqa: B027  (most devices are blind)
        """Called by the control loop with the arm's latest state before each ``read()``.
        Devices that need the state (scripted operators, force-feedback devices) override it."""

    def __enter__(self) -> Teleop:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()
