"""Training windows over a version's kept ranges, with Diffusion-Policy edge padding.

`SequenceSampler` indexes every fixed-length window of ``horizon`` frames in every kept range
of a `VersionData` (see `sime_data.version_data`: low-dim data loaded into memory once, images read on
demand), with edge padding (the first/last frame repeated) as in Diffusion Policy: a window may start up
to ``pad_before`` frames before a range and end up to ``pad_after`` frames after it, and no window
ever crosses a trim cut. A sample holds the first ``n_obs_steps`` frames of each observation key and
all ``horizon`` actions (the window starts at the first observation frame). `SequenceSampler.sample_batch`
is the fast path: one fancy-indexing gather per key for a whole batch.

`VersionData`, `load_version_arrays`, `split_episodes` and friends are importable from here too.
This module never imports torch; see `sime_data.torch_dataset` for the torch wrapper.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import EmptyVersionError, UnknownKeyError
from .frame_cache import DEFAULT_IMAGE_CACHE_MB
from .segment import KeySpec
from .version_data import (
    VersionData,
    load_version_arrays,
    resolve_keys,
    resolve_version,
    split_episodes,
    version_key_specs,
)

if TYPE_CHECKING:  # pragma: no cover
    from .store import Store
    from .versions import Version

__all__ = ["DEFAULT_IMAGE_CACHE_MB", "EmptyVersionError", "SequenceSampler", "UnknownKeyError", "VersionData",
           "load_version_arrays", "resolve_keys", "split_episodes", "version_key_specs"]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- sampling
def _check_lowdim(keys: Iterable[str], specs: Mapping[str, KeySpec]) -> None:
    images = [k for k in keys if specs[k].is_image]
    if images:
        raise ValueError(f"{images} are image-sized keys read on demand; actions and extra keys must be low-dim")


class SequenceSampler:
    """Fixed-length training windows over a version's kept ranges, with Diffusion-Policy edge padding.

    Each kept range of ``L`` frames is its own sequence. Its windows are ``horizon`` consecutive
    frames starting at every offset from ``-pad_before`` to ``L - horizon + pad_after`` (relative to
    the range); frames outside the range repeat its first/last frame, so no window crosses a trim
    cut. Defaults follow Diffusion Policy: ``pad_before = n_obs_steps - 1`` (the first action can be
    predicted from a padded observation history) and ``pad_after = n_action_steps - 1`` (the last
    executed action chunk may run past the range end). ``n_action_steps`` (actions executed per chunk,
    from the last observation step on) defaults to 8 as in Diffusion Policy, capped at
    ``horizon - n_obs_steps + 1``; it only sets the default ``pad_after``. Ranges shorter than
    ``horizon - pad_before - pad_after`` yield no window (logged).

    A sample is a dict: each observation key (resolved store name, e.g. ``'obs/object'``) with
    shape ``(n_obs_steps, ...)`` (the window's first frames), ``'action'`` ``(horizon, A)``, every
    extra key ``(horizon, ...)`` and ``'weight'`` ``(horizon,)`` float32, the per-frame weight of
    each action step (ones unless ``frame_weights`` maps episode ids to a scalar or one weight per
    episode frame). With ``return_pad_mask=True`` a boolean ``'is_pad'`` ``(horizon,)`` marks padded
    steps. ``version`` may be a name, a `Version` or a `VersionData` already loaded (share one between
    samplers); ``episodes`` restricts to some episode ids. Image observation keys are read on demand
    (see `load_version_arrays` for ``image_cache_mb`` and ``image_read_frames``).
    """

    def __init__(
        self,
        store: "Store | None",
        version: "str | Version | VersionData",
        *,
        obs_keys: Sequence[str],
        action_key: str = "actions",
        n_obs_steps: int = 2,
        horizon: int = 16,
        n_action_steps: int | None = None,
        pad_before: int | None = None,
        pad_after: int | None = None,
        extra_keys: Sequence[str] = (),
        frame_weights: Mapping[str, Any] | None = None,
        episodes: Iterable[str] | None = None,
        return_pad_mask: bool = False,
        image_cache_mb: float = DEFAULT_IMAGE_CACHE_MB,
        image_read_frames: int | None = None,
    ) -> None:
        if n_obs_steps < 1 or horizon < 1:
            raise ValueError(f"n_obs_steps and horizon must be >= 1 (got {n_obs_steps}, {horizon})")
        if horizon < n_obs_steps:
            raise ValueError(f"horizon ({horizon}) must be >= n_obs_steps ({n_obs_steps}): the window starts at the "
                             "first observation frame and must cover the whole observation history")
        max_action_steps = horizon - n_obs_steps + 1
        n_action_steps = min(8, max_action_steps) if n_action_steps is None else int(n_action_steps)
        if not 1 <= n_action_steps <= max_action_steps:
            raise ValueError(f"n_action_steps must be in [1, horizon - n_obs_steps + 1 = {max_action_steps}] (the "
                             f"executed actions start at the last observation step), got {n_action_steps}")
        pad_before = n_obs_steps - 1 if pad_before is None else int(pad_before)
        pad_after = n_action_steps - 1 if pad_after is None else int(pad_after)
        for name, value in (("pad_before", pad_before), ("pad_after", pad_after)):
            if not 0 <= value <= horizon - 1:
                raise ValueError(f"{name} must be in [0, horizon - 1 = {horizon - 1}], got {value}")
        self.n_obs_steps = int(n_obs_steps)
        self.horizon = int(horizon)
        self.n_action_steps = int(n_action_steps)
        self.pad_before = pad_before
        self.pad_after = pad_after
        self.return_pad_mask = bool(return_pad_mask)

        if isinstance(version, VersionData):
            if episodes is not None:
                raise ValueError("pass episodes= to load_version_arrays when giving a VersionData")
            data = version
            self.obs_keys = resolve_keys(obs_keys, data.keys)
            self.action_key = resolve_keys([action_key], data.keys)[0]
            self.extra_keys = resolve_keys(extra_keys, data.keys)
        else:
            if store is None:
                raise ValueError("a store is needed unless a VersionData is given")
            ver = resolve_version(store, version)
            available = version_key_specs(store, ver, episodes)
            self.obs_keys = resolve_keys(obs_keys, available)
            self.action_key = resolve_keys([action_key], available)[0]
            self.extra_keys = resolve_keys(extra_keys, available)
            _check_lowdim([self.action_key, *self.extra_keys], available)
            wanted = list(dict.fromkeys([*self.obs_keys, self.action_key, *self.extra_keys]))
            data = load_version_arrays(store, ver, wanted, episodes=episodes, image_cache_mb=image_cache_mb,
                                       image_read_frames=image_read_frames)
        self.data = data
        _check_lowdim([k for k in [self.action_key, *self.extra_keys] if k not in data.data], data.specs)
        self.weights = self._build_weights(frame_weights)
        self._build_index()

    # -------------------------------------------------------------- index
    def _build_weights(self, frame_weights: Mapping[str, Any] | None) -> np.ndarray:
        data = self.data
        weights = np.ones(data.n_frames, dtype=np.float32)
        if not frame_weights:
            return weights
        starts = data.range_starts
        for r, eid in enumerate(data.range_episode_ids):
            if eid not in frame_weights:
                continue
            value = np.asarray(frame_weights[eid], dtype=np.float32)
            if value.ndim == 0:
                weights[starts[r]: data.range_ends[r]] = value
                continue
            if value.shape != (data.range_episode_length[r],):
                raise ValueError(f"frame_weights[{eid!r}] has shape {value.shape}; expected a scalar or one weight "
                                 f"per episode frame, shape ({data.range_episode_length[r]},)")
            weights[starts[r]: data.range_ends[r]] = value[data.range_frame_start[r]: data.range_frame_stop[r]]
        return weights

    def _build_index(self) -> None:
        data = self.data
        lengths = data.range_lengths
        n_win = np.maximum(0, lengths + self.pad_before + self.pad_after - self.horizon + 1)
        total = int(n_win.sum())
        if total == 0:
            raise EmptyVersionError(
                f"version {data.version!r}: none of its {data.n_ranges} kept range(s) (longest "
                f"{int(lengths.max())} frames) fits a window of horizon {self.horizon} with pad_before "
                f"{self.pad_before} and pad_after {self.pad_after}"
            )
        skipped = int((n_win == 0).sum())
        if skipped:
            log.warning("%d of %d kept ranges of version %r are too short for any window (horizon %d) and are unused",
                        skipped, data.n_ranges, data.version, self.horizon)
        self.window_range = np.repeat(np.arange(data.n_ranges, dtype=np.int64), n_win)
        first = np.cumsum(n_win) - n_win
        offset = np.arange(total, dtype=np.int64) - np.repeat(first, n_win)
        self.window_start = data.range_starts[self.window_range] - self.pad_before + offset
        self._range_lo = data.range_starts
        self._range_hi = data.range_ends - 1
        self._steps = np.arange(self.horizon, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.window_start)

    @property
    def keys(self) -> list[str]:
        """Keys of a sample dict."""
        out = [*self.obs_keys, "action", *self.extra_keys, "weight"]
        return out + ["is_pad"] if self.return_pad_mask else out

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of each entry of one sample."""
        specs = self.data.specs
        out: dict[str, tuple[int, ...]] = {k: (self.n_obs_steps, *specs[k].shape) for k in self.obs_keys}
        out["action"] = (self.horizon, *specs[self.action_key].shape)
        out.update({k: (self.horizon, *specs[k].shape) for k in self.extra_keys})
        out["weight"] = (self.horizon,)
        if self.return_pad_mask:
            out["is_pad"] = (self.horizon,)
        return out

    def _check_indices(self, indices: Any) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"window index out of range for a sampler of {n} windows")
        return np.where(idx < 0, idx + n, idx)

    def window_frames(self, indices: Any) -> np.ndarray:
        """(B, horizon) buffer frame indices of windows (edge padding applied by clipping)."""
        idx = self._check_indices(indices)
        r = self.window_range[idx]
        raw = self.window_start[idx][..., None] + self._steps
        return np.clip(raw, self._range_lo[r][..., None], self._range_hi[r][..., None])

    # -------------------------------------------------------------- samples
    def sample_batch(self, indices: Any) -> dict[str, np.ndarray]:
        """Stacked samples of many windows at once (vectorised gather; the fast path)."""
        idx = self._check_indices(indices)
        r = self.window_range[idx]
        raw = self.window_start[idx][:, None] + self._steps
        frames = np.clip(raw, self._range_lo[r][:, None], self._range_hi[r][:, None])
        obs_frames = frames[:, : self.n_obs_steps]
        data = self.data
        out: dict[str, np.ndarray] = {}
        for key in self.obs_keys:
            out[key] = data.read_frames(key, obs_frames)
        out["action"] = data.data[self.action_key][frames]
        for key in self.extra_keys:
            out[key] = data.data[key][frames]
        out["weight"] = self.weights[frames]
        if self.return_pad_mask:
            out["is_pad"] = frames != raw
        return out

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        """One window as a dict of arrays (per-sample path: slices plus explicit edge padding)."""
        n = len(self.window_start)
        i = int(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"window index {index} out of range for a sampler of {n} windows")
        r = int(self.window_range[i])
        start = int(self.window_start[i])
        lo, hi = int(self._range_lo[r]), int(self._range_hi[r]) + 1
        a, b = max(start, lo), min(start + self.horizon, hi)
        before, after = a - start, start + self.horizon - b

        def window(buffer: np.ndarray, length: int) -> np.ndarray:
            stop = min(b, start + length)
            pre = min(before, length)
            if pre == 0 and stop - a == length:
                return buffer[a:stop].copy()  # no padding: a copy, so callers may modify it freely
            out = np.empty((length, *buffer.shape[1:]), dtype=buffer.dtype)
            out[:pre] = buffer[a]
            count = max(0, stop - a)
            out[pre: pre + count] = buffer[a: a + count]
            out[pre + count:] = buffer[b - 1]
            return out

        data = self.data
        out: dict[str, np.ndarray] = {}
        for key in self.obs_keys:
            if key in data.data:
                out[key] = window(data.data[key], self.n_obs_steps)
            else:
                frames = np.clip(start + np.arange(self.n_obs_steps), lo, hi - 1)
                out[key] = data.read_frames(key, frames)
        out["action"] = window(data.data[self.action_key], self.horizon)
        for key in self.extra_keys:
            out[key] = window(data.data[key], self.horizon)
        out["weight"] = window(self.weights, self.horizon)
        if self.return_pad_mask:
            mask = np.zeros(self.horizon, dtype=bool)
            mask[:before] = True
            mask[self.horizon - after:] = True
            out["is_pad"] = mask
        return out

    def sample(self, batch_size: int, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
        """A batch of uniformly random windows (with replacement)."""
        rng = np.random.default_rng() if rng is None else rng
        return self.sample_batch(rng.integers(0, len(self), size=batch_size))

    def iter_batches(self, batch_size: int, *, shuffle: bool = True, seed: int | None = None,
                     drop_last: bool = False) -> Iterator[dict[str, np.ndarray]]:
        """One epoch of batches over every window (torch-free training loop)."""
        order = np.random.default_rng(seed).permutation(len(self)) if shuffle else np.arange(len(self))
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for lo in range(0, stop, batch_size):
            yield self.sample_batch(order[lo: lo + batch_size])

    # -------------------------------------------------------------- metadata
    def window_meta(self, indices: Any) -> dict[str, np.ndarray]:
        """Per window: episode_id, range_index, episode-relative frame_index (B, horizon) and is_pad."""
        idx = self._check_indices(indices)
        r = self.window_range[idx]
        raw = self.window_start[idx][..., None] + self._steps
        frames = np.clip(raw, self._range_lo[r][..., None], self._range_hi[r][..., None])
        data = self.data
        rel = data.range_frame_start[r][..., None] + frames - data.range_starts[r][..., None]
        return {
            "episode_id": data.range_episode_ids[r],
            "range_index": r,
            "frame_index": rel,
            "is_pad": frames != raw,
        }

    def window_info(self, index: int) -> dict[str, Any]:
        """Where window `index` comes from: episode_id, range_index, unclipped frame_start/stop, frames."""
        i = int(self._check_indices(index))
        r = int(self.window_range[i])
        data = self.data
        start = int(data.range_frame_start[r] + self.window_start[i] - data.range_starts[r])
        meta = self.window_meta([i])
        return {
            "episode_id": str(data.range_episode_ids[r]),
            "range_index": r,
            "range": (int(data.range_frame_start[r]), int(data.range_frame_stop[r])),
            "frame_start": start,
            "frame_stop": start + self.horizon,
            "frames": meta["frame_index"][0],
            "is_pad": meta["is_pad"][0],
        }

    def windows(self) -> pd.DataFrame:
        """All windows: episode_id, range_index, unclipped episode-relative frame_start and frame_stop."""
        data = self.data
        r = self.window_range
        start = data.range_frame_start[r] + self.window_start - data.range_starts[r]
        return pd.DataFrame({"episode_id": data.range_episode_ids[r], "range_index": r,
                             "frame_start": start, "frame_stop": start + self.horizon})

    def __repr__(self) -> str:
        return (f"SequenceSampler(version={self.data.version!r}, windows={len(self)}, ranges={self.data.n_ranges}, "
                f"obs_keys={self.obs_keys}, n_obs_steps={self.n_obs_steps}, horizon={self.horizon}, "
                f"pad_before={self.pad_before}, pad_after={self.pad_after})")
