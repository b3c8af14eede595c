"""Window sampling benchmark: our SequenceSampler vs per-sample h5py reads vs an in-memory replay buffer.

Run ``python tests/benchmarks/bench_sampling.py [--out DIR]`` for the full-size figures (200 episodes x
150 steps, 4 observation keys totalling 19 dims, 10-D actions, horizon 16, 2 observation steps).
Under pytest, `test_bench_sampling_small` runs a small size and checks only that all three methods
return identical windows (timings on shared CI machines are not asserted).

Methods, all producing the same windows with the same edge padding:
  ours    sime_data.sampler.SequenceSampler over a store version; sample_batch (vectorised gather)
  h5py    robomimic-layout HDF5 (data/demo_i/obs/<k>, data/demo_i/actions); each window read with
          h5py slicing per sample (dataset handles cached, file kept open), padded, then stacked
  replay  Diffusion-Policy-style replay buffer: a Zarr group with data/<key> concatenated and
          meta/episode_ends, loaded into numpy; each window sliced from numpy per sample, then stacked
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import zarr

import sime_data
from sime_data.sampler import SequenceSampler, load_version_arrays

OBS_DIMS = {"object": 10, "robot0_eef_pos": 3, "robot0_eef_quat": 4, "robot0_gripper_qpos": 2}  # 19 dims
ACTION_DIM = 10
TARGETS = {"speedup_vs_h5py": 10.0, "speedup_vs_replay": 1.0, "load_s": 1.0}


@dataclass
class Config:
    """Benchmark size and sampling parameters."""

    episodes: int = 200
    steps: int = 150
    horizon: int = 16
    n_obs_steps: int = 2
    n_action_steps: int = 8
    batch_size: int = 256
    batches_fast: int = 200  # batches per repeat for the in-memory methods
    batches_h5py: int = 8  # batches per repeat for h5py (slow)
    repeats: int = 5
    seed: int = 0

    @property
    def pad_before(self) -> int:
        """Diffusion Policy default: n_obs_steps - 1."""
        return self.n_obs_steps - 1

    @property
    def pad_after(self) -> int:
        """Diffusion Policy default: n_action_steps - 1."""
        return self.n_action_steps - 1


# ---------------------------------------------------------------------------------------------- data
def make_episodes(cfg: Config) -> list[dict[str, np.ndarray]]:
    """Synthetic low-dim episodes with values that identify (episode, step)."""
    rng = np.random.default_rng(cfg.seed)
    episodes = []
    for e in range(cfg.episodes):
        t = np.arange(cfg.steps, dtype=np.float32)[:, None]
        ep = {f"obs/{k}": (rng.standard_normal((cfg.steps, d)) + e * 1000 + t).astype(np.float32)
              for k, d in OBS_DIMS.items()}
        ep["actions"] = (rng.standard_normal((cfg.steps, ACTION_DIM)) + e * 1000 + t).astype(np.float32)
        episodes.append(ep)
    return episodes


def write_store(root: Path, episodes: list[dict[str, np.ndarray]]) -> None:
    """Our store: one writer segment, one version 'bench' with every episode."""
    store = sime_data.init_store(root / "store")
    with store.writer("demo", "bench") as w:
        ids = [w.add_episode(ep, success=True) for ep in episodes]
    store.create_version("bench", ids)


def write_robomimic_hdf5(path: Path, episodes: list[dict[str, np.ndarray]]) -> None:
    """robomimic layout: data/demo_<i>/obs/<key>, data/demo_<i>/actions, num_samples attributes."""
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        total = 0
        for i, ep in enumerate(episodes):
            demo = data.create_group(f"demo_{i}")
            for key, value in ep.items():
                demo.create_dataset(key, data=value)
            demo.attrs["num_samples"] = len(ep["actions"])
            total += len(ep["actions"])
        data.attrs["total"] = total


def write_replay_buffer(path: Path, episodes: list[dict[str, np.ndarray]]) -> None:
    """Diffusion-Policy-style replay buffer: data/<key> concatenated, meta/episode_ends."""
    root = zarr.open_group(str(path), mode="w")
    ends = np.cumsum([len(ep["actions"]) for ep in episodes]).astype(np.int64)
    root.create_group("meta").create_array("episode_ends", data=ends)
    data = root.create_group("data")
    for key in episodes[0]:
        name = key.split("/", 1)[1] if key.startswith("obs/") else key
        values = np.concatenate([ep[key] for ep in episodes])
        data.create_array(name, data=values, chunks=(min(len(values), 4096), values.shape[1]))


# ---------------------------------------------------------------------------------------------- baselines
def window_table(lengths: np.ndarray, cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """(episode index, episode-relative start) of every window, in the sampler's order."""
    eps, starts = [], []
    for e, length in enumerate(lengths.tolist()):
        first, last = -cfg.pad_before, length - cfg.horizon + cfg.pad_after
        for s in range(first, last + 1):
            eps.append(e)
            starts.append(s)
    return np.asarray(eps), np.asarray(starts)


def padded(read: Callable[[int, int], np.ndarray], start: int, length: int, ep_len: int) -> np.ndarray:
    """`length` frames from `start` of an episode of `ep_len` frames; out-of-range frames repeat the edge."""
    lo, hi = max(start, 0), min(start + length, ep_len)
    piece = read(lo, hi)
    before, after = lo - start, start + length - hi
    if before or after:
        out = np.empty((length, *piece.shape[1:]), dtype=piece.dtype)
        out[:before] = piece[0]
        out[before: before + len(piece)] = piece
        if after:
            out[before + len(piece):] = piece[-1]
        return out
    return piece


def stack(samples: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Collate per-sample dicts into a batch (what a DataLoader's default collate does)."""
    return {k: np.stack([x[k] for x in samples]) for k in samples[0]}


class H5Windows:
    """Per-sample windows read with h5py slicing from a robomimic-layout file."""

    def __init__(self, path: Path, cfg: Config) -> None:
        self.cfg = cfg
        self.file = h5py.File(path, "r")
        demos = sorted(self.file["data"].keys(), key=lambda d: int(d.split("_")[1]))
        self.handles = [{**{f"obs/{k}": self.file[f"data/{d}/obs/{k}"] for k in OBS_DIMS},
                         "actions": self.file[f"data/{d}/actions"]} for d in demos]
        self.lengths = np.array([int(self.file[f"data/{d}"].attrs["num_samples"]) for d in demos])
        self.win_ep, self.win_start = window_table(self.lengths, cfg)

    def sample(self, i: int) -> dict[str, np.ndarray]:
        """Window i, read from the file."""
        cfg = self.cfg
        e, s = int(self.win_ep[i]), int(self.win_start[i])
        h, n = self.handles[e], int(self.lengths[e])
        out = {k: padded(lambda a, b, d=h[k]: d[a:b], s, cfg.n_obs_steps, n) for k in (f"obs/{k}" for k in OBS_DIMS)}
        out["action"] = padded(lambda a, b: h["actions"][a:b], s, cfg.horizon, n)
        return out

    def batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Windows read one by one, then stacked."""
        return stack([self.sample(int(i)) for i in indices])

    def close(self) -> None:
        """Close the HDF5 file."""
        self.file.close()


class ReplayWindows:
    """Per-sample windows sliced from an in-memory replay buffer (Diffusion Policy's approach)."""

    def __init__(self, path: Path, cfg: Config) -> None:
        self.cfg = cfg
        root = zarr.open_group(str(path), mode="r")
        self.data = {k: np.asarray(root["data"][k][:]) for k in (*OBS_DIMS, "actions")}
        ends = np.asarray(root["meta"]["episode_ends"][:])
        self.starts = np.concatenate([[0], ends[:-1]])
        self.lengths = ends - self.starts
        self.win_ep, self.win_start = window_table(self.lengths, cfg)

    def sample(self, i: int) -> dict[str, np.ndarray]:
        """Window i, sliced from the in-memory arrays."""
        cfg = self.cfg
        e, s = int(self.win_ep[i]), int(self.win_start[i])
        base, n = int(self.starts[e]), int(self.lengths[e])
        out = {}
        for k in OBS_DIMS:  # only the first n_obs_steps frames (DP's key_first_k)
            buf = self.data[k]
            out[f"obs/{k}"] = padded(lambda a, b, buf=buf: buf[base + a: base + b], s, cfg.n_obs_steps, n)
        acts = self.data["actions"]
        out["action"] = padded(lambda a, b: acts[base + a: base + b], s, cfg.horizon, n)
        return out

    def batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Windows sliced one by one, then stacked."""
        return stack([self.sample(int(i)) for i in indices])


# ---------------------------------------------------------------------------------------------- timing
def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `repeats` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def throughput(batch_fn: Callable[[np.ndarray], object], n_windows: int, cfg: Config, n_batches: int) -> float:
    """Windows per second for random batches of cfg.batch_size (median over repeats)."""
    rng = np.random.default_rng(cfg.seed + 1)
    batches = [rng.integers(0, n_windows, size=cfg.batch_size) for _ in range(n_batches)]

    def run() -> None:
        for b in batches:
            batch_fn(b)

    return n_batches * cfg.batch_size / median_time(run, cfg.repeats)


def open_sampler(root: Path, cfg: Config) -> SequenceSampler:
    """Open the benchmark store and build our sampler over version 'bench'."""
    store = sime_data.open_store(root / "store")
    return SequenceSampler(store, "bench", obs_keys=list(OBS_DIMS), n_obs_steps=cfg.n_obs_steps,
                           horizon=cfg.horizon, n_action_steps=cfg.n_action_steps)


def check_same(ours: SequenceSampler, others: list, n: int = 64, seed: int = 3) -> None:
    """All methods return identical windows for the same indices."""
    assert all(len(o.win_ep) == len(ours) for o in others), "window counts differ"
    idx = np.random.default_rng(seed).integers(0, len(ours), size=n)
    idx[:2] = [0, len(ours) - 1]  # both padded edges
    mine = ours.sample_batch(idx)
    for other in others:
        theirs = other.batch(idx)
        for key, value in theirs.items():
            np.testing.assert_array_equal(mine[key], value, err_msg=f"{type(other).__name__} {key}")


def run_benchmark(cfg: Config, workdir: Path, verbose: bool = True) -> list[dict[str, object]]:
    """Build the three datasets under `workdir`, check they agree, time them; return result rows."""
    say = print if verbose else (lambda *a, **k: None)
    say(f"writing {cfg.episodes} episodes x {cfg.steps} steps (obs {sum(OBS_DIMS.values())} dims in "
        f"{len(OBS_DIMS)} keys, action {ACTION_DIM}-D) to {workdir} ...")
    episodes = make_episodes(cfg)
    write_store(workdir, episodes)
    write_robomimic_hdf5(workdir / "robomimic.hdf5", episodes)
    write_replay_buffer(workdir / "replay.zarr", episodes)

    keys = [f"obs/{k}" for k in OBS_DIMS] + ["actions"]
    load_arrays_s = median_time(lambda: load_version_arrays(sime_data.open_store(workdir / "store"), "bench", keys),
                                cfg.repeats)
    load_s = median_time(lambda: open_sampler(workdir, cfg), cfg.repeats)
    replay_load_s = median_time(lambda: ReplayWindows(workdir / "replay.zarr", cfg), cfg.repeats)
    h5_open_s = median_time(lambda: H5Windows(workdir / "robomimic.hdf5", cfg).close(), cfg.repeats)

    ours = open_sampler(workdir, cfg)
    h5 = H5Windows(workdir / "robomimic.hdf5", cfg)
    replay = ReplayWindows(workdir / "replay.zarr", cfg)
    try:
        check_same(ours, [h5, replay])
        n = len(ours)
        ours_wps = throughput(ours.sample_batch, n, cfg, cfg.batches_fast)
        ours_item_wps = throughput(lambda b: stack([ours[int(i)] for i in b]), n, cfg, max(1, cfg.batches_fast // 10))
        replay_wps = throughput(replay.batch, n, cfg, max(1, cfg.batches_fast // 10))
        h5_wps = throughput(h5.batch, n, cfg, cfg.batches_h5py)
    finally:
        h5.close()
    rows = [
        {"metric": "windows in version", "value": n, "unit": "windows", "target": "", "ok": ""},
        {"metric": "ours: load_version_arrays", "value": load_arrays_s, "unit": "s", "target": "", "ok": ""},
        {"metric": "ours: open store + build sampler", "value": load_s, "unit": "s",
         "target": f"< {TARGETS['load_s']:g} s", "ok": load_s < TARGETS["load_s"]},
        {"metric": "replay: load zarr into numpy + index", "value": replay_load_s, "unit": "s", "target": "", "ok": ""},
        {"metric": "h5py: open file + index", "value": h5_open_s, "unit": "s", "target": "", "ok": ""},
        {"metric": "ours: sample_batch", "value": ours_wps, "unit": "windows/s", "target": "", "ok": ""},
        {"metric": "ours: per-item __getitem__", "value": ours_item_wps, "unit": "windows/s", "target": "", "ok": ""},
        {"metric": "replay: per-sample numpy slicing", "value": replay_wps, "unit": "windows/s", "target": "", "ok": ""},
        {"metric": "h5py: per-sample reads", "value": h5_wps, "unit": "windows/s", "target": "", "ok": ""},
        {"metric": "ratio ours / h5py", "value": ours_wps / h5_wps, "unit": "x",
         "target": f">= {TARGETS['speedup_vs_h5py']:g}x", "ok": ours_wps / h5_wps >= TARGETS["speedup_vs_h5py"]},
        {"metric": "ratio ours / replay buffer", "value": ours_wps / replay_wps, "unit": "x",
         "target": f">= {TARGETS['speedup_vs_replay']:g}x", "ok": ours_wps / replay_wps >= TARGETS["speedup_vs_replay"]},
    ]
    return rows


def format_table(rows: list[dict[str, object]]) -> str:
    """Plain-text table of result rows."""
    def fmt(v: object) -> str:
        if isinstance(v, bool):
            return "yes" if v else "NO"
        if isinstance(v, float):
            return f"{v:,.4f}" if v < 10 else f"{v:,.0f}"
        return str(v)

    head = ["metric", "value", "unit", "target", "ok"]
    cells = [[fmt(r[h]) for h in head] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths))
    out = [line, "-" * len(line)]
    for c in cells:
        out.append("  ".join((x.rjust(w) if i == 1 else x.ljust(w)) for i, (x, w) in enumerate(zip(c, widths))))
    return "\n".join(out)


def write_csv(rows: list[dict[str, object]], out_dir: Path, cfg: Config) -> Path:
    """Write the rows to out_dir/bench_sampling.csv."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "bench_sampling.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["metric", "value", "unit", "target", "ok", "episodes", "steps",
                                               "horizon", "n_obs_steps", "batch_size"])
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "episodes": cfg.episodes, "steps": cfg.steps, "horizon": cfg.horizon,
                             "n_obs_steps": cfg.n_obs_steps, "batch_size": cfg.batch_size})
    return path


# ---------------------------------------------------------------------------------------------- pytest
try:  # the script runs without pytest installed
    import pytest

    _benchmark_mark = pytest.mark.benchmark
except ImportError:  # pragma: no cover
    def _benchmark_mark(fn):  # type: ignore[no-redef]
        return fn


@_benchmark_mark
def test_bench_sampling_small(tmp_path: Path) -> None:
    """Small run: the three methods agree window for window and every figure is produced."""
    cfg = Config(episodes=12, steps=40, batch_size=32, batches_fast=4, batches_h5py=1, repeats=1)
    rows = run_benchmark(cfg, tmp_path, verbose=False)
    values = {r["metric"]: r["value"] for r in rows}
    assert values["windows in version"] == 12 * (40 - cfg.horizon + cfg.pad_before + cfg.pad_after + 1)
    assert all(isinstance(v, (int, float)) and v > 0 for v in values.values())
    assert "ratio ours / h5py" in format_table(rows)
    assert write_csv(rows, tmp_path / "out", cfg).exists()


# ---------------------------------------------------------------------------------------------- script
def main(argv: list[str] | None = None) -> int:
    """Command-line entry: run the full-size benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="write bench_sampling.csv into this directory")
    parser.add_argument("--episodes", type=int, default=Config.episodes)
    parser.add_argument("--steps", type=int, default=Config.steps)
    parser.add_argument("--repeats", type=int, default=Config.repeats)
    parser.add_argument("--workdir", type=Path, help="where to write the datasets (default: a temporary directory)")
    args = parser.parse_args(argv)
    cfg = Config(episodes=args.episodes, steps=args.steps, repeats=args.repeats)
    with tempfile.TemporaryDirectory(prefix="bench_sampling_") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        rows = run_benchmark(cfg, workdir)
    print()
    print(f"SequenceSampler benchmark: {cfg.episodes} episodes x {cfg.steps} steps, horizon {cfg.horizon}, "
          f"n_obs_steps {cfg.n_obs_steps}, batch {cfg.batch_size}, median of {cfg.repeats} ({os.cpu_count()} cpus)")
    print(format_table(rows))
    if args.out:
        print(f"\nwrote {write_csv(rows, args.out, cfg)}")
    failed = [r["metric"] for r in rows if r["ok"] is False]
    if failed:
        print(f"\ntargets missed: {failed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
