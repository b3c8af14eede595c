"""Ensembling weights, action filtering, geometry, static-frame detection and loop timing (pure numpy)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from hardware import geometry as geo
from hardware.arm import Workspace
from hardware.cleaning import StaticThresholds, mask_to_ranges, moving_mask, moving_mask_state
from hardware.ensemble import TemporalEnsembler, ensemble_weights
from hardware.safety import ActionFilter, GripperHysteresis
from hardware.timing import RateLimiter


def test_ensemble_weights_match_hand_computed_values() -> None:
    ages = np.array([2, 1, 0])  # three predictions cover this step: made 2, 1 and 0 steps ago
    np.testing.assert_allclose(ensemble_weights("new", ages), [0, 0, 1])
    np.testing.assert_allclose(ensemble_weights("old", ages), [1, 0, 0])
    np.testing.assert_allclose(ensemble_weights("avg", ages), [1 / 3, 1 / 3, 1 / 3])
    # hato: 0.5 ** age -> 0.25, 0.5, 1 normalised by 1.75
    np.testing.assert_allclose(ensemble_weights("hato", ages), [0.25 / 1.75, 0.5 / 1.75, 1 / 1.75])
    # act: exp(-k * age), k = 0.5 -> e^-1, e^-0.5, 1
    e = np.exp([-1.0, -0.5, 0.0])
    np.testing.assert_allclose(ensemble_weights("act", ages, k=0.5), e / e.sum())
    with pytest.raises(ValueError, match="unknown ensemble mode"):
        ensemble_weights("median", ages)


def _chunk(value: float, n: int = 4) -> np.ndarray:
    """n actions [value, 0, 0, identity r6, gripper value] (the rotation stays exact under blending)."""
    chunk = np.zeros((n, 10))
    chunk[:, 0] = value
    chunk[:, 3:9] = [1, 0, 0, 0, 1, 0]
    chunk[:, 9] = value / 10
    return chunk


@pytest.mark.parametrize("mode, expected", [
    ("new", 30.0), ("old", 10.0), ("avg", 20.0),
    ("hato", (10 * 0.25 + 20 * 0.5 + 30 * 1) / 1.75),
    ("act", float(np.dot(np.exp([-0.2, -0.1, 0.0]) / np.exp([-0.2, -0.1, 0.0]).sum(), [10, 20, 30]))),
])
def test_ensembler_blends_overlapping_chunks(mode: str, expected: float) -> None:
    ens = TemporalEnsembler(mode, k=0.1, tau=0.5)
    ens.add(_chunk(10), 0)  # covers steps 0..3
    ens.add(_chunk(20), 1)  # 1..4
    ens.add(_chunk(30), 2)  # 2..5
    step2 = ens.get(2)
    assert step2[0] == pytest.approx(expected)
    assert step2[9] == pytest.approx(expected / 10)
    np.testing.assert_allclose(step2[3:9], [1, 0, 0, 0, 1, 0])
    assert ens.get(1) is None  # past steps are gone
    assert ens.get(6) is None  # nothing covers step 6


def test_hysteresis_and_filter() -> None:
    hyst = GripperHysteresis(close_above=0.5, open_below=-0.5)
    assert [hyst(v) for v in (0.0, 0.4, 0.6, 0.0, -0.4, -0.6, 0.3)] == [-1, -1, 1, 1, 1, -1, -1]
    with pytest.raises(ValueError):
        GripperHysteresis(0.0, 0.1)
    filt = ActionFilter(Workspace((0, 0, 0), (1, 1, 1)), max_rot_step=0.1)
    filt.reset(np.array([0.5, 0.5, 0.5, 1, 0, 0, 0]))
    turned = geo.rotvec_to_matrix([0, 0, 0.5])  # 0.5 rad away from the current orientation
    action = np.concatenate([[2.0, -1.0, 0.5], geo.matrix_to_rot6d(turned), [0.9]])
    out = filt(action)
    np.testing.assert_allclose(out[:3], [1.0, 0.0, 0.5])
    assert geo.rotation_angle(np.eye(3), geo.rot6d_to_matrix(out[3:9])) == pytest.approx(0.1)
    assert out[9] == 1.0
    out2 = filt(action)  # the limit applies per step, from the last commanded orientation
    assert geo.rotation_angle(np.eye(3), geo.rot6d_to_matrix(out2[3:9])) == pytest.approx(0.2)


def test_geometry_round_trips() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        q = q if q[0] >= 0 else -q
        m = geo.quat_to_matrix(q)
        np.testing.assert_allclose(m @ m.T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(geo.matrix_to_quat(m), q, atol=1e-10)
        np.testing.assert_allclose(geo.rot6d_to_matrix(geo.matrix_to_rot6d(m)), m, atol=1e-12)
        np.testing.assert_allclose(geo.rotvec_to_matrix(geo.matrix_to_rotvec(m)), m, atol=1e-9)
        pose = np.concatenate([rng.normal(size=3), q])
        back, grip = geo.action_to_pose(geo.pose_to_action(pose, 0.3))
        np.testing.assert_allclose(back, pose, atol=1e-10) and grip == 0.3
    assert geo.command_to_width(-1, 0.08) == 0.08 and geo.command_to_width(1, 0.08) == 0.0
    assert geo.width_to_command(0.04, 0.08) == 0.0


def _actions(positions: list[float], grips: list[float] | None = None) -> np.ndarray:
    out = np.zeros((len(positions), 10))
    out[:, 0] = positions
    out[:, 3:9] = [1, 0, 0, 0, 1, 0]
    out[:, 9] = grips if grips is not None else -1.0
    return out


def test_moving_mask_keeps_first_and_moving_frames() -> None:
    th = StaticThresholds(pos_eps=0.01, rot_eps=0.05, grip_eps=0.5)
    # frames: start, static x2, move, slow creep (0.004 per frame) that adds up, gripper closes
    pos = [0.0, 0.001, 0.002, 0.05, 0.054, 0.058, 0.062, 0.062, 0.062]
    grips = [-1, -1, -1, -1, -1, -1, -1, 1, 1]
    keep = moving_mask(_actions(pos, grips), th)
    assert keep.tolist() == [True, False, False, True, False, False, True, True, False]
    assert mask_to_ranges(keep, offset=10) == [(10, 11), (13, 14), (16, 18)]
    rotated = _actions([0.0, 0.0])
    rotated[1, 3:9] = geo.matrix_to_rot6d(geo.rotvec_to_matrix([0, 0, 0.06]))
    assert moving_mask(rotated, th).tolist() == [True, True]


def test_rate_limiter_holds_the_rate() -> None:
    limiter = RateLimiter(50.0)
    stamps = []
    for _ in range(11):
        limiter.wait()
        stamps.append(time.perf_counter())
    period = np.diff(stamps)
    assert period.mean() == pytest.approx(0.02, rel=0.25)
    with pytest.raises(ValueError):
        RateLimiter(0)


def test_resizing_frames() -> None:
    from hardware.images import resize_color, resize_depth

    color = np.zeros((48, 64, 3), np.uint8)
    color[:, 32:] = 200
    small = resize_color(color, 16, 12)
    assert small.shape == (12, 16, 3) and small[:, :8].max() == 0 and small[:, 8:].min() == 200
    depth = np.arange(48 * 64, dtype=np.uint16).reshape(48, 64)
    out = resize_depth(depth, 16, 12)
    assert out.shape == (12, 16) and out.dtype == np.uint16 and set(out.ravel()) <= set(depth.ravel())
    assert resize_color(color, 64, 48) is color


def test_state_based_mask_keeps_frames_where_only_the_fingers_move() -> None:
    th = StaticThresholds(pos_eps=0.01, rot_eps=0.05, grip_width_eps=0.005)
    tcp = np.tile([0.5, 0.0, 0.2, 0.0, 0.0, 1.0, 0.0], (6, 1))
    tcp[5, 0] = 0.52  # moves at the end
    width = np.array([0.08, 0.08, 0.07, 0.06, 0.06, 0.06])  # fingers close in frames 2-3
    assert moving_mask_state(tcp, width, th).tolist() == [True, False, True, True, False, True]
    assert moving_mask_state(tcp, None, th).tolist() == [True, False, False, False, False, True]
