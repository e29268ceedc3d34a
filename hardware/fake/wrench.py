"""A wrist force/torque sensor in process, driven by the test or dry run that owns it.

``FakeWrenchSensor`` follows the ``WrenchSensor`` contract (start, read, bias, stop) and
returns whatever load and status it was last given, each read a new sample; a clock can be
injected so a stale sample is a matter of setting the time, not of waiting.

    sensor = FakeWrenchSensor(wrench=[0, 0, 5, 0, 0, 0])
    sensor.start()
    sensor.set_status(SensorStatus.DEVICE_ERROR)   # the next reading flags it
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from robopref.hardware.base import NotConnectedError, SensorStatus, WrenchReading, WrenchSensor


class FakeWrenchSensor(WrenchSensor):
    """A settable sensor: ``set_wrench`` (N, N*m), ``set_status``, ``freeze`` (stops new
    samples, so readings go ``STALE`` once ``stale_timeout_s`` of the clock has passed)."""

    def __init__(
        self,
        wrench=None,
        stale_timeout_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._wrench = np.zeros(6) if wrench is None else np.asarray(wrench, float).reshape(6)
        self._bias = np.zeros(6)
        self._status = SensorStatus.OK
        self._frozen_at: float | None = None
        self._sequence = 0
        self._running = False
        self.stale_timeout_s = float(stale_timeout_s)
        self._clock = clock
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- hooks
    def set_wrench(self, wrench) -> None:
        with self._lock:
            self._wrench = np.asarray(wrench, dtype=np.float64).reshape(6)

    def set_status(self, status: SensorStatus) -> None:
        with self._lock:
            self._status = SensorStatus(status)

    def freeze(self, frozen: bool = True) -> None:
        """Stop (or resume) producing samples, as a sensor whose stream died."""
        with self._lock:
            self._frozen_at = self._clock() if frozen else None

    # ---------------------------------------------------------------- contract
    @property
    def is_running(self) -> bool:
        return self._running

    def start(self) -> None:
        self._running = True

    def stop(self) -> None:
        self._running = False

    def bias(self) -> None:
        if not self._running:
            raise NotConnectedError("fake wrench sensor is not started: call start() first")
        with self._lock:
            self._bias = self._wrench.copy()

    def read(self) -> WrenchReading:
        if not self._running:
            raise NotConnectedError("fake wrench sensor is not started: call start() first")
        now = self._clock()
        with self._lock:
            status = self._status
            stamp = now
            if self._frozen_at is not None:
                stamp = self._frozen_at
                if now - stamp > self.stale_timeout_s:
                    status |= SensorStatus.STALE
            else:
                self._sequence += 1
            return WrenchReading(
                wrench=self._wrench - self._bias,
                timestamp=float(stamp),
                status=status,
                sequence=self._sequence,
            )
