"""RGB-D camera interface: colour and depth frames with timestamps, and intrinsics."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from .device import Device


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of the colour image (depth is aligned to it)."""

    width: int
    height: int
    fx: float
    fy: float
    ppx: float
    ppy: float

    def matrix(self) -> np.ndarray:
        """3x3 camera matrix K."""
        return np.array([[self.fx, 0.0, self.ppx], [0.0, self.fy, self.ppy], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class CameraFrame:
    """One frame: colour (H, W, 3) uint8 RGB, depth (H, W) uint16 in `depth_scale` metres per unit, time (s)."""

    color: np.ndarray
    depth: np.ndarray | None
    timestamp: float
    depth_scale: float = 0.001


class Camera(Device, abc.ABC):
    """An RGB-D camera; `read()` returns the newest frame, depth aligned to colour."""

    kind = "camera"

    def __init__(self, name: str, width: int, height: int, depth: bool = True) -> None:
        super().__init__(name)
        self.width = int(width)
        self.height = int(height)
        self.depth = bool(depth)

    def read(self) -> CameraFrame:
        """The newest colour (+ depth) frame."""
        self._check()
        return self._read()

    def intrinsics(self) -> Intrinsics:
        """Intrinsics of the colour stream."""
        self._check()
        return self._intrinsics()

    @abc.abstractmethod
    def _read(self) -> CameraFrame: ...

    @abc.abstractmethod
    def _intrinsics(self) -> Intrinsics: ...
