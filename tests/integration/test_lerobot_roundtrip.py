"""LeRobot v3.0 export and import on real files: the layout checked by an independent reader, a bit-exact round
trip of low-dim arrays (camera frames within a PSNR bound), trims and metadata, a hand-built v2.1 dataset, bad
input that leaves the store untouched, and re-import as a no-op."""

from __future__ import annotations

import json
import math
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

av = pytest.importorskip("av", reason="LeRobot video needs PyAV: pip install av (it belongs in the dev extra)")

import sime_data
from sime_data.errors import ImportFormatError
from sime_data.lerobot_io import VIDEO_ROUNDTRIP_MIN_PSNR_DB, export_lerobot, import_lerobot

FPS = 20
LENGTHS = [24, 31, 38]
TRIM = (1, 4, 20)  # episode 1 keeps frames [4, 20)
H = W = 64
#: Camera frames must come back at least this close (dB) after H.264; measured about 40.5 dB on these scenes.
MIN_PSNR_DB = 35.0
EXPLORE = {"round": 1, "branch": "sime", "explore_mode": "obs_noise", "noise_scale": 0.01, "tau1": 0.2, "tau2": 0.8}

# the documented v3.0 layout, written out here rather than taken from the code under test
V3_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V3_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
V3_EPISODES_FILE = "meta/episodes/chunk-000/file-000.parquet"


# ============================================================================ synthetic data
_yy, _xx = np.mgrid[0:H, 0:W].astype(np.float32)


def camera_frame(episode: int, t: int) -> np.ndarray:
    """A smooth scene: colour gradients plus a soft blob moving across it (meaningful for H.264 PSNR)."""
    cx, cy = 14 + 0.9 * t + 4 * episode, 32 + 9 * np.sin(t / 6 + episode)
    blob = np.exp(-((_xx - cx) ** 2 + (_yy - cy) ** 2) / (2 * 6.0 ** 2))
    rgb = np.stack([60 + 100 * _xx / W + 80 * blob,
                    40 + 120 * _yy / H + 40 * blob,
                    128 + 60 * np.sin((_xx + _yy + 2 * t) / 20) - 50 * blob], axis=-1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def build_store(path: Path) -> tuple[sime_data.Store, list[str]]:
    """3 episodes written with the real writer: float32 actions, float32 + float64 obs, one camera, metadata."""
    store = sime_data.init_store(path)
    rng = np.random.default_rng(7)
    ids = []
    with store.writer(source="rollout", task="lift", **EXPLORE) as w:
        for ep, length in enumerate(LENGTHS):
            for t in range(length):
                w.add_step(obs={"robot0_eef_pos": rng.normal(size=3).astype(np.float32),
                                "robot0_gripper_qpos": rng.normal(size=2),  # float64
                                "agentview_image": camera_frame(ep, t)},
                           action=rng.uniform(-1, 1, 7).astype(np.float32), reward=float(t == length - 1),
                           done=t == length - 1)
            ids.append(w.finish(success=ep != 1, init_state_id=f"state_{ep}", trial=ep, seed=100 + ep))
    store.create_version("lift/demo", ids)
    store.create_version_from_trims("lift/demo_trimmed", "lift/demo", {ids[TRIM[0]]: [(TRIM[1], TRIM[2])]})
    return store, ids


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """The source store and two exports of its trimmed version: default file sizes, and tiny ones."""
    root = tmp_path_factory.mktemp("lerobot")
    store, ids = build_store(root / "store")
    one = export_lerobot(store, "lift/demo_trimmed", root / "lift_demo", fps=FPS, progress=False)
    many = export_lerobot(store, "lift/demo_trimmed", root / "lift_demo_small_files", fps=FPS, progress=False,
                          chunks_size=2, data_files_size_in_mb=0.001, video_files_size_in_mb=0.001)
    return {"store": store, "ids": ids, "one": one, "many": many, "root": root}


def expected_lengths() -> list[int]:
    lengths = list(LENGTHS)
    lengths[TRIM[0]] = TRIM[2] - TRIM[1]
    return lengths


# ============================================================================ independent reader
def decode_range(path: Path, start: float, stop: float) -> np.ndarray:
    """Frames of an mp4 whose presentation time is in [start, stop), with plain PyAV."""
    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            t = float(frame.pts * stream.time_base)
            if start - 1e-6 <= t < stop - 1e-6:
                frames.append(frame.to_ndarray(format="rgb24"))
    return np.stack(frames) if frames else np.zeros((0, H, W, 3), np.uint8)


def read_v3(directory: Path) -> dict:
    """Read a v3.0 dataset following only the documented layout; assert its internal consistency on the way."""
    info = json.loads((directory / "meta/info.json").read_text())
    episodes = pq.read_table(directory / V3_EPISODES_FILE).to_pylist()
    tasks = pq.read_table(directory / "meta/tasks.parquet").to_pydict()
    task_of = dict(zip(tasks["task_index"], tasks["task"]))
    video_keys = [k for k, ft in info["features"].items() if ft["dtype"] == "video"]
    out = {"info": info, "episodes": [], "tasks": task_of}
    expected_from = 0
    for ep in episodes:
        data_file = directory / info["data_path"].format(chunk_index=ep["data/chunk_index"],
                                                         file_index=ep["data/file_index"])
        assert data_file.is_file(), data_file
        table = pq.read_table(data_file)
        rows = table.filter(pa.compute.equal(table["episode_index"], ep["episode_index"])).to_pydict()
        n = ep["length"]
        assert ep["dataset_from_index"] == expected_from and ep["dataset_to_index"] == expected_from + n
        expected_from += n
        assert rows["index"] == list(range(ep["dataset_from_index"], ep["dataset_to_index"]))
        assert rows["frame_index"] == list(range(n))  # restarts at 0 in every episode
        np.testing.assert_allclose(rows["timestamp"], np.arange(n) / info["fps"], rtol=0, atol=1e-6)
        assert {task_of[i] for i in rows["task_index"]} == set(ep["tasks"])
        videos = {}
        for key in video_keys:
            path = directory / info["video_path"].format(video_key=key, chunk_index=ep[f"videos/{key}/chunk_index"],
                                                         file_index=ep[f"videos/{key}/file_index"])
            assert path.is_file(), path
            start, stop = ep[f"videos/{key}/from_timestamp"], ep[f"videos/{key}/to_timestamp"]
            assert stop - start == pytest.approx(n / info["fps"])
            frames = decode_range(path, start, stop)
            assert len(frames) == n, (path, start, stop, len(frames), n)
            videos[key] = frames
        out["episodes"].append({"row": ep, "data": rows, "videos": videos, "data_file": data_file})
    assert expected_from == info["total_frames"]
    return out


# ============================================================================ layout
@pytest.mark.parametrize("which", ["one", "many"])
def test_export_follows_the_documented_v3_layout(source, which):
    result = source[which]
    read = read_v3(result.path)
    info = read["info"]
    lengths = expected_lengths()
    assert info["codebase_version"] == "v3.0" and info["fps"] == FPS
    assert info["data_path"] == V3_DATA_PATH and info["video_path"] == V3_VIDEO_PATH
    assert info["total_episodes"] == 3 and info["total_frames"] == sum(lengths) and info["total_tasks"] == 1
    assert info["splits"] == {"train": "0:3"}
    assert info["chunks_size"] == (2 if which == "many" else 1000)
    assert {"data_files_size_in_mb", "video_files_size_in_mb", "robot_type"} <= set(info)
    feats = info["features"]
    for name in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert feats[name]["shape"] == [1]
    assert feats["timestamp"]["dtype"] == "float32" and feats["index"]["dtype"] == "int64"
    assert feats["action"] == {"dtype": "float32", "shape": [7], "names": [f"action_{i}" for i in range(7)]}
    assert feats["observation.robot0_eef_pos"]["dtype"] == "float32"
    assert feats["observation.robot0_gripper_qpos"]["dtype"] == "float64"
    state = feats["observation.state"]
    assert state["shape"] == [5] and state["names"][:3] == ["robot0_eef_pos_0", "robot0_eef_pos_1", "robot0_eef_pos_2"]
    cam = feats["observation.images.agentview_image"]
    assert cam["dtype"] == "video" and cam["shape"] == [H, W, 3] and cam["names"] == ["height", "width", "channels"]
    assert cam["info"]["video.codec"] in ("h264", "mpeg4") and cam["info"]["video.pix_fmt"] == "yuv420p"
    assert [e["row"]["length"] for e in read["episodes"]] == lengths
    assert read["tasks"] == {0: "lift"}
    # the data parquet holds the frames; the video feature is not a column
    first = read["episodes"][0]["data"]
    assert "observation.images.agentview_image" not in first and len(first["action"][0]) == 7
    files = {e["data_file"] for e in read["episodes"]}
    videos = sorted((result.path / "videos").rglob("*.mp4"))
    if which == "one":  # several episodes per file, told apart by from/to timestamps
        assert len(files) == 1 and len(videos) == 1
    else:  # size limits roll files over, chunks hold at most chunks_size files
        assert len(files) == 3 and len(videos) == 3
        assert (result.path / "data/chunk-001/file-000.parquet").is_file()
        assert (result.path / "videos/observation.images.agentview_image/chunk-001/file-000.mp4").is_file()
    stats = json.loads((result.path / "meta/stats.json").read_text())
    for name in feats:
        assert {"min", "max", "mean", "std", "count"} <= set(stats[name]), name
    assert stats["action"]["count"] == [sum(lengths)]
    assert np.array(stats["observation.images.agentview_image"]["mean"]).shape == (3, 1, 1)
    assert sorted(result.data_files) == sorted(str(f.relative_to(result.path)) for f in files)


def test_episode_metadata_columns_carry_the_store_rows(source):
    read = read_v3(source["one"].path)
    rows = [e["row"] for e in read["episodes"]]
    assert [r["sime/episode_id"] for r in rows] == source["ids"]
    assert [r["sime/success"] for r in rows] == [True, False, True]
    assert [r["sime/init_state_id"] for r in rows] == ["state_0", "state_1", "state_2"]
    assert [(r["sime/frame_start"], r["sime/frame_stop"]) for r in rows][TRIM[0]] == (TRIM[1], TRIM[2])
    assert all(r["sime/noise_scale"] == 0.01 and r["sime/branch"] == "sime" for r in rows)


# ============================================================================ round trip
def test_round_trip_is_exact_for_low_dim_and_within_psnr_for_images(source, tmp_path):
    assert VIDEO_ROUNDTRIP_MIN_PSNR_DB == MIN_PSNR_DB
    src: sime_data.Store = source["store"]
    dst = sime_data.init_store(tmp_path / "dst")
    result = import_lerobot(dst, source["one"].path, progress=False)
    assert result.version == "lift_demo" and not result.already_imported
    assert result.n_frames == sum(expected_lengths())
    manifest = list(src.version("lift/demo_trimmed").manifest.itertuples(index=False))
    assert len(result.episode_ids) == len(manifest) == 3
    worst = math.inf
    for (eid, start, stop), new_id in zip(manifest, result.episode_ids):
        before = src.read_episode(eid, start=start, stop=stop)
        after = dst.read_episode(new_id)
        assert sorted(after) == sorted(before)
        for key, arr in before.items():
            assert after[key].dtype == arr.dtype and after[key].shape == arr.shape, key
            if key == "obs/agentview_image":
                worst = min(worst, psnr(arr, after[key]))
            else:
                assert np.array_equal(after[key], arr), key  # bit-exact, float32 stays float32
    assert worst >= MIN_PSNR_DB, worst
    rows = dst.episodes(version=result.version).set_index("episode_id").loc[result.episode_ids]
    assert rows["length"].tolist() == expected_lengths()  # the trim was applied
    assert rows["success"].tolist() == [True, False, True]
    assert rows["init_state_id"].tolist() == ["state_0", "state_1", "state_2"]
    assert rows["trial"].tolist() == [0, 1, 2] and rows["seed"].tolist() == [100, 101, 102]
    for column, value in EXPLORE.items():
        assert rows[column].tolist() == [value] * 3, column
    assert rows["task"].tolist() == ["lift"] * 3 and set(rows["source"]) == {"lerobot"}
    meta = json.loads(rows["meta"].iloc[1])["lerobot"]
    assert meta["source_episode_id"] == source["ids"][1] and (meta["frame_start"], meta["frame_stop"]) == TRIM[1:]


def test_images_mode_stores_png_frames_and_round_trips_them_exactly(source, tmp_path):
    out = export_lerobot(source["store"], "lift/demo", tmp_path / "as_images", video=False, progress=False)
    info = json.loads((out.path / "meta/info.json").read_text())
    assert info["features"]["observation.images.agentview_image"]["dtype"] == "image"
    assert info["video_path"] is None and not (out.path / "videos").exists()
    column = pq.read_table(out.path / V3_DATA_PATH.format(chunk_index=0, file_index=0))["observation.images.agentview_image"]
    assert pa.types.is_struct(column.type) and column[0].as_py()["bytes"][:4] == b"\x89PNG"
    dst = sime_data.init_store(tmp_path / "dst")
    result = import_lerobot(dst, out.path, version="images/roundtrip", progress=False)
    for eid, new_id in zip(source["ids"], result.episode_ids):
        a, b = source["store"].read_episode(eid), dst.read_episode(new_id)
        assert all(np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)


def test_reimport_is_a_no_op_that_says_so(source, tmp_path):
    dst = sime_data.init_store(tmp_path / "dst")
    first = import_lerobot(dst, source["many"].path, progress=False)
    again = import_lerobot(dst, source["many"].path, version="another_name", progress=False)
    assert again.already_imported and "nothing to do" in again.summary()
    assert again.version == first.version and again.episode_ids == first.episode_ids
    assert len(dst.episodes()) == 3 and dst.versions()["name"].tolist() == [first.version]


def test_export_refuses_a_non_empty_directory_unless_overwrite(source, tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        export_lerobot(source["store"], "lift/demo", target, progress=False)
    assert (target / "keep.txt").read_text() == "mine"
    result = export_lerobot(source["store"], "lift/demo", target, overwrite=True, progress=False)
    assert result.n_frames == sum(LENGTHS) and not (target / "keep.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp directories left beside it


def test_a_foreign_v3_dataset_with_av1_video_imports_by_feature_names(source, tmp_path):
    """A v3.0 dataset as LeRobot itself writes it: AV1 video (its default codec), no sime metadata."""
    directory = tmp_path / "foreign"
    shutil.copytree(source["one"].path, directory)
    (directory / "meta/sime.json").unlink()
    episodes_file = directory / V3_EPISODES_FILE
    table = pq.read_table(episodes_file)
    pq.write_table(table.select([c for c in table.column_names if not c.startswith("sime/")]), episodes_file)
    video = directory / "videos/observation.images.agentview_image/chunk-000/file-000.mp4"
    with av.open(str(video)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    with av.open(str(video), "w") as container:
        stream = container.add_stream("libsvtav1", rate=Fraction(FPS), options={"crf": "30", "g": "2", "preset": "12"})
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = i
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    store = sime_data.init_store(tmp_path / "store")
    result = import_lerobot(store, directory, version="foreign/lift", progress=False)
    manifest = list(source["store"].version("lift/demo_trimmed").manifest.itertuples(index=False))
    for (eid, start, stop), new_id in zip(manifest, result.episode_ids):
        before = source["store"].read_episode(eid, start=start, stop=stop)
        after = store.read_episode(new_id)
        assert sorted(after) == ["actions", "dones", "obs/agentview_image", "obs/robot0_eef_pos",
                                 "obs/robot0_gripper_qpos", "obs/state", "rewards"]
        for key in ("actions", "obs/robot0_eef_pos", "obs/robot0_gripper_qpos", "rewards", "dones"):
            assert np.array_equal(after[key], before[key]) and after[key].dtype == before[key].dtype, key
        state = np.concatenate([before["obs/robot0_eef_pos"], before["obs/robot0_gripper_qpos"].astype(np.float32)], 1)
        assert np.array_equal(after["obs/state"], state)
        assert psnr(before["obs/agentview_image"], after["obs/agentview_image"]) >= 30.0
    rows = store.episodes(version="foreign/lift")
    assert set(rows["task"]) == {"lift"} and rows["success"].isna().all()


def test_a_failed_export_leaves_nothing_behind_and_clears_a_killed_exports_temp(source, tmp_path):
    store_dir = tmp_path / "store"
    shutil.copytree(source["store"].location, store_dir)
    store = sime_data.open_store(store_dir)
    last_chunk = max((store_dir / "data").glob("*/actions/c/*/0"), key=lambda p: int(p.parent.name))
    last_chunk.write_bytes(b"not a zarr chunk" * 8)  # the last episode cannot be read: the export fails late
    killed = tmp_path / ".out.sime-lerobot-0badc0de.tmp"  # what an export killed with -9 leaves (lock released)
    killed.mkdir()
    (killed / "data").mkdir()
    with pytest.raises(Exception) as caught:
        export_lerobot(store, "lift/demo", tmp_path / "out", progress=False)
    assert not isinstance(caught.value, (AssertionError, FileExistsError))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


# ============================================================================ LeRobot v2.1
def write_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    """An mp4 written with plain PyAV (as LeRobot's own encoder does), one episode per file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps), options={"crf": "18", "g": "2"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def build_v21(directory: Path, lengths=(15, 22), fps: int = 10) -> dict:
    """A LeRobot v2.1 dataset by hand: per-episode parquet + mp4, episodes.jsonl, tasks.jsonl, info.json."""
    rng = np.random.default_rng(3)
    tasks = ["push the T", "push the block"]
    features = {
        "observation.state": {"dtype": "float32", "shape": [4], "names": ["x", "y", "vx", "vy"]},
        "action": {"dtype": "float32", "shape": [2], "names": ["dx", "dy"]},
        "observation.images.top": {"dtype": "video", "shape": [H, W, 3], "names": ["height", "width", "channels"],
                                   "info": {"video.fps": fps, "video.codec": "h264", "video.pix_fmt": "yuv420p"}},
        "next.reward": {"dtype": "float32", "shape": [1], "names": None},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }
    truth, first = [], 0
    for ep, n in enumerate(lengths):
        state = rng.normal(size=(n, 4)).astype(np.float32)
        action = rng.normal(size=(n, 2)).astype(np.float32)
        reward = rng.uniform(size=n).astype(np.float32)
        frames = np.stack([camera_frame(ep + 5, t) for t in range(n)])
        table = pa.table({
            "observation.state": pa.FixedSizeListArray.from_arrays(pa.array(state.ravel()), 4),
            "action": pa.FixedSizeListArray.from_arrays(pa.array(action.ravel()), 2),
            "next.reward": pa.array(reward),
            "timestamp": pa.array((np.arange(n) / fps).astype(np.float32)),
            "frame_index": pa.array(np.arange(n)),
            "episode_index": pa.array(np.full(n, ep)),
            "index": pa.array(np.arange(first, first + n)),
            "task_index": pa.array(np.full(n, ep % 2)),
        })
        (directory / "data/chunk-000").mkdir(parents=True, exist_ok=True)
        pq.write_table(table, directory / f"data/chunk-000/episode_{ep:06d}.parquet")
        write_mp4(directory / f"videos/chunk-000/observation.images.top/episode_{ep:06d}.mp4", frames, fps)
        truth.append({"state": state, "action": action, "reward": reward, "frames": frames, "task": tasks[ep % 2]})
        first += n
    meta = directory / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "info.json").write_text(json.dumps({
        "codebase_version": "v2.1", "robot_type": "pusht", "total_episodes": len(lengths), "total_frames": first,
        "total_tasks": 2, "total_videos": len(lengths), "total_chunks": 1, "chunks_size": 1000, "fps": fps,
        "splits": {"train": f"0:{len(lengths)}"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": features}, indent=4))
    (meta / "episodes.jsonl").write_text("".join(
        json.dumps({"episode_index": ep, "tasks": [tasks[ep % 2]], "length": n}) + "\n" for ep, n in enumerate(lengths)))
    (meta / "tasks.jsonl").write_text("".join(json.dumps({"task_index": i, "task": t}) + "\n" for i, t in enumerate(tasks)))
    (meta / "episodes_stats.jsonl").write_text("")
    return {"truth": truth}


def test_a_lerobot_v21_directory_imports(tmp_path):
    directory = tmp_path / "pusht v2.1"
    built = build_v21(directory)
    store = sime_data.init_store(tmp_path / "store")
    result = import_lerobot(store, directory, progress=False)
    assert result.codebase_version == "v2.1" and result.version == "pusht_v2.1"
    assert result.n_frames == 37 and len(result.episode_ids) == 2
    rows = store.episodes(version=result.version).set_index("episode_id").loc[result.episode_ids]
    assert rows["task"].tolist() == ["push the T", "push the block"] and rows["length"].tolist() == [15, 22]
    for truth, eid in zip(built["truth"], result.episode_ids):
        arrays = store.read_episode(eid)
        assert sorted(arrays) == ["actions", "obs/state", "obs/top", "rewards"]
        assert np.array_equal(arrays["obs/state"], truth["state"]) and arrays["obs/state"].dtype == np.float32
        assert np.array_equal(arrays["actions"], truth["action"])
        assert np.array_equal(arrays["rewards"], truth["reward"]) and arrays["rewards"].shape == (len(truth["reward"]),)
        assert arrays["obs/top"].shape == truth["frames"].shape and psnr(truth["frames"], arrays["obs/top"]) >= MIN_PSNR_DB


# ============================================================================ bad input
def store_with_one_episode(path: Path) -> sime_data.Store:
    store = sime_data.init_store(path)
    with store.writer(source="demo", task="lift") as w:
        w.add_step(obs={"x": np.zeros(2, np.float32)}, action=np.zeros(7, np.float32))
        eid = w.finish(success=True)
    store.create_version("existing", [eid])
    return store


def _remove_data_file(d: Path) -> str:
    (d / "data/chunk-000/file-000.parquet").unlink()
    return "data/chunk-000/file-000.parquet: missing"


def _rows_dropped(d: Path) -> str:
    path = d / "data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    pq.write_table(table.slice(0, table.num_rows - 3), path)
    return f"holds {sum(expected_lengths()) - 3} frames but the episode metadata gives its episodes {sum(expected_lengths())}"


def _corrupt_info(d: Path) -> str:
    (d / "meta/info.json").write_text('{"codebase_version": "v3.0", "fps": 20, "features": {')
    return "info.json: is not valid JSON"


def _unknown_version(d: Path) -> str:
    info = json.loads((d / "meta/info.json").read_text())
    info["codebase_version"] = "v9.9"
    (d / "meta/info.json").write_text(json.dumps(info))
    return "unknown codebase_version 'v9.9'"


def _frames_disagree(d: Path) -> str:
    info = json.loads((d / "meta/info.json").read_text())
    info["total_frames"] += 5
    (d / "meta/info.json").write_text(json.dumps(info))
    return "frames but the episode metadata lists"


def _string_feature(d: Path) -> str:
    info = json.loads((d / "meta/info.json").read_text())
    info["features"]["language_instruction"] = {"dtype": "string", "shape": [1], "names": None}
    (d / "meta/info.json").write_text(json.dumps(info))
    return "'language_instruction' has dtype 'string'"


def _short_video(d: Path) -> str:
    """Re-encode the camera file with the last 5 frames missing: the last episode's range then lacks them."""
    path = d / "videos/observation.images.agentview_image/chunk-000/file-000.mp4"
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    write_mp4(path, frames[:-5], FPS)
    return f"has only {expected_lengths()[-1] - 5} of the episode's {expected_lengths()[-1]} frames"


def _truncated_video(d: Path) -> str:
    path = d / "videos/observation.images.agentview_image/chunk-000/file-000.mp4"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    return "file-000.mp4: cannot be opened as a video"


def _not_lerobot(d: Path) -> str:
    shutil.rmtree(d / "meta")
    (d / "README.txt").write_text("some other dataset")
    return "no meta/info.json, so this is not a LeRobot dataset"


@pytest.mark.parametrize("damage", [_not_lerobot, _remove_data_file, _rows_dropped, _corrupt_info, _unknown_version, _frames_disagree,
                                    _string_feature, _short_video, _truncated_video])
def test_bad_input_names_the_problem_and_leaves_the_store_unchanged(source, tmp_path, damage):
    directory = tmp_path / "dataset"
    shutil.copytree(source["one"].path, directory)
    expected = damage(directory)
    store = store_with_one_episode(tmp_path / "store")
    with pytest.raises(ImportFormatError) as caught:
        import_lerobot(store, directory, progress=False)
    assert expected in str(caught.value)
    store = sime_data.open_store(store.location)
    assert len(store.episodes()) == 1 and store.versions()["name"].tolist() == ["existing"]
    # the frames an aborted import had written are gone too: only committed segments are left
    segments = {p.name for p in (tmp_path / "store" / "data").iterdir() if p.is_dir()}
    assert segments == set(store.episodes()["segment"])
