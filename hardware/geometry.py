"""Pose helpers in plain numpy: quaternions (w, x, y, z), rotation matrices, 6-D rotations, 10-D actions.

The rig works with TCP poses as 7-vectors ``[x, y, z, qw, qx, qy, qz]`` (Flexiv's convention) and
stores actions like the simulator: ``[x, y, z, r6 (first two matrix columns), gripper]`` with the
gripper command in [-1 (open), +1 (closed)].
"""

from __future__ import annotations

import numpy as np


def quat_to_matrix(quat_wxyz: np.ndarray) -> np.ndarray:
    """Rotation matrix of a (not necessarily unit) quaternion given as (w, x, y, z)."""
    q = np.asarray(quat_wxyz, dtype=np.float64)
    norm = np.linalg.norm(q)
    if norm < 1e-12:
        raise ValueError("zero quaternion")
    w, x, y, z = q / norm
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quat(matrix: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) with w >= 0 of a rotation matrix."""
    m = np.asarray(matrix, dtype=np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = np.array([0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s])
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = np.array([(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s])
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = np.array([(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s])
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = np.array([(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s])
    q /= np.linalg.norm(q)
    return -q if q[0] < 0 else q


def matrix_to_rot6d(matrix: np.ndarray) -> np.ndarray:
    """6-D rotation: the first two columns of the matrix, column after column."""
    m = np.asarray(matrix, dtype=np.float64)
    return np.concatenate([m[:, 0], m[:, 1]])


def rot6d_to_matrix(rot6d: np.ndarray) -> np.ndarray:
    """Rotation matrix from a 6-D rotation by Gram-Schmidt (any two independent vectors work)."""
    r = np.asarray(rot6d, dtype=np.float64)
    a, b = r[:3], r[3:6]
    x = a / max(np.linalg.norm(a), 1e-12)
    b = b - np.dot(x, b) * x
    y = b / max(np.linalg.norm(b), 1e-12)
    return np.stack([x, y, np.cross(x, y)], axis=1)


def rotvec_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Rotation matrix of an axis-angle vector (Rodrigues)."""
    v = np.asarray(rotvec, dtype=np.float64)
    angle = np.linalg.norm(v)
    if angle < 1e-12:
        return np.eye(3)
    k = v / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def matrix_to_rotvec(matrix: np.ndarray) -> np.ndarray:
    """Axis-angle vector of a rotation matrix (via the quaternion, stable near 0 and pi)."""
    w, x, y, z = matrix_to_quat(matrix)
    s = np.linalg.norm([x, y, z])
    if s < 1e-12:
        return np.zeros(3)
    angle = 2.0 * np.arctan2(s, w)
    return np.array([x, y, z]) / s * angle


def rotation_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle in radians of the rotation taking matrix a to matrix b."""
    cos = (np.trace(np.asarray(a).T @ np.asarray(b)) - 1.0) / 2.0
    return float(np.arccos(np.clip(cos, -1.0, 1.0)))


def limit_rotation(current: np.ndarray, target: np.ndarray, max_angle: float) -> np.ndarray:
    """`target`, or the rotation `max_angle` radians from `current` along the geodesic toward it."""
    delta = matrix_to_rotvec(np.asarray(current).T @ np.asarray(target))
    angle = np.linalg.norm(delta)
    if angle <= max_angle:
        return np.asarray(target, dtype=np.float64)
    return np.asarray(current) @ rotvec_to_matrix(delta * (max_angle / angle))


def pose_to_action(pose7: np.ndarray, gripper: float) -> np.ndarray:
    """10-D action [xyz, r6, gripper] of a TCP pose [xyz, qw, qx, qy, qz] and a gripper command."""
    p = np.asarray(pose7, dtype=np.float64)
    return np.concatenate([p[:3], matrix_to_rot6d(quat_to_matrix(p[3:7])), [float(gripper)]])


def action_to_pose(action: np.ndarray) -> tuple[np.ndarray, float]:
    """TCP pose [xyz, qw, qx, qy, qz] and gripper command of a 10-D action."""
    a = np.asarray(action, dtype=np.float64)
    return np.concatenate([a[:3], matrix_to_quat(rot6d_to_matrix(a[3:9]))]), float(a[9])


def width_to_command(width: float, max_width: float) -> float:
    """Gripper opening in metres -> command in [-1 (fully open), +1 (closed)]."""
    return float(np.clip(1.0 - 2.0 * float(width) / max_width, -1.0, 1.0))


def command_to_width(command: float, max_width: float) -> float:
    """Gripper command in [-1, +1] -> opening in metres (max_width when -1, 0 when +1)."""
    return float(max_width * (1.0 - np.clip(float(command), -1.0, 1.0)) / 2.0)
