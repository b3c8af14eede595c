"""What earlier imports left in a store: the version of a content hash, and the episodes committed from it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterator

import pyarrow.compute as pc

from .versions import rule_dict

if TYPE_CHECKING:  # pragma: no cover
    from .store import Store


def version_of_import(store: "Store", rule_kind: str, sha: str) -> str | None:
    """Name of the version an earlier import (rule `kind`) of content with this sha256 created, if any."""
    frame = store.versions()
    for name, rule in zip(frame["name"], frame["rule"]):
        parsed = rule_dict(rule)
        if parsed.get("kind") == rule_kind and parsed.get("sha256") == sha:
            return str(name)
    return None


def committed_import_records(store: "Store", meta_key: str, sha: str,
                             sha_field: str = "sha256") -> Iterator[tuple[str, dict[str, Any]]]:
    """(episode id, its `meta[meta_key]` record) of every committed episode imported from content with this sha256."""
    table = store.episode_columns(["episode_id", "meta"])
    hits = table.filter(pc.fill_null(pc.match_substring(table["meta"], sha), False))
    for episode_id, raw in zip(hits["episode_id"].to_pylist(), hits["meta"].to_pylist()):
        record = (json.loads(raw) or {}).get(meta_key) or {}
        if isinstance(record, dict) and record.get(sha_field) == sha:
            yield episode_id, record
