"""The multi-tensor EMA update gives the per-parameter loop's averaged weights bit for bit."""

import copy

import torch

from sime_policy.policy.config import PolicyConfig
from sime_policy.training.ema import EMAModel
from sime_policy.models import ConditionalUnet1D


def _loop_step(ema: EMAModel, model: torch.nn.Module) -> None:
    """The update as it was written before the foreach ops (the reference)."""
    ema.decay = ema.get_decay(ema.optimization_step)
    ema_params = dict(ema.averaged.named_parameters())
    with torch.no_grad():
        for name, param in model.named_parameters():
            target = ema_params[name]
            if param.requires_grad:
                target.mul_(ema.decay).add_(param.detach().to(target.dtype), alpha=1.0 - ema.decay)
            else:
                target.copy_(param.detach())
        ema_buffers = dict(ema.averaged.named_buffers())
        for name, buffer in model.named_buffers():
            ema_buffers[name].copy_(buffer)
    ema.optimization_step += 1


def test_foreach_update_matches_the_loop_over_300_steps():
    torch.manual_seed(0)
    config = PolicyConfig(down_dims=(16, 32), diffusion_step_embed_dim=8)
    model = ConditionalUnet1D(input_dim=4, global_cond_dim=6, diffusion_step_embed_dim=8, down_dims=config.down_dims,
                              kernel_size=3, n_groups=4)
    model.register_buffer("stat", torch.zeros(3))
    model.frozen = torch.nn.Parameter(torch.ones(2), requires_grad=False)
    fast, slow = EMAModel(model, power=0.75, max_decay=0.9999), EMAModel(copy.deepcopy(model), power=0.75,
                                                                         max_decay=0.9999)
    generator = torch.Generator().manual_seed(1)
    for step in range(300):
        with torch.no_grad():  # stand-in for an optimiser step: every trained weight moves
            for param in model.parameters():
                param.add_(torch.randn(param.shape, generator=generator) * 1e-2)
            model.stat.fill_(float(step))
        fast.step(model)
        _loop_step(slow, model)
        assert fast.decay == slow.decay
    for (name, a), (_, b) in zip(fast.averaged.state_dict().items(), slow.averaged.state_dict().items()):
        assert torch.equal(a, b), name
    assert fast.optimization_step == slow.optimization_step == 300
