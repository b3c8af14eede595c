"""Import the reference's real-world recording folders into the store.

A recording folder (named by its start time in ms) holds ``cam_<serial>/color/<ms>.png`` (RGB),
``cam_<serial>/depth/<ms>.png`` (16-bit, millimetres), ``tcp/<ms>.npy`` (x, y, z, qw, qx, qy, qz),
``gripper_command/<ms>.npy`` (gripper width), optionally ``joint/<ms>.npy`` and ``action/<ms>.npy``
(commanded pose), and ``metadata.json`` with ``finish_time`` (absent when the recording was not
finished). All folders of one call go through one atomic writer: any error leaves the store unchanged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import geometry as geo
from .errors import RecordingFormatError

if TYPE_CHECKING:  # pragma: no cover
    from sime_data import Store


@dataclass(frozen=True)
class Recording:
    """A validated recording folder: its frame times (ms) and cameras (serial -> folder)."""

    path: Path
    stamps: list[int]
    cameras: dict[str, Path]
    has_joints: bool
    has_actions: bool
    finish_time: int


def _stamps(folder: Path, suffix: str) -> list[int]:
    out = []
    for entry in folder.iterdir():
        if entry.suffix != suffix:
            continue
        try:
            out.append(int(entry.stem))
        except ValueError:
            raise RecordingFormatError(f"{entry}: file names must be millisecond timestamps like 1700000000123{suffix}") from None
    return sorted(out)


def is_recording(path: Path) -> bool:
    """True when `path` looks like one recording folder (has tcp/ or metadata.json)."""
    return (path / "tcp").is_dir() or (path / "metadata.json").is_file()


def find_recordings(paths: list[str | os.PathLike]) -> list[Path]:
    """Recording folders among `paths`: each path is a recording or a folder of recordings."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise RecordingFormatError(f"{path} is not a directory")
        if is_recording(path):
            found.append(path)
            continue
        children = sorted(p for p in path.iterdir() if p.is_dir() and is_recording(p))
        if not children:
            raise RecordingFormatError(f"{path} is neither a recording (no tcp/ or metadata.json) nor a folder of them")
        found.extend(children)
    return found


def scan_recording(path: Path) -> Recording:
    """Validate a recording folder's layout (RecordingFormatError saying what is wrong)."""
    meta_file = path / "metadata.json"
    if not meta_file.is_file():
        raise RecordingFormatError(f"{path}: no metadata.json, so the recording was never finished (discarded or crashed)")
    try:
        finish_time = int(json.loads(meta_file.read_text())["finish_time"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RecordingFormatError(f"{meta_file}: expected JSON with an integer finish_time ({exc})") from None
    for sub in ("tcp", "gripper_command"):
        if not (path / sub).is_dir():
            raise RecordingFormatError(f"{path}: missing the {sub}/ folder")
    stamps = _stamps(path / "tcp", ".npy")
    if not stamps:
        raise RecordingFormatError(f"{path}: tcp/ holds no <ms>.npy frames")
    cameras = {p.name[4:]: p for p in sorted(path.iterdir()) if p.is_dir() and p.name.startswith("cam_")}
    if not cameras:
        raise RecordingFormatError(f"{path}: no cam_<serial>/ folders")
    want = set(stamps)
    checks = [(path / "gripper_command", ".npy")]
    for cam in cameras.values():
        checks += [(cam / "color", ".png"), (cam / "depth", ".png")]
    has_joints, has_actions = (path / "joint").is_dir(), (path / "action").is_dir()
    checks += [(path / "joint", ".npy")] * has_joints + [(path / "action", ".npy")] * has_actions
    for folder, suffix in checks:
        if not folder.is_dir():
            raise RecordingFormatError(f"{path}: missing the {folder.relative_to(path)}/ folder")
        missing = sorted(want - set(_stamps(folder, suffix)))
        if missing:
            raise RecordingFormatError(f"{folder}: {len(missing)} frame(s) missing that tcp/ has, e.g. {missing[0]}{suffix}")
    return Recording(path, stamps, cameras, has_joints, has_actions, finish_time)


def _png(path: Path, depth: bool) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        array = np.array(image)
    if depth:
        if array.ndim != 2:
            raise RecordingFormatError(f"{path}: a depth image must be single-channel 16-bit, got shape {array.shape}")
        return array.astype(np.uint16)
    if array.ndim != 3 or array.shape[2] < 3:
        raise RecordingFormatError(f"{path}: a colour image must be RGB, got shape {array.shape}")
    return np.ascontiguousarray(array[:, :, :3], dtype=np.uint8)


def _vector(path: Path, size: int | None) -> np.ndarray:
    try:
        value = np.asarray(np.load(path), dtype=np.float64).ravel()
    except (ValueError, OSError) as exc:
        raise RecordingFormatError(f"{path}: not a readable .npy array ({exc})") from None
    if size is not None and value.size < size:
        raise RecordingFormatError(f"{path}: expected at least {size} numbers, got {value.size}")
    return value if size is None else value[:size]


def import_recordings(store: Store, paths: list[str | os.PathLike], *, task: str = "real",
                      camera_names: Mapping[str, str] | None = None, max_gripper_width: float = 0.085,
                      version: str | None = None) -> list[str]:
    """Import recording folders as 'import' episodes (atomically); returns their ids, optionally as a version."""
    recordings = [scan_recording(p) for p in find_recordings(paths)]
    names = dict(camera_names or {})
    ids: list[str] = []
    with store.writer("import", task, atomic=True, importer="sime-hw import-real") as writer:
        for rec in recordings:
            for ms in rec.stamps:
                tcp = _vector(rec.path / "tcp" / f"{ms}.npy", 7)
                width = float(_vector(rec.path / "gripper_command" / f"{ms}.npy", 1)[0])
                obs: dict[str, np.ndarray] = {"tcp_pose": tcp, "gripper_width": np.array([width])}
                if rec.has_joints:
                    obs["joints"] = _vector(rec.path / "joint" / f"{ms}.npy", None)
                for serial, folder in rec.cameras.items():
                    name = names.get(serial, f"cam_{serial}")
                    obs[f"{name}_color"] = _png(folder / "color" / f"{ms}.png", depth=False)
                    obs[f"{name}_depth"] = _png(folder / "depth" / f"{ms}.png", depth=True)
                target = _vector(rec.path / "action" / f"{ms}.npy", 7) if rec.has_actions else tcp
                action = geo.pose_to_action(target, geo.width_to_command(width, max_gripper_width))
                writer.add_step(obs=obs, action=action, timestamp=np.float64(ms / 1000.0))
            ids.append(writer.finish(success=True, recording=rec.path.name, source_path=str(rec.path.resolve()),
                                     finish_time=rec.finish_time, cameras=sorted(rec.cameras)))
    if version:
        store.create_version(version, ids, message=f"{len(ids)} real-world recordings imported")
    return ids
