"""What ``SafeArm`` is told and what it records: ``SafetyConfig`` (its limits, all SI) and
``SafetyEvent`` (one clip, refusal, stop, recovery or hold, JSON-ready)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robopref.errors import ConfigError

__all__ = ["SafetyConfig", "SafetyEvent", "jsonable"]

_POSITIVE_LIMITS = {
    "max_step_translation_m": "m",
    "max_step_rotation_rad": "rad",
    "max_speed_m_s": "m/s",
    "max_angular_speed_rad_s": "rad/s",
    "max_force_n": "N",
    "max_torque_nm": "N*m",
    "watchdog_timeout_s": "s",
}


@dataclass
class SafetyConfig:
    """Limits of ``SafeArm``; all SI. Set the workspace for your cell before using a real arm.

    Attributes:
        workspace_min: ``(3,)`` lower corner (m) of the box the commanded TCP position must
            stay in, arm base frame.
        workspace_max: ``(3,)`` upper corner (m) of that box; strictly above ``workspace_min``.
        max_step_translation_m: largest TCP translation (m) between consecutive commands.
        max_step_rotation_rad: largest TCP rotation (rad) between consecutive commands.
        max_speed_m_s: largest commanded TCP speed (m/s); applied per tick as
            ``max_speed_m_s * control_period_s``.
        max_angular_speed_rad_s: largest commanded TCP angular speed (rad/s), per tick alike.
        max_force_n: protective stop when ``|(fx, fy, fz)|`` exceeds this (N).
        max_torque_nm: protective stop when ``|(tx, ty, tz)|`` exceeds this (N*m).
        watchdog_timeout_s: hold the measured pose when no command came for this long (s).
        orientation_center: ``(3,)`` rotation vector (rad, base frame) of the tool orientation
            the orientation limit is centred on, e.g. ``(pi, 0, 0)`` for a tool pointing down.
        max_orientation_deviation_rad: largest rotation (rad, below pi/2) of a commanded
            orientation away from ``orientation_center``; further is turned back onto that
            cone. ``None`` (with ``orientation_center`` ``None``): no limit.
        contact_force_n: force-guarded motion, off when ``None``: while ``|force|`` exceeds
            this (N), below ``max_force_n``, the part of each command that moves the TCP
            further against the measured force is clipped away, so the tool presses no harder
            and the hard limit stays a last resort (logged as a ``clip``).
        contact_compliance_m_per_n: with ``contact_force_n``, the arm's compliance (m/N,
            ``1 / stiffness`` of its impedance; the sim arm's 2000 N/m: 0.0005): a command may
            press into the contact at most this times ``contact_force_n - |force|``, and over
            the guard the target backs off by this times the excess (at most one step). 0:
            only stop pressing harder over the guard.
        event_log_path: JSON Lines file each event is appended to; ``None`` keeps them in
            memory only.
        max_events: events kept in memory (oldest dropped first); the file keeps all.
    """

    workspace_min: Sequence[float] = (-1.0, -1.0, 0.0)
    workspace_max: Sequence[float] = (1.0, 1.0, 1.0)
    max_step_translation_m: float = 0.01
    max_step_rotation_rad: float = 0.05
    max_speed_m_s: float = 0.25
    max_angular_speed_rad_s: float = 1.0
    max_force_n: float = 50.0
    max_torque_nm: float = 10.0
    watchdog_timeout_s: float = 0.5
    orientation_center: Sequence[float] | None = None
    max_orientation_deviation_rad: float | None = None
    contact_force_n: float | None = None
    contact_compliance_m_per_n: float = 0.0
    event_log_path: str | Path | None = None
    max_events: int = 100_000

    def __post_init__(self) -> None:
        self.workspace_min = _three("workspace_min", self.workspace_min)
        self.workspace_max = _three("workspace_max", self.workspace_max)
        for axis, (lo, hi) in enumerate(zip(self.workspace_min, self.workspace_max, strict=True)):
            if not lo < hi:
                raise ConfigError(
                    f"safety workspace_min[{axis}]={lo} must be below workspace_max[{axis}]={hi}: "
                    "swap or widen the workspace box (m)"
                )
        for name, unit in _POSITIVE_LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"safety {name}={value!r} must be a number in {unit}")
            if not 0 < value < math.inf:
                raise ConfigError(
                    f"safety {name}={value} must be positive and finite ({unit}); "
                    "to relax a limit, raise it"
                )
            setattr(self, name, float(value))
        self._check_orientation_limit()
        self._check_contact_guard()
        if self.event_log_path is not None and not isinstance(self.event_log_path, str | Path):
            raise ConfigError(
                f"safety event_log_path={self.event_log_path!r} must be a file path or None"
            )
        if isinstance(self.max_events, bool) or not isinstance(self.max_events, int):
            raise ConfigError(f"safety max_events={self.max_events!r} must be an integer")
        if self.max_events < 1:
            raise ConfigError(f"safety max_events={self.max_events} must be at least 1")

    def _check_orientation_limit(self) -> None:
        center, limit = self.orientation_center, self.max_orientation_deviation_rad
        if (center is None) != (limit is None):
            raise ConfigError(
                "safety orientation_center and max_orientation_deviation_rad go together: "
                "set both (a rotation vector in rad and an angle in rad) or neither"
            )
        if limit is None:
            return
        if isinstance(limit, bool) or not isinstance(limit, int | float):
            raise ConfigError(f"safety max_orientation_deviation_rad={limit!r} must be a number")
        if not 0 < limit < math.pi / 2:
            raise ConfigError(
                f"safety max_orientation_deviation_rad={limit} must lie in (0, pi/2) rad"
            )
        self.max_orientation_deviation_rad = float(limit)
        self.orientation_center = _three("orientation_center", center, "[rx, ry, rz] (rad)")

    def _check_contact_guard(self) -> None:
        guard, compliance = self.contact_force_n, self.contact_compliance_m_per_n
        if guard is not None:
            if isinstance(guard, bool) or not isinstance(guard, int | float):
                raise ConfigError(f"safety contact_force_n={guard!r} must be a number in N or null")
            if not 0 < guard < self.max_force_n:
                raise ConfigError(
                    f"safety contact_force_n={guard} must lie in (0, max_force_n="
                    f"{self.max_force_n}) N: the guard acts before the protective stop"
                )
            self.contact_force_n = float(guard)
        if isinstance(compliance, bool) or not isinstance(compliance, int | float):
            raise ConfigError(
                f"safety contact_compliance_m_per_n={compliance!r} must be a number (m/N)"
            )
        if not 0 <= compliance <= 0.01:
            raise ConfigError(
                f"safety contact_compliance_m_per_n={compliance} must lie in [0, 0.01] m/N "
                "(about 1 / the arm's Cartesian stiffness)"
            )
        self.contact_compliance_m_per_n = float(compliance)


def _three(name: str, value: Any, form: str = "[x, y, z] (m)") -> tuple[float, float, float]:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"safety {name}={value!r} must be 3 numbers {form}") from exc
    if array.shape != (3,) or not np.all(np.isfinite(array)):
        raise ConfigError(f"safety {name}={value!r} must be 3 finite numbers {form}")
    return (float(array[0]), float(array[1]), float(array[2]))


@dataclass(frozen=True)
class SafetyEvent:
    """One thing the safety layer did.

    Attributes:
        timestamp: s, from the ``SafeArm`` clock (``time.monotonic()`` unless injected).
        kind: ``"clip"``, ``"non_finite_command"``, ``"protective_stop"``, ``"recover"``,
            ``"watchdog_hold"`` or ``"watchdog_error"``.
        detail: JSON-ready facts, e.g. for a clip ``{"limit", "requested", "sent"}`` and for a
            stop ``{"reason", ...}``.
    """

    timestamp: float
    kind: str
    detail: dict = field(default_factory=dict)

    def to_json(self) -> str:
        """One line of strict JSON; non-finite numbers become the strings "nan"/"inf"/"-inf"."""
        return json.dumps(
            {"timestamp": self.timestamp, "kind": self.kind, "detail": jsonable(self.detail)},
            allow_nan=False,
        )


def jsonable(value: Any) -> Any:
    """``value`` with NumPy scalars and arrays as plain numbers and lists, non-finite floats as
    strings, so strict JSON can hold it."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [jsonable(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else str(number)
    return value
