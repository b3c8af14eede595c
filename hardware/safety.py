"""Action post-processing before the arm: workspace clipping, rotation step limit, gripper hysteresis."""

from __future__ import annotations

import numpy as np

from . import geometry as geo
from .arm import Workspace


class GripperHysteresis:
    """Binary gripper from a continuous command: closes above `close_above`, opens below `open_below`, else keeps."""

    def __init__(self, close_above: float = 0.5, open_below: float = -0.5, closed: bool = False) -> None:
        if open_below >= close_above:
            raise ValueError(f"need open_below < close_above, got {open_below} >= {close_above}")
        self.close_above, self.open_below, self.closed = close_above, open_below, closed

    def __call__(self, command: float) -> float:
        """+1 (closed) or -1 (open) after this command."""
        if not self.closed and command > self.close_above:
            self.closed = True
        elif self.closed and command < self.open_below:
            self.closed = False
        return 1.0 if self.closed else -1.0


class ActionFilter:
    """Makes a predicted 10-D action safe to send: clip into the workspace, limit the turn per step, binarise the gripper."""

    def __init__(self, workspace: Workspace | None, max_rot_step: float | None = None,
                 hysteresis: GripperHysteresis | None = None) -> None:
        self.workspace = workspace
        self.max_rot_step = max_rot_step
        self.hysteresis = hysteresis or GripperHysteresis()
        self._last_rot: np.ndarray | None = None

    def reset(self, tcp_pose: np.ndarray, gripper_closed: bool = False) -> None:
        """Start from the arm's current pose and gripper state."""
        self._last_rot = geo.pose_to_matrix(tcp_pose)[1]
        self.hysteresis.closed = gripper_closed

    def __call__(self, action: np.ndarray) -> np.ndarray:
        """The filtered action (a copy)."""
        out = np.array(action, dtype=np.float64)
        if self.workspace is not None:
            out[:3] = self.workspace.clip(out[:3])
        rot = geo.rot6d_to_matrix(out[3:9])
        if self.max_rot_step is not None and self._last_rot is not None:
            rot = geo.limit_rotation(self._last_rot, rot, self.max_rot_step)
        self._last_rot = rot
        out[3:9] = geo.matrix_to_rot6d(rot)
        out[9] = self.hysteresis(out[9])
        return out
