"""Episode and version tables read from the store's Parquet files, and the read-only DuckDB catalog."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import warnings
from typing import Any, Sequence

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import CorruptStoreError, SQLError, StoreWarning
from .layout import COMPACT_PREFIX, EPISODES_DIR, VERSION_SUFFIX, VERSIONS_DIR, version_name_from_path
from .row_overlap import IdRange, id_range, overlapping_groups, shared_episode
from .schema import EPISODE_SCHEMA
from .sql_sandbox import API_MAX_ROWS, API_TIMEOUT_S, check_read_only, run_read_only
from .storefs import StoreFS

__all__ = ["Catalog", "check_read_only", "read_parquet", "read_version_file"]

log = logging.getLogger(__name__)

SUPERSEDES_KEY = b"sime.supersedes"
VERSION_INFO_KEY = b"sime.version"
MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("episode_id", pa.string(), nullable=False),
        pa.field("frame_start", pa.int64(), nullable=False),
        pa.field("frame_stop", pa.int64(), nullable=False),
    ]
)
VERSIONS_SCHEMA = pa.schema(
    [
        ("name", pa.string()),
        ("parents", pa.list_(pa.string())),
        ("message", pa.string()),
        ("rule", pa.string()),
        ("query", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("n_episodes", pa.int64()),
        ("n_ranges", pa.int64()),
        ("n_frames", pa.int64()),
        ("success_rate", pa.float64()),
    ]
)


def read_parquet(sfs: StoreFS, rel: str) -> pa.Table:
    """A Parquet file of the store as one table (read in place on local disks)."""
    if sfs.is_local:
        return pq.read_table(sfs.path(rel))
    return pq.read_table(io.BytesIO(sfs.read_bytes(rel)))


class Catalog:
    """Cached view of the committed episode rows and versions, refreshed from the file listing."""

    def __init__(self, sfs: StoreFS) -> None:
        self.sfs = sfs
        self._lock = threading.RLock()
        self._file_tables: dict[str, pa.Table] = {}
        self._supersedes: dict[str, frozenset[str]] = {}
        self._active: tuple[str, ...] | None = None
        self._superseded_present: tuple[str, ...] = ()
        self._episodes: pa.Table = EPISODE_SCHEMA.empty_table()
        self._episode_index: dict[str, int] | None = None
        self._version_files: dict[str, tuple[dict[str, Any], pa.Table]] = {}
        self._version_names: tuple[str, ...] | None = None
        self._unreadable_versions: dict[str, str] = {}
        self._warned: set[str] = set()
        self._versions = VERSIONS_SCHEMA.empty_table()
        self._version_episodes = pa.table({"version": pa.array([], pa.string()), **{f.name: pa.array([], f.type) for f in MANIFEST_SCHEMA}})
        self._footers: set[str] = set()
        self._id_ranges: dict[str, IdRange] = {}
        self._file_ids: dict[str, pa.Array] = {}
        self._clean_groups: set[tuple[str, ...]] = set()
        self._listed: tuple[str, ...] | None = None
        self._dup_possible = False
        self._dataset: tuple[tuple[str, ...], Any] | None = None
        self._column_cache: dict[tuple[str, ...], pa.Table] = {}

    @property
    def location(self) -> str:
        """Where the store lives, as given when opened."""
        return self.sfs.location

    # ------------------------------------------------------------------ episodes
    def episodes(self) -> pa.Table:
        """All committed episode rows (fresh: reflects every commit made before the call)."""
        with self._lock:
            for attempt in range(20):
                try:
                    self._refresh_episodes()
                    break
                except FileNotFoundError:
                    # a compaction removed a file between listing and reading: list again
                    time.sleep(0.01 * (attempt + 1))
            else:  # pragma: no cover - only under pathological churn
                raise CorruptStoreError("episode metadata kept changing while being read; try again")
            return self._episodes

    def _retrying(self, fn: Any) -> Any:
        """Call `fn`, listing again when a compaction removed a file between listing and reading."""
        for attempt in range(20):
            try:
                return fn()
            except FileNotFoundError:
                time.sleep(0.01 * (attempt + 1))
        raise CorruptStoreError("episode metadata kept changing while being read; try again")  # pragma: no cover

    def _refresh_files(self) -> tuple[str, ...]:
        """List row files, read the footers of new ones (supersessions only), return the active files."""
        for attempt in range(50):
            files = self.sfs.list_files(EPISODES_DIR, ".parquet")
            for rel in files:
                if rel not in self._footers:
                    self._read_footer(rel)
            # a directory walk racing a compaction can miss both the merged file and its sources: list again
            again = set(self.sfs.list_files(EPISODES_DIR, ".parquet"))
            appeared = again - set(files)
            if set(files) <= again and not any(f.rsplit("/", 1)[-1].startswith(COMPACT_PREFIX) for f in appeared):
                break
            time.sleep(0.005 * (attempt + 1))
        present = set(files)
        for rel in list(self._footers):
            if rel not in present:
                self._footers.discard(rel)
                self._supersedes.pop(rel, None)
                self._file_tables.pop(rel, None)
                self._file_ids.pop(rel, None)
                self._id_ranges.pop(rel, None)
        superseded: set[str] = set()
        for rel in files:
            superseded |= self._supersedes.get(rel, frozenset())
        active = tuple(f for f in files if f not in superseded)
        self._superseded_present = tuple(f for f in files if f in superseded)
        if active != self._listed:
            # rows repeat only when two compactions merged the same file (a raced compaction)
            seen: set[str] = set()
            dup = False
            for rel in active:
                merged = self._supersedes.get(rel, frozenset())
                if seen & merged:
                    dup = True
                seen |= merged
            if not dup:
                self._refuse_duplicates(active)
            self._dup_possible = dup
            self._listed = active
            self._column_cache = {}
        return active

    def _refuse_duplicates(self, active: tuple[str, ...]) -> None:
        """CorruptStoreError when two active row files hold the same episode (a copied or foreign file)."""
        groups = overlapping_groups({rel: self._id_ranges.get(rel) for rel in active})
        for group in groups:
            if group in self._clean_groups:
                continue
            found = shared_episode(group, self._episode_ids)
            if found is not None:
                eid, a, b = found
                raise CorruptStoreError(
                    f"episode {eid} has rows in two episode row files, {min(a, b)} and {max(a, b)}: one of them is a "
                    "copy (a sync tool, a hand-made backup) or a foreign file. Nothing is read until it is moved out "
                    "of meta/episodes; `sime-data verify` lists every duplicated episode")
        self._clean_groups = set(groups)
        in_groups = {rel for group in groups for rel in group}
        for rel in list(self._file_ids):
            if rel not in in_groups:
                del self._file_ids[rel]

    def _episode_ids(self, rel: str) -> pa.Array:
        """The episode_id column of one row file (cached while the file overlaps another)."""
        if rel not in self._file_ids:
            try:
                source = self.sfs.path(rel) if self.sfs.is_local else io.BytesIO(self.sfs.read_bytes(rel))
                column = pq.read_table(source, columns=["episode_id"])["episode_id"]
            except FileNotFoundError:
                raise
            except Exception as exc:
                raise CorruptStoreError(f"episode metadata file {rel} is unreadable ({exc}); run `sime-data verify`") from exc
            self._file_ids[rel] = column.combine_chunks().cast(pa.string())
        return self._file_ids[rel]

    def _read_footer(self, rel: str) -> None:
        """Check a new row file is an episode row file; note its supersessions and episode id range."""
        try:
            source = self.sfs.path(rel) if self.sfs.is_local else io.BytesIO(self.sfs.read_bytes(rel))
            with pq.ParquetFile(source) as parquet:
                schema = parquet.schema_arrow
                if not _is_episode_schema(schema):
                    raise CorruptStoreError(
                        f"{rel} is not an episode row file of this store (its columns are {schema.names[:8]}"
                        f"{' ...' if len(schema.names) > 8 else ''}): a foreign or hand-edited Parquet file. Nothing "
                        "is read until it is moved out of meta/episodes; `sime-data verify` lists every such file")
                span = id_range(parquet.metadata)
        except (FileNotFoundError, CorruptStoreError):
            raise
        except Exception as exc:  # a damaged file is reported by name, never read as rows
            raise CorruptStoreError(f"episode metadata file {rel} is unreadable ({exc}); run `sime-data verify`") from exc
        meta = schema.metadata or {}
        if SUPERSEDES_KEY in meta:
            try:
                self._supersedes[rel] = frozenset(json.loads(meta[SUPERSEDES_KEY]))
            except (TypeError, ValueError) as exc:
                raise CorruptStoreError(f"episode metadata file {rel} has unreadable compaction metadata ({exc}); "
                                        "run `sime-data verify`") from exc
        self._id_ranges[rel] = span
        self._footers.add(rel)

    def _refresh_episodes(self) -> None:
        active = self._refresh_files()
        for rel in active:
            if rel not in self._file_tables:
                self._file_tables[rel] = self._load_rows(rel)
        for rel in list(self._file_tables):
            if rel not in active:
                del self._file_tables[rel]
        if active == self._active:
            return
        tables = [self._file_tables[f] for f in active]
        episodes = pa.concat_tables(tables) if tables else EPISODE_SCHEMA.empty_table()
        if self._dup_possible and pc.count_distinct(episodes["episode_id"]).as_py() != episodes.num_rows:
            episodes = _drop_duplicate_episodes(episodes)
        self._episodes = episodes
        self._episode_index = None
        self._active = active

    def _episode_dataset(self, active: tuple[str, ...]) -> Any:
        """A lazy pyarrow dataset over the active row files (DuckDB reads only the columns a query uses)."""
        import pyarrow.dataset as ds

        if self._dataset is None or self._dataset[0] != active:
            if not active:
                data: Any = EPISODE_SCHEMA.empty_table()
            elif self.sfs.is_local:
                data = ds.dataset([self.sfs.path(f) for f in active], schema=EPISODE_SCHEMA, format="parquet")
            else:
                data = ds.dataset([self.sfs.path(f) for f in active], schema=EPISODE_SCHEMA, format="parquet",
                                  filesystem=self.sfs.fs)
            self._dataset = (active, data)
        return self._dataset[1]

    def episode_columns(self, columns: Sequence[str]) -> pa.Table:
        """Some columns of all committed episode rows, reading only those columns from disk when not loaded yet."""
        columns = tuple(columns)
        with self._lock:
            def _read() -> pa.Table:
                active = self._refresh_files()
                if self._dup_possible or active == self._active:
                    return self.episodes().select(list(columns))
                if columns not in self._column_cache:
                    data = self._episode_dataset(active)
                    self._column_cache[columns] = (data.select(list(columns)) if isinstance(data, pa.Table)
                                                   else data.to_table(columns=list(columns)))
                return self._column_cache[columns]

            return self._retrying(_read)

    def _load_rows(self, rel: str) -> pa.Table:
        try:
            table = read_parquet(self.sfs, rel)
        except FileNotFoundError:
            raise
        except Exception as exc:  # a damaged file must not hide the rest of the store
            raise CorruptStoreError(f"episode metadata file {rel} is unreadable ({exc}); run `sime-data verify`") from exc
        meta = table.schema.metadata or {}
        if SUPERSEDES_KEY in meta:
            self._supersedes[rel] = frozenset(json.loads(meta[SUPERSEDES_KEY]))
        return table.replace_schema_metadata(None).cast(EPISODE_SCHEMA)

    def active_episode_files(self) -> tuple[str, ...]:
        """Row files currently in force (after compaction supersessions)."""
        with self._lock:
            return self._retrying(self._refresh_files)

    def superseded_files(self) -> tuple[str, ...]:
        """Row files still on disk whose rows a compacted file already holds (left by an interrupted compaction)."""
        with self._lock:
            self._retrying(self._refresh_files)
            return self._superseded_present

    def episode_row_index(self) -> dict[str, int]:
        """Map episode_id -> row number in `episodes()`."""
        with self._lock:
            table = self.episodes()
            if self._episode_index is None:
                self._episode_index = {eid: i for i, eid in enumerate(table["episode_id"].to_pylist())}
            return self._episode_index

    # ------------------------------------------------------------------ versions
    def versions(self) -> tuple[pa.Table, pa.Table]:
        """(versions table, version_episodes table), fresh from the listing; unreadable files are left out."""
        with self._lock:
            files = self.sfs.list_files(VERSIONS_DIR, VERSION_SUFFIX)
            listed = tuple(version_name_from_path(f) for f in files)
            for gone in set(self._unreadable_versions) - set(files):
                del self._unreadable_versions[gone]
            if listed != self._version_names or self._unreadable_versions:
                names = []
                for rel, name in zip(files, listed):
                    if name not in self._version_files and not self._load_version_file(name, rel):
                        continue
                    names.append(name)
                infos = [self._version_files[n][0] for n in names]
                self._versions = pa.Table.from_pylist([_version_row(i) for i in infos], schema=VERSIONS_SCHEMA)
                manifests = [
                    self._version_files[n][1].add_column(0, "version", pa.array([n] * self._version_files[n][1].num_rows, pa.string()))
                    for n in names
                ]
                if manifests:
                    self._version_episodes = pa.concat_tables(manifests).combine_chunks()
                else:
                    self._version_episodes = self._version_episodes.slice(0, 0)
                self._version_names = listed
            return self._versions, self._version_episodes

    def _load_version_file(self, name: str, rel: str) -> bool:
        """Read one version file into the cache; on damage warn once, naming the file, and return False."""
        try:
            loaded = read_version_file(self.sfs, rel)
            _version_row(loaded[0])
        except FileNotFoundError:  # removed between listing and reading
            self._unreadable_versions.pop(rel, None)
            return False
        except (CorruptStoreError, KeyError, TypeError, ValueError) as exc:
            why = str(exc) if isinstance(exc, CorruptStoreError) else f"version file {rel} is unreadable ({exc!r})"
            self._unreadable_versions[rel] = why
            if why not in self._warned:
                self._warned.add(why)
                warnings.warn(f"{why}; version {name!r} is left out of SQL and the version list until the file is "
                              "repaired (the rest of the store is unaffected)", StoreWarning, stacklevel=4)
            return False
        self._unreadable_versions.pop(rel, None)
        self._version_files[name] = loaded
        return True

    def unreadable_versions(self) -> dict[str, str]:
        """Version files left out of the version list and SQL because they are unreadable: path -> reason."""
        with self._lock:
            self.versions()
            return dict(self._unreadable_versions)

    def version(self, name: str) -> tuple[dict[str, Any], pa.Table] | None:
        """(info, manifest) of one version, or None if it does not exist."""
        with self._lock:
            if name not in self._version_files:
                from .layout import version_path

                rel = version_path(name)
                if not self.sfs.exists(rel):
                    return None
                self._version_files[name] = read_version_file(self.sfs, rel)
            return self._version_files[name]

    def has_version(self, name: str) -> bool:
        """True when a version of this name exists."""
        return self.version(name) is not None

    # ------------------------------------------------------------------ SQL
    def sql(self, query: str, *, timeout_s: float | None = API_TIMEOUT_S,
            max_rows: int | None = API_MAX_ROWS) -> pd.DataFrame:
        """Run one read-only SQL query over the views episodes, versions, version_episodes (see sql_sandbox)."""
        check_read_only(query)  # refused before any file is read
        for attempt in range(20):
            with self._lock:  # held only to take a snapshot: a long query never blocks other readers
                versions, version_episodes = self.versions()
                active = self._retrying(self._refresh_files)
                episodes = self.episodes() if self._dup_possible else self._episode_dataset(active)
            tables = {"episodes": episodes, "versions": versions, "version_episodes": version_episodes}
            try:
                return run_read_only(query, tables, timeout_s=timeout_s, max_rows=max_rows)
            except duckdb.Error as exc:
                if all(self.sfs.exists(f) for f in active):
                    raise SQLError(f"SQL error: {exc}") from exc
                time.sleep(0.01 * (attempt + 1))  # a compaction replaced files mid-query: list again
        raise CorruptStoreError("episode metadata kept changing while being queried; try again")  # pragma: no cover


def _is_episode_schema(schema: pa.Schema) -> bool:
    """True when a row file's columns are those of the episode schema (castable types)."""
    if schema.names != EPISODE_SCHEMA.names:
        return False
    if schema.types == EPISODE_SCHEMA.types:  # as the store writes them
        return True
    try:
        schema.empty_table().replace_schema_metadata(None).cast(EPISODE_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, ValueError):
        return False
    return True


def _drop_duplicate_episodes(table: pa.Table) -> pa.Table:
    """Keep the first row of each episode_id (two compactions that raced may repeat rows)."""
    ids = table["episode_id"].to_pylist()
    seen: set[str] = set()
    keep = []
    for i, eid in enumerate(ids):
        if eid not in seen:
            seen.add(eid)
            keep.append(i)
    return table.take(pa.array(keep))


def read_version_file(sfs: StoreFS, rel: str) -> tuple[dict[str, Any], pa.Table]:
    """(info dict, manifest table) of a version file."""
    try:
        table = read_parquet(sfs, rel)
        info = json.loads((table.schema.metadata or {})[VERSION_INFO_KEY])
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise CorruptStoreError(f"version file {rel} is unreadable ({exc}); run `sime-data verify`") from exc
    return info, table.replace_schema_metadata(None).cast(MANIFEST_SCHEMA)


def _version_row(info: dict[str, Any]) -> dict[str, Any]:
    stats = info.get("stats", {})
    return {
        "name": info["name"],
        "parents": info.get("parents", []),
        "message": info.get("message"),
        "rule": json.dumps(info["rule"], sort_keys=True) if info.get("rule") is not None else None,
        "query": info.get("query"),
        "created_at": pd.Timestamp(info["created_at"]).to_pydatetime(),
        "n_episodes": stats.get("n_episodes"),
        "n_ranges": stats.get("n_ranges"),
        "n_frames": stats.get("n_frames"),
        "success_rate": stats.get("success_rate"),
    }
