"""Multi-process training (DistributedDataParallel, gloo on CPU) and the `sime train` command as a subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import sime_data
from sime_policy.training.checkpoint import load_checkpoint, load_policy, load_policy_and_info
from sime_policy.policy.config import ExperimentConfig, PolicyConfig, TrainConfig

WORKER = Path(__file__).with_name("_ddp_worker.py")
REPO = Path(__file__).resolve().parents[2]


def make_store(path: Path, n_episodes: int = 6, length: int = 20) -> sime_data.Store:
    """Toy reach episodes (obs/pos, obs/goal -> 2-D actions) and a version 'v1' of them all."""
    store = sime_data.init_store(path)
    with store.writer(source="demo", task="toy") as writer:
        for i in range(n_episodes):
            goal, pos = -0.8 + 1.6 * i / max(1, n_episodes - 1), 0.0
            for _ in range(length):
                nxt = pos + 0.15 * (goal - pos)
                writer.add_step(obs={"pos": np.array([pos], np.float32), "goal": np.array([goal], np.float32)},
                                action=np.array([nxt, 5 * (nxt - pos)], np.float32))
                pos = nxt
            writer.finish(success=True)
    store.create_version("v1", store.episodes()["episode_id"].tolist())
    return store


def write_config(path: Path, steps: int = 12) -> Path:
    """A tiny experiment config as JSON (what `sime train --config FILE` reads)."""
    policy = PolicyConfig(obs_keys=("obs/pos", "obs/goal"), horizon=8, n_obs_steps=2, n_action_steps=4,
                          down_dims=(16, 32), diffusion_step_embed_dim=16, n_groups=4, num_inference_steps=5)
    train = TrainConfig(steps=steps, batch_size=16, lr=1e-3, warmup_steps=2, val_ratio=0.2, val_every=6, val_batches=1,
                        checkpoint_every=6, log_every=6, num_threads=1, seed=0)
    path.write_text(ExperimentConfig(name="tiny", task="toy", policy=policy, train=train).to_json())
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def test_two_cpu_ranks_draw_disjoint_batches_and_end_identical(tmp_path):
    store = make_store(tmp_path / "store")
    config = write_config(tmp_path / "tiny.json")
    out, record = tmp_path / "run", tmp_path / "record"
    record.mkdir()
    port = str(free_port())
    procs = [subprocess.Popen([sys.executable, str(WORKER), store.location, "v1", str(config), str(out), str(record)],
                              env=child_env(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, RANK=str(rank),
                                            LOCAL_RANK=str(rank), WORLD_SIZE="2"),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in range(2)]
    outputs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(outputs)

    idx0, idx1 = np.load(record / "indices_rank0.npy"), np.load(record / "indices_rank1.npy")
    assert idx0.shape == idx1.shape == (12, 16)
    for a, b in zip(idx0, idx1):
        assert not set(a.tolist()) & set(b.tolist())  # disjoint within every step
    s0 = torch.load(record / "state_rank0.pt", weights_only=True)
    s1 = torch.load(record / "state_rank1.pt", weights_only=True)
    assert s0["world_size"] == s1["world_size"] == 2
    for part in ("model", "ema"):
        assert all(torch.equal(s0[part][k], s1[part][k]) for k in s0[part])
    assert s0["losses"] == s1["losses"]  # the logged loss is the mean over ranks

    ckpt = load_checkpoint(out / "final.ckpt")
    assert ckpt["world_size"] == 2 and ckpt["step"] == 12
    assert all(torch.equal(ckpt["model"][k], s0["model"][k]) for k in s0["model"])
    log_text = (out / "train.log").read_text()
    assert log_text.count("training tiny") == 1 and log_text.count("saved latest.ckpt") == 2  # rank 0 only


def test_torchrun_cli(tmp_path):
    store = make_store(tmp_path / "store")
    config = write_config(tmp_path / "tiny.json", steps=6)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "sime_policy.cli", "train", "--store", store.location, "--version", "v1", "--config", str(config),
           "--out", str(out), "--no-progress"]
    proc = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("trained 6 steps") == 1  # only rank 0 reports
    ckpt = load_checkpoint(out / "final.ckpt")
    assert ckpt["world_size"] == 2 and ckpt["step"] == 6


def test_cli_subprocess_stop_and_resume(tmp_path):
    store = make_store(tmp_path / "store")
    config = write_config(tmp_path / "tiny.json", steps=8)
    out = tmp_path / "run"
    base = [sys.executable, "-m", "sime_policy.cli", "train", "--store", store.location, "--version", "v1",
            "--no-progress"]
    first = subprocess.run([*base, "--config", str(config), "--out", str(out), "--stop-after", "4"],
                           env=child_env(), capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert load_checkpoint(out / "latest.ckpt")["step"] == 4 and not (out / "final.ckpt").exists()
    second = subprocess.run([*base, "--resume", str(out)], env=child_env(), capture_output=True, text=True,
                            timeout=120)  # no --config: the checkpoint's own
    assert second.returncode == 0, second.stderr
    assert "trained 8 steps" in second.stdout
    policy, info = load_policy_and_info(out)
    assert info.step == 8


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_train_on_cuda(tmp_path):
    from sime_policy.training.trainer import train

    store = make_store(tmp_path / "store")
    config = ExperimentConfig.from_dict(json.loads(write_config(tmp_path / "c.json").read_text()))
    result = train(store, "v1", config, tmp_path / "run", progress=False, device="cuda")
    assert next(result.policy.parameters()).is_cuda
    policy = load_policy(tmp_path / "run", map_location="cpu")
    assert not next(policy.parameters()).is_cuda
