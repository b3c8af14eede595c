"""The diffusion policy: its configuration, normaliser, exploration modes and the policy module itself."""

from .config import ExperimentConfig, PolicyConfig, TrainConfig, get_preset
from .diffusion import DiffusionPolicy, ObsSpec, PolicyInputError, PolicyShapes, make_policy
from .exploration import NO_EXPLORATION, Exploration
from .normalizer import Normalizer

__all__ = ["ExperimentConfig", "PolicyConfig", "TrainConfig", "get_preset", "DiffusionPolicy", "ObsSpec",
           "PolicyInputError", "PolicyShapes", "make_policy", "NO_EXPLORATION", "Exploration", "Normalizer"]
