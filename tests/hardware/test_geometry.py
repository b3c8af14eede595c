"""hardware.geometry on roma: hand-computed rotations, the (w, x, y, z) device boundary, round trips."""

from __future__ import annotations

import numpy as np
import pytest

from hardware import geometry as geo

H = np.sqrt(0.5)
#: 90 degrees about x, y and z: (axis, rotation matrix, Flexiv quaternion (w, x, y, z))
QUARTER_TURNS = [
    ("x", np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float), np.array([H, H, 0, 0])),
    ("y", np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]], float), np.array([H, 0, H, 0])),
    ("z", np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], float), np.array([H, 0, 0, H])),
]
AXES = {"x": np.array([1.0, 0, 0]), "y": np.array([0, 1.0, 0]), "z": np.array([0, 0, 1.0])}


def _random_rotations(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, 4))
    return geo.xyzw_quat_to_matrix(q)


def test_identity() -> None:
    np.testing.assert_allclose(geo.quat_to_matrix([1, 0, 0, 0]), np.eye(3), atol=1e-12)
    np.testing.assert_allclose(geo.matrix_to_quat(np.eye(3)), [1, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(geo.matrix_to_rotvec(np.eye(3)), np.zeros(3), atol=1e-12)
    np.testing.assert_allclose(geo.rotvec_to_matrix(np.zeros(3)), np.eye(3), atol=1e-12)
    np.testing.assert_allclose(geo.matrix_to_rot6d(np.eye(3)), [1, 0, 0, 0, 1, 0])
    np.testing.assert_allclose(geo.rot6d_to_matrix([1, 0, 0, 0, 1, 0]), np.eye(3), atol=1e-12)
    assert geo.rotation_angle(np.eye(3), np.eye(3)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("axis,matrix,quat_wxyz", QUARTER_TURNS, ids=[t[0] for t in QUARTER_TURNS])
def test_quarter_turns_about_each_axis(axis: str, matrix: np.ndarray, quat_wxyz: np.ndarray) -> None:
    np.testing.assert_allclose(geo.quat_to_matrix(quat_wxyz), matrix, atol=1e-12)
    np.testing.assert_allclose(geo.matrix_to_quat(matrix), quat_wxyz, atol=1e-12)
    np.testing.assert_allclose(geo.matrix_to_xyzw_quat(matrix), geo.wxyz_to_xyzw(quat_wxyz), atol=1e-12)
    np.testing.assert_allclose(geo.matrix_to_rotvec(matrix), AXES[axis] * np.pi / 2, atol=1e-12)
    np.testing.assert_allclose(geo.rotvec_to_matrix(AXES[axis] * np.pi / 2), matrix, atol=1e-12)
    np.testing.assert_allclose(geo.matrix_to_rot6d(matrix), np.concatenate([matrix[:, 0], matrix[:, 1]]))
    assert geo.rotation_angle(np.eye(3), matrix) == pytest.approx(np.pi / 2, abs=1e-12)
    assert geo.rotation_angle(matrix, matrix @ matrix) == pytest.approx(np.pi / 2, abs=1e-12)
    np.testing.assert_allclose(matrix @ AXES[axis], AXES[axis])  # the axis stays, the others turn by hand:
    nxt = {"x": "y", "y": "z", "z": "x"}[axis]  # about x: y -> z, about y: z -> x, about z: x -> y
    np.testing.assert_allclose(matrix @ AXES[nxt], AXES[{"x": "z", "y": "x", "z": "y"}[axis]], atol=1e-12)
    np.testing.assert_allclose(np.linalg.matrix_power(matrix, 4), np.eye(3), atol=1e-12)


def test_flexiv_pose_boundary() -> None:
    pose = np.array([0.4, -0.1, 0.3, H, 0, 0, H])  # [xyz, qw, qx, qy, qz]: 90 degrees about z
    pos, rot = geo.pose_to_matrix(pose)
    np.testing.assert_allclose(pos, [0.4, -0.1, 0.3])
    np.testing.assert_allclose(rot, QUARTER_TURNS[2][1], atol=1e-12)
    np.testing.assert_allclose(geo.matrix_to_pose(pos, rot), pose, atol=1e-12)
    action = geo.pose_to_action(pose, -1.0)
    np.testing.assert_allclose(action, [0.4, -0.1, 0.3, 0, 1, 0, -1, 0, 0, -1.0], atol=1e-12)
    back, grip = geo.action_to_pose(action)
    np.testing.assert_allclose(back, pose, atol=1e-12)
    assert grip == -1.0
    np.testing.assert_allclose(geo.wxyz_to_xyzw([1, 2, 3, 4]), [2, 3, 4, 1])
    np.testing.assert_allclose(geo.xyzw_to_wxyz([2, 3, 4, 1]), [1, 2, 3, 4])


def test_negative_w_and_unnormalised_inputs() -> None:
    q = np.array([-H, 0, 0, -H])  # w < 0: the same rotation as (H, 0, 0, H)
    np.testing.assert_allclose(geo.quat_to_matrix(q), QUARTER_TURNS[2][1], atol=1e-12)
    np.testing.assert_allclose(geo.matrix_to_quat(geo.quat_to_matrix(q)), -q, atol=1e-12)  # back with w >= 0
    np.testing.assert_allclose(geo.quat_to_matrix([2, 0, 0, 0]), np.eye(3), atol=1e-12)
    with pytest.raises(ValueError, match="zero quaternion"):
        geo.quat_to_matrix([0, 0, 0, 0])
    # Gram-Schmidt accepts any two independent vectors
    np.testing.assert_allclose(geo.rot6d_to_matrix([2, 0, 0, 1, 3, 0]), np.eye(3), atol=1e-12)


def test_half_turns_keep_the_w_nonnegative_axis() -> None:
    for axis, m in (("x", np.diag([1.0, -1, -1])), ("y", np.diag([-1.0, 1, -1])), ("z", np.diag([-1.0, -1, 1]))):
        np.testing.assert_allclose(geo.matrix_to_quat(m), np.concatenate([[0], AXES[axis]]), atol=1e-12)
        np.testing.assert_allclose(geo.matrix_to_rotvec(m), AXES[axis] * np.pi, atol=1e-12)
        np.testing.assert_allclose(geo.limit_rotation(np.eye(3), m, 0.1), geo.rotvec_to_matrix(AXES[axis] * 0.1),
                                   atol=1e-12)


def test_limit_rotation_by_hand() -> None:
    target = QUARTER_TURNS[0][1]  # 90 degrees about x
    np.testing.assert_allclose(geo.limit_rotation(np.eye(3), target, 2.0), target)
    c, s = np.cos(0.25), np.sin(0.25)
    np.testing.assert_allclose(geo.limit_rotation(np.eye(3), target, 0.25), [[1, 0, 0], [0, c, -s], [0, s, c]],
                               atol=1e-12)


def test_round_trips_single_and_batched() -> None:
    mats = _random_rotations(50)
    rng = np.random.default_rng(1)
    np.testing.assert_allclose(mats @ np.swapaxes(mats, -1, -2), np.broadcast_to(np.eye(3), mats.shape), atol=1e-12)
    np.testing.assert_allclose(geo.quat_to_matrix(geo.matrix_to_quat(mats)), mats, atol=1e-12)
    np.testing.assert_allclose(geo.rot6d_to_matrix(geo.matrix_to_rot6d(mats)), mats, atol=1e-12)
    np.testing.assert_allclose(geo.rotvec_to_matrix(geo.matrix_to_rotvec(mats)), mats, atol=1e-9)
    assert (geo.matrix_to_quat(mats)[:, 0] >= 0).all()
    assert (np.linalg.norm(geo.matrix_to_rotvec(mats), axis=-1) <= np.pi + 1e-12).all()
    poses = np.concatenate([rng.normal(size=(50, 3)), geo.matrix_to_quat(mats)], axis=1)
    pos, rot = geo.pose_to_matrix(poses)
    np.testing.assert_allclose(geo.matrix_to_pose(pos, rot), poses, atol=1e-12)
    for i, m in enumerate(mats[:10]):  # one at a time gives the batched answers
        np.testing.assert_allclose(geo.matrix_to_quat(m), geo.matrix_to_quat(mats)[i], atol=1e-15)
        back, _ = geo.action_to_pose(geo.pose_to_action(poses[i], 0.0))
        np.testing.assert_allclose(back, poses[i], atol=1e-10)
    for a, b in zip(mats[:-1], mats[1:]):  # the angle is the rotation vector's norm of the relative rotation
        assert geo.rotation_angle(a, b) == pytest.approx(np.linalg.norm(geo.matrix_to_rotvec(a.T @ b)), abs=1e-9)
