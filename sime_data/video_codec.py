"""MP4 video and still-image codec on PyAV: frames (T, H, W, 3) uint8 <-> H.264 yuv420p files, time ranges, PNG.

General purpose (no dataset format in here): the LeRobot exporter writes several episodes into one file
with `Mp4Writer` and reads one episode back with `decode_video(path, from_s, to_s)`; video playback and
clip export reuse the same calls.

Conventions: frame k of a file has the presentation time k / fps seconds (frames are numbered from 0 across
everything written into one file, so a second sequence appended after T frames starts at T / fps); B-frames
are off, so decode order is display order and `Mp4Writer.frames_written` is exact. H.264 (`libx264`) is used
when this PyAV build has it, else MPEG-4 Part 2 (`mpeg4`); both in yuv420p, which needs even widths and
heights. Colour conversion RGB -> yuv420p -> RGB is lossy on its own (chroma is subsampled): even at a
near-lossless quality setting a frame comes back within roughly 40-42 dB PSNR, not bit-exactly. PNG
(`encode_png` / `decode_image`) is lossless.

PyAV (`av` on PyPI) is imported lazily: this module can be imported without it, and every call that needs
it raises ModuleNotFoundError naming the package when it is missing.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

#: Encoders tried in order when none is named: H.264 first, MPEG-4 Part 2 as the fallback.
PREFERRED_ENCODERS = ("libx264", "mpeg4")
#: Default H.264 constant-rate factor (0 = lossless .. 51; 18 is about visually lossless).
DEFAULT_CRF = 18
#: Default keyframe interval in frames: short, so seeking to any frame decodes at most one extra frame.
DEFAULT_GOP = 2
#: Pixel format of encoded files (the one every player and decoder handles).
DEFAULT_PIX_FMT = "yuv420p"
#: MPEG-4 Part 2 quantiser used when H.264 is not available (2 = best quality .. 31).
MPEG4_QSCALE = 2
#: Slack, in seconds, when comparing frame times with range bounds (far below any frame interval).
TIME_TOLERANCE_S = 1e-4


class VideoError(RuntimeError):
    """A video or image file that cannot be read or written (missing, truncated, corrupt, unsupported)."""


def require_av() -> Any:
    """The `av` module, or ModuleNotFoundError naming the package to install."""
    try:
        import av
    except ModuleNotFoundError as exc:  # pragma: no cover - exercised only without PyAV
        raise ModuleNotFoundError(
            "video encoding/decoding needs the PyAV package `av`, which is not installed: pip install av"
        ) from exc
    return av


def available_encoder(preferred: Sequence[str] = PREFERRED_ENCODERS) -> str:
    """First encoder of `preferred` this PyAV build can write with (VideoError if none)."""
    av = require_av()
    for name in preferred:
        try:
            av.codec.Codec(name, "w")
        except Exception:  # noqa: BLE001 - PyAV raises different errors for unknown codecs across versions
            continue
        return name
    raise VideoError(f"none of the video encoders {list(preferred)} is available in this PyAV build")


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds: size, rate, codec, pixel format, frame count and duration."""

    path: Path
    width: int
    height: int
    fps: Fraction
    codec: str
    pix_fmt: str
    n_frames: int
    duration_s: float


def _as_frames(frames: np.ndarray) -> np.ndarray:
    """`frames` as a (T, H, W, 3) uint8 array (a single (H, W, 3) frame becomes T = 1)."""
    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"video frames must have shape (T, H, W, 3) or (H, W, 3), got {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"video frames must be uint8 RGB, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr)


class Mp4Writer:
    """Streams RGB frames into one MP4 file; several sequences may be appended one after another.

    Use as a context manager (the file is complete only after `close`). Frame k of the file is shown at
    k / fps seconds; `frames_written` before a `write` is the index of its first frame.
    """

    def __init__(self, path: str | os.PathLike, fps: int | Fraction, *, codec: str | None = None,
                 crf: int = DEFAULT_CRF, gop: int = DEFAULT_GOP, pix_fmt: str = DEFAULT_PIX_FMT,
                 threads: int | None = None) -> None:
        self.av = require_av()
        self.path = Path(path)
        self.fps = Fraction(fps).limit_denominator(1001 * 1000)
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.codec = codec or available_encoder()
        self.crf = crf
        self.gop = gop
        self.pix_fmt = pix_fmt
        self.threads = threads
        self.frames_written = 0
        #: bytes of encoded packets handed to the muxer so far (the file on disk may lag behind its buffer)
        self.bytes_encoded = 0
        self._container = self.av.open(str(self.path), "w")
        self._stream: Any = None
        self._shape: tuple[int, int] | None = None

    def _open_stream(self, height: int, width: int) -> None:
        if height % 2 or width % 2:
            raise ValueError(f"{self.pix_fmt} video needs an even width and height, got {width}x{height}")
        options = {"g": str(self.gop)}
        if self.codec in ("libx264", "libx265"):
            options.update(crf=str(self.crf), bf="0")
        elif self.codec == "mpeg4":
            options.update(qscale=str(MPEG4_QSCALE), bf="0")
        if self.threads is not None:
            options["threads"] = str(self.threads)
        stream = self._container.add_stream(self.codec, rate=self.fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, self.pix_fmt
        if self.codec == "mpeg4":  # quality comes from qscale; a bit rate high enough never to cap it
            stream.codec_context.bit_rate = max(1_000_000, width * height * 24 * int(math.ceil(self.fps)))
        self._stream = stream
        self._shape = (height, width)

    def write(self, frames: np.ndarray) -> int:
        """Append frames ((T, H, W, 3) or one (H, W, 3) uint8); returns the file index of the first one."""
        arr = _as_frames(frames)
        if self._stream is None:
            self._open_stream(arr.shape[1], arr.shape[2])
        elif arr.shape[1:3] != self._shape:
            raise ValueError(f"frames of {arr.shape[2]}x{arr.shape[1]} cannot follow frames of "
                             f"{self._shape[1]}x{self._shape[0]} in one video")
        first = self.frames_written
        for frame in arr:
            video_frame = self.av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = self.frames_written
            self._mux(self._stream.encode(video_frame))
            self.frames_written += 1
        return first

    def _mux(self, packets: Iterable[Any]) -> None:
        for packet in packets:
            self.bytes_encoded += packet.size
            self._container.mux(packet)

    def size_bytes(self) -> int:
        """About how big the file is so far: encoded bytes, or the file's size if larger (frames still in the
        encoder are not counted)."""
        try:
            on_disk = self.path.stat().st_size
        except FileNotFoundError:
            on_disk = 0
        return max(on_disk, self.bytes_encoded)

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        if self._container is None:
            return
        try:
            if self._stream is not None:
                self._mux(self._stream.encode())
        finally:
            self._container.close()
            self._container = None

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()


def encode_video(path: str | os.PathLike, frames: np.ndarray | Iterable[np.ndarray], fps: int | Fraction, *,
                 codec: str | None = None, crf: int = DEFAULT_CRF, gop: int = DEFAULT_GOP,
                 pix_fmt: str = DEFAULT_PIX_FMT) -> list[int]:
    """Encode one (T, H, W, 3) uint8 sequence, or several one after another, into an MP4 file.

    Returns the file index of each sequence's first frame (sequence i starts at `starts[i] / fps` seconds).
    """
    sequences = [frames] if isinstance(frames, np.ndarray) else list(frames)
    if not sequences:
        raise ValueError("encode_video needs at least one frame")
    with Mp4Writer(path, fps, codec=codec, crf=crf, gop=gop, pix_fmt=pix_fmt) as writer:
        starts = [writer.write(seq) for seq in sequences]
    if writer.frames_written == 0:
        raise ValueError("encode_video needs at least one frame")
    return starts


def _open_input(path: str | os.PathLike) -> Any:
    """Open a video file for reading, with VideoError naming the file when it cannot be."""
    av = require_av()
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such video file")
    try:
        container = av.open(str(path), "r")
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(f"{path}: cannot be opened as a video (truncated, corrupt or another format): {exc}") from exc
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: holds no video stream")
    return container


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Size, rate, codec, pixel format, frame count and duration of a video file (frames counted when unknown)."""
    container = _open_input(path)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.base_rate or Fraction(0)
        n_frames = int(stream.frames or 0)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        else:
            duration = n_frames / float(rate) if rate else 0.0
        info = VideoInfo(path=Path(path), width=int(stream.width), height=int(stream.height), fps=Fraction(rate),
                         codec=stream.codec_context.codec.canonical_name if stream.codec_context else "",
                         pix_fmt=str(stream.pix_fmt or ""), n_frames=n_frames, duration_s=duration)
    finally:
        container.close()
    if info.n_frames == 0:
        info = VideoInfo(**{**info.__dict__, "n_frames": count_frames(path, exact=True)})
    return info


def count_frames(path: str | os.PathLike, *, exact: bool = False) -> int:
    """Number of frames in a video file: from its header, or by decoding every frame when `exact`."""
    container = _open_input(path)
    try:
        stream = container.streams.video[0]
        if not exact and stream.frames:
            return int(stream.frames)
        return sum(1 for _ in _decoded(container, stream, path))
    finally:
        container.close()


def _decoded(container: Any, stream: Any, path: str | os.PathLike) -> Iterator[Any]:
    """Decoded frames of a stream, with VideoError naming the file for corrupt data."""
    av = require_av()
    try:
        yield from container.decode(stream)
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path}: cannot be decoded (truncated or corrupt): {exc}") from exc


def iter_frames(path: str | os.PathLike, from_s: float | None = None, to_s: float | None = None
                ) -> Iterator[tuple[float, np.ndarray]]:
    """(time in seconds, (H, W, 3) uint8 frame) for each frame shown in [from_s, to_s) (whole file by default)."""
    lo = -math.inf if from_s is None else float(from_s) - TIME_TOLERANCE_S
    hi = math.inf if to_s is None else float(to_s) - TIME_TOLERANCE_S
    container = _open_input(path)
    try:
        stream = container.streams.video[0]
        if from_s is not None and from_s > 0 and stream.time_base is not None:
            try:  # to the keyframe at or before from_s; frames before it are skipped below
                container.seek(int(math.floor(from_s / stream.time_base)), stream=stream, backward=True,
                               any_frame=False)
            except require_av().error.FFmpegError:
                container.seek(0, stream=stream)
        for frame in _decoded(container, stream, path):
            if frame.pts is None:
                continue
            t = float(frame.pts * stream.time_base)
            if t < lo:
                continue
            if t >= hi:
                break
            yield t, frame.to_ndarray(format="rgb24")
    finally:
        container.close()


def decode_video(path: str | os.PathLike, from_s: float | None = None, to_s: float | None = None) -> np.ndarray:
    """Frames shown in [from_s, to_s) seconds of a video (the whole file by default) as (T, H, W, 3) uint8."""
    frames = [frame for _, frame in iter_frames(path, from_s, to_s)]
    if not frames:
        info = probe_video(path)
        return np.zeros((0, info.height, info.width, 3), np.uint8)
    return np.stack(frames)


def decode_video_with_times(path: str | os.PathLike, from_s: float | None = None, to_s: float | None = None
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Like `decode_video`, plus each frame's presentation time in seconds (float64, from the file's start)."""
    pairs = list(iter_frames(path, from_s, to_s))
    if not pairs:
        info = probe_video(path)
        return np.zeros((0, info.height, info.width, 3), np.uint8), np.zeros(0)
    return np.stack([f for _, f in pairs]), np.array([t for t, _ in pairs], dtype=np.float64)


def psnr(reference: np.ndarray, decoded: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two uint8 arrays of one shape (inf when identical)."""
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(decoded, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"psnr needs arrays of one shape, got {a.shape} and {b.shape}")
    mse = float(np.mean((a - b) ** 2)) if a.size else 0.0
    return math.inf if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


def encode_png(frame: np.ndarray) -> bytes:
    """Lossless PNG bytes of one (H, W, 3) uint8 RGB frame."""
    av = require_av()
    arr = np.asarray(frame)
    if arr.ndim != 3 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"encode_png needs one (H, W, 3) uint8 frame, got shape {arr.shape} dtype {arr.dtype}")
    ctx = av.CodecContext.create("png", "w")
    ctx.width, ctx.height, ctx.pix_fmt = arr.shape[1], arr.shape[0], "rgb24"
    packets = list(ctx.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")))
    packets += list(ctx.encode())
    return b"".join(bytes(p) for p in packets)


def decode_image(data: bytes) -> np.ndarray:
    """An encoded still image (PNG, JPEG, ... anything FFmpeg reads) as an (H, W, 3) uint8 RGB array."""
    av = require_av()
    try:
        with av.open(io.BytesIO(data), "r") as container:
            for frame in container.decode(video=0):
                return frame.to_ndarray(format="rgb24")
    except (av.error.FFmpegError, OSError, IndexError) as exc:
        raise VideoError(f"cannot decode image bytes ({len(data)} bytes): {exc}") from exc
    raise VideoError(f"image bytes ({len(data)} bytes) hold no picture")
