"""A segment's frames on disk: episode slots, and the segment and array metadata read from its zarr.json files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from .layout import DATA_DIR
from .segment import ArrayLayout, KeySpec


def read_json(sfs: Any, rel: str) -> dict[str, Any]:
    """A JSON file of the store (a zarr.json), parsed."""
    return json.loads(sfs.read_bytes(rel))


def slot_size(length: int, align: int) -> int:
    """Frames an episode of `length` frames occupies in its segment (its length rounded up to `align`)."""
    return -(-int(length) // align) * align


@dataclass
class SegmentInfo:
    """Group metadata of one segment and the layouts of its arrays (or why they are unusable)."""

    name: str
    specs: dict[str, KeySpec]
    layouts: dict[str, ArrayLayout | str]
    empty_chunks_written: bool
    error: str | None = None

    @classmethod
    def load(cls, sfs: Any, segment: str) -> "SegmentInfo":
        """Read data/<segment>/zarr.json (arrays are read lazily by `layout`)."""
        rel = f"{DATA_DIR}/{segment}/zarr.json"
        try:
            meta = read_json(sfs, rel)
        except FileNotFoundError:
            return cls(segment, {}, {}, False, f"segment group {rel} is missing")
        except Exception as exc:  # noqa: BLE001
            return cls(segment, {}, {}, False, f"segment group metadata {rel} is unreadable: {exc}")
        attrs = meta.get("attributes") or {}
        if meta.get("node_type") != "group" or "keys" not in attrs:
            return cls(segment, {}, {}, False, f"{rel} is not a segment group (no 'keys' attribute)")
        try:
            specs = {k: KeySpec.from_json(v) for k, v in attrs["keys"].items()}
        except Exception as exc:  # noqa: BLE001
            return cls(segment, {}, {}, False, f"{rel} has unreadable key specs: {exc}")
        return cls(segment, specs, {}, bool(attrs.get("write_empty_chunks", False)))

    def layout(self, sfs: Any, key: str) -> ArrayLayout | str:
        """Layout of an array, or the reason it is unusable."""
        if key not in self.layouts:
            rel = f"{DATA_DIR}/{self.name}/{key}/zarr.json"
            try:
                self.layouts[key] = ArrayLayout(read_json(sfs, rel))
            except FileNotFoundError:
                self.layouts[key] = f"array metadata {rel} is missing"
            except Exception as exc:  # noqa: BLE001
                self.layouts[key] = f"array metadata {rel} is unreadable: {exc}"
        return self.layouts[key]

    def check_key(self, sfs: Any, key: str, frames_needed: int) -> str | None:
        """Why `key` cannot hold `frames_needed` frames as the segment's spec says, or None."""
        spec = self.specs.get(key)
        if spec is None:
            return f"not listed in segment {self.name}'s keys"
        layout = self.layout(sfs, key)
        if isinstance(layout, str):
            return layout
        if layout.shape[1:] != tuple(spec.shape):
            return f"array shape {layout.shape[1:]} per frame differs from the segment's spec {tuple(spec.shape)}"
        try:
            same = np.dtype(layout.data_type) == np.dtype(spec.dtype)
        except Exception:  # noqa: BLE001 - a zarr-specific dtype description (strings, dates): the read check decides
            same = True
        if not same:
            return f"array dtype {layout.data_type} differs from the segment's spec {np.dtype(spec.dtype)}"
        if layout.shape[0] < frames_needed:
            return f"array holds {layout.shape[0]} frames, the episode needs {frames_needed}"
        return None
