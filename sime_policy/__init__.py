"""Diffusion policy with modal-level exploration, trained from store versions.

The names below load on first use (PEP 562), so that a light module such as `sime_policy.settings` can be
imported without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module that defines it
_EXPORTS = {
    "ExperimentConfig": "policy.config", "PolicyConfig": "policy.config", "TrainConfig": "policy.config",
    "get_preset": "policy.config", "DiffusionPolicy": "policy.diffusion", "PolicyInputError": "policy.diffusion",
    "Exploration": "policy.exploration", "CheckpointError": "training.checkpoint",
    "CheckpointInfo": "training.checkpoint", "IncompatibleCheckpointError": "training.checkpoint",
    "load_policy": "training.checkpoint", "load_policy_and_info": "training.checkpoint",
    "TrainResult": "training.trainer", "train": "training.trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """The public name `name`, imported from its module on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sime_policy' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """Module attributes including the lazily imported public names."""
    return sorted(set(globals()) | set(_EXPORTS))
