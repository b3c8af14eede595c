"""Observation encoder: image keys through crop + ResNet18GN, low-dim keys passed through, all flattened over time.

Per observation step the features are laid out as
``[image features of each image key (sorted by key), low-dim values of each low-dim key (sorted by key)]``
and the ``n_obs_steps`` blocks are concatenated in time order, giving ``(B, output_dim)``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from .vision import RandomCrop, ResNet18GN

__all__ = ["ObservationEncoder"]

DEFAULT_CROP_FRACTION = 0.9


def default_crop_hw(height: int, width: int) -> tuple[int, int]:
    """Default crop size: about 90% of each side (84x84 -> 76x76)."""
    return max(round(DEFAULT_CROP_FRACTION * height), 1), max(round(DEFAULT_CROP_FRACTION * width), 1)


class ObservationEncoder(nn.Module):
    """Encode a dict of observation histories into one flat conditioning vector per sample."""

    def __init__(
        self,
        lowdim_dims: Mapping[str, int],
        image_shapes: Mapping[str, tuple[int, int, int]],
        n_obs_steps: int,
        image_feature_dim: int = 512,
        crop_hw: tuple[int, int] | None = None,
        share_image_encoder: bool = False,
    ) -> None:
        """Build one encoder (or one shared) per image key; ``image_shapes`` are (H, W, C) as stored."""
        super().__init__()
        if n_obs_steps < 1:
            raise ValueError(f"n_obs_steps must be >= 1, got {n_obs_steps}")
        overlap = set(lowdim_dims) & set(image_shapes)
        if overlap:
            raise ValueError(f"keys declared both low-dim and image: {sorted(overlap)}")
        if not lowdim_dims and not image_shapes:
            raise ValueError("ObservationEncoder needs at least one observation key")
        for key, dim in lowdim_dims.items():
            if int(dim) < 1:
                raise ValueError(f"low-dim key {key!r} has non-positive dim {dim}")
        for key, shape in image_shapes.items():
            if len(shape) != 3:
                raise ValueError(f"image key {key!r} shape must be (H, W, C), got {tuple(shape)}")

        self.n_obs_steps = int(n_obs_steps)
        self.lowdim_keys: tuple[str, ...] = tuple(sorted(lowdim_dims))
        self.image_keys: tuple[str, ...] = tuple(sorted(image_shapes))
        self.lowdim_dims = {k: int(lowdim_dims[k]) for k in self.lowdim_keys}
        self.image_shapes = {k: tuple(int(v) for v in image_shapes[k]) for k in self.image_keys}
        self.image_feature_dim = int(image_feature_dim)
        self.share_image_encoder = bool(share_image_encoder)

        # Crops hold no parameters; ModuleLists are indexed in sorted image-key order.
        self.crops = nn.ModuleList()
        for key in self.image_keys:
            h, w, _ = self.image_shapes[key]
            hw = tuple(crop_hw) if crop_hw is not None else default_crop_hw(h, w)
            if hw[0] > h or hw[1] > w:
                raise ValueError(f"crop {hw} is larger than image key {key!r} of size ({h}, {w})")
            self.crops.append(RandomCrop(hw))

        self.image_encoders = nn.ModuleList()
        if self.image_keys:
            channels = {self.image_shapes[k][2] for k in self.image_keys}
            if self.share_image_encoder:
                if len(channels) != 1:
                    raise ValueError(f"a shared image encoder needs one channel count, got {sorted(channels)}")
                self.image_encoders.append(ResNet18GN(channels.pop(), self.image_feature_dim))
            else:
                for key in self.image_keys:
                    self.image_encoders.append(ResNet18GN(self.image_shapes[key][2], self.image_feature_dim))

        per_step = [True] * (self.image_feature_dim * len(self.image_keys))
        per_step += [False] * sum(self.lowdim_dims.values())
        self._step_dim = len(per_step)
        mask = torch.tensor(per_step * self.n_obs_steps, dtype=torch.bool)
        self.register_buffer("_image_feature_mask", mask, persistent=False)

    @property
    def output_dim(self) -> int:
        """Length of the flat feature vector returned by forward."""
        return self._step_dim * self.n_obs_steps

    @property
    def image_feature_mask(self) -> Tensor:
        """Bool mask (output_dim,) that is True where a feature dimension comes from an image encoder."""
        return self._image_feature_mask

    def forward(self, obs: Mapping[str, Tensor]) -> Tensor:
        """Encode ``obs`` (low-dim (B, n_obs_steps, D), images (B, n_obs_steps, H, W, C) in [0, 255]) to (B, output_dim)."""
        self._check_keys(obs)
        batch = self._batch_size(obs)
        parts: list[Tensor] = []
        for i, key in enumerate(self.image_keys):
            parts.append(self._encode_images(i, key, obs[key], batch))
        dtype = parts[0].dtype if parts else None
        for key in self.lowdim_keys:
            x = obs[key]
            expected = (batch, self.n_obs_steps, self.lowdim_dims[key])
            if tuple(x.shape) != expected:
                raise ValueError(f"low-dim key {key!r} must have shape {expected}, got {tuple(x.shape)}")
            if dtype is None:
                dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
            parts.append(x.to(dtype))
        return torch.cat(parts, dim=-1).reshape(batch, self.output_dim)

    def _encode_images(self, index: int, key: str, images: Tensor, batch: int) -> Tensor:
        """(B, T, H, W, C) in [0, 255] -> (B, T, image_feature_dim)."""
        expected = (batch, self.n_obs_steps, *self.image_shapes[key])
        if tuple(images.shape) != expected:
            raise ValueError(f"image key {key!r} must have shape {expected}, got {tuple(images.shape)}")
        encoder = self.image_encoders[0 if self.share_image_encoder else index]
        param = next(encoder.parameters())
        x = images.to(param.device).reshape(batch * self.n_obs_steps, *self.image_shapes[key]).permute(0, 3, 1, 2)
        x = self.crops[index](x).to(param.dtype).div(255.0)  # crop first: fewer pixels to convert
        feats = encoder(x)
        return feats.reshape(batch, self.n_obs_steps, self.image_feature_dim)

    def _check_keys(self, obs: Mapping[str, Tensor]) -> None:
        """Raise KeyError naming missing and unexpected observation keys."""
        expected = set(self.lowdim_keys) | set(self.image_keys)
        given = set(obs)
        missing, extra = sorted(expected - given), sorted(given - expected)
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing observation keys {missing}")
            if extra:
                parts.append(f"unexpected observation keys {extra}")
            raise KeyError("; ".join(parts) + f" (expected {sorted(expected)})")

    def _batch_size(self, obs: Mapping[str, Tensor]) -> int:
        """Batch size shared by all observation tensors."""
        sizes = {key: int(obs[key].shape[0]) if obs[key].ndim else -1 for key in obs}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"observation tensors disagree on batch size: {sizes}")
        return next(iter(sizes.values()))
