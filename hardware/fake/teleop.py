"""A stand-in for the ``pyspacemouse`` module (2.x API) with a settable device state.

``SpaceMouseTeleop(config, backend=FakeSpaceMouse())`` then reads it like the real thing:
``backend.open(...)`` returns a device whose ``read()`` gives a state with ``x, y, z, roll,
pitch, yaw`` in ``[-1, 1]``, ``buttons`` (a list of 0/1) and ``t``, and ``close()`` ends it.
"""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass, field, replace


class AxisConvention(enum.StrEnum):
    """The conventions pyspacemouse 2.1 names; the fake reports values as given."""

    LEGACY = "legacy"
    HID = "hid"
    HID_Z_UP = "hid_z_up"


@dataclass
class FakeSpaceMouseState:
    """Mirrors ``pyspacemouse.SpaceMouseState``."""

    t: float = -1.0
    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    roll: float = 0.0
    pitch: float = 0.0
    yaw: float = 0.0
    buttons: list[int] = field(default_factory=lambda: [0, 0])


class FakeSpaceMouseDevice:
    """Mirrors ``pyspacemouse.SpaceMouseDevice``: ``read()``, ``close()``, ``name``,
    ``connected``."""

    name = "FakeSpaceMouse"

    def __init__(self, owner: FakeSpaceMouse):
        self._owner = owner
        self.connected = True
        self.reads = 0

    def read(self):
        if not self.connected:
            return replace(self._owner.state)
        self.reads += 1
        with self._owner.lock:
            self._owner.state.t = time.monotonic()
            return replace(self._owner.state, buttons=list(self._owner.state.buttons))

    def close(self) -> None:
        self.connected = False
        self._owner.closed += 1


class FakeSpaceMouse:
    """Module-like backend: ``open(**options)`` records its options and returns a device.

    Attributes:
        state: what the device reports; change it with ``set_state``.
        open_calls: keyword options of every ``open()`` call.
        fail_with: an exception ``open()`` raises instead (e.g. no device plugged in).
    """

    AxisConvention = AxisConvention

    def __init__(self, buttons: int = 2):
        self.lock = threading.Lock()
        self.state = FakeSpaceMouseState(buttons=[0] * buttons)
        self.open_calls: list[dict] = []
        self.closed = 0
        self.fail_with: Exception | None = None
        self.device: FakeSpaceMouseDevice | None = None

    def open(self, **options) -> FakeSpaceMouseDevice:
        self.open_calls.append(options)
        if self.fail_with is not None:
            raise self.fail_with
        self.device = FakeSpaceMouseDevice(self)
        return self.device

    def set_state(self, **values) -> None:
        """Set any of ``x, y, z, roll, pitch, yaw`` (in [-1, 1]) and ``buttons``."""
        with self.lock:
            for key, value in values.items():
                if not hasattr(self.state, key):
                    raise AttributeError(f"SpaceMouse state has no field '{key}'")
                setattr(self.state, key, list(value) if key == "buttons" else float(value))
