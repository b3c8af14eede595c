"""Every episode row file of a store read as of one moment: readable or not, which supersede which, the active rows."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import pyarrow as pa

from .catalog import SUPERSEDES_KEY, read_parquet
from .errors import CorruptStoreError
from .layout import COMPACT_PREFIX, EPISODES_DIR
from .schema import EPISODE_SCHEMA
from .storefs import StoreFS


@dataclass
class RowSnapshot:
    """Every episode row file at one moment: which are readable, which supersede which, the active rows."""

    files: list[str]
    tables: dict[str, pa.Table]
    supersedes: dict[str, frozenset[str]]
    unreadable: dict[str, str]

    @property
    def superseded(self) -> set[str]:
        """Files whose rows a present compacted file holds."""
        out: set[str] = set()
        for rel in self.files:
            out |= self.supersedes.get(rel, frozenset())
        return out

    @property
    def active(self) -> list[str]:
        """Files in force (present and not superseded)."""
        hidden = self.superseded
        return [f for f in self.files if f not in hidden]

    def active_rows(self) -> pa.Table:
        """Rows of the readable active files, concatenated (duplicates kept)."""
        tables = [self.tables[f] for f in self.active if f in self.tables]
        return pa.concat_tables(tables).combine_chunks() if tables else EPISODE_SCHEMA.empty_table()

    def row_sources(self) -> dict[str, list[str]]:
        """episode_id -> active files holding a row for it."""
        out: dict[str, list[str]] = {}
        for rel in self.active:
            table = self.tables.get(rel)
            if table is not None:
                for eid in table["episode_id"].to_pylist():
                    out.setdefault(eid, []).append(rel)
        return out


def snapshot_rows(sfs: StoreFS) -> RowSnapshot:
    """Read every episode row file as of one moment, even while writers commit and compactions run.

    A directory walk is not atomic: a compaction may write its merged file where the walk has already
    looked and delete the merged files where it has not looked yet, so one listing can miss rows. The
    listing is therefore taken again after reading; it is accepted when no file vanished meanwhile and no
    compacted file appeared (plain commits only add files, which cannot hide rows from the first listing).
    """
    for attempt in range(50):
        files = sfs.list_files(EPISODES_DIR, ".parquet")
        tables: dict[str, pa.Table] = {}
        supersedes: dict[str, frozenset[str]] = {}
        unreadable: dict[str, str] = {}
        try:
            for rel in files:
                try:
                    table = read_parquet(sfs, rel)
                except FileNotFoundError:
                    raise
                except Exception as exc:  # noqa: BLE001 - any decoding failure is damage to report
                    if not sfs.exists(rel):
                        raise FileNotFoundError(rel) from exc
                    unreadable[rel] = f"{type(exc).__name__}: {exc}"
                    continue
                meta = table.schema.metadata or {}
                if SUPERSEDES_KEY in meta:
                    try:
                        supersedes[rel] = frozenset(json.loads(meta[SUPERSEDES_KEY]))
                    except ValueError as exc:
                        unreadable[rel] = f"bad {SUPERSEDES_KEY.decode()} metadata: {exc}"
                        continue
                try:
                    tables[rel] = table.replace_schema_metadata(None).cast(EPISODE_SCHEMA)
                except Exception as exc:  # noqa: BLE001
                    unreadable[rel] = f"columns do not match the episode schema: {exc}"
        except FileNotFoundError:
            time.sleep(0.005 * min(attempt + 1, 20))
            continue
        again = set(sfs.list_files(EPISODES_DIR, ".parquet"))
        vanished = set(files) - again
        merged_meanwhile = [f for f in again - set(files) if f.rsplit("/", 1)[-1].startswith(COMPACT_PREFIX)]
        if vanished or merged_meanwhile:
            time.sleep(0.005 * min(attempt + 1, 20))
            continue
        return RowSnapshot(files, tables, supersedes, unreadable)
    raise CorruptStoreError("episode row files kept changing while being read (compactions running?); try again")
