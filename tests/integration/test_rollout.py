"""Rollout runner against the real Lift simulator: metadata, exact initial-state replay, resume, workers, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("robosuite")
pytest.importorskip("diffusers")

import sime_data  # noqa: E402
from sime_data.errors import VersionExistsError  # noqa: E402
from sime_policy.collect import rollouts as rollout_module  # noqa: E402
from sime_policy.cli import main  # noqa: E402
from sime_policy.policy.config import get_preset  # noqa: E402
from sime_policy.collect.demos import record_demos  # noqa: E402
from sime_policy.envs import SimEnv  # noqa: E402
from sime_policy.policy.exploration import Exploration  # noqa: E402
from sime_policy.policy.normalizer import Normalizer  # noqa: E402
from sime_policy.policy.diffusion import DiffusionPolicy, ObsSpec, PolicyInputError  # noqa: E402
from sime_policy.collect.batched import _Slot  # noqa: E402
from sime_policy.collect.rollouts import collect_rollouts  # noqa: E402
from sime_policy.collect.seeding import episode_seed  # noqa: E402
from sime_policy.collect.rollout_report import binomial_stderr, summarize  # noqa: E402
from sime_policy.training.trainer import train  # noqa: E402

K, N, MAX_STEPS, SEED = 3, 2, 30, 233
EXPLORE = Exploration("sime", noise_scale=0.1, tau1=0.0, tau2=1.0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[sime_data.Store, Path, str]:
    """A store with 3 scripted demos and a tiny policy trained on them for 5 steps (checkpoint path, id)."""
    root = tmp_path_factory.mktemp("rollout")
    store = sime_data.init_store(root / "store")
    record_demos(store, "lift", 3, progress=False)
    config = get_preset("lift_lowdim_cpu").with_overrides(steps=5, down_dims=(16, 32), diffusion_step_embed_dim=16,
                                                         batch_size=16, val_ratio=0.0, warmup_steps=1)
    result = train(store, "lift/demos", config, root / "run", progress=False)
    return store, result.final_checkpoint, result.checkpoint_id


def _collect(store: sime_data.Store, ckpt: Path, **kwargs) -> rollout_module.RolloutResult:
    args = dict(task="lift", init_states=K, trials=N, exploration=EXPLORE, seed=SEED, round=1, branch="sime",
                progress=False, max_steps=MAX_STEPS)
    args.update(kwargs)
    return collect_rollouts(store, ckpt, **args)


@pytest.fixture(scope="module")
def collected(trained) -> rollout_module.RolloutResult:
    """The collection run one env at a time (the reference every batched run must reproduce)."""
    store, ckpt, _ = trained
    return _collect(store, ckpt, envs=1)


def _rows(store: sime_data.Store, result: rollout_module.RolloutResult) -> pd.DataFrame:
    return store.episodes(version=result.version).set_index("episode_id").loc[result.episode_ids]


def test_episodes_are_stored_with_metadata(trained, collected) -> None:
    store, _, ckpt_id = trained
    assert len(collected.episode_ids) == K * N == collected.n_new
    assert collected.version == f"lift/rollouts/{ckpt_id}/sime/seed{SEED}"
    rows = _rows(store, collected)
    assert set(rows["source"]) == {"rollout"} and set(rows["task"]) == {"lift"}
    assert set(rows["checkpoint"]) == {ckpt_id} and set(rows["round"]) == {1} and set(rows["branch"]) == {"sime"}
    assert set(rows["explore_mode"]) == {"sime"} and set(rows["noise_scale"]) == {0.1}
    assert set(rows["tau1"]) == {0.0} and set(rows["tau2"]) == {1.0}
    assert rows.groupby("init_state_id")["trial"].apply(sorted).tolist() == [[0, 1]] * K
    assert rows["init_state_id"].nunique() == K
    for episode_id, row in rows.iterrows():
        assert row["seed"] == episode_seed(SEED, row["init_state_id"], row["trial"])
        assert json.loads(row["meta"])["collection"] == collected.collection
        assert 1 <= row["length"] <= MAX_STEPS
        assert row["success"] or row["length"] == MAX_STEPS  # episodes stop early only on success
        data = store.read_episode(episode_id)
        assert data["actions"].shape == (row["length"], 10) and data["obs/object"].shape == (row["length"], 10)
        assert data["dones"][-1] and not data["dones"][:-1].any()
        np.testing.assert_array_equal(data["states"][0], np.asarray(row["init_state"]))
        assert store.model_xml(episode_id) is not None
    assert rows["seed"].nunique() == K * N
    version = store.version(collected.version)
    assert version.parents == ["lift/demos"]
    assert version.rule["trials"] == N and version.rule["init_states"] == K and version.rule["horizon"] == MAX_STEPS
    assert version.rule["envs"] == 1 and version.rule["workers"] == 1
    assert version.rule["exploration"]["explore_mode"] == "sime" and version.rule["collection"] == collected.collection
    assert sorted(version.episode_ids) == sorted(collected.episode_ids)
    sql = store.sql(f"SELECT count(*) AS n FROM episodes WHERE meta->>'collection' = '{collected.collection}'")
    assert sql["n"].iloc[0] == K * N


def test_result_statistics_match_the_store(trained, collected) -> None:
    store, _, _ = trained
    rows = _rows(store, collected)
    wins = int(rows["success"].sum())
    assert collected.success_rate == pytest.approx(wins / (K * N))
    assert collected.stderr == pytest.approx(binomial_stderr(wins, K * N))
    per_state = collected.per_state
    assert list(per_state.columns) == ["init_state_id", "trials", "successes", "success_rate"]
    assert per_state["trials"].tolist() == [N] * K and per_state["successes"].sum() == wins
    assert set(per_state["init_state_id"]) == set(rows["init_state_id"])


def test_trials_of_a_state_start_bit_identically_and_replay_exactly(trained, collected) -> None:
    store, _, _ = trained
    rows = _rows(store, collected)
    with SimEnv("lift", seed=99) as env:  # a fresh env, as in another process
        for sid, group in rows.groupby("init_state_id"):
            states = [np.asarray(s) for s in group["init_state"]]
            assert states[0].tobytes() == states[1].tobytes()
            firsts = [store.read_episode(eid, stop=1) for eid in group.index]
            for key in ("obs/object", "obs/robot0_eef_pos", "obs/robot0_eef_quat", "obs/robot0_gripper_qpos"):
                assert firsts[0][key].tobytes() == firsts[1][key].tobytes(), key
            obs = env.reset_to(states[0], model_xml=store.model_xml(group.index[0]))
            for key, value in obs.items():
                np.testing.assert_array_equal(value, firsts[0][f"obs/{key}"][0], err_msg=key)
            assert env.init_state_id(states[0]) == sid


def test_rerun_with_same_arguments_adds_nothing(trained, collected) -> None:
    store, ckpt, _ = trained
    before = len(store.episodes(where="source = 'rollout'"))
    again = _collect(store, ckpt)
    assert again.n_new == 0 and again.version == collected.version
    assert again.episode_ids == collected.episode_ids and again.success_rate == collected.success_rate
    assert len(store.episodes(where="source = 'rollout'")) == before


def test_interrupted_collection_resumes_where_it_stopped(trained, monkeypatch) -> None:
    store, ckpt, _ = trained
    real = _Slot.start
    calls = {"n": 0}

    def interrupted(self, item):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C as the third episode starts
        return real(self, item)

    monkeypatch.setattr(_Slot, "start", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _collect(store, ckpt, seed=7, envs=1)
    monkeypatch.setattr(_Slot, "start", real)
    partial = store.episodes(where="source = 'rollout' AND seed IS NOT NULL AND meta->>'collection_seed' = '7'")
    assert len(partial) == 2  # the two finished episodes are kept; the in-flight one is lost
    name = f"lift/rollouts/{trained[2]}/sime/seed7"
    assert not store.has_version(name)
    resumed = _collect(store, ckpt, seed=7)
    assert resumed.n_new == K * N - 2 and resumed.version == name
    assert set(partial["episode_id"]) <= set(resumed.episode_ids) and len(resumed.episode_ids) == K * N
    pairs = {(r.init_state_id, r.trial) for r in _rows(store, resumed).itertuples()}
    assert len(pairs) == K * N


@pytest.mark.parametrize("workers, envs", [(1, 4), (1, 16), (2, 2)])
def test_batched_and_parallel_runs_give_bit_identical_episodes(trained, collected, tmp_path, workers, envs) -> None:
    """Same (state, trial, seed): the same episode whatever the number of envs per process and of processes."""
    store, ckpt, _ = trained
    other = sime_data.init_store(tmp_path / "other")
    parallel = _collect(other, ckpt, workers=workers, envs=envs)
    assert parallel.collection == collected.collection and parallel.version == collected.version
    rows = _rows(other, parallel)
    assert rows["segment"].nunique() == workers
    single = _rows(store, collected)
    assert set(zip(rows["init_state_id"], rows["trial"])) == set(zip(single["init_state_id"], single["trial"]))
    # the same (state, trial) gives the same episode whichever process ran it
    by_pair = {(r.init_state_id, r.trial): eid for eid, r in single.iterrows()}
    for episode_id, row in rows.iterrows():
        keys = ["actions", "obs/object", "states", "rewards", "dones"]
        mine = other.read_episode(episode_id, keys=keys)
        theirs = store.read_episode(by_pair[(row["init_state_id"], row["trial"])], keys=keys)
        for key in keys:
            assert mine[key].tobytes() == theirs[key].tobytes(), key
        assert row["success"] == single.loc[by_pair[(row["init_state_id"], row["trial"])], "success"]
    assert other.version(parallel.version).parents == []  # the training version is not in this store


def test_explicit_initial_states(trained, collected) -> None:
    store, ckpt, _ = trained
    rows = _rows(store, collected)
    states = [np.asarray(s) for s in rows.drop_duplicates("init_state_id")["init_state"]][:2]
    result = _collect(store, ckpt, init_states=states, trials=1, max_steps=5, version="lift/explicit")
    assert result.per_state["init_state_id"].tolist() == rows["init_state_id"].drop_duplicates().tolist()[:2]
    assert store.version("lift/explicit").rule["init_states_given"] is True
    with pytest.raises(ValueError, match="more than once"):
        _collect(store, ckpt, init_states=[states[0], states[0]], trials=1, max_steps=5, version="lift/dup")


def test_bad_inputs_raise_clear_errors(trained) -> None:
    store, ckpt, _ = trained
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        _collect(store, ckpt, task="nope")
    with pytest.raises(ValueError, match="trained for task 'lift', not 'can'"):
        _collect(store, ckpt, task="can")
    with pytest.raises(ValueError, match="trials must be"):
        _collect(store, ckpt, trials=0)
    with pytest.raises(ValueError, match="init_states must be at least 1"):
        _collect(store, ckpt, init_states=0)
    with pytest.raises(ValueError, match="workers must be"):
        _collect(store, ckpt, workers=0)
    with pytest.raises(VersionExistsError, match="other episodes"):
        _collect(store, ckpt, version="lift/demos")
    config = get_preset("transport_lowdim_cpu").policy
    specs = {k: ObsSpec((10,) if k.endswith("object") else (4,) if "quat" in k else (3,) if "pos" in k else (2,),
                        "<f8") for k in config.obs_keys}
    stats = {k: {"min": -np.ones(s.shape[0]), "max": np.ones(s.shape[0])} for k, s in specs.items()}
    stats["actions"] = {"min": -np.ones(10), "max": np.ones(10)}
    two_arm = DiffusionPolicy(config, 10, specs, Normalizer(stats))
    with pytest.raises(PolicyInputError, match=r"robot1_eef_pos.*does not produce"):
        collect_rollouts(store, two_arm, task="lift", init_states=1, trials=1, progress=False)
    with pytest.raises(ValueError, match="no checkpoint recording its task"):
        collect_rollouts(store, two_arm, init_states=1, trials=1, progress=False)


def test_summarize_counts_failures_and_orders_states() -> None:
    rows = pd.DataFrame({"init_state_id": ["b", "a", "b", "a"], "success": [True, False, None, True]})
    summary = summarize(rows, state_order=["a", "b", "c"])
    assert summary.per_state["init_state_id"].tolist() == ["a", "b", "c"]
    assert summary.per_state["successes"].tolist() == [1, 1, 0] and summary.per_state["trials"].tolist() == [2, 2, 0]
    assert summary.success_rate == 0.5 and summary.stderr == pytest.approx(0.25)


def test_cli_rollout_prints_rate_and_table(trained, collected, capsys) -> None:
    store, ckpt, _ = trained
    code = main(["rollout", "--checkpoint", str(ckpt.parent), "--store", store.location, "--init-states", str(K),
                 "--trials", str(N), "--explore", "sime", "--noise-scale", "0.1", "--round", "1", "--branch", "sime",
                 "--max-steps", str(MAX_STEPS), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"success rate {collected.success_rate:.3f} ± {collected.stderr:.3f}" in out
    assert collected.per_state["init_state_id"].iloc[0] in out and collected.version in out and "0 new" in out
    assert main(["rollout", "--checkpoint", str(ckpt), "--store", store.location, "--trials", "0"]) == 2
    assert main(["rollout", "--checkpoint", str(ckpt), "--store", store.location, "--task", "can"]) == 2
    err = capsys.readouterr().err
    assert "trials must be" in err and "trained for task 'lift'" in err and "Traceback" not in err


def test_cli_demos_records_into_a_new_store(tmp_path, capsys) -> None:
    location = str(tmp_path / "demos")
    assert main(["demos", "--task", "lift", "--n", "1", "--store", location, "--no-progress"]) == 0
    assert "recorded 1 lift demos" in capsys.readouterr().out
    store = sime_data.open_store(location)
    assert store.has_version("lift/demos") and len(store.version("lift/demos").episode_ids) == 1
    assert main(["demos", "--task", "nope", "--n", "1", "--store", location]) == 2
