"""Per-episode metadata columns (one Parquet row per episode) and name rules."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa

from .errors import InvalidNameError

#: Columns of the `episodes` table, in order. Documented in README ("episodes view").
EPISODE_SCHEMA = pa.schema(
    [
        pa.field("episode_id", pa.string(), nullable=False),
        pa.field("segment", pa.string(), nullable=False),
        pa.field("seg_start", pa.int64(), nullable=False),
        pa.field("length", pa.int64(), nullable=False),
        pa.field("source", pa.string()),
        pa.field("task", pa.string()),
        pa.field("init_state_id", pa.string()),
        pa.field("trial", pa.int64()),
        pa.field("success", pa.bool_()),
        pa.field("episode_return", pa.float64()),
        pa.field("round", pa.int64()),
        pa.field("branch", pa.string()),
        pa.field("checkpoint", pa.string()),
        pa.field("explore_mode", pa.string()),
        pa.field("noise_scale", pa.float64()),
        pa.field("tau1", pa.float64()),
        pa.field("tau2", pa.float64()),
        pa.field("seed", pa.int64()),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("notes", pa.string()),
        pa.field("model_xml_sha", pa.string()),
        pa.field("init_state", pa.list_(pa.float64())),
        pa.field("keys", pa.list_(pa.string())),
        pa.field("meta", pa.string()),
    ]
)

#: Columns a writer fills itself; users cannot set them through finish(**meta).
RESERVED_COLUMNS = {"episode_id", "segment", "seg_start", "length", "created_at", "keys", "meta", "model_xml_sha"}
#: Columns users may set as keyword arguments of `EpisodeWriter.finish` or the writer defaults.
SETTABLE_COLUMNS = [f.name for f in EPISODE_SCHEMA if f.name not in RESERVED_COLUMNS]

_NAME_PART = r"[A-Za-z0-9][A-Za-z0-9_.\-]*"
#: Whole-string patterns: used with `fullmatch` (`$` alone would also accept a trailing newline).
VERSION_NAME_RE = re.compile(rf"{_NAME_PART}(/{_NAME_PART})*")
ARRAY_KEY_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*(/[A-Za-z0-9_][A-Za-z0-9_.\-]*)*")
#: Ending of version files (layout.VERSION_SUFFIX): a name part ending so would make a directory that
#: shadows the file of another version ('a.version.parquet/b' vs 'a').
_RESERVED_PART_SUFFIX = ".version.parquet"


def check_version_name(name: str) -> str:
    """Return `name` if it is a valid version name, else raise InvalidNameError."""
    valid = (isinstance(name, str) and VERSION_NAME_RE.fullmatch(name) is not None and ".." not in name
             and len(name) <= 200)
    if valid and any(part.lower().endswith(_RESERVED_PART_SUFFIX) for part in name.split("/")):
        raise InvalidNameError(f"invalid version name {name!r}: a part may not end in '{_RESERVED_PART_SUFFIX}', "
                               "the ending of the store's version files")
    if not valid:
        raise InvalidNameError(
            f"invalid version name {name!r}: use letters, digits, '_', '-', '.' in parts separated by '/'"
            " (for example 'lift/core_10' or 'round1/sime_sr0.5')"
        )
    return name


def check_array_key(key: str) -> str:
    """Return `key` if it is a valid array key (like 'obs/agentview_image'), else raise InvalidNameError."""
    if not isinstance(key, str) or ARRAY_KEY_RE.fullmatch(key) is None or ".." in key:
        raise InvalidNameError(f"invalid array key {key!r}: use letters, digits, '_', '-', '.' in parts separated by '/'")
    return key


def _plain(value: Any) -> Any:
    """Convert numpy scalars/arrays to plain Python values for Arrow and JSON."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def build_row(fields: dict[str, Any]) -> dict[str, Any]:
    """Split user metadata into schema columns and the JSON `meta` column; type-check the columns."""
    row: dict[str, Any] = {name: None for name in EPISODE_SCHEMA.names}
    extra: dict[str, Any] = {}
    for key, value in fields.items():
        value = _plain(value)
        if key in EPISODE_SCHEMA.names:
            row[key] = value
        else:
            extra[key] = value
    if row["init_state_id"] is not None:
        row["init_state_id"] = str(row["init_state_id"])
    if row["tags"] is None:
        row["tags"] = []
    elif isinstance(row["tags"], str):
        row["tags"] = [row["tags"]]
    else:
        row["tags"] = [str(t) for t in row["tags"]]
    if row["init_state"] is not None:
        row["init_state"] = [float(x) for x in np.asarray(row["init_state"], dtype=np.float64).ravel()]
    for key in ("trial", "round", "seed"):
        if row[key] is not None:
            row[key] = int(row[key])
    for key in ("noise_scale", "tau1", "tau2", "episode_return"):
        if row[key] is not None:
            row[key] = float(row[key])
    if row["success"] is not None:
        row["success"] = bool(row["success"])
    try:
        row["meta"] = json.dumps(extra, sort_keys=True) if extra else None
    except TypeError as exc:
        raise ValueError(f"episode metadata must be JSON-serialisable: {exc}") from exc
    return row


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Arrow table of episode rows in the fixed episode schema."""
    return pa.Table.from_pylist(rows, schema=EPISODE_SCHEMA)


def utc_now() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)
