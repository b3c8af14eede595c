"""Action smoothing of kept rollouts: pose moving average, gripper runs, flips count."""

from __future__ import annotations

import numpy as np
import pytest

from sime_policy.collect.smoothing import SmoothingSettings, gripper_flips, smooth_actions


def one_arm(t: int) -> np.ndarray:
    a = np.zeros((t, 10))
    a[:, 0] = np.linspace(0.0, 1.0, t)      # a ramp: a centred average leaves its interior unchanged
    a[:, 3:9] = [1, 0, 0, 0, 1, 0]           # identity rotation (6-D)
    a[:, 9] = -1.0
    return a


def test_ramps_and_constants_survive_and_jitter_is_averaged():
    a = one_arm(21)
    out = smooth_actions(a, SmoothingSettings(window=5))
    assert np.allclose(out[2:-2, 0], a[2:-2, 0]) and np.allclose(out[:, 3:9], a[:, 3:9])
    noisy = a.copy()
    noisy[::2, 1] += 0.01
    noisy[1::2, 1] -= 0.01
    assert np.abs(smooth_actions(noisy)[2:-2, 1]).max() <= 0.0021  # +-10 mm chatter -> at most 2 mm


def test_short_gripper_runs_merge_into_the_run_before():
    a = one_arm(12)
    a[:, 9] = [-1, -1, 1, -1, -1, -1, 1, 1, 1, 1, 1, 1]
    out = smooth_actions(a, SmoothingSettings(min_gripper_run=4))
    assert out[:, 9].tolist() == [-1] * 6 + [1] * 6
    assert gripper_flips(a) == 3 and gripper_flips(out) == 1
    # a short last run merges too; a short first run is kept (there is no run before it)
    a[:, 9] = [-1] * 10 + [1, 1]
    assert smooth_actions(a)[:, 9].tolist() == [-1] * 12
    a[:, 9] = [1, 1] + [-1] * 10
    assert smooth_actions(a)[:, 9].tolist() == [1, 1] + [-1] * 10
    a[:, 9] = [0.3, -0.2] * 6  # continuous commands become +-1
    assert set(smooth_actions(a, SmoothingSettings(min_gripper_run=1))[:, 9]) == {-1.0, 1.0}


def test_two_arms_are_smoothed_separately():
    a = np.hstack([one_arm(10), one_arm(10)])
    a[:, 19] = [1] * 10
    a[4, 9] = 1.0
    out = smooth_actions(a)
    assert out[:, 9].tolist() == [-1] * 10 and out[:, 19].tolist() == [1] * 10
    assert gripper_flips(a) == 2 and gripper_flips(out) == 0


@pytest.mark.parametrize("shape", [(10,), (10, 7), (10, 11)])
def test_other_action_layouts_are_refused(shape):
    with pytest.raises(ValueError, match="10 x arms"):
        smooth_actions(np.zeros(shape))


@pytest.mark.parametrize("kwargs", [{"window": 4}, {"window": 0}, {"min_gripper_run": 0}, {"extra_steps": -1}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        SmoothingSettings(**kwargs)
