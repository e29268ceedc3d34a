"""Rotation vectors and pose composition, written once (m, rad).

A pose is ``(6,)``: position ``x, y, z`` (m) and rotation vector ``rx, ry, rz`` (rad, axis times
angle), in the arm's base frame. Plain NumPy and ``math``: scipy's ``Rotation`` costs
0.1-1 ms per call on single rotations, too slow inside a 1-2 ms control tick.
"""

from __future__ import annotations

import math

import numpy as np


def unwrap_rotvec(rotvec: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The rotation vector equivalent to ``rotvec`` closest to ``reference`` (both ``(3,)``,
    rad).

    ``theta * axis`` and ``(theta -/+ 2*pi) * axis`` are one rotation; near 180 deg (a tool
    pointing down) the canonical vector flips sign, so observations and commands pick the one
    continuous with the previous value (a controller interpolating rotation vectors would see
    a jump otherwise).
    """
    rotvec = np.asarray(rotvec, dtype=np.float64)
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return rotvec.copy()
    axis = rotvec / angle
    reference = np.asarray(reference, dtype=np.float64)
    candidates = (rotvec, (angle - 2.0 * math.pi) * axis, (angle + 2.0 * math.pi) * axis)
    return min(candidates, key=lambda c: float(np.linalg.norm(c - reference))).copy()


def quat_from_rotvec(rotvec: np.ndarray) -> np.ndarray:
    """Unit quaternion ``[w, x, y, z]`` ``(4,)`` of rotation vector ``(3,)`` (rad)."""
    rotvec = np.asarray(rotvec, dtype=np.float64)
    angle = math.sqrt(float(rotvec @ rotvec))
    if angle < 1e-12:
        return np.array([1.0, *(0.5 * rotvec)])
    return np.array([math.cos(angle / 2), *(math.sin(angle / 2) / angle * rotvec)])


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a * b`` of quaternions ``[w, x, y, z]`` (rotation b, then a)."""
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ]
    )


def rotvec_from_quat(quat: np.ndarray) -> np.ndarray:
    """Canonical rotation vector ``(3,)`` (angle in [0, pi], rad) of a unit quaternion."""
    quat = np.asarray(quat, dtype=np.float64)
    quat = quat if quat[0] >= 0 else -quat  # the shorter way round
    xyz = quat[1:]
    norm = math.sqrt(float(xyz @ xyz))
    if norm < 1e-12:
        return 2.0 * xyz
    return xyz * (2.0 * math.atan2(norm, quat[0]) / norm)


def matrix_from_quat(quat: np.ndarray) -> np.ndarray:
    """``(3, 3)`` rotation matrix of a unit quaternion ``[w, x, y, z]``."""
    w, x, y, z = np.asarray(quat, dtype=np.float64)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def quat_from_matrix(matrix: np.ndarray) -> np.ndarray:
    """Unit quaternion ``[w, x, y, z]`` with ``w >= 0`` of a ``(3, 3)`` rotation matrix."""
    m = np.asarray(matrix, dtype=np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    quat = np.array(q)
    quat /= np.linalg.norm(quat)
    return quat if quat[0] >= 0 else -quat


def matrix_from_rotvec(rotvec: np.ndarray) -> np.ndarray:
    """``(3, 3)`` rotation matrix of rotation vector ``rotvec (3,)`` (rad)."""
    return matrix_from_quat(quat_from_rotvec(rotvec))


def rotvec_from_matrix(matrix: np.ndarray) -> np.ndarray:
    """Canonical rotation vector ``(3,)`` (angle in [0, pi], rad) of ``matrix (3, 3)``."""
    return rotvec_from_quat(quat_from_matrix(matrix))


def compose_delta(pose: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """``pose (6,)`` moved by ``delta (6,)``: translation added, rotation vector ``delta[3:]``
    applied in the base frame (``R = R_delta @ R_pose``); m, rad. The result's rotation vector
    is the one continuous with ``pose[3:]``."""
    pose = np.asarray(pose, dtype=np.float64)
    delta = np.asarray(delta, dtype=np.float64)
    rotation = rotvec_from_quat(quat_mul(quat_from_rotvec(delta[3:]), quat_from_rotvec(pose[3:])))
    return np.concatenate([pose[:3] + delta[:3], unwrap_rotvec(rotation, pose[3:])])


def pose_delta(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """The ``(6,)`` delta with ``compose_delta(before, delta) == after`` (m, rad), its rotation
    part of angle at most pi."""
    before = np.asarray(before, dtype=np.float64)
    after = np.asarray(after, dtype=np.float64)
    inverse = quat_from_rotvec(before[3:]) * np.array([1.0, -1.0, -1.0, -1.0])
    turn = rotvec_from_quat(quat_mul(quat_from_rotvec(after[3:]), inverse))
    return np.concatenate([after[:3] - before[:3], turn])
