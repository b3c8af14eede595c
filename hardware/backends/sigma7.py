"""Force Dimension sigma.7 haptic device through the SDK's C library (libdhd) via ctypes.

Calls ``dhdOpen``, ``dhdGetPosition``, ``dhdGetOrientationFrame``, ``dhdGetGripperAngleRad``,
``dhdClose`` and ``dhdErrorGetLastStr``. The library path comes from the rig config
(`teleop.library`), else `$SIME_DHD_LIBRARY`, else the loader's default search for libdhd.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time

import numpy as np

from ..errors import BackendUnavailableError, DeviceNotFoundError
from ..teleoperator import TeleopCommand, Teleoperator


def load_dhd(path: str | None = None) -> ctypes.CDLL:
    """The libdhd shared library (BackendUnavailableError naming where it looked)."""
    candidates = [path or os.environ.get("SIME_DHD_LIBRARY") or ctypes.util.find_library("dhd") or "libdhd.so"]
    try:
        lib = ctypes.CDLL(candidates[0])
    except OSError as exc:
        raise BackendUnavailableError(
            f"the Force Dimension SDK library could not be loaded from {candidates[0]!r} ({exc}); install the SDK and "
            "set teleop.library in the rig config (or $SIME_DHD_LIBRARY) to its libdhd.so") from None
    c_double_p = ctypes.POINTER(ctypes.c_double)
    lib.dhdOpen.restype = ctypes.c_int
    lib.dhdClose.argtypes = [ctypes.c_byte]
    lib.dhdGetPosition.argtypes = [c_double_p, c_double_p, c_double_p, ctypes.c_byte]
    lib.dhdGetOrientationFrame.argtypes = [ctypes.POINTER(ctypes.c_double * 9), ctypes.c_byte]
    lib.dhdGetGripperAngleRad.argtypes = [c_double_p, ctypes.c_byte]
    lib.dhdErrorGetLastStr.restype = ctypes.c_char_p
    return lib


class Sigma7(Teleoperator):
    """sigma.7 handle as a teleoperator: position/rotation offsets scaled by `scale`, gripper angle -> command."""

    def __init__(self, name: str = "teleop", library: str | None = None, scale: float = 1.0,
                 open_angle: float = 0.45, closed_angle: float = 0.05, axes: np.ndarray | None = None) -> None:
        super().__init__(name)
        self.library = library
        self.scale = float(scale)
        #: rotation taking device-frame vectors to robot-base-frame vectors (identity: frames aligned)
        self.axes = np.eye(3) if axes is None else np.asarray(axes, dtype=np.float64)
        self.open_angle = float(open_angle)
        self.closed_angle = float(closed_angle)
        self._lib: ctypes.CDLL | None = None
        self._id = -1

    def _error(self) -> str:
        return (self._lib.dhdErrorGetLastStr() or b"unknown error").decode(errors="replace")

    def _connect(self) -> None:
        self._lib = load_dhd(self.library)
        device = self._lib.dhdOpen()
        if device < 0:
            raise DeviceNotFoundError(f"no Force Dimension device could be opened: {self._error()}")
        self._id = device
        self._base = self._pose()

    def _close(self) -> None:
        if self._lib is not None and self._id >= 0:
            self._lib.dhdClose(self._id)
        self._id = -1

    def _pose(self) -> tuple[np.ndarray, np.ndarray]:
        x, y, z = ctypes.c_double(), ctypes.c_double(), ctypes.c_double()
        frame = (ctypes.c_double * 9)()
        if self._lib.dhdGetPosition(ctypes.byref(x), ctypes.byref(y), ctypes.byref(z), self._id) < 0:
            raise DeviceNotFoundError(f"sigma.7 position read failed: {self._error()}")
        if self._lib.dhdGetOrientationFrame(ctypes.byref(frame), self._id) < 0:
            raise DeviceNotFoundError(f"sigma.7 orientation read failed: {self._error()}")
        return np.array([x.value, y.value, z.value]), np.array(frame[:], dtype=np.float64).reshape(3, 3)

    def _gripper(self) -> float:
        angle = ctypes.c_double()
        if self._lib.dhdGetGripperAngleRad(ctypes.byref(angle), self._id) < 0:
            raise DeviceNotFoundError(f"sigma.7 gripper read failed: {self._error()}")
        closed = (self.open_angle - angle.value) / (self.open_angle - self.closed_angle)
        return float(np.clip(2.0 * closed - 1.0, -1.0, 1.0))

    def _reset_base(self) -> None:
        self._base = self._pose()

    def _read(self) -> TeleopCommand:
        pos, rot = self._pose()
        base_pos, base_rot = self._base
        delta_pos = self.axes @ (self.scale * (pos - base_pos))
        # the handle's turn since engaging, expressed in the device frame, then re-expressed in the robot frame
        turn = self.axes @ (rot @ base_rot.T) @ self.axes.T
        return TeleopCommand(delta_pos, turn, self._gripper(), time.time())
