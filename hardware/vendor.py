"""What the arms driven through a vendor library share (``URArm`` over ur_rtde, ``FrankaArm``
over franky): the library or its in-process fake chosen by ``config.simulate`` and loaded
only when first needed, the latched protective stop, the control period, target checks and
the one-line errors naming the arm.

A subclass sets ``kind`` (e.g. ``"UR arm"``), ``joint_count``, ``address_field`` (the
config field holding the controller's address), ``link`` and ``link_check`` (what a lost
connection is and what to check), ``fake`` (``"module:attr"`` of the fake) and
``_load_library``; its config has ``control_hz`` (Hz) and ``simulate``.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from robopref.errors import ConfigError, NonFiniteError
from robopref.hardware.base import ForceArm, HardwareError, NotConnectedError

__all__ = ["VendorArm", "check_positive", "missing_library"]


def missing_library(package: str, extra: str, error: ImportError) -> HardwareError:
    """The error for a vendor library that did not import, naming the extra that installs it."""
    return HardwareError(
        f"{package} is not installed ({error}): pip install 'robopref[{extra}]' (or set "
        "simulate=True to use the in-process fake)"
    )


def check_positive(config: Any, names: tuple[str, ...]) -> None:
    """Each of ``config``'s fields ``names`` is a finite number > 0, else a ``ConfigError``."""
    for name in names:
        value = getattr(config, name)
        if not (np.isfinite(value) and value > 0):
            raise ConfigError(f"{name}={value} must be a finite number > 0")


class VendorArm(ForceArm):
    """A ``ForceArm`` whose commands go through a vendor library (see the module docstring).

    ``backend`` injects the library (any object with its names, e.g. a fake); left ``None``
    it is the fake when ``config.simulate`` and the installed library otherwise, loaded on
    first use (``connect()``), so the module imports without the vendor library.
    """

    kind = "arm"
    joint_count = 6
    address_field = "host"
    link = "connection"
    link_check = "the network cable"
    fake = ""

    def __init__(self, config: Any, backend: Any = None) -> None:
        self.config = config
        self._backend = backend
        self._latched = False

    @staticmethod
    def _load_library() -> Any:
        raise NotImplementedError

    def _fake_options(self) -> dict:
        """Keyword arguments the fake is built with."""
        return {}

    @property
    def backend(self) -> Any:
        """The library in use (its fake when simulating); loads it if needed."""
        if self._backend is None:
            if self.config.simulate:
                module, _, name = self.fake.partition(":")
                fake = getattr(importlib.import_module(module), name)
                self._backend = fake(**self._fake_options())
            else:
                self._backend = self._load_library()
        return self._backend

    @property
    def address(self) -> str:
        """The controller's network address, for messages."""
        return getattr(self.config, self.address_field)

    @property
    def label(self) -> str:
        return f"{self.kind} at {self.address}"

    @property
    def n_joints(self) -> int:
        return self.joint_count

    @property
    def control_period_s(self) -> float:
        return 1.0 / self.config.control_hz

    @property
    def is_stopped(self) -> bool:
        return self._latched

    def _require_connection(self) -> None:
        if not self.is_connected:
            raise NotConnectedError(f"{self.label} is not connected: call connect()")

    def _checked_target(self, target_pose: np.ndarray) -> np.ndarray:
        """``target_pose`` as a ``(6,)`` float array (m, rad) once connected; nothing is sent
        for a wrong shape (``ValueError``) or NaN/inf (``NonFiniteError``)."""
        self._require_connection()
        target = np.asarray(target_pose, dtype=np.float64)
        if target.shape != (6,):
            raise ValueError(f"target pose must have shape (6,), got {target.shape}")
        if not np.all(np.isfinite(target)):
            raise NonFiniteError(f"non-finite TCP target {target} refused; the {self.kind} holds")
        return target

    def _link_error(self, error: Exception) -> HardwareError:
        return HardwareError(
            f"lost the {self.link} at {self.address} ({error}): check {self.link_check}, then "
            "disconnect() and connect() again"
        )
