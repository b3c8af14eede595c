"""The data-scaled training budget, the open-loop fit report and fine-tuning from another checkpoint."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sime_policy.training.budget import resolve_steps
from sime_policy.training.checkpoint import IncompatibleCheckpointError, checkpoint_info, load_policy
from sime_policy.training.fit_report import FitThresholds, arm_errors, judge, read_fit_report
from sime_policy.training.trainer import train

from test_trainer import make_store, one_thread, tiny_config  # noqa: F401  (same directory; one_thread: autouse)


def test_budget_scales_with_windows_between_floor_and_cap() -> None:
    fixed = resolve_steps(steps=300, epochs=None, min_steps=0, max_steps=None, windows=1000, batch_size=64)
    assert fixed.steps == 300 and fixed.rule == "fixed step count"
    # 800 epochs of 182 windows at batch 64 = ceil(2275) steps, below the floor of 2500
    small = resolve_steps(steps=1, epochs=800, min_steps=2500, max_steps=4000, windows=182, batch_size=64)
    assert small.steps == 2500 and "floor" in small.rule
    middle = resolve_steps(steps=1, epochs=800, min_steps=2500, max_steps=4000, windows=240, batch_size=64)
    assert middle.steps == 3000 and middle.epochs_seen == pytest.approx(800)
    big = resolve_steps(steps=1, epochs=800, min_steps=2500, max_steps=4000, windows=1000, batch_size=64)
    assert big.steps == 4000 and "capped" in big.rule
    assert resolve_steps(steps=1, epochs=2.5, min_steps=0, max_steps=None, windows=10, batch_size=4).steps == 7
    assert "epochs" in middle.describe() and "3000 steps" in middle.describe()
    for bad in (0, -1, math.nan, "10"):
        with pytest.raises(ValueError, match="epochs must be a positive number"):
            resolve_steps(steps=1, epochs=bad, min_steps=0, max_steps=None, windows=10, batch_size=4)
    with pytest.raises(ValueError, match="min_steps <= max_steps"):
        resolve_steps(steps=1, epochs=1, min_steps=50, max_steps=10, windows=10, batch_size=4)
    with pytest.raises(ValueError, match="windows >= 1"):
        resolve_steps(steps=1, epochs=1, min_steps=0, max_steps=None, windows=0, batch_size=4)


def test_trainer_resolves_the_budget_from_the_data_and_records_it(tmp_path) -> None:
    few = make_store(tmp_path / "few", goals=(-0.8, 0.8), length=20)
    many = make_store(tmp_path / "many", goals=(-0.8, -0.3, 0.3, 0.8, -0.55, 0.55), length=20)
    config = tiny_config(steps=999, val_ratio=0.0, epochs=3.0, min_steps=5, step_cap=60, fit_report=False)
    small = train(few, "v1", config, tmp_path / "a", progress=False)
    large = train(many, "v1", config, tmp_path / "b", progress=False)
    windows_small, windows_large = small.budget.windows, large.budget.windows
    assert windows_large == 3 * windows_small                       # 3x the episodes, 3x the windows
    assert small.step == math.ceil(3.0 * windows_small / 16) and large.step == math.ceil(3.0 * windows_large / 16)
    assert large.step > small.step
    info = checkpoint_info(large.final_checkpoint)
    assert info["total_steps"] == large.step and info["config"]["train"]["steps"] == large.step
    assert info["data"]["budget"]["epochs"] == 3.0 and info["data"]["budget"]["windows"] == windows_large
    log = (tmp_path / "b" / "train.log").read_text()
    assert f"budget: {large.step} steps x batch 16 over {windows_large} windows" in log
    # resuming a data-scaled run continues to the same resolved total
    capped = train(many, "v1", tiny_config(steps=1, val_ratio=0.0, epochs=100.0, step_cap=12, fit_report=False),
                   tmp_path / "c", progress=False, stop_after=5)
    assert capped.step == 5 and capped.final_checkpoint is None
    resumed = train(many, "v1", tiny_config(steps=1, val_ratio=0.0, epochs=100.0, step_cap=12, fit_report=False),
                    tmp_path / "c", progress=False, resume=tmp_path / "c")
    assert resumed.step == 12 and resumed.budget.rule.endswith("capped at 12 steps")


def test_fit_report_measures_a_trained_policy_and_flags_an_untrained_one(tmp_path) -> None:
    store = make_store(tmp_path / "s")
    good = train(store, "v1", tiny_config(steps=300, val_ratio=0.0, use_ema=False), tmp_path / "good", progress=False)
    bad = train(store, "v1", tiny_config(steps=2, val_ratio=0.0, warmup_steps=1), tmp_path / "bad", progress=False)
    assert good.fit is not None and bad.fit is not None
    # toy actions are 2-D (not the 10-D arm layout): the report gives the normalised error only
    assert math.isnan(good.fit.position_error_mm)
    assert good.fit.normalized_mse < bad.fit.normalized_mse / 3
    assert not bad.fit.ok and "normalised action MSE" in bad.fit.problems[0]
    assert good.fit.windows > 0 and good.fit.episodes == 6
    saved = read_fit_report(tmp_path / "good")
    assert saved is not None and saved.normalized_mse == pytest.approx(good.fit.normalized_mse)
    assert json.loads((tmp_path / "bad" / "fit.json").read_text())["ok"] is False
    assert "open-loop fit on 6 training episodes" in (tmp_path / "good" / "train.log").read_text()


def _arm_chunk(positions: np.ndarray, gripper: np.ndarray) -> np.ndarray:
    """(B, T, 10) absolute actions with identity rotation."""
    b, t = positions.shape[:2]
    rot = np.broadcast_to(np.array([1.0, 0, 0, 0, 1.0, 0]), (b, t, 6))
    return np.concatenate([positions, rot, gripper[..., None]], axis=-1)


def test_arm_errors_in_millimetres_degrees_and_flips() -> None:
    steps = np.arange(8, dtype=np.float64)
    recorded_pos = np.stack([steps * 0.01, np.zeros(8), np.zeros(8)], -1)[None]        # 10 mm per step, straight
    grip = -np.ones((1, 8))
    recorded = _arm_chunk(recorded_pos, grip)
    predicted = recorded.copy()
    predicted[..., 1] += 0.003                                                        # 3 mm offset sideways
    predicted[0, ::2, 2] += 0.004                                                     # 4 mm zig-zag up and down
    predicted[0, 5:, 9] = 1.0                                                         # gripper closes early
    z = np.radians(10.0)                                                              # 10 deg yaw on every step
    predicted[..., 3:9] = [math.cos(z), math.sin(z), 0, -math.sin(z), math.cos(z), 0]
    valid = np.ones((1, 8), bool)
    figures = arm_errors(predicted, recorded, valid)
    assert figures["rotation_error_deg"] == pytest.approx(10.0, abs=1e-6)
    expected = np.mean([math.hypot(3, 4 if i % 2 == 0 else 0) for i in range(8)])
    assert figures["position_error_mm"] == pytest.approx(expected, abs=1e-6)
    assert figures["reference_jitter_mm"] == pytest.approx(0.0, abs=1e-9)
    assert figures["jitter_mm"] == pytest.approx(8.0, abs=1e-6)                      # second difference of +-4 mm
    assert figures["gripper_error"] == pytest.approx(3 / 8)
    assert figures["gripper_flips"] == 1 and figures["reference_gripper_flips"] == 0
    problems = judge(figures, FitThresholds(position_error_mm=3.0, rotation_error_deg=5.0, jitter_mm=5.0))
    assert any("position error" in p for p in problems) and any("jitter 8.0 mm" in p for p in problems)
    assert any("gripper wrong" in p for p in problems) and any("rotation error" in p for p in problems)
    # padded steps (past the episode's end) are left out
    valid[0, 4:] = False
    assert arm_errors(predicted, recorded, valid)["gripper_error"] == 0.0


def test_init_from_fine_tunes_and_refuses_other_architectures(tmp_path) -> None:
    store = make_store(tmp_path / "s")
    first = train(store, "v1", tiny_config(steps=60, val_ratio=0.0), tmp_path / "first", progress=False)
    tuned = train(store, "v1", tiny_config(steps=3, val_ratio=0.0), tmp_path / "tuned", progress=False,
                  init_from=first.final_checkpoint)
    scratch = train(store, "v1", tiny_config(steps=3, val_ratio=0.0), tmp_path / "scratch", progress=False)
    assert tuned.fit.normalized_mse < scratch.fit.normalized_mse
    info = checkpoint_info(tuned.final_checkpoint)
    assert info["data"]["init_from"] == first.checkpoint_id
    assert tuned.checkpoint_id != scratch.checkpoint_id                 # the starting weights are part of the id
    assert load_policy(tuned.final_checkpoint) is not None
    with pytest.raises(IncompatibleCheckpointError, match="down_dims"):
        train(store, "v1", tiny_config(steps=3, val_ratio=0.0, down_dims=(8, 16)), tmp_path / "other",
              progress=False, init_from=first.final_checkpoint)
