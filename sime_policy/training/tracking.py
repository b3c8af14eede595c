"""Experiment tracking: scalars, texts, summaries and videos of training runs and SIME rounds, to TensorBoard and wandb.

`make_tracker("tensorboard,wandb", run_dir, run_name, config)` returns one `Tracker` writing to every backend
named; ``"none"`` returns one that drops everything. Backends open lazily, on the first thing logged, so a
command refused before any work leaves no tracking files behind.

- TensorBoard: event files in ``<run_dir>/tensorboard`` (``torch.utils.tensorboard.SummaryWriter``).
- wandb: ``wandb.init(mode="offline")`` unless ``$WANDB_MODE`` says otherwise, so it never needs the network;
  the run lands in ``<run_dir>/wandb/offline-run-*`` (or under ``$WANDB_DIR``); upload it later with
  ``wandb sync``. Console capture is off (``train.log`` keeps the log).

Videos: TensorBoard shows a video as an animated GIF stored in an image summary (``Summary.Image`` with the
GIF bytes as ``encoded_image_string``; this is what ``SummaryWriter.add_video`` writes, see
torch/utils/tensorboard/summary.py ``make_video``), so the GIF is encoded here with Pillow and the moviepy
dependency of ``add_video`` is not needed; wandb gets the same GIF as a file (``wandb.Video(path)``).
"""

from __future__ import annotations

import html
import importlib.util
import io
import logging
import math
import os
import random
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

log = logging.getLogger(__name__)

NONE = "none"
BACKENDS = ("tensorboard", "wandb")
ENV_VAR = "SIME_TRACK"
INSTALL_HINT = 'pip install -e ".[track]"'
TENSORBOARD_DIR = "tensorboard"
WANDB_PROJECT = "sime"
#: the module each backend needs (checked before any work starts)
_REQUIRES = {"tensorboard": ("tensorboard", "torch"), "wandb": ("wandb",)}


class TrackingError(ValueError):
    """A tracking spec names an unknown backend, or a backend whose package is not installed."""


# ---------------------------------------------------------------------- spec
def parse_track_spec(spec: str | None) -> tuple[str, ...]:
    """Backend names of a spec such as 'tensorboard', 'wandb', 'tensorboard,wandb' ('none' or empty: none)."""
    text = (spec or "").strip().lower()
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names or names == [NONE]:
        return ()
    if NONE in names:
        raise TrackingError(f"tracking spec {spec!r}: 'none' cannot be combined with other backends")
    unknown = [name for name in names if name not in BACKENDS]
    if unknown:
        raise TrackingError(f"unknown tracking backend {unknown[0]!r} in {spec!r}; choose none, "
                            f"{', '.join(BACKENDS)}, or several comma-separated (e.g. tensorboard,wandb)")
    return tuple(name for name in BACKENDS if name in names)  # canonical order, duplicates dropped


def check_track_spec(spec: str | None) -> str:
    """The canonical form of a spec ('none', 'tensorboard,wandb', ...) once its backends' packages are found."""
    names = parse_track_spec(spec)
    for name in names:
        missing = [module for module in _REQUIRES[name] if importlib.util.find_spec(module) is None]
        if missing:
            raise TrackingError(f"--track {name} needs the {missing[0]!r} package, which is not installed: "
                                f"{INSTALL_HINT}")
    return ",".join(names) if names else NONE


def scalar_items(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Finite numbers of a mapping as floats (bools as 0/1), keys prefixed with 'prefix/'; others left out."""
    out: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, (bool, np.bool_)):
            value = float(value)
        if not isinstance(value, (int, float, np.integer, np.floating)):
            continue
        value = float(value)
        if math.isfinite(value):
            out[f"{prefix}/{key}" if prefix else str(key)] = value
    return out


# ---------------------------------------------------------------------- video
def check_frames(frames: Any) -> np.ndarray:
    """Frames as a (T, H, W, 3) uint8 array, or ValueError naming what is wrong."""
    array = np.asarray(frames)
    if array.ndim != 4 or array.shape[-1] != 3 or array.shape[0] < 1:
        raise ValueError(f"a video needs frames of shape (T, H, W, 3) with T >= 1, got {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"video frames must be uint8 RGB, got {array.dtype}")
    return array


def encode_gif(frames: Any, fps: float) -> bytes:
    """An animated, looping GIF of (T, H, W, 3) uint8 frames at `fps` (identical consecutive frames merge)."""
    from PIL import Image

    array = check_frames(frames)
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    images = [Image.fromarray(frame) for frame in array]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(20, int(round(1000.0 / fps))), loop=0)
    return buffer.getvalue()


# ---------------------------------------------------------------------- trackers
class Tracker:
    """Where a run's metrics go; this base class drops everything (the 'none' backend)."""

    #: True when something is written somewhere (callers skip work whose only use is tracking otherwise)
    active: bool = False

    def start(self) -> None:
        """Open the backends now (otherwise the first thing logged opens them)."""

    def log_scalars(self, step: int, values: Mapping[str, Any], prefix: str = "") -> None:
        """Record the finite numbers of `values` at `step` (keys 'prefix/key'; other values are left out)."""

    def log_text(self, tag: str, text: str, step: int = 0) -> None:
        """Record a text (e.g. a fit report's summary line) at `step`."""

    def log_summary(self, values: Mapping[str, Any]) -> None:
        """Record the run's final figures (key -> number or text)."""

    def log_video(self, tag: str, frames: Any, fps: float, step: int) -> None:
        """Record a (T, H, W, 3) uint8 video at `step`."""

    def locations(self) -> list[str]:
        """Where this tracker has written, in words (empty when nothing was logged)."""
        return []

    def close(self) -> None:
        """Flush and close (a wandb run is finished); safe to call twice."""

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


NullTracker = Tracker


class TensorBoardTracker(Tracker):
    """Event files in `log_dir`, written by torch's SummaryWriter (opened on the first thing logged)."""

    active = True

    def __init__(self, log_dir: str | os.PathLike, flush_secs: int = 30) -> None:
        self.log_dir = Path(log_dir)
        self.flush_secs = int(flush_secs)
        self._writer: Any = None
        self._closed = False
        self._opened = False

    def _open(self) -> Any:
        if self._closed:
            raise RuntimeError(f"the TensorBoard tracker of {self.log_dir} is closed")
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.log_dir), flush_secs=self.flush_secs)
            self._opened = True
        return self._writer

    def start(self) -> None:
        """Create the event file."""
        self._open()

    def log_scalars(self, step: int, values: Mapping[str, Any], prefix: str = "") -> None:
        """One scalar summary per finite value."""
        items = scalar_items(values, prefix)
        if items:
            writer = self._open()
            for tag, value in items.items():
                writer.add_scalar(tag, value, int(step))

    def log_text(self, tag: str, text: str, step: int = 0) -> None:
        """A text summary (shown in TensorBoard's Text tab)."""
        self._open().add_text(tag, text, int(step))

    def log_summary(self, values: Mapping[str, Any]) -> None:
        """The final figures as a two-column markdown table under the text tag 'summary'."""
        rows = "\n".join(f"| {key} | {value} |" for key, value in values.items() if value is not None)
        if rows:
            self._open().add_text("summary", "| figure | value |\n|---|---|\n" + rows, 0)

    def log_video(self, tag: str, frames: Any, fps: float, step: int) -> None:
        """An image summary holding the video as an animated GIF (how TensorBoard displays videos)."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        array = check_frames(frames)
        image = Summary.Image(height=int(array.shape[1]), width=int(array.shape[2]), colorspace=3,
                              encoded_image_string=encode_gif(array, fps))
        self._open().file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), int(step))

    def locations(self) -> list[str]:
        """The event directory (once written)."""
        return [f"tensorboard --logdir {self.log_dir}"] if self._opened else []

    def close(self) -> None:
        """Flush and close the event file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._closed = True


_open_wandb_runs = 0  # wandb runs of this process not yet finished: the service stops when it reaches 0


@contextmanager
def _global_rng_kept() -> Iterator[None]:
    """Leave Python's and numpy's global random states as they were (tracking must not change any result)."""
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


class WandbTracker(Tracker):
    """One wandb run (offline unless $WANDB_MODE says otherwise), started on the first thing logged."""

    active = True

    def __init__(self, run_dir: str | os.PathLike, name: str, config: Mapping[str, Any] | None = None, *,
                 group: str | None = None, job_type: str | None = None) -> None:
        self.run_dir = Path(os.environ.get("WANDB_DIR") or run_dir)
        self.name, self.group, self.job_type = name, group, job_type
        self.config = dict(config or {})
        self._run: Any = None
        self._closed = False
        self.run_path: Path | None = None  # the run's directory once started

    def _open(self) -> Any:
        global _open_wandb_runs
        if self._closed:
            raise RuntimeError(f"the wandb tracker of run {self.name!r} is closed")
        if self._run is None:
            import wandb

            self.run_dir.mkdir(parents=True, exist_ok=True)
            mode = None if os.environ.get("WANDB_MODE") else "offline"  # None: wandb reads $WANDB_MODE
            with _global_rng_kept():
                try:
                    self._run = wandb.init(project=os.environ.get("WANDB_PROJECT") or WANDB_PROJECT,
                                           dir=str(self.run_dir), name=self.name, group=self.group,
                                           job_type=self.job_type, config=self.config, mode=mode,
                                           reinit="create_new", settings=wandb.Settings(console="off"))
                except Exception as exc:
                    hint = " (unset WANDB_MODE for an offline run that needs no network)" if mode is None else ""
                    raise TrackingError(f"could not start the wandb run {self.name!r} in {self.run_dir}: "
                                        f"{exc}{hint}") from exc
            _open_wandb_runs += 1
            self.run_path = Path(self._run.dir).parent
        return self._run

    def start(self) -> None:
        """Start the wandb run."""
        self._open()

    def log_scalars(self, step: int, values: Mapping[str, Any], prefix: str = "") -> None:
        """One history row at `step` (wandb drops rows whose step is below one already logged)."""
        items = scalar_items(values, prefix)
        if items:
            self._open().log(items, step=int(step))

    def log_text(self, tag: str, text: str, step: int = 0) -> None:
        """The text as preformatted HTML at `step`."""
        import wandb

        run = self._open()
        run.log({tag: wandb.Html(f"<pre>{html.escape(text)}</pre>")}, step=int(step))

    def log_summary(self, values: Mapping[str, Any]) -> None:
        """The run summary (shown in the runs table)."""
        if values:
            self._open().summary.update({k: v for k, v in values.items() if v is not None})

    def log_video(self, tag: str, frames: Any, fps: float, step: int) -> None:
        """The video as a GIF (wandb writes it into the run's media folder; no video encoder needed)."""
        import wandb

        data = encode_gif(frames, fps)
        self._open().log({tag: wandb.Video(io.BytesIO(data), format="gif")}, step=int(step))

    def locations(self) -> list[str]:
        """The run directory, once the run has started."""
        where = self.run_path
        if where is None:
            return []
        return [f"wandb run {where}" + (f" (upload: wandb sync {where})" if "offline" in where.name else "")]

    def close(self) -> None:
        """Finish the run; the wandb service of this process stops once its last run is finished."""
        global _open_wandb_runs
        self._closed = True
        if self._run is None:
            return
        run, self._run = self._run, None
        try:
            run.finish()
        finally:
            _open_wandb_runs -= 1
            if _open_wandb_runs == 0:
                import wandb

                wandb.teardown()  # no wandb process outlives the last run


class MultiTracker(Tracker):
    """Everything logged goes to each of several trackers."""

    active = True

    def __init__(self, trackers: Sequence[Tracker]) -> None:
        self.trackers = list(trackers)

    def start(self) -> None:
        """Start every tracker."""
        for tracker in self.trackers:
            tracker.start()

    def log_scalars(self, step: int, values: Mapping[str, Any], prefix: str = "") -> None:
        """To every tracker."""
        for tracker in self.trackers:
            tracker.log_scalars(step, values, prefix)

    def log_text(self, tag: str, text: str, step: int = 0) -> None:
        """To every tracker."""
        for tracker in self.trackers:
            tracker.log_text(tag, text, step)

    def log_summary(self, values: Mapping[str, Any]) -> None:
        """To every tracker."""
        for tracker in self.trackers:
            tracker.log_summary(values)

    def log_video(self, tag: str, frames: Any, fps: float, step: int) -> None:
        """To every tracker."""
        for tracker in self.trackers:
            tracker.log_video(tag, frames, fps, step)

    def locations(self) -> list[str]:
        """Every tracker's."""
        return [line for tracker in self.trackers for line in tracker.locations()]

    def close(self) -> None:
        """Close every tracker (all of them, even when one fails)."""
        errors = []
        for tracker in self.trackers:
            try:
                tracker.close()
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)
        if errors:
            raise errors[0]


def make_tracker(spec: str | None, run_dir: str | os.PathLike, run_name: str,
                 config: Mapping[str, Any] | None = None, *, group: str | None = None,
                 job_type: str | None = None) -> Tracker:
    """The tracker of a spec ('none', 'tensorboard', 'wandb', 'tensorboard,wandb') for one run in `run_dir`.

    TensorBoard writes to ``run_dir/tensorboard``; wandb to ``run_dir/wandb`` (``$WANDB_DIR`` wins) with
    ``run_name``, ``group``, ``job_type`` and ``config``. TrackingError names an unknown backend or a missing
    package.
    """
    names = parse_track_spec(check_track_spec(spec))
    trackers: list[Tracker] = []
    for name in names:
        if name == "tensorboard":
            trackers.append(TensorBoardTracker(Path(run_dir) / TENSORBOARD_DIR))
        else:
            trackers.append(WandbTracker(run_dir, run_name, config, group=group, job_type=job_type))
    if not trackers:
        return NullTracker()
    return trackers[0] if len(trackers) == 1 else MultiTracker(trackers)


__all__ = ["BACKENDS", "ENV_VAR", "INSTALL_HINT", "MultiTracker", "NullTracker", "TensorBoardTracker", "Tracker",
           "TrackingError", "WandbTracker", "check_track_spec", "encode_gif", "make_tracker", "parse_track_spec",
           "scalar_items"]
