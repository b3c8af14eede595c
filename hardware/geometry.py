"""Pose helpers on roma: rotation matrices, (x, y, z, w) quaternions, 6-D rotations, 10-D actions.

One convention inside: rotations are 3x3 matrices and quaternions are (x, y, z, w), as in roma and
:mod:`sime_policy.envs.rotations` (the same 6-D rotation: the first two matrix columns, column after
column). The rig's TCP poses are 7-vectors ``[x, y, z, qw, qx, qy, qz]`` (Flexiv's convention); they are
converted only at that boundary: :func:`pose_to_matrix`, :func:`matrix_to_pose`, :func:`pose_to_action`,
:func:`action_to_pose` and the (w, x, y, z) :func:`quat_to_matrix` / :func:`matrix_to_quat`.
Actions are stored like the simulator's: ``[x, y, z, r6, gripper]`` with the gripper command in
[-1 (open), +1 (closed)]. Conversions take and return float64 numpy arrays, with optional leading batch
dimensions. roma (hence torch) is imported on the first conversion, not with the module. It is used
directly rather than through ``sime_policy.envs.rotations``: importing that module runs
``sime_policy.envs``, which loads robosuite, and the real rig must not need the simulator.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch


def _roma() -> ModuleType:
    """roma, imported on first use: importing `hardware` loads no torch (tests/hardware checks it)."""
    import roma

    return roma


def _t(x: np.ndarray) -> torch.Tensor:
    import torch

    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def _n(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


def _canonical(quat_xyzw: torch.Tensor) -> torch.Tensor:
    """The same rotations with w >= 0 (quaternions with w < 0 negated)."""
    return (-quat_xyzw).where(quat_xyzw[..., 3:] < 0, quat_xyzw)


# --- the device boundary: Flexiv's (w, x, y, z) ------------------------------------------------------------

def wxyz_to_xyzw(quat_wxyz: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions (w, x, y, z) -> (x, y, z, w)."""
    q = np.asarray(quat_wxyz, dtype=np.float64)
    return np.concatenate([q[..., 1:4], q[..., 0:1]], axis=-1)


def xyzw_to_wxyz(quat_xyzw: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions (x, y, z, w) -> (w, x, y, z)."""
    q = np.asarray(quat_xyzw, dtype=np.float64)
    return np.concatenate([q[..., 3:4], q[..., 0:3]], axis=-1)


def quat_to_matrix(quat_wxyz: np.ndarray) -> np.ndarray:
    """Rotation matrix of a (not necessarily unit) quaternion given as (w, x, y, z), Flexiv's order."""
    return xyzw_quat_to_matrix(wxyz_to_xyzw(quat_wxyz))


def matrix_to_quat(matrix: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) with w >= 0, Flexiv's order, of a rotation matrix."""
    return xyzw_to_wxyz(matrix_to_xyzw_quat(matrix))


def pose_to_matrix(pose7: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position (..., 3) and rotation matrix (..., 3, 3) of TCP poses [xyz, qw, qx, qy, qz]."""
    p = np.asarray(pose7, dtype=np.float64)
    return p[..., :3].copy(), quat_to_matrix(p[..., 3:7])


def matrix_to_pose(pos: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """TCP poses [xyz, qw, qx, qy, qz] (w >= 0) of positions (..., 3) and rotation matrices (..., 3, 3)."""
    return np.concatenate([np.asarray(pos, dtype=np.float64), matrix_to_quat(matrix)], axis=-1)


def pose_to_action(pose7: np.ndarray, gripper: float) -> np.ndarray:
    """10-D action [xyz, r6, gripper] of a TCP pose [xyz, qw, qx, qy, qz] and a gripper command."""
    pos, rot = pose_to_matrix(pose7)
    return np.concatenate([pos, matrix_to_rot6d(rot), [float(gripper)]])


def action_to_pose(action: np.ndarray) -> tuple[np.ndarray, float]:
    """TCP pose [xyz, qw, qx, qy, qz] and gripper command of a 10-D action."""
    a = np.asarray(action, dtype=np.float64)
    return matrix_to_pose(a[:3], rot6d_to_matrix(a[3:9])), float(a[9])


# --- inside: matrices and (x, y, z, w) quaternions, through roma --------------------------------------------

def xyzw_quat_to_matrix(quat_xyzw: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions (x, y, z, w), normalised first -> (..., 3, 3) rotation matrices."""
    q = _t(quat_xyzw)
    norm = q.norm(dim=-1, keepdim=True)
    if bool((norm < 1e-12).any()):
        raise ValueError("zero quaternion")
    return _n(_roma().unitquat_to_rotmat(q / norm))


def matrix_to_xyzw_quat(matrix: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions (x, y, z, w) with w >= 0."""
    return _n(_canonical(_roma().rotmat_to_unitquat(_t(matrix))))


def matrix_to_rot6d(matrix: np.ndarray) -> np.ndarray:
    """6-D rotation: the first two columns of the matrix, column after column."""
    m = np.asarray(matrix, dtype=np.float64)
    return np.concatenate([m[..., :, 0], m[..., :, 1]], axis=-1)


def rot6d_to_matrix(rot6d: np.ndarray) -> np.ndarray:
    """Rotation matrix from a 6-D rotation by Gram-Schmidt (any two independent vectors work)."""
    r = np.asarray(rot6d, dtype=np.float64)
    cols = np.stack([r[..., 0:3], r[..., 3:6]], axis=-1)  # (..., 3, 2)
    return _n(_roma().special_gramschmidt(_t(cols), epsilon=1e-12))


def rotvec_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Rotation matrix of an axis-angle vector (Rodrigues)."""
    return _n(_roma().rotvec_to_rotmat(_t(rotvec)))


def matrix_to_rotvec(matrix: np.ndarray) -> np.ndarray:
    """Axis-angle vector, angle in [0, pi], of a rotation matrix (via the w >= 0 quaternion, stable near 0 and pi)."""
    quat = _canonical(_roma().rotmat_to_unitquat(_t(matrix)))
    # roma's shortest arc negates quaternions with w <= 0: hand it -q where w == 0 (a half turn), so the
    # axis of the w >= 0 form (its largest component positive) is the one kept
    quat = (-quat).where(quat[..., 3:] == 0, quat)
    return _n(_roma().unitquat_to_rotvec(quat))


def rotation_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle in radians of the rotation taking matrix a to matrix b."""
    return float(_roma().rotmat_geodesic_distance(_t(a), _t(b)))


def limit_rotation(current: np.ndarray, target: np.ndarray, max_angle: float) -> np.ndarray:
    """`target`, or the rotation `max_angle` radians from `current` along the geodesic toward it."""
    current = np.asarray(current, dtype=np.float64)
    delta = matrix_to_rotvec(current.T @ np.asarray(target, dtype=np.float64))
    angle = np.linalg.norm(delta)
    if angle <= max_angle:
        return np.asarray(target, dtype=np.float64)
    return current @ rotvec_to_matrix(delta * (max_angle / angle))


# --- the gripper --------------------------------------------------------------------------------------------

def width_to_command(width: float, max_width: float) -> float:
    """Gripper opening in metres -> command in [-1 (fully open), +1 (closed)]."""
    return float(np.clip(1.0 - 2.0 * float(width) / max_width, -1.0, 1.0))


def command_to_width(command: float, max_width: float) -> float:
    """Gripper command in [-1, +1] -> opening in metres (max_width when -1, 0 when +1)."""
    return float(max_width * (1.0 - np.clip(float(command), -1.0, 1.0)) / 2.0)
