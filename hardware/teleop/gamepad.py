"""Gamepad teleop through the Linux joystick interface (``/dev/input/js*``)."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

import numpy as np

from robopref.errors import ConfigError
from robopref.hardware.base import HardwareError
from robopref.hardware.teleop.base import (
    _AnalogTeleop,
    check_buttons,
    check_deadzone,
    check_scale,
    check_signs,
)

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
        check_scale("gamepad", self.translation_scale, self.rotation_scale)
        check_deadzone("gamepad", self.deadzone)
        self.axis_signs = check_signs("gamepad", self.axis_signs)
        self.axis_map = tuple(int(a) for a in self.axis_map)
        if len(self.axis_map) != 6 or not all(-1 <= a < 256 for a in self.axis_map):
            raise ConfigError(
                f"gamepad axis_map={self.axis_map} needs 6 axis numbers in 0..255 (-1 = unused)"
            )
        self.buttons = check_buttons("gamepad", self.buttons, self.enable_button)


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
        data = self._read_available(self._fd, JS_EVENT.size * 64)
        if data is None:
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
