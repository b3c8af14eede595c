"""Neural network building blocks of the diffusion policy: denoiser, image backbone, observation encoder."""

from .obs_encoder import ObservationEncoder
from .unet1d import ConditionalUnet1D, SinusoidalTimeEmbedding
from .vision import RandomCrop, ResNet18GN

__all__ = [
    "ConditionalUnet1D",
    "ObservationEncoder",
    "RandomCrop",
    "ResNet18GN",
    "SinusoidalTimeEmbedding",
]
