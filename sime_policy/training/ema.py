"""Exponential moving average of model weights with Diffusion Policy's warm-up decay schedule."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class EMAModel:
    """A frozen copy of a model whose weights track the trained ones: ema = decay * ema + (1 - decay) * w.

    The decay follows Diffusion Policy's ``EMAModel``: at optimisation step ``n`` (0-based, counting
    `step` calls) with ``k = max(0, n - update_after_step - 1)``, ``decay = 1 - (1 + k / inv_gamma) ** -power``
    clamped to ``[min_decay, max_decay]``, and 0 while ``k == 0`` (the first updates copy the weights).
    Parameters that do not require gradients and all buffers are copied, not averaged.
    """

    def __init__(self, model: nn.Module, *, power: float = 0.75, max_decay: float = 0.9999, min_decay: float = 0.0,
                 inv_gamma: float = 1.0, update_after_step: int = 0) -> None:
        if not 0.0 <= min_decay <= max_decay <= 1.0:
            raise ValueError(f"need 0 <= min_decay <= max_decay <= 1, got {min_decay}, {max_decay}")
        if inv_gamma <= 0 or power <= 0:
            raise ValueError(f"inv_gamma and power must be > 0, got {inv_gamma}, {power}")
        self.averaged = copy.deepcopy(model)
        self.averaged.eval()
        self.averaged.requires_grad_(False)
        self.power = float(power)
        self.max_decay = float(max_decay)
        self.min_decay = float(min_decay)
        self.inv_gamma = float(inv_gamma)
        self.update_after_step = int(update_after_step)
        self.optimization_step = 0
        self.decay = 0.0

    def get_decay(self, optimization_step: int) -> float:
        """Decay used for the update at a given optimisation step."""
        step = max(0, optimization_step - self.update_after_step - 1)
        if step <= 0:
            return 0.0
        value = 1.0 - (1.0 + step / self.inv_gamma) ** -self.power
        return max(self.min_decay, min(value, self.max_decay))

    @torch.no_grad()
    def step(self, model: nn.Module) -> None:
        """Fold the model's current weights into the average (call once after every optimiser step)."""
        self.decay = self.get_decay(self.optimization_step)
        ema_params = dict(self.averaged.named_parameters())
        averaged: list[torch.Tensor] = []
        trained: list[torch.Tensor] = []
        for name, param in model.named_parameters():
            target = ema_params[name]
            if param.requires_grad:
                averaged.append(target)
                trained.append(param.detach().to(target.dtype))
            else:
                target.copy_(param.detach())
        if averaged:  # one multi-tensor op each instead of two per parameter (same elementwise arithmetic)
            torch._foreach_mul_(averaged, self.decay)
            torch._foreach_add_(averaged, trained, alpha=1.0 - self.decay)
        ema_buffers = dict(self.averaged.named_buffers())
        for name, buffer in model.named_buffers():
            ema_buffers[name].copy_(buffer)
        self.optimization_step += 1

    def to(self, device: torch.device | str) -> "EMAModel":
        """Move the averaged model to a device."""
        self.averaged.to(device)
        return self

    def state_dict(self) -> dict[str, Any]:
        """Averaged weights plus the step counter (for checkpoints)."""
        return {"averaged": self.averaged.state_dict(), "optimization_step": self.optimization_step,
                "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        self.averaged.load_state_dict(state["averaged"])
        self.optimization_step = int(state["optimization_step"])
        self.decay = float(state.get("decay", 0.0))
