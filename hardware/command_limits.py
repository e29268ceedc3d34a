"""What ``SafeArm`` does to a command before it is sent, as pure functions of the command, the
last command sent (the reference) and ``SafetyConfig``: force-guarded motion, the workspace
box, the orientation cone and the per-tick step limits. Each returns the shaped ``(6,)`` TCP
target (m, rad, base frame) and the clips it made, ``{"limit", "requested", "sent", ...}``,
for the layer to log as ``SafetyEvent``s."""

from __future__ import annotations

import numpy as np

from robopref.geometry import compose_delta, matrix_from_rotvec, pose_delta, unwrap_rotvec
from robopref.hardware.safety_config import SafetyConfig

__all__ = ["clip_command", "clip_orientation", "guard_contact"]


def guard_contact(
    command: np.ndarray,
    reference: np.ndarray,
    force_tool: np.ndarray,
    tcp_rotvec: np.ndarray,
    wrist_force: float,
    config: SafetyConfig,
    translation_limit: float,
) -> tuple[np.ndarray, list[dict]]:
    """Force-guarded motion (``contact_force_n``): limits the command's translation along the
    measured force (base frame), relative to ``reference``, the last command sent.

    ``force_tool (3,)`` is the arm's force estimate (N, tool frame by the ``ForceArm``
    contract), ``tcp_rotvec (3,)`` the measured tool orientation (rad) and ``wrist_force`` a
    wrist sensor's ``|force|`` (N; 0 without one). With compliance
    ``c = contact_compliance_m_per_n`` the target may move against the force at most
    ``c * (contact_force_n - |force|)`` (so the force, at the arm's stiffness ``1 / c``, rises
    at most to the guard) and over the guard must back off by ``c * (|force| -
    contact_force_n)``, at most ``translation_limit`` (m); with ``c = 0`` it only stops
    pressing harder over the guard. The direction is the arm's estimate (a wrist sensor's
    frame is its mounting's); a wrist reading over the guard while the estimate shows no
    contact holds the position instead."""
    guard = config.contact_force_n
    if guard is None:
        return command, []
    compliance = config.contact_compliance_m_per_n
    force_tool = np.asarray(force_tool, dtype=np.float64)
    estimate = float(np.linalg.norm(force_tool))
    force = max(estimate, wrist_force)
    if force <= guard and compliance == 0.0:
        return command, []
    guarded = command.copy()
    if estimate > 0.5 * guard:
        away = matrix_from_rotvec(np.asarray(tcp_rotvec, dtype=np.float64)) @ force_tool
        away /= np.linalg.norm(away)
        along = float((command[:3] - reference[:3]) @ away)
        # Least motion away from the surface: negative below the guard (pressing allowed).
        least = min(compliance * (force - guard), translation_limit)
        if force > guard:
            least = max(least, 0.0)
        if along < least:
            guarded[:3] = command[:3] + (least - along) * away
    elif force > guard:
        guarded[:3] = reference[:3]
    if np.array_equal(guarded, command):
        return command, []
    return guarded, [dict(limit="contact_force_n", requested=command[:3], sent=guarded[:3],
                          force_n=force, limit_value=guard)]


def clip_command(
    requested: np.ndarray,
    reference: np.ndarray,
    config: SafetyConfig,
    translation_limit: float,
    rotation_limit: float,
) -> tuple[np.ndarray, list[dict]]:
    """``requested (6,)`` clipped into the workspace box and the orientation cone, then to at
    most ``translation_limit`` (m) and ``rotation_limit`` (rad) from ``reference (6,)``."""
    clips: list[dict] = []
    low, high = np.array(config.workspace_min), np.array(config.workspace_max)
    position = requested[:3]
    boxed = np.clip(position, low, high)
    if not np.array_equal(boxed, position):
        clips.append(dict(limit="workspace", requested=position, sent=boxed))
    position = boxed
    # Stepping from inside the box toward a point inside it stays inside (convexity); an arm
    # that starts outside is led back at the step limit rather than jumped in.
    delta = position - reference[:3]
    distance = float(np.linalg.norm(delta))
    if distance > translation_limit:
        stepped = reference[:3] + delta * (translation_limit / distance)
        if np.all(reference[:3] >= low) and np.all(reference[:3] <= high):
            stepped = np.clip(stepped, low, high)
        name = _binding("max_step_translation_m", config.max_step_translation_m,
                        "max_speed_m_s", translation_limit)
        clips.append(dict(limit=name, requested=position, sent=stepped,
                          limit_value=translation_limit))
        position = stepped

    rotvec, cone = clip_orientation(requested[3:], reference[3:], config)
    clips += cone
    if np.array_equal(rotvec, reference[3:]):
        return np.concatenate([position, rotvec]), clips  # no turn: skip the rotation maths
    step = pose_delta(reference, np.concatenate([position, rotvec]))[3:]
    angle = float(np.linalg.norm(step))
    if angle > rotation_limit:
        # compose_delta keeps the result's rotation vector continuous with the reference: a
        # flip near 180 deg would look like a jump to a controller interpolating them.
        turn = np.concatenate([np.zeros(3), step * (rotation_limit / angle)])
        clipped = compose_delta(reference, turn)[3:]
        name = _binding("max_step_rotation_rad", config.max_step_rotation_rad,
                        "max_angular_speed_rad_s", rotation_limit)
        clips.append(dict(limit=name, requested=rotvec, sent=clipped,
                          limit_value=rotation_limit))
        rotvec = clipped
    return np.concatenate([position, rotvec]), clips


def _binding(step_name: str, step_value: float, speed_name: str, limit: float) -> str:
    """Which setting made the per-tick ``limit``: the step limit, or the speed limit times
    the control period when that is tighter."""
    return step_name if step_value <= limit else speed_name


def clip_orientation(
    rotvec: np.ndarray, reference: np.ndarray, config: SafetyConfig
) -> tuple[np.ndarray, list[dict]]:
    """``rotvec (3,)`` turned back onto the cone of ``max_orientation_deviation_rad`` around
    ``orientation_center`` (the shortest way, toward the centre), continuous with
    ``reference (3,)``; unchanged inside it or without the limit."""
    limit = config.max_orientation_deviation_rad
    if limit is None:
        return rotvec, []
    center = np.concatenate([np.zeros(3), config.orientation_center])
    offset = pose_delta(center, np.concatenate([np.zeros(3), rotvec]))[3:]
    angle = float(np.linalg.norm(offset))
    if angle <= limit:
        return rotvec, []
    turn = np.concatenate([np.zeros(3), offset * (limit / angle)])
    clipped = unwrap_rotvec(compose_delta(center, turn)[3:], reference)
    return clipped, [dict(limit="max_orientation_deviation_rad", requested=rotvec,
                          sent=clipped, limit_value=limit)]
