"""SpaceMouse teleop through ``pyspacemouse`` (imported only on ``connect()``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
        check_scale("spacemouse", self.translation_scale, self.rotation_scale)
        check_deadzone("spacemouse", self.deadzone)
        self.axis_signs = check_signs("spacemouse", self.axis_signs)
        self.buttons = check_buttons("spacemouse", self.buttons, self.enable_button)
        if not (np.isfinite(self.poll_hz) and self.poll_hz > 0):
            raise ConfigError(f"spacemouse poll_hz={self.poll_hz} must be > 0, e.g. 200")
        if self.device_index < 0:
            raise ConfigError(f"spacemouse device_index={self.device_index} must be >= 0")


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
