"""In-process FAKE of the part of franky-control 2.0.0 (``import franky``, Tim Schneider,
https://github.com/TimSchneider42/franky) that ``robopref.hardware.franka`` uses, for tests
and dry runs without a Franka arm. No network traffic, no libfranka, no real-time thread.

``FakeFranky()`` is a namespace with franky's names: ``Robot``, ``Affine``,
``CartesianMotion``, ``CartesianStopMotion``, ``ReferenceType``, ``RealtimeConfig``,
``RobotState``, ``RobotPose``, ``CartesianState``, ``JointState`` and the exception classes
(``Exception``, ``ControlException``, ``CommandException``, ``NetworkException``,
``InvalidOperationException``, ``MotionReuseException``). ``Robot(fci_hostname, ...)`` objects
opened through one ``FakeFranky`` on one hostname share a ``FakeFrankaController``
(``fake.controller(hostname)``); a fresh ``FakeFranky`` has fresh controllers.

Modelled as franky 2.0 behaves:

* ``Affine(translation, quaternion)`` with the quaternion in ``[x, y, z, w]`` order;
  ``.translation``, ``.quaternion``, ``.matrix``, ``.inverse``, ``*``.
* ``robot.move(motion, asynchronous=True)`` preempts the running motion and returns at once.
  The fake then advances its clock by ``tick_s`` and moves the end effector toward the
  target at most 1.7 m/s and 2.5 rad/s (franky's maximum Cartesian velocities) times the
  product of the robot's and the motion's relative dynamics factors. Joint values are a
  stand-in that follows the pose, not Franka kinematics. Motions are single-use.
* ``robot.state`` is a ``RobotState`` snapshot with ``O_T_EE`` (Affine), ``EE_T_K``
  (identity), ``q``/``dq`` ``(7,)``, ``O_F_ext_hat_K`` and ``K_F_ext_hat_K`` ``(6,)`` in
  libfranka's sign: the wrench the ROBOT applies to the environment is positive.
* A reflex (``trigger_reflex``, or an external force norm above ``default_force_threshold``
  given to ``Robot``, as libfranka's collision thresholds do) aborts the motion: the stored
  ``ControlException`` is raised by the next ``move`` or ``join_motion``; ``has_errors`` stays
  True, and further moves raise ``CommandException``, until ``recover_from_errors()``.
* ``robot.stop()`` preempts the running motion with a ``ControlException`` (libfranka's
  ``Robot::stop``), which ``join_motion`` raises.
* ``drop_connection()``: every robot call raises ``NetworkException``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

MAX_TRANSLATION_VELOCITY = 1.7  # m/s, franky's translation_velocity_limit maximum
MAX_ROTATION_VELOCITY = 2.5  # rad/s, franky's rotation_velocity_limit maximum

_HOME_TRANSLATION = np.array([0.307, 0.0, 0.487])
_HOME_QUATERNION = np.array([1.0, 0.0, 0.0, 0.0])  # x, y, z, w: tool pointing down
_HOME_Q = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])


class FrankyException(Exception):
    """Stands in for ``franky.Exception`` (libfranka's ``franka::Exception``)."""


class ControlException(FrankyException):
    """``franky.ControlException``: a motion was aborted (reflex, stop)."""


class CommandException(FrankyException):
    """``franky.CommandException``: the robot rejected a command."""


class NetworkException(FrankyException):
    """``franky.NetworkException``: the FCI connection failed or was lost."""


class InvalidOperationException(FrankyException):
    """``franky.InvalidOperationException``."""


class MotionReuseException(Exception):
    """``franky.MotionReuseException``: a motion object was passed to ``move`` twice."""


class ReferenceType(enum.Enum):
    Relative = 0
    Absolute = 1


class RealtimeConfig(enum.Enum):
    Enforce = 0
    Ignore = 1


class Affine:
    """``franky.Affine``: a rigid transform from ``translation`` (m) and ``quaternion``
    ``[x, y, z, w]``, or from a 4x4 homogeneous matrix."""

    def __init__(self, translation=(0.0, 0.0, 0.0), quaternion=(0.0, 0.0, 0.0, 1.0)) -> None:
        array = np.asarray(translation, dtype=np.float64)
        if array.shape == (4, 4):
            self._matrix = array.copy()
            return
        matrix = np.eye(4)
        matrix[:3, :3] = Rotation.from_quat(np.asarray(quaternion, dtype=np.float64)).as_matrix()
        matrix[:3, 3] = array
        self._matrix = matrix

    @property
    def translation(self) -> np.ndarray:
        return self._matrix[:3, 3].copy()

    @property
    def quaternion(self) -> np.ndarray:
        return Rotation.from_matrix(self._matrix[:3, :3]).as_quat()

    @property
    def matrix(self) -> np.ndarray:
        return self._matrix.copy()

    @property
    def inverse(self) -> Affine:
        return Affine(np.linalg.inv(self._matrix))

    def __mul__(self, other: Affine) -> Affine:
        return Affine(self._matrix @ other._matrix)

    def __repr__(self) -> str:
        return f"Affine(t={self.translation.tolist()}, q={self.quaternion.tolist()})"


@dataclass(frozen=True)
class RobotPose:
    end_effector_pose: Affine
    elbow_state: object = None


@dataclass(frozen=True)
class CartesianState:
    pose: RobotPose
    velocity: object = None


@dataclass(frozen=True)
class JointState:
    position: np.ndarray
    velocity: np.ndarray


@dataclass(frozen=True)
class RobotState:
    """The fields of ``franky.RobotState`` the fake fills in (libfranka names and frames)."""

    O_T_EE: Affine
    EE_T_K: Affine
    q: np.ndarray
    dq: np.ndarray
    O_F_ext_hat_K: np.ndarray
    K_F_ext_hat_K: np.ndarray
    time: float


class _Motion:
    def __init__(self) -> None:
        self._used = False

    def _claim(self) -> None:
        if self._used:
            raise MotionReuseException("motion objects are single-use: create a new one")
        self._used = True


class CartesianMotion(_Motion):
    """``franky.CartesianMotion(target, reference_type=ReferenceType.Absolute,
    relative_dynamics_factor=1.0, return_when_finished=True, ee_frame=None)``."""

    def __init__(
        self,
        target,
        reference_type: ReferenceType = ReferenceType.Absolute,
        relative_dynamics_factor: float = 1.0,
        return_when_finished: bool = True,
        ee_frame: Affine | None = None,
    ) -> None:
        super().__init__()
        if isinstance(target, CartesianState):
            target = target.pose
        if isinstance(target, RobotPose):
            target = target.end_effector_pose
        self.target = target
        self.reference_type = reference_type
        self.relative_dynamics_factor = float(relative_dynamics_factor)
        self.return_when_finished = return_when_finished
        self.ee_frame = ee_frame


class CartesianStopMotion(_Motion):
    """``franky.CartesianStopMotion(relative_dynamics_factor=1.0)``."""

    def __init__(self, relative_dynamics_factor: float = 1.0) -> None:
        super().__init__()
        self.relative_dynamics_factor = float(relative_dynamics_factor)


@dataclass
class FakeFrankaController:
    """The simulated arm behind one FCI hostname.

    Attributes:
        ee_matrix: 4x4 ``O_T_EE``, end effector pose in the base frame (m).
        o_f_ext_hat_k: ``(6,)`` external wrench estimate (N, N*m), base frame, libfranka sign
            (what the robot applies to the environment is positive).
        tick_s: s, how far the clock advances per ``move``.
        calls: every ``Robot`` call ``(method, args)`` in order.
    """

    hostname: str
    tick_s: float = 0.02
    ee_matrix: np.ndarray = field(
        default_factory=lambda: Affine(_HOME_TRANSLATION, _HOME_QUATERNION).matrix
    )
    ee_velocity: np.ndarray = field(default_factory=lambda: np.zeros(6))
    o_f_ext_hat_k: np.ndarray = field(default_factory=lambda: np.zeros(6))
    clock_s: float = 0.0
    network_up: bool = True
    has_errors: bool = False
    pending: Exception | None = None
    motion_active: bool = False
    force_threshold_n: float = 30.0
    calls: list[tuple[str, tuple]] = field(default_factory=list)

    # --- test hooks -------------------------------------------------------------------------

    def set_external_wrench(self, o_f_ext_hat_k) -> None:
        """Sets ``O_F_ext_hat_K`` ``(6,)`` (N, N*m, base frame, libfranka sign); a force norm
        above the robot's force threshold triggers a ``cartesian_reflex``."""
        self.o_f_ext_hat_k = np.asarray(o_f_ext_hat_k, dtype=np.float64).copy()
        if np.linalg.norm(self.o_f_ext_hat_k[:3]) > self.force_threshold_n:
            self.trigger_reflex("cartesian_reflex")

    def trigger_reflex(self, error: str = "cartesian_reflex") -> None:
        """A libfranka reflex: the motion aborts with ``ControlException``, errors stay set."""
        self.has_errors = True
        self.motion_active = False
        self.ee_velocity = np.zeros(6)
        self.pending = ControlException(
            f'libfranka: Move command aborted: motion aborted by reflex! ["{error}"]'
        )

    def drop_connection(self) -> None:
        self.network_up = False

    def restore_connection(self) -> None:
        self.network_up = True

    def count(self, method: str) -> int:
        return sum(1 for name, _ in self.calls if name == method)

    def last(self, method: str) -> tuple:
        for name, args in reversed(self.calls):
            if name == method:
                return args
        raise LookupError(f"{method} was never called")

    # --- arm behaviour ----------------------------------------------------------------------

    @property
    def q(self) -> np.ndarray:
        pose = np.concatenate(
            [self.ee_matrix[:3, 3], Rotation.from_matrix(self.ee_matrix[:3, :3]).as_rotvec()]
        )
        home = np.concatenate([_HOME_TRANSLATION, Rotation.from_quat(_HOME_QUATERNION).as_rotvec()])
        return _HOME_Q + np.concatenate([pose - home, [0.0]])

    def step_toward(self, target: np.ndarray, dynamics: float) -> None:
        dt = self.tick_s
        self.clock_s += dt
        start = self.ee_matrix.copy()
        step = target[:3, 3] - start[:3, 3]
        reach = MAX_TRANSLATION_VELOCITY * dynamics * dt
        dist = float(np.linalg.norm(step))
        if dist > reach:
            step *= reach / dist
        r_now = Rotation.from_matrix(start[:3, :3])
        delta = (Rotation.from_matrix(target[:3, :3]) * r_now.inv()).as_rotvec()
        turn = MAX_ROTATION_VELOCITY * dynamics * dt
        angle = float(np.linalg.norm(delta))
        if angle > turn:
            delta *= turn / angle
        self.ee_matrix[:3, 3] = start[:3, 3] + step
        self.ee_matrix[:3, :3] = (Rotation.from_rotvec(delta) * r_now).as_matrix()
        self.ee_velocity = np.concatenate([step, delta]) / dt


class FakeRobot:
    """``franky.Robot(fci_hostname, relative_dynamics_factor=1.0, default_torque_threshold=20.0,
    default_force_threshold=30.0, controller_mode=..., realtime_config=RealtimeConfig.Enforce,
    ...)``; connects on construction, as the real one does."""

    def __init__(
        self,
        controller: FakeFrankaController,
        relative_dynamics_factor: float = 1.0,
        default_torque_threshold: float = 20.0,
        default_force_threshold: float = 30.0,
        realtime_config: RealtimeConfig = RealtimeConfig.Enforce,
    ) -> None:
        self._c = controller
        controller.calls.append(
            ("__init__", (controller.hostname, relative_dynamics_factor, realtime_config))
        )
        if not controller.network_up:
            raise NetworkException(f"libfranka: Connection timeout ({controller.hostname}, fake)")
        controller.force_threshold_n = float(default_force_threshold)
        self._relative_dynamics_factor = float(relative_dynamics_factor)

    def _call(self, method: str, *args) -> None:
        self._c.calls.append((method, args))
        if not self._c.network_up:
            raise NetworkException(f"libfranka: Connection lost to {self._c.hostname} (fake)")

    def _raise_pending(self) -> None:
        if self._c.pending is not None:
            error, self._c.pending = self._c.pending, None
            raise error

    @property
    def fci_hostname(self) -> str:
        return self._c.hostname

    @property
    def relative_dynamics_factor(self) -> float:
        return self._relative_dynamics_factor

    @relative_dynamics_factor.setter
    def relative_dynamics_factor(self, value: float) -> None:
        self._call("set_relative_dynamics_factor", value)
        value = float(value)
        if not 0 < value <= 1:
            raise ValueError("relative_dynamics_factor must be in (0, 1]")
        self._relative_dynamics_factor = value

    @property
    def has_errors(self) -> bool:
        self._call("has_errors")
        return self._c.has_errors

    def recover_from_errors(self) -> None:
        self._call("recover_from_errors")
        self._c.has_errors = False

    def move(
        self,
        motion,
        asynchronous: bool = False,
        limit_rate: bool = False,
        cutoff_frequency: float = 100.0,
    ) -> None:
        self._call("move", motion, asynchronous)
        self._raise_pending()
        if self._c.has_errors:
            raise CommandException(
                "libfranka: Move command rejected: command not possible in the current mode "
                '("Reflex")!'
            )
        motion._claim()
        if isinstance(motion, CartesianStopMotion):
            self._c.motion_active = False
            self._c.ee_velocity = np.zeros(6)
            return
        target = motion.target.matrix
        if motion.reference_type == ReferenceType.Relative:
            target = self._c.ee_matrix @ target
        dynamics = self._relative_dynamics_factor * motion.relative_dynamics_factor
        self._c.motion_active = True
        self._c.step_toward(target, dynamics)
        if not asynchronous:
            # A blocking move runs until the target is reached.
            for _ in range(100_000):
                if np.allclose(self._c.ee_matrix, target, atol=1e-9):
                    break
                self._c.step_toward(target, dynamics)
            self._c.motion_active = False

    def join_motion(self, timeout: float | None = None) -> bool:
        self._call("join_motion", timeout)
        self._raise_pending()
        return True

    def stop(self) -> None:
        self._call("stop")
        if self._c.motion_active:
            self._c.pending = ControlException("libfranka: Motion aborted by Robot::stop()")
        self._c.motion_active = False
        self._c.ee_velocity = np.zeros(6)

    @property
    def state(self) -> RobotState:
        self._call("state")
        c = self._c
        rotation = c.ee_matrix[:3, :3]
        wrench = c.o_f_ext_hat_k
        return RobotState(
            O_T_EE=Affine(c.ee_matrix),
            EE_T_K=Affine(),
            q=c.q,
            dq=np.concatenate([c.ee_velocity, [0.0]]),
            O_F_ext_hat_K=wrench.copy(),
            K_F_ext_hat_K=np.concatenate([rotation.T @ wrench[:3], rotation.T @ wrench[3:]]),
            time=c.clock_s,
        )

    @property
    def current_cartesian_state(self) -> CartesianState:
        return CartesianState(RobotPose(self.state.O_T_EE))

    @property
    def current_joint_state(self) -> JointState:
        state = self.state
        return JointState(state.q, state.dq)


class FakeFranky:
    """franky's names, backed by fake controllers keyed by hostname (see the module docstring).

    Args:
        tick_s: s, how far each controller's clock (and the arm) advances per ``move``.
    """

    Affine = Affine
    CartesianMotion = CartesianMotion
    CartesianStopMotion = CartesianStopMotion
    ReferenceType = ReferenceType
    RealtimeConfig = RealtimeConfig
    RobotState = RobotState
    RobotPose = RobotPose
    CartesianState = CartesianState
    JointState = JointState
    Exception = FrankyException
    ControlException = ControlException
    CommandException = CommandException
    NetworkException = NetworkException
    InvalidOperationException = InvalidOperationException
    MotionReuseException = MotionReuseException

    def __init__(self, tick_s: float = 0.02) -> None:
        self.tick_s = float(tick_s)
        self._controllers: dict[str, FakeFrankaController] = {}

    def controller(self, hostname: str) -> FakeFrankaController:
        if hostname not in self._controllers:
            self._controllers[hostname] = FakeFrankaController(
                hostname=hostname, tick_s=self.tick_s
            )
        return self._controllers[hostname]

    def Robot(
        self, fci_hostname: str, relative_dynamics_factor: float = 1.0, **kwargs
    ) -> FakeRobot:
        return FakeRobot(self.controller(fci_hostname), relative_dynamics_factor, **kwargs)


__all__ = [
    "Affine",
    "CartesianMotion",
    "CartesianStopMotion",
    "CommandException",
    "ControlException",
    "FakeFrankaController",
    "FakeFranky",
    "FakeRobot",
    "FrankyException",
    "NetworkException",
    "ReferenceType",
    "RobotState",
]
