"""Per-key statistics (min, max, mean, std) over a version's kept frames, for normalisation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import numpy as np

from .version_data import load_version_arrays, resolve_keys, version_key_specs
from .segment import KeySpec

if TYPE_CHECKING:  # pragma: no cover
    from .store import Store
    from .versions import Version

STAT_NAMES = ("min", "max", "mean", "std")


def image_channel_axis(shape: tuple[int, ...]) -> int | None:
    """Channel axis of an image-like per-step shape: last if it has <= 4 entries, else first if so, else None."""
    if len(shape) < 2:
        return None
    if len(shape) == 2:  # single-channel (H, W)
        return None
    if shape[-1] <= 4:
        return len(shape) - 1
    if shape[0] <= 4:
        return 0
    return len(shape) - 1


class _Moments:
    """Streaming count/mean/M2/min/max per feature column (Chan et al. parallel merge)."""

    def __init__(self, width: int) -> None:
        self.count = 0
        self.mean = np.zeros(width, dtype=np.float64)
        self.m2 = np.zeros(width, dtype=np.float64)
        self.min = np.full(width, np.inf)
        self.max = np.full(width, -np.inf)

    def update(self, block: np.ndarray) -> None:
        """Add rows of a (n, width) block."""
        n = block.shape[0]
        if n == 0:
            return
        block = block.astype(np.float64, copy=False)
        mean = block.mean(axis=0)
        m2 = ((block - mean) ** 2).sum(axis=0)
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * n / total)
        self.count = total
        np.minimum(self.min, block.min(axis=0), out=self.min)
        np.maximum(self.max, block.max(axis=0), out=self.max)

    def result(self) -> dict[str, np.ndarray]:
        """min, max, mean and population std of everything added."""
        std = np.sqrt(np.maximum(self.m2 / max(self.count, 1), 0.0))
        return {"min": self.min.copy(), "max": self.max.copy(), "mean": self.mean.copy(), "std": std}


def _as_rows(block: np.ndarray, spec: KeySpec, per_channel: bool) -> np.ndarray:
    """Reshape a (n, *shape) block to (rows, features): per feature dim, or per channel for images."""
    if not per_channel:
        return block.reshape(block.shape[0], -1)
    axis = image_channel_axis(spec.shape)
    if axis is None:
        return block.reshape(-1, 1)
    moved = np.moveaxis(block, axis + 1, -1)
    return moved.reshape(-1, moved.shape[-1])


def version_stats(
    store: "Store",
    version: "str | Version",
    keys: Iterable[str] | None = None,
    *,
    episodes: Iterable[str] | None = None,
    block_frames: int = 256,
) -> dict[str, dict[str, np.ndarray]]:
    """min/max/mean/std (float64, population std) per key over the version's kept frames.

    Low-dim keys give arrays of the per-step shape (one value per feature dim); image keys
    (``KeySpec.is_image`` with 2+ dims) give one value per channel (channel axis found by
    `image_channel_axis`; single-channel (H, W) images give shape (1,)) and are read streaming,
    ``block_frames`` frames at a time. Default keys: every numeric key all episodes have.
    """
    available = version_key_specs(store, version, episodes)
    if keys is None:
        wanted = [k for k, s in available.items() if np.dtype(s.dtype).kind in "biuf"]
    else:
        wanted = resolve_keys(keys, available)
        bad = [k for k in wanted if np.dtype(available[k].dtype).kind not in "biuf"]
        if bad:
            raise TypeError(f"key(s) {bad} are not numeric; stats need bool, integer or float data")
    data = load_version_arrays(store, version, wanted, episodes=episodes, image_cache_mb=0)
    out: dict[str, dict[str, np.ndarray]] = {}
    for key in wanted:
        spec = data.specs[key]
        per_channel = spec.is_image and len(spec.shape) >= 2
        if key in data.data and not per_channel:
            x = data.data[key].astype(np.float64, copy=False)
            out[key] = {"min": x.min(axis=0), "max": x.max(axis=0), "mean": x.mean(axis=0), "std": x.std(axis=0)}
            continue
        width = _as_rows(np.zeros((1, *spec.shape), dtype=np.dtype(spec.dtype)), spec, per_channel).shape[1]
        moments = _Moments(width)
        for block in data.iter_blocks(key, block_frames=block_frames):
            moments.update(_as_rows(block, spec, per_channel))
        result = moments.result()
        if not per_channel:
            result = {name: value.reshape(spec.shape) for name, value in result.items()}
        out[key] = result
    return out
