"""Teleoperation devices: keyboard, SpaceMouse, gamepad, and a scripted operator.

Every device turns its input into a ``TeleopCommand`` per control tick: ``delta_pose (6,)``
``[dx, dy, dz, drx, dry, drz]`` (m, rad) in the arm's base frame. Analog inputs are first
normalised to ``[-1, 1]`` per axis, passed through a deadzone (a fraction of full deflection
that reads as zero, the rest rescaled so the output stays continuous) and multiplied by
``translation_scale`` (m per tick at full deflection) or ``rotation_scale`` (rad per tick at
full deflection). A control loop at 50 Hz with ``translation_scale=0.005`` therefore moves
at most 0.25 m/s; the arm's safety layer clips further.

Named momentary buttons (``"save"``, ``"discard"``, ``"rerecord"``, ``"quit"``) are reported
once per press, on the first ``read()`` after it. ``enabled`` is the dead-man: when False
``delta_pose`` is zero and the arm should hold. ``intervention`` marks ticks where the person
takes over from a running policy.

Real devices are read by a background thread, so ``read()`` never blocks. The scripted
operator has no device: it computes its command in ``observe()``.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import struct
import sys
import termios
import threading
import time
import tty
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robopref.errors import ConfigError, NonFiniteError
from robopref.hardware.base import (
    ArmObservation,
    HardwareError,
    NotConnectedError,
    Teleop,
    TeleopCommand,
)

BUTTON_NAMES = ("save", "discard", "rerecord", "quit")


def apply_deadzone(axes: np.ndarray, deadzone: float) -> np.ndarray:
    """``axes`` in ``[-1, 1]`` with ``|a| <= deadzone`` set to 0 and the rest rescaled to
    ``sign(a) * (|a| - deadzone) / (1 - deadzone)``, so output grows from 0 at the edge."""
    axes = np.clip(np.asarray(axes, dtype=np.float64), -1.0, 1.0)
    magnitude = np.maximum(np.abs(axes) - deadzone, 0.0) / (1.0 - deadzone)
    return np.sign(axes) * magnitude


def _check_scale(prefix: str, translation: float, rotation: float) -> None:
    for name, value in (("translation_scale", translation), ("rotation_scale", rotation)):
        if not np.isfinite(value) or value < 0:
            raise ConfigError(f"{prefix} {name}={value} must be a finite number >= 0")


def _check_buttons(prefix: str, buttons: dict, enable_button: int | None) -> dict[int, str]:
    mapping = {int(k): str(v) for k, v in dict(buttons).items()}
    for index, name in mapping.items():
        if name not in BUTTON_NAMES:
            raise ConfigError(
                f"{prefix} button {index} is mapped to '{name}': use one of "
                f"{', '.join(BUTTON_NAMES)}"
            )
        if index < 0:
            raise ConfigError(f"{prefix} button index {index} must be >= 0")
    if enable_button is not None and int(enable_button) in mapping:
        raise ConfigError(
            f"{prefix} button {enable_button} is both enable_button and "
            f"'{mapping[int(enable_button)]}': map them to different buttons"
        )
    return mapping


def _check_deadzone(prefix: str, deadzone: float) -> None:
    if not 0.0 <= deadzone < 1.0:
        raise ConfigError(f"{prefix} deadzone={deadzone} must be in [0, 1): e.g. 0.1")


def _check_signs(prefix: str, signs) -> tuple[float, ...]:
    signs = tuple(float(s) for s in signs)
    if len(signs) != 6 or not all(np.isfinite(signs)):
        raise ConfigError(f"{prefix} axis_signs needs 6 finite numbers, got {signs}")
    return signs


class _DeviceTeleop(Teleop):
    """Lifecycle and command assembly shared by the threaded devices.

    Subclasses open and close the device and implement ``_poll`` (one bounded wait for input,
    updating state under ``self._lock``) and ``_axes`` (the current normalised ``(6,)``
    deflection, its ``enabled`` and ``intervention`` flags, with the lock held).
    """

    name = "teleop"

    def __init__(self, translation_scale: float, rotation_scale: float):
        self._scale = np.array([translation_scale] * 3 + [rotation_scale] * 3, dtype=np.float64)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._pressed: set[str] = set()
        self._failure: BaseException | None = None

    @property
    def is_connected(self) -> bool:
        return self._thread is not None

    @abstractmethod
    def _open(self) -> None: ...

    @abstractmethod
    def _close(self) -> None: ...

    @abstractmethod
    def _poll(self) -> None: ...

    @abstractmethod
    def _axes(self) -> tuple[np.ndarray, bool, bool]: ...

    def connect(self) -> None:
        if self.is_connected:
            return
        self._open()
        self._pressed.clear()
        self._failure = None
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def disconnect(self) -> None:
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join()
        self._thread = None
        self._close()

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                self._poll()
        except Exception as error:  # the reader must not die silently: read() re-raises
            with self._lock:
                self._failure = error

    def _press(self, button: str) -> None:
        """Records a momentary button; called with the lock held."""
        self._pressed.add(button)

    def read(self) -> TeleopCommand:
        if not self.is_connected:
            raise NotConnectedError(f"{self.name} is not connected: call connect() first")
        with self._lock:
            if self._failure is not None:
                raise HardwareError(
                    f"{self.name} stopped reading its device ({self._failure}): check the "
                    "connection and reconnect"
                )
            axes, enabled, intervention = self._axes()
            buttons = frozenset(self._pressed)
            self._pressed.clear()
        delta = axes * self._scale if enabled else np.zeros(6)
        return TeleopCommand(
            delta_pose=delta,
            enabled=bool(enabled),
            intervention=bool(intervention and enabled),
            buttons=buttons,
            timestamp=time.monotonic(),
        )


# ---------------------------------------------------------------------------------- keyboard

#: key -> (axis of ``delta_pose``, direction).
KEY_MOTION: dict[str, tuple[int, float]] = {
    "w": (0, +1.0),
    "s": (0, -1.0),
    "a": (1, +1.0),
    "d": (1, -1.0),
    "r": (2, +1.0),
    "f": (2, -1.0),
    "i": (3, +1.0),
    "k": (3, -1.0),
    "j": (4, +1.0),
    "l": (4, -1.0),
    "u": (5, +1.0),
    "o": (5, -1.0),
}
#: key -> momentary button.
KEY_BUTTONS: dict[str, str] = {
    "\n": "save",
    "\r": "save",
    "\x7f": "discard",
    "\x08": "discard",
    "x": "discard",
    "n": "rerecord",
    "q": "quit",
}
KEY_ENGAGE = " "


@dataclass
class KeyboardConfig:
    """Keyboard teleop. Keys (lower case; escape sequences such as arrows are ignored):

    ``w``/``s`` +x/-x, ``a``/``d`` +y/-y, ``r``/``f`` +z/-z, ``i``/``k`` +rx/-rx,
    ``j``/``l`` +ry/-ry, ``u``/``o`` +rz/-rz; each press is one tick of full deflection on
    that axis (hold a key and the terminal's auto-repeat streams them). Space toggles
    *engaged*: while engaged, ``enabled`` and ``intervention`` are True and motion keys move
    the arm; while not, the arm holds. Enter = save, Backspace or ``x`` = discard,
    ``n`` = re-record, ``q`` = quit.

    Attributes:
        translation_scale: m per tick for one press of a translation key.
        rotation_scale: rad per tick for one press of a rotation key.
        start_engaged: begin engaged instead of waiting for the first space.
    """

    translation_scale: float = 0.005
    rotation_scale: float = 0.05
    start_engaged: bool = False

    def __post_init__(self) -> None:
        _check_scale("keyboard", self.translation_scale, self.rotation_scale)


class KeyboardTeleop(_DeviceTeleop):
    """Keys from a terminal (stdin, switched to cbreak mode while connected when it is a tty)
    or from ``source``, any readable file descriptor (a pipe in tests); the caller keeps
    ownership of ``source``. Keys pressed between two reads add up, clipped to one full
    deflection per axis."""

    name = "keyboard teleop"

    def __init__(self, config: KeyboardConfig, source: int | None = None):
        super().__init__(config.translation_scale, config.rotation_scale)
        self.config = config
        self._source = source
        self._fd: int | None = None
        self._saved_mode: list | None = None
        self._pending = np.zeros(6)
        self._engaged = config.start_engaged
        self._eof = False
        self._escape = False

    def _open(self) -> None:
        if self._source is not None:
            fd = self._source
        else:
            try:
                fd = sys.stdin.fileno()
            except (AttributeError, ValueError, OSError) as error:
                raise HardwareError(
                    f"keyboard teleop needs a terminal on stdin ({error}): run it in an "
                    "interactive shell"
                ) from error
        if os.isatty(fd):
            self._saved_mode = termios.tcgetattr(fd)
            # cbreak: keys arrive one by one without Enter, Ctrl-C still interrupts.
            tty.setcbreak(fd, termios.TCSANOW)
        self._fd = fd
        self._pending[:] = 0
        self._engaged = self.config.start_engaged
        self._eof = False
        self._escape = False

    def _close(self) -> None:
        if self._fd is not None and self._saved_mode is not None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved_mode)
        self._saved_mode = None
        self._fd = None

    def _poll(self) -> None:
        if self._eof:
            self._stopping.wait(0.05)
            return
        readable, _, _ = select.select([self._fd], [], [], 0.05)
        if not readable:
            return
        try:
            data = os.read(self._fd, 64)
        except BlockingIOError:
            return
        if not data:
            self._eof = True  # the key source closed: keep the last state, read nothing more
            return
        with self._lock:
            for key in data.decode("latin-1"):
                self._key(key)

    def _key(self, key: str) -> None:
        # Escape sequences (arrows, function keys) end at their first letter or '~'.
        if self._escape:
            if key.isalpha() or key == "~":
                self._escape = False
            return
        if key == "\x1b":
            self._escape = True
        elif key in KEY_MOTION:
            axis, sign = KEY_MOTION[key]
            self._pending[axis] += sign
        elif key in KEY_BUTTONS:
            self._press(KEY_BUTTONS[key])
        elif key == KEY_ENGAGE:
            self._engaged = not self._engaged

    def _axes(self) -> tuple[np.ndarray, bool, bool]:
        axes = np.clip(self._pending, -1.0, 1.0)
        self._pending[:] = 0
        return axes, self._engaged, self._engaged


# -------------------------------------------------------------------------------- spacemouse


@dataclass
class SpaceMouseConfig:
    """3Dconnexion SpaceMouse through ``pyspacemouse`` 2.x (``pip install
    'robopref[spacemouse]'``), read in its Z-up right-handed convention: +x right, +y away
    from the user, +z up; roll/pitch/yaw about x/y/z.

    Attributes:
        translation_scale: m per tick at full deflection of the puck.
        rotation_scale: rad per tick at full twist.
        deadzone: fraction of full deflection read as zero, in [0, 1).
        axis_signs: ``(6,)`` multipliers of ``[x, y, z, roll, pitch, yaw]``, to match how
            the device sits relative to the robot base (e.g. -1 to flip an axis).
        device: pyspacemouse device name (e.g. ``"SpaceMouse Compact"``); None = first found.
        device_index: which one when several of that name are plugged in.
        enable_button: index of a dead-man button to hold for motion; None = always enabled,
            and ``intervention`` is then any deflection outside the deadzone.
        buttons: device button index -> ``"save"``, ``"discard"``, ``"rerecord"``, ``"quit"``.
        poll_hz: how often the reader thread polls the device.
    """

    translation_scale: float = 0.005
    rotation_scale: float = 0.05
    deadzone: float = 0.1
    axis_signs: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    device: str | None = None
    device_index: int = 0
    enable_button: int | None = None
    buttons: dict[int, str] = field(default_factory=lambda: {0: "save", 1: "discard"})
    poll_hz: float = 200.0

    def __post_init__(self) -> None:
        _check_scale("spacemouse", self.translation_scale, self.rotation_scale)
        _check_deadzone("spacemouse", self.deadzone)
        self.axis_signs = _check_signs("spacemouse", self.axis_signs)
        self.buttons = _check_buttons("spacemouse", self.buttons, self.enable_button)
        if not (np.isfinite(self.poll_hz) and self.poll_hz > 0):
            raise ConfigError(f"spacemouse poll_hz={self.poll_hz} must be > 0, e.g. 200")
        if self.device_index < 0:
            raise ConfigError(f"spacemouse device_index={self.device_index} must be >= 0")


class _AnalogTeleop(_DeviceTeleop):
    """Deadzone, enable button and edge-detected buttons over normalised axes."""

    def __init__(self, config):
        super().__init__(config.translation_scale, config.rotation_scale)
        self.config = config
        self._raw = np.zeros(6)
        self._held: set[int] = set()

    def _set_buttons(self, held: set[int], initial: bool = False) -> None:
        """New set of held button indices; presses are rising edges. Lock held."""
        if not initial:
            for index in held - self._held:
                if index in self.config.buttons:
                    self._press(self.config.buttons[index])
        self._held = held

    def _axes(self) -> tuple[np.ndarray, bool, bool]:
        axes = apply_deadzone(self._raw, self.config.deadzone)
        if self.config.enable_button is None:
            return axes, True, bool(np.any(axes != 0))
        held = self.config.enable_button in self._held
        return axes, held, held


class SpaceMouseTeleop(_AnalogTeleop):
    """A SpaceMouse read by a thread through pyspacemouse's ``open()`` -> device with
    ``read()`` / ``close()`` returning a state with ``x, y, z, roll, pitch, yaw`` in
    ``[-1, 1]`` and ``buttons`` (a list of 0/1).

    ``backend`` replaces the ``pyspacemouse`` module (tests pass
    ``robopref.hardware.fake.teleop.FakeSpaceMouse``); by default the module is imported on
    ``connect()``.
    """

    name = "spacemouse teleop"

    def __init__(self, config: SpaceMouseConfig, backend: Any = None):
        super().__init__(config)
        self._backend = backend
        self._device: Any = None

    def _open(self) -> None:
        backend = self._backend
        if backend is None:
            try:
                import pyspacemouse as backend
            except ImportError as error:
                raise HardwareError(
                    "SpaceMouse teleop needs pyspacemouse: pip install 'robopref[spacemouse]'"
                ) from error
        options: dict[str, Any] = {
            "device": self.config.device,
            "device_index": self.config.device_index,
            "nonblocking": True,
        }
        convention = getattr(backend, "AxisConvention", None)
        if convention is not None:
            options["axis_convention"] = convention.HID_Z_UP
        try:
            device = backend.open(**options)
        except (RuntimeError, ValueError, OSError) as error:
            raise HardwareError(
                f"SpaceMouse: {error}: install the HID library (Debian: libhidapi-hidraw0), "
                "plug the device in and let your user read its hidraw node (udev rule)"
            ) from error
        if device is None:
            raise HardwareError("SpaceMouse: no device opened: plug one in")
        self._device = device
        self._raw = np.zeros(6)
        self._held = set()
        try:
            # The first state only sets which buttons are already down; it presses nothing.
            self._sample(initial=True)
        except Exception:
            self._close()
            raise

    def _close(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            device.close()

    def _sample(self, initial: bool = False) -> None:
        # read_latest() drains the HID buffer (pyspacemouse >= 2.1); read() takes one report.
        reader = getattr(self._device, "read_latest", None) or self._device.read
        state = reader()
        raw = np.array(
            [state.x, state.y, state.z, state.roll, state.pitch, state.yaw], dtype=np.float64
        )
        raw = np.where(np.isfinite(raw), raw, 0.0) * np.asarray(self.config.axis_signs)
        held = {i for i, value in enumerate(state.buttons) if value}
        with self._lock:
            self._raw = np.clip(raw, -1.0, 1.0)
            self._set_buttons(held, initial=initial)

    def _poll(self) -> None:
        self._sample()
        self._stopping.wait(1.0 / self.config.poll_hz)


# ----------------------------------------------------------------------------------- gamepad

JS_EVENT = struct.Struct("=IhBB")  # struct js_event: u32 time (ms), s16 value, u8 type, u8 number
JS_EVENT_BUTTON = 0x01
JS_EVENT_AXIS = 0x02
JS_EVENT_INIT = 0x80
JS_AXIS_MAX = 32767


@dataclass
class GamepadConfig:
    """A gamepad through the Linux joystick interface (``/dev/input/js*``, 8-byte
    ``js_event`` records). Defaults fit an Xbox-style pad on the ``xpad`` driver: left stick
    x/y, right stick vertical z and horizontal yaw, d-pad roll/pitch; hold LB (button 4) to
    move; A save, B discard, Y re-record, Start quit.

    Attributes:
        device: joystick device path.
        translation_scale: m per tick at full stick deflection.
        rotation_scale: rad per tick at full deflection.
        deadzone: fraction of full deflection read as zero, in [0, 1).
        axis_map: joystick axis number driving each of ``[dx, dy, dz, drx, dry, drz]``;
            -1 leaves that component at zero.
        axis_signs: ``(6,)`` multipliers applied after ``axis_map`` (sticks read negative
            when pushed forward).
        enable_button: dead-man button number; None = always enabled, and ``intervention``
            is any deflection outside the deadzone.
        buttons: button number -> ``"save"``, ``"discard"``, ``"rerecord"``, ``"quit"``.
    """

    device: str = "/dev/input/js0"
    translation_scale: float = 0.005
    rotation_scale: float = 0.05
    deadzone: float = 0.1
    axis_map: tuple[int, ...] = (1, 0, 4, 6, 7, 3)
    axis_signs: tuple[float, ...] = (-1.0, -1.0, -1.0, 1.0, -1.0, -1.0)
    enable_button: int | None = 4
    buttons: dict[int, str] = field(
        default_factory=lambda: {0: "save", 1: "discard", 3: "rerecord", 7: "quit"}
    )

    def __post_init__(self) -> None:
        if not isinstance(self.device, str) or not self.device:
            raise ConfigError("gamepad device is empty: set it to /dev/input/js0")
        _check_scale("gamepad", self.translation_scale, self.rotation_scale)
        _check_deadzone("gamepad", self.deadzone)
        self.axis_signs = _check_signs("gamepad", self.axis_signs)
        self.axis_map = tuple(int(a) for a in self.axis_map)
        if len(self.axis_map) != 6 or not all(-1 <= a < 256 for a in self.axis_map):
            raise ConfigError(
                f"gamepad axis_map={self.axis_map} needs 6 axis numbers in 0..255 (-1 = unused)"
            )
        self.buttons = _check_buttons("gamepad", self.buttons, self.enable_button)


class GamepadTeleop(_AnalogTeleop):
    """A joystick device read by a thread. ``source`` replaces the device with any readable
    file descriptor carrying packed ``js_event`` records (a pipe or file in tests; the caller
    keeps it). The driver's initial-state events (``JS_EVENT_INIT``) set the state without
    counting as presses. End of file keeps the last state; a read error (pad unplugged)
    makes ``read()`` raise ``HardwareError``."""

    name = "gamepad teleop"

    def __init__(self, config: GamepadConfig, source: int | None = None):
        super().__init__(config)
        self._source = source
        self._fd: int | None = None
        self._owns_fd = False
        self._axis_values: dict[int, float] = {}
        self._buffer = b""
        self._eof = False

    def _open(self) -> None:
        if self._source is not None:
            self._fd, self._owns_fd = self._source, False
        else:
            try:
                self._fd = os.open(self.config.device, os.O_RDONLY | os.O_NONBLOCK)
            except OSError as error:
                raise HardwareError(
                    f"gamepad: cannot open {self.config.device} ({error.strerror}): plug the "
                    "pad in and add your user to the 'input' group"
                ) from error
            self._owns_fd = True
        self._axis_values = {}
        self._raw = np.zeros(6)
        self._held = set()
        self._buffer = b""
        self._eof = False

    def _close(self) -> None:
        if self._fd is not None and self._owns_fd:
            os.close(self._fd)
        self._fd = None

    def _poll(self) -> None:
        if self._eof:
            self._stopping.wait(0.05)
            return
        readable, _, _ = select.select([self._fd], [], [], 0.05)
        if not readable:
            return
        try:
            data = os.read(self._fd, JS_EVENT.size * 64)
        except BlockingIOError:
            return
        if not data:
            self._eof = True
            return
        self._buffer += data
        whole = len(self._buffer) - len(self._buffer) % JS_EVENT.size
        events = [JS_EVENT.unpack_from(self._buffer, o) for o in range(0, whole, JS_EVENT.size)]
        self._buffer = self._buffer[whole:]
        with self._lock:
            for _time_ms, value, kind, number in events:
                self._event(value, kind, number)

    def _event(self, value: int, kind: int, number: int) -> None:
        initial = bool(kind & JS_EVENT_INIT)
        kind &= ~JS_EVENT_INIT
        if kind == JS_EVENT_BUTTON:
            held = set(self._held)
            if value:
                held.add(number)
            else:
                held.discard(number)
            self._set_buttons(held, initial=initial)
        elif kind == JS_EVENT_AXIS:
            self._axis_values[number] = max(-1.0, min(1.0, value / JS_AXIS_MAX))
            raw = [
                self._axis_values.get(axis, 0.0) if axis >= 0 else 0.0
                for axis in self.config.axis_map
            ]
            self._raw = np.asarray(raw) * np.asarray(self.config.axis_signs)


def pack_js_event(value: int, kind: int, number: int, time_ms: int = 0) -> bytes:
    """One kernel ``js_event`` record (for fakes and tests)."""
    return JS_EVENT.pack(time_ms & 0xFFFFFFFF, value, kind, number)


# ---------------------------------------------------------------------------------- scripted

_OBSERVATION_KEYS = ("joint_positions", "joint_velocities", "tcp_pose", "wrench")


@dataclass
class ScriptedConfig:
    """A scripted operator for CI and demos, so a recorder runs unattended.

    Attributes:
        translation_scale: multiplier turning the policy's first three outputs into m per
            tick (1.0 when the policy already outputs metres; the env's action scale when it
            outputs normalised actions).
        rotation_scale: likewise for the last three outputs, to rad per tick.
        observation_keys: ``ArmObservation`` features concatenated, in order, into the
            policy's observation; the environment state (if any) is appended after them.
        save_every: press "save" on the ``save_every``-th read of each episode; None = never.
        max_episodes: press "quit" on the read after this many saves; None = never.
        buttons_schedule: read index (0-based, counted since ``connect()``) -> button name or
            list of names pressed on that read.
        intervention_ticks: ``(start, stop)`` ranges of per-episode read indices flagged
            ``intervention`` (to exercise intervention-aware recorders).
        execution_noise: std of Gaussian noise added to each executed command component (m
            per tick for translation, rad per tick for rotation); the clean command is
            reported as ``TeleopCommand.intended``. Demonstrations recorded this way (DART)
            visit the states a cloned policy's small errors lead to, labelled with the
            operator's corrections.
        seed: seeds that noise.
    """

    translation_scale: float = 1.0
    rotation_scale: float = 1.0
    observation_keys: tuple[str, ...] = ("tcp_pose", "wrench")
    save_every: int | None = None
    max_episodes: int | None = None
    buttons_schedule: dict[int, Any] = field(default_factory=dict)
    intervention_ticks: tuple[tuple[int, int], ...] = ()
    execution_noise: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        _check_scale("scripted", self.translation_scale, self.rotation_scale)
        if not (
            isinstance(self.execution_noise, int | float)
            and math.isfinite(self.execution_noise)
            and self.execution_noise >= 0
        ):
            raise ConfigError(
                f"scripted execution_noise={self.execution_noise!r} must be a number >= 0 "
                "(m and rad per tick)"
            )
        self.observation_keys = tuple(self.observation_keys)
        unknown = [k for k in self.observation_keys if k not in _OBSERVATION_KEYS]
        if unknown:
            raise ConfigError(
                f"scripted observation_keys {unknown} unknown: use {', '.join(_OBSERVATION_KEYS)}"
            )
        for name in ("save_every", "max_episodes"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise ConfigError(f"scripted {name}={value} must be >= 1 or None")
        schedule = {}
        for tick, names in dict(self.buttons_schedule).items():
            names = (names,) if isinstance(names, str) else tuple(names)
            bad = [n for n in names if n not in BUTTON_NAMES]
            if bad or int(tick) < 0:
                raise ConfigError(
                    f"scripted buttons_schedule[{tick}]={names}: ticks are >= 0 and buttons "
                    f"are {', '.join(BUTTON_NAMES)}"
                )
            schedule[int(tick)] = frozenset(names)
        self.buttons_schedule = schedule
        ranges = tuple((int(a), int(b)) for a, b in self.intervention_ticks)
        if any(a < 0 or b < a for a, b in ranges):
            raise ConfigError(
                f"scripted intervention_ticks={self.intervention_ticks}: use (start, stop) "
                "pairs with 0 <= start <= stop"
            )
        self.intervention_ticks = ranges


Policy = Callable[[np.ndarray], np.ndarray]
DoneFn = Callable[[ArmObservation, "np.ndarray | None"], bool]


class ScriptedTeleop(Teleop):
    """An operator driven by a policy instead of a person.

    ``policy`` is either an object with ``act(obs (B, obs_dim)) -> (B, 6)`` and
    ``begin_episodes(n)`` (a batched scripted expert; called with B = 1, and
    ``begin_episodes(1)`` at every episode start) or a callable ``obs (obs_dim,) -> (6,)``;
    None holds still (only the button schedule runs). ``done(observation,
    environment_state) -> bool`` presses "save" when it turns True, and again only after it
    has returned False once (a solved task stays solved until the recorder resets it).

    Each tick the loop calls ``observe(observation, environment_state=None)``; the policy acts
    then, on the concatenation of ``config.observation_keys`` features and the environment
    state (the one passed, else the last from ``set_environment_state(x)``). ``read()``
    returns that action times the scales once (plus ``execution_noise``; the clean action is
    ``TeleopCommand.intended``); a second read without a new observation returns zero
    motion. A save, discard or re-record press starts a new episode.
    """

    reports_intended_action = True

    def __init__(
        self,
        config: ScriptedConfig,
        policy: Any = None,
        done: DoneFn | None = None,
    ):
        self.config = config
        self.policy = policy
        self.done = done
        self._scale = np.array([config.translation_scale] * 3 + [config.rotation_scale] * 3)
        self._connected = False
        self._environment_state: np.ndarray | None = None
        self._noise_rng = np.random.default_rng(config.seed)
        self._reset()

    def _reset(self) -> None:
        self._tick = 0
        self._episode_tick = 0
        self._saved = 0
        self._quit_next = False
        self._done_sent = False
        self._pending = np.zeros(6)
        self._pressed: set[str] = set()

    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def episodes_saved(self) -> int:
        return self._saved

    def connect(self) -> None:
        if self._connected:
            return
        self._reset()
        self._connected = True
        self._begin_episode()

    def disconnect(self) -> None:
        self._connected = False

    def _begin_episode(self) -> None:
        self._episode_tick = 0
        for method, arg in (("begin_episodes", (1,)), ("begin_episode", ())):
            begin = getattr(self.policy, method, None)
            if callable(begin):
                begin(*arg)
                break

    def set_environment_state(self, environment_state) -> None:
        """Extra task features ``(k,)`` appended to the policy's observation from now on."""
        self._environment_state = (
            None
            if environment_state is None
            else np.asarray(environment_state, dtype=np.float64).reshape(-1)
        )

    def policy_observation(self, observation: ArmObservation) -> np.ndarray:
        """The ``(obs_dim,)`` vector the policy sees for ``observation``."""
        features = observation.as_dict()
        parts = [
            np.asarray(features[k], dtype=np.float64).reshape(-1)
            for k in self.config.observation_keys
        ]
        if self._environment_state is not None:
            parts.append(self._environment_state)
        return np.concatenate(parts) if parts else np.zeros(0)

    def observe(self, observation: ArmObservation, environment_state=None) -> None:
        if environment_state is not None:
            self.set_environment_state(environment_state)
        if self.policy is not None:
            obs = self.policy_observation(observation)
            if hasattr(self.policy, "act"):
                action = np.asarray(self.policy.act(obs[None]), dtype=np.float64)
            else:
                action = np.asarray(self.policy(obs), dtype=np.float64)
            if action.size != 6:
                raise ConfigError(
                    f"scripted policy returned an action of shape {action.shape}: it must "
                    "return 6 values [dx, dy, dz, drx, dry, drz] (or (1, 6) from act)"
                )
            action = action.reshape(6)
            if not np.all(np.isfinite(action)):
                raise NonFiniteError(f"scripted policy returned a non-finite action {action}")
            self._pending = action * self._scale
        if self.done is not None:
            finished = bool(self.done(observation, self._environment_state))
            # Re-arm only once done() has said False, so a task that stays solved until
            # the recorder resets it is not saved twice.
            if finished and not self._done_sent:
                self._pressed.add("save")
            self._done_sent = finished

    def read(self) -> TeleopCommand:
        if not self._connected:
            raise NotConnectedError("scripted teleop is not connected: call connect() first")
        buttons = set(self._pressed)
        self._pressed.clear()
        buttons |= self.config.buttons_schedule.get(self._tick, frozenset())
        if self._quit_next:
            buttons.add("quit")
            self._quit_next = False
        self._episode_tick += 1
        if self.config.save_every is not None and self._episode_tick == self.config.save_every:
            buttons.add("save")
        intervention = any(
            a <= self._episode_tick - 1 < b for a, b in self.config.intervention_ticks
        )
        intended, self._pending = self._pending, np.zeros(6)
        delta = intended
        if self.config.execution_noise and intended.any():
            delta = intended + self._noise_rng.normal(0.0, self.config.execution_noise, 6)
        self._tick += 1
        if buttons & {"save", "discard", "rerecord"}:
            if "save" in buttons:
                self._saved += 1
                if self.config.max_episodes is not None and self._saved >= self.config.max_episodes:
                    self._quit_next = True
            self._begin_episode()
        return TeleopCommand(
            delta_pose=delta,
            enabled=True,
            intervention=intervention,
            buttons=frozenset(buttons),
            timestamp=time.monotonic(),
            intended=intended,
        )
