"""Derived media of the episode viewer: filmstrips and playable clips (stored frames or rendered from states).

Clips are encoded by `sime_data.video_export` (the encoder `sime-data export-video` uses) and kept in the
store's media cache (`sime_data.media_cache`), never in versions. A clip rendered from states is made by a
shared background job of the render worker; until it is complete, `episode_clip` returns a clip of the
frames rendered so far (at least `PREVIEW_FRAMES`), so playback starts within seconds and grows.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from sime_data import video_export
from sime_data.media_cache import MediaCache, media_key

from . import render_worker
from .components import Clip
from .frames import EpisodeFrames, to_display

#: Thumbnails in a filmstrip.
FILMSTRIP_FRAMES = 12
#: Frames a partial clip needs before it is offered for playback (one background chunk).
PREVIEW_FRAMES = render_worker.CHUNK_FRAMES
#: Colours of the filmstrip's timeline: kept, removed, current frame.
KEPT_RGB, REMOVED_RGB, CURRENT_RGB = (46, 160, 67), (228, 87, 46), (20, 20, 20)
_PARTIALS: OrderedDict[tuple, bytes] = OrderedDict()
_PARTIALS_LOCK = threading.Lock()

Range = tuple[int, int]


@dataclass(frozen=True)
class ClipState:
    """A clip to play (or None yet), how many of its frames exist, and a note for the user."""

    clip: Clip | None
    ready: int
    total: int
    note: str = ""
    #: True when nothing more will come: the clip is complete, or it cannot be made (the note says why).
    final: bool = True


def filmstrip_indices(length: int, n: int = FILMSTRIP_FRAMES) -> list[int]:
    """Up to `n` frame indices spread evenly over an episode, first and last included."""
    if length <= 0:
        return []
    return sorted({int(round(x)) for x in np.linspace(0, length - 1, min(n, length))})


def filmstrip_images(store: Any, source: EpisodeFrames, camera: str, indices: Sequence[int]) -> np.ndarray:
    """(n, H, W, 3) thumbnails of one camera at `indices` (stored, or rendered behind frame requests)."""
    if source.stored:
        lo, hi = min(indices), max(indices) + 1
        block = store.read_episode(source.episode_id, keys=[camera], start=lo, stop=hi)[camera]
        return video_export.to_rgb(np.asarray(block)[[i - lo for i in indices]])
    images = render_worker.get_service().render(source.task, source.model_xml, source.states[list(indices)], [camera],
                                                priority=render_worker.PRIORITY_STRIP)
    return images[camera]


def compose_filmstrip(thumbs: np.ndarray, indices: Sequence[int], length: int, kept: Sequence[Range] | None,
                      current: int, gap: int = 2, band: int = 10) -> np.ndarray:
    """Thumbnails side by side above a timeline: kept frames green, removed red, the current frame black.

    Thumbnails of removed frames are dimmed, so idle starts and ends cut by the trim window stand out.
    """
    n, h, w, _ = thumbs.shape
    width = n * w + (n - 1) * gap
    out = np.full((h + band + 3, width, 3), 255, np.uint8)
    keep = np.zeros(length, bool)
    for a, b in (kept if kept is not None else [(0, length)]):
        keep[max(0, a):min(length, b)] = True
    for i, (frame, thumb) in enumerate(zip(indices, thumbs)):
        x = i * (w + gap)
        tile = to_display(thumb).astype(np.float32)
        if not keep[frame]:
            tile = tile * 0.35 + np.array(REMOVED_RGB, np.float32) * 0.25
        out[:h, x:x + w] = np.clip(tile, 0, 255).astype(np.uint8)
    columns = np.minimum((np.arange(width) / max(width - 1, 1) * (length - 1)).round().astype(int), length - 1)
    out[h + 3:, :] = np.where(keep[columns][:, None], np.array(KEPT_RGB, np.uint8), np.array(REMOVED_RGB, np.uint8))
    x = int(round(current / max(length - 1, 1) * (width - 1)))
    out[h + 1:, max(0, x - 1):x + 2] = CURRENT_RGB
    return out


def _partial(key: tuple, frames: np.ndarray, fps: float) -> bytes:
    """An mp4 of the frames rendered so far, encoded once per (clip, frame count) for every session."""
    with _PARTIALS_LOCK:
        found = _PARTIALS.get(key)
    if found is not None:
        return found
    data = video_export.encode_clip(frames, fps)
    with _PARTIALS_LOCK:
        _PARTIALS[key] = data
        while len(_PARTIALS) > 16:
            _PARTIALS.popitem(last=False)
    return data


def _even(h: int, w: int) -> tuple[int, int]:
    return h + h % 2, w + w % 2


def _stored_size(store: Any, episode_id: str, camera: str) -> tuple[int, int]:
    shape = tuple(store.episode_keys(episode_id)[camera].shape)
    return _even(int(shape[0]), int(shape[1]))


def _job(source: EpisodeFrames, camera: str, key: str) -> render_worker.RenderJob:
    assert source.states is not None
    return render_worker.get_service().job(key, source.task, source.model_xml, source.states, camera)


def episode_clip(store: Any, source: EpisodeFrames, camera: str) -> ClipState:
    """The whole episode as a clip of one camera: from the media cache, encoded now, or growing as it renders."""
    fps = video_export.episode_fps(store, source.episode_id)
    total = source.length
    cache = MediaCache.for_store(store)
    if source.stored:
        data = video_export.episode_clip(store, source.episode_id, camera, fps=fps, cache=cache)
        size = _stored_size(store, source.episode_id, camera)
        return ClipState(Clip(data, fps, total, size=size), total, total)
    service = render_worker.get_service()
    size = (service.size, service.size)
    key = video_export.clip_key(store, source.episode_id, camera, None, fps, service)
    cached = cache.read("clips", key, "mp4")
    if cached is not None:
        return ClipState(Clip(cached, fps, total, size=size), total, total)
    job = _job(source, camera, key)
    if job.error:
        return ClipState(None, 0, total, f"Rendering the video failed: {job.error}", final=True)
    if job.done:
        data = video_export.encode_clip(job.ready(), fps)
        video_export.cache_put(cache, "clips", key, "mp4", data)
        return ClipState(Clip(data, fps, total, size=size), total, total)
    ready = job.done_upto
    if ready < min(PREVIEW_FRAMES, total):
        return ClipState(None, ready, total, f"rendering the video from the simulator states: {ready} of {total} "
                                             "frames ...", final=False)
    data = _partial((key, ready), job.ready(), fps)
    return ClipState(Clip(data, fps, ready, size=size), ready, total,
                     f"rendered {ready} of {total} frames so far; the video grows as the rest is rendered",
                     final=False)


def shared_cameras(sources: Sequence[EpisodeFrames]) -> list[list[str]]:
    """Cameras every source has, by name ('obs/agentview_image' stored = 'agentview_image' rendered): for each
    such camera, the key of it in each source."""
    def short(key: str) -> str:
        return key.removeprefix("obs/")

    names = [short(c) for c in sources[0].cameras if all(short(c) in map(short, s.cameras) for s in sources[1:])]
    return [[next(c for c in s.cameras if short(c) == name) for s in sources] for name in names]


def compare_clip(store: Any, sources: Sequence[EpisodeFrames], cameras: Sequence[str]) -> ClipState:
    """Episodes side by side in one clip (each held on its last frame), as far as their frames exist.

    `cameras` names the camera key to show of each source (see `shared_cameras`)."""
    fps = video_export.episode_fps(store, sources[0].episode_id)
    total = max(s.length for s in sources)
    cache = MediaCache.for_store(store)
    service = render_worker.get_service()
    settings = {"format": video_export.CLIP_FORMAT, "fps": fps, "grid": len(sources), "renderer": service.name,
                "xml": [s.model_xml is not None and render_worker.xml_digest(s.model_xml) for s in sources]}
    key = media_key("+".join(s.episode_id for s in sources), None, "+".join(cameras), settings)
    sizes = [_stored_size(store, s.episode_id, c) if s.stored else (service.size, service.size)
             for s, c in zip(sources, cameras)]
    tile_w = max(w for _, w in sizes)
    size = _even(max(h for h, _ in sizes), len(sources) * tile_w + video_export.GRID_GAP * (len(sources) - 1))
    cached = cache.read("grids", key, "mp4")
    if cached is not None:
        return ClipState(Clip(cached, fps, total, size=size), total, total)
    parts, ready = [], []
    for source, camera in zip(sources, cameras):
        if source.stored:
            parts.append(video_export.episode_frames(store, source.episode_id, camera))
            ready.append(source.length)
            continue
        job = _job(source, camera, video_export.clip_key(store, source.episode_id, camera, None, fps, service))
        if job.error:
            return ClipState(None, 0, total, f"Rendering the video failed: {job.error}", final=True)
        parts.append(job.ready())
        ready.append(job.done_upto)
    complete = all(r >= s.length for r, s in zip(ready, sources))
    shown = total if complete else min(ready)
    if shown < min(PREVIEW_FRAMES, total):
        return ClipState(None, shown, total, f"rendering both episodes from their states: {shown} of {total} "
                                             "frames ...", final=False)
    frames = video_export.grid_frames([p[:shown] for p in parts], columns=len(sources))
    if complete:
        data = video_export.encode_clip(frames, fps)
        video_export.cache_put(cache, "grids", key, "mp4", data)
        return ClipState(Clip(data, fps, total, size=size), total, total)
    data = _partial((key, shown), frames, fps)
    return ClipState(Clip(data, fps, shown, size=size), shown, total,
                     f"rendered {shown} of {total} frames so far; the video grows as the rest is rendered",
                     final=False)
