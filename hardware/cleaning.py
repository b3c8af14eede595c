"""Data cleaning as a new version: drop near-static frames and failed episodes (nothing is deleted)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import geometry as geo

if TYPE_CHECKING:  # pragma: no cover
    from sime_data import Store, Version


@dataclass(frozen=True)
class StaticThresholds:
    """A frame is static when, relative to the last kept frame, every change is below its threshold."""

    pos_eps: float = 0.002  # metres
    rot_eps: float = 0.01  # radians
    grip_eps: float = 0.1  # gripper command units ([-1, 1]), when judging commanded actions
    grip_width_eps: float = 0.002  # metres of measured opening, when judging the measured state


def keep_moving(pos: np.ndarray, rot: np.ndarray, grip: np.ndarray, pos_eps: float, rot_eps: float,
                grip_eps: float) -> np.ndarray:
    """Mask of frames to keep: the first, then each whose position, rotation or gripper moved enough since the
    last kept one (comparing with the last *kept* frame, not the previous one, keeps slow steady motion)."""
    keep = np.zeros(len(pos), dtype=bool)
    if not len(pos):
        return keep
    keep[0] = True
    ref = 0
    for i in range(1, len(pos)):
        if (np.linalg.norm(pos[i] - pos[ref]) >= pos_eps or geo.rotation_angle(rot[ref], rot[i]) >= rot_eps
                or abs(grip[i] - grip[ref]) >= grip_eps):
            keep[i] = True
            ref = i
    return keep


def moving_mask(actions: np.ndarray, thresholds: StaticThresholds = StaticThresholds()) -> np.ndarray:
    """Frames to keep judged on 10-D absolute actions (xyz, 6-D rotation, gripper command)."""
    actions = np.asarray(actions, dtype=np.float64).reshape(-1, 10)
    rot = geo.rot6d_to_matrix(actions[:, 3:9]) if len(actions) else np.zeros((0, 3, 3))
    return keep_moving(actions[:, :3], rot, actions[:, 9], thresholds.pos_eps, thresholds.rot_eps, thresholds.grip_eps)


def moving_mask_state(tcp_pose: np.ndarray, gripper_width: np.ndarray | None,
                      thresholds: StaticThresholds = StaticThresholds()) -> np.ndarray:
    """Frames to keep judged on the measured TCP pose [xyz, qw, qx, qy, qz] and gripper opening (metres)."""
    tcp = np.asarray(tcp_pose, dtype=np.float64)
    rot = geo.pose_to_matrix(tcp)[1] if len(tcp) else np.zeros((0, 3, 3))
    grip = np.zeros(len(tcp)) if gripper_width is None else np.asarray(gripper_width, dtype=np.float64).reshape(len(tcp))
    return keep_moving(tcp[:, :3], rot, grip, thresholds.pos_eps, thresholds.rot_eps, thresholds.grip_width_eps)


def succeeded(value: object) -> bool:
    """True only for a recorded success (None / NaN / False are not)."""
    import pandas as pd

    return value is not None and not pd.isna(value) and bool(value)


def mask_to_ranges(mask: np.ndarray, offset: int = 0) -> list[tuple[int, int]]:
    """Runs of True as half-open (start, stop) frame ranges, shifted by `offset`."""
    ranges: list[tuple[int, int]] = []
    start = None
    for i, value in enumerate(np.asarray(mask, dtype=bool)):
        if value and start is None:
            start = i
        elif not value and start is not None:
            ranges.append((offset + start, offset + i))
            start = None
    if start is not None:
        ranges.append((offset + start, offset + len(mask)))
    return ranges


def clean_version(store: Store, base: str, name: str, thresholds: StaticThresholds = StaticThresholds(), *,
                  drop_failed: bool = False, key: str = "actions", message: str = "") -> Version:
    """New version `name` = `base` without near-static frames (and failed episodes when `drop_failed`).

    `key` 'actions' judges the commanded actions; a TCP pose key ('obs/tcp_pose') judges the measured
    pose together with 'obs/gripper_width' when recorded (so frames where only the fingers move are kept).
    """
    version = store.version(base)
    rows = store.episodes(version=base).set_index("episode_id")
    drop: list[str] = []
    trims: dict[str, list[tuple[int, int]]] = {}
    removed = 0
    for episode_id, ranges in version.ranges().items():
        success = rows.loc[episode_id, "success"]
        if drop_failed and not succeeded(success):
            drop.append(episode_id)
            continue
        kept: list[tuple[int, int]] = []
        for start, stop in ranges:
            if key == "actions":
                mask = moving_mask(store.read_episode(episode_id, ["actions"], start, stop)["actions"], thresholds)
            else:
                keys = [key] + (["obs/gripper_width"] if "obs/gripper_width" in store.episode_keys(episode_id) else [])
                data = store.read_episode(episode_id, keys, start, stop)
                mask = moving_mask_state(data[key], data.get("obs/gripper_width"), thresholds)
            kept.extend(mask_to_ranges(mask, start))
            removed += int((~mask).sum())
        if kept != [tuple(r) for r in ranges]:
            trims[episode_id] = kept
    if len(drop) == len(version.episode_ids):
        from .errors import HardwareError

        raise HardwareError(f"every episode of {base!r} failed: cleaning with --drop-failed would leave nothing")
    msg = message or (f"cleaned {base}: {removed} near-static frames removed "
                      f"(judged on {key}: pos<{thresholds.pos_eps} m, rot<{thresholds.rot_eps} rad, "
                      + (f"grip<{thresholds.grip_eps})" if key == "actions" else f"width<{thresholds.grip_width_eps} m)")
                      + (f", {len(drop)} failed episode(s) dropped" if drop else ""))
    return store.create_version_from_trims(name, base, trims, drop=drop, message=msg)
