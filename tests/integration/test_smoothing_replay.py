"""Replay-verified smoothing on the real simulator: a chattering successful rollout becomes a clean one."""

from __future__ import annotations

import numpy as np
import pytest

import sime_data
from sime_data.selection import create_selection_version
from sime_policy.collect.smoothing import (SMOOTHED_SOURCE, SMOOTHED_TAG, SmoothingSettings, gripper_flips,
                                   smooth_and_replay)

pytest.importorskip("robosuite")


def _record(store, env, state, actions, **meta):
    """Execute actions from `state` and store the episode as a rollout; returns (id, success)."""
    obs = env.reset_to(state)
    with store.writer("rollout", "lift", model_xml=env.model_xml()) as writer:
        success = False
        for action in actions:
            s = env.get_state()
            next_obs, reward, done, info = env.step(action)
            writer.add_step(obs=obs, action=action, reward=reward, done=done, state=s)
            obs, success = next_obs, info["success"]
            if done:
                break
        return writer.finish(success=success, init_state=state, **meta), success


@pytest.fixture(scope="module")
def chattering_store(tmp_path_factory):
    """A store with one scripted demo and a rollout of the same state whose commands chatter but succeed."""
    from sime_policy.collect.demos import record_demos
    from sime_policy.envs import SimEnv

    store = sime_data.init_store(tmp_path_factory.mktemp("smooth") / "store")
    (demo_id,) = record_demos(store, "lift", 1, seed=0, progress=False)
    demo = store.read_episode(demo_id)
    row = store.episodes().iloc[0]
    state = np.asarray(row["init_state"])
    rng = np.random.default_rng(0)
    chatter = demo["actions"].copy()
    chatter[:, :3] += rng.normal(0, 0.004, size=(len(chatter), 3))   # 4 mm target jitter
    opening = np.flatnonzero(chatter[:, 9] < 0)[:12]
    chatter[opening[2:12:3], 9] = 1.0                                 # 1-step gripper blips while approaching
    with SimEnv("lift") as env:
        rollout_id, ok = _record(store, env, state, chatter, init_state_id=row["init_state_id"], trial=0, seed=5,
                                 round=0, branch="sime", explore_mode="sime", noise_scale=0.01)
    assert ok, "the chattering rollout must succeed for this test to mean anything"
    store.create_version("lift/rollouts", [rollout_id])
    return store, rollout_id


def test_a_chattering_success_is_replaced_by_a_verified_smooth_one(chattering_store):
    store, rollout_id = chattering_store
    original = store.read_episode(rollout_id)["actions"]
    result = smooth_and_replay(store, "lift", [rollout_id], progress=False)
    new_id = result.replacements[rollout_id]
    assert new_id is not None and result.kept == [new_id] and result.n_dropped == 0
    row = store.episodes().set_index("episode_id").loc[new_id]
    assert bool(row["success"]) and row["source"] == SMOOTHED_SOURCE and SMOOTHED_TAG in list(row["tags"])
    assert row["init_state_id"] == store.episodes().set_index("episode_id").loc[rollout_id, "init_state_id"]
    assert int(row["trial"]) == 0 and row["branch"] == "sime"
    smoothed = store.read_episode(new_id)
    assert gripper_flips(smoothed["actions"]) < gripper_flips(original)
    jitter = lambda a: np.linalg.norm(np.diff(a[:, :3], n=2, axis=0), axis=1).mean()  # noqa: E731
    assert jitter(smoothed["actions"]) < 0.5 * jitter(original)
    # the replay's observations are the simulator's, from the recorded start: its first state is the original's
    assert np.array_equal(smoothed["states"][0], store.read_episode(rollout_id)["states"][0])
    # the original is untouched
    assert np.array_equal(store.read_episode(rollout_id)["actions"], original)


def test_rerun_reuses_stored_replays_and_other_settings_replay_again(chattering_store):
    store, rollout_id = chattering_store
    first = smooth_and_replay(store, "lift", [rollout_id], progress=False)
    n = len(store.episodes())
    again = smooth_and_replay(store, "lift", [rollout_id], progress=False)
    assert again.replacements == first.replacements and again.reused == 1 and len(store.episodes()) == n
    other = smooth_and_replay(store, "lift", [rollout_id], SmoothingSettings(window=3), progress=False)
    assert other.replacements[rollout_id] not in (None, first.replacements[rollout_id])
    assert len(store.episodes()) == n + 1


def test_selection_version_takes_the_replacements(chattering_store):
    store, rollout_id = chattering_store
    result = smooth_and_replay(store, "lift", [rollout_id], progress=False)
    version = create_selection_version(store, "lift/selected_smoothed", "lift/rollouts", "success", None,
                                       base="lift/core_1" if store.has_version("lift/core_1") else None,
                                       replacements=result.replacements, extra_rule=result.as_rule())
    assert result.kept[0] in version.episode_ids and rollout_id not in version.episode_ids
    assert version.rule["replaced"] == {rollout_id: result.kept[0]} and version.rule["n_smoothed"] == 1
    assert "curated copies" in version.message
    with pytest.raises(ValueError, match="replacements lack"):
        create_selection_version(store, "lift/bad", "lift/rollouts", "success", None, replacements={})
    assert not store.has_version("lift/bad")
