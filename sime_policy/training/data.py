"""A training version loaded once: its frames feed the normaliser, the policy's shapes and both samplers."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

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
        """Min-max maps of the action and low-dim observation keys, fitted on every frame of the version (the
        observations' maps as the config's `obs_condition` and `obs_range_floor` say)."""
        lowdim = self.shapes.lowdim_keys()
        return fit_normalizer(self.frames, [config.action_key, *lowdim], condition_keys=lowdim,
                              mode=config.obs_condition, floor=config.obs_range_floor)

    def samplers(self, config: PolicyConfig, frame_weights: Mapping[str, Any] | None = None,
                 val_ratio: float = 0.0) -> "tuple[SequenceSampler, SequenceSampler | None]":
        """Training and validation window samplers over the split's episodes (None: no validation)."""
        from sime_data.errors import EmptyVersionError
        from sime_data.sampler import SequenceSampler

        common = dict(obs_keys=config.obs_keys, action_key=config.action_key, n_obs_steps=config.n_obs_steps,
                      horizon=config.horizon, n_action_steps=config.n_action_steps, frame_weights=frame_weights)
        train = SequenceSampler(None, self.frames.select(self.train_ids), **common)
        val = None
        if self.val_ids:
            try:
                val = SequenceSampler(None, self.frames.select(self.val_ids), **common)
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
