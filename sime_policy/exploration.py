"""Exploration settings and the modal-level noise schedule applied while denoising."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

MODES = ("none", "sime", "cads", "action_noise", "ddim_eta")


@dataclass(frozen=True)
class Exploration:
    """How a rollout explores; recorded with every episode it produces.

    - ``sime``: Gaussian noise on the observation embedding at every denoising step, scaled by
      ``noise_scale * (1 - gamma(t))`` with ``t = 1 - timestep / T_train`` (the reference's order:
      weakest at the first step, strongest at the last).
    - ``cads``: the same schedule evaluated at ``t = timestep / T_train`` (CADS order: strongest first).
    - ``action_noise``: Gaussian noise of std ``noise_scale`` on the final (normalised) action chunk.
    - ``ddim_eta``: no added noise; DDIM sampling with ``eta > 0`` (diffusion randomness only).
    """

    mode: str = "none"
    noise_scale: float = 0.0
    image_noise_scale: float | None = None  # separate scale for image features (None: same as noise_scale)
    tau1: float = 0.0
    tau2: float = 1.0
    eta: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown exploration mode {self.mode!r}; choose one of {', '.join(MODES)}")
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
                generator: torch.Generator | None) -> torch.Tensor:
        """The condition with fresh Gaussian noise of this step's strength (image dims may use their own scale)."""
        noise = torch.randn(cond.shape, generator=generator, device=cond.device, dtype=cond.dtype)
        std = torch.full((cond.shape[-1],), self.multiplier(timestep, num_train_timesteps), device=cond.device,
                         dtype=cond.dtype)
        if image_mask is not None and self.image_noise_scale is not None:
            std = torch.where(image_mask.to(cond.device),
                              torch.tensor(self.multiplier(timestep, num_train_timesteps, self.image_noise_scale),
                                           device=cond.device, dtype=cond.dtype), std)
        return cond + noise * std

    def as_metadata(self) -> dict[str, Any]:
        """Columns recorded with each rollout episode (explore_mode, noise_scale, tau1, tau2) plus extras."""
        meta = asdict(self)
        return {"explore_mode": meta.pop("mode"), **meta}


NO_EXPLORATION = Exploration()
