"""A version's kept frames loaded for training: low-dim keys in contiguous buffers, image keys read on demand.

A version is a list of kept frame ranges ``(episode_id, frame_start, frame_stop)``. The loader
(`load_version_arrays`) concatenates every kept range into one contiguous buffer per key, with
``range_ends`` marking where each range stops (like a replay buffer's ``episode_ends``; here the
unit is a kept range, so an episode trimmed into two pieces is two sequences). Image keys stay in
Zarr and are read through a small LRU cache of frames (`sime_data.frame_cache`).

This module never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from .errors import EmptyVersionError, StoreError, UnknownKeyError
from .frame_cache import DEFAULT_IMAGE_CACHE_MB, FrameCache
from .segment import KeySpec, read_blocks

if TYPE_CHECKING:  # pragma: no cover
    from .store import Store
    from .versions import Version


@dataclass(eq=False)
class VersionData:
    """Kept frames of a version: per-key contiguous buffers (low-dim) plus lazy Zarr access (images).

    Buffer frame ``g`` belongs to kept range ``r`` where ``range_starts[r] <= g < range_ends[r]``;
    it is frame ``range_frame_start[r] + g - range_starts[r]`` of episode ``range_episode_ids[r]``.
    """

    version: str
    specs: dict[str, KeySpec]
    data: dict[str, np.ndarray]
    range_episode_ids: np.ndarray  # (R,) object: episode id of each kept range
    range_frame_start: np.ndarray  # (R,) int64: first kept frame, relative to the episode
    range_frame_stop: np.ndarray  # (R,) int64: one past the last kept frame, relative to the episode
    range_segments: np.ndarray  # (R,) object: segment holding the episode's arrays
    range_seg_start: np.ndarray  # (R,) int64: segment frame of the range's first frame
    range_episode_length: np.ndarray  # (R,) int64: full length of the range's episode
    range_ends: np.ndarray  # (R,) int64: cumulative kept lengths (buffer end of each range)
    store: "Store | None" = field(default=None, repr=False)
    image_cache_mb: float = DEFAULT_IMAGE_CACHE_MB
    image_read_frames: int | None = None
    image_shard_frames: int = 64
    _store_location: str | None = field(default=None, repr=False)
    _caches: dict[str, FrameCache] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.store is not None and self._store_location is None:
            self._store_location = self.store.location

    # -------------------------------------------------------------- layout
    @property
    def keys(self) -> list[str]:
        """Every key this data gives access to (in memory or lazily read)."""
        return list(self.specs)

    @property
    def lazy_keys(self) -> list[str]:
        """Keys read from Zarr on demand (not held in memory)."""
        return [k for k in self.specs if k not in self.data]

    @property
    def n_ranges(self) -> int:
        """Number of kept frame ranges."""
        return len(self.range_ends)

    @property
    def n_frames(self) -> int:
        """Kept frames in total (length of every in-memory buffer)."""
        return int(self.range_ends[-1]) if len(self.range_ends) else 0

    @property
    def range_starts(self) -> np.ndarray:
        """(R,) buffer index of each range's first frame."""
        starts = np.zeros(len(self.range_ends), dtype=np.int64)
        starts[1:] = self.range_ends[:-1]
        return starts

    @property
    def range_lengths(self) -> np.ndarray:
        """(R,) kept frames per range."""
        return self.range_frame_stop - self.range_frame_start

    def ranges(self) -> pd.DataFrame:
        """One row per kept range: episode_id, frame_start/stop, segment, seg_start, buffer_start/stop."""
        return pd.DataFrame({
            "episode_id": self.range_episode_ids,
            "frame_start": self.range_frame_start,
            "frame_stop": self.range_frame_stop,
            "segment": self.range_segments,
            "seg_start": self.range_seg_start,
            "buffer_start": self.range_starts,
            "buffer_stop": self.range_ends,
        })

    def range_of(self, frames: np.ndarray) -> np.ndarray:
        """Kept-range index of each buffer frame index."""
        return np.searchsorted(self.range_ends, np.asarray(frames, dtype=np.int64), side="right")

    def episode_frames(self, frames: np.ndarray) -> np.ndarray:
        """Episode-relative frame index of each buffer frame index."""
        frames = np.asarray(frames, dtype=np.int64)
        r = self.range_of(frames)
        return self.range_frame_start[r] + frames - self.range_starts[r]

    def select(self, episodes: Sequence[str]) -> "VersionData":
        """The kept ranges of some episodes (in this data's order) as their own VersionData, buffers copied.

        Gives the same buffers and layout as ``load_version_arrays(..., episodes=episodes)`` would read.
        """
        wanted = {str(e) for e in episodes}
        unknown = sorted(wanted - set(self.range_episode_ids.tolist()))
        if unknown:
            raise KeyError(f"episode(s) {unknown[:5]} are not in version {self.version!r}")
        keep = np.flatnonzero(np.isin(self.range_episode_ids.astype(str), list(wanted)))
        if not len(keep):
            raise EmptyVersionError(f"version {self.version!r} has no frames among the selected episodes")
        starts, ends = self.range_starts[keep], self.range_ends[keep]
        buffers = {key: np.concatenate([values[a:b] for a, b in zip(starts, ends)]) for key, values in self.data.items()}
        return VersionData(
            version=self.version, specs=dict(self.specs), data=buffers,
            range_episode_ids=self.range_episode_ids[keep], range_frame_start=self.range_frame_start[keep],
            range_frame_stop=self.range_frame_stop[keep], range_segments=self.range_segments[keep],
            range_seg_start=self.range_seg_start[keep], range_episode_length=self.range_episode_length[keep],
            range_ends=np.cumsum(ends - starts).astype(np.int64), store=self.store, image_cache_mb=self.image_cache_mb,
            image_read_frames=self.image_read_frames, image_shard_frames=self.image_shard_frames,
            _store_location=self._store_location)

    # -------------------------------------------------------------- reading
    def _get_store(self) -> "Store":
        if self.store is None:
            if self._store_location is None:
                raise StoreError("this VersionData has no store to read image frames from")
            from .store import open_store

            self.store = open_store(self._store_location)
        return self.store

    def _cache(self, key: str) -> FrameCache:
        cache = self._caches.get(key)
        if cache is None:
            spec = self.specs[key]
            frame_bytes = max(1, int(np.prod(spec.shape, dtype=np.int64)) * np.dtype(spec.dtype).itemsize)
            cache = FrameCache(int(self.image_cache_mb * 2**20) // frame_bytes)
            self._caches[key] = cache
        return cache

    def cache_info(self) -> dict[str, dict[str, int]]:
        """Per lazy key: cached frames, capacity, hits and misses."""
        return {k: {"frames": len(c), "capacity": c.capacity, "hits": c.hits, "misses": c.misses}
                for k, c in self._caches.items()}

    def read_frames(self, key: str, frames: np.ndarray) -> np.ndarray:
        """Values of `key` at buffer frame indices of any shape; shape frames.shape + per-step shape."""
        if key not in self.specs:
            raise UnknownKeyError(f"{key!r} was not loaded; loaded keys: {self.keys}")
        frames = np.asarray(frames, dtype=np.int64)
        if key in self.data:
            return self.data[key][frames]
        spec = self.specs[key]
        uniq, inverse = np.unique(frames.ravel(), return_inverse=True)
        if len(uniq) and (uniq[0] < 0 or uniq[-1] >= self.n_frames):
            raise IndexError(f"frame index out of range [0, {self.n_frames})")
        out = np.empty((len(uniq), *spec.shape), dtype=np.dtype(spec.dtype))
        cache = self._cache(key)
        missing: list[int] = []
        for j, g in enumerate(uniq.tolist()):
            value = cache.get((key, g))
            if value is None:
                missing.append(j)
            else:
                out[j] = value
        if missing:
            self._fetch(key, uniq, np.asarray(missing, dtype=np.int64), out, cache)
        return out[inverse].reshape(frames.shape + tuple(spec.shape))

    def _fetch(self, key: str, uniq: np.ndarray, missing: np.ndarray, out: np.ndarray, cache: FrameCache) -> None:
        """Read missing frames from Zarr in aligned blocks of `image_read_frames` (read-ahead), concurrently."""
        store = self._get_store()
        g = uniq[missing]
        r = self.range_of(g)
        starts = self.range_starts[r]
        seg_base = self.range_seg_start[r]
        seg_frame = seg_base + g - starts
        step = self.image_read_frames
        if step is None:  # whole shards (cheapest per frame) when they stay cached, else single frames
            step = self.image_shard_frames if cache.capacity >= self.n_frames else 1
        step = max(1, int(step))
        aligned = (seg_frame // step) * step
        seg_lo = np.maximum(aligned, seg_base)  # blocks never leave the kept range
        seg_hi = np.minimum(aligned + step, seg_base + self.range_ends[r] - starts)
        buf_lo = starts + seg_lo - seg_base
        blocks: dict[int, tuple[int, int, int]] = {}  # buffer start -> (range, seg lo, seg hi)
        for i in range(len(g)):
            blocks.setdefault(int(buf_lo[i]), (int(r[i]), int(seg_lo[i]), int(seg_hi[i])))
        order = list(blocks)
        arrays = read_blocks([(store.array(self.range_segments[blocks[b][0]], key), blocks[b][1], blocks[b][2])
                              for b in order])
        by_start = dict(zip(order, arrays))
        for b, block in by_start.items():
            for k in range(len(block)):
                cache.put((key, b + k), np.array(block[k]))
        for i, j in enumerate(missing.tolist()):
            b = int(buf_lo[i])
            out[j] = by_start[b][int(g[i]) - b]

    def iter_blocks(self, key: str, block_frames: int = 256, concurrency: int = 8) -> Iterator[np.ndarray]:
        """Yield every kept frame of `key` in order, as arrays of at most `block_frames` frames."""
        if key not in self.specs:
            raise UnknownKeyError(f"{key!r} was not loaded; loaded keys: {self.keys}")
        if key in self.data:
            buffer = self.data[key]
            for lo in range(0, len(buffer), block_frames):
                yield buffer[lo: lo + block_frames]
            return
        store = self._get_store()
        pieces = []
        for seg, start, length in zip(self.range_segments, self.range_seg_start, self.range_lengths):
            for lo in range(int(start), int(start + length), block_frames):
                pieces.append((store.array(seg, key), lo, min(lo + block_frames, int(start + length))))
        for i in range(0, len(pieces), concurrency):
            yield from read_blocks(pieces[i: i + concurrency])

    # -------------------------------------------------------------- pickling (DataLoader workers)
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["store"] = None  # reopened lazily from _store_location in the other process
        state["_caches"] = {}
        return state


def resolve_version(store: "Store", version: "str | Version") -> "Version":
    """The version itself, or the store's version of that name."""
    from .versions import Version

    if isinstance(version, Version):
        return version
    return store.version(version)


def version_key_specs(store: "Store", version: "str | Version", episodes: Iterable[str] | None = None) -> dict[str, KeySpec]:
    """Array keys that every episode of the version has, with their per-step spec."""
    table = _episode_layout(store, resolve_version(store, version), episodes)
    return _common_specs(store, table["segment"].unique().tolist())


def _episode_layout(store: "Store", version: "Version", episodes: Iterable[str] | None) -> pd.DataFrame:
    """The version's manifest joined with each episode's segment, seg_start and length."""
    manifest = version.manifest[["episode_id", "frame_start", "frame_stop"]]
    if episodes is not None:
        wanted = set(str(e) for e in episodes)
        unknown = sorted(wanted - set(manifest["episode_id"]))
        if unknown:
            raise KeyError(f"episode(s) {unknown[:5]} are not in version {version.name!r}")
        manifest = manifest[manifest["episode_id"].isin(wanted)]
    if manifest.empty:
        raise EmptyVersionError(
            f"version {version.name!r} has no frames" + (" among the selected episodes" if episodes is not None else "")
        )
    rows = store.episode_columns(["episode_id", "segment", "seg_start", "length"]).to_pandas()
    table = manifest.merge(rows, on="episode_id", how="left", sort=False)
    if table["segment"].isna().any():  # pragma: no cover - versions are validated when made
        missing = table.loc[table["segment"].isna(), "episode_id"].tolist()
        raise StoreError(f"version {version.name!r} refers to episodes missing from the store: {missing[:5]}")
    return table.reset_index(drop=True)


def _common_specs(store: "Store", segments: Sequence[str]) -> dict[str, KeySpec]:
    specs: dict[str, KeySpec] | None = None
    for seg in segments:
        seg_specs = store.segment_keys(seg)
        if specs is None:
            specs = dict(seg_specs)
            continue
        for key in list(specs):
            if key not in seg_specs:
                del specs[key]
            elif seg_specs[key] != specs[key]:
                raise ValueError(
                    f"key {key!r} has per-step shape {seg_specs[key].shape} dtype {np.dtype(seg_specs[key].dtype)} "
                    f"in segment {seg} but {specs[key].shape} {np.dtype(specs[key].dtype)} elsewhere in the version"
                )
    return dict(sorted((specs or {}).items()))


def resolve_keys(keys: Iterable[str], available: Iterable[str]) -> list[str]:
    """Map requested keys to store keys ('object' -> 'obs/object' when only that exists); KeyError if unknown."""
    available = list(available)
    resolved: list[str] = []
    unknown: list[str] = []
    for key in keys:
        if key in available:
            name = key
        elif f"obs/{key}" in available:
            name = f"obs/{key}"
        else:
            unknown.append(key)
            continue
        if name not in resolved:
            resolved.append(name)
    if unknown:
        raise UnknownKeyError(f"unknown key(s) {unknown}; the version's episodes all have: {sorted(available)}")
    return resolved


def _coalesce(starts: np.ndarray, stops: np.ndarray, max_gap: int) -> list[tuple[int, int, list[int]]]:
    """Group ranges (indices) into read spans whose gaps are at most `max_gap` frames."""
    spans: list[tuple[int, int, list[int]]] = []
    for i in np.argsort(starts, kind="stable").tolist():
        s, t = int(starts[i]), int(stops[i])
        if spans and s - spans[-1][1] <= max_gap:
            lo, hi, members = spans[-1]
            members.append(i)
            spans[-1] = (lo, max(hi, t), members)
        else:
            spans.append((s, t, [i]))
    return spans


def load_version_arrays(
    store: "Store",
    version: "str | Version",
    keys: Iterable[str] | None = None,
    *,
    lowdim_only: bool | None = None,
    episodes: Iterable[str] | None = None,
    image_cache_mb: float = DEFAULT_IMAGE_CACHE_MB,
    image_read_frames: int | None = None,
) -> VersionData:
    """Load the version's kept frames of `keys` (default: all) into contiguous per-key buffers.

    ``lowdim_only=None`` (default) loads low-dim keys and leaves image keys (``KeySpec.is_image``)
    in Zarr, read on demand through an LRU frame cache of ``image_cache_mb``. A miss reads an aligned
    block of ``image_read_frames`` frames (clipped to the kept range) and caches them all; the default
    reads whole shards (about 6x cheaper per frame than single frames, 10x dearer per read) when the
    cache can hold every kept frame of the key, else single frames. ``False`` loads image
    keys into memory too; ``True`` refuses image keys. ``episodes`` restricts to some episode ids
    (e.g. a train/validation split). Each segment's needed frames are read once, concurrently.
    """
    ver = resolve_version(store, version)
    table = _episode_layout(store, ver, episodes)
    segments = table["segment"].unique().tolist()
    available = _common_specs(store, segments)
    wanted = list(available) if keys is None else resolve_keys(keys, available)
    specs = {k: available[k] for k in wanted}
    images = [k for k in wanted if specs[k].is_image]
    if lowdim_only and images:
        raise ValueError(f"image key(s) {images} requested with lowdim_only=True")
    in_memory = [k for k in wanted if lowdim_only is False or not specs[k].is_image]

    frame_start = table["frame_start"].to_numpy(np.int64)
    frame_stop = table["frame_stop"].to_numpy(np.int64)
    seg_start = table["seg_start"].to_numpy(np.int64) + frame_start
    lengths = frame_stop - frame_start
    range_ends = np.cumsum(lengths)
    range_starts = range_ends - lengths
    total = int(range_ends[-1])
    range_segments = table["segment"].to_numpy(object)

    data: dict[str, np.ndarray] = {
        k: np.empty((total, *specs[k].shape), dtype=np.dtype(specs[k].dtype)) for k in in_memory
    }
    if in_memory:
        max_gap = int(store.root_meta.align_frames)
        plan: list[tuple[str, int, list[int]]] = []  # key, span lo, member ranges
        reads = []
        for seg in segments:
            members = np.flatnonzero(range_segments == seg)
            for lo, hi, idx in _coalesce(seg_start[members], seg_start[members] + lengths[members], max_gap):
                ranges = members[idx].tolist()
                for key in in_memory:
                    reads.append((store.array(seg, key), lo, hi))
                    plan.append((key, lo, ranges))
        blocks = read_blocks(reads)
        for (key, lo, ranges), block in zip(plan, blocks):
            buffer = data[key]
            for r in ranges:
                a = int(seg_start[r]) - lo
                buffer[range_starts[r]: range_ends[r]] = block[a: a + lengths[r]]
    return VersionData(
        version=ver.name,
        specs=specs,
        data=data,
        range_episode_ids=table["episode_id"].to_numpy(object),
        range_frame_start=frame_start,
        range_frame_stop=frame_stop,
        range_segments=range_segments,
        range_seg_start=seg_start,
        range_episode_length=table["length"].to_numpy(np.int64),
        range_ends=range_ends.astype(np.int64),
        store=store,
        image_cache_mb=image_cache_mb,
        image_read_frames=image_read_frames,
        image_shard_frames=int(store.root_meta.image_shard_frames),
    )


def split_episodes(episode_ids: Sequence[str], val_ratio: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """Deterministic train/validation split of episode ids (at least one train episode kept)."""
    ids = list(dict.fromkeys(episode_ids))
    if not 0.0 <= val_ratio < 1.0:
        raise ValueError(f"val_ratio must be in [0, 1), got {val_ratio}")
    n_val = min(int(round(len(ids) * val_ratio)), max(0, len(ids) - 1))
    if val_ratio > 0 and n_val == 0 and len(ids) > 1:
        n_val = 1
    rng = np.random.default_rng(seed)
    val = set(rng.choice(len(ids), size=n_val, replace=False).tolist()) if n_val else set()
    return [e for i, e in enumerate(ids) if i not in val], [e for i, e in enumerate(ids) if i in val]
