"""Conditional 1-D U-Net denoiser over action sequences, with FiLM conditioning.

The network maps a noisy action chunk ``(B, T, input_dim)``, a diffusion timestep and a
global condition vector (the observation embedding) to a tensor of the same shape as the
chunk (predicted noise or sample). The timestep enters only through ``self.time_mlp``
and the observation only through ``global_cond``; both are concatenated into one
condition vector that every residual block turns into a per-channel scale and bias.

Any horizon ``T >= 1`` works: down-sampling rounds lengths up (``ceil(L / 2)``) and each
up-sampled feature map is cropped to the length of its skip connection.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["ConditionalUnet1D", "SinusoidalTimeEmbedding"]


class SinusoidalTimeEmbedding(nn.Module):
    """Fixed sinusoidal embedding of scalar diffusion timesteps: (B,) -> (B, dim)."""

    def __init__(self, dim: int) -> None:
        """Build an embedding with ``dim`` output features (sin half, cos half)."""
        super().__init__()
        if dim < 2:
            raise ValueError(f"SinusoidalTimeEmbedding needs dim >= 2, got {dim}")
        self.dim = dim
        half = dim // 2
        scale = math.log(10000.0) / max(half - 1, 1)
        freqs = torch.exp(-scale * torch.arange(half, dtype=torch.float32))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        """Embed timesteps ``t`` of shape (B,) (float or integer) into (B, dim)."""
        if t.ndim != 1:
            raise ValueError(f"timesteps must have shape (B,), got {tuple(t.shape)}")
        args = t.to(self.freqs.dtype)[:, None] * self.freqs[None, :]
        emb = torch.cat([args.sin(), args.cos()], dim=-1)
        if self.dim % 2:
            emb = nn.functional.pad(emb, (0, 1))
        return emb


class Conv1dBlock(nn.Module):
    """Conv1d -> GroupNorm -> Mish over (B, C, T), length preserved."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, n_groups: int) -> None:
        """Build the block; ``kernel_size`` must be odd so the length is preserved."""
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.norm = nn.GroupNorm(n_groups, out_channels)
        self.act = nn.Mish()

    def forward(self, x: Tensor) -> Tensor:
        """Apply conv, norm and activation."""
        return self.act(self.norm(self.conv(x)))


class FiLMResidualBlock1d(nn.Module):
    """Two Conv1dBlocks with FiLM (per-channel scale and bias from the condition) between them."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int, kernel_size: int, n_groups: int) -> None:
        """Build the block; a 1x1 conv matches channels on the residual path when needed."""
        super().__init__()
        self.out_channels = out_channels
        self.block1 = Conv1dBlock(in_channels, out_channels, kernel_size, n_groups)
        self.block2 = Conv1dBlock(out_channels, out_channels, kernel_size, n_groups)
        self.cond_encoder = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * out_channels))
        self.residual = (
            nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        """Map (B, in, T) and condition (B, cond_dim) to (B, out, T)."""
        h = self.block1(x)
        scale, bias = self.cond_encoder(cond).unsqueeze(-1).chunk(2, dim=1)
        h = scale * h + bias
        h = self.block2(h)
        return h + self.residual(x)


class Downsample1d(nn.Module):
    """Halve the time axis (rounding up) with a stride-2 convolution."""

    def __init__(self, channels: int) -> None:
        """Build a 3-tap stride-2 conv keeping the channel count."""
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, L) -> (B, C, ceil(L / 2))."""
        return self.conv(x)


class Upsample1d(nn.Module):
    """Double the time axis with a transposed convolution."""

    def __init__(self, channels: int) -> None:
        """Build a 4-tap stride-2 transposed conv keeping the channel count."""
        super().__init__()
        self.conv = nn.ConvTranspose1d(channels, channels, 4, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, L) -> (B, C, 2 L)."""
        return self.conv(x)


class ConditionalUnet1D(nn.Module):
    """1-D U-Net over the action horizon, FiLM-conditioned on timestep embedding + global condition."""

    def __init__(
        self,
        input_dim: int,
        global_cond_dim: int,
        diffusion_step_embed_dim: int = 128,
        down_dims: Sequence[int] = (256, 512, 1024),
        kernel_size: int = 5,
        n_groups: int = 8,
    ) -> None:
        """Build the network; every entry of ``down_dims`` must be divisible by ``n_groups``."""
        super().__init__()
        down_dims = [int(d) for d in down_dims]
        if not down_dims:
            raise ValueError("down_dims must name at least one level")
        bad = [d for d in down_dims if d % n_groups]
        if bad:
            raise ValueError(f"down_dims {bad} are not divisible by n_groups={n_groups}")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd to preserve the horizon, got {kernel_size}")
        if input_dim < 1 or global_cond_dim < 0:
            raise ValueError(f"bad dims: input_dim={input_dim}, global_cond_dim={global_cond_dim}")

        self.input_dim = input_dim
        self.global_cond_dim = global_cond_dim
        self.down_dims = tuple(down_dims)
        dsed = diffusion_step_embed_dim
        self.time_mlp = nn.Sequential(
            SinusoidalTimeEmbedding(dsed),
            nn.Linear(dsed, 4 * dsed),
            nn.Mish(),
            nn.Linear(4 * dsed, dsed),
        )
        cond_dim = dsed + global_cond_dim

        def res(cin: int, cout: int) -> FiLMResidualBlock1d:
            return FiLMResidualBlock1d(cin, cout, cond_dim, kernel_size, n_groups)

        # Level i works at channel width down_dims[i] and length L_i (L_0 = T, L_{i+1} = ceil(L_i / 2)).
        all_dims = [input_dim] + down_dims
        n_levels = len(down_dims)
        self.down_blocks = nn.ModuleList()
        for i in range(n_levels):
            cin, cout = all_dims[i], all_dims[i + 1]
            down = Downsample1d(cout) if i < n_levels - 1 else nn.Identity()
            self.down_blocks.append(nn.ModuleList([res(cin, cout), res(cout, cout), down]))

        mid = down_dims[-1]
        self.mid_blocks = nn.ModuleList([res(mid, mid), res(mid, mid)])

        # Up level i (i = n-1 .. 1): concat with the level-i skip, narrow to down_dims[i-1],
        # then up-sample to level i-1's length (the result is cropped to that length).
        self.up_blocks = nn.ModuleList()
        for i in range(n_levels - 1, 0, -1):
            wide, narrow = down_dims[i], down_dims[i - 1]
            self.up_blocks.append(nn.ModuleList([res(2 * wide, narrow), res(narrow, narrow), Upsample1d(narrow)]))

        start = down_dims[0]
        self.final_conv = nn.Sequential(
            Conv1dBlock(start, start, kernel_size, n_groups),
            nn.Conv1d(start, input_dim, 1),
        )

    def forward(self, sample: Tensor, timestep: Tensor | int, global_cond: Tensor) -> Tensor:
        """Denoise ``sample`` (B, T, input_dim) at ``timestep`` given ``global_cond`` (B, global_cond_dim)."""
        if sample.ndim != 3 or sample.shape[-1] != self.input_dim:
            raise ValueError(f"sample must have shape (B, T, {self.input_dim}), got {tuple(sample.shape)}")
        batch, horizon = sample.shape[0], sample.shape[1]
        if horizon < 1:
            raise ValueError("sample horizon T must be >= 1")
        if global_cond.ndim != 2 or global_cond.shape != (batch, self.global_cond_dim):
            raise ValueError(
                f"global_cond must have shape ({batch}, {self.global_cond_dim}), got {tuple(global_cond.shape)}"
            )
        timesteps = self._timesteps(timestep, batch, sample.device)

        cond = torch.cat([self.time_mlp(timesteps).to(global_cond.dtype), global_cond], dim=-1)
        x = sample.transpose(1, 2)  # (B, C, T)
        skips: list[Tensor] = []
        for res1, res2, down in self.down_blocks:
            x = res2(res1(x, cond), cond)
            skips.append(x)
            x = down(x)
        skips = skips[1:]  # the full-resolution level feeds the up path only through x
        for block in self.mid_blocks:
            x = block(x, cond)
        for res1, res2, up in self.up_blocks:
            skip = skips.pop()
            x = torch.cat([x[..., : skip.shape[-1]], skip], dim=1)
            x = up(res2(res1(x, cond), cond))
        x = x[..., :horizon]
        return self.final_conv(x).transpose(1, 2)

    @staticmethod
    def _timesteps(timestep: Tensor | int, batch: int, device: torch.device) -> Tensor:
        """Turn an int, a 0-d tensor or a (B,) tensor into a (B,) tensor on ``device``."""
        if not torch.is_tensor(timestep):
            timestep = torch.tensor([timestep], device=device)
        timestep = timestep.to(device)
        if timestep.ndim == 0:
            timestep = timestep[None]
        if timestep.ndim != 1 or timestep.shape[0] not in (1, batch):
            raise ValueError(f"timestep must be an int, a scalar or shape ({batch},), got {tuple(timestep.shape)}")
        return timestep.expand(batch)
