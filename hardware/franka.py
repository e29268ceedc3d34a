"""Franka Emika / Franka Research 3 arms through franky (``franky-control`` 2.0).

Needs the optional extra ``pip install 'robopref[franka]'`` (franky-control 2.0.0, which
bundles libfranka; a real-time kernel unless ``realtime=False``); with ``simulate=True`` the
in-process fake ``robopref.hardware.fake.franky`` stands in, so this module imports without
the vendor library and tests need no robot.

Each ``send_action`` preempts the running motion with a new asynchronous
``CartesianMotion(Affine(translation, quaternion), ReferenceType.Absolute)``; franky's own
trajectory generator (Ruckig, at 1 kHz) reaches it within the velocity, acceleration and jerk
limits scaled by ``relative_dynamics_factor``.

Frames, units and signs: poses are ``[x, y, z, rx, ry, rz]`` (m, rotation vector in rad) of
the end effector (libfranka's ``O_T_EE``) in the base frame. The wrench comes from
``robot.state.O_F_ext_hat_K`` (N, N*m): libfranka's estimate of the external wrench at the
stiffness frame K, expressed in the BASE frame, positive for what the robot applies to the
environment. The observation reports the wrench the environment applies to the tool, in the
TOOL (end effector) frame: ``f_tool = -R.T @ f_base``, ``tau_tool = -R.T @ tau_base`` with
``R`` the rotation of ``O_T_EE``. K coincides with the end effector unless ``set_k`` was
called (franky's default; this backend never calls it). The estimate comes from joint torques,
so expect a few newtons of noise and bias.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from robopref.errors import ConfigError
from robopref.geometry import quat_from_rotvec, rotvec_from_matrix
from robopref.hardware.base import ArmObservation, HardwareError, ProtectiveStop
from robopref.hardware.vendor import VendorArm, check_positive, missing_library


@dataclass
class FrankaConfig:
    """A Franka arm over FCI through franky.

    Attributes:
        fci_ip: IP address or hostname of the arm's FCI interface (the control box).
        control_hz: Hz, the rate the caller streams targets at (each one preempts the last).
        relative_dynamics_factor: in (0, 1], scales franky's maximum velocity, acceleration and
            jerk; start low (0.05-0.1) on a new setup.
        force_threshold_n: N, libfranka collision threshold: an external force above it
            triggers a reflex (a latched protective stop here).
        torque_threshold_nm: N*m, the joint torque collision threshold, likewise.
        realtime: require a real-time kernel (libfranka ``RealtimeConfig.Enforce``); False
            lets it run without one, with worse tracking.
        simulate: use the in-process fake of franky instead of the real library.
    """

    fci_ip: str = ""
    control_hz: float = 50.0
    relative_dynamics_factor: float = 0.1
    force_threshold_n: float = 30.0
    torque_threshold_nm: float = 20.0
    realtime: bool = True
    simulate: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.fci_ip, str) or not self.fci_ip.strip():
            raise ConfigError("franka fci_ip is empty: set fci_ip to the arm's FCI address")
        if not 0 < self.control_hz <= 1000:
            raise ConfigError(
                f"control_hz={self.control_hz} out of range: use (0, 1000] Hz (FCI runs at 1 kHz)"
            )
        if not 0 < self.relative_dynamics_factor <= 1:
            raise ConfigError(
                f"relative_dynamics_factor={self.relative_dynamics_factor} out of range: use (0, 1]"
            )
        check_positive(self, ("force_threshold_n", "torque_threshold_nm"))


def _load_franky() -> Any:
    try:
        import franky
    except ImportError as error:
        raise missing_library("franky-control", "franka", error) from error
    return franky


def external_wrench_to_tool(o_f_ext_hat_k: np.ndarray, o_t_ee: np.ndarray) -> np.ndarray:
    """libfranka's ``O_F_ext_hat_K`` ``(6,)`` (N, N*m; base frame; robot-on-environment
    positive) -> the ``(6,)`` wrench the environment applies to the tool, in the tool frame,
    given ``O_T_EE`` as a 4x4 matrix."""
    rotation = np.asarray(o_t_ee, dtype=np.float64)[:3, :3]
    wrench = np.asarray(o_f_ext_hat_k, dtype=np.float64)
    return -np.concatenate([rotation.T @ wrench[:3], rotation.T @ wrench[3:]])


class FrankaArm(VendorArm):
    """A Franka arm taking absolute end-effector targets through franky (see the module
    docstring).

    ``franky`` injects the module (any object with franky's names, e.g. a ``FakeFranky``);
    left ``None`` it is ``robopref.hardware.fake.franky.FakeFranky`` when ``config.simulate``
    and the installed ``franky`` otherwise (imported at ``connect()``).

    A libfranka reflex (collision, limit violation) aborts the running motion; franky raises
    it from the next ``move``. Either way the arm latches a protective stop until
    ``recover()``, which calls ``recover_from_errors()``.
    """

    kind = "Franka arm"
    joint_count = 7
    address_field = "fci_ip"
    link = "FCI connection to the Franka arm"
    link_check = "the network cable to the control box"
    fake = "robopref.hardware.fake.franky:FakeFranky"
    _load_library = staticmethod(_load_franky)
    #: The franky module in use (a ``FakeFranky`` when simulating); loads it if needed.
    franky = VendorArm.backend

    def __init__(self, config: FrankaConfig, franky: Any = None) -> None:
        super().__init__(config, franky)
        self._robot: Any = None

    @property
    def is_connected(self) -> bool:
        return self._robot is not None

    def _fake_options(self) -> dict:
        # The fake's clock advances by this much per move: one command period.
        return {"tick_s": self.control_period_s}

    # --- lifecycle --------------------------------------------------------------------------

    def connect(self) -> None:
        if self.is_connected:
            return
        cfg, franky = self.config, self.franky
        realtime = franky.RealtimeConfig.Enforce if cfg.realtime else franky.RealtimeConfig.Ignore
        try:
            robot = franky.Robot(
                cfg.fci_ip,
                default_torque_threshold=cfg.torque_threshold_nm,
                default_force_threshold=cfg.force_threshold_n,
                realtime_config=realtime,
            )
            robot.relative_dynamics_factor = cfg.relative_dynamics_factor
            has_errors = robot.has_errors
        except franky.Exception as error:
            raise HardwareError(
                f"cannot connect to the Franka arm at {cfg.fci_ip} ({error}): check the address, "
                "that FCI is activated in Desk and the brakes are open"
            ) from error
        self._robot = robot
        self._latched = bool(has_errors)

    def disconnect(self) -> None:
        if not self.is_connected:
            return
        robot, self._robot = self._robot, None
        try:
            robot.stop()
            robot.join_motion()
        except self.franky.Exception:
            # The preempted motion reports its abort; there is nothing left to stop.
            pass
        # franky has no close(): dropping the last reference closes the FCI connection.
        del robot

    # --- state ------------------------------------------------------------------------------

    def get_observation(self) -> ArmObservation:
        self._require_connection()
        franky = self.franky
        try:
            # One snapshot, so pose, joints and wrench belong to the same 1 kHz tick.
            state = self._robot.state
            if self._robot.has_errors:
                self._latched = True
        except franky.Exception as error:
            raise self._link_error(error) from error
        o_t_ee = np.asarray(state.O_T_EE.matrix, dtype=np.float64)
        pose = np.concatenate([o_t_ee[:3, 3], rotvec_from_matrix(o_t_ee[:3, :3])])
        return ArmObservation(
            joint_positions=np.asarray(state.q, dtype=np.float64),
            joint_velocities=np.asarray(state.dq, dtype=np.float64),
            tcp_pose=pose,
            wrench=external_wrench_to_tool(state.O_F_ext_hat_K, o_t_ee),
            timestamp=time.monotonic(),
            protective_stop=self._latched,
        )

    # --- commands ---------------------------------------------------------------------------

    def send_action(self, target_pose: np.ndarray) -> np.ndarray:
        target = self._checked_target(target_pose)
        if self._latched:
            raise ProtectiveStop(
                f"Franka arm at {self.config.fci_ip} is stopped: clear the cause, "
                "then call recover()"
            )
        franky = self.franky
        w, x, y, z = quat_from_rotvec(target[3:])
        quaternion = np.array([x, y, z, w])  # franky's order
        motion = franky.CartesianMotion(
            franky.Affine(target[:3].tolist(), quaternion.tolist()), franky.ReferenceType.Absolute
        )
        try:
            if self._robot.has_errors:
                self._latched = True
                raise ProtectiveStop(
                    f"Franka arm at {self.config.fci_ip} has a reflex error: clear the cause, "
                    "then call recover()"
                )
            self._robot.move(motion, asynchronous=True)
        except (franky.ControlException, franky.CommandException) as error:
            self._latched = True
            raise ProtectiveStop(
                f"Franka arm at {self.config.fci_ip} stopped its motion ({error}): clear the "
                "cause (contact, limit), then call recover()"
            ) from error
        except franky.Exception as error:
            raise self._link_error(error) from error
        return target.copy()

    def stop(self) -> None:
        self._latched = True
        if not self.is_connected:
            return
        franky = self.franky
        try:
            self._robot.stop()
            self._robot.join_motion()
        except franky.ControlException:
            pass  # the preempted motion reports its abort; that is the stop working
        except franky.Exception as error:
            raise HardwareError(
                f"could not stop the Franka arm at {self.config.fci_ip} ({error}): use the "
                "external enabling/stop device"
            ) from error

    def recover(self) -> None:
        self._require_connection()
        franky = self.franky
        try:
            # Collect what the aborted motion left behind so the next move starts clean.
            with contextlib.suppress(franky.ControlException):
                self._robot.join_motion()
            self._robot.recover_from_errors()
            still = self._robot.has_errors
        except franky.Exception as error:
            raise self._link_error(error) from error
        if still:
            raise HardwareError(
                f"Franka arm at {self.config.fci_ip} still reports errors after "
                "recover_from_errors(): check Desk and the enabling device"
            )
        self._latched = False


__all__ = ["FrankaArm", "FrankaConfig", "external_wrench_to_tool"]
