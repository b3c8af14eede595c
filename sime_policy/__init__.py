"""Diffusion policy with modal-level exploration, trained from store versions (imports torch)."""

from .policy.config import ExperimentConfig, PolicyConfig, TrainConfig, get_preset
from .policy.diffusion import DiffusionPolicy, PolicyInputError
from .policy.exploration import Exploration
from .training.checkpoint import (CheckpointError, CheckpointInfo, IncompatibleCheckpointError, load_policy,
                                  load_policy_and_info)
from .training.trainer import TrainResult, train

__all__ = [
    "CheckpointError", "CheckpointInfo", "IncompatibleCheckpointError", "load_policy", "load_policy_and_info",
    "ExperimentConfig", "PolicyConfig", "TrainConfig", "get_preset", "Exploration", "DiffusionPolicy",
    "PolicyInputError", "TrainResult", "train",
]
