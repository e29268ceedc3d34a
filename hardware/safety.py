"""The safety layer that wraps any ``ForceArm``: ``SafeArm(arm, SafetyConfig(...))``.

Borrowed from libfranka reflexes, UR safety functions and the polymetis / deoxys watchdogs:

* non-finite commands are refused before anything reaches the arm;
* every command is clipped into a workspace box (and, with ``max_orientation_deviation_rad``,
  its orientation into a cone around ``orientation_center``, as UR's tool-orientation
  restriction does), then limited per tick in translation and rotation relative to the last
  command sent (speed limits become per-tick limits through
  the arm's control period, so the tighter of step and speed wins);
* the wrench is read before each command and on every watchdog tick: over the force or
  torque limit the layer stops the arm and latches a protective stop, so motion halts within
  one control tick. With a wrist sensor (``wrist_sensor=``) its reading is the one that
  counts and the arm's own estimate is the cross-check (either over a limit stops); a wrist
  sensor that is stale, flags a device error or saturation, or is not running stops motion
  the same way, since without it the force limit would be blind;
* with ``contact_force_n`` (force-guarded motion), while the force is over that softer limit
  the part of a command that would press the tool further against the measured force is
  clipped away (with ``contact_compliance_m_per_n`` it also limits how hard a command may
  press below the guard, and backs the target off over it), so a policy that drives into a
  surface is held at the contact instead of tripping the stop;
* a watchdog holds the measured pose when commands stop arriving;
* ``recover()`` is the only way out of a latched stop.

Every clip, refusal, stop, recovery and hold is recorded as a ``SafetyEvent`` and, with
``event_log_path``, appended to a JSON Lines file and flushed at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from robopref.errors import ConfigError, NonFiniteError
from robopref.hardware.base import (
    ArmObservation,
    ForceArm,
    HardwareError,
    NotConnectedError,
    ProtectiveStop,
    SensorStatus,
    WrenchSensor,
)
from robopref.hardware.command_limits import clip_command, guard_contact
from robopref.hardware.safety_config import SafetyConfig, SafetyEvent, jsonable

__all__ = ["SafeArm", "SafetyConfig", "SafetyEvent"]


class SafeArm(ForceArm):
    """Wraps ``arm`` so every command obeys ``config`` (see the module docstring).

    ``send_action`` returns exactly what the wrapped arm returned for the clipped command.
    ``clock`` (s) timestamps events and drives the watchdog; inject a fake one in tests.
    ``wrist_sensor``: the F/T sensor at the tool whose reading the force limit uses;
    ``connect()`` starts it when it is not running (and ``disconnect()`` then stops it), so
    the arm never moves with a configured sensor switched off. A latched stop survives
    ``disconnect()``/``connect()``; only ``recover()`` clears it.
    """

    def __init__(
        self,
        arm: ForceArm,
        config: SafetyConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        wrist_sensor: WrenchSensor | None = None,
    ) -> None:
        self.arm = arm
        self.wrist_sensor = wrist_sensor
        self._started_sensor = False
        self.config = config if config is not None else SafetyConfig()
        self._clock = clock
        # Re-entrant: send_action latches stops and logs while holding it.
        self._lock = threading.RLock()
        self._latched = False
        self._stop_reason = ""
        self._reference: np.ndarray | None = None  # last command sent, for the step limits
        self._last_command_time = clock()
        self._held = False
        self._events: deque[SafetyEvent] = deque(maxlen=self.config.max_events)
        self._log_file: IO[str] | None = None
        self._watchdog: threading.Thread | None = None
        self._watchdog_quit = threading.Event()

    # ----------------------------------------------------------------- delegated state
    @property
    def n_joints(self) -> int:
        return self.arm.n_joints

    @property
    def is_connected(self) -> bool:
        return self.arm.is_connected

    @property
    def control_period_s(self) -> float:
        return self.arm.control_period_s

    @property
    def is_stopped(self) -> bool:
        return self._latched or self.arm.is_stopped

    @property
    def events(self) -> list[SafetyEvent]:
        with self._lock:
            return list(self._events)

    @property
    def translation_limit_m(self) -> float:
        """Largest TCP translation (m) allowed between consecutive commands."""
        return min(
            self.config.max_step_translation_m, self.config.max_speed_m_s * self.control_period_s
        )

    @property
    def rotation_limit_rad(self) -> float:
        """Largest TCP rotation (rad) allowed between consecutive commands."""
        return min(
            self.config.max_step_rotation_rad,
            self.config.max_angular_speed_rad_s * self.control_period_s,
        )

    # ----------------------------------------------------------------- lifecycle
    def connect(self) -> None:
        with self._lock:
            if self.wrist_sensor is not None and not self.wrist_sensor.is_running:
                self.wrist_sensor.start()
                self._started_sensor = True
            self.arm.connect()
            observation = self._checked(self.arm.get_observation())
            self._reference = np.array(observation.tcp_pose, dtype=np.float64)
            self._last_command_time = self._clock()
            self._held = False

    def disconnect(self) -> None:
        self.stop_watchdog()
        with self._lock:
            self.arm.disconnect()
            if self._started_sensor and self.wrist_sensor is not None:
                self.wrist_sensor.stop()
                self._started_sensor = False
            self._reference = None
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None

    # ----------------------------------------------------------------- observation
    def get_observation(self) -> ArmObservation:
        """The arm's observation with ``protective_stop`` set when a stop is latched.

        A wrench over a limit latches a stop (the observation is still returned); a
        non-finite observation latches a stop and raises ``HardwareError``.
        """
        with self._lock:
            observation = self._checked(self.arm.get_observation())
            return dataclasses.replace(
                observation, protective_stop=self.is_stopped or observation.protective_stop
            )

    def _checked(self, observation: ArmObservation) -> ArmObservation:
        broken = [
            name for name, value in observation.as_dict().items() if not np.all(np.isfinite(value))
        ]
        if broken:
            self._latch("non_finite_observation", fields=broken)
            raise HardwareError(
                f"arm reported non-finite {', '.join(broken)}: protective stop latched; "
                "check the arm and sensor, then call recover()"
            )
        wrench = np.asarray(observation.wrench, dtype=np.float64)
        force = float(np.linalg.norm(wrench[:3]))
        torque = float(np.linalg.norm(wrench[3:]))
        self._check_limits(force, torque, "arm_estimate")
        return observation

    def _check_limits(self, force: float, torque: float, source: str) -> None:
        if force > self.config.max_force_n:
            self._latch("force_limit", force_n=force, limit_n=self.config.max_force_n,
                        source=source)
        elif torque > self.config.max_torque_nm:
            self._latch("torque_limit", torque_nm=torque, limit_nm=self.config.max_torque_nm,
                        source=source)

    def _check_wrist(self) -> float:
        """Latch a stop on a wrist reading over a limit, or on a sensor that cannot vouch for
        the force (stale, device error, saturated, not running, non-finite). Returns the
        reading's ``|force|`` (N); 0 without a sensor or when it latched."""
        sensor = self.wrist_sensor
        if sensor is None:
            return 0.0
        try:
            reading = sensor.read()
        except HardwareError as exc:
            self._latch("wrist_sensor_error", message=str(exc))
            return 0.0
        status = SensorStatus(reading.status)
        for flag, reason in (
            (SensorStatus.STALE, "wrist_sensor_stale"),
            (SensorStatus.DEVICE_ERROR, "wrist_sensor_error"),
            (SensorStatus.SATURATED, "wrist_sensor_saturated"),
        ):
            if flag in status:
                self._latch(reason, status=int(status), sample_timestamp_s=reading.timestamp)
                return 0.0
        wrench = np.asarray(reading.wrench, dtype=np.float64)
        if wrench.shape != (6,) or not np.all(np.isfinite(wrench)):
            self._latch("wrist_sensor_error", wrench=wrench)
            return 0.0
        force = float(np.linalg.norm(wrench[:3]))
        self._check_limits(force, float(np.linalg.norm(wrench[3:])), "wrist_sensor")
        return force

    # ----------------------------------------------------------------- commands
    def send_action(self, target_pose: np.ndarray) -> np.ndarray:
        """Clips ``target_pose`` ``(6,)`` (m, rad) to the limits, sends it, and returns what
        the wrapped arm returned. Raises ``NonFiniteError`` (nothing sent) for NaN/inf,
        ``ProtectiveStop`` while a stop is latched or when the wrench is over a limit, and
        ``HardwareError`` when the arm reports non-finite state."""
        with self._lock:
            if not self.arm.is_connected:
                raise NotConnectedError(
                    "arm is not connected: call connect() or use 'with arm:' before commanding"
                )
            requested = np.array(target_pose, dtype=np.float64)
            if requested.shape != (6,):
                raise ValueError(
                    f"expected a (6,) TCP target [x, y, z, rx, ry, rz], got {requested.shape}"
                )
            if not np.all(np.isfinite(requested)):
                self._log("non_finite_command", requested=requested)
                raise NonFiniteError(
                    f"refused non-finite TCP target {requested.tolist()}: nothing was sent"
                )
            if self.is_stopped:
                raise ProtectiveStop("protective stop latched: call recover() before commanding")
            observation = self._checked(self.arm.get_observation())
            wrist_force = self._check_wrist()
            if self._latched:
                fix = (
                    "check the wrist sensor's cable, power and network"
                    if self._stop_reason.startswith("wrist_sensor")
                    else "remove the load"
                )
                raise ProtectiveStop(
                    f"protective stop ({self._stop_reason}): nothing was sent; "
                    f"{fix}, then call recover()"
                )
            if self._reference is None:
                self._reference = np.array(observation.tcp_pose, dtype=np.float64)
            # Guard first: the box and step limits then hold for the guarded command too (a
            # step clip scales the whole move, so it never turns a back-off into a push).
            guarded, clips = guard_contact(
                requested, self._reference, observation.wrench[:3], observation.tcp_pose[3:],
                wrist_force, self.config, self.translation_limit_m,
            )
            command, more = clip_command(guarded, self._reference, self.config,
                                         self.translation_limit_m, self.rotation_limit_rad)
            for clip in clips + more:
                self._log("clip", **clip)
            try:
                sent = self.arm.send_action(command)
            except ProtectiveStop as exc:
                self._latch("arm_stop", message=str(exc))
                raise
            sent_array = np.asarray(sent, dtype=np.float64)
            # Step limits count from what the arm really took, which may be clipped further.
            self._reference = sent_array.copy() if np.all(np.isfinite(sent_array)) else command
            self._last_command_time = self._clock()
            self._held = False
            return sent

    # ----------------------------------------------------------------- stops
    def _latch(self, reason: str, **detail: Any) -> None:
        if self._latched:
            return
        self._latched = True
        self._stop_reason = reason
        self._halt_arm()
        self._log("protective_stop", reason=reason, **detail)

    def stop(self) -> None:
        """Halts the arm now and latches a protective stop until ``recover()``."""
        with self._lock:
            if self._latched:
                self._halt_arm()
                return
            self._latch("stop_requested")

    def _halt_arm(self) -> None:
        # A disconnected arm is not moving; the latch holds either way.
        with contextlib.suppress(NotConnectedError):
            self.arm.stop()

    def recover(self) -> None:
        """Clears the latch and the arm's own stop; step limits then count from the
        measured pose."""
        with self._lock:
            self.arm.recover()
            self._latched = False
            observation = self._checked(self.arm.get_observation())
            self._reference = np.array(observation.tcp_pose, dtype=np.float64)
            self._last_command_time = self._clock()
            self._held = False
            self._log("recover", pose=self._reference)

    def sync_reference(self) -> None:
        """Take the measured pose as the reference of the step limits, e.g. after a simulated
        reset teleported the arm; unlike ``recover()`` it leaves a latched stop latched."""
        with self._lock:
            observation = self._checked(self.arm.get_observation())
            self._reference = np.array(observation.tcp_pose, dtype=np.float64)
            self._last_command_time = self._clock()
            self._held = False

    # ----------------------------------------------------------------- watchdog
    def poll(self, now: float | None = None) -> bool:
        """One watchdog check: latch a stop on an over-limit wrench, and when no command came
        for ``watchdog_timeout_s`` command the measured pose once (until the next command).
        Returns whether it commanded a hold."""
        with self._lock:
            now = self._clock() if now is None else now
            if not self.arm.is_connected or self.is_stopped:
                return False
            try:
                observation = self._checked(self.arm.get_observation())
            except HardwareError:
                return False  # latched and logged by _checked
            self._check_wrist()
            if self._latched or self._held:
                return False
            idle = now - self._last_command_time
            if idle <= self.config.watchdog_timeout_s:
                return False
            hold = np.array(observation.tcp_pose, dtype=np.float64)
            try:
                sent = self.arm.send_action(hold)
            except ProtectiveStop as exc:
                self._latch("arm_stop", message=str(exc))
                return False
            sent_array = np.asarray(sent, dtype=np.float64)
            self._reference = sent_array.copy() if np.all(np.isfinite(sent_array)) else hold
            self._held = True
            self._log("watchdog_hold", idle_s=idle, pose=hold)
            return True

    def start_watchdog(self, period_s: float | None = None) -> None:
        """Runs ``poll()`` every ``period_s`` s (default: the control period) in a daemon
        thread until ``stop_watchdog()`` or ``disconnect()``."""
        period = self.control_period_s if period_s is None else float(period_s)
        if not 0 < period < math.inf:
            raise ConfigError(f"watchdog period_s={period_s!r} must be positive seconds")
        with self._lock:
            if self._watchdog is not None and self._watchdog.is_alive():
                return
            self._watchdog_quit.clear()
            self._watchdog = threading.Thread(
                target=self._watch, args=(period,), name="robopref-safety-watchdog", daemon=True
            )
            self._watchdog.start()

    def stop_watchdog(self) -> None:
        thread = self._watchdog
        if thread is None:
            return
        self._watchdog_quit.set()
        if thread is not threading.current_thread():
            thread.join()
        self._watchdog = None

    @property
    def watchdog_running(self) -> bool:
        return self._watchdog is not None and self._watchdog.is_alive()

    def _watch(self, period: float) -> None:
        while not self._watchdog_quit.wait(period):
            try:
                self.poll()
            except Exception as exc:  # the thread must outlive one bad poll
                with self._lock:
                    self._log("watchdog_error", error=f"{type(exc).__name__}: {exc}")

    # ----------------------------------------------------------------- events
    def _log(self, kind: str, **detail: Any) -> None:
        event = SafetyEvent(self._clock(), kind, jsonable(detail))
        self._events.append(event)
        path = self.config.event_log_path
        if path is None:
            return
        if self._log_file is None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(path, "a", encoding="utf-8")  # noqa: SIM115  (kept open)
        self._log_file.write(event.to_json() + "\n")
        self._log_file.flush()
