"""A training version loaded once: its frames feed the normaliser, the policy's shapes and both samplers."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ..policy.config import PolicyConfig
from ..policy.diffusion import PolicyShapes
from ..policy.normalizer import Normalizer, fit_normalizer

if TYPE_CHECKING:  # pragma: no cover
    from sime_data.sampler import SequenceSampler, VersionData
    from sime_data.store import Store
    from sime_data.versions import Version

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """Every kept frame of the keys a policy needs, read once, with the train/validation episode split."""

    version: "Version"
    frames: "VersionData"
    shapes: PolicyShapes
    train_ids: list[str]
    val_ids: list[str]

    def normalizer(self, config: PolicyConfig) -> Normalizer:
        """Min-max maps of the action and low-dim observation keys, fitted on every frame of the version."""
        return fit_normalizer(self.frames, [config.action_key, *self.shapes.lowdim_keys()])

    def samplers(self, config: PolicyConfig, frame_weights: Mapping[str, Any] | None = None,
                 val_ratio: float = 0.0) -> "tuple[SequenceSampler, SequenceSampler | None]":
        """Training and validation window samplers over the split's episodes (None: no validation)."""
        from sime_data.errors import EmptyVersionError
        from sime_data.sampler import SequenceSampler

        common = dict(obs_keys=config.obs_keys, action_key=config.action_key, n_obs_steps=config.n_obs_steps,
                      horizon=config.horizon, n_action_steps=config.n_action_steps, frame_weights=frame_weights)
        train = SequenceSampler(None, episode_subset(self.frames, self.train_ids), **common)
        val = None
        if self.val_ids:
            try:
                val = SequenceSampler(None, episode_subset(self.frames, self.val_ids), **common)
            except EmptyVersionError as exc:
                log.warning("validation disabled: %s", exc)
        elif val_ratio > 0:
            log.warning("validation disabled: version %r has a single episode", self.version.name)
        return train, val


def load_training_data(store: "Store", version: "Version", config: PolicyConfig, val_ratio: float,
                       seed: int) -> TrainingData:
    """Read a version's frames of the config's keys once (images stay lazy) and split its episodes."""
    from sime_data.sampler import load_version_arrays, split_episodes, version_key_specs

    shapes = PolicyShapes.from_key_specs(version_key_specs(store, version), config,
                                         source=f"version {version.name!r}")
    keys = list(dict.fromkeys([*config.obs_keys, config.action_key]))
    frames = load_version_arrays(store, version, keys)
    train_ids, val_ids = split_episodes(version.episode_ids, val_ratio, seed)
    return TrainingData(version, frames, shapes, train_ids, val_ids)


def episode_subset(data: "VersionData", episodes: Sequence[str]) -> "VersionData":
    """The kept ranges of some episodes (in the data's order) as their own VersionData, buffers copied.

    Gives the same buffers and layout as ``load_version_arrays(..., episodes=episodes)`` would read.
    """
    from sime_data.errors import EmptyVersionError
    from sime_data.sampler import VersionData

    wanted = {str(e) for e in episodes}
    unknown = sorted(wanted - set(data.range_episode_ids.tolist()))
    if unknown:
        raise KeyError(f"episode(s) {unknown[:5]} are not in version {data.version!r}")
    keep = np.flatnonzero(np.isin(data.range_episode_ids.astype(str), list(wanted)))
    if not len(keep):
        raise EmptyVersionError(f"version {data.version!r} has no frames among the selected episodes")
    starts, ends = data.range_starts[keep], data.range_ends[keep]
    lengths = ends - starts
    buffers = {key: np.concatenate([values[a:b] for a, b in zip(starts, ends)]) for key, values in data.data.items()}
    return VersionData(
        version=data.version, specs=dict(data.specs), data=buffers,
        range_episode_ids=data.range_episode_ids[keep], range_frame_start=data.range_frame_start[keep],
        range_frame_stop=data.range_frame_stop[keep], range_segments=data.range_segments[keep],
        range_seg_start=data.range_seg_start[keep], range_episode_length=data.range_episode_length[keep],
        range_ends=np.cumsum(lengths).astype(np.int64), store=data.store, image_cache_mb=data.image_cache_mb,
        image_read_frames=data.image_read_frames, image_shard_frames=data.image_shard_frames)
