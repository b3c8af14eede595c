"""Episode videos: camera frames of an episode (stored, or rendered from its simulator states) as mp4 clips.

`export_video(store, "VERSION_OR_EPISODE", out_dir)` writes one mp4 per episode (its kept frames, for a
version) or, with `grid=True`, one mp4 showing every episode side by side (behind `sime-data export-video`).
The curation app plays the very same clips: `episode_clip` encodes them once with `sime_data.video_codec`
(PyAV, H.264 yuv420p) and keeps them in the store's media cache (`sime_data.media_cache`), never in versions.

Frames come from the episode's stored camera arrays (`obs/<camera>` of shape (H, W, 3|1) or (H, W)) when it
has any; otherwise from a `StateRenderer` that restores the recorded simulator states with the episode's
model XML. `sime_data` never imports a simulator itself: a renderer is passed in, or found through the
`sime.state_renderers` entry point group (see `find_renderer`).

The frame rate is the episode's own when it records `timestamps` (median step interval), else
`DEFAULT_FPS` (robosuite's 20 Hz control rate).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np
from tqdm.auto import tqdm

from .errors import EpisodeNotFoundError, StoreError, VersionNotFoundError
from .media_cache import MediaCache, media_key

log = logging.getLogger(__name__)

#: Frames per second when an episode records no timestamps (robosuite's control rate).
DEFAULT_FPS = 20.0
#: Entry-point group a package registers its `StateRenderer` factory under (name -> callable()).
RENDERER_ENTRY_POINTS = "sime.state_renderers"
#: Bumped whenever clip encoding changes, so older cached clips are not reused.
CLIP_FORMAT = 1
#: Pixels between tiles of a grid video.
GRID_GAP = 2

Range = tuple[int, int]


class VideoExportError(StoreError):
    """An episode or version that cannot be turned into video (no camera, no renderer, bad target)."""


@runtime_checkable
class StateRenderer(Protocol):
    """Renders camera frames of a task's simulator restored to recorded states."""

    #: Identifies what the frames depend on besides the states (simulator versions, image size); part of cache keys.
    name: str

    def cameras(self, task: str) -> list[str]:
        """Camera keys this renderer produces for `task` (e.g. 'agentview_image'); empty when it cannot."""
        ...

    def render(self, task: str, model_xml: str | None, states: np.ndarray,
               cameras: Sequence[str]) -> dict[str, np.ndarray]:
        """{camera: (T, H, W, 3) uint8} for each state of `states` (T, D)."""
        ...


def find_renderer() -> StateRenderer | None:
    """The first installed `sime.state_renderers` entry point's renderer, or None when none is installed."""
    from importlib.metadata import entry_points

    for entry in sorted(entry_points(group=RENDERER_ENTRY_POINTS), key=lambda e: e.name):
        try:
            return entry.load()()
        except Exception as exc:  # noqa: BLE001 - a broken plug-in must not break exporting stored frames
            log.warning("state renderer %r could not be loaded: %s: %s", entry.name, type(exc).__name__, exc)
    return None


# ---------------------------------------------------------------------------- frames
def stored_cameras(store: Any, episode_id: str) -> list[str]:
    """Keys of an episode's stored camera frames: image arrays of shape (H, W), (H, W, 1|3|4)."""
    out = []
    for key, spec in store.episode_keys(episode_id).items():
        shape = tuple(spec.shape)
        if spec.is_image and (len(shape) == 2 or (len(shape) == 3 and shape[-1] in (1, 3, 4))):
            out.append(key)
    return sorted(out)


def episode_cameras(store: Any, episode_id: str, renderer: StateRenderer | None = None) -> list[str]:
    """Cameras a video of the episode can show: stored ones, else what `renderer` renders from its states."""
    stored = stored_cameras(store, episode_id)
    if stored:
        return stored
    row = store.episode(episode_id)
    if renderer is None or "states" not in row["keys"] or not row.get("task"):
        return []
    return list(renderer.cameras(str(row["task"])))


def to_rgb(frames: np.ndarray) -> np.ndarray:
    """Camera frames (T, H, W[, 1|3|4]) of any numeric dtype as (T, H, W, 3) uint8 (others scaled to 0..255)."""
    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise ValueError(f"camera frames must be (T, H, W[, C]), got shape {arr.shape}")
    if arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.dtype != np.uint8:
        lo, hi = (float(np.min(arr)), float(np.max(arr))) if arr.size else (0.0, 1.0)
        arr = ((arr.astype(np.float64) - lo) / (hi - lo if hi > lo else 1.0) * 255).round().astype(np.uint8)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.ascontiguousarray(arr)


def frame_indices(length: int, ranges: Sequence[Range] | None) -> np.ndarray:
    """Episode frame indices kept by `ranges` (every frame when None), in order."""
    if ranges is None:
        return np.arange(length)
    parts = [np.arange(max(0, a), min(length, b)) for a, b in ranges]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def episode_frames(store: Any, episode_id: str, camera: str, *, ranges: Sequence[Range] | None = None,
                   renderer: StateRenderer | None = None) -> np.ndarray:
    """(T, H, W, 3) uint8 frames of one camera over the kept `ranges` (all frames when None)."""
    row = store.episode(episode_id)
    index = frame_indices(int(row["length"]), ranges)
    if camera in row["keys"]:
        if not len(index):
            return np.zeros((0, 2, 2, 3), np.uint8)
        lo, hi = int(index.min()), int(index.max()) + 1
        block = store.read_episode(episode_id, keys=[camera], start=lo, stop=hi)[camera]
        return to_rgb(block[index - lo])
    if renderer is None:
        raise VideoExportError(f"episode {episode_id} stores no camera {camera!r}, and no simulator renderer is "
                               "available to render it from its states (install the sim extra: "
                               "pip install -e '.[sim]')")
    if "states" not in row["keys"]:
        raise VideoExportError(f"episode {episode_id} stores neither camera {camera!r} nor simulator states")
    states = store.read_episode(episode_id, keys=["states"])["states"][index]
    rendered = renderer.render(str(row["task"]), store.model_xml(episode_id), states, [camera])
    return to_rgb(rendered[camera])


def episode_fps(store: Any, episode_id: str, default: float = DEFAULT_FPS) -> float:
    """Frames per second of an episode: from its `timestamps` (median step) when recorded, else `default`."""
    row = store.episode(episode_id)
    if "timestamps" in row["keys"] and int(row["length"]) > 2:
        stamps = np.asarray(store.read_episode(episode_id, keys=["timestamps"])["timestamps"], np.float64).ravel()
        steps = np.diff(stamps)
        steps = steps[np.isfinite(steps) & (steps > 0)]
        if len(steps):
            fps = 1.0 / float(np.median(steps))
            if 0.5 <= fps <= 1000:
                return round(fps, 3)
    return float(default)


# ---------------------------------------------------------------------------- encoding
def even_size(frames: np.ndarray) -> np.ndarray:
    """Frames padded with black to an even width and height (yuv420p needs both even)."""
    t, h, w, c = frames.shape
    if h % 2 == 0 and w % 2 == 0:
        return frames
    out = np.zeros((t, h + h % 2, w + w % 2, c), np.uint8)
    out[:, :h, :w] = frames
    return out


def encode_clip(frames: np.ndarray, fps: float) -> bytes:
    """MP4 (H.264, yuv420p) bytes of (T, H, W, 3) uint8 frames at `fps`: what the app plays and exports write."""
    from . import video_codec

    arr = to_rgb(frames)
    if not len(arr):
        raise VideoExportError("a video needs at least one frame")
    tmp = Path(tempfile.gettempdir()) / f"sime-clip-{uuid.uuid4().hex}.mp4"
    try:
        video_codec.encode_video(tmp, even_size(arr), _fps_fraction(fps))
        return tmp.read_bytes()
    finally:
        tmp.unlink(missing_ok=True)


def _fps_fraction(fps: float) -> Any:
    from fractions import Fraction

    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise VideoExportError(f"fps must be a positive number, got {fps!r}")
    return Fraction(fps).limit_denominator(1001)


def grid_frames(clips: Sequence[np.ndarray], columns: int | None = None, gap: int = GRID_GAP) -> np.ndarray:
    """Clips tiled in a grid (row-major), each held on its last frame until the longest ends; black gaps."""
    if not clips:
        raise VideoExportError("a grid needs at least one clip")
    clips = [to_rgb(c) for c in clips]
    cols = max(1, min(len(clips), columns or math.ceil(math.sqrt(len(clips)))))
    rows = math.ceil(len(clips) / cols)
    tile_h = max(c.shape[1] for c in clips)
    tile_w = max(c.shape[2] for c in clips)
    length = max(len(c) for c in clips)
    out = np.zeros((length, rows * tile_h + (rows - 1) * gap, cols * tile_w + (cols - 1) * gap, 3), np.uint8)
    for i, clip in enumerate(clips):
        if not len(clip):
            continue
        r, c = divmod(i, cols)
        y = r * (tile_h + gap) + (tile_h - clip.shape[1]) // 2
        x = c * (tile_w + gap) + (tile_w - clip.shape[2]) // 2
        held = np.concatenate([clip, np.repeat(clip[-1:], length - len(clip), axis=0)]) if len(clip) < length else clip
        out[:, y:y + clip.shape[1], x:x + clip.shape[2]] = held
    return out


# ---------------------------------------------------------------------------- cached clips
def clip_settings(store: Any, episode_id: str, camera: str, fps: float,
                  renderer: StateRenderer | None = None) -> dict[str, Any]:
    """What a clip depends on besides episode, frames and camera (part of its cache key)."""
    row = store.episode(episode_id)
    settings: dict[str, Any] = {"format": CLIP_FORMAT, "fps": float(fps)}
    if camera in row["keys"]:
        settings["source"] = "stored"
    else:
        settings.update(source="rendered", renderer=getattr(renderer, "name", None), xml=row.get("model_xml_sha"))
    return settings


def clip_key(store: Any, episode_id: str, camera: str, ranges: Sequence[Range] | None, fps: float,
             renderer: StateRenderer | None = None) -> str:
    """Media-cache key of one episode clip."""
    return media_key(episode_id, ranges, camera, clip_settings(store, episode_id, camera, fps, renderer))


def cache_put(cache: MediaCache, kind: str, key: str, ext: str, data: bytes) -> None:
    """Keep `data` in the media cache when it can be written (a read-only store only loses the cache)."""
    try:
        cache.put_bytes(kind, key, ext, data)
    except OSError as exc:
        log.warning("media cache %s not written (%s: %s); the clip is made again next time", cache.root,
                    type(exc).__name__, exc)


def episode_clip(store: Any, episode_id: str, camera: str, *, ranges: Sequence[Range] | None = None,
                 fps: float | None = None, renderer: StateRenderer | None = None,
                 cache: MediaCache | None = None) -> bytes:
    """MP4 bytes of one camera of an episode over `ranges`: from the media cache, else encoded now and cached."""
    cache = cache or MediaCache.for_store(store)
    fps = episode_fps(store, episode_id) if fps is None else float(fps)
    key = clip_key(store, episode_id, camera, ranges, fps, renderer)
    found = cache.read("clips", key, "mp4")
    if found is not None:
        return found
    frames = episode_frames(store, episode_id, camera, ranges=ranges, renderer=renderer)
    data = encode_clip(frames, fps)
    cache_put(cache, "clips", key, "mp4", data)
    return data


# ---------------------------------------------------------------------------- export
@dataclass
class ExportVideoResult:
    """What `export_video` wrote: the mp4 files, the episodes in them and the frames per file."""

    paths: list[Path] = field(default_factory=list)
    episodes: list[str] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    camera: str = ""
    fps: float = DEFAULT_FPS


def _resolve_target(store: Any, target: str) -> tuple[str, dict[str, list[Range] | None]]:
    """(kind 'version'|'episode', {episode_id: kept ranges or None}) of a version name or an episode id."""
    try:
        version = store.version(target)
    except (VersionNotFoundError, ValueError, StoreError):
        version = None
    if version is not None:
        return "version", {eid: list(r) for eid, r in version.ranges().items()}
    try:
        store.episode(target)
    except EpisodeNotFoundError:
        raise VideoExportError(f"{target!r} is neither a version nor an episode id of store {store.location} "
                               "(list them with `sime-data versions list` / `sime-data sql`)") from None
    return "episode", {target: None}


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", text).strip("._") or "video"


def _publish(data: bytes, path: Path, overwrite: bool) -> None:
    """Write bytes to `path` through a temp file beside it and an atomic rename."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    tmp = path.with_name(f".{path.name}.sime-export-{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def export_video(store: Any, target: str, out_dir: str | os.PathLike, *, grid: bool = False,
                 fps: float | None = None, camera: str | None = None, columns: int | None = None,
                 renderer: StateRenderer | None = None, overwrite: bool = False, max_grid: int = 64,
                 progress: bool = True) -> ExportVideoResult:
    """Write mp4s of a version's episodes (their kept frames) or of one episode into `out_dir`.

    One file per episode, `<episode_id>.<camera>.mp4`; with `grid`, one file `<target>.grid.<camera>.mp4`
    showing the episodes tiled row-major (at most `max_grid`), each held on its last frame, with a
    `.json` beside it naming the episode of each tile. `camera` defaults to the first camera of the first
    episode; `fps` to the first episode's own rate. Episodes without that camera or states are refused
    before anything is written. Files appear only when complete; existing files are kept unless `overwrite`.
    """
    kind, plan = _resolve_target(store, target)
    episodes = list(plan)
    if not episodes:
        raise VideoExportError(f"version {target!r} holds no episodes")
    if grid and len(episodes) > max_grid:
        raise VideoExportError(f"a grid of {len(episodes)} episodes is too large (at most {max_grid}); export a "
                               "smaller version or one file per episode")
    cameras = episode_cameras(store, episodes[0], renderer)
    if camera is None:
        if not cameras:
            raise VideoExportError(
                f"episode {episodes[0]} stores no camera frames" + (
                    ", and no simulator renderer is available to render them from its states (install the sim "
                    "extra: pip install -e '.[sim]')" if renderer is None else
                    f", and renderer {renderer.name!r} cannot render task {store.episode(episodes[0])['task']!r}"))
        camera = cameras[0]
    missing = [e for e in episodes if camera not in episode_cameras(store, e, renderer)]
    if missing:
        raise VideoExportError(f"{len(missing)} episode(s) have no camera {camera!r} to show (stored or rendered), "
                               f"e.g. {missing[0]}; pick another with --camera (this one has {cameras})")
    rate = episode_fps(store, episodes[0]) if fps is None else float(fps)
    _fps_fraction(rate)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cam = camera.removeprefix("obs/")
    result = ExportVideoResult(camera=camera, fps=rate)
    if grid:
        target_path = out / f"{_safe_name(target)}.grid.{_safe_name(cam)}.mp4"
        if target_path.exists() and not overwrite:
            raise FileExistsError(f"{target_path} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
        clips = [episode_frames(store, e, camera, ranges=plan[e], renderer=renderer)
                 for e in tqdm(episodes, desc=f"frames for {target_path.name}", unit="episode", disable=not progress)]
        frames = grid_frames(clips, columns)
        _publish(encode_clip(frames, rate), target_path, overwrite)
        cols = max(1, min(len(clips), columns or math.ceil(math.sqrt(len(clips)))))
        tiles = [{"episode_id": e, "row": i // cols, "column": i % cols, "frames": len(c)}
                 for i, (e, c) in enumerate(zip(episodes, clips))]
        _publish(json.dumps({"source": target, "kind": kind, "camera": camera, "fps": rate, "columns": cols,
                             "tiles": tiles}, indent=1).encode(), target_path.with_suffix(".json"), True)
        result.paths.append(target_path)
        result.episodes = episodes
        result.frames.append(len(frames))
        log.info("wrote %s (%d episodes, %d frames)", target_path, len(episodes), len(frames))
        return result
    targets = {e: out / f"{_safe_name(e)}.{_safe_name(cam)}.mp4" for e in episodes}
    taken = [p for p in targets.values() if p.exists()]
    if taken and not overwrite:
        raise FileExistsError(f"{len(taken)} file(s) already exist, e.g. {taken[0]}; pass overwrite=True "
                              "(CLI: --overwrite) to replace them")
    cache = MediaCache.for_store(store)
    for episode_id in tqdm(episodes, desc=f"export {target}", unit="episode", disable=not progress):
        clip = episode_clip(store, episode_id, camera, ranges=plan[episode_id], fps=rate, renderer=renderer,
                            cache=cache)
        _publish(clip, targets[episode_id], overwrite)
        result.paths.append(targets[episode_id])
        result.episodes.append(episode_id)
        length = int(store.episode(episode_id)["length"])
        result.frames.append(len(frame_indices(length, plan[episode_id])))
    log.info("wrote %d video(s) of %s to %s", len(result.paths), target, out)
    return result

