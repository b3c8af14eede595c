"""Trainer, EMA, LR schedule, checkpoints and the `sime train` command on tiny synthetic stores (CPU, seconds)."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import sime_data
from sime_data.errors import EmptyVersionError, VersionNotFoundError
from sime_policy import cli
from sime_policy.training.checkpoint import (CheckpointError, IncompatibleCheckpointError, checkpoint_info, load_checkpoint,
                                    load_policy, load_policy_and_info)
from sime_policy.policy.config import ExperimentConfig, PolicyConfig, TrainConfig
from sime_policy.training.ema import EMAModel
from sime_policy.policy.diffusion import DiffusionPolicy, PolicyInputError
from sime_policy.training.lr_schedule import CosineWarmup, make_lr_scheduler
from sime_policy.training.trainer import draw_batch_indices, resolve_device, train

GOALS = (-0.8, -0.3, 0.3, 0.8, -0.55, 0.55)


# ---------------------------------------------------------------------- helpers
def toy_episode(goal: float, length: int, pos_dim: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic 1-D reach: pos moves 15% of the way to the goal per step; action = (next pos, 5 x velocity)."""
    pos, obs, actions = 0.0, [], []
    for _ in range(length):
        nxt = pos + 0.15 * (goal - pos)
        obs.append(pos)
        actions.append([nxt, (nxt - pos) * 5.0])
        pos = nxt
    obs_arr = np.repeat(np.asarray(obs, np.float32)[:, None], pos_dim, axis=1)
    return obs_arr, np.asarray(actions, np.float32)


def make_store(path: Path, goals=GOALS, length: int = 20, pos_dim: int = 1, version: str = "v1") -> sime_data.Store:
    """A store with one toy episode per goal and a version holding them all."""
    store = sime_data.init_store(path)
    with store.writer(source="demo", task="toy") as writer:
        for i, goal in enumerate(goals):
            obs, actions = toy_episode(goal, length, pos_dim)
            for t in range(length):
                writer.add_step(obs={"pos": obs[t], "goal": np.array([goal], np.float32)}, action=actions[t])
            writer.finish(success=True, init_state_id=f"s{i}")
    store.create_version(version, store.episodes()["episode_id"].tolist())
    return store


def tiny_config(steps: int = 40, *, down_dims=(16, 32), **train_fields) -> ExperimentConfig:
    """A policy small enough to train dozens of steps per second on one CPU thread."""
    policy = PolicyConfig(obs_keys=("obs/pos", "obs/goal"), horizon=8, n_obs_steps=2, n_action_steps=4,
                          down_dims=down_dims, diffusion_step_embed_dim=16, n_groups=4, num_inference_steps=5)
    train_cfg = dict(steps=steps, batch_size=16, lr=1e-3, warmup_steps=5, val_ratio=0.2, val_every=10, val_batches=2,
                     checkpoint_every=20, log_every=10, num_threads=1, seed=0)
    train_cfg.update(train_fields)
    return ExperimentConfig(name="tiny", task="toy", policy=policy.validate(), train=TrainConfig(**train_cfg))


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest single-threaded (and the 2 cores may be shared); restore afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory) -> sime_data.Store:
    return make_store(tmp_path_factory.mktemp("toy") / "store")


def state_equal(a: dict, b: dict) -> bool:
    """Every tensor of two state dicts bit-identical."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------- schedule, EMA, batch indices
def test_cosine_warmup_schedule():
    sched = CosineWarmup(warmup_steps=10, total_steps=110)
    assert sched(0) == 0.0 and sched(5) == pytest.approx(0.5) and sched(10) == pytest.approx(1.0)
    assert sched(60) == pytest.approx(0.5) and sched(110) == pytest.approx(0.0) and sched(500) == 0.0
    assert CosineWarmup(0, 10)(0) == 1.0
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    lr_sched = make_lr_scheduler(opt, 10, 110)
    lrs = []
    for _ in range(110):
        lrs.append(lr_sched.get_last_lr()[0])
        opt.step()
        lr_sched.step()
    assert lrs[0] == 0.0 and max(lrs) == pytest.approx(2.0) and lrs[10] == pytest.approx(2.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_ema_decay_schedule_and_update():
    model = torch.nn.Linear(2, 1)
    model.register_buffer("stat", torch.zeros(1))
    ema = EMAModel(model, power=0.75, max_decay=0.9)
    assert ema.get_decay(0) == 0.0 and ema.get_decay(1) == 0.0
    assert ema.get_decay(2) == pytest.approx(1 - 2 ** -0.75)
    assert ema.get_decay(10 ** 6) == 0.9
    with torch.no_grad():
        model.weight.fill_(1.0)
        model.stat.fill_(3.0)
    ema.step(model)  # decay 0: copy
    assert torch.equal(ema.averaged.weight, model.weight) and ema.averaged.stat.item() == 3.0
    ema.step(model)  # decay 0 again (step 1)
    with torch.no_grad():
        model.weight.fill_(2.0)
    ema.step(model)  # step 2
    d = 1 - 2 ** -0.75
    assert torch.allclose(ema.averaged.weight, torch.full_like(model.weight, d * 1.0 + (1 - d) * 2.0))
    assert not any(p.requires_grad for p in ema.averaged.parameters())
    clone = EMAModel(model)
    clone.load_state_dict(ema.state_dict())
    assert clone.optimization_step == 3 and torch.equal(clone.averaged.weight, ema.averaged.weight)


def test_batch_indices_disjoint_across_ranks_and_deterministic():
    rng = np.random.default_rng(0)
    idx = draw_batch_indices(rng, 100, 16, 3)
    assert idx.shape == (3, 16) and len(set(idx.ravel().tolist())) == 48
    again = draw_batch_indices(np.random.default_rng(0), 100, 16, 3)
    assert np.array_equal(idx, again)
    small = draw_batch_indices(rng, 5, 8, 1)  # fewer windows than a batch: whole permutations
    assert small.shape == (1, 8) and set(small[0, :5].tolist()) == set(range(5))


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


# ---------------------------------------------------------------------- training outputs
def test_train_writes_checkpoints_logs_and_plot(toy_store, tmp_path):
    config = tiny_config(40)
    out = tmp_path / "run"
    result = train(toy_store, "v1", config, out, progress=False)
    assert result.step == 40 and result.final_checkpoint == out / "final.ckpt"
    names = sorted(p.name for p in out.iterdir())
    assert names == ["final.ckpt", "fit.json", "latest.ckpt", "loss_curves.png", "losses.csv", "losses.json",
                     "step_0000020.ckpt", "step_0000040.ckpt", "train.log"]  # no temp files left behind
    assert (out / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader((out / "losses.csv").open()))
    assert len(rows) == 40 and [r["val_loss"] != "" for r in rows].count(True) == 4
    assert json.loads((out / "losses.json").read_text())["losses"]["val_step"] == [10, 20, 30, 40]
    assert "validation loss" in (out / "train.log").read_text()

    ckpt = load_checkpoint(out / "final.ckpt")
    version = toy_store.version("v1")
    assert ckpt["step"] == 40 and ckpt["checkpoint_id"] == result.checkpoint_id and len(ckpt["checkpoint_id"]) == 12
    assert ExperimentConfig.from_dict(ckpt["config"]) == config
    assert ckpt["normalizer"] == result.policy.normalizer.stats()
    assert ckpt["signature"] == result.policy.signature()
    data = ckpt["data"]
    assert data["store"] == toy_store.location and data["version"] == "v1"
    assert data["version_created_at"] == version.created_at and data["n_episodes"] == len(GOALS)
    assert not set(data["train_episodes"]) & set(data["val_episodes"]) and len(data["val_episodes"]) == 1
    assert sorted(data["train_episodes"] + data["val_episodes"]) == sorted(version.episode_ids)
    assert ckpt["code"]["sime_version"] and "git_commit" in ckpt["code"]
    assert ckpt["losses"]["train_loss"] == result.history.train_loss
    assert set(ckpt["rng"]) >= {"torch", "numpy", "python", "batch"}
    assert ckpt["ema"] is not None and ckpt["optimizer"]["state"] and ckpt["lr_scheduler"]["last_epoch"] == 40
    step20 = load_checkpoint(out / "step_0000020.ckpt")
    assert step20["step"] == 20 and step20["checkpoint_id"] != ckpt["checkpoint_id"]
    assert "model" not in checkpoint_info(out / "final.ckpt")
    assert math.isfinite(result.final_train_loss) and result.final_val_loss is not None

    with pytest.raises(ValueError, match="already holds a training run"):
        train(toy_store, "v1", config, out, progress=False)


def test_load_policy_from_checkpoint_alone(tmp_path):
    store = make_store(tmp_path / "store")
    result = train(store, "v1", tiny_config(20, val_ratio=0.0), tmp_path / "run", progress=False)
    del store
    import shutil

    shutil.rmtree(tmp_path / "store")  # the checkpoint alone must suffice
    obs, _ = toy_episode(0.3, 20)
    history = {"obs/pos": obs[3:5], "obs/goal": np.full((2, 1), 0.3, np.float32)}
    for use_ema, reference in ((True, result.ema_policy), (False, result.policy)):
        policy, info = load_policy_and_info(tmp_path / "run", use_ema=use_ema)
        assert isinstance(policy, DiffusionPolicy) and not policy.training
        assert state_equal(policy.state_dict(), reference.state_dict())
        np.testing.assert_array_equal(policy.predict(history, seed=1), reference.predict(history, seed=1))
        assert info.version == "v1" and info.step == 20


def test_frame_weights_reach_the_loss(toy_store, tmp_path, monkeypatch):
    ids = toy_store.version("v1").episode_ids
    weights = {ids[0]: 0.5, ids[1]: np.linspace(0, 1, 20, dtype=np.float32)}
    seen: list[np.ndarray] = []
    original = DiffusionPolicy.compute_loss

    def spy(self, batch, generator=None):
        if self.training:
            seen.append(np.asarray(batch["weight"]))
        return original(self, batch, generator)

    monkeypatch.setattr(DiffusionPolicy, "compute_loss", spy)
    train(toy_store, "v1", tiny_config(10, val_ratio=0.0), tmp_path / "run", progress=False, frame_weights=weights)
    values = np.unique(np.concatenate([w.ravel() for w in seen]))
    assert 0.5 in values and 1.0 in values and len(values) > 3  # scalar, default and per-frame weights all used


# ---------------------------------------------------------------------- determinism and exact resume
def test_same_seed_same_weights_other_seed_differs(toy_store, tmp_path):
    config = tiny_config(15, checkpoint_every=0)
    a = train(toy_store, "v1", config, tmp_path / "a", progress=False)
    b = train(toy_store, "v1", config, tmp_path / "b", progress=False)
    c = train(toy_store, "v1", config.with_overrides(seed=1), tmp_path / "c", progress=False)
    assert state_equal(a.policy.state_dict(), b.policy.state_dict())
    assert state_equal(a.ema_policy.state_dict(), b.ema_policy.state_dict())
    assert a.history.to_dict() == b.history.to_dict()
    assert not state_equal(a.policy.state_dict(), c.policy.state_dict())
    assert a.history.train_loss != c.history.train_loss


def test_resume_reproduces_the_uninterrupted_run(toy_store, tmp_path):
    config = tiny_config(40)
    straight = train(toy_store, "v1", config, tmp_path / "straight", progress=False)

    first = train(toy_store, "v1", config, tmp_path / "split", progress=False, stop_after=20)
    assert first.step == 20 and first.final_checkpoint is None and not (tmp_path / "split" / "final.ckpt").exists()
    resumed = train(toy_store, "v1", config, tmp_path / "split", progress=False,
                    resume=tmp_path / "split" / "latest.ckpt")
    assert resumed.step == 40
    assert resumed.history.to_dict() == straight.history.to_dict()  # train and validation losses, lr, grad norms
    assert state_equal(resumed.policy.state_dict(), straight.policy.state_dict())
    assert state_equal(resumed.ema_policy.state_dict(), straight.ema_policy.state_dict())
    a, b = load_checkpoint(tmp_path / "straight" / "final.ckpt"), load_checkpoint(tmp_path / "split" / "final.ckpt")
    assert a["checkpoint_id"] == b["checkpoint_id"]
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    assert all(torch.equal(a["optimizer"]["state"][k]["exp_avg_sq"], b["optimizer"]["state"][k]["exp_avg_sq"])
               for k in a["optimizer"]["state"])

    # resuming the straight run's step-20 checkpoint into a fresh directory gives the same run too
    again = train(toy_store, "v1", config, tmp_path / "again", progress=False,
                  resume=tmp_path / "straight" / "step_0000020.ckpt")
    assert state_equal(again.policy.state_dict(), straight.policy.state_dict())
    assert again.history.train_loss == straight.history.train_loss


# ---------------------------------------------------------------------- bad input
def test_bad_inputs_raise_clear_errors(toy_store, tmp_path):
    config = tiny_config(5)
    with pytest.raises(VersionNotFoundError, match="unknown version 'nope'"):
        train(toy_store, "nope", config, tmp_path / "a", progress=False)
    with pytest.raises(PolicyInputError, match="obs/cube"):
        bad = replace(config, policy=replace(config.policy, obs_keys=("obs/pos", "obs/cube")))
        train(toy_store, "v1", bad, tmp_path / "b", progress=False)
    short = make_store(tmp_path / "short", goals=(0.1, 0.2), length=2)
    with pytest.raises(EmptyVersionError, match="horizon"):
        train(short, "v1", replace(config, policy=replace(config.policy, horizon=16, n_action_steps=1)),
              tmp_path / "c", progress=False)
    assert not (tmp_path / "a").exists()  # nothing written for a run that never started


def test_incompatible_checkpoints_are_refused(toy_store, tmp_path):
    config = tiny_config(5, checkpoint_every=0)
    train(toy_store, "v1", config, tmp_path / "run", progress=False)
    ckpt = tmp_path / "run" / "latest.ckpt"
    wider = replace(config, policy=replace(config.policy, down_dims=(16, 32, 64)))
    with pytest.raises(IncompatibleCheckpointError, match="down_dims"):
        train(toy_store, "v1", wider, tmp_path / "wider", progress=False, resume=ckpt)
    other = make_store(tmp_path / "other", pos_dim=3)
    with pytest.raises(IncompatibleCheckpointError, match="obs/pos"):
        train(other, "v1", config, tmp_path / "other_run", progress=False, resume=ckpt)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_policy(junk)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "foreign.ckpt")
    with pytest.raises(CheckpointError, match="not a SIME policy checkpoint"):
        load_policy(tmp_path / "foreign.ckpt")


# ---------------------------------------------------------------------- CLI (in process)
def test_cli_train_and_errors(toy_store, tmp_path, capsys):
    config_file = tmp_path / "tiny.json"
    config_file.write_text(tiny_config(10, checkpoint_every=5).to_json())
    out = tmp_path / "cli_run"
    base = ["train", "--store", toy_store.location, "--version", "v1", "--no-progress"]
    assert cli.main([*base, "--config", str(config_file), "--out", str(out), "--steps", "6", "--seed", "3",
                     "--set", "lr=0.002"]) == 0
    ckpt = load_checkpoint(out / "final.ckpt")
    assert ckpt["step"] == 6 and ckpt["config"]["train"]["seed"] == 3 and ckpt["config"]["train"]["lr"] == 0.002
    assert "checkpoint" in capsys.readouterr().out

    cases = [
        ([*base, "--config", str(config_file), "--out", str(tmp_path / "x"), "--version", "nope"], "unknown version"),
        ([*base, "--config", "lift_lowdim", "--out", str(tmp_path / "y")], "lacks key(s)"),
        ([*base, "--config", "no_such_preset", "--out", str(tmp_path / "z")], "unknown config preset"),
        ([*base, "--config", str(config_file), "--set", "down_dims=[16,32,64]", "--resume", str(out / "final.ckpt")],
         "down_dims"),
        ([*base, "--config", str(config_file), "--out", str(out)], "already holds a training run"),
        ([*base, "--out", str(tmp_path / "w")], "needs --config"),
        ([*base, "--config", str(config_file), "--set", "lr", "--out", str(tmp_path / "v")], "FIELD=VALUE"),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error:") and message in err, err


# ---------------------------------------------------------------------- quality bar
def test_small_policy_reproduces_training_actions(tmp_path):
    """A tiny policy trained ~15 s on CPU reproduces the recorded actions of 4 deterministic demonstrations."""
    goals, length = (-0.8, -0.3, 0.3, 0.8), 30
    store = make_store(tmp_path / "store", goals=goals, length=length, version="demos")
    config = tiny_config(1000, down_dims=(16, 32), batch_size=64, lr=3e-3, warmup_steps=20, val_ratio=0.0,
                         checkpoint_every=0, log_every=100)
    config = replace(config, policy=replace(config.policy, diffusion_step_embed_dim=32, n_groups=8,
                                            num_inference_steps=10))
    result = train(store, "demos", config, tmp_path / "run", progress=False)
    assert result.final_train_loss < 0.02, result.final_train_loss

    policy = load_policy(tmp_path / "run")  # EMA weights, from the checkpoint alone
    errors = []
    for goal in goals:
        obs, actions = toy_episode(goal, length)
        for start in range(0, length - 4, 3):
            history = {"obs/pos": np.stack([obs[max(start - 1, 0)], obs[start]]),
                       "obs/goal": np.full((2, 1), goal, np.float32)}
            predicted = policy.predict(history, seed=start)
            errors.append(np.abs(predicted - actions[start: start + 4]))
    errors = np.stack(errors)  # (queries, n_action_steps, action_dim); actions span about [-0.8, 0.8]
    mean_error, max_error = errors.mean(axis=(0, 1)), errors.max()
    assert (mean_error < 0.03).all(), mean_error
    assert max_error < 0.2, max_error
