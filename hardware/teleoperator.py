"""Teleoperator interface: a pose offset from where the operator engaged, plus a gripper command."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from .device import Device


@dataclass(frozen=True)
class TeleopCommand:
    """Offset of the handle since `reset_base()`, in the robot base frame: translation (m), rotation (3x3,
    applied on the left: a turn about a base axis), and the gripper command in [-1 open, +1 closed]."""

    delta_pos: np.ndarray
    delta_rot: np.ndarray
    gripper: float
    timestamp: float

    def apply(self, base_pos: np.ndarray, base_rot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Target (position, rotation): the engage-time TCP pose moved by delta_pos and turned by delta_rot."""
        return np.asarray(base_pos) + self.delta_pos, self.delta_rot @ np.asarray(base_rot)


class Teleoperator(Device, abc.ABC):
    """A device the operator moves; `reset_base()` makes its current pose the zero offset."""

    kind = "teleoperator"

    def reset_base(self) -> None:
        """Take the handle's current pose as the origin of later offsets."""
        self._check()
        self._reset_base()

    def read(self) -> TeleopCommand:
        """The current offset and gripper command."""
        self._check()
        return self._read()

    @abc.abstractmethod
    def _reset_base(self) -> None: ...

    @abc.abstractmethod
    def _read(self) -> TeleopCommand: ...
