"""Hardware abstraction for force-sensing arms, F/T sensors, teleop and safety (installed as
``robopref.hardware``). Knows nothing of learning: it never imports a reward, refiner or loop.

Contracts live in ``robopref.hardware.base``; the safety layer that wraps any arm in
``robopref.hardware.safety``; in-process fakes of real devices and vendor libraries in
``robopref.hardware.fake`` (so dry runs and tests need no hardware).

The registries below (``robopref.registry.Registry``, roles "arm", "sensor", "teleop") name
every implementation explicitly; ``ARMS.config(name, options)`` (likewise ``SENSORS``,
``TELEOPS``) builds a config. Entries are ``"module:attr"`` strings so that a real backend's
vendor library (``ur-rtde``, ``franky-control``, ``pyspacemouse``) is imported only when that
backend is selected.
"""

from __future__ import annotations

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
from robopref.registry import Registry

# Each implementation class takes its config as its first argument.
ARMS = Registry(
    "arm",
    {
        "sim": ("robopref.hardware.sim_config:SimArmConfig", "robopref.hardware.sim:SimForceArm"),
        "fake": (
            "robopref.hardware.fake.arm:FakeArmConfig",
            "robopref.hardware.fake.arm:FakeForceArm",
        ),
        "ur": ("robopref.hardware.ur:URConfig", "robopref.hardware.ur:URArm"),
        "franka": ("robopref.hardware.franka:FrankaConfig", "robopref.hardware.franka:FrankaArm"),
    },
)
SENSORS = Registry(
    "sensor",
    {
        "sim": (
            "robopref.hardware.sim_sensor:SimSensorConfig",
            "robopref.hardware.sim_sensor:SimWrenchSensor",
        ),
        "netft": ("robopref.hardware.netft:NetFTConfig", "robopref.hardware.netft:NetFTSensor"),
        "ft300": ("robopref.hardware.ft300:FT300Config", "robopref.hardware.ft300:FT300Sensor"),
    },
)
TELEOPS = Registry(
    "teleop",
    {
        "keyboard": (
            "robopref.hardware.teleop.keyboard:KeyboardConfig",
            "robopref.hardware.teleop.keyboard:KeyboardTeleop",
        ),
        "spacemouse": (
            "robopref.hardware.teleop.spacemouse:SpaceMouseConfig",
            "robopref.hardware.teleop.spacemouse:SpaceMouseTeleop",
        ),
        "gamepad": (
            "robopref.hardware.teleop.gamepad:GamepadConfig",
            "robopref.hardware.teleop.gamepad:GamepadTeleop",
        ),
        "scripted": (
            "robopref.hardware.teleop.scripted:ScriptedConfig",
            "robopref.hardware.teleop.scripted:ScriptedTeleop",
        ),
    },
)


def make_arm(name: str, **options) -> ForceArm:
    """A disconnected arm ``name`` from ``ARMS`` built from its config options."""
    # Arm options are the `hardware` config group, so errors name keys as typed there.
    return ARMS.implementation(name)(ARMS.config(name, options, "hardware"))


def make_sensor(name: str, **options) -> WrenchSensor:
    """A stopped sensor ``name`` from ``SENSORS`` built from its config options."""
    return SENSORS.implementation(name)(SENSORS.config(name, options))


def make_teleop(name: str, **options) -> Teleop:
    """A disconnected teleop device ``name`` from ``TELEOPS`` built from its config options."""
    return TELEOPS.implementation(name)(TELEOPS.config(name, options))


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
    "make_arm",
    "make_sensor",
    "make_teleop",
]
