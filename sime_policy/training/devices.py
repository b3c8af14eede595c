"""Which torch device training and rollout inference run on."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device | None, local_rank: int = 0) -> torch.device:
    """The requested device, else cuda:<local_rank> when CUDA is available, else cpu."""
    if device is None:
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} requested but CUDA is not available here; use --device cpu")
        if dev.index is None:
            dev = torch.device(f"cuda:{local_rank}")
    return dev
