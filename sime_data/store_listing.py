"""Every file below a store directory with its size and modification time, and which of them are temporary."""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import Any

PARTIAL_SUFFIX = ".partial"  # zarr's LocalStore writes chunks to "<name>.<uuid>.partial" and renames them
TMP_PREFIX = ".tmp-"  # StoreFS.write_atomic's temporary files


def all_files(sfs: Any, rel: str) -> list[tuple[str, int, float]]:
    """(relative path, size, mtime) of every file below `rel`, temporary files included."""
    base = sfs.path(rel)
    out: list[tuple[str, int, float]] = []
    if sfs.is_local:
        if not os.path.isdir(base):
            return []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                full = os.path.join(dirpath, name)
                try:
                    st = os.stat(full)
                except OSError:
                    continue
                out.append((os.path.relpath(full, sfs.root).replace(os.sep, "/"), st.st_size, st.st_mtime))
        return sorted(out)
    if not sfs.fs.exists(base):
        return []
    root = sfs.root.rstrip("/")
    for full, info in sfs.fs.find(base, detail=True).items():
        rel_path = full[len(root) + 1:] if full.startswith(root) else full
        out.append((rel_path, int(info.get("size") or 0), _mtime_of(info)))
    return sorted(out)


def top_files(sfs: Any, rel: str) -> list[tuple[str, int, float]]:
    """(relative path, size, mtime) of the files directly in `rel` (not in its subdirectories)."""
    base = sfs.path(rel)
    out: list[tuple[str, int, float]] = []
    if sfs.is_local:
        if not os.path.isdir(base):
            return []
        for entry in os.scandir(base):
            try:
                if entry.is_file(follow_symlinks=False):
                    st = entry.stat()
                    out.append((f"{rel}/{entry.name}", st.st_size, st.st_mtime))
            except OSError:
                continue
        return sorted(out)
    if not sfs.fs.exists(base):
        return []
    for info in sfs.fs.ls(base, detail=True):
        if info.get("type") == "file":
            out.append((f"{rel}/{info['name'].rstrip('/').rsplit('/', 1)[-1]}", int(info.get("size") or 0), _mtime_of(info)))
    return sorted(out)


def _mtime_of(info: dict[str, Any]) -> float:
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, datetime):
            return value.timestamp()
        try:
            return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
    return time.time()  # unknown: treat as fresh (never removed by age)


def is_tmp(rel: str) -> bool:
    """True for a temporary file: an unfinished atomic write or an interrupted chunk write."""
    name = rel.rsplit("/", 1)[-1]
    return name.startswith(TMP_PREFIX) or name.endswith(PARTIAL_SUFFIX)
