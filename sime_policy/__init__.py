"""Diffusion policy with modal-level exploration, trained from store versions (imports torch)."""

from .training.checkpoint import CheckpointError, IncompatibleCheckpointError, load_policy
from .policy.config import ExperimentConfig, PolicyConfig, TrainConfig, get_preset
from .policy.exploration import Exploration
from .policy.diffusion import DiffusionPolicy, PolicyInputError
from .training.trainer import TrainResult, train

__all__ = [
    "CheckpointError", "IncompatibleCheckpointError", "load_policy", "ExperimentConfig", "PolicyConfig", "TrainConfig",
    "get_preset", "Exploration", "DiffusionPolicy", "PolicyInputError", "TrainResult", "train",
]
