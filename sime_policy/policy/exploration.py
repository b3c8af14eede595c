"""Exploration settings and the modal-level noise schedule applied while denoising."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence, Union

import torch

MODES = ("none", "sime", "cads", "action_noise", "ddim_eta")
NOISE_UNITS = ("raw", "normalized")

#: One generator for a whole batch, one per row, or None (torch's global generator).
Generators = Union[torch.Generator, Sequence[torch.Generator], None]


def gaussian(shape: Sequence[int], generator: Generators, device: torch.device | str,
             dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise of `shape`; with a list of generators row i is drawn from generator i alone."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
    if len(generator) != shape[0]:
        raise ValueError(f"{len(generator)} generators for a batch of {shape[0]} rows")
    return torch.stack([torch.randn(tuple(shape[1:]), generator=g, device=device, dtype=dtype) for g in generator])


@dataclass(frozen=True)
class Exploration:
    """How a rollout explores; recorded with every episode it produces.

    - ``sime``: Gaussian noise on the observation embedding at every denoising step, scaled by
      ``noise_scale * (1 - gamma(t))`` with ``t = 1 - timestep / T_train`` (the reference's order:
      weakest at the first step, strongest at the last).
    - ``cads``: the same schedule evaluated at ``t = timestep / T_train`` (CADS order: strongest first).
    - ``action_noise``: Gaussian noise of std ``noise_scale`` on the final (normalised) action chunk.
    - ``ddim_eta``: no added noise; DDIM sampling with ``eta > 0`` (diffusion randomness only).

    ``noise_units`` says what ``noise_scale`` measures on the low-dim part of the condition: ``raw``
    (default, as the SIME reference: raw observation units, e.g. metres; the policy converts through its
    normaliser) or ``normalized`` (the min-max-normalised [-1, 1] space the condition is in). Image
    features are always perturbed in their own units.
    """

    mode: str = "none"
    noise_scale: float = 0.0
    image_noise_scale: float | None = None  # separate scale for image features (None: same as noise_scale)
    tau1: float = 0.0
    tau2: float = 1.0
    eta: float = 0.0
    noise_units: str = "raw"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown exploration mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.noise_units not in NOISE_UNITS:
            raise ValueError(f"unknown noise units {self.noise_units!r}; choose one of {', '.join(NOISE_UNITS)}")
        if not 0.0 <= self.tau1 < self.tau2 <= 1.0:
            raise ValueError(f"need 0 <= tau1 < tau2 <= 1, got tau1={self.tau1}, tau2={self.tau2}")
        if self.noise_scale < 0 or (self.image_noise_scale is not None and self.image_noise_scale < 0):
            raise ValueError("noise scales must be >= 0")
        if self.mode == "ddim_eta" and not 0.0 < self.eta <= 1.0:
            raise ValueError(f"mode 'ddim_eta' needs 0 < eta <= 1, got {self.eta}")

    @property
    def perturbs_condition(self) -> bool:
        """True when the observation embedding gets noise during denoising."""
        return self.mode in ("sime", "cads") and (self.noise_scale > 0 or bool(self.image_noise_scale))

    def gamma(self, t: float) -> float:
        """CADS-style linear schedule: 1 for t <= tau1, 0 for t >= tau2, linear in between."""
        if t <= self.tau1:
            return 1.0
        if t >= self.tau2:
            return 0.0
        return (self.tau2 - t) / (self.tau2 - self.tau1)

    def schedule_time(self, timestep: int, num_train_timesteps: int) -> float:
        """The t at which gamma is evaluated for a diffusion timestep, in this mode's order."""
        fraction = float(timestep) / float(num_train_timesteps)
        return fraction if self.mode == "cads" else 1.0 - fraction

    def multiplier(self, timestep: int, num_train_timesteps: int, scale: float | None = None) -> float:
        """Noise std added to the condition at this denoising step: scale * (1 - gamma(t))."""
        s = self.noise_scale if scale is None else scale
        return s * (1.0 - self.gamma(self.schedule_time(timestep, num_train_timesteps)))

    def perturb(self, cond: torch.Tensor, timestep: int, num_train_timesteps: int, image_mask: torch.Tensor | None,
                generator: Generators, units: torch.Tensor | None = None) -> torch.Tensor:
        """The condition with fresh Gaussian noise of this step's strength (image dims may use their own scale).

        `units` (per condition dimension) converts the noise into the condition's units, e.g. the
        normaliser's scale for raw-unit noise on low-dim dimensions (see `DiffusionPolicy.condition_noise_units`).
        """
        noise = gaussian(cond.shape, generator, cond.device, cond.dtype)
        std = torch.full((cond.shape[-1],), self.multiplier(timestep, num_train_timesteps), device=cond.device,
                         dtype=cond.dtype)
        if image_mask is not None and self.image_noise_scale is not None:
            std = torch.where(image_mask.to(cond.device),
                              torch.tensor(self.multiplier(timestep, num_train_timesteps, self.image_noise_scale),
                                           device=cond.device, dtype=cond.dtype), std)
        if units is not None:
            std = std * units.to(device=cond.device, dtype=cond.dtype)
        return cond + noise * std

    def as_metadata(self) -> dict[str, Any]:
        """Columns recorded with each rollout episode (explore_mode, noise_scale, tau1, tau2) plus extras."""
        meta = asdict(self)
        return {"explore_mode": meta.pop("mode"), **meta}


NO_EXPLORATION = Exploration()
