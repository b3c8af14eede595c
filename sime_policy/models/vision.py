"""Image backbone (ResNet-18 layout with GroupNorm) and random-crop augmentation, in plain torch."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["RandomCrop", "ResNet18GN"]


def _group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 16 channels per group (at least one group)."""
    return nn.GroupNorm(max(channels // 16, 1), channels)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with GroupNorm, projection shortcut when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        """Build the block; ``stride`` 2 halves the spatial size."""
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = _group_norm(out_channels)
        self.relu = nn.ReLU(inplace=True)
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                _group_norm(out_channels),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """(B, in, H, W) -> (B, out, H / stride, W / stride)."""
        h = self.relu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return self.relu(h + self.shortcut(x))


class ResNet18GN(nn.Module):
    """ResNet-18 with GroupNorm and global average pooling: images (B, C, H, W) in [0, 1] -> (B, feature_dim)."""

    BACKBONE_DIM = 512

    def __init__(self, in_channels: int = 3, feature_dim: int = 512) -> None:
        """Build the backbone; a final Linear is added only when ``feature_dim`` != 512."""
        super().__init__()
        self.in_channels = in_channels
        self.feature_dim = feature_dim
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False),
            _group_norm(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages = []
        channels = 64
        for i, width in enumerate((64, 128, 256, 512)):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(channels, width, stride), BasicBlock(width, width, 1)))
            channels = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.proj: nn.Module = (
            nn.Identity() if feature_dim == self.BACKBONE_DIM else nn.Linear(self.BACKBONE_DIM, feature_dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Encode images (B, C, H, W) into features (B, feature_dim)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected images (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        h = self.stages(self.stem(x))
        return self.proj(self.pool(h).flatten(1))


class RandomCrop(nn.Module):
    """Crop (B, C, H, W) images to ``crop_hw``: an independent random crop per image in train mode, centre crop in eval."""

    def __init__(self, crop_hw: tuple[int, int]) -> None:
        """Build the crop; offsets are drawn from torch's global generator (seeded by torch.manual_seed)."""
        super().__init__()
        h, w = (int(v) for v in crop_hw)
        if h < 1 or w < 1:
            raise ValueError(f"crop size must be positive, got {crop_hw}")
        self.crop_hw = (h, w)

    def forward(self, x: Tensor) -> Tensor:
        """Return crops of shape (B, C, crop_h, crop_w)."""
        if x.ndim != 4:
            raise ValueError(f"expected images (B, C, H, W), got {tuple(x.shape)}")
        batch, _, height, width = x.shape
        ch, cw = self.crop_hw
        if ch > height or cw > width:
            raise ValueError(f"crop {self.crop_hw} is larger than the images ({height}, {width})")
        if (ch, cw) == (height, width):
            return x
        if not self.training:
            top, left = (height - ch) // 2, (width - cw) // 2
            return x[:, :, top : top + ch, left : left + cw]
        tops = torch.randint(0, height - ch + 1, (batch,), device=x.device)
        lefts = torch.randint(0, width - cw + 1, (batch,), device=x.device)
        rows = tops[:, None] + torch.arange(ch, device=x.device)  # (B, ch)
        cols = lefts[:, None] + torch.arange(cw, device=x.device)  # (B, cw)
        b = torch.arange(batch, device=x.device)[:, None, None]
        # Advanced indices separated by a slice put their broadcast dims first: (B, ch, cw, C).
        return x[b, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        """Show the crop size in the module printout."""
        return f"crop_hw={self.crop_hw}"
