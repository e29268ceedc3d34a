"""Universal Robots arms (CB3, e-Series) through ur_rtde's RTDE interfaces.

Needs the optional extra ``pip install 'robopref[ur]'`` (ur-rtde 1.6.5); with
``simulate=True`` the in-process fake ``robopref.hardware.fake.rtde`` stands in, so this
module imports without the vendor library and tests need no robot.

Three connections to the controller, as ur_rtde lays them out:
``rtde_receive.RTDEReceiveInterface`` (state), ``rtde_control.RTDEControlInterface`` (uploads
ur_rtde's control script and streams ``servoL``/``speedL``) and
``dashboard_client.DashboardClient`` (port 29999: unlocking protective stops).

Frames and units: poses are UR's ``[x, y, z, rx, ry, rz]`` (m, rotation vector in rad) of the
TCP in the base frame. UR reports ``getActualTCPForce()`` (N, N*m) in the BASE frame; the
``wrench`` of an observation is that wrench rotated into the TOOL frame with the measured TCP
orientation ``R`` (base <- tool): ``f_tool = R.T @ f_base``, ``tau_tool = R.T @ tau_base``.
Both are about the TCP, so no lever-arm term enters. The sign is UR's: the force the
environment applies to the tool.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from robopref.errors import ConfigError
from robopref.geometry import (
    matrix_from_rotvec,
    pose_delta,
    quat_from_rotvec,
    quat_mul,
    rotvec_from_quat,
)
from robopref.hardware.base import ArmObservation, HardwareError, ProtectiveStop
from robopref.hardware.vendor import VendorArm, check_positive, missing_library


@dataclass(frozen=True)
class URForceMode:
    """Arguments of ur_rtde's ``forceMode(task_frame, selection_vector, wrench, type, limits)``,
    entered when streaming starts so the arm is compliant along the selected axes.

    Attributes:
        task_frame: ``(6,)`` pose (m, rad) of the force frame in the base frame.
        selection_vector: ``(6,)`` of 0/1; 1 makes the arm compliant along/about that axis of
            the task frame (position commands there are overridden by the force controller).
        wrench: ``(6,)`` (N, N*m) the arm applies to the environment along compliant axes.
        type: 1, 2 or 3, how UR interprets the task frame (2: used as given).
        limits: ``(6,)`` for compliant axes the largest TCP speed (m/s, rad/s), for the
            others the largest deviation from the commanded pose (m, rad).
    """

    task_frame: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    selection_vector: tuple[int, ...] = (0, 0, 1, 0, 0, 0)
    wrench: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    type: int = 2
    limits: tuple[float, ...] = (0.1, 0.1, 0.1, 0.17, 0.17, 0.17)

    def __post_init__(self) -> None:
        for name in ("task_frame", "wrench", "limits"):
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.shape != (6,) or not np.all(np.isfinite(value)):
                raise ConfigError(f"force_mode.{name} must be 6 finite numbers, got {value}")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        selection = tuple(int(v) for v in self.selection_vector)
        if len(selection) != 6 or any(v not in (0, 1) for v in selection):
            raise ConfigError(
                f"force_mode.selection_vector must be six 0/1 values, got {self.selection_vector}"
            )
        object.__setattr__(self, "selection_vector", selection)
        if self.type not in (1, 2, 3):
            raise ConfigError(
                f"force_mode.type must be 1, 2 or 3 (UR force frame), got {self.type}"
            )
        if any(v <= 0 for v in self.limits):
            raise ConfigError(f"force_mode.limits must all be > 0, got {self.limits}")


@dataclass
class URConfig:
    """A UR arm over RTDE.

    Attributes:
        host: IP address or hostname of the UR controller.
        rtde_frequency_hz: Hz, RTDE synchronisation rate (500 on e-Series, 125 on CB3).
        control_hz: Hz, the rate the caller streams targets at; each ``servoL`` controls the
            robot for ``1 / control_hz`` s. At most ``rtde_frequency_hz``.
        mode: ``"servo"`` streams ``servoL`` pose targets; ``"speed"`` streams ``speedL`` TCP
            twists that reach the target in one period, clipped to ``speed``/``angular_speed``.
        speed: m/s, tool speed: the clip in speed mode; passed to ``servoL``, which UR ignores.
        angular_speed: rad/s, the rotational clip in speed mode.
        acceleration: m/s^2, tool acceleration for ``servoL``/``speedL``.
        lookahead_time_s: s in [0.03, 0.2], ``servoL`` smoothing (longer: smoother, laggier).
        gain: in [100, 2000], ``servoL`` proportional gain (higher: stiffer tracking).
        stop_deceleration: m/s^2, deceleration of ``servoStop``/``speedStop``.
        watchdog_min_hz: Hz, ``setWatchdog``: if no command reaches the controller for
            ``1 / watchdog_min_hz`` s while streaming, the controller stops the control script
            and the arm holds; at most ``control_hz``.
        force_mode: optional ``URForceMode`` (or a dict of its fields) entered when streaming.
        simulate: use the in-process fake of ur_rtde instead of the real library.
    """

    host: str = ""
    rtde_frequency_hz: float = 500.0
    control_hz: float = 125.0
    mode: str = "servo"
    speed: float = 0.25
    angular_speed: float = 0.5
    acceleration: float = 1.2
    lookahead_time_s: float = 0.1
    gain: float = 300.0
    stop_deceleration: float = 10.0
    watchdog_min_hz: float = 10.0
    force_mode: URForceMode | dict | None = None
    simulate: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host.strip():
            raise ConfigError(
                "ur host is empty: set host to the controller's IP, e.g. 192.168.1.10"
            )
        if not 0 < self.rtde_frequency_hz <= 500:
            raise ConfigError(
                f"rtde_frequency_hz={self.rtde_frequency_hz} out of range: use (0, 500] Hz "
                "(500 on e-Series, 125 on CB3)"
            )
        if not 0 < self.control_hz <= self.rtde_frequency_hz:
            raise ConfigError(
                f"control_hz={self.control_hz} out of range: use (0, rtde_frequency_hz="
                f"{self.rtde_frequency_hz}] Hz"
            )
        if self.mode not in ("servo", "speed"):
            raise ConfigError(f"mode={self.mode!r} is unknown: use 'servo' or 'speed'")
        check_positive(self, ("speed", "angular_speed", "acceleration", "stop_deceleration"))
        if not 0.03 <= self.lookahead_time_s <= 0.2:
            raise ConfigError(
                f"lookahead_time_s={self.lookahead_time_s} out of range: servoL accepts "
                "[0.03, 0.2] s"
            )
        if not 100 <= self.gain <= 2000:
            raise ConfigError(f"gain={self.gain} out of range: servoL accepts [100, 2000]")
        if not 0 < self.watchdog_min_hz <= self.control_hz:
            raise ConfigError(
                f"watchdog_min_hz={self.watchdog_min_hz} out of range: use (0, control_hz="
                f"{self.control_hz}] Hz so streamed commands keep it fed"
            )
        if isinstance(self.force_mode, dict):
            names = {f.name for f in dataclasses.fields(URForceMode)}
            unknown = sorted(set(self.force_mode) - names)
            if unknown:
                raise ConfigError(
                    f"unknown force_mode key(s) {', '.join(unknown)}: "
                    f"use {', '.join(sorted(names))}"
                )
            self.force_mode = URForceMode(**self.force_mode)
        elif self.force_mode is not None and not isinstance(self.force_mode, URForceMode):
            raise ConfigError("force_mode must be a URForceMode, a dict of its fields, or None")


def _load_rtde() -> Any:
    try:
        import dashboard_client
        import rtde_control
        import rtde_receive
    except ImportError as error:
        raise missing_library("ur-rtde", "ur", error) from error
    return SimpleNamespace(
        RTDEControlInterface=rtde_control.RTDEControlInterface,
        RTDEReceiveInterface=rtde_receive.RTDEReceiveInterface,
        DashboardClient=dashboard_client.DashboardClient,
    )


def base_wrench_to_tool(wrench_base: np.ndarray, tcp_pose: np.ndarray) -> np.ndarray:
    """``(6,)`` wrench (N, N*m) about the TCP in the base frame -> the tool frame, given the TCP
    pose ``(6,)`` ``[x, y, z, rx, ry, rz]`` (m, rad) in the base frame."""
    rotation = matrix_from_rotvec(np.asarray(tcp_pose, dtype=np.float64)[3:])
    wrench = np.asarray(wrench_base, dtype=np.float64)
    return np.concatenate([rotation.T @ wrench[:3], rotation.T @ wrench[3:]])


class URArm(VendorArm):
    """A UR arm streaming absolute TCP targets over RTDE (see the module docstring).

    ``rtde`` injects the three ur_rtde classes (any object with ``RTDEControlInterface``,
    ``RTDEReceiveInterface`` and ``DashboardClient`` attributes, e.g. a ``FakeRTDE``); left
    ``None`` they come from ``robopref.hardware.fake.rtde`` when ``config.simulate`` and from
    the installed ur_rtde otherwise (imported at ``connect()``).

    The watchdog and force mode are armed by the first command after ``connect()`` or
    ``recover()``, not at ``connect()``: the watchdog stops the control script whenever no
    command arrives for ``1 / watchdog_min_hz`` s, so arming it before streaming would stop the
    arm during the pause before the first command. A script stopped by the watchdog (the caller
    stopped streaming) latches a stop: the arm holds until ``recover()``.
    """

    kind = "UR arm"
    link = "RTDE connection to the UR controller"
    link_check = "the network cable and the controller"
    fake = "robopref.hardware.fake.rtde:FakeRTDE"
    _load_library = staticmethod(_load_rtde)
    #: The ur_rtde classes in use (a ``FakeRTDE`` when simulating); loads them if needed.
    rtde = VendorArm.backend

    def __init__(self, config: URConfig, rtde: Any = None) -> None:
        super().__init__(config, rtde)
        self._control: Any = None
        self._receive: Any = None
        self._dashboard: Any = None
        self._streaming = False

    @property
    def is_connected(self) -> bool:
        return self._control is not None

    # --- lifecycle --------------------------------------------------------------------------

    def connect(self) -> None:
        if self.is_connected:
            return
        host, rtde = self.config.host, self.rtde
        opened: list[Any] = []
        try:
            # Receive first: it uploads nothing, so a wrong address fails before any script runs.
            receive = rtde.RTDEReceiveInterface(host, frequency=self.config.rtde_frequency_hz)
            opened.append(receive)
            control = rtde.RTDEControlInterface(host, frequency=self.config.rtde_frequency_hz)
            opened.append(control)
            dashboard = rtde.DashboardClient(host)
            dashboard.connect()
            opened.append(dashboard)
        except RuntimeError as error:
            for interface in opened:
                self._quietly(interface.disconnect)
            raise HardwareError(
                f"cannot connect to the UR controller at {host} ({error}): check the address, "
                "that the arm is powered on and in remote control, and the network"
            ) from error
        self._receive, self._control, self._dashboard = receive, control, dashboard
        self._streaming = False
        self._latched = bool(receive.isProtectiveStopped() or receive.isEmergencyStopped())

    def disconnect(self) -> None:
        if not self.is_connected:
            return
        control, receive, dashboard = self._control, self._receive, self._dashboard
        self._control = self._receive = self._dashboard = None
        self._streaming = False
        if control.isConnected():
            self._quietly(control.servoStop if self.config.mode == "servo" else control.speedStop)
            if self.config.force_mode is not None:
                self._quietly(control.forceModeStop)
            # Ends ur_rtde's control script so the arm is not left running it.
            self._quietly(control.stopScript)
        for interface in (control, receive, dashboard):
            self._quietly(interface.disconnect)

    # --- state ------------------------------------------------------------------------------

    def get_observation(self) -> ArmObservation:
        self._require_connection()
        try:
            self._poll_safety()
            pose = np.asarray(self._receive.getActualTCPPose(), dtype=np.float64)
            q = np.asarray(self._receive.getActualQ(), dtype=np.float64)
            qd = np.asarray(self._receive.getActualQd(), dtype=np.float64)
            wrench_base = np.asarray(self._receive.getActualTCPForce(), dtype=np.float64)
        except HardwareError:
            raise
        except RuntimeError as error:
            raise self._link_error(error) from error
        return ArmObservation(
            joint_positions=q,
            joint_velocities=qd,
            tcp_pose=pose,
            wrench=base_wrench_to_tool(wrench_base, pose),
            timestamp=time.monotonic(),
            protective_stop=self._latched,
        )

    # --- commands ---------------------------------------------------------------------------

    def send_action(self, target_pose: np.ndarray) -> np.ndarray:
        target = self._checked_target(target_pose)
        cfg, control = self.config, self._control
        try:
            self._poll_safety()
            if self._latched:
                raise ProtectiveStop(
                    f"UR arm at {cfg.host} is stopped: clear the cause, then call recover()"
                )
            if not self._streaming:
                self._start_streaming()
            period = self.control_period_s
            if cfg.mode == "servo":
                sent = target
                ok = control.servoL(
                    sent.tolist(),
                    cfg.speed,
                    cfg.acceleration,
                    period,
                    cfg.lookahead_time_s,
                    cfg.gain,
                )
            else:
                current = np.asarray(self._receive.getActualTCPPose(), dtype=np.float64)
                twist = self._clipped_twist(current, target, period)
                sent = _integrate(current, twist, period)
                ok = control.speedL(twist.tolist(), cfg.acceleration, period)
            control.kickWatchdog()
        except HardwareError:
            raise
        except RuntimeError as error:
            raise self._link_error(error) from error
        if not ok:
            self._command_refused()
        return sent.copy()

    def stop(self) -> None:
        self._latched = True
        self._streaming = False
        if not self.is_connected:
            return
        control = self._control
        try:
            if self.config.mode == "servo":
                control.servoStop(self.config.stop_deceleration)
            else:
                control.speedStop(self.config.stop_deceleration)
            if self.config.force_mode is not None:
                control.forceModeStop()
        except RuntimeError as error:
            raise HardwareError(
                f"could not send the stop to the UR controller at {self.config.host} ({error}): "
                "stop the arm from the teach pendant"
            ) from error

    def recover(self) -> None:
        self._require_connection()
        host = self.config.host
        try:
            for interface in (self._control, self._receive):
                if not interface.isConnected():
                    interface.reconnect()
            if self._receive.isEmergencyStopped():
                raise HardwareError(
                    f"UR arm at {host} is emergency-stopped: release the e-stop and re-enable the "
                    "arm on the pendant, then call recover()"
                )
            if self._receive.isProtectiveStopped():
                if not self._dashboard.isConnected():
                    self._dashboard.connect()
                self._dashboard.closeSafetyPopup()
                try:
                    self._dashboard.unlockProtectiveStop()
                except RuntimeError as error:
                    raise HardwareError(
                        f"UR arm at {host} refused to unlock its protective stop ({error}): the "
                        "controller allows it 5 s after the stop; wait, then call recover() again"
                    ) from error
            if not self._control.isProgramRunning() and not self._control.reuploadScript():
                raise HardwareError(
                    f"could not restart the ur_rtde control script on {host}: check the pendant "
                    "for a popup or a running program, then call recover() again"
                )
        except HardwareError:
            raise
        except RuntimeError as error:
            raise self._link_error(error) from error
        self._latched = False
        self._streaming = False

    # --- helpers ----------------------------------------------------------------------------

    def _poll_safety(self) -> None:
        if not (self._control.isConnected() and self._receive.isConnected()):
            raise RuntimeError("isConnected() is False")
        if self._receive.isProtectiveStopped() or self._receive.isEmergencyStopped():
            self._latched = True
            self._streaming = False

    def _start_streaming(self) -> None:
        control, cfg = self._control, self.config
        if cfg.force_mode is not None:
            fm = cfg.force_mode
            ok = control.forceMode(
                list(fm.task_frame),
                list(fm.selection_vector),
                list(fm.wrench),
                fm.type,
                list(fm.limits),
            )
            if not ok:
                self._command_refused()
        if not control.setWatchdog(cfg.watchdog_min_hz):
            self._command_refused()
        self._streaming = True

    def _command_refused(self) -> None:
        """The control script did not take a command: find out why and latch a stop."""
        self._latched = True
        self._streaming = False
        host = self.config.host
        if self._receive.isProtectiveStopped():
            raise ProtectiveStop(
                f"UR arm at {host} entered a protective stop (e.g. excessive force): clear the "
                "cause, then call recover()"
            )
        if self._receive.isEmergencyStopped():
            raise ProtectiveStop(f"UR arm at {host} is emergency-stopped: release the e-stop")
        raise ProtectiveStop(
            f"the ur_rtde control script on {host} is not running (the watchdog stops it when "
            f"commands pause longer than 1/{self.config.watchdog_min_hz} s, or it was stopped on "
            "the pendant); the arm holds: call recover()"
        )

    def _clipped_twist(self, current: np.ndarray, target: np.ndarray, period: float) -> np.ndarray:
        linear = (target[:3] - current[:3]) / period
        angular = pose_delta(current, target)[3:] / period
        for vector, limit in ((linear, self.config.speed), (angular, self.config.angular_speed)):
            norm = float(np.linalg.norm(vector))
            if norm > limit:
                vector *= limit / norm
        return np.concatenate([linear, angular])

    @staticmethod
    def _quietly(call) -> None:
        with contextlib.suppress(RuntimeError):
            call()


def _integrate(pose: np.ndarray, twist: np.ndarray, dt: float) -> np.ndarray:
    """The pose ``(6,)`` reached from ``pose`` after holding base-frame ``twist`` for ``dt`` s."""
    # Canonical (angle <= pi) like the poses the controller reports; not unwrapped toward pose.
    rotation = rotvec_from_quat(
        quat_mul(quat_from_rotvec(twist[3:] * dt), quat_from_rotvec(pose[3:]))
    )
    return np.concatenate([pose[:3] + twist[:3] * dt, rotation])


__all__ = ["URArm", "URConfig", "URForceMode", "base_wrench_to_tool"]
