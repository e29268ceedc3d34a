"""In-process FAKE of the ur_rtde 1.6.5 Python modules ``rtde_control``, ``rtde_receive`` and
``dashboard_client`` (SDU Robotics, https://sdurobotics.gitlab.io/ur_rtde/), for tests and dry
runs without a Universal Robots controller. No network traffic, no real robot.

``FakeRTDE()`` is a namespace with the three classes under their real names and signatures::

    rtde = FakeRTDE()
    control = rtde.RTDEControlInterface("192.0.2.10", frequency=500.0)
    receive = rtde.RTDEReceiveInterface("192.0.2.10", frequency=500.0)
    dashboard = rtde.DashboardClient("192.0.2.10")

All interfaces opened through one ``FakeRTDE`` on the same hostname share one ``FakeURRobot``
(``rtde.robot(hostname)``), as the three real interfaces talk to one controller. A fresh
``FakeRTDE`` has fresh robots, so tests stay independent.

What is modelled, and how the real controller behaves there:

* A kinematic TCP: ``servoL(pose, speed, acceleration, time, lookahead_time, gain)`` moves the
  TCP toward ``pose`` for ``time`` seconds at most ``max_tcp_speed`` m/s (rotation at most
  ``max_tcp_rot_speed`` rad/s); ``speedL(xd, acceleration, time)`` integrates the base-frame
  twist for ``time`` (or ``1/frequency`` when ``time`` is 0). Every command advances the fake
  controller clock by that time (``getTimestamp()``). Joint values are a stand-in that follows
  the pose linearly, not UR kinematics.
* ``getActualTCPForce()`` is in the BASE frame, as on the real controller; tests set it with
  ``inject_wrench``. A force above ``force_limit_n`` trips a protective stop, as the UR safety
  system does.
* A protective stop halts motion and ends the control script (``isProgramRunning()`` False,
  commands return False) until the dashboard ``unlockProtectiveStop()`` - refused, as on the
  real controller, within 5 s of the stop - and ``reuploadScript()``/``reconnect()``.
* ``setWatchdog(min_frequency)``: when the controller clock advances by more than
  ``1/min_frequency`` without a command, the script is stopped (``rtde_set_watchdog(...,
  "stop")`` in ur_rtde's control script). ``advance(seconds)`` lets time pass without commands.
* ``drop_connection()``: every interface reports ``isConnected()`` False and control calls
  raise ``RuntimeError`` (what the C++ ``std::runtime_error`` becomes through pybind11) until
  ``restore_connection()`` and ``reconnect()``.
* Every call on every interface is appended to ``robot.calls`` as ``(interface, method, args)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

#: Safety mode codes of ``getSafetyMode()`` (UR RTDE ``safety_mode``).
SAFETY_MODE_NORMAL = 1
SAFETY_MODE_PROTECTIVE_STOP = 3
#: ``getRobotMode()``: 7 = RUNNING.
ROBOT_MODE_RUNNING = 7
#: The UR controller refuses to unlock a protective stop earlier than this (s).
UNLOCK_DELAY_S = 5.0

_HOME_POSE = np.array([0.4, -0.1, 0.3, np.pi, 0.0, 0.0])
_HOME_Q = np.array([0.0, -1.57, 1.57, -1.57, -1.57, 0.0])


@dataclass
class FakeURRobot:
    """The simulated controller shared by all interfaces of one hostname.

    Attributes:
        hostname: the controller address the interfaces were opened with.
        tcp_pose: ``(6,)`` actual TCP pose ``[x, y, z, rx, ry, rz]`` (m, rad), base frame.
        tcp_speed: ``(6,)`` actual TCP twist (m/s, rad/s), base frame.
        wrench_base: ``(6,)`` TCP wrench (N, N*m) in the BASE frame, what the controller reports.
        force_limit_n: a force norm (N) above this trips a protective stop.
        max_tcp_speed: m/s, the most ``servoL`` moves the TCP per second.
        max_tcp_rot_speed: rad/s, likewise for orientation.
        clock_s: s, the controller clock (``getTimestamp()``).
        calls: every call ``(interface, method, args)`` in order.
    """

    hostname: str
    tcp_pose: np.ndarray = field(default_factory=lambda: _HOME_POSE.copy())
    tcp_speed: np.ndarray = field(default_factory=lambda: np.zeros(6))
    wrench_base: np.ndarray = field(default_factory=lambda: np.zeros(6))
    force_limit_n: float = 150.0
    max_tcp_speed: float = 1.0
    max_tcp_rot_speed: float = 3.0
    clock_s: float = 0.0
    frequency_hz: float = 500.0
    network_up: bool = True
    program_running: bool = True
    protective_stopped: bool = False
    emergency_stopped: bool = False
    stopped_at_s: float = 0.0
    safety_popup: bool = False
    watchdog_min_hz: float | None = None
    last_input_s: float = 0.0
    force_mode: tuple | None = None
    ft_offset: np.ndarray = field(default_factory=lambda: np.zeros(6))
    calls: list[tuple[str, str, tuple]] = field(default_factory=list)

    # --- test hooks -------------------------------------------------------------------------

    def inject_wrench(self, wrench_base) -> None:
        """Sets the base-frame TCP wrench ``(6,)`` (N, N*m); above ``force_limit_n`` it trips a
        protective stop, as the UR safety system does on excessive force."""
        self.wrench_base = np.asarray(wrench_base, dtype=np.float64).copy()
        if np.linalg.norm(self.wrench_base[:3]) > self.force_limit_n:
            self.trigger_protective_stop()

    def trigger_protective_stop(self) -> None:
        """Enters a protective stop: motion halts, the control script ends, a popup shows."""
        self.protective_stopped = True
        self.program_running = False
        self.safety_popup = True
        self.stopped_at_s = self.clock_s
        self.tcp_speed = np.zeros(6)

    def drop_connection(self) -> None:
        """The network goes away: interfaces report disconnected and control calls raise."""
        self.network_up = False

    def restore_connection(self) -> None:
        self.network_up = True

    def advance(self, seconds: float) -> None:
        """Lets controller time pass with no command (the watchdog may fire)."""
        self.clock_s += float(seconds)
        self._check_watchdog()

    def count(self, method: str) -> int:
        """How many times ``method`` was called on any interface."""
        return sum(1 for _, name, _ in self.calls if name == method)

    def last(self, method: str) -> tuple:
        """The arguments of the latest call of ``method``."""
        for _, name, args in reversed(self.calls):
            if name == method:
                return args
        raise LookupError(f"{method} was never called")

    # --- controller behaviour ---------------------------------------------------------------

    @property
    def q(self) -> np.ndarray:
        # A stand-in that moves with the pose so joint readings change plausibly.
        return _HOME_Q + (self.tcp_pose - _HOME_POSE)

    def _check_watchdog(self) -> None:
        if (
            self.watchdog_min_hz
            and self.program_running
            and self.clock_s - self.last_input_s > 1.0 / self.watchdog_min_hz
        ):
            self.program_running = False
            self.tcp_speed = np.zeros(6)

    def _input(self, dt: float) -> bool:
        """Book-keeping of one control-script input; False when the script cannot act."""
        self.clock_s += dt
        self._check_watchdog()
        if not self.program_running or self.protective_stopped:
            return False
        self.last_input_s = self.clock_s
        return True

    def _move_toward(self, target: np.ndarray, dt: float) -> None:
        start = self.tcp_pose.copy()
        step = target[:3] - start[:3]
        dist = float(np.linalg.norm(step))
        reach = self.max_tcp_speed * dt
        if dist > reach:
            step *= reach / dist
        r_now = Rotation.from_rotvec(start[3:])
        r_delta = Rotation.from_rotvec(target[3:]) * r_now.inv()
        angle = float(np.linalg.norm(r_delta.as_rotvec()))
        turn = self.max_tcp_rot_speed * dt
        if angle > turn:
            r_delta = Rotation.from_rotvec(r_delta.as_rotvec() * (turn / angle))
        self.tcp_pose = np.concatenate([start[:3] + step, (r_delta * r_now).as_rotvec()])
        self.tcp_speed = (self.tcp_pose - start) / dt if dt > 0 else np.zeros(6)

    def _integrate(self, xd: np.ndarray, dt: float) -> None:
        start = self.tcp_pose.copy()
        r_new = Rotation.from_rotvec(xd[3:] * dt) * Rotation.from_rotvec(start[3:])
        self.tcp_pose = np.concatenate([start[:3] + xd[:3] * dt, r_new.as_rotvec()])
        self.tcp_speed = xd.copy()


class _Interface:
    _name = "interface"

    def __init__(self, robot: FakeURRobot) -> None:
        self._robot = robot
        self._open = True

    def _log(self, method: str, *args: Any) -> None:
        self._robot.calls.append((self._name, method, args))

    def _require_link(self, method: str) -> None:
        if not (self._robot.network_up and self._open):
            raise RuntimeError(
                f"{self._name}.{method}: not connected to {self._robot.hostname} (fake)"
            )


class FakeRTDEControlInterface(_Interface):
    """Mirrors ``rtde_control.RTDEControlInterface(hostname, frequency=-1.0, flags=...,
    ur_cap_port=50002, rt_priority=0)``."""

    _name = "control"

    def __init__(self, robot: FakeURRobot, frequency: float = -1.0) -> None:
        super().__init__(robot)
        if not robot.network_up:
            raise RuntimeError(f"Failed to connect to the robot at {robot.hostname} (fake)")
        self.frequency = robot.frequency_hz if frequency <= 0 else float(frequency)
        robot.program_running = not robot.protective_stopped
        robot.last_input_s = robot.clock_s
        self._log("__init__", robot.hostname, frequency)

    def _command(self, method: str, args: tuple, dt: float = 0.0) -> bool:
        self._log(method, *args)
        self._require_link(method)
        return self._robot._input(dt)

    def isConnected(self) -> bool:
        self._log("isConnected")
        return self._robot.network_up and self._open

    def isProgramRunning(self) -> bool:
        self._log("isProgramRunning")
        self._require_link("isProgramRunning")
        return self._robot.program_running

    def servoL(self, pose, speed, acceleration, time, lookahead_time, gain) -> bool:
        args = (list(pose), speed, acceleration, time, lookahead_time, gain)
        ok = self._command("servoL", args, dt=float(time))
        if ok:
            self._robot._move_toward(np.asarray(pose, dtype=np.float64), float(time))
        return ok

    def speedL(self, xd, acceleration=0.25, time=0.0) -> bool:
        dt = float(time) if time > 0 else 1.0 / self.frequency
        ok = self._command("speedL", (list(xd), acceleration, time), dt=dt)
        if ok:
            self._robot._integrate(np.asarray(xd, dtype=np.float64), dt)
        return ok

    def servoStop(self, a=10.0) -> bool:
        ok = self._command("servoStop", (a,))
        self._robot.tcp_speed = np.zeros(6)
        return ok

    def speedStop(self, a=10.0) -> bool:
        ok = self._command("speedStop", (a,))
        self._robot.tcp_speed = np.zeros(6)
        return ok

    def forceMode(self, task_frame, selection_vector, wrench, type, limits) -> bool:
        args = (list(task_frame), list(selection_vector), list(wrench), type, list(limits))
        ok = self._command("forceMode", args)
        if ok:
            self._robot.force_mode = args
        return ok

    def forceModeStop(self) -> bool:
        ok = self._command("forceModeStop", ())
        self._robot.force_mode = None
        return ok

    def zeroFtSensor(self) -> bool:
        ok = self._command("zeroFtSensor", ())
        if ok:
            self._robot.ft_offset = self._robot.wrench_base.copy()
        return ok

    def setWatchdog(self, min_frequency=10.0) -> bool:
        ok = self._command("setWatchdog", (min_frequency,))
        if ok:
            self._robot.watchdog_min_hz = float(min_frequency)
        return ok

    def kickWatchdog(self) -> bool:
        return self._command("kickWatchdog", ())

    def initPeriod(self) -> float:
        # The real one returns a std::chrono time point; a float of controller time stands in.
        self._log("initPeriod")
        return self._robot.clock_s

    def waitPeriod(self, t_cycle_start) -> None:
        # The controller clock advances with commands, so there is nothing to wait for.
        self._log("waitPeriod", t_cycle_start)

    def triggerProtectiveStop(self) -> bool:
        self._log("triggerProtectiveStop")
        self._require_link("triggerProtectiveStop")
        self._robot.trigger_protective_stop()
        return True

    def reuploadScript(self) -> bool:
        self._log("reuploadScript")
        self._require_link("reuploadScript")
        if self._robot.protective_stopped:
            return False
        self._robot.program_running = True
        self._robot.watchdog_min_hz = None
        self._robot.last_input_s = self._robot.clock_s
        return True

    def reconnect(self) -> bool:
        self._log("reconnect")
        if not self._robot.network_up:
            raise RuntimeError(f"Failed to connect to the robot at {self._robot.hostname} (fake)")
        self._open = True
        if self._robot.protective_stopped:
            return False
        self._robot.program_running = True
        self._robot.watchdog_min_hz = None
        self._robot.last_input_s = self._robot.clock_s
        return True

    def stopScript(self) -> None:
        self._log("stopScript")
        if self._robot.network_up and self._open:
            self._robot.program_running = False
            self._robot.watchdog_min_hz = None

    def disconnect(self) -> None:
        self._log("disconnect")
        self._open = False


class FakeRTDEReceiveInterface(_Interface):
    """Mirrors ``rtde_receive.RTDEReceiveInterface(hostname, frequency=-1.0, variables=[],
    verbose=False, use_upper_range_registers=False, rt_priority=0)``. Getters return the last
    synchronised values; after the link drops they return the stale ones (as the real one does
    between reconnects) while ``isConnected()`` is False."""

    _name = "receive"

    def __init__(self, robot: FakeURRobot, frequency: float = -1.0) -> None:
        super().__init__(robot)
        if not robot.network_up:
            raise RuntimeError(f"Failed to connect to {robot.hostname} (fake)")
        self._log("__init__", robot.hostname, frequency)
        self._stale: dict[str, Any] = {}

    def _get(self, method: str, value: Any) -> Any:
        self._log(method)
        if self._robot.network_up and self._open:
            self._stale[method] = value
            return value
        return self._stale.get(method, value)

    def isConnected(self) -> bool:
        self._log("isConnected")
        return self._robot.network_up and self._open

    def reconnect(self) -> bool:
        self._log("reconnect")
        if not self._robot.network_up:
            raise RuntimeError(f"Failed to connect to {self._robot.hostname} (fake)")
        self._open = True
        return True

    def getTimestamp(self) -> float:
        return self._get("getTimestamp", self._robot.clock_s)

    def getActualQ(self) -> list[float]:
        return self._get("getActualQ", self._robot.q.tolist())

    def getActualQd(self) -> list[float]:
        return self._get("getActualQd", self._robot.tcp_speed.tolist())

    def getActualTCPPose(self) -> list[float]:
        return self._get("getActualTCPPose", self._robot.tcp_pose.tolist())

    def getActualTCPSpeed(self) -> list[float]:
        return self._get("getActualTCPSpeed", self._robot.tcp_speed.tolist())

    def getActualTCPForce(self) -> list[float]:
        wrench = self._robot.wrench_base - self._robot.ft_offset
        return self._get("getActualTCPForce", wrench.tolist())

    def getSafetyMode(self) -> int:
        mode = SAFETY_MODE_PROTECTIVE_STOP if self._robot.protective_stopped else SAFETY_MODE_NORMAL
        return self._get("getSafetyMode", mode)

    def getRobotMode(self) -> int:
        return self._get("getRobotMode", ROBOT_MODE_RUNNING)

    def isProtectiveStopped(self) -> bool:
        return self._get("isProtectiveStopped", self._robot.protective_stopped)

    def isEmergencyStopped(self) -> bool:
        return self._get("isEmergencyStopped", self._robot.emergency_stopped)

    def disconnect(self) -> None:
        self._log("disconnect")
        self._open = False


class FakeDashboardClient(_Interface):
    """Mirrors ``dashboard_client.DashboardClient(hostname, port=29999, verbose=False)``;
    ``connect(timeout_ms=2000)`` must come first, as with the real client."""

    _name = "dashboard"

    def __init__(self, robot: FakeURRobot) -> None:
        super().__init__(robot)
        self._open = False
        self._log("__init__", robot.hostname)

    def connect(self, timeout_ms: int = 2000) -> None:
        self._log("connect", timeout_ms)
        if not self._robot.network_up:
            raise RuntimeError(f"Failed to connect to dashboard server at {self._robot.hostname}")
        self._open = True

    def isConnected(self) -> bool:
        self._log("isConnected")
        return self._robot.network_up and self._open

    def closeSafetyPopup(self) -> None:
        self._log("closeSafetyPopup")
        self._require_link("closeSafetyPopup")
        self._robot.safety_popup = False

    def unlockProtectiveStop(self) -> None:
        self._log("unlockProtectiveStop")
        self._require_link("unlockProtectiveStop")
        robot = self._robot
        if robot.protective_stopped and robot.clock_s - robot.stopped_at_s < UNLOCK_DELAY_S:
            # ur_rtde throws std::logic_error with the controller's reply.
            raise RuntimeError(
                "Unlock protective stop failure: Cannot unlock protective stop until 5s after "
                "occurrence. Always inspect cause of protective stop before unlocking"
            )
        robot.protective_stopped = False

    def safetymode(self) -> str:
        self._log("safetymode")
        self._require_link("safetymode")
        return "PROTECTIVE_STOP" if self._robot.protective_stopped else "NORMAL"

    def disconnect(self) -> None:
        self._log("disconnect")
        self._open = False


class FakeRTDE:
    """The three ur_rtde classes under their real names, sharing one ``FakeURRobot`` per host.

    ``FakeRTDE().RTDEControlInterface(hostname, frequency=...)`` etc.; ``robot(hostname)``
    returns (creating on first use) the simulated controller for test hooks and call records.
    """

    def __init__(self) -> None:
        self._robots: dict[str, FakeURRobot] = {}

    def robot(self, hostname: str) -> FakeURRobot:
        if hostname not in self._robots:
            self._robots[hostname] = FakeURRobot(hostname=hostname)
        return self._robots[hostname]

    def RTDEControlInterface(self, hostname: str, frequency: float = -1.0, *args, **kwargs):
        return FakeRTDEControlInterface(self.robot(hostname), frequency)

    def RTDEReceiveInterface(self, hostname: str, frequency: float = -1.0, *args, **kwargs):
        return FakeRTDEReceiveInterface(self.robot(hostname), frequency)

    def DashboardClient(self, hostname: str, port: int = 29999, verbose: bool = False):
        return FakeDashboardClient(self.robot(hostname))


__all__ = [
    "FakeDashboardClient",
    "FakeRTDE",
    "FakeRTDEControlInterface",
    "FakeRTDEReceiveInterface",
    "FakeURRobot",
]
