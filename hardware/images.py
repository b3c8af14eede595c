"""Resizing camera frames to the size a policy is trained on (colour: area/bilinear, depth: nearest)."""

from __future__ import annotations

import numpy as np


def _nearest(image: np.ndarray, width: int, height: int) -> np.ndarray:
    rows = (np.arange(height) * image.shape[0] / height + image.shape[0] / height / 2).astype(int)
    cols = (np.arange(width) * image.shape[1] / width + image.shape[1] / width / 2).astype(int)
    return np.ascontiguousarray(image[np.clip(rows, 0, image.shape[0] - 1)][:, np.clip(cols, 0, image.shape[1] - 1)])


def resize_color(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> (height, width, 3); Pillow's area filter when installed, else nearest neighbour."""
    if image.shape[:2] == (height, width):
        return image
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        return _nearest(image, width, height)
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BOX))


def resize_depth(depth: np.ndarray, width: int, height: int) -> np.ndarray:
    """Depth (H, W) -> (height, width) by nearest neighbour (no blending across object edges)."""
    if depth.shape == (height, width):
        return depth
    return _nearest(depth, width, height)
