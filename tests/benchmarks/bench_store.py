"""Trajectory-store benchmarks: the five figures of the store issue, measured in one run.

    python tests/benchmarks/bench_store.py [--quick] [--out DIR] [--keep] [--profile] [--strict]
    python -m pytest tests/benchmarks/bench_store.py      # small sizes, correctness only

Figures (all times are wall clock, time.perf_counter, median over repetitions):

1. Low-dim recording: `add_step(obs={4 keys, 19 dims float32}, action=10-D float32, reward, done,
   state=45-D float64)` + `finish()` per 150-step episode, amortised ms/step, on one pinned core.
   Target < 0.1 ms/step; shown beside a plain list-append recorder and a 5 ms simulator step.
2. Images: one *frame* = one step carrying both cameras (2 x 84x84x3 uint8) plus the low-dim data
   of figure 1, written with the store's compression on one pinned core. Target >= 1000 frames/s;
   also compressed bytes per frame vs raw.
3. SQL: success rate per init state (GROUP BY) over 1,000,000 episode rows written directly as
   Parquet row files in the store's episode schema. First query (fresh Store.open + catalog
   load) and warm query; target < 0.5 s; pandas groupby on the same data as baseline.
4. A 100,000-episode version on that 1M-row store: time (< 1 s) and file size (< 5 MB).
5. Disk over 5 rounds of "previous data + new selection": store versions (no copy) vs the
   reference approach of writing the whole training set into a new HDF5 file every round.
"""

from __future__ import annotations

import gc
import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_util import (  # noqa: E402
    Row,
    bench_arg_parser,
    dir_size,
    fmt_bytes,
    median,
    new_figure,
    output_dir,
    pinned_to_one_core,
    plot_ratios,
    plot_series,
    print_table,
    profiled,
    save_figure,
    write_csv,
    write_series_csv,
)

#: Low-dim observation keys and sizes (19 dims in all), as in robomimic's Lift.
LOWDIM_OBS = {"robot0_eef_pos": 3, "robot0_eef_quat": 4, "robot0_gripper_qpos": 2, "object": 10}
ACTION_DIM = 10
STATE_DIM = 45
CAMERAS = ("agentview_image", "robot0_eye_in_hand_image")
IMAGE_SHAPE = (84, 84, 3)
SIM_STEP_MS = 5.0
TASK = "bench_lift"
SQL_GROUPBY = (
    "SELECT init_state_id, avg(CAST(success AS DOUBLE)) AS success_rate, count(*) AS n "
    "FROM episodes GROUP BY init_state_id ORDER BY init_state_id"
)


@dataclass(frozen=True)
class Sizes:
    """Problem sizes and repetitions of one benchmark run."""

    steps: int = 150
    lowdim_episodes: int = 20
    lowdim_reps: int = 7
    image_episodes: int = 6
    image_reps: int = 5
    sql_rows: int = 1_000_000
    sql_files: int = 10
    sql_states: int = 1000
    sql_first_reps: int = 5
    sql_warm_reps: int = 15
    sql_init_state_variant: bool = True
    sql_init_state_reps: int = 3
    version_episodes: int = 100_000
    version_reps: int = 5
    disk_rounds: int = 5
    disk_demos: int = 50
    disk_new: int = 50
    disk_image_demos: int = 10
    disk_image_new: int = 10


FULL = Sizes()
QUICK = Sizes(lowdim_episodes=10, lowdim_reps=3, image_episodes=3, image_reps=3, sql_first_reps=3, sql_warm_reps=7,
              sql_init_state_reps=1, version_reps=3, disk_image_demos=4, disk_image_new=4)
#: For the pytest-collected tests: seconds, not minutes.
TINY = Sizes(steps=70, lowdim_episodes=2, lowdim_reps=1, image_episodes=1, image_reps=1, sql_rows=20_000, sql_files=3,
             sql_states=50, sql_first_reps=1, sql_warm_reps=2, sql_init_state_variant=True, sql_init_state_reps=1,
             version_episodes=2_000, version_reps=1, disk_rounds=2, disk_demos=2, disk_new=2, disk_image_demos=1,
             disk_image_new=1)


# ============================================================================ synthetic data
def camera_frames(steps: int, seed: int) -> np.ndarray:
    """Compressible camera frames: smooth moving gradients, a moving object and a noisy patch."""
    rng = np.random.default_rng(seed)
    h, w, _ = IMAGE_SHAPE
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((steps, *IMAGE_SHAPE), np.uint8)
    phase = rng.uniform(0, 50)
    for t in range(steps):
        img = np.stack([xx * 1.5 + t * 0.7 + phase, yy * 1.2 + 40, (xx + yy) * 0.6 + 90 - t * 0.3], axis=-1)
        cy, cx = 20 + (t // 3) % 40, 30 + (t // 5) % 30
        img[cy:cy + 14, cx:cx + 14] = (200.0, 40.0, 30.0)
        img[56:76, 8:30] += rng.integers(0, 48, (20, 22, 3))
        out[t] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def make_steps(steps: int, seed: int, images: bool = False) -> list[dict[str, Any]]:
    """Keyword arguments of `add_step` for one episode (arrays made up front, outside any timing)."""
    rng = np.random.default_rng(seed)
    walk = {k: np.cumsum(rng.normal(0, 0.01, (steps, d)), axis=0).astype(np.float32) for k, d in LOWDIM_OBS.items()}
    actions = rng.uniform(-1, 1, (steps, ACTION_DIM)).astype(np.float32)
    states = np.cumsum(rng.normal(0, 0.01, (steps, STATE_DIM)), axis=0)
    frames = [camera_frames(steps, seed * 7 + c) for c in range(len(CAMERAS))] if images else []
    out = []
    for t in range(steps):
        obs: dict[str, np.ndarray] = {k: v[t].copy() for k, v in walk.items()}
        for cam, cam_frames in zip(CAMERAS, frames):
            obs[cam] = cam_frames[t].copy()
        out.append({"obs": obs, "action": actions[t].copy(), "reward": float(t == steps - 1),
                    "done": t == steps - 1, "state": states[t].copy()})
    return out


def steps_to_arrays(steps: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Stack add_step keyword arguments into the store's per-key arrays ('obs/<k>', 'actions', ...)."""
    out = {f"obs/{k}": np.stack([s["obs"][k] for s in steps]) for k in steps[0]["obs"]}
    out["actions"] = np.stack([s["action"] for s in steps])
    out["rewards"] = np.asarray([s["reward"] for s in steps], dtype=np.float64)
    out["dones"] = np.asarray([s["done"] for s in steps], dtype=bool)
    out["states"] = np.stack([s["state"] for s in steps])
    return out


class ListRecorder:
    """The cheapest possible recorder: appends the step's arrays to Python lists (robomimic-style)."""

    def __init__(self) -> None:
        self.traj: dict[str, list[Any]] = {"obs": [], "actions": [], "rewards": [], "dones": [], "states": []}

    def add_step(self, obs: Any = None, action: Any = None, reward: Any = None, done: Any = None, state: Any = None) -> None:
        """Append one step."""
        self.traj["obs"].append(obs)
        self.traj["actions"].append(action)
        self.traj["rewards"].append(reward)
        self.traj["dones"].append(done)
        self.traj["states"].append(state)

    def finish(self) -> dict[str, list[Any]]:
        """Hand the episode over and start a new one."""
        traj = self.traj
        self.traj = {"obs": [], "actions": [], "rewards": [], "dones": [], "states": []}
        return traj


# ============================================================================ figures 1 and 2: writing
@dataclass
class WriteResult:
    """Timings of writing episodes step by step through store writers."""

    steps_per_episode: int
    episodes_per_rep: int
    total_s: list[float] = field(default_factory=list)
    add_s: list[float] = field(default_factory=list)
    finish_s: list[float] = field(default_factory=list)
    fixed_s: list[float] = field(default_factory=list)
    list_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    segments: list[str] = field(default_factory=list)
    episode_ids: list[str] = field(default_factory=list)
    frames_written: int = 0
    pin: str = ""

    @property
    def steps_per_rep(self) -> int:
        """Timed steps per repetition."""
        return self.steps_per_episode * self.episodes_per_rep

    def per_step_ms(self, values: list[float]) -> list[float]:
        """Seconds per repetition -> ms per step."""
        return [v / self.steps_per_rep * 1e3 for v in values]


def write_episodes(store: Any, steps: Sequence[dict[str, Any]], episodes: int, reps: int,
                   profile_path: Path | None = None) -> WriteResult:
    """Record `episodes` episodes per repetition with add_step+finish (one new writer per repetition)."""
    result = WriteResult(len(steps), episodes)
    with pinned_to_one_core() as pin:
        result.pin = pin
        for rep in range(reps):
            # list-append baseline, same call pattern
            recorder = ListRecorder()
            gc.collect()
            start = time.perf_counter()
            for _ in range(episodes):
                for step in steps:
                    recorder.add_step(**step)
                recorder.finish()
            result.list_s.append(time.perf_counter() - start)

            gc.collect()
            t_open = time.perf_counter()
            writer = store.writer("rollout", TASK, round=1, branch="sime", explore_mode="modal", noise_scale=0.1)
            for step in steps:  # first episode creates the segment's arrays: a per-writer cost
                writer.add_step(**step)
            result.episode_ids.append(writer.finish(success=True, init_state_id="warmup", trial=rep))
            fixed = time.perf_counter() - t_open
            add = fin = 0.0
            cpu0 = time.process_time()
            with profiled(profile_path is not None and rep == reps - 1, profile_path):
                for e in range(episodes):
                    a = time.perf_counter()
                    for step in steps:
                        writer.add_step(**step)
                    b = time.perf_counter()
                    result.episode_ids.append(writer.finish(success=bool(e % 2), init_state_id=str(e), trial=rep))
                    c = time.perf_counter()
                    add += b - a
                    fin += c - b
            result.cpu_s.append(time.process_time() - cpu0)
            t_close = time.perf_counter()
            writer.close()
            fixed += time.perf_counter() - t_close
            result.add_s.append(add)
            result.finish_s.append(fin)
            result.total_s.append(add + fin)
            result.fixed_s.append(fixed)
            result.segments.append(writer.segment)
            result.frames_written += (episodes + 1) * len(steps)
    return result


def check_written(store: Any, result: WriteResult, steps: Sequence[dict[str, Any]]) -> None:
    """Assert every written episode is committed and the last one reads back exactly."""
    rows = store.episodes(columns=["episode_id", "length"])
    present = set(rows["episode_id"])
    missing = [e for e in result.episode_ids if e not in present]
    assert not missing, f"{len(missing)} written episodes are not in the catalog, e.g. {missing[:3]}"
    assert set(rows.loc[rows["episode_id"].isin(result.episode_ids), "length"]) == {len(steps)}
    expected = steps_to_arrays(steps)
    got = store.read_episode(result.episode_ids[-1])
    assert set(got) == set(expected), (sorted(got), sorted(expected))
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)


def image_bytes_per_frame(store_root: Path, result: WriteResult) -> tuple[int, int]:
    """(compressed bytes of both cameras per frame, files) over the segments a WriteResult wrote."""
    total = files = 0
    for segment in result.segments:
        for cam in CAMERAS:
            size = dir_size(store_root / "data" / segment / "obs" / cam)
            total += size.apparent
            files += size.files
    return round(total / max(1, result.frames_written)), files


# ============================================================================ figures 3 and 4: SQL, versions
def _categorical(codes: np.ndarray, vocabulary: Sequence[str | None]) -> Any:
    """A plain string Arrow array from integer codes into a small vocabulary."""
    import pyarrow as pa

    return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(list(vocabulary), pa.string())).cast(pa.string())


def build_episode_rows(store_root: Path, n_rows: int, n_files: int, n_states: int, *, seed: int = 0,
                       with_init_state: bool = False, prefix: str = "bench") -> list[str]:
    """Write `n_rows` valid episode rows as `n_files` meta/episodes/<segment>/batch.parquet files; returns segments.

    Every column a writer fills is filled (keys, created_at, checkpoint, ...); `with_init_state`
    adds the 45-D initial simulator state per row as the design suggests rollout rows carry.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from sime_data.layout import EPISODES_DIR
    from sime_data.schema import EPISODE_SCHEMA

    rng = np.random.default_rng(seed)
    state_rate = rng.beta(2.0, 1.5, n_states)  # per-init-state success probability
    init_states = rng.normal(0, 1, (n_states, STATE_DIM))
    keys = sorted([f"obs/{k}" for k in LOWDIM_OBS] + ["actions", "rewards", "dones", "states"])
    per_file = -(-n_rows // n_files)
    segments = []
    base_us = 1_760_000_000_000_000
    for f in range(n_files):
        lo, hi = f * per_file, min(n_rows, (f + 1) * per_file)
        n = hi - lo
        if n <= 0:
            break
        segment = f"{prefix}{f:04d}{seed:04d}"
        local = np.arange(n, dtype=np.int64)
        glob = local + lo
        state = glob % n_states
        rnd = (glob * 5) // n_rows  # rounds 0..4
        branch = np.full(n, f % 2, np.int32)
        success = rng.random(n) < state_rate[state]
        lengths = np.where(success, rng.integers(40, 200, n), 400)
        columns: dict[str, Any] = {
            "episode_id": pc.binary_join_element_wise(
                pa.scalar(segment), pc.utf8_lpad(pc.cast(pa.array(local), pa.string()), 6, "0"), "-"),
            "segment": _categorical(np.zeros(n, np.int32), [segment]),
            "seg_start": pa.array(local * 512),
            "length": pa.array(lengths.astype(np.int64)),
            "source": _categorical((glob >= n_states).astype(np.int32), ["demo", "rollout"]),
            "task": _categorical(np.zeros(n, np.int32), [TASK]),
            "init_state_id": pc.cast(pa.array(state), pa.string()),
            "trial": pa.array(glob // n_states),
            "success": pa.array(success),
            "episode_return": pa.array(success.astype(np.float64)),
            "round": pa.array(rnd),
            "branch": _categorical(branch, ["sime", "baseline"]),
            "checkpoint": _categorical(rnd.astype(np.int32), [f"runs/lift/round{r}/ckpt.pt" for r in range(5)]),
            "explore_mode": _categorical(branch, ["modal", "none"]),
            "noise_scale": pa.array(np.where(branch == 0, 0.1, np.nan), mask=branch == 1),
            "tau1": pa.array(np.full(n, 0.2)),
            "tau2": pa.array(np.full(n, 0.8)),
            "seed": pa.array(glob),
            "created_at": pa.array(base_us + glob, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "tags": pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)), pa.array([], pa.string())),
            "model_xml_sha": _categorical(np.zeros(n, np.int32), ["0" * 64]),
            "keys": pa.ListArray.from_arrays(
                pa.array(np.arange(n + 1, dtype=np.int32) * len(keys)),
                _categorical(np.tile(np.arange(len(keys), dtype=np.int32), n), keys)),
        }
        if with_init_state:
            values = pa.array(init_states[state].ravel())
            columns["init_state"] = pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * STATE_DIM), values)
        arrays = [columns[fld.name] if fld.name in columns else pa.nulls(n, fld.type) for fld in EPISODE_SCHEMA]
        table = pa.Table.from_arrays(arrays, schema=EPISODE_SCHEMA)
        directory = store_root / EPISODES_DIR / segment
        directory.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, directory / ".tmp-batch.parquet", compression="zstd")
        (directory / ".tmp-batch.parquet").rename(directory / "batch.parquet")
        segments.append(segment)
    return segments


def episode_ids_of(segments: Sequence[str], n_rows: int, positions: np.ndarray) -> list[str]:
    """Episode ids (as written by build_episode_rows) of global row positions."""
    per_file = -(-n_rows // len(segments))
    return [f"{segments[p // per_file]}-{p % per_file:06d}" for p in positions.tolist()]


@dataclass
class SqlResult:
    """Timings of the success-rate group-by and its pandas baselines."""

    first_s: list[float] = field(default_factory=list)
    load_s: list[float] = field(default_factory=list)
    warm_s: list[float] = field(default_factory=list)
    pandas_mem_s: list[float] = field(default_factory=list)
    pandas_cold_s: list[float] = field(default_factory=list)
    init_state_first_s: list[float] = field(default_factory=list)
    build_s: float = 0.0
    rows: int = 0
    meta_bytes: int = 0


def _pandas_groupby(frame: Any) -> Any:
    return frame.groupby("init_state_id", sort=True)["success"].agg(["mean", "count"])


def _check_same_rates(sql_frame: Any, pandas_frame: Any, n_rows: int, n_states: int) -> None:
    """Assert the DuckDB group-by and the pandas group-by agree."""
    left = sql_frame.set_index(sql_frame["init_state_id"].astype(str))
    right = pandas_frame.copy()
    right.index = right.index.astype(str)
    left, right = left.sort_index(), right.sort_index()
    assert len(left) == n_states == len(right), (len(left), len(right), n_states)
    assert list(left.index) == list(right.index)
    assert int(left["n"].sum()) == n_rows
    np.testing.assert_array_equal(left["n"].to_numpy(np.int64), right["count"].to_numpy(np.int64))
    np.testing.assert_allclose(left["success_rate"].to_numpy(float), right["mean"].to_numpy(float), rtol=1e-12)


def bench_sql(root: Path, sizes: Sizes, profile_dir: Path | None = None) -> tuple[SqlResult, Any, list[str]]:
    """Figure 3 on a new store at root/sql; returns (result, open store, segments)."""
    import pandas as pd

    from sime_data import Store

    store_path = root / "sql_store"
    Store.create(store_path)
    result = SqlResult(rows=sizes.sql_rows)
    start = time.perf_counter()
    segments = build_episode_rows(store_path, sizes.sql_rows, sizes.sql_files, sizes.sql_states)
    result.build_s = time.perf_counter() - start
    result.meta_bytes = dir_size(store_path / "meta").apparent
    store = None
    for rep in range(sizes.sql_first_reps):
        gc.collect()
        with profiled(profile_dir is not None and rep == 0, profile_dir / "fig3_first_query.txt" if profile_dir else None):
            t0 = time.perf_counter()
            store = Store.open(store_path)
            frame = store.sql(SQL_GROUPBY)
            result.first_s.append(time.perf_counter() - t0)
    assert store is not None
    for _ in range(max(1, sizes.sql_first_reps // 2)):
        gc.collect()
        t0 = time.perf_counter()
        Store.open(store_path).catalog.episodes()  # every column of every row in memory, as store.episodes() does
        result.load_s.append(time.perf_counter() - t0)
    for _ in range(sizes.sql_warm_reps):
        gc.collect()
        t0 = time.perf_counter()
        frame = store.sql(SQL_GROUPBY)
        result.warm_s.append(time.perf_counter() - t0)
    files = [str(store_path / "meta" / "episodes" / s / "batch.parquet") for s in segments]
    pandas_frame = None
    for _ in range(max(1, sizes.sql_first_reps)):
        gc.collect()
        t0 = time.perf_counter()
        loaded = pd.concat([pd.read_parquet(f, columns=["init_state_id", "success"]) for f in files], ignore_index=True)
        pandas_frame = _pandas_groupby(loaded)
        result.pandas_cold_s.append(time.perf_counter() - t0)
    for _ in range(sizes.sql_warm_reps):
        gc.collect()
        t0 = time.perf_counter()
        pandas_frame = _pandas_groupby(loaded)
        result.pandas_mem_s.append(time.perf_counter() - t0)
    _check_same_rates(frame, pandas_frame, sizes.sql_rows, sizes.sql_states)
    assert store.sql("SELECT count(DISTINCT episode_id) AS n FROM episodes")["n"].iloc[0] == sizes.sql_rows

    if sizes.sql_init_state_variant:
        variant = root / "sql_store_init_state"
        Store.create(variant)
        build_episode_rows(variant, sizes.sql_rows, sizes.sql_files, sizes.sql_states, with_init_state=True)
        for _ in range(sizes.sql_init_state_reps):
            gc.collect()
            t0 = time.perf_counter()
            other = Store.open(variant)
            frame2 = other.sql(SQL_GROUPBY)
            result.init_state_first_s.append(time.perf_counter() - t0)
            del other
        _check_same_rates(frame2, pandas_frame, sizes.sql_rows, sizes.sql_states)
        shutil.rmtree(variant, ignore_errors=True)
    return result, store, segments


@dataclass
class VersionResult:
    """Timings and size of creating a large version."""

    create_s: list[float] = field(default_factory=list)
    cold_create_s: list[float] = field(default_factory=list)
    file_bytes: int = 0
    file_allocated: int = 0
    n_episodes: int = 0


def bench_version(store: Any, segments: Sequence[str], sizes: Sizes, profile_dir: Path | None = None) -> VersionResult:
    """Figure 4: create_version with `version_episodes` ids on the (catalog-loaded) SQL store."""
    from sime_data import Store

    result = VersionResult(n_episodes=sizes.version_episodes)
    rng = np.random.default_rng(1)
    lengths = None
    for rep in range(sizes.version_reps):
        positions = np.sort(rng.choice(sizes.sql_rows, sizes.version_episodes, replace=False))
        ids = episode_ids_of(segments, sizes.sql_rows, positions)
        name = f"bench/v{sizes.version_episodes}-{rep}"
        gc.collect()
        with profiled(profile_dir is not None and rep == 0, profile_dir / "fig4_create_version.txt" if profile_dir else None):
            t0 = time.perf_counter()
            version = store.create_version(name, ids, message="benchmark selection")
            result.create_s.append(time.perf_counter() - t0)
        assert version.stats["n_episodes"] == sizes.version_episodes
        if lengths is None:
            frame = store.episodes(columns=["episode_id", "length"]).set_index("episode_id")["length"]
            lengths = frame
        assert version.n_frames == int(lengths.loc[ids].sum())
        size = dir_size(Path(store.location) / "versions" / f"{name}.version.parquet")
        result.file_bytes, result.file_allocated = size.apparent, size.allocated
    # cold: a fresh Store object (catalog not loaded yet), as a CLI call would see it
    for rep in range(min(2, sizes.version_reps)):
        positions = np.sort(rng.choice(sizes.sql_rows, sizes.version_episodes, replace=False))
        ids = episode_ids_of(segments, sizes.sql_rows, positions)
        gc.collect()
        t0 = time.perf_counter()
        fresh = Store.open(store.location)
        fresh.create_version(f"bench/cold-{rep}", ids)
        result.cold_create_s.append(time.perf_counter() - t0)
    return result


# ============================================================================ figure 5: disk growth
def episode_arrays(index: int, steps: int, images: bool, frames: Sequence[np.ndarray] | None) -> dict[str, np.ndarray]:
    """Arrays of one synthetic episode keyed like the store ('obs/<k>', 'actions', ...)."""
    rng = np.random.default_rng(10_000 + index)
    out = {f"obs/{k}": np.cumsum(rng.normal(0, 0.01, (steps, d)), axis=0).astype(np.float32) for k, d in LOWDIM_OBS.items()}
    if images and frames is not None:
        for cam, cam_frames in zip(CAMERAS, frames):
            out[f"obs/{cam}"] = np.roll(cam_frames, index % 7, axis=2)
    out["actions"] = rng.uniform(-1, 1, (steps, ACTION_DIM)).astype(np.float32)
    out["rewards"] = np.zeros(steps)
    out["rewards"][-1] = 1.0
    out["dones"] = np.zeros(steps, bool)
    out["dones"][-1] = True
    out["states"] = np.cumsum(rng.normal(0, 0.01, (steps, STATE_DIM)), axis=0)
    return out


def write_robomimic_hdf5(path: Path, previous: Path | None, new_episodes: Sequence[dict[str, np.ndarray]]) -> int:
    """Reference approach: a new robomimic-layout HDF5 file = copy of `previous` + new demos; returns demos."""
    import h5py

    with h5py.File(path, "w") as dst:
        data = dst.create_group("data")
        count = total = 0
        if previous is not None:
            with h5py.File(previous, "r") as src:
                for name in sorted(src["data"].keys(), key=lambda n: int(n.split("_")[1])):
                    src.copy(src["data"][name], data, name=f"demo_{count}")
                    total += int(src["data"][name].attrs["num_samples"])
                    count += 1
        for episode in new_episodes:
            group = data.create_group(f"demo_{count}")
            for key, value in episode.items():
                group.create_dataset(key, data=value)  # robomimic/reference: uncompressed
            group.attrs["num_samples"] = len(episode["actions"])
            total += len(episode["actions"])
            count += 1
        data.attrs["total"] = total
        data.attrs["env_args"] = '{"env_name": "Lift", "type": 1, "env_kwargs": {}}'
    return count


def bench_disk_growth(root: Path, sizes: Sizes, images: bool, n_demos: int, n_new: int) -> list[dict[str, Any]]:
    """Figure 5: per round, store size (versions, no copies) vs sum of per-round HDF5 copies."""
    import h5py

    from sime_data import Store

    tag = "images" if images else "lowdim"
    store_path = root / f"disk_store_{tag}"
    h5_dir = root / f"disk_hdf5_{tag}"
    h5_dir.mkdir(parents=True, exist_ok=True)
    store = Store.create(store_path)
    frames = [camera_frames(sizes.steps, 100 + c) for c in range(len(CAMERAS))] if images else None
    records: list[dict[str, Any]] = []
    counter = 0
    previous_file: Path | None = None
    previous_version: str | None = None
    for rnd in range(sizes.disk_rounds + 1):
        count = n_demos if rnd == 0 else n_new
        episodes = [episode_arrays(counter + i, sizes.steps, images, frames) for i in range(count)]
        counter += count
        t0 = time.perf_counter()
        with store.writer("demo" if rnd == 0 else "rollout", TASK, round=rnd) as writer:
            ids = [writer.add_episode(ep, success=True, init_state_id=str(i), trial=0) for i, ep in enumerate(episodes)]
        if rnd == 0:
            store.create_version(f"{tag}/r0", ids, message="demonstrations")
        else:
            store.create_version(f"{tag}/r{rnd}-selected", ids, message="selected rollouts")
            store.create_version_union(f"{tag}/r{rnd}", [previous_version, f"{tag}/r{rnd}-selected"],
                                       message="previous + selection")
        previous_version = f"{tag}/r{rnd}"
        store_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        h5_file = h5_dir / f"round_{rnd}.hdf5"
        n_h5 = write_robomimic_hdf5(h5_file, previous_file, episodes)
        h5_s = time.perf_counter() - t0
        previous_file = h5_file
        version = store.version(previous_version)
        assert version.stats["n_episodes"] == n_h5 == n_demos + rnd * n_new, (version.stats, n_h5)
        s_size, h_size = dir_size(store_path), dir_size(h5_dir)
        records.append({
            "variant": tag, "round": rnd, "episodes_in_training_set": n_h5,
            "frames_in_training_set": version.n_frames,
            "store_bytes": s_size.apparent, "store_allocated": s_size.allocated, "store_files": s_size.files,
            "hdf5_bytes": h_size.apparent, "hdf5_allocated": h_size.allocated, "hdf5_files": h_size.files,
            "hdf5_over_store": h_size.allocated / max(1, s_size.allocated),
            "store_write_s": round(store_s, 4), "hdf5_write_s": round(h5_s, 4),
        })
    # the last training set reads back identically from both
    version = store.version(previous_version)
    first, last = version.episode_ids[0], version.episode_ids[-1]
    with h5py.File(previous_file, "r") as h5:
        n = len(h5["data"])
        for eid, demo in ((first, "demo_0"), (last, f"demo_{n - 1}")):
            got = store.read_episode(eid)
            for key in ("actions", "states") + ((f"obs/{CAMERAS[0]}",) if images else ()):
                np.testing.assert_array_equal(got[key], h5["data"][demo][key][()], err_msg=f"{eid} {key}")
    return records


# ============================================================================ running and reporting
@dataclass
class Results:
    """Everything one run measured."""

    sizes: Sizes
    lowdim: WriteResult | None = None
    image: WriteResult | None = None
    image_bytes: int = 0
    image_files: int = 0
    sql: SqlResult | None = None
    version: VersionResult | None = None
    disk: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def run_benchmarks(sizes: Sizes, scratch: Path, profile_dir: Path | None = None, log: Any = print) -> Results:
    """Measure all five figures with scratch stores under `scratch`."""
    from sime_data import Store

    start = time.perf_counter()
    results = Results(sizes)

    log(f"[1/5] low-dim recording: {sizes.lowdim_reps} x {sizes.lowdim_episodes} episodes of {sizes.steps} steps")
    store = Store.create(scratch / "write_store")
    steps = make_steps(sizes.steps, seed=1)
    results.lowdim = write_episodes(store, steps, sizes.lowdim_episodes, sizes.lowdim_reps,
                                    profile_dir / "fig1_lowdim_write.txt" if profile_dir else None)
    check_written(store, results.lowdim, steps)

    log(f"[2/5] image recording: {sizes.image_reps} x {sizes.image_episodes} episodes of {sizes.steps} steps")
    image_steps = make_steps(sizes.steps, seed=2, images=True)
    image_store = Store.create(scratch / "image_store")
    results.image = write_episodes(image_store, image_steps, sizes.image_episodes, sizes.image_reps,
                                   profile_dir / "fig2_image_write.txt" if profile_dir else None)
    check_written(image_store, results.image, image_steps)
    results.image_bytes, results.image_files = image_bytes_per_frame(scratch / "image_store", results.image)
    del image_steps

    log(f"[3/5] SQL group-by over {sizes.sql_rows:,} episode rows")
    results.sql, sql_store, segments = bench_sql(scratch, sizes, profile_dir)
    log(f"[4/5] creating {sizes.version_episodes:,}-episode versions")
    results.version = bench_version(sql_store, segments, sizes, profile_dir)
    del sql_store
    shutil.rmtree(scratch / "sql_store", ignore_errors=True)

    log(f"[5/5] disk growth over {sizes.disk_rounds} rounds (low-dim, then images)")
    results.disk = bench_disk_growth(scratch, sizes, False, sizes.disk_demos, sizes.disk_new)
    results.disk += bench_disk_growth(scratch, sizes, True, sizes.disk_image_demos, sizes.disk_image_new)
    results.seconds = time.perf_counter() - start
    return results


def make_rows(results: Results) -> list[Row]:
    """The table rows (figure, measured, baseline/target, ratio, pass?) of a run."""
    rows: list[Row] = []
    s = results.sizes
    low = results.lowdim
    if low is not None:
        total = low.per_step_ms(low.total_s)
        lists = low.per_step_ms(low.list_s)
        adds = low.per_step_ms(low.add_s)
        step_ms = median(total)
        rows.append(Row(f"1 low-dim step recording: add_step + finish, amortised ({s.steps}-step episodes, 1 core)",
                        step_ms, "ms/step", target=0.1, baseline=median(lists), baseline_label="list append",
                        note=f"{low.pin}; {low.episodes_per_rep} episodes x {s.steps} steps per repetition, "
                             f"median of {len(total)}", samples=total))
        rows.append(Row("1a   of which add_step", median(adds), "ms/step", baseline=median(lists),
                        baseline_label="list append", samples=adds))
        fin = [v / low.episodes_per_rep * 1e3 for v in low.finish_s]
        rows.append(Row("1b   of which finish() per episode", median(fin), "ms/episode", samples=fin))
        rows.append(Row("1c   store overhead per 5 ms simulator step", step_ms / SIM_STEP_MS * 100, "%",
                        target=0.1 / SIM_STEP_MS * 100, note="the 0.1 ms/step target expressed against a 5 ms sim step"))
        cpu = low.per_step_ms(low.cpu_s)
        rows.append(Row("1d   CPU time per step (process_time, all threads)", median(cpu), "ms/step",
                        note="wall time well above CPU time means waiting: fsync or other tenants of a shared machine",
                        samples=cpu))
        fixed = [v * 1e3 for v in low.fixed_s]
        rows.append(Row("1e   per writer: open + first episode (creates arrays) + close", median(fixed), "ms",
                        samples=fixed))
    img = results.image
    if img is not None:
        fps = [img.steps_per_rep / v for v in img.total_s]
        raw = 2 * int(np.prod(IMAGE_SHAPE))
        rows.append(Row("2 image recording: frames/s, 1 frame = 1 step with 2 cams 84x84x3 uint8 + fig-1 low-dim (1 core)",
                        median(fps), "frames/s", target=1000, higher_is_better=True,
                        note=f"{img.pin}; add_step + finish, {img.episodes_per_rep} episodes x {s.steps} steps per "
                             f"repetition; camera images/s = 2 x frames/s", samples=fps))
        rows.append(Row("2a   compressed image bytes per frame (both cameras)", results.image_bytes, "B", baseline=raw,
                        baseline_label="raw", note=f"blosc lz4 bitshuffle, one frame per chunk in 64-frame shards "
                                                   f"({results.image_files} shard files)"))
    sql = results.sql
    if sql is not None:
        rows.append(Row(f"3 SQL success rate per init state over {sql.rows:,} rows: first query (fresh Store.open + query)",
                        median(sql.first_s), "s", target=0.5,
                        note=f"fresh Store.open + store.sql(); {s.sql_files} Parquet row files, "
                             f"{fmt_bytes(sql.meta_bytes)}, OS file cache warm", samples=sql.first_s))
        rows.append(Row("3a   warm query (catalog loaded)", median(sql.warm_s), "s", target=0.5,
                        baseline=median(sql.pandas_mem_s), baseline_label="pandas groupby in memory",
                        samples=sql.warm_s))
        rows.append(Row("3b   pandas baseline: read_parquet(2 columns) + groupby", median(sql.pandas_cold_s), "s",
                        samples=sql.pandas_cold_s))
        if sql.init_state_first_s:
            rows.append(Row("3c   first query when rows carry the 45-D init_state", median(sql.init_state_first_s), "s",
                            target=0.5, note="same rows plus init_state list<float64>[45] per episode",
                            samples=sql.init_state_first_s))
        rows.append(Row("3d   full catalog load: Store.open + catalog.episodes() (all columns)", median(sql.load_s), "s",
                        note="what store.episodes(), store.episode(id) and read_episode pay once per Store object",
                        samples=sql.load_s))
    ver = results.version
    if ver is not None:
        rows.append(Row(f"4 create a {ver.n_episodes:,}-episode version (store of {s.sql_rows:,} rows, warm Store object)",
                        median(ver.create_s), "s", target=1.0, samples=ver.create_s))
        rows.append(Row("4a   version file size", ver.file_bytes, "B", target=5e6,
                        note=f"allocated on disk {fmt_bytes(ver.file_allocated)}"))
        if ver.cold_create_s:
            rows.append(Row("4b   same on a freshly opened Store (cold catalog)", median(ver.cold_create_s), "s",
                            samples=ver.cold_create_s))
    for variant in ("lowdim", "images"):
        recs = [r for r in results.disk if r["variant"] == variant]
        if not recs:
            continue
        last = recs[-1]
        label = "low-dim" if variant == "lowdim" else "with 2 x 84x84 cameras"
        rows.append(Row(f"5 disk after {last['round']} rounds, {label}: store vs one HDF5 copy per round",
                        last["store_allocated"], "B", baseline=last["hdf5_allocated"], baseline_label="HDF5 copies",
                        note=f"{recs[0]['episodes_in_training_set']} demos + {recs[1]['episodes_in_training_set'] - recs[0]['episodes_in_training_set'] if len(recs) > 1 else 0} "
                             f"selected per round, {s.steps} steps; HDF5 uncompressed (robomimic layout); "
                             f"allocated bytes (du); apparent: store {fmt_bytes(last['store_bytes'])}, "
                             f"HDF5 {fmt_bytes(last['hdf5_bytes'])}"))
    return rows


def print_disk_table(records: Sequence[dict[str, Any]], console: Any) -> None:
    """Per-round disk growth of both approaches."""
    from rich.table import Table

    table = Table(title="5  disk per round: store (versions, data written once) vs HDF5 copy per round")
    for col in ("variant", "round", "episodes", "store (du)", "store (apparent)", "HDF5 files total", "HDF5 / store"):
        table.add_column(col, justify="right")
    for r in records:
        table.add_row(r["variant"], str(r["round"]), str(r["episodes_in_training_set"]), fmt_bytes(r["store_allocated"]),
                      fmt_bytes(r["store_bytes"]), fmt_bytes(r["hdf5_allocated"]), f"{r['hdf5_over_store']:.2f}x")
    console.print(table)


def plot_results(rows: Sequence[Row], records: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """PNG: ratio-to-target bars, and cumulative disk per round for both approaches (one panel per variant)."""
    variants = [v for v in ("lowdim", "images") if any(r["variant"] == v for r in records)]
    made = new_figure(1 + len(variants), width_per_panel=6.5)
    if made is None:
        return None
    fig, axes = made
    plot_ratios(axes[0], rows, title="store benchmarks relative to their targets (left of the dashed line = pass)")
    for ax, variant in zip(axes[1:], variants):
        recs = [r for r in records if r["variant"] == variant]
        plot_series(ax, [r["round"] for r in recs], {
            "store: versions, data written once": [r["store_allocated"] / 1e6 for r in recs],
            "reference: new HDF5 file every round (sum)": [r["hdf5_allocated"] / 1e6 for r in recs],
        }, title=f"cumulative disk per round ({'low-dim' if variant == 'lowdim' else 'low-dim + 2 cameras'})",
            xlabel="round", ylabel="MB on disk")
    return save_figure(fig, path)


def write_outputs(results: Results, out: Path, console: Any) -> dict[str, Path | None]:
    """Print both tables and write store_bench.csv, store_disk_growth.csv and store_bench.png into `out`."""
    rows = make_rows(results)
    mode = "quick" if results.sizes == QUICK else ("full" if results.sizes == FULL else "custom")
    print_table(rows, f"SIME store benchmarks ({mode}, {results.seconds:.0f} s)", console)
    if results.disk:
        print_disk_table(results.disk, console)
    paths: dict[str, Path | None] = {"csv": write_csv(rows, out / "store_bench.csv")}
    if results.disk:
        paths["disk_csv"] = write_series_csv(out / "store_disk_growth.csv", results.disk)
    paths["png"] = plot_results(rows, results.disk, out / "store_bench.png")
    judged = [r for r in rows if r.passed is not None]
    missed = [r.figure for r in judged if not r.passed]
    console.print(f"{len(judged) - len(missed)} of {len(judged)} targets met" + (f"; missed: {missed}" if missed else ""))
    for name, path in paths.items():
        console.print(f"  {name}: {path if path else '(matplotlib not installed: no plot)'}")
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; exit status 1 with --strict when a target is missed."""
    parser = bench_arg_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when any target is missed")
    args = parser.parse_args(argv)
    from rich.console import Console

    console = Console(width=170)
    sizes = QUICK if args.quick else FULL
    out = output_dir(args.out, prefix="sime-bench-store-")
    scratch = Path(tempfile.mkdtemp(prefix="sime-bench-store-scratch-"))
    console.print(f"results -> {out}\nscratch stores -> {scratch}{' (kept)' if args.keep else ' (removed at the end)'}")
    try:
        results = run_benchmarks(sizes, scratch, out if args.profile else None, log=console.log)
        write_outputs(results, out, console)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    rows = make_rows(results)
    return 1 if args.strict and any(r.passed is False for r in rows) else 0


# ============================================================================ pytest: small sizes, correctness only
def test_lowdim_recording_roundtrip(tmp_path: Path) -> None:
    """Episodes recorded step by step are committed and read back bit-exactly; timings are finite."""
    from sime_data import Store

    store = Store.create(tmp_path / "s")
    steps = make_steps(12, seed=3)
    result = write_episodes(store, steps, episodes=2, reps=1)
    check_written(store, result, steps)
    assert len(result.episode_ids) == 3 and all(math.isfinite(v) and v > 0 for v in result.total_s + result.list_s)
    assert store.episodes()["init_state_id"].tolist().count("warmup") == 1


def test_image_recording_compresses(tmp_path: Path) -> None:
    """Camera frames cross a shard boundary, read back exactly, and compress below raw size."""
    from sime_data import Store

    store = Store.create(tmp_path / "s")
    steps = make_steps(70, seed=4, images=True)
    result = write_episodes(store, steps, episodes=1, reps=1)
    check_written(store, result, steps)
    per_frame, files = image_bytes_per_frame(tmp_path / "s", result)
    assert 0 < per_frame < 2 * int(np.prod(IMAGE_SHAPE))
    assert files >= 2


def test_sql_and_version_small(tmp_path: Path) -> None:
    """Synthetic episode rows are valid store rows; DuckDB group-by equals pandas; a version is made from ids."""
    sizes = TINY
    result, store, segments = bench_sql(tmp_path, sizes)
    assert len(result.first_s) == sizes.sql_first_reps and len(result.init_state_first_s) == 1
    eps = store.episodes(columns=["episode_id", "segment", "seg_start", "length", "keys"])
    assert len(eps) == sizes.sql_rows and eps["episode_id"].is_unique
    assert set(eps["segment"]) == set(segments)
    assert eps["episode_id"].iloc[0] == episode_ids_of(segments, sizes.sql_rows, np.array([0]))[0]
    assert len(eps["keys"].iloc[0]) == len(LOWDIM_OBS) + 4
    version = bench_version(store, segments, sizes)
    assert version.file_bytes > 0 and version.create_s
    assert store.version(f"bench/v{sizes.version_episodes}-0").stats["n_episodes"] == sizes.version_episodes


def test_disk_growth_small(tmp_path: Path) -> None:
    """Each round's version holds previous + selection; the HDF5 copies grow faster than the store."""
    sizes = replace(TINY, steps=20)
    records = bench_disk_growth(tmp_path, sizes, images=False, n_demos=2, n_new=2)
    assert [r["episodes_in_training_set"] for r in records] == [2, 4, 6]
    assert [r["hdf5_files"] for r in records] == [1, 2, 3]
    hdf5 = [r["hdf5_bytes"] for r in records]
    assert hdf5[2] - hdf5[1] > hdf5[1] - hdf5[0] > 0  # copies make the reference grow quadratically
    image_records = bench_disk_growth(tmp_path, sizes, images=True, n_demos=1, n_new=1)
    assert image_records[-1]["store_bytes"] < image_records[-1]["hdf5_bytes"]


def test_end_to_end_outputs(tmp_path: Path) -> None:
    """A tiny full run prints the table and writes the CSVs (and the PNG when matplotlib is installed)."""
    import csv
    import io

    from rich.console import Console

    sizes = replace(TINY, steps=20, sql_init_state_variant=False, sql_rows=5_000, version_episodes=500, disk_rounds=1)
    results = run_benchmarks(sizes, tmp_path / "scratch", profile_dir=tmp_path / "prof", log=lambda *_: None)
    console = Console(file=io.StringIO(), width=200)
    paths = write_outputs(results, tmp_path / "out", console)
    text = console.file.getvalue()
    for header in ("figure", "measured", "baseline/target", "ratio", "pass?"):
        assert header in text
    with open(paths["csv"]) as handle:
        table = list(csv.DictReader(handle))
    figures = {row["figure"].split()[0] for row in table}
    assert {"1", "2", "3", "4", "5"} <= figures
    assert (tmp_path / "prof" / "fig1_lowdim_write.txt").exists()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert paths["png"] is None
    else:
        assert paths["png"] is not None and paths["png"].stat().st_size > 0


if __name__ == "__main__":
    sys.exit(main())
