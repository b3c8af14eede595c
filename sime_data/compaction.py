"""Compaction: merge episode row files into one that supersedes them, under a store-wide lock."""

from __future__ import annotations

import io
import json
import logging
import socket
import time
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .catalog import SUPERSEDES_KEY, Catalog, read_parquet
from .layout import COMPACT_PREFIX, EPISODES_DIR, LOCKS_DIR
from .processes import HeldLock, lock_is_live
from .schema import EPISODE_SCHEMA
from .storefs import StoreFS

__all__ = ["compact_segment", "compact_store"]

#: Messages keep the logger name they have always been shown under (the CLI prints it).
log = logging.getLogger("sime_data.catalog")


class _CompactionLock:
    """Store-wide advisory lock so two compactions never merge the same files.

    Held as an OS lock for the compaction's life (a heartbeat on object stores), like a writer's segment
    lock: a compaction in another PID namespace or container is live while it runs, and a killed one's
    lock is taken over at once.
    """

    def __init__(self, sfs: StoreFS) -> None:
        self.sfs = sfs
        self.rel = f"{LOCKS_DIR}/compaction.lock"
        self.held: HeldLock | None = None

    def _take(self) -> None:
        self.held = HeldLock(self.sfs, self.rel, {"host": socket.gethostname(), "at": time.time(),
                                                        "kind": "compaction"})

    def __enter__(self) -> "_CompactionLock":
        try:
            self._take()
        except FileExistsError:
            try:
                if not lock_is_live(self.sfs, self.rel):
                    self.sfs.remove(self.rel)
                    self._take()
            except (FileNotFoundError, FileExistsError):
                pass
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.held is not None:
            self.held.release()
            self.held = None


def _merge_files(sfs: StoreFS, catalog: Catalog, files: list[str], out_rel: str, scope: str) -> int:
    """Write one file with the rows of `files` that supersedes them (and stale leftovers), then delete them."""
    leftovers = [f for f in catalog.superseded_files() if f.startswith(scope + "/")]
    tables = [read_parquet(sfs, f).replace_schema_metadata(None).cast(EPISODE_SCHEMA) for f in files]
    merged = pa.concat_tables(tables).combine_chunks()
    merged = merged.replace_schema_metadata({SUPERSEDES_KEY: json.dumps(files + leftovers).encode()})
    buffer = io.BytesIO()
    pq.write_table(merged, buffer, compression="zstd", row_group_size=256_000)
    sfs.write_atomic(out_rel, buffer.getvalue(), exclusive=True)
    for rel in files + leftovers:
        sfs.remove(rel)
    return merged.num_rows


def compact_segment(sfs: StoreFS, catalog: Catalog, segment: str) -> int:
    """Merge one segment's per-episode row files into one; returns the rows merged (0 if skipped)."""
    with _CompactionLock(sfs) as lock:
        if not lock.held:
            return 0
        files = [f for f in catalog.active_episode_files() if f.startswith(f"{EPISODES_DIR}/{segment}/")]
        if len(files) < 2:
            return 0
        return _merge_files(sfs, catalog, files, f"{EPISODES_DIR}/{segment}/{COMPACT_PREFIX}{uuid.uuid4().hex[:12]}.parquet",
                            f"{EPISODES_DIR}/{segment}")


def compact_store(sfs: StoreFS, catalog: Catalog) -> int:
    """Merge all episode row files of the store into one; returns the number of rows."""
    with _CompactionLock(sfs) as lock:
        if not lock.held:
            log.info("another compaction is running; skipped")
            return 0
        files = list(catalog.active_episode_files())
        if len(files) < 2 and not catalog.superseded_files():
            return 0
        return _merge_files(sfs, catalog, files, f"{EPISODES_DIR}/{COMPACT_PREFIX}{uuid.uuid4().hex[:12]}.parquet", EPISODES_DIR)
