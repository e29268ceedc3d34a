"""The wrist F/T sensor of a ``SimForceArm`` behind the ``WrenchSensor`` contract: the arm's
noise-free tool load (N, N*m, tool frame) plus a configured offset and Gaussian noise.

Clocks: ``timestamp`` is the arm's *simulated* seconds (``data.time``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from robopref.errors import ConfigError
from robopref.hardware.base import NotConnectedError, SensorStatus, WrenchReading, WrenchSensor
from robopref.hardware.sim import SimForceArm
from robopref.hardware.sim_config import SimArmConfig, finite_floats

__all__ = ["SimSensorConfig", "SimWrenchSensor"]


@dataclass
class SimSensorConfig:
    """Settings of ``SimWrenchSensor``.

    Attributes:
        force_noise_std: std (N) of Gaussian noise added to each force channel per read.
        torque_noise_std: std (N*m) of Gaussian noise added to each torque channel per read.
        offset: ``(6,)`` constant offset (N, N*m) on every reading, the drift a real sensor
            shows between ``bias()`` calls.
        bias_samples: readings averaged by ``bias()``.
        seed: seeds the noise.
    """

    force_noise_std: float = 0.0
    torque_noise_std: float = 0.0
    offset: Sequence[float] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    bias_samples: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("force_noise_std", "torque_noise_std"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 <= value < math.inf):
                raise ConfigError(
                    f"sim sensor {name}={value!r} must be a finite number >= 0, e.g. 0.1"
                )
        self.offset = finite_floats("sim sensor offset", self.offset, 6, "(0,)*6 (N, N*m)")
        if isinstance(self.bias_samples, bool) or not isinstance(self.bias_samples, int):
            raise ConfigError(f"sim sensor bias_samples={self.bias_samples!r} must be an integer")
        if self.bias_samples < 1:
            raise ConfigError(f"sim sensor bias_samples={self.bias_samples} must be >= 1, e.g. 10")


class SimWrenchSensor(WrenchSensor):
    """The wrist F/T sensor of a ``SimForceArm`` behind the ``WrenchSensor`` contract.

    ``SimWrenchSensor(config, arm)`` reads ``arm``'s sensor (``arm.tool_wrench()``, the load in
    the tool frame) plus the configured offset and noise, minus the bias. Without an arm it
    builds its own ``SimForceArm`` at rest and advances it one physics tick per ``read()``, so a
    stand-alone sensor produces a fresh sample each time. ``sequence`` is the arm's physics tick
    count and ``timestamp`` its simulated time (s); ``status`` is always ``OK``.
    """

    def __init__(self, config: SimSensorConfig | None = None, arm: SimForceArm | None = None):
        self.config = config if config is not None else SimSensorConfig()
        self._owns_arm = arm is None
        self.arm = arm if arm is not None else SimForceArm(SimArmConfig())
        self._rng = np.random.default_rng(self.config.seed)
        self._std = np.array([self.config.force_noise_std] * 3 + [self.config.torque_noise_std] * 3)
        self._offset = np.asarray(self.config.offset)
        self._bias = np.zeros(6)
        self._running = False

    def start(self) -> None:
        if self._owns_arm:
            self.arm.connect()
        self._running = True

    def stop(self) -> None:
        self._running = False

    @property
    def is_running(self) -> bool:
        return self._running

    def bias(self) -> None:
        """Zeroes the sensor at its current load: the mean of ``bias_samples`` raw readings."""
        samples = [self._raw() for _ in range(self.config.bias_samples)]
        self._bias = np.mean(samples, axis=0)

    def read(self) -> WrenchReading:
        wrench = self._raw() - self._bias
        return WrenchReading(
            wrench=wrench,
            timestamp=float(self.arm.data.time),
            status=SensorStatus.OK,
            sequence=int(self.arm.physics_steps),
        )

    def _raw(self) -> np.ndarray:
        if not self._running:
            raise NotConnectedError("sim wrench sensor is not started: call start() first")
        if self._owns_arm:
            self.arm.advance(1)
        return self.arm.tool_wrench() + self._offset + self._rng.normal(0.0, 1.0, 6) * self._std
