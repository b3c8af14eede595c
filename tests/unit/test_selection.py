"""Inter-demo selection (sr_lss_X, success, random) against hand-built success patterns on a real store."""

from __future__ import annotations

import numpy as np
import pytest

import sime_data
from sime_data.selection import create_selection_version, per_state_success, preview_thresholds, select

# init state -> outcomes of its trials (ragged counts; a state with zero successes; an all-success state)
PATTERN = {
    "a": [True, False, False, False, False],        # 0.2
    "b": [True, True, False, False],                # 0.5 (4 trials)
    "c": [True, True, True, False, False, False],   # 0.5 (6 trials)
    "d": [False, False, False],                     # 0.0
    "e": [True, True, True, True, True],            # 1.0
    "f": [True, True, False],                       # 0.667
    "g": [True, True, True, True, False],           # 0.8
}
LENGTHS = {"a": 11, "b": 12, "c": 13, "d": 14, "e": 15, "f": 16, "g": 17}


def _write_pattern(store: sime_data.Store, pattern: dict[str, list[bool]]) -> dict[str, list[tuple[str, bool]]]:
    """Rollouts with the given outcomes, interleaved across states (no 'consecutive trials' layout)."""
    ids: dict[str, list[tuple[str, bool]]] = {s: [] for s in pattern}
    order = [(s, k) for k in range(max(map(len, pattern.values()))) for s in pattern if k < len(pattern[s])]
    with store.writer(source="rollout", task="lift", round=0) as writer:
        for state, trial in order:
            for t in range(LENGTHS[state]):
                writer.add_step(obs={"x": np.full(2, t, np.float32)}, action=np.zeros(3), reward=0.0, done=False)
            success = pattern[state][trial]
            ids[state].append((writer.finish(success=success, init_state_id=state, trial=trial), success))
    store.create_version("rollouts", [e for s in ids.values() for e, _ in s])
    return ids


def _successes(ids: dict[str, list[tuple[str, bool]]], states: str) -> set[str]:
    return {e for s in states for e, ok in ids[s] if ok}


@pytest.fixture
def pattern_store(store: sime_data.Store) -> tuple[sime_data.Store, dict]:
    """A store with the PATTERN rollouts in version 'rollouts'."""
    return store, _write_pattern(store, PATTERN)


def test_per_state_success_groups_by_init_state(pattern_store) -> None:
    store, _ = pattern_store
    table = per_state_success(store, "rollouts").set_index("init_state_id")
    for state, outcomes in PATTERN.items():
        assert table.loc[state, "trials"] == len(outcomes)
        assert table.loc[state, "successes"] == sum(outcomes)
        assert table.loc[state, "success_rate"] == pytest.approx(sum(outcomes) / len(outcomes))


@pytest.mark.parametrize("threshold, states", [
    (0.0, ""),                # nothing has SR < 0
    (0.2, ""),                # boundary: SR == 0.2 is not below 0.2; d has no successes
    (0.21, "a"),
    (0.5, "a"),               # b and c sit exactly on 0.5 -> excluded
    (0.51, "abc"),
    (0.9, "abcfg"),
    (1.0, "abcfg"),           # e has SR 1.0, not below 1.0
    (1.01, "abcefg"),         # 1.01 keeps every state's successes
])
def test_sr_lss_keeps_successes_of_weak_states(pattern_store, threshold: float, states: str) -> None:
    store, ids = pattern_store
    chosen = select(store, "rollouts", "sr_lss", threshold)
    assert set(chosen.episode_ids) == _successes(ids, states)
    assert chosen.n_frames == sum(LENGTHS[s] * sum(PATTERN[s]) for s in states)
    kept = chosen.per_state.set_index("init_state_id")["kept"]
    assert kept.loc["d"] == 0
    assert {s for s in PATTERN if kept.loc[s] > 0} == set(states)


def test_success_rule_and_preview_agree_with_select(pattern_store) -> None:
    store, ids = pattern_store
    assert set(select(store, "rollouts", "success").episode_ids) == _successes(ids, "abcefg")
    preview = preview_thresholds(store, "rollouts", (0.3, 0.5, 0.9)).set_index("rule")
    assert list(preview.index) == ["sr_lss_0.3", "sr_lss_0.5", "sr_lss_0.9", "success"]
    for rule, threshold in [("sr_lss_0.3", 0.3), ("sr_lss_0.5", 0.5), ("sr_lss_0.9", 0.9), ("success", None)]:
        chosen = select(store, "rollouts", "success" if threshold is None else "sr_lss", threshold)
        assert preview.loc[rule, "episodes"] == chosen.n_episodes
        assert preview.loc[rule, "frames"] == chosen.n_frames
        assert preview.loc[rule, "states_kept"] == chosen.n_states_kept


def test_random_rule_matches_size_and_is_seeded(pattern_store) -> None:
    store, ids = pattern_store
    target = select(store, "rollouts", "sr_lss", 0.9).n_episodes
    first = select(store, "rollouts", "random", 0.9, seed=1)
    assert first.n_episodes == target
    assert set(first.episode_ids) <= _successes(ids, "abcefg")
    assert first.episode_ids == select(store, "rollouts", "random", 0.9, seed=1).episode_ids
    draws = {tuple(select(store, "rollouts", "random", 0.9, seed=s).episode_ids) for s in range(8)}
    assert len(draws) > 1


def test_selection_version_records_rule_and_adds_to_base(pattern_store) -> None:
    store, ids = pattern_store
    with store.writer(source="demo", task="lift") as writer:
        for t in range(20):
            writer.add_step(obs={"x": np.zeros(2, np.float32)}, action=np.zeros(3), reward=0.0, done=False)
        demo = writer.finish(success=True)
    store.create_version("demos", [(demo, 2, 18)])
    version = create_selection_version(store, "round1", "rollouts", "sr_lss", 0.51, base="demos")
    assert version.parents == ["demos", "rollouts"]
    ranges = version.ranges()
    assert ranges[demo] == [(2, 18)]                                    # base trims are kept
    assert set(ranges) - {demo} == _successes(ids, "abc")
    assert version.rule["rule"] == "sr_lss" and version.rule["threshold"] == 0.51
    assert version.rule["source"] == "rollouts" and version.rule["base"] == "demos"
    assert version.rule["n_episodes"] == 6 and version.rule["n_added"] == 6
    assert "sr_lss_0.51" in version.message and "rollouts" in version.message
    # the SQL catalog sees the lineage
    row = store.sql("SELECT parents, n_episodes FROM versions WHERE name = 'round1'").iloc[0]
    assert list(row["parents"]) == ["demos", "rollouts"] and row["n_episodes"] == 7


@pytest.mark.parametrize("threshold", [-0.01, 1.02, float("nan"), "high"])
def test_threshold_outside_range_is_refused(pattern_store, threshold) -> None:
    store, _ = pattern_store
    with pytest.raises(ValueError, match=r"threshold must"):
        select(store, "rollouts", "sr_lss", threshold)
    assert not store.has_version("x")


def test_empty_selection_without_base_names_the_fix(pattern_store) -> None:
    store, _ = pattern_store
    with pytest.raises(sime_data.EmptyVersionError, match="raise the threshold"):
        create_selection_version(store, "empty", "rollouts", "sr_lss", 0.1)
    assert not store.has_version("empty")


def test_unknown_rule_and_non_rollout_version(pattern_store) -> None:
    store, _ = pattern_store
    with pytest.raises(ValueError, match="unknown selection rule"):
        select(store, "rollouts", "best")
    with store.writer(source="demo", task="lift") as writer:
        writer.add_step(obs={"x": np.zeros(2, np.float32)}, action=np.zeros(3), reward=0.0, done=False)
        demo = writer.finish(success=True)
    store.create_version("demo_only", [demo])
    with pytest.raises(sime_data.InvalidManifestError, match="init_state_id"):
        select(store, "demo_only")


def test_select_command_previews_then_saves(pattern_store, capsys) -> None:
    from sime_data.cli import main

    store, ids = pattern_store
    assert main(["select", "--store", store.location, "rollouts", "--threshold", "0.51"]) == 0
    out = capsys.readouterr().out
    assert "sr_lss_0.51 of rollouts: 6 episodes" in out and "sr_lss_0.9" in out and "success" in out
    assert not store.has_version("picked")                              # preview writes nothing
    assert main(["select", "--store", store.location, "rollouts", "--threshold", "0.51", "--name", "picked"]) == 0
    assert set(store.version("picked").episode_ids) == _successes(ids, "abc")
    assert main(["select", "--store", store.location, "rollouts", "--threshold", "2", "--name", "bad"]) == 2
    assert "threshold must lie in" in capsys.readouterr().err
    assert main(["select", "--store", store.location, "rollouts", "--name", "picked"]) == 2   # name taken
    assert "already exist" in capsys.readouterr().err
