"""The trajectory store: open/create, write episodes, read arrays, SQL and versions."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import zarr

from .catalog import Catalog
from .compaction import compact_store
from .data_root import DataRoot
from .errors import (
    CorruptStoreError,
    EpisodeNotFoundError,
    NewerStoreError,
    OutdatedStoreError,
    StoreError,
    StoreNotFoundError,
)
from .layout import BLOBS_DIR, ROOT_FILE, SCHEMA_VERSION, STORE_FORMAT, VERSION_SUFFIX, VERSIONS_DIR, RootMeta
from .migration_state import recover_interrupted_migration
from .new_store import write_new_store
from .segment import KeySpec, read_blocks
from .sql_sandbox import API_MAX_ROWS, API_TIMEOUT_S
from .storefs import StoreFS
from .versions import (
    ManifestLike,
    Version,
    VersionDiff,
    diff_versions,
    load_version,
    to_manifest_frame,
    trimmed_manifest,
    validate_manifest,
    write_version,
)
from .writer import CommitBatch, EpisodeWriter

log = logging.getLogger(__name__)


class Store:
    """A versioned trajectory store at a local directory or fsspec URL."""

    def __init__(self, sfs: StoreFS, root_meta: RootMeta) -> None:
        self.sfs = sfs
        self.root_meta = root_meta
        self.catalog = Catalog(sfs)
        self._data = DataRoot(sfs)
        self._arrays: dict[tuple[str, str], zarr.Array] = {}
        self._segment_keys: dict[str, dict[str, KeySpec]] = {}
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, location: str | os.PathLike, *, exist_ok: bool = False) -> "Store":
        """Create a new, empty store at the current format and open it."""
        sfs = StoreFS(location)
        _recover_migration(sfs)  # never create an empty store where an interrupted migration's copy belongs
        if sfs.exists(ROOT_FILE):
            if exist_ok:
                return cls.open(location)
            from .errors import StoreExistsError

            raise StoreExistsError(f"a store already exists at {sfs.location}")
        if sfs.is_local:
            _create_local_then_publish(sfs.root, write_new_store)
        else:  # object stores: no rename; the root file is written last, at the current format
            write_new_store(sfs)
        return cls.open(location)

    @classmethod
    def open(cls, location: str | os.PathLike, *, create: bool = False, schema_version: int = SCHEMA_VERSION) -> "Store":
        """Open an existing store (or create it with `create=True`); refuses other formats clearly."""
        sfs = StoreFS(location)
        _recover_migration(sfs)
        if not sfs.exists(ROOT_FILE):
            if create:
                return cls.create(location)
            hint = " (the directory exists but holds no store)" if sfs.exists("") else ""
            raise StoreNotFoundError(f"no SIME store at {sfs.location}{hint}; create one with `sime-data init --store {sfs.location}`")
        try:
            meta = RootMeta.from_json(sfs.read_bytes(ROOT_FILE))
        except (ValueError, TypeError, KeyError) as exc:
            raise StoreError(f"{sfs.location}/{ROOT_FILE} is not valid store metadata: {exc}") from exc
        if meta.format != STORE_FORMAT:
            raise StoreError(f"{sfs.location} holds format {meta.format!r}, not a SIME store")
        if meta.schema_version < schema_version:
            raise OutdatedStoreError(
                f"store at {sfs.location} has format version {meta.schema_version}, this code needs {schema_version}: "
                f"upgrade it with `sime-data migrate --store {sfs.location}` (a backup is kept)"
            )
        if meta.schema_version > schema_version:
            raise NewerStoreError(
                f"store at {sfs.location} has format version {meta.schema_version}, newer than this code's "
                f"{schema_version}: upgrade the sime package to read it (nothing was changed)"
            )
        return cls(sfs, meta)

    @property
    def location(self) -> str:
        """Where the store lives, as given when opened."""
        return self.sfs.location

    @property
    def zarr_root(self) -> zarr.Group:
        """Root Zarr group holding one subgroup per segment."""
        return self._data.group

    def __repr__(self) -> str:
        return f"Store({self.location!r})"

    # ------------------------------------------------------------------ writing
    def writer(self, source: str, task: str | None = None, *, atomic: bool = False, model_xml: str | None = None,
               durable: bool = False, **defaults: Any) -> EpisodeWriter:
        """A writer owning a new segment; `defaults` (round=, checkpoint=, ...) apply to each of its episodes."""
        return EpisodeWriter(self.sfs, self.root_meta, self.catalog, self._data, source, task, atomic=atomic,
                             model_xml=model_xml, durable=durable, **defaults)

    def commit_batch(self) -> CommitBatch:
        """Atomic writers (one per array layout) whose episodes all become visible together, in one row file."""
        return CommitBatch(self.sfs, self.root_meta, self.catalog, self._data)

    def compact(self) -> int:
        """Merge all episode row files into one (faster catalog loads); returns rows merged."""
        return compact_store(self.sfs, self.catalog)

    # ------------------------------------------------------------------ episodes
    def episodes(self, where: str | None = None, *, version: str | None = None,
                 columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Episode rows as a DataFrame, optionally filtered by a SQL condition and/or a version."""
        if where is None and version is None:
            table = self.catalog.episodes()
            if columns is not None:
                table = table.select(list(columns))
            return table.to_pandas()
        select = ", ".join(f'"{c}"' for c in columns) if columns else "*"
        query = f"SELECT {select} FROM episodes"
        conditions = []
        if version is not None:
            load_version(self.catalog, version)  # clear error for unknown names
            quoted = version.replace("'", "''")
            conditions.append(f"episode_id IN (SELECT episode_id FROM version_episodes WHERE version = '{quoted}')")
        if where:
            conditions.append(f"({where})")
        query += " WHERE " + " AND ".join(conditions)
        return self.sql(query)

    def episode(self, episode_id: str) -> dict[str, Any]:
        """Metadata row of one episode."""
        for _attempt in range(20):
            index = self.catalog.episode_row_index()
            if episode_id not in index:
                raise EpisodeNotFoundError(f"no episode {episode_id!r} in store {self.location}")
            table = self.catalog.episodes()  # refreshed: a commit meanwhile may have shifted the rows
            i = index[episode_id]
            if i < table.num_rows and table["episode_id"][i].as_py() == episode_id:
                return table.slice(i, 1).to_pylist()[0]
        raise CorruptStoreError(f"episode rows kept changing while reading {episode_id!r}; try again")

    def episode_columns(self, columns: Sequence[str]) -> pa.Table:
        """Some columns of every committed episode row (only those columns are read when they are not loaded)."""
        return self.catalog.episode_columns(columns)

    def row_files(self) -> tuple[str, ...]:
        """Relative paths of the episode row files in force now (the list changes with every commit)."""
        return self.catalog.active_episode_files()

    def segment_keys(self, segment: str) -> dict[str, KeySpec]:
        """Array keys of a segment with their per-step shape and dtype."""
        with self._lock:
            if segment not in self._segment_keys:
                group = zarr.open_group(self.zarr_root.store, path=segment, mode="r")
                self._segment_keys[segment] = {k: KeySpec.from_json(v) for k, v in group.attrs["keys"].items()}
            return self._segment_keys[segment]

    def array(self, segment: str, key: str) -> zarr.Array:
        """The Zarr array of `key` in `segment` (cached)."""
        with self._lock:
            found = self._arrays.get((segment, key))
            if found is None:
                found = zarr.open_array(self.zarr_root.store, path=f"{segment}/{key}", mode="r")
                self._arrays[(segment, key)] = found
            return found

    def episode_keys(self, episode_id: str) -> dict[str, KeySpec]:
        """Array keys recorded for an episode, with per-step shape and dtype."""
        row = self.episode(episode_id)
        specs = self.segment_keys(row["segment"])
        return {k: specs[k] for k in row["keys"]}

    def read_episode(self, episode_id: str, keys: Iterable[str] | None = None, start: int | None = None,
                     stop: int | None = None) -> dict[str, np.ndarray]:
        """Arrays of one episode (all keys or some; whole or the frame range [start, stop))."""
        row = self.episode(episode_id)
        available = list(row["keys"])
        wanted = available if keys is None else list(keys)
        unknown = [k for k in wanted if k not in available]
        if unknown:
            raise KeyError(f"episode {episode_id} has no array(s) {unknown}; it has {available}")
        length = row["length"]
        lo, hi, _ = slice(start, stop).indices(length)
        if hi <= lo:
            return {k: np.zeros((0, *self.segment_keys(row['segment'])[k].shape), self.segment_keys(row['segment'])[k].dtype) for k in wanted}
        base = row["seg_start"]
        arrays = read_blocks([(self.array(row["segment"], k), base + lo, base + hi) for k in wanted])
        return dict(zip(wanted, arrays))

    def model_xml(self, episode_id: str) -> str | None:
        """Simulator model XML recorded with the episode, if any."""
        sha = self.episode(episode_id)["model_xml_sha"]
        if sha is None:
            return None
        return self.sfs.read_bytes(f"{BLOBS_DIR}/{sha}.xml").decode()

    # ------------------------------------------------------------------ SQL
    def sql(self, query: str, *, timeout_s: float | None = API_TIMEOUT_S,
            max_rows: int | None = API_MAX_ROWS) -> pd.DataFrame:
        """Run a read-only SQL query over the views episodes, versions and version_episodes.

        Only one SELECT (or EXPLAIN of one) runs, in a throwaway sandbox; it is stopped after `timeout_s`
        seconds (SQLTimeoutError) and refused if it returns more than `max_rows` rows (SQLResultTooLargeError);
        None lifts a limit. Ctrl-C stops a running query.
        """
        return self.catalog.sql(query, timeout_s=timeout_s, max_rows=max_rows)

    # ------------------------------------------------------------------ versions
    def versions(self) -> pd.DataFrame:
        """All versions with parents, message, rule and counts."""
        return self.catalog.versions()[0].to_pandas()

    def version_files(self) -> list[str]:
        """Relative paths of the version files on disk, sorted (unreadable ones included)."""
        return self.sfs.list_files(VERSIONS_DIR, VERSION_SUFFIX)

    def unreadable_versions(self) -> dict[str, str]:
        """Version files left out of the version list and SQL because they are unreadable: path -> reason."""
        return self.catalog.unreadable_versions()

    def version(self, name: str) -> Version:
        """One version by name (VersionNotFoundError if unknown)."""
        return load_version(self.catalog, name)

    def has_version(self, name: str) -> bool:
        """True when a version of this name exists."""
        return self.catalog.version(name) is not None

    def create_version(self, name: str, episodes: ManifestLike, *, parents: Iterable[str] = (), message: str = "",
                       rule: Mapping[str, Any] | None = None, query: str | None = None) -> Version:
        """New immutable version from episode ids, (id, start, stop) tuples or a manifest DataFrame."""
        return write_version(self.sfs, self.catalog, name, to_manifest_frame(episodes), parents=parents,
                             message=message, rule=rule, query=query)

    def create_version_from_query(self, name: str, query: str, *, parents: Iterable[str] = (), message: str = "",
                                  rule: Mapping[str, Any] | None = None) -> Version:
        """New version from a SQL query returning episode_id (and optionally frame_start, frame_stop)."""
        result = self.sql(query)
        if "episode_id" not in result.columns:
            from .errors import InvalidManifestError

            raise InvalidManifestError(f"the query must return an 'episode_id' column; it returned {list(result.columns)}")
        if result.empty:
            from .errors import InvalidManifestError

            raise InvalidManifestError("the query selected no episodes; a version needs at least one")
        return write_version(self.sfs, self.catalog, name, to_manifest_frame(result), parents=parents,
                             message=message, rule=rule, query=query)

    def create_version_from_trims(self, name: str, base: str, trims: Mapping[str, Sequence[tuple[int, int]]] | None = None,
                                  *, drop: Iterable[str] = (), message: str = "") -> Version:
        """New version = `base` with some episodes dropped and others trimmed to the given keep-ranges."""
        base_version = self.version(base)
        trims = {k: [tuple(r) for r in v] for k, v in (trims or {}).items()}
        drop = list(drop)
        manifest = trimmed_manifest(base_version, trims, drop)
        rule = {"kind": "trim", "base": base, "trims": trims, "drop": drop}
        return write_version(self.sfs, self.catalog, name, manifest, parents=[base], message=message, rule=rule)

    def create_version_union(self, name: str, versions: Sequence[str], *, message: str = "",
                             rule: Mapping[str, Any] | None = None) -> Version:
        """New version holding every frame range of the given versions (no data copied)."""
        if not versions:
            raise ValueError("create_version_union needs at least one version")
        frames = [self.version(v).manifest for v in versions]
        manifest = validate_manifest(self.catalog, pd.concat(frames, ignore_index=True), merge_overlaps=True)
        return write_version(self.sfs, self.catalog, name, manifest, parents=list(versions), message=message,
                             rule=dict(rule) if rule else {"kind": "union", "versions": list(versions)})

    def diff_versions(self, a: str, b: str) -> VersionDiff:
        """What b adds, removes and re-trims relative to a."""
        return diff_versions(self.version(a), self.version(b))


#: Prefix of the hidden sibling directory a local store is built in before it appears under its name.
_CREATING = ".creating-"


def _create_local_then_publish(root: str, create: Any) -> None:
    """Build a new local store in a hidden sibling directory, then rename it into place.

    A reader polling the location (another process opening the store while `sime run` creates it)
    sees no store or a complete one at the current format, never a half-built one. Leftovers of a
    killed creation are removed by the next one.
    """
    import fcntl
    import shutil
    import uuid

    if os.path.isdir(root) and os.listdir(root):
        create(StoreFS(root))  # a directory holding other files: build in place (it cannot be renamed onto)
        return
    parent, name = os.path.split(root.rstrip(os.sep))
    os.makedirs(parent, exist_ok=True)
    prefix = f".{name}{_CREATING}"
    for entry in os.listdir(parent):
        if entry.startswith(prefix):
            stale = os.path.join(parent, entry)
            try:
                with open(os.path.join(stale, ".lock"), "a") as handle:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held while its creator lives
                shutil.rmtree(stale, ignore_errors=True)
            except OSError:
                continue
    staging = os.path.join(parent, prefix + uuid.uuid4().hex[:12])
    os.makedirs(staging)
    with open(os.path.join(staging, ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            create(StoreFS(staging))
            os.remove(os.path.join(staging, ".lock"))
            if os.path.isdir(root) and not os.listdir(root):
                os.rmdir(root)  # an empty directory the user made for the store
            try:
                os.rename(staging, root)
            except OSError as exc:
                from .errors import StoreExistsError

                raise StoreExistsError(f"a store appeared at {root} while this one was created: {exc}") from exc
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def _recover_migration(sfs: StoreFS) -> None:
    """Finish or roll back a `sime-data migrate` of this (local) store that was killed."""
    if sfs.is_local:
        recover_interrupted_migration(sfs.root)


def open_store(location: str | os.PathLike, *, create: bool = False) -> Store:
    """Open the store at `location` (a directory or fsspec URL); `create=True` makes it if missing."""
    return Store.open(location, create=create)


def init_store(location: str | os.PathLike, *, exist_ok: bool = False) -> Store:
    """Create a new store at `location`."""
    return Store.create(location, exist_ok=exist_ok)
