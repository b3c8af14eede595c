"""Rotation conversions for absolute end-effector actions (6-D representation), via roma.

Conventions: quaternions are (x, y, z, w) like robosuite and roma; the 6-D rotation is the
first two *columns* of the rotation matrix, concatenated: [R[:, 0], R[:, 1]].
All functions take and return float64 numpy arrays with arbitrary leading batch dimensions.
"""

from __future__ import annotations

import numpy as np
import roma
import torch


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def _n(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


def matrix_to_rot6d(matrix: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 6) first two columns."""
    m = np.asarray(matrix, dtype=np.float64)
    return np.concatenate([m[..., :, 0], m[..., :, 1]], axis=-1)


def rot6d_to_matrix(rot6d: np.ndarray) -> np.ndarray:
    """(..., 6) -> (..., 3, 3) rotation matrices (Gram-Schmidt, so any non-degenerate input is valid)."""
    r = np.asarray(rot6d, dtype=np.float64)
    cols = np.stack([r[..., 0:3], r[..., 3:6]], axis=-1)  # (..., 3, 2)
    return _n(roma.special_gramschmidt(_t(cols)))


def matrix_to_rotvec(matrix: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 3) axis-angle vectors."""
    return _n(roma.rotmat_to_rotvec(_t(matrix)))


def rotvec_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """(..., 3) axis-angle vectors -> (..., 3, 3)."""
    return _n(roma.rotvec_to_rotmat(_t(rotvec)))


def quat_to_matrix(quat_xyzw: np.ndarray) -> np.ndarray:
    """(..., 4) unit quaternions (x, y, z, w) -> (..., 3, 3)."""
    q = _t(quat_xyzw)
    return _n(roma.unitquat_to_rotmat(q / q.norm(dim=-1, keepdim=True)))


def matrix_to_quat(matrix: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 4) unit quaternions (x, y, z, w)."""
    return _n(roma.rotmat_to_unitquat(_t(matrix)))


def rot6d_to_rotvec(rot6d: np.ndarray) -> np.ndarray:
    """(..., 6) -> (..., 3) axis-angle, the form robosuite's absolute OSC_POSE controller takes."""
    return matrix_to_rotvec(rot6d_to_matrix(rot6d))


def rotvec_to_rot6d(rotvec: np.ndarray) -> np.ndarray:
    """(..., 3) axis-angle -> (..., 6)."""
    return matrix_to_rot6d(rotvec_to_matrix(rotvec))
