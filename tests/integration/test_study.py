"""`sime study` end to end on the real simulator: replicates with their own seeds and states, a shared round 0,
the run-level report and forest plot, extension of a finished study, and a baseline with the reference's action
noise (one flag away)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import sime_data
from sime_policy.cli import main as sime_main
from sime_policy.pipeline import PipelineConfig
from sime_policy.pipeline.names import Chain
from sime_policy.pipeline.study import SHARED_ROUND0_MARKER, StudyConfig, replicate_config, replicate_seed, run_study
from sime_policy.pipeline.study_report import SUMMARY_COLUMNS

TINY = PipelineConfig(name="tiny-study", task="lift", demos=5, rounds=1, seeds=(7,), train_steps=8, noise_scale=0.5,
                      threshold=1.01, init_states=2, trials=2, eval_states=3, eval_trials=1, max_steps=24,
                      eval_max_steps=30, workers=1, envs=3, record_demos=True, eval_states_seed=300_000,
                      baseline_exploration="action_noise")


def test_a_tiny_study_runs_reports_and_extends(tmp_path: Path) -> None:
    store_path, out = tmp_path / "store", tmp_path / "out"
    study = StudyConfig(name="tiny-study", replicates=2, study_seed=5)
    report = run_study(str(store_path), TINY, study, out, progress=False)
    store = sime_data.open_store(store_path)

    # every replicate is its own run: own seed, own collection and evaluation states, round 0 from the shared one
    seeds = [replicate_seed(5, k) for k in (1, 2)]
    assert list(report.replicates["seed"]) == seeds and len(set(seeds)) == 2
    eval_states = []
    for k, seed in zip((1, 2), seeds):
        config = replicate_config(TINY, study, k)
        chain = Chain("lift", config.name, seed, "sime")
        evaluation = store.version(chain.eval_version(0))
        assert evaluation.rule["trained_on"] == "lift/core_5" and evaluation.n_episodes == 3
        eval_states.append(set(evaluation.rule["init_state_ids"]))
        explored = store.version(chain.explore_version(0))
        assert explored.rule["seed"] == seed                                        # the replicate's own seed
        assert store.version(chain.eval_version(1)).n_episodes == 3
        # the baseline's data: the reference's action-level noise (sigma 0.05), the score without exploration
        collect = store.version(chain.collect_version(0))
        assert collect.rule["exploration"]["explore_mode"] == "action_noise"
        assert collect.rule["exploration"]["noise_scale"] == 0.05
        assert evaluation.rule["exploration"]["explore_mode"] == "none"
        selection = store.version(chain.train_version(1, "lift/core_5"))
        assert selection.rule["pipeline"]["eval_states_seed"] == 300_000 + k       # its states seeds recorded
        assert selection.rule["pipeline"]["states_seed"] == TINY.states_seed + k
        round0 = chain.checkpoint_dir(out / "replicates" / config.name, 0)
        assert (round0 / SHARED_ROUND0_MARKER).is_file()
        shared = Chain("lift", "tiny-study-round0", 7, "sime").checkpoint_dir(out / "round0", 0)
        assert (round0 / "final.ckpt").read_bytes() == (shared / "final.ckpt").read_bytes()
    assert eval_states[0].isdisjoint(eval_states[1])

    # the report: per-replicate rows, the across-replicate summary with its columns, the forest plot
    assert list(pd.read_csv(out / "summary.csv").columns) == SUMMARY_COLUMNS
    per_replicate = pd.read_csv(out / "replicates.csv")
    for column in ("replicate", "seed", "round0", "sime", "baseline", "n", "sime_vs_round0", "sime_vs_round0_low",
                   "sime_vs_round0_high", "sime_vs_round0_p", "sime_vs_baseline", "baseline_reused", "wall_s"):
        assert column in per_replicate.columns
    assert (out / "forest.png").stat().st_size > 5_000
    assert set(report.summary["replicates"]) == {2}
    text = (out / "report.md").read_text()
    assert "Round 0 is shared" in text and "| comparison | replicates |" in text
    assert "```" in text and "    mean " in text                                    # the text forest plot

    # extending: 3 replicates reuse the first two untouched and add one
    first = Chain("lift", "tiny-study-r001", seeds[0], "sime").eval_version(1)
    before = store.version(first).episode_ids
    extended = run_study(str(store_path), TINY, StudyConfig(name="tiny-study", replicates=3, study_seed=5), out,
                         progress=False)
    assert list(extended.replicates["replicate"]) == [1, 2, 3]
    assert sime_data.open_store(store_path).version(first).episode_ids == before
    assert json.loads((out / "replicates" / "tiny-study-r003" / "replicate.json").read_text())["seed"] == \
        replicate_seed(5, 3)
    assert json.loads((out / "study.json").read_text())["replicates"] == 3

    # other settings under the same --out are refused; the report rebuilds from the store alone
    with pytest.raises(ValueError, match="other settings"):
        run_study(str(store_path), TINY, StudyConfig(name="tiny-study", replicates=3, study_seed=6), out,
                  progress=False)
    assert sime_main(["study", "--store", str(store_path), "--out", str(tmp_path / "again"), "--name", "tiny-study",
                      "--task", "lift", "--demos", "5", "--report-only"]) == 0
    assert "| 3 |" in (tmp_path / "again" / "report.md").read_text()
