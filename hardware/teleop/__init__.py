"""Teleoperation devices: keyboard, SpaceMouse, gamepad, and a scripted operator.

Every device turns its input into a ``TeleopCommand`` per control tick: ``delta_pose (6,)``
``[dx, dy, dz, drx, dry, drz]`` (m, rad) in the arm's base frame. Analog inputs are first
normalised to ``[-1, 1]`` per axis, passed through a deadzone (a fraction of full deflection
that reads as zero, the rest rescaled so the output stays continuous) and multiplied by
``translation_scale`` (m per tick at full deflection) or ``rotation_scale`` (rad per tick at
full deflection). A control loop at 50 Hz with ``translation_scale=0.005`` therefore moves
at most 0.25 m/s; the arm's safety layer clips further.

Named momentary buttons (``"save"``, ``"discard"``, ``"rerecord"``, ``"quit"``) are reported
once per press, on the first ``read()`` after it. ``enabled`` is the dead-man: when False
``delta_pose`` is zero and the arm should hold. ``intervention`` marks ticks where the person
takes over from a running policy.

Real devices are read by a background thread, so ``read()`` never blocks. The scripted
operator has no device: it computes its command in ``observe()``.

One module per device: ``keyboard``, ``spacemouse``, ``gamepad``, ``scripted``; the shared
plumbing is in ``base``. The names below are re-exported so callers import from here.
"""

from robopref.hardware.teleop.base import BUTTON_NAMES, apply_deadzone
from robopref.hardware.teleop.gamepad import (
    JS_AXIS_MAX,
    JS_EVENT,
    JS_EVENT_AXIS,
    JS_EVENT_BUTTON,
    JS_EVENT_INIT,
    GamepadConfig,
    GamepadTeleop,
    pack_js_event,
)
from robopref.hardware.teleop.keyboard import (
    KEY_BUTTONS,
    KEY_ENGAGE,
    KEY_MOTION,
    KeyboardConfig,
    KeyboardTeleop,
)
from robopref.hardware.teleop.scripted import DoneFn, Policy, ScriptedConfig, ScriptedTeleop
from robopref.hardware.teleop.spacemouse import SpaceMouseConfig, SpaceMouseTeleop

__all__ = [
    "BUTTON_NAMES",
    "JS_AXIS_MAX",
    "JS_EVENT",
    "JS_EVENT_AXIS",
    "JS_EVENT_BUTTON",
    "JS_EVENT_INIT",
    "KEY_BUTTONS",
    "KEY_ENGAGE",
    "KEY_MOTION",
    "DoneFn",
    "GamepadConfig",
    "GamepadTeleop",
    "KeyboardConfig",
    "KeyboardTeleop",
    "Policy",
    "ScriptedConfig",
    "ScriptedTeleop",
    "SpaceMouseConfig",
    "SpaceMouseTeleop",
    "apply_deadzone",
    "pack_js_event",
]
