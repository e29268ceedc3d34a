"""Hardware abstraction for force-sensing arms, F/T sensors, teleop and safety (installed as
``robopref.hardware``). Knows nothing of learning: it never imports a reward, refiner or loop.

Contracts live in ``robopref.hardware.base``; the safety layer that wraps any arm in
``robopref.hardware.safety``; in-process fakes of real devices and vendor libraries in
``robopref.hardware.fake`` (so dry runs and tests need no hardware).

The registries below name every implementation explicitly. Entries are ``"module:attr"``
strings so that a real backend's vendor library (``ur-rtde``, ``franky-control``,
``pyspacemouse``) is imported only when that backend is selected.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from typing import Any

from robopref.errors import ConfigError
from robopref.hardware.base import (
    ArmObservation,
    ForceArm,
    HardwareError,
    NotConnectedError,
    ProtectiveStop,
    SensorStatus,
    Teleop,
    TeleopCommand,
    WrenchReading,
    WrenchSensor,
)

# name -> ("module:ConfigClass", "module:ImplementationClass"); each class takes its config.
ARMS: dict[str, tuple[str, str]] = {
    "sim": ("robopref.hardware.sim:SimArmConfig", "robopref.hardware.sim:SimForceArm"),
    "fake": ("robopref.hardware.fake.arm:FakeArmConfig", "robopref.hardware.fake.arm:FakeForceArm"),
    "ur": ("robopref.hardware.ur:URConfig", "robopref.hardware.ur:URArm"),
    "franka": ("robopref.hardware.franka:FrankaConfig", "robopref.hardware.franka:FrankaArm"),
}
SENSORS: dict[str, tuple[str, str]] = {
    "sim": ("robopref.hardware.sim:SimSensorConfig", "robopref.hardware.sim:SimWrenchSensor"),
    "netft": ("robopref.hardware.netft:NetFTConfig", "robopref.hardware.netft:NetFTSensor"),
    "ft300": ("robopref.hardware.ft300:FT300Config", "robopref.hardware.ft300:FT300Sensor"),
}
TELEOPS: dict[str, tuple[str, str]] = {
    "keyboard": (
        "robopref.hardware.teleop:KeyboardConfig",
        "robopref.hardware.teleop:KeyboardTeleop",
    ),
    "spacemouse": (
        "robopref.hardware.teleop:SpaceMouseConfig",
        "robopref.hardware.teleop:SpaceMouseTeleop",
    ),
    "gamepad": (
        "robopref.hardware.teleop:GamepadConfig",
        "robopref.hardware.teleop:GamepadTeleop",
    ),
    "scripted": (
        "robopref.hardware.teleop:ScriptedConfig",
        "robopref.hardware.teleop:ScriptedTeleop",
    ),
}


def _load(ref: str) -> Any:
    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)


def _lookup(registry: dict[str, tuple[str, str]], kind: str, name: str) -> tuple[Any, Any]:
    if name not in registry:
        close = difflib.get_close_matches(name, registry, n=2)
        hint = (
            f"did you mean {', '.join(close)}?" if close else f"choose one of {', '.join(registry)}"
        )
        raise ConfigError(f"unknown {kind} '{name}': {hint}")
    config_ref, impl_ref = registry[name]
    return _load(config_ref), _load(impl_ref)


def build_config(registry: dict[str, tuple[str, str]], kind: str, name: str, options: dict):
    """The config dataclass for ``name`` from plain ``options``; unknown keys get one line."""
    config_cls, _ = _lookup(registry, kind, name)
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for {kind} '{name}': "
            f"valid options are {', '.join(sorted(known))}"
        )
    return config_cls(**options)


def make_arm(name: str, **options) -> ForceArm:
    """A disconnected arm ``name`` from ``ARMS`` built from its config options."""
    _, impl = _lookup(ARMS, "arm", name)
    return impl(build_config(ARMS, "arm", name, options))


def make_sensor(name: str, **options) -> WrenchSensor:
    _, impl = _lookup(SENSORS, "sensor", name)
    return impl(build_config(SENSORS, "sensor", name, options))


def make_teleop(name: str, **options) -> Teleop:
    _, impl = _lookup(TELEOPS, "teleop", name)
    return impl(build_config(TELEOPS, "teleop", name, options))


__all__ = [
    "ARMS",
    "SENSORS",
    "TELEOPS",
    "ArmObservation",
    "ForceArm",
    "HardwareError",
    "NotConnectedError",
    "ProtectiveStop",
    "SensorStatus",
    "Teleop",
    "TeleopCommand",
    "WrenchReading",
    "WrenchSensor",
    "build_config",
    "make_arm",
    "make_sensor",
    "make_teleop",
]
