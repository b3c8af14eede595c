"""Learning-rate schedule of training: linear warm-up, then half a cosine down to 0 (diffusers' implementation)."""

from __future__ import annotations

import math

import torch
from diffusers.optimization import get_cosine_schedule_with_warmup


class CosineWarmup:
    """LR multiplier: linear warm-up from 0 over ``warmup_steps``, then half a cosine down to 0 at ``total_steps``.

    The closed form `make_lr_scheduler` follows at every step of a run (steps 0..total_steps, bit for bit,
    tests/unit/test_lr_schedule.py); past ``total_steps`` this stays at 0 where diffusers' cosine rises again.
    """

    def __init__(self, warmup_steps: int, total_steps: int) -> None:
        self.warmup_steps = max(0, int(warmup_steps))
        self.total_steps = max(1, int(total_steps))

    def __call__(self, step: int) -> float:
        """Multiplier of the base learning rate at a step."""
        if step < self.warmup_steps:
            return float(step) / float(max(1, self.warmup_steps))
        progress = (step - self.warmup_steps) / float(max(1, self.total_steps - self.warmup_steps))
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def make_lr_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int,
                      total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR with linear warm-up and cosine decay (the schedule itself is not saved in its state_dict)."""
    return get_cosine_schedule_with_warmup(optimizer, max(0, int(warmup_steps)), max(1, int(total_steps)))
