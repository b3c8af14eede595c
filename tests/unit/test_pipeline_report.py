"""SIME pipeline settings, bad input and the report rebuilt from a store (no simulator needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import sime_data
from sime_policy.cli import main as sime_main
from sime_policy.pipeline import PipelineConfig, build_report, get_pipeline_preset, write_report
from sime_policy.pipeline.names import Chain, parse_rollout_name


def _episodes(store: sime_data.Store, successes: list[bool], **meta) -> list[str]:
    ids = []
    with store.writer(source="rollout", task="lift", **meta) as writer:
        for i, ok in enumerate(successes):
            for t in range(4):
                writer.add_step(obs={"x": np.full(2, t, np.float32)}, action=np.zeros(3), reward=0.0, done=False)
            ids.append(writer.finish(success=ok, init_state_id=f"s{i % 4}", trial=i // 4))
    return ids


def _eval(store: sime_data.Store, name: str, rate: float, trained_on: str) -> None:
    n = 8
    ids = _episodes(store, [i < round(rate * n) for i in range(n)])
    store.create_version(name, ids, rule={"kind": "rollouts", "trained_on": trained_on})


def test_report_summarises_seeds_rounds_and_branches(store: sime_data.Store, tmp_path) -> None:
    demos = _episodes(store, [True] * 5)
    store.create_version("lift/core_5", demos)
    rates = {  # seed -> (round 0, baseline round 1, sime round 1)
        1: (0.25, 0.375, 0.625),
        2: (0.5, 0.5, 0.75),
    }
    for seed, (r0, base1, sime1) in rates.items():
        chain_b, chain_s = Chain("lift", "exp", seed, "baseline"), Chain("lift", "exp", seed, "sime")
        _eval(store, chain_s.eval_version(0), r0, "lift/core_5")
        extra = _episodes(store, [True] * (seed + 1))
        store.create_version(chain_b.train_version(1, "lift/core_5"), demos + extra[:1])
        store.create_version(chain_s.train_version(1, "lift/core_5"), demos + extra)
        _eval(store, chain_b.eval_version(1), base1, chain_b.train_version(1, "lift/core_5"))
        _eval(store, chain_s.eval_version(1), sime1, chain_s.train_version(1, "lift/core_5"))
    _eval(store, "lift/rollouts/other", 1.0, "lift/core_5")          # not part of a run: ignored

    report = build_report(store)
    assert report.runs == ["exp"]
    assert report.value("exp", 0, "baseline") == report.value("exp", 0, "sime") == pytest.approx(0.375)
    assert report.value("exp", 1, "baseline") == pytest.approx(0.4375)
    assert report.value("exp", 1, "sime") == pytest.approx(0.6875)
    row = report.summary[(report.summary["round"] == 1) & (report.summary["branch"] == "sime")].iloc[0]
    assert row["seeds"] == 2 and row["n"] == 16
    assert row["success_rate_std"] == pytest.approx(np.std([0.625, 0.75], ddof=1))
    # two seeds: the seed is the unit. Per seed (8 pairs, states s0-s3 x trials 0-1), SIME round 1 minus round 0
    # is 3/8 (seed 1) and 2/8 (seed 2): mean 0.3125. Two-way clustered variance with residuals
    # (d - 0.3125) / 16: by seed 2/1 * 2 * (0.5/16)^2 = 1/256; by state (1 of 4 pairs won in s1-s3, 2 in s0)
    # 4/3 * (0.75^2 + 3 * 0.25^2) / 256 = 1/256; by seed x state cell 8/7 * (5 * 0.375^2 + 3 * 0.625^2) / 256.
    # Their sum V_seed + V_state - V_cell is negative, so the larger one-way variance is used: s.e. 1/16, 1 df.
    assert row["diff_vs_round0"] == pytest.approx(5 / 16)
    t1 = 12.706204736174707                                              # t(0.975, 1 df)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((5 / 16 - t1 / 16, 5 / 16 + t1 / 16))
    from scipy.stats import t as student

    assert row["p_value"] == pytest.approx(2 * student.sf(5.0, 1))       # (5/16) / (1/16) = 5
    assert row["unit"].startswith("2 seeds") and row["between_seed_sd"] == pytest.approx(np.std([3 / 8, 2 / 8], ddof=1))
    # SIME minus baseline: 2/8 in both seeds (no variance between seeds); by state 4/3 * 2/256, by cell 8/7 * 2/256
    se_other = np.sqrt(4 / 3 * 2 / 256 - 8 / 7 * 2 / 256)
    assert row["diff_vs_other"] == pytest.approx(4 / 16)
    assert row["p_value_vs_other"] == pytest.approx(2 * student.sf(0.25 / se_other, 1))
    round0 = report.summary[report.summary["round"] == 0].iloc[0]
    assert np.isnan(round0["diff_vs_round0"]) and round0["n"] == 16
    for column in ("round", "branch", "success_rate", "stderr", "n", "diff_vs_round0", "ci_low", "ci_high", "p_value"):
        assert column in report.summary.columns
    assert row["train_episodes"] == pytest.approx((7 + 8) / 2)        # 5 demos + seed + 1 selected
    base_row = report.summary[(report.summary["round"] == 1) & (report.summary["branch"] == "baseline")].iloc[0]
    assert base_row["train_episodes"] == 6
    assert len(report.rows) == 8                                        # round 0 counted for both branches

    files = write_report(report, tmp_path / "out")
    assert set(files) == {"markdown", "summary", "results", "plot"}
    assert files["plot"].stat().st_size > 5_000
    assert pd.read_csv(files["summary"])["success_rate_mean"].round(4).tolist() == \
        report.summary["success_rate_mean"].round(4).tolist()
    text = files["markdown"].read_text()
    line = next(x for x in text.splitlines() if x.startswith("| 1 | sime |"))
    assert line.startswith("| 1 | sime | 0.688 |")
    assert "| 16 | +0.312 [-0.482, +1.107] | 0.126 | +0.250 [-0.240, +0.740] | 0.0975 |" in line  # the values above
    assert "each seed is one run (the unit)" in text
    assert "not held out" in text                                      # these evaluations were on collection states
    assert "round 1 sime is better than round 0 by +0.312" in text and "not significant at 0.05" in text

    # `sime report` rebuilds the same from the store alone
    assert sime_main(["report", "--store", store.location, "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "report.md").read_text() == text


def test_report_of_store_without_runs_says_so(store: sime_data.Store, tmp_path, capsys) -> None:
    assert build_report(store).summary.empty
    assert sime_main(["report", "--store", store.location, "--out", str(tmp_path / "r")]) == 1
    assert "no SIME run results" in capsys.readouterr().out


def test_rollout_names_round_trip() -> None:
    chain = Chain("can", "exp-1", 2333, "sime")
    assert parse_rollout_name(chain.eval_version(0)) == {"task": "can", "run": "exp-1", "seed": 2333, "branch": None,
                                                         "round": 0, "kind": "eval"}
    assert parse_rollout_name(chain.explore_version(3))["branch"] == "sime"
    assert parse_rollout_name(chain.train_version(2, "can/core_10")) is None
    assert chain.train_version(0, "can/core_10") == "can/core_10"


@pytest.mark.parametrize("updates, message", [
    ({"threshold": 1.2}, "threshold must lie in"),
    ({"threshold": -0.1}, "threshold must lie in"),
    ({"rounds": 0}, "rounds must be an integer >= 1"),
    ({"seeds": ()}, "at least one seed"),
    ({"seeds": (1, 1)}, "distinct"),
    ({"task": "stack"}, "stack"),
    ({"rule": "best"}, "unknown selection rule"),
    ({"name": "a/b"}, "must not contain"),
    ({"trials": 0}, "trials must be a positive integer"),
    ({"trials": 2, "threshold": 0.5}, "can never keep a rollout"),
    ({"eval_states": -1}, "eval_states must be an integer >= 0"),
    ({"eval_trials": 0}, "eval_trials must be a positive integer"),
    ({"eval_states_seed": 100_000}, "eval_states_seed must differ"),
    ({"train_steps": 10, "train_epochs": 5.0}, "not both"),
    ({"train_epochs": -2.0}, "train_epochs must be positive"),
    ({"init_from": "last"}, "init_from must be one of"),
    ({"fit_gate": "maybe"}, "fit_gate must be one of"),
    ({"noise_units": "metres"}, "noise_units must be one of"),
    ({"envs": 0}, "envs must be a positive integer"),
    ({"device": "cuda"}, "CUDA is not available"),
])
def test_bad_settings_are_refused(updates: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PipelineConfig().with_updates(**updates).validate()


def test_threshold_boundaries_are_accepted() -> None:
    for threshold in (0.0, 1.0, 1.01):
        assert PipelineConfig(threshold=threshold).validate().threshold == threshold
    assert get_pipeline_preset("quick").validate().record_demos
    with pytest.raises(ValueError, match="unknown pipeline preset"):
        get_pipeline_preset("fast")


def test_cli_refuses_bad_input_with_the_fix(store: sime_data.Store, tmp_path, capsys) -> None:
    out = str(tmp_path / "out")
    assert sime_main(["run", "--store", store.location, "--out", out, "--threshold", "1.5"]) == 2
    assert "threshold must lie in [0.0, 1.01]" in capsys.readouterr().err
    assert sime_main(["run", "--store", store.location, "--out", out, "--rounds", "0"]) == 2
    assert "rounds must be an integer >= 1" in capsys.readouterr().err
    # the task's demos are missing: the error names the command that records them
    assert sime_main(["run", "--store", store.location, "--out", out, "--demos", "10"]) == 2
    err = capsys.readouterr().err
    assert "lift/core_10" in err and "sime demos --task lift --n 10" in err and "--record-demos" in err
    assert store.versions().empty


def test_presets_follow_the_papers_protocol_and_budget_flags_replace_each_other(capsys) -> None:
    paper = get_pipeline_preset("paper-lift").validate()
    assert (paper.task, paper.demos, paper.init_states, paper.trials, paper.threshold) == ("lift", 10, 100, 5, 0.5)
    assert paper.seeds == (233, 2333, 23333, 233333) and paper.noise_scale == 0.01 and paper.noise_units == "raw"
    assert paper.max_steps == 400 and paper.preset == "lift_lowdim_ref" and paper.held_out
    # the reference feeds the raw low-dim observation vector into the condition: 0.01 raw noise means 0.01
    assert paper.experiment(233).policy.obs_condition == "raw"
    quick_policy = get_pipeline_preset("quick").experiment(233).policy
    assert (quick_policy.obs_condition, quick_policy.obs_range_floor) == ("minmax", 0.1)   # the probe's decision
    assert get_pipeline_preset("paper-can").base_version == "can/core_20"
    assert get_pipeline_preset("paper-can-multi").rounds == 5
    quick = get_pipeline_preset("quick").validate()
    assert quick.held_out and quick.train_epochs is not None and quick.train_steps is None
    assert sime_main(["run", "--preset", "quick", "--steps", "123", "--print-config"]) == 0
    fixed = capsys.readouterr().out
    assert '"train_steps": 123' in fixed and '"train_epochs": null' in fixed


def test_print_config_applies_flags_over_preset(capsys) -> None:
    assert sime_main(["run", "--preset", "quick", "--seeds", "1", "2", "--threshold", "0.4", "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert '"seeds": [\n    1,\n    2\n  ]' in printed and '"threshold": 0.4' in printed and '"name": "quick"' in printed


def test_a_run_refuses_to_score_on_states_its_training_data_started_from(store: sime_data.Store) -> None:
    from sime_policy.envs.wrapper import init_state_id
    from sime_policy.pipeline.steps import RunStates, check_held_out

    collection = (np.arange(5.0), np.arange(5.0) + 1)
    evaluation = (np.arange(5.0) + 10, np.arange(5.0) + 11)
    with store.writer(source="demo", task="lift") as writer:
        for state in (collection[0], evaluation[1]):         # the second demo starts from an evaluation state
            writer.add_step(obs={"x": np.zeros(2, np.float32)}, action=np.zeros(3))
            writer.finish(success=True, init_state_id=init_state_id(state))
    ids = store.episodes()["episode_id"].tolist()
    store.create_version("lift/clean", ids[:1])
    store.create_version("lift/leaky", ids)
    states = RunStates(collection, evaluation)
    check_held_out(store, "lift/clean", states)                # nothing shared: fine
    with pytest.raises(ValueError, match="evaluation state.*initial states of training episodes in 'lift/leaky'"):
        check_held_out(store, "lift/leaky", states)
    assert states.of("eval") == evaluation and states.of("explore") == states.of("collect") == collection


def test_more_rounds_extend_a_run_while_other_settings_start_a_new_one() -> None:
    quick = get_pipeline_preset("quick")
    assert quick.with_updates(rounds=3).identity() == quick.identity()
    assert quick.with_updates(threshold=0.3).identity() != quick.identity()
    assert quick.with_updates(eval_states=7).identity() != quick.identity()
