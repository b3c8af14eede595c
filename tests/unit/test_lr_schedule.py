"""diffusers' cosine warm-up schedule gives the hand-written schedule's learning rates bit for bit."""

import pytest
import torch

from sime_policy.policy.config import PRESETS
from sime_policy.training.lr_schedule import CosineWarmup, make_lr_scheduler


def _settings() -> list[tuple[int, int, float]]:
    """(warmup, total, lr) of every preset, and of short runs of them (fewer steps than the warm-up included)."""
    out = set()
    for make in PRESETS.values():
        train = make().train
        for total in (1, 2, 50, train.warmup_steps, train.warmup_steps + 1, 3000, train.steps):
            out.add((train.warmup_steps, total, train.lr))
    return sorted(out)


@pytest.mark.parametrize("warmup,total,lr", _settings())
def test_scheduler_matches_closed_form_bit_for_bit(warmup, total, lr):
    closed = CosineWarmup(warmup, total)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = make_lr_scheduler(opt, warmup, total)
    reference = torch.optim.lr_scheduler.LambdaLR(
        torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr), lambda step: closed(step))
    factors = scheduler.lr_lambdas[0]
    assert all(factors(step) == closed(step) for step in range(total + 1))
    checked = min(total, 2500)  # the LambdaLR itself over the first steps (the factor above covers the rest)
    for _ in range(checked):
        assert scheduler.get_last_lr() == reference.get_last_lr()
        opt.step()
        scheduler.step()
        reference.optimizer.step()
        reference.step()
    assert scheduler.state_dict() == reference.state_dict()
