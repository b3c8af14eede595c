"""A training version is read once, and what it feeds equals what separate reads of the store gave."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from test_trainer import make_store, tiny_config

import sime_data.sampler as sampler_module
from sime_data.sampler import SequenceSampler, load_version_arrays, split_episodes
from sime_data.stats import version_stats
from sime_policy.policy.diffusion import PolicyInputError, PolicyShapes
from sime_policy.training.data import load_training_data
from sime_policy.training.trainer import train


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("data") / "store")


def test_selecting_episodes_equals_reading_those_episodes(store):
    version = store.version("v1")
    keys = ["obs/pos", "obs/goal", "actions"]
    full = load_version_arrays(store, version, keys)
    chosen = [version.episode_ids[i] for i in (4, 1, 2)]  # order given differs from the version's order
    subset = full.select(chosen)
    direct = load_version_arrays(store, version, keys, episodes=chosen)
    assert list(subset.range_episode_ids) == list(direct.range_episode_ids)
    for field in ("range_frame_start", "range_frame_stop", "range_seg_start", "range_episode_length", "range_ends"):
        assert np.array_equal(getattr(subset, field), getattr(direct, field)), field
    assert list(subset.range_segments) == list(direct.range_segments)
    for key in keys:
        assert subset.data[key].dtype == direct.data[key].dtype and np.array_equal(subset.data[key], direct.data[key])
    with pytest.raises(KeyError, match="not in version"):
        full.select(["no-such-episode"])


def test_one_read_feeds_normaliser_shapes_and_samplers(store, monkeypatch):
    config = tiny_config().policy
    version = store.version("v1")
    reads = []
    real = sampler_module.load_version_arrays

    def counting(*args, **kwargs):
        reads.append(kwargs.get("episodes"))
        return real(*args, **kwargs)

    monkeypatch.setattr(sampler_module, "load_version_arrays", counting)
    data = load_training_data(store, version, config, val_ratio=0.2, seed=0)
    normalizer = data.normalizer(config)
    train_sampler, val_sampler = data.samplers(config)
    assert reads == [None]  # the whole version, once
    monkeypatch.setattr(sampler_module, "load_version_arrays", real)

    stats = version_stats(store, version, ["actions", "obs/pos", "obs/goal"])
    assert normalizer.keys == ["actions", "obs/pos", "obs/goal"]
    for key, values in normalizer.stats().items():
        assert values["min"] == np.asarray(stats[key]["min"], np.float32).tolist()
        assert values["max"] == np.asarray(stats[key]["max"], np.float32).tolist()
    train_ids, val_ids = split_episodes(version.episode_ids, 0.2, 0)
    assert (data.train_ids, data.val_ids) == (train_ids, val_ids)
    common = dict(obs_keys=config.obs_keys, action_key=config.action_key, n_obs_steps=config.n_obs_steps,
                  horizon=config.horizon, n_action_steps=config.n_action_steps)
    for shared, ids in ((train_sampler, train_ids), (val_sampler, val_ids)):
        alone = SequenceSampler(store, version, episodes=ids, **common)
        assert len(shared) == len(alone)
        everything = np.arange(len(alone))
        a, b = shared.sample_batch(everything), alone.sample_batch(everything)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert data.shapes == PolicyShapes.from_key_specs(sampler_module.version_key_specs(store, version), config)


def test_training_reads_the_version_once(store, tmp_path, monkeypatch):
    calls = []
    real = sampler_module.load_version_arrays
    monkeypatch.setattr(sampler_module, "load_version_arrays", lambda *a, **k: calls.append(k) or real(*a, **k))
    train(store, "v1", tiny_config(4, fit_report=False), tmp_path / "run", progress=False)
    assert len(calls) == 1


def test_missing_keys_are_a_policy_input_error(store):
    config = tiny_config().policy
    bad = dataclasses.replace(config, obs_keys=("obs/pos", "obs/camera"))
    with pytest.raises(PolicyInputError, match="lacks key"):
        load_training_data(store, store.version("v1"), bad, val_ratio=0.0, seed=0)


@pytest.mark.parametrize("condition, floor", [("minmax", 0.0), ("minmax", 5.0), ("raw", 0.0)])
def test_the_observation_condition_is_normalised_floored_or_raw_and_survives_a_checkpoint(store, tmp_path, condition,
                                                                                         floor):
    from sime_policy.training.checkpoint import load_checkpoint, policy_from_checkpoint

    config = tiny_config(steps=2)
    config = dataclasses.replace(config, policy=dataclasses.replace(config.policy, obs_condition=condition,
                                                                    obs_range_floor=floor))
    data = load_training_data(store, store.version("v1"), config.policy, val_ratio=0.0, seed=0)
    normalizer = data.normalizer(config.policy)
    pos = data.frames.data["obs/pos"].astype(np.float64)
    low, high = pos.min(axis=0), pos.max(axis=0)
    raw = torch.as_tensor(pos[:7], dtype=torch.float32)
    mapped = normalizer.normalize("obs/pos", raw).numpy()
    if condition == "raw":     # the reference: observations enter the condition unnormalised
        np.testing.assert_allclose(mapped, pos[:7], rtol=1e-6)
    else:                      # [low, high] widened about its centre to at least `floor` maps onto [-1, 1]
        span = np.maximum(high - low, floor)
        centre = (low + high) / 2
        np.testing.assert_allclose(mapped, (pos[:7] - centre) / (span / 2), rtol=1e-5, atol=1e-6)
    actions = data.frames.data["actions"].astype(np.float64)   # actions are always min-max normalised
    ends = normalizer.normalize("actions", torch.as_tensor(actions, dtype=torch.float32)).numpy()
    assert ends.min() == pytest.approx(-1.0, abs=1e-5) and ends.max() == pytest.approx(1.0, abs=1e-5)
    result = train(store, "v1", config, tmp_path / "run", progress=False)
    policy = policy_from_checkpoint(load_checkpoint(result.final_checkpoint))[0]
    np.testing.assert_allclose(policy.normalizer.normalize("obs/pos", raw).numpy(), mapped, rtol=1e-6, atol=1e-7)
    assert policy.config.obs_condition == condition


def test_a_range_floor_with_the_raw_condition_is_refused():
    with pytest.raises(ValueError, match="obs_range_floor applies to the minmax condition"):
        dataclasses.replace(tiny_config().policy, obs_condition="raw", obs_range_floor=0.1).validate()
    with pytest.raises(ValueError, match="obs_condition must be one of"):
        dataclasses.replace(tiny_config().policy, obs_condition="zscore").validate()
