"""Robot arm interface: state (TCP pose, joints, gripper width), pose/gripper commands, workspace limits, stop."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from .device import Device


@dataclass(frozen=True)
class Workspace:
    """Axis-aligned box the commanded TCP position is clipped to (metres, robot base frame)."""

    low: tuple[float, float, float]
    high: tuple[float, float, float]

    def __post_init__(self) -> None:
        if len(self.low) != 3 or len(self.high) != 3:
            raise ValueError(f"workspace bounds need 3 values each, got low={self.low}, high={self.high}")
        if any(lo >= hi for lo, hi in zip(self.low, self.high)):
            raise ValueError(f"workspace low must be below high on every axis, got low={self.low}, high={self.high}")

    def clip(self, position: np.ndarray) -> np.ndarray:
        """The position clipped into the box."""
        return np.clip(np.asarray(position, dtype=np.float64), self.low, self.high)

    def contains(self, position: np.ndarray) -> bool:
        """True when the position lies inside the box (boundary included)."""
        p = np.asarray(position, dtype=np.float64)
        return bool(np.all(p >= self.low) and np.all(p <= self.high))


@dataclass(frozen=True)
class ArmState:
    """One reading of the arm: TCP pose [x, y, z, qw, qx, qy, qz], joint positions, gripper opening (m)."""

    tcp_pose: np.ndarray
    joints: np.ndarray
    gripper_width: float
    timestamp: float


class RobotArm(Device, abc.ABC):
    """An arm with a parallel gripper, commanded by absolute TCP poses in its base frame.

    `send_tcp_pose` clips the position into `workspace` before the backend sees it, so no
    backend can be commanded outside it. `max_gripper_width` maps gripper commands in [-1, 1].
    """

    kind = "arm"

    def __init__(self, name: str = "arm", workspace: Workspace | None = None, max_gripper_width: float = 0.085) -> None:
        super().__init__(name)
        self.workspace = workspace
        self.max_gripper_width = float(max_gripper_width)

    def state(self) -> ArmState:
        """Current TCP pose, joints and gripper width."""
        self._check()
        return self._read_state()

    def send_tcp_pose(self, pose: np.ndarray) -> np.ndarray:
        """Command an absolute TCP pose [xyz, qw, qx, qy, qz]; returns the pose actually sent (workspace-clipped)."""
        self._check()
        pose = np.array(pose, dtype=np.float64).ravel()
        if pose.shape != (7,) or not np.all(np.isfinite(pose)):
            raise ValueError(f"a TCP pose is 7 finite numbers [x, y, z, qw, qx, qy, qz], got {pose}")
        if self.workspace is not None:
            pose[:3] = self.workspace.clip(pose[:3])
        pose[3:] /= np.linalg.norm(pose[3:])
        self._send_pose(pose)
        return pose

    def send_gripper_width(self, width: float) -> float:
        """Command the gripper opening in metres (clipped to [0, max_gripper_width]); returns the width sent."""
        self._check()
        width = float(np.clip(width, 0.0, self.max_gripper_width))
        self._send_gripper(width)
        return width

    def go_home(self, pose: np.ndarray | None = None) -> None:
        """Move to the home pose (blocking) and open the gripper; the simulated arm resets its scene instead."""
        self._check()
        self._go_home(None if pose is None else np.asarray(pose, dtype=np.float64))

    def stop(self) -> None:
        """Stop any motion now (safe to call at any time, even when not connected)."""
        if self._connected:
            self._stop()

    def _close(self) -> None:
        try:
            self._stop()
        finally:
            self._disconnect()

    @abc.abstractmethod
    def _read_state(self) -> ArmState: ...

    @abc.abstractmethod
    def _send_pose(self, pose: np.ndarray) -> None: ...

    @abc.abstractmethod
    def _send_gripper(self, width: float) -> None: ...

    @abc.abstractmethod
    def _go_home(self, pose: np.ndarray | None) -> None: ...

    @abc.abstractmethod
    def _stop(self) -> None: ...

    def _disconnect(self) -> None:
        """Release the connection after the final stop (override when the backend needs it)."""
