"""Store maintenance: `verify` (read-only integrity check) and `gc` (reclaim what crashed writers left)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .catalog import SUPERSEDES_KEY, VERSION_INFO_KEY, MANIFEST_SCHEMA
from .checksums import RecordSet, checksum, compare_with_row, load_records
from .errors import CorruptStoreError, StoreDamagedError, StoreError
from .layout import (
    BLOBS_DIR,
    CHECKSUMS_DIR,
    COMPACT_PREFIX,
    DATA_DIR,
    EPISODES_DIR,
    LOCKS_DIR,
    ROOT_FILE,
    STORE_FORMAT,
    VERSION_SUFFIX,
    VERSIONS_DIR,
    RootMeta,
    version_name_from_path,
)
from .processes import lock_is_live
from .schema import EPISODE_SCHEMA
from .segment import ArrayLayout, KeySpec, read_blocks

if TYPE_CHECKING:  # pragma: no cover
    from .store import Store

log = logging.getLogger(__name__)

#: Temporary files (".tmp-*", "*.partial") outside a dead writer's segment are removed once this old.
TMP_MAX_AGE_SECONDS = 3600
#: Store-wide compaction lock file (see compaction._CompactionLock).
COMPACTION_LOCK = f"{LOCKS_DIR}/compaction.lock"
_PARTIAL_SUFFIX = ".partial"  # zarr's LocalStore writes chunks to "<name>.<uuid>.partial" and renames them
_TMP_PREFIX = ".tmp-"  # StoreFS.write_atomic's temporary files


# ---------------------------------------------------------------------- reports
@dataclass
class VerifyReport:
    """Outcome of `verify`: `ok` is True when no problem was found."""

    ok: bool
    problems: list[str]
    n_episodes: int
    n_versions: int
    n_chunks_checked: int
    notes: list[str] = field(default_factory=list)
    n_row_files: int = 0
    seconds: float = 0.0
    deep: bool = False
    n_checksums_checked: int = 0

    def summary(self) -> str:
        """One line for people (problems are listed separately in `problems`)."""
        state = "OK" if self.ok else f"DAMAGED: {len(self.problems)} problem(s)"
        text = (
            f"verify {state}: {self.n_episodes} episodes in {self.n_row_files} row files, {self.n_versions} versions, "
            f"{self.n_chunks_checked} chunk files checked"
            + (f" ({self.n_checksums_checked} against their crc32c)" if self.deep else "")
            + f" in {self.seconds:.1f}s"
        )
        if self.notes:
            text += f"; {len(self.notes)} note(s): " + "; ".join(self.notes[:3]) + (" ..." if len(self.notes) > 3 else "")
        return text


@dataclass
class GcReport:
    """What `gc` removed (or, with dry_run, would remove)."""

    segments_removed: list[str] = field(default_factory=list)
    chunk_files_removed: int = 0
    bytes_freed: int = 0
    skipped_active: list[str] = field(default_factory=list)
    locks_removed: list[str] = field(default_factory=list)
    row_files_removed: list[str] = field(default_factory=list)
    tmp_files_removed: int = 0
    dry_run: bool = False
    #: segments kept whole because a version or checksum record names episodes whose row is missing
    kept_referenced: list[str] = field(default_factory=list)
    #: what verify found wrong (gc ran anyway because it was forced)
    problems_ignored: list[str] = field(default_factory=list)
    #: one line per path removed (or, with dry_run, to be removed), saying why
    listing: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for people."""
        verb = "would free" if self.dry_run else "freed"
        text = (
            f"gc {verb} {_human_bytes(self.bytes_freed)}: {len(self.segments_removed)} uncommitted segment(s), "
            f"{self.chunk_files_removed} unreferenced chunk file(s), {len(self.row_files_removed)} superseded row "
            f"file(s), {self.tmp_files_removed} temporary file(s), {len(self.locks_removed)} stale lock(s)"
        )
        if self.skipped_active:
            text += f"; skipped {len(self.skipped_active)} segment(s) of live writers"
        if self.kept_referenced:
            text += (f"; kept {len(self.kept_referenced)} segment(s) whole because versions or checksum records name "
                     "episodes whose row file is missing")
        if self.problems_ignored:
            text += f"; ran despite {len(self.problems_ignored)} verify problem(s) (forced)"
        return text


def _human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


# ---------------------------------------------------------------------- shared helpers
def _as_store(store: "Store | str | os.PathLike") -> "Store":
    from .store import Store

    return store if isinstance(store, Store) else Store.open(store)


def _read_json(sfs: Any, rel: str) -> dict[str, Any]:
    return json.loads(sfs.read_bytes(rel))


def _read_parquet(sfs: Any, rel: str) -> pa.Table:
    if sfs.is_local:
        return pq.read_table(sfs.path(rel))
    return pq.read_table(io.BytesIO(sfs.read_bytes(rel)))


def _all_files(sfs: Any, rel: str) -> list[tuple[str, int, float]]:
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


def _top_files(sfs: Any, rel: str) -> list[tuple[str, int, float]]:
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


def _is_tmp(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return name.startswith(_TMP_PREFIX) or name.endswith(_PARTIAL_SUFFIX)


def _slot_size(length: int, align: int) -> int:
    return -(-int(length) // align) * align


@dataclass
class _RowSnapshot:
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


def _snapshot_rows(store: "Store") -> _RowSnapshot:
    """Read every episode row file as of one moment, even while writers commit and compactions run.

    A directory walk is not atomic: a compaction may write its merged file where the walk has already
    looked and delete the merged files where it has not looked yet, so one listing can miss rows. The
    listing is therefore taken again after reading; it is accepted when no file vanished meanwhile and no
    compacted file appeared (plain commits only add files, which cannot hide rows from the first listing).
    """
    sfs = store.sfs
    for attempt in range(50):
        files = sfs.list_files(EPISODES_DIR, ".parquet")
        tables: dict[str, pa.Table] = {}
        supersedes: dict[str, frozenset[str]] = {}
        unreadable: dict[str, str] = {}
        try:
            for rel in files:
                try:
                    table = _read_parquet(sfs, rel)
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
        return _RowSnapshot(files, tables, supersedes, unreadable)
    raise CorruptStoreError("episode row files kept changing while being read (compactions running?); try again")


# ---------------------------------------------------------------------- verify
def verify(store: "Store | str | os.PathLike", *, check_chunks: bool = True, deep: bool = False,
           progress: bool = False) -> VerifyReport:
    """Check the store's metadata, rows, versions, blobs and (optionally) every referenced chunk; changes nothing.

    Rows are compared with the checksum records written when they were committed. `check_chunks` checks that
    every chunk file exists with its committed size and decodes; `deep` also compares every chunk file's
    bytes with its crc32c (finds a single flipped bit).
    """
    check_chunks = check_chunks or deep
    t0 = time.perf_counter()
    problems: list[str] = []
    notes: list[str] = []
    try:
        store = _as_store(store)
    except StoreError as exc:
        return VerifyReport(False, [f"root metadata: {exc}"], 0, 0, 0, seconds=time.perf_counter() - t0)
    sfs = store.sfs
    align = store.root_meta.align_frames

    # root metadata, re-read from disk
    try:
        meta = RootMeta.from_json(sfs.read_bytes(ROOT_FILE))
        if meta.format != STORE_FORMAT:
            problems.append(f"root metadata: format is {meta.format!r}, not {STORE_FORMAT!r}")
        align = meta.align_frames
    except Exception as exc:  # noqa: BLE001
        problems.append(f"root metadata {ROOT_FILE} does not parse: {exc}")

    # versions are listed before the rows are read: a version only names episodes committed before it was
    # made, so every episode a listed version needs is in the row snapshot even while writers run
    version_files = sfs.list_files(VERSIONS_DIR, VERSION_SUFFIX)
    # checksum records are read before the rows too: a record is written after its row, so each record seen
    # here has its row in the snapshot
    live = _live_segments(sfs)
    records = load_records(sfs)

    # episode row files
    snap = _snapshot_rows(store)
    for rel, why in snap.unreadable.items():
        problems.append(f"episode row file {rel} is unreadable: {why}")
    rows = snap.active_rows()
    sources = snap.row_sources()
    for eid, files in sources.items():
        if len(files) > 1:
            problems.append(f"episode {eid} has {len(files)} active rows (in {', '.join(files)})")
    leftover = [f for f in snap.files if f in snap.superseded]
    if leftover:
        notes.append(f"{len(leftover)} row file(s) superseded by a compaction are still present (`gc` removes them)")
    episodes = _unique_rows(rows.to_pylist())
    by_id = {row["episode_id"]: row for row in episodes}
    _check_records(sfs, records, episodes, by_id, live, store.root_meta.schema_version, problems, notes)

    # segment and array metadata
    segments: dict[str, _SegmentInfo] = {}
    slots: dict[str, list[tuple[int, int, str]]] = {}
    for row in episodes:
        eid, seg = row["episode_id"], row["segment"]
        start, length = int(row["seg_start"]), int(row["length"])
        if length <= 0 or start < 0:
            problems.append(f"episode {eid}: impossible frame range (seg_start={start}, length={length})")
            continue
        if start % align:
            problems.append(f"episode {eid}: seg_start {start} is not a multiple of align_frames={align}")
        slots.setdefault(seg, []).append((start, start + _slot_size(length, align), eid))
        info = segments.get(seg)
        if info is None:
            info = segments[seg] = _SegmentInfo.load(sfs, seg)
        if info.error:
            problems.append(f"episode {eid}: segment {seg}: {info.error}")
            continue
        for key in row["keys"] or []:
            err = info.check_key(sfs, key, start + length)
            if err:
                problems.append(f"episode {eid}: key {key}: {err}")
    for seg, seg_slots in slots.items():
        seg_slots.sort()
        for (s0, e0, a), (s1, _e1, b) in zip(seg_slots, seg_slots[1:]):
            if s1 < e0:
                problems.append(f"episodes {a} and {b} overlap in segment {seg} (frames {s1}..{e0})")

    # chunks
    n_chunks = n_crc = 0
    if check_chunks:
        iterator: Iterable[dict[str, Any]] = episodes
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(episodes, desc="verify chunks" + (" (deep)" if deep else ""), unit="ep")
        for row in iterator:
            files, crcs = _check_episode_chunks(store, row, segments.get(row["segment"]),
                                                records.get(row["episode_id"]), deep, problems)
            n_chunks += files
            n_crc += crcs

    # versions
    n_versions = 0
    for rel in version_files:
        n_versions += 1
        name = version_name_from_path(rel)
        try:
            table = _read_parquet(sfs, rel)
            info = json.loads((table.schema.metadata or {})[VERSION_INFO_KEY])
            manifest = table.replace_schema_metadata(None).cast(MANIFEST_SCHEMA).to_pylist()
        except Exception as exc:  # noqa: BLE001
            problems.append(f"version file {rel} is unreadable: {type(exc).__name__}: {exc}")
            continue
        if info.get("name") != name:
            problems.append(f"version file {rel} names itself {info.get('name')!r}")
        for parent in info.get("parents") or []:
            if not sfs.exists(f"{VERSIONS_DIR}/{parent}{VERSION_SUFFIX}"):
                problems.append(f"version {name}: parent version {parent!r} does not exist")
        bad = 0
        for entry in manifest:
            row = by_id.get(entry["episode_id"])
            if row is None:
                msg = f"version {name}: episode {entry['episode_id']} is not in the store"
            elif not 0 <= entry["frame_start"] < entry["frame_stop"] <= row["length"]:
                msg = (f"version {name}: episode {entry['episode_id']} range [{entry['frame_start']}, "
                       f"{entry['frame_stop']}) does not fit its {row['length']} frames")
            else:
                continue
            bad += 1
            if bad <= 20:
                problems.append(msg)
        if bad > 20:
            problems.append(f"version {name}: {bad - 20} more bad manifest entries")

    # blobs
    checked: dict[str, str | None] = {}
    for row in episodes:
        sha = row.get("model_xml_sha")
        if not sha:
            continue
        if sha not in checked:
            checked[sha] = _check_blob(sfs, sha)
        if checked[sha]:
            problems.append(f"episode {row['episode_id']}: model XML blob {sha}: {checked[sha]}")

    return VerifyReport(
        ok=not problems,
        problems=problems,
        n_episodes=len(episodes),
        n_versions=n_versions,
        n_chunks_checked=n_chunks,
        notes=notes,
        n_row_files=len(snap.files),
        seconds=time.perf_counter() - t0,
        deep=deep,
        n_checksums_checked=n_crc,
    )


def _live_segments(sfs: Any) -> set[str]:
    """Segments whose writer holds its lock right now."""
    out = set()
    for rel, _size, mtime in _all_files(sfs, LOCKS_DIR):
        if rel == COMPACTION_LOCK or _is_tmp(rel) or not rel.endswith(".json"):
            continue
        if lock_is_live(sfs, rel, mtime):
            out.add(rel[len(LOCKS_DIR) + 1: -len(".json")])
    return out


def _check_records(sfs: Any, records: RecordSet, episodes: list[dict[str, Any]], by_id: dict[str, dict[str, Any]],
                   live: set[str], schema_version: int, problems: list[str], notes: list[str]) -> None:
    """Compare every row with the checksum record of its commit; find records whose row is gone."""
    for rel, why in records.unreadable.items():
        problems.append(f"checksum record file {rel} is unreadable: {why}")
    problems.extend(records.conflicts)
    unrecorded = []
    for row in episodes:
        rec = records.get(row["episode_id"])
        if rec is None:
            unrecorded.append(row)
            continue
        for diff in compare_with_row(rec, row):
            problems.append(f"episode {row['episode_id']}: {diff} (its row file was edited or damaged)")
    if unrecorded and schema_version >= 2:
        later = load_records(sfs)  # records committed while this verify ran
        still = [r["episode_id"] for r in unrecorded if later.get(r["episode_id"]) is None and r["segment"] not in live]
        if still:
            notes.append(f"{len(still)} episode(s) have no checksum record (their writer died between committing the "
                         f"row and the record, or the record file was removed), e.g. {', '.join(still[:3])}: their "
                         "chunks are checked for existence and decoding only")
    for eid, (rec, rel) in sorted(records.records.items()):
        if eid not in by_id and rec["segment"] not in live:
            problems.append(f"episode {eid} was committed (checksum record {rel}) but has no metadata row: its row "
                            f"file under {EPISODES_DIR}/ is missing or unreadable; restore it from a copy of the store "
                            "(gc keeps the episode's frames)")


def _unique_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for row in rows:
        if row["episode_id"] not in seen:
            seen.add(row["episode_id"])
            out.append(row)
    return out


def _check_blob(sfs: Any, sha: str) -> str | None:
    rel = f"{BLOBS_DIR}/{sha}.xml"
    try:
        data = sfs.read_bytes(rel)
    except FileNotFoundError:
        return f"{rel} is missing"
    except Exception as exc:  # noqa: BLE001
        return f"{rel} is unreadable: {exc}"
    if hashlib.sha256(data).hexdigest() != sha:
        return f"{rel} does not match its checksum"
    return None


@dataclass
class _SegmentInfo:
    """Group metadata of one segment and the layouts of its arrays (or why they are unusable)."""

    name: str
    specs: dict[str, KeySpec]
    layouts: dict[str, ArrayLayout | str]
    empty_chunks_written: bool
    error: str | None = None

    @classmethod
    def load(cls, sfs: Any, segment: str) -> "_SegmentInfo":
        """Read data/<segment>/zarr.json (arrays are read lazily by `layout`)."""
        rel = f"{DATA_DIR}/{segment}/zarr.json"
        try:
            meta = _read_json(sfs, rel)
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
                self.layouts[key] = ArrayLayout(_read_json(sfs, rel))
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


def _check_episode_chunks(store: "Store", row: dict[str, Any], info: _SegmentInfo | None,
                          record: dict[str, Any] | None, deep: bool, problems: list[str]) -> tuple[int, int]:
    """Check one episode's chunk files: present, of their committed size, decodable and (deep) matching their crc32c.

    Returns (chunk files covered, chunk files compared with their checksum).
    """
    if info is None or info.error:
        return 0, 0
    sfs = store.sfs
    eid, seg = row["episode_id"], row["segment"]
    start, length = int(row["seg_start"]), int(row["length"])
    stop = start + length
    recorded = (record or {}).get("files", {})
    keys = []
    n = n_crc = 0
    for key in row["keys"] or []:
        layout = info.layout(sfs, key)
        if isinstance(layout, str) or key not in info.specs:
            continue  # reported by the metadata check
        missing, unrecorded, damaged = [], [], []
        for chunk in layout.file_keys_for_frames(start, stop):
            n += 1
            rel = f"{DATA_DIR}/{seg}/{key}/{chunk}"
            size = sfs.file_size(rel)
            if size is None:
                if info.empty_chunks_written:
                    missing.append(chunk)
                continue
            expected = recorded.get(f"{key}/{chunk}")
            if record is not None and expected is None:
                unrecorded.append(chunk)
                continue
            if expected is None:
                continue
            crc, committed_size = expected
            if size != committed_size:
                damaged.append(f"{rel} has {size} bytes, {committed_size} when committed")
            elif deep:
                n_crc += 1
                try:
                    actual = checksum(sfs.read_bytes(rel))
                except Exception as exc:  # noqa: BLE001
                    damaged.append(f"{rel} is unreadable: {type(exc).__name__}: {exc}")
                    continue
                if actual != crc:
                    damaged.append(f"{rel} does not match its checksum (crc32c {actual}, {crc} when committed)")
        where = f"episode {eid} key {key} frames 0..{length}"
        if missing:
            problems.append(f"{where}: chunk file(s) missing: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
            continue
        if unrecorded:
            problems.append(f"{where}: no checksum was recorded at commit for chunk file(s) "
                            f"{', '.join(unrecorded[:5])}: the row names frames the writer never wrote (row edited?)")
        for text in damaged[:5]:
            problems.append(f"{where}: chunk file damaged: {text}")
        if len(damaged) > 5:
            problems.append(f"{where}: {len(damaged) - 5} more damaged chunk files")
        keys.append(key)
    if not keys:
        return n, n_crc
    try:
        arrays = read_blocks([(store.array(seg, k), start, stop) for k in keys])
        bad = [k for k, a in zip(keys, arrays) if a.shape[0] != length]
        for k in bad:
            problems.append(f"episode {eid} key {k} frames 0..{length} unreadable: read returned a wrong shape")
    except Exception:  # noqa: BLE001 - find which key fails
        for k in keys:
            try:
                read_blocks([(store.array(seg, k), start, stop)])
            except Exception as exc:  # noqa: BLE001
                problems.append(f"episode {eid} key {k} frames 0..{length} (segment frames {start}..{stop}) "
                                f"unreadable: {type(exc).__name__}: {exc}")
    return n, n_crc


# ---------------------------------------------------------------------- gc
def gc(store: "Store | str | os.PathLike", *, dry_run: bool = False, force: bool = False,
       ignore_locks: bool = False) -> GcReport:
    """Remove frames, row files, temporary files and locks that crashed or aborted writers left behind.

    Never removes frames that a committed row, a checksum record or a version manifest refers to (a segment
    some version or record needs is kept whole when the episode's row file is missing). First runs `verify`'s
    metadata checks and refuses (StoreDamagedError) if they find damage, unless `force=True`: look at the
    dry-run listing (`dry_run=True, force=True`) before forcing. A writer counts as live while it holds its lock
    (an OS lock on local disks, released by the kernel when the process dies; a fresh heartbeat on object
    stores); `ignore_locks=True` treats every writer as dead (only when you know none runs). With `dry_run`,
    nothing is removed and the report says what would be. Works on local and fsspec stores alike.
    """
    store = _as_store(store)
    sfs = store.sfs
    align = store.root_meta.align_frames
    report = GcReport(dry_run=dry_run)
    now = time.time()

    check = verify(store, check_chunks=False)
    if not check.ok:
        if not force:
            shown = "\n  ".join(check.problems[:10]) + ("\n  ..." if len(check.problems) > 10 else "")
            raise StoreDamagedError(
                f"gc refuses to run: verify found {len(check.problems)} problem(s) in the store, and removing "
                f"anything now could destroy data that can still be restored:\n  {shown}\n"
                "Repair them (e.g. restore missing row files), or look at `sime-data gc --force --dry-run` and then "
                "run `sime-data gc --force` (frames that rows, checksum records or versions name are kept even then)"
            )
        report.problems_ignored = list(check.problems)

    def drop(rel: str, size: int, why: str, recursive: bool = False) -> None:
        report.bytes_freed += size
        report.listing.append(f"{rel}{'/' if recursive else ''}  ({_human_bytes(size)}; {why})")
        if not dry_run:
            sfs.remove(rel, recursive=recursive)

    # 1. segment directories first, then their locks: a segment listed here whose lock is gone afterwards
    #    belongs to a writer that has closed, so its committed rows (read after this) are final.
    segment_dirs = sfs.list_dirs(DATA_DIR)
    meta_dirs = sfs.list_dirs(EPISODES_DIR)
    lock_files = {rel: size for rel, size, _m in _all_files(sfs, LOCKS_DIR)}
    inactive: set[str] = set()
    dead_locks: list[tuple[str, int]] = []
    for seg in sorted(set(segment_dirs) | set(meta_dirs)):
        lock_rel = f"{LOCKS_DIR}/{seg}.json"
        if sfs.exists(lock_rel):
            if not ignore_locks and lock_is_live(sfs, lock_rel):
                report.skipped_active.append(seg)
                continue
        inactive.add(seg)
    for rel, size, mtime in _all_files(sfs, LOCKS_DIR):
        if rel == COMPACTION_LOCK or _is_tmp(rel) or not rel.endswith(".json"):
            continue
        seg = rel[len(LOCKS_DIR) + 1: -len(".json")]
        if seg in report.skipped_active:
            continue
        if ignore_locks or not lock_is_live(sfs, rel, mtime):
            dead_locks.append((rel, size))
            inactive.add(seg)
        else:
            report.skipped_active.append(seg)  # a live writer that has not written a frame yet

    # 2. what is committed, read after the lock checks: rows, checksum records and version manifests
    snap = _snapshot_rows(store)
    if snap.unreadable:
        first = next(iter(snap.unreadable.items()))
        raise CorruptStoreError(
            f"gc refuses to run: {len(snap.unreadable)} episode row file(s) are unreadable (e.g. {first[0]}: {first[1]}), "
            "so it cannot tell which frames are committed; run `sime-data verify`"
        )
    records = load_records(sfs)
    referenced = _version_episode_ids(sfs)
    committed: dict[str, list[tuple[int, int]]] = {}
    have_row: set[str] = set()
    for row in snap.active_rows().select(["episode_id", "segment", "seg_start", "length"]).to_pylist():
        have_row.add(row["episode_id"])
        start = int(row["seg_start"])
        committed.setdefault(row["segment"], []).append((start, start + _slot_size(row["length"], align)))
    for eid, (rec, _rel) in records.records.items():
        start = int(rec["seg_start"])  # a commit record whose row file is missing still protects its frames
        committed.setdefault(rec["segment"], []).append((start, start + _slot_size(rec["length"], align)))
    protected: set[str] = {rel.split("/")[1] for rel in records.unreadable if rel.count("/") >= 2}
    for eid in referenced:
        if eid not in have_row and records.get(eid) is None:
            protected.add(_segment_of(eid))  # the frame range is unknown: keep the whole segment

    # 3. data of inactive segments
    for seg in sorted(inactive & set(segment_dirs)):
        if seg in protected:
            report.kept_referenced.append(seg)
            continue
        files = _all_files(sfs, f"{DATA_DIR}/{seg}")
        slots = committed.get(seg)
        if not slots:
            report.segments_removed.append(seg)
            report.chunk_files_removed += sum(1 for rel, _s, _m in files if not rel.endswith("zarr.json"))
            drop(f"{DATA_DIR}/{seg}", sum(size for _r, size, _m in files),
                 f"whole segment, {len(files)} files: no episode of it was committed and its writer is gone",
                 recursive=True)
            continue
        _gc_segment_chunks(sfs, seg, files, sorted(slots), report, drop)

    # 4. temporary files: any age in inactive segments' row and record directories, old ones elsewhere (a live
    #    process may be about to rename a young one into place). Zarr itself leaves "data/zarr.*.partial"
    #    when a writer dies while creating its segment (it writes the root group metadata "if not exists").
    leftovers = [f for top in (EPISODES_DIR, CHECKSUMS_DIR, VERSIONS_DIR, BLOBS_DIR, LOCKS_DIR)
                 for f in _all_files(sfs, top)]
    leftovers += _top_files(sfs, DATA_DIR)
    for rel, size, mtime in leftovers:
        if not _is_tmp(rel):
            continue
        parts = []
        for top in (EPISODES_DIR, CHECKSUMS_DIR):
            if rel.startswith(top + "/"):
                parts = rel[len(top) + 1:].split("/")
        in_dead_segment = len(parts) == 2 and parts[0] in inactive
        if in_dead_segment or now - mtime > TMP_MAX_AGE_SECONDS:
            report.tmp_files_removed += 1
            drop(rel, size, "temporary file of an interrupted write")

    # 5. row files a compaction already merged (left when it was interrupted before deleting them)
    _gc_superseded(store, snap, report, drop)

    # 6. locks of dead writers, and a compaction lock whose holder died (never a live compaction's lock,
    #    even with ignore_locks: two compactions at once would merge the same rows twice)
    for rel, size in dead_locks:
        report.locks_removed.append(rel)
        drop(rel, size, "lock of a writer that is gone")
    if COMPACTION_LOCK in lock_files and not _compaction_lock_live(sfs):
        report.locks_removed.append(COMPACTION_LOCK)
        drop(COMPACTION_LOCK, lock_files[COMPACTION_LOCK], "lock of a compaction that is gone")
    report.skipped_active.sort()
    log.info(report.summary())
    return report


def _segment_of(episode_id: str) -> str:
    """Segment an episode id belongs to (writers name episodes '<segment>-<index>')."""
    return episode_id.rsplit("-", 1)[0]


def _version_episode_ids(sfs: Any) -> set[str]:
    """Every episode id any version manifest names (CorruptStoreError if a version file cannot be read)."""
    out: set[str] = set()
    for rel in sfs.list_files(VERSIONS_DIR, VERSION_SUFFIX):
        try:
            table = _read_parquet(sfs, rel)
            out.update(table.column("episode_id").to_pylist())
        except FileNotFoundError:
            continue
        except Exception as exc:  # noqa: BLE001
            raise CorruptStoreError(
                f"gc refuses to run: version file {rel} is unreadable ({type(exc).__name__}: {exc}), so it cannot "
                "tell which frames that version needs; restore or move the file away first"
            ) from exc
    return out


def _compaction_lock_live(sfs: Any) -> bool:
    """True while the compaction holding the store-wide lock may still run (by its OS lock or heartbeat)."""
    return lock_is_live(sfs, COMPACTION_LOCK)


def _gc_segment_chunks(sfs: Any, seg: str, files: list[tuple[str, int, float]], slots: list[tuple[int, int]],
                       report: GcReport, drop: Any) -> None:
    """Remove chunk files of a segment that lie outside every committed episode's slot."""
    prefix = f"{DATA_DIR}/{seg}/"
    arrays: dict[str, ArrayLayout] = {}
    for rel, _size, _mtime in files:
        if rel.endswith("/zarr.json"):
            try:
                meta = _read_json(sfs, rel)
            except Exception:  # noqa: BLE001 - unreadable metadata: leave its array alone
                continue
            if meta.get("node_type") == "array":
                try:
                    arrays[rel[: -len("/zarr.json")]] = ArrayLayout(meta)
                except (KeyError, ValueError, TypeError):
                    continue

    def referenced(lo: int, hi: int) -> bool:
        for s, e in slots:
            if s < hi and lo < e:
                return True
            if s >= hi:
                break
        return False

    array_dirs = sorted(arrays, key=len, reverse=True)
    for rel, size, _mtime in files:
        if not rel.startswith(prefix) or rel.endswith("/zarr.json"):
            continue
        if rel.endswith(_PARTIAL_SUFFIX):  # an interrupted chunk write
            report.chunk_files_removed += 1
            drop(rel, size, "interrupted chunk write")
            continue
        owner = next((d for d in array_dirs if rel.startswith(d + "/")), None)
        if owner is None:
            continue
        layout = arrays[owner]
        coords = layout.parse_chunk_key(rel[len(owner) + 1:])
        if coords is None:
            continue  # not a chunk file we understand: never guess
        lo = coords[0] * layout.frames_per_file
        if not referenced(lo, lo + layout.frames_per_file):
            report.chunk_files_removed += 1
            drop(rel, size, "chunk outside every committed episode (a crashed or discarded episode's frames)")


def _gc_superseded(store: "Store", snap: _RowSnapshot, report: GcReport, drop: Any) -> None:
    """Delete superseded row files in an order that never lets a deleted file's rows resurface."""
    present = set(snap.files)
    superseded = [f for f in snap.files if f in snap.superseded]
    sizes = {rel: size for rel, size, _m in _all_files(store.sfs, EPISODES_DIR)}
    progress = True
    while superseded and progress:
        progress = False
        for rel in list(superseded):
            hides = snap.supersedes.get(rel, frozenset()) & present
            others = [snap.supersedes.get(g, frozenset()) for g in present if g != rel]
            if all(any(h in s for s in others) for h in hides) and any(rel in s for s in others):
                present.discard(rel)
                superseded.remove(rel)
                report.row_files_removed.append(rel)
                drop(rel, sizes.get(rel, 0), "row file whose rows a compacted file holds")
                progress = True
