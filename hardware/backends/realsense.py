"""Intel RealSense D400 cameras through `pyrealsense2`: colour + depth aligned to colour, chosen by serial."""

from __future__ import annotations

import numpy as np

from ..camera import Camera, CameraFrame, Intrinsics
from ..errors import DeviceNotFoundError
from ._lazy import require

INSTALL = "pip install -e '.[hardware]' (and apt-get install libusb-1.0-0)"


def connected_serials() -> list[str]:
    """Serial numbers of the RealSense devices plugged in (BackendUnavailableError without pyrealsense2)."""
    rs = require("pyrealsense2", INSTALL)
    return [dev.get_info(rs.camera_info.serial_number) for dev in rs.context().query_devices()]


class RealSenseCamera(Camera):
    """One RealSense camera streaming RGB8 colour and Z16 depth, depth aligned to the colour image."""

    def __init__(self, serial: str, name: str, width: int = 640, height: int = 480, fps: int = 30, depth: bool = True,
                 timeout_ms: int = 2000) -> None:
        super().__init__(name, width, height, depth)
        if not serial:
            raise ValueError(f"camera {name!r}: a RealSense camera needs its serial number")
        self.serial = str(serial)
        self.fps = int(fps)
        self.timeout_ms = int(timeout_ms)
        self._pipeline = None

    def _connect(self) -> None:
        rs = require("pyrealsense2", INSTALL)
        serials = connected_serials()
        if self.serial not in serials:
            raise DeviceNotFoundError(f"camera {self.name!r}: no RealSense with serial {self.serial} connected "
                                      f"(connected: {serials or 'none'})")
        config = rs.config()
        config.enable_device(self.serial)
        config.enable_stream(rs.stream.color, self.width, self.height, rs.format.rgb8, self.fps)
        if self.depth:
            config.enable_stream(rs.stream.depth, self.width, self.height, rs.format.z16, self.fps)
        pipeline = rs.pipeline()
        try:
            profile = pipeline.start(config)
        except RuntimeError as exc:
            raise DeviceNotFoundError(f"camera {self.name!r} ({self.serial}) cannot stream "
                                      f"{self.width}x{self.height}@{self.fps}: {exc}") from None
        self._pipeline = pipeline
        self._align = rs.align(rs.stream.color) if self.depth else None
        self._depth_scale = profile.get_device().first_depth_sensor().get_depth_scale() if self.depth else 0.001
        intr = profile.get_stream(rs.stream.color).as_video_stream_profile().get_intrinsics()
        self._intr = Intrinsics(intr.width, intr.height, intr.fx, intr.fy, intr.ppx, intr.ppy)

    def _close(self) -> None:
        if self._pipeline is not None:
            self._pipeline.stop()
            self._pipeline = None

    def _read(self) -> CameraFrame:
        frames = self._pipeline.wait_for_frames(self.timeout_ms)
        if self._align is not None:
            frames = self._align.process(frames)
        color = frames.get_color_frame()
        depth = np.asanyarray(frames.get_depth_frame().get_data()).copy() if self._align is not None else None
        return CameraFrame(np.asanyarray(color.get_data()).copy(), depth, color.get_timestamp() / 1000.0,
                           self._depth_scale)

    def _intrinsics(self) -> Intrinsics:
        return self._intr
