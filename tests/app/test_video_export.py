"""Episode videos (sime_data.video_export) and the store's media cache, on real stores and real mp4 files
(PyAV): per-episode and grid exports of versions, trims honoured, clips cached outside versions and ignored
by verify/gc, clear refusals, and rendered-from-states clips through the render worker."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import sime_data
from sime_data import video_codec
from sime_data.gc import gc
from sime_data.verify import verify
from sime_data.media_cache import CACHE_DIR, MediaCache, media_key
from sime_data.video_export import VideoExportError, episode_clip, export_video, grid_frames

from app_testlib import (  # noqa: F401 (fixtures)
    LENGTH,
    REF_FRAMES,
    _template_store,
    add_lift_episode,
    app_store,
    lift_recording,
    render_service,
)

#: PSNR in dB a decoded frame keeps at least (H.264 yuv420p, crf 18): rendered scenes, and the test store's
#: synthetic frames (one-pixel green lines, which chroma subsampling blurs).
MIN_PSNR_DB, MIN_PSNR_SYNTHETIC_DB = 30.0, 22.0


def _same_frames(reference: np.ndarray, decoded: np.ndarray) -> bool:
    """True when every decoded frame is closest (PSNR) to the reference frame at its own index."""
    return len(reference) == len(decoded) and all(
        int(np.argmax([video_codec.psnr(r, d) for r in reference])) == i for i, d in enumerate(decoded))


def _stored(store: sime_data.Store, eid: str, ranges: list[tuple[int, int]]) -> np.ndarray:
    frames = store.read_episode(eid, keys=["obs/agentview_image"])["obs/agentview_image"]
    return np.concatenate([frames[a:b] for a, b in ranges])


def test_export_version_writes_one_trimmed_mp4_per_episode(app_store: Path, tmp_path: Path) -> None:
    store = sime_data.open_store(app_store)
    ids = store.version("demos").episode_ids
    store.create_version_from_trims("demos/cut", "demos", {ids[0]: [(2, 7), (9, 14)]}, drop=[ids[1]])
    result = export_video(store, "demos/cut", tmp_path / "out", progress=False)
    assert [p.name for p in result.paths] == [f"{e}.agentview_image.mp4" for e in (ids[0], ids[2], ids[3])]
    assert result.frames == [10, LENGTH, LENGTH] and result.fps == 20.0
    info = video_codec.probe_video(result.paths[0])
    assert (info.n_frames, info.width, info.height, float(info.fps)) == (10, 48, 48, 20.0)
    decoded = video_codec.decode_video(result.paths[0])
    kept = _stored(store, ids[0], [(2, 7), (9, 14)])
    assert video_codec.psnr(kept, decoded) > MIN_PSNR_SYNTHETIC_DB and _same_frames(kept, decoded)
    assert not list((tmp_path / "out").glob(".*tmp"))  # only finished files
    # the same clips are in the store's media cache, outside every version, and are reused
    cached = MediaCache.for_store(store).files()
    assert len(cached) == 3 and all(str(p).startswith(str(app_store / CACHE_DIR)) for p in cached)
    stamp = {p: p.stat().st_mtime_ns for p in cached}
    with pytest.raises(FileExistsError, match="overwrite"):
        export_video(store, "demos/cut", tmp_path / "out", progress=False)
    export_video(store, "demos/cut", tmp_path / "out", overwrite=True, progress=False)
    assert {p: p.stat().st_mtime_ns for p in MediaCache.for_store(store).files()} == stamp


def test_grid_export_tiles_every_episode(app_store: Path, tmp_path: Path) -> None:
    store = sime_data.open_store(app_store)
    ids = store.version("demos").episode_ids
    result = export_video(store, "demos", tmp_path, grid=True, fps=10, progress=False)
    (path,) = result.paths
    info = video_codec.probe_video(path)
    assert (info.width, info.height, info.n_frames, float(info.fps)) == (98, 98, LENGTH, 10.0)  # 2x2 tiles, 2-px gap
    tiles = json.loads(path.with_suffix(".json").read_text())["tiles"]
    assert [(t["episode_id"], t["row"], t["column"]) for t in tiles] == [(ids[0], 0, 0), (ids[1], 0, 1), (ids[2], 1, 0),
                                                                      (ids[3], 1, 1)]
    frames = video_codec.decode_video(path)
    top_right = frames[:, :48, 50:98]
    reference = _stored(store, ids[1], [(0, LENGTH)])
    assert video_codec.psnr(reference, top_right) > MIN_PSNR_SYNTHETIC_DB and _same_frames(reference, top_right)


def test_cli_export_video_writes_files_and_refuses_bad_targets(app_store: Path, tmp_path: Path, capsys) -> None:
    from sime_data.cli import main

    store = sime_data.open_store(app_store)
    first = store.version("demos").episode_ids[0]
    assert main(["export-video", "--store", str(app_store), first, str(tmp_path / "one"), "-q"]) == 0
    assert [p.name for p in (tmp_path / "one").iterdir()] == [f"{first}.agentview_image.mp4"]
    assert main(["export-video", "--store", str(app_store), "demos", str(tmp_path / "grid"), "--grid",
                 "--columns", "4", "-q"]) == 0
    assert "wrote 1 grid video of 4 episode(s)" in capsys.readouterr().out
    assert video_codec.probe_video(tmp_path / "grid" / "demos.grid.agentview_image.mp4").width == 4 * 48 + 3 * 2
    assert main(["export-video", "--store", str(app_store), "no/such", str(tmp_path / "bad"), "-q"]) == 2
    assert "neither a version nor an episode" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    assert main(["export-video", "--store", str(app_store), first, str(tmp_path / "one"), "-q"]) == 2
    assert "already exist" in (err := capsys.readouterr().err) and "--overwrite" in err


def test_grid_holds_shorter_clips_on_their_last_frame() -> None:
    a = np.full((3, 4, 4, 3), 10, np.uint8)
    b = np.full((5, 4, 4, 3), 200, np.uint8)
    grid = grid_frames([a, b], columns=2, gap=2)
    assert grid.shape == (5, 4, 10, 3)
    assert (grid[4, :, :4] == 10).all() and (grid[4, :, 6:] == 200).all() and (grid[:, :, 4:6] == 0).all()


def test_bad_targets_are_refused_and_nothing_is_written(app_store: Path, tmp_path: Path) -> None:
    store = sime_data.open_store(app_store)
    with pytest.raises(VideoExportError, match="neither a version nor an episode"):
        export_video(store, "no/such", tmp_path / "a", progress=False)
    eid = store.version("demos").episode_ids[0]
    with pytest.raises(VideoExportError, match="no camera 'obs/depth'"):
        export_video(store, eid, tmp_path / "b", camera="obs/depth", progress=False)
    with pytest.raises(VideoExportError, match="fps"):
        export_video(store, eid, tmp_path / "c", fps=0, progress=False)
    assert not any((tmp_path / d).exists() and any((tmp_path / d).iterdir()) for d in "abc")
    plain = sime_data.init_store(tmp_path / "plain")
    with plain.writer(source="rollout", task="lift") as w:
        for t in range(3):
            w.add_step(obs={"pos": [float(t)]}, action=[0.0], reward=0.0, done=False, state=[float(t)] * 4)
        w.finish(success=False)
        lone = w.episodes_committed[0]
    with pytest.raises(VideoExportError, match="no simulator renderer"):
        export_video(plain, lone, tmp_path / "d", progress=False)


def test_media_cache_is_atomic_keyed_and_ignored_by_verify_and_gc(app_store: Path) -> None:
    store = sime_data.open_store(app_store)
    cache = MediaCache.for_store(store)
    key = media_key("ep-1", [(0, 5)], "obs/agentview_image", {"fps": 20})
    assert key == media_key("ep-1", [(0, 5)], "obs/agentview_image", {"fps": 20})
    assert len({key, media_key("ep-1", [(0, 6)], "obs/agentview_image", {"fps": 20}),
                media_key("ep-1", [(0, 5)], "obs/eye", {"fps": 20}), media_key("ep-1", [(0, 5)], "obs/agentview_image",
                                                                               {"fps": 10})}) == 4
    with pytest.raises(RuntimeError):
        with cache.writing("clips", key, "mp4") as tmp:
            tmp.write_bytes(b"half a file")
            raise RuntimeError("killed mid-write")
    assert cache.get("clips", key, "mp4") is None and cache.files() == []
    path = cache.put_bytes("clips", key, "mp4", b"whole")
    eid = store.version("demos").episode_ids[0]
    clip = episode_clip(store, eid, "obs/agentview_image")
    assert clip[4:8] == b"ftyp" and episode_clip(store, eid, "obs/agentview_image") == clip  # the cached copy
    assert verify(store).ok, verify(store).problems
    report = gc(store)
    assert path.read_bytes() == b"whole" and report.bytes_freed == 0 and len(cache.files()) == 2
    assert cache.clear() == 2 and cache.files() == []


def test_clip_rendered_from_states_matches_simenv(tmp_path: Path, render_service, lift_recording) -> None:
    from curation_app.render_worker import get_service

    store = sime_data.init_store(tmp_path / "store")
    eid = add_lift_episode(store, lift_recording)
    result = export_video(store, eid, tmp_path / "out", renderer=get_service(), progress=False)
    assert result.camera == "agentview_image" and result.frames == [len(lift_recording.states)]
    decoded = video_codec.decode_video(result.paths[0])
    for frame in REF_FRAMES:
        assert video_codec.psnr(lift_recording.refs[frame]["agentview_image"], decoded[frame]) > MIN_PSNR_DB
