"""Diffusion policy with modal-level exploration, trained from store versions (imports torch)."""

from .checkpoint import CheckpointError, IncompatibleCheckpointError, load_policy
from .config import ExperimentConfig, PolicyConfig, TrainConfig, get_preset
from .exploration import Exploration
from .policy import DiffusionPolicy, PolicyInputError
from .trainer import TrainResult, train

__all__ = [
    "CheckpointError", "IncompatibleCheckpointError", "load_policy", "ExperimentConfig", "PolicyConfig", "TrainConfig",
    "get_preset", "Exploration", "DiffusionPolicy", "PolicyInputError", "TrainResult", "train",
]
