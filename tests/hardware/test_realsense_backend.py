"""The RealSense backend against a stand-in `pyrealsense2` module (a simulated D435 with pyrealsense2's names)."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest

from hardware.backends.realsense import RealSenseCamera, connected_serials
from hardware.errors import DeviceNotFoundError


def make_rs(serials=("135122079702",)) -> types.ModuleType:
    """pyrealsense2-like module: devices by serial, a pipeline streaming RGB8 + Z16, align to colour."""
    rs = types.ModuleType("pyrealsense2")
    rs.camera_info = SimpleNamespace(serial_number="serial_number")
    rs.stream = SimpleNamespace(color="color", depth="depth")
    rs.format = SimpleNamespace(rgb8="rgb8", z16="z16")
    rs.calls = []

    class Device:
        def __init__(self, serial: str) -> None:
            self.serial = serial

        def get_info(self, what: str) -> str:
            return self.serial

        def first_depth_sensor(self):
            return SimpleNamespace(get_depth_scale=lambda: 0.00025)

    rs.context = lambda: SimpleNamespace(query_devices=lambda: [Device(s) for s in serials])

    class Config:
        def __init__(self) -> None:
            self.streams = {}

        def enable_device(self, serial: str) -> None:
            self.serial = serial

        def enable_stream(self, stream: str, width: int, height: int, fmt: str, fps: int) -> None:
            self.streams[stream] = (width, height, fmt, fps)

    class Frame:
        def __init__(self, data: np.ndarray, stamp_ms: float) -> None:
            self.data, self.stamp_ms = data, stamp_ms

        def get_data(self) -> np.ndarray:
            return self.data

        def get_timestamp(self) -> float:
            return self.stamp_ms

    class Frames:
        def __init__(self, config: Config, n: int, aligned: bool = False) -> None:
            self.config, self.n, self.aligned = config, n, aligned

        def get_color_frame(self) -> Frame:
            w, h, _, _ = self.config.streams["color"]
            return Frame(np.full((h, w, 3), self.n, np.uint8), 1000.0 * self.n + 0.5)

        def get_depth_frame(self) -> Frame:
            w, h, _, _ = self.config.streams["depth"]
            return Frame(np.full((h, w), 4000 + (1 if self.aligned else 0), np.uint16), 1000.0 * self.n)

    class Pipeline:
        def start(self, config: Config):
            if config.streams["color"][3] > 60:
                raise RuntimeError("Couldn't resolve requests")
            self.config, self.n = config, 0
            intr = SimpleNamespace(width=config.streams["color"][0], height=config.streams["color"][1], fx=600.0,
                                   fy=601.0, ppx=320.5, ppy=240.5)
            video = SimpleNamespace(get_intrinsics=lambda: intr)
            return SimpleNamespace(get_device=lambda: Device(config.serial),
                                   get_stream=lambda s: SimpleNamespace(as_video_stream_profile=lambda: video))

        def wait_for_frames(self, timeout_ms: int) -> Frames:
            self.n += 1
            return Frames(self.config, self.n)

        def stop(self) -> None:
            rs.calls.append("stop")

    class Align:
        def __init__(self, to: str) -> None:
            assert to == "color"

        def process(self, frames: Frames) -> Frames:
            return Frames(frames.config, frames.n, aligned=True)

    rs.config, rs.pipeline, rs.align = Config, Pipeline, Align
    return rs


def test_streams_aligned_depth_with_timestamps(monkeypatch) -> None:
    rs = make_rs()
    monkeypatch.setitem(sys.modules, "pyrealsense2", rs)
    assert connected_serials() == ["135122079702"]
    with RealSenseCamera("135122079702", "wrist", 640, 480, 30) as cam:
        first, second = cam.read(), cam.read()
        assert first.color.shape == (480, 640, 3) and first.color.dtype == np.uint8
        assert first.depth.shape == (480, 640) and first.depth[0, 0] == 4001  # the aligned depth frame
        assert first.depth_scale == 0.00025 and second.timestamp - first.timestamp == pytest.approx(1.0)
        intr = cam.intrinsics()
        assert (intr.width, intr.height, intr.fx, intr.ppy) == (640, 480, 600.0, 240.5)
    assert rs.calls == ["stop"]
    with RealSenseCamera("135122079702", "side", 640, 480, 30, depth=False) as cam:
        assert cam.read().depth is None


def test_wrong_serial_and_bad_mode_are_clear(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pyrealsense2", make_rs(serials=("111",)))
    with pytest.raises(DeviceNotFoundError, match=r"no RealSense with serial 222 connected \(connected: \['111'\]\)"):
        RealSenseCamera("222", "wrist").connect()
    with pytest.raises(DeviceNotFoundError, match="cannot stream 640x480@90"):
        RealSenseCamera("111", "wrist", fps=90).connect()
    monkeypatch.setitem(sys.modules, "pyrealsense2", make_rs(serials=()))
    with pytest.raises(DeviceNotFoundError, match="connected: none"):
        RealSenseCamera("111", "wrist").connect()
