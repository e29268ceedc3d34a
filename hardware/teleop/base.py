"""Plumbing the teleop devices share: button names, input validation, the deadzone, the
threaded reader lifecycle (``_DeviceTeleop``) and analog-axis handling (``_AnalogTeleop``).

Analog axes are normalised to ``[-1, 1]``, passed through a deadzone and multiplied by
``translation_scale`` (m per tick at full deflection) or ``rotation_scale`` (rad per tick at
full deflection) into ``TeleopCommand.delta_pose (6,)`` (m, rad, arm base frame).
"""

from __future__ import annotations

import os
import select
import threading
import time
from abc import abstractmethod

import numpy as np

from robopref.errors import ConfigError
from robopref.hardware.base import HardwareError, NotConnectedError, Teleop, TeleopCommand

BUTTON_NAMES = ("save", "discard", "rerecord", "quit")


def apply_deadzone(axes: np.ndarray, deadzone: float) -> np.ndarray:
    """``axes`` in ``[-1, 1]`` with ``|a| <= deadzone`` set to 0 and the rest rescaled to
    ``sign(a) * (|a| - deadzone) / (1 - deadzone)``, so output grows from 0 at the edge."""
    axes = np.clip(np.asarray(axes, dtype=np.float64), -1.0, 1.0)
    magnitude = np.maximum(np.abs(axes) - deadzone, 0.0) / (1.0 - deadzone)
    return np.sign(axes) * magnitude


def check_scale(prefix: str, translation: float, rotation: float) -> None:
    for name, value in (("translation_scale", translation), ("rotation_scale", rotation)):
        if not np.isfinite(value) or value < 0:
            raise ConfigError(f"{prefix} {name}={value} must be a finite number >= 0")


def check_buttons(prefix: str, buttons: dict, enable_button: int | None) -> dict[int, str]:
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


def check_deadzone(prefix: str, deadzone: float) -> None:
    if not 0.0 <= deadzone < 1.0:
        raise ConfigError(f"{prefix} deadzone={deadzone} must be in [0, 1): e.g. 0.1")


def check_signs(prefix: str, signs) -> tuple[float, ...]:
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

    def _read_available(self, fd: int, size: int) -> bytes | None:
        """Up to ``size`` bytes from ``fd`` after waiting at most 50 ms; ``None`` when nothing
        came. At end of file it sets ``_eof`` (the device keeps its last state and reads
        nothing more) and afterwards only waits."""
        if getattr(self, "_eof", False):
            self._stopping.wait(0.05)
            return None
        readable, _, _ = select.select([fd], [], [], 0.05)
        if not readable:
            return None
        try:
            data = os.read(fd, size)
        except BlockingIOError:
            return None
        if not data:
            self._eof = True
            return None
        return data

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
