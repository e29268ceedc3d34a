"""Keyboard teleop: keys from a terminal (or any file descriptor) become one tick of full
deflection on an axis each; space toggles the dead-man."""

from __future__ import annotations

import contextlib
import os
import sys
import termios
import tty
from dataclasses import dataclass

import numpy as np

from robopref.hardware.base import HardwareError
from robopref.hardware.teleop.base import _DeviceTeleop, check_scale

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
        check_scale("keyboard", self.translation_scale, self.rotation_scale)


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
        data = self._read_available(self._fd, 64)
        if data is None:
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
