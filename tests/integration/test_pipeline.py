"""The SIME pipeline end to end on the real simulator: versions, lineage, report, resume and Ray dispatch."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import sime_data
from sime_data.verify import verify
from sime_policy.pipeline import PipelineConfig, build_report, run_pipeline
from sime_policy.pipeline.names import Chain

TINY = PipelineConfig(name="tiny", task="lift", demos=5, rounds=1, seeds=(7,), train_steps=8, noise_scale=0.5,
                      threshold=1.01, init_states=2, trials=2, eval_states=3, eval_trials=1, max_steps=24,
                      eval_max_steps=30, workers=1, envs=3, record_demos=True, reuse_unchanged=False)
# TINY's 8-step policy never succeeds, so no round adds data: without reuse_unchanged=False every round >= 1 would
# reuse round 0 (test_a_round_with_unchanged_data_reuses_the_previous_round_bit_for_bit)


def _cli(store: Path, out: Path, config: PipelineConfig, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sime_policy.cli", "run", "--store", str(store), "--out", str(out),
            "--name", config.name, "--task", config.task, "--demos", str(config.demos), "--record-demos",
            "--rounds", str(config.rounds), "--seeds", *map(str, config.seeds), "--steps", str(config.train_steps),
            "--noise-scale", str(config.noise_scale), "--threshold", str(config.threshold),
            "--init-states", str(config.init_states), "--trials", str(config.trials),
            "--eval-states", str(config.eval_states), "--eval-trials", str(config.eval_trials), "--envs",
            str(config.envs), "--max-steps", str(config.max_steps),
            "--eval-max-steps", str(config.eval_max_steps), "--no-progress",
            *([] if config.reuse_unchanged else ["--retrain-unchanged"]), *extra]


def _wait_for_version(store_path: Path, name: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"pipeline exited early ({proc.returncode}): {proc.stdout.read()}")
        if (store_path / "sime_store.json").exists() and sime_data.open_store(store_path).has_version(name):
            return
        time.sleep(0.5)
    raise AssertionError(f"{name} did not appear within {timeout} s")


def _check_run(store: sime_data.Store, config: PipelineConfig, out: Path) -> None:
    """Every version and lineage link of a finished run, and its report files."""
    n_rollouts = config.init_states * config.trials
    n_eval = config.eval_states * config.eval_trials
    demo_states = set(store.episodes(version=config.base_version)["init_state_id"])
    for seed in config.seeds:
        base, sime, baseline = config.base_version, Chain("lift", config.name, seed, "sime"), \
            Chain("lift", config.name, seed, "baseline")
        r0_eval, r0_explore = store.version(sime.eval_version(0)), store.version(sime.explore_version(0))
        r0_collect = store.version(sime.collect_version(0))
        assert r0_explore.n_episodes == r0_collect.n_episodes == n_rollouts and r0_eval.n_episodes == n_eval
        assert r0_eval.rule["trained_on"] == base and r0_eval.rule["exploration"]["explore_mode"] == "none"
        assert r0_collect.rule["exploration"]["explore_mode"] == "none" and r0_eval.rule["held_out"] is True
        assert r0_explore.rule["exploration"]["explore_mode"] == "sime"
        assert r0_explore.rule["exploration"]["noise_scale"] == config.noise_scale
        assert r0_explore.rule["exploration"]["noise_units"] == "raw"
        assert r0_collect.rule["init_state_ids"] == r0_explore.rule["init_state_ids"]   # same states for both data
        assert r0_eval.rule["horizon"] == config.eval_max_steps                        # the scoring horizon
        assert r0_collect.rule["horizon"] == r0_explore.rule["horizon"] == config.max_steps
        held_out = set(r0_eval.rule["init_state_ids"])
        assert len(held_out) == config.eval_states
        assert held_out.isdisjoint(r0_explore.rule["init_state_ids"]) and held_out.isdisjoint(demo_states)
        assert r0_eval.rule["fit"]["version"] == base and "position_error_mm" in r0_eval.rule["fit"]
        rows = store.episodes(version=r0_explore.name)
        assert set(rows["explore_mode"]) == {"sime"} and set(rows["round"]) == {0}

        for chain, source in ((sime, r0_explore), (baseline, r0_collect)):
            train1 = store.version(chain.train_version(1, base))
            assert train1.parents == [base, source.name]
            assert train1.rule["source"] == source.name and train1.rule["base"] == base
            assert train1.rule["threshold"] == config.threshold
            successes = set(store.episodes(version=source.name).query("success")["episode_id"])
            assert set(train1.episode_ids) == set(store.version(base).episode_ids) | successes  # 1.01 keeps all
            eval1 = store.version(chain.eval_version(1))
            assert eval1.rule["trained_on"] == train1.name and eval1.n_episodes == n_eval
            assert eval1.rule["init_state_ids"] == r0_eval.rule["init_state_ids"]    # the same evaluation pairs
            assert held_out.isdisjoint(store.episodes(version=train1.name)["init_state_id"].dropna())
            assert (chain.checkpoint_dir(out, 1) / "fit.json").is_file()
            assert set(store.episodes(version=eval1.name)["branch"]) == {chain.branch}
            assert (chain.checkpoint_dir(out, 1) / "final.ckpt").is_file()
        assert not store.has_version(sime.explore_version(1))      # the last round explores no more
        assert not store.has_version(baseline.collect_version(1))
    for name in ("report.md", "summary.csv", "results.csv", "success_rate.png", "run.json"):
        assert (out / name).is_file(), name
    summary = build_report(store, run=config.name).summary
    assert sorted(zip(summary["round"], summary["branch"])) == [(0, "baseline"), (0, "sime"), (1, "baseline"),
                                                                 (1, "sime")]
    assert (summary["seeds"] == len(config.seeds)).all() and summary["held_out"].all()
    assert (summary["n"] == n_eval * len(config.seeds)).all()


def test_pipeline_end_to_end_resumes_after_interrupt(tmp_path: Path) -> None:
    store_path, out = tmp_path / "store", tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(_cli(store_path, out, TINY), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    try:
        _wait_for_version(store_path, Chain("lift", "tiny", 7, "sime").eval_version(0), proc, timeout=300)
        proc.send_signal(signal.SIGINT)                                 # Ctrl-C in the middle of the run
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    store = sime_data.open_store(store_path)
    round0 = out / "checkpoints" / "seed7" / "round0" / "final.ckpt"
    trained_at = round0.stat().st_mtime_ns
    before = set(store.episodes()["episode_id"])

    report = run_pipeline(str(store_path), TINY, out, progress=False)   # the same command again: resumes
    _check_run(store, TINY, out)
    assert round0.stat().st_mtime_ns == trained_at                      # round 0 was not trained again
    after = store.episodes()
    assert before <= set(after["episode_id"])
    rollouts = 2 * TINY.init_states * TINY.trials + 3 * TINY.eval_states * TINY.eval_trials
    assert len(after.query("source == 'rollout'")) == rollouts                     # nothing collected twice
    assert not report.summary.empty

    # a third run finds every step done and changes nothing
    versions = set(store.versions()["name"])
    result = subprocess.run(_cli(store_path, out, TINY), capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "0 step(s) run" in result.stdout and "round 1 complete: 0 step(s) run" in result.stdout
    assert set(store.versions()["name"]) == versions

    # retraining round 1 with another training seed is scored on the run's own held-out pairs
    from sime_policy.pipeline.seed_variance import compare_training_seeds

    own, other = compare_training_seeds(store, TINY, out, [8], progress=False)
    assert own.is_runs_own and own.eval_version == Chain("lift", "tiny", 7, "sime").eval_version(1)
    retrained = store.version(other.eval_version)
    assert retrained.rule["init_state_ids"] == store.version(own.eval_version).rule["init_state_ids"]
    assert other.n == own.n == TINY.eval_states * TINY.eval_trials and other.vs_round0.n == other.n
    assert (out / "seed_variance" / "sime" / "round1" / "train_seed8" / "final.ckpt").is_file()
    assert build_report(store, run=TINY.name).summary.shape == report.summary.shape   # the report is unchanged


def test_a_round_with_unchanged_data_reuses_the_previous_round_bit_for_bit(tmp_path: Path) -> None:
    import torch

    store_path = tmp_path / "store"
    reused, retrained = TINY.with_updates(name="reuse", rounds=2, reuse_unchanged=True), TINY.with_updates(name="again")
    run_pipeline(str(store_path), reused, tmp_path / "reuse", progress=False)
    run_pipeline(str(store_path), retrained, tmp_path / "again", progress=False)
    store = sime_data.open_store(store_path)
    for branch, data_kind in (("baseline", "collect"), ("sime", "explore")):
        chain, other = Chain("lift", "reuse", 7, branch), Chain("lift", "again", 7, branch)
        assert store.version(chain.train_version(1, "lift/core_5")).rule["n_added"] == 0
        for round_ in (1, 2):
            assert (chain.checkpoint_dir(tmp_path / "reuse", round_) / "carried_over.json").is_file()
            eval_ = store.version(chain.eval_version(round_))
            assert eval_.rule["carried_over_from"] == chain.eval_version(round_ - 1)
            assert eval_.rule["trained_on"] == chain.train_version(round_, "lift/core_5")
            assert eval_.episode_ids == store.version(chain.eval_version(0)).episode_ids
        data = store.version(getattr(chain, f"{data_kind}_version")(1))
        assert data.episode_ids == store.version(getattr(chain, f"{data_kind}_version")(0)).episode_ids
        # what retraining the same data actually gives: the same weights and the same episodes, action for action
        weights = [torch.load(c.checkpoint_dir(out, r) / "final.ckpt", weights_only=False)["model"]
                   for c, out, r in ((other, tmp_path / "again", 1), (chain, tmp_path / "reuse", 1))]
        assert weights[0].keys() == weights[1].keys()
        assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
        redone = store.episodes(version=other.eval_version(1)).set_index(["init_state_id", "trial"])
        kept = store.episodes(version=chain.eval_version(1)).set_index(["init_state_id", "trial"])
        assert sorted(redone.index) == sorted(kept.index)
        for pair in kept.index:
            a = store.read_episode(redone.loc[pair, "episode_id"], keys=["actions"])["actions"]
            b = store.read_episode(kept.loc[pair, "episode_id"], keys=["actions"])["actions"]
            assert np.array_equal(a, b), pair
    report = build_report(store, run="reuse")
    assert sorted(zip(report.summary["round"], report.summary["branch"]))[-2:] == [(2, "baseline"), (2, "sime")]
    assert report.summary.groupby("round")["reused_seeds"].min().to_dict() == {0: 0, 1: 1, 2: 1}   # says so
    assert "reuses round 1's policy for 1 of 1 seed(s)" in report.verdict("reuse")
    assert (build_report(store, run="again").summary["reused_seeds"] == 0).all()
    # rerunning finds the reused rounds done: nothing new in the store
    versions, episodes = set(store.versions()["name"]), len(store.episodes())
    run_pipeline(str(store_path), reused, tmp_path / "reuse", progress=False)
    assert set(store.versions()["name"]) == versions and len(store.episodes()) == episodes


def test_rerun_with_other_settings_is_refused(tmp_path: Path) -> None:
    store_path, out = tmp_path / "store", tmp_path / "out"
    store = sime_data.open_store(store_path, create=True)
    config = TINY.with_updates(rounds=1)
    # fake a finished selection of this run made with another threshold
    from sime_policy.collect.demos import record_demos

    record_demos(store, "lift", 5, progress=False)
    store.create_version("lift/sime/tiny/seed7/sime/round1", store.version("lift/core_5").episode_ids,
                         rule={"kind": "selection", "pipeline": config.with_updates(threshold=0.5).identity()})
    result = subprocess.run(_cli(store_path, out, config), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "other settings (threshold differ)" in result.stderr and "--name" in result.stderr


@pytest.mark.skipif(shutil.which("ray") is None, reason="Ray is not installed (pip install -e '.[cluster]')")
def test_pipeline_on_a_local_ray_cluster(tmp_path: Path) -> None:
    store_path, out = tmp_path / "store", tmp_path / "out"
    port = 26379 + os.getpid() % 1000
    temp_dir = Path("/tmp") / f"ray_sime_{os.getpid()}"      # Ray needs a short socket path
    start = subprocess.run(["ray", "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                            "--disable-usage-stats", f"--temp-dir={temp_dir}"], capture_output=True, text=True,
                           timeout=180)
    assert start.returncode == 0, start.stdout + start.stderr
    try:
        config = TINY.with_updates(name="ray", seeds=(3, 4))
        result = subprocess.run(_cli(store_path, out, config, "--ray", f"127.0.0.1:{port}"), capture_output=True,
                                text=True, timeout=900)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "Ray cluster" in result.stdout
        store = sime_data.open_store(store_path)
        _check_run(store, config, out)
        # each task wrote through its own writers: the two seeds' round-0 rollouts live in different segments
        segments = [set(store.episodes(version=Chain("lift", "ray", s, "sime").eval_version(0))["segment"])
                    for s in config.seeds]
        assert segments[0].isdisjoint(segments[1])
        assert verify(store).ok
    finally:
        subprocess.run(["ray", "stop", "--force"], capture_output=True, timeout=120)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_curate_pauses_until_the_trimmed_version_exists(tmp_path: Path) -> None:
    store_path, out = tmp_path / "store", tmp_path / "out"
    config = TINY.with_updates(name="cur", curate=True, init_states=1, trials=2, smooth=True)
    first = subprocess.run(_cli(store_path, out, config, "--curate", "--parallel", "2", "--smooth"),
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 3, first.stdout[-2000:] + first.stderr[-2000:]
    sime, baseline = Chain("lift", "cur", 7, "sime"), Chain("lift", "cur", 7, "baseline")
    assert "sime-app" in first.stdout and sime.curated_version(1) in first.stdout
    assert baseline.curated_version(1) in first.stdout               # every branch waiting is named at once
    store = sime_data.open_store(store_path)
    assert not (sime.checkpoint_dir(out, 1) / "final.ckpt").exists()
    for chain in (sime, baseline):                                    # the person trims the first demo's ends
        selection = store.version(chain.train_version(1, "lift/core_5"))
        # --smooth: the selected rollouts were replaced by their smoothed, replay-verified copies
        assert selection.rule["pipeline"]["smooth"] is True and "smoothing" in selection.rule
        assert set(selection.rule["replaced"].values()) - {None} <= set(selection.episode_ids)
        first_demo = selection.episode_ids[0]
        store.create_version_from_trims(chain.curated_version(1), selection.name, {first_demo: [(2, 20)]})
    second = subprocess.run(_cli(store_path, out, config, "--curate", "--parallel", "2", "--smooth"),
                            capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    from sime_policy.training.checkpoint import checkpoint_info

    info = checkpoint_info(sime.checkpoint_dir(out, 1) / "final.ckpt")
    assert info["data"]["version"] == sime.curated_version(1)
    assert store.version(sime.eval_version(1)).rule["trained_on"] == sime.curated_version(1)


def test_fit_gate_stops_a_poorly_fitted_round_before_its_rollouts(tmp_path: Path) -> None:
    store_path, out = tmp_path / "store", tmp_path / "out"
    config = TINY.with_updates(name="gate", train_steps=2)
    result = subprocess.run(_cli(store_path, out, config, "--fit-gate", "stop"), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 4, result.stdout[-2000:] + result.stderr[-2000:]
    assert "FLAG: open-loop fit" in result.stdout and "POOR FIT" in result.stdout
    assert "stopped before collecting" in result.stderr and "--fit-gate warn" in result.stderr
    store = sime_data.open_store(store_path)
    assert not store.has_version(Chain("lift", "gate", 7, "sime").eval_version(0))    # nothing rolled out
    assert store.episodes(where="source = 'rollout'").empty

