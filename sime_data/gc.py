"""`gc`: reclaim the frames, row files, temporary files and locks that crashed or aborted writers left behind."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .catalog import read_parquet
from .checksums import load_records
from .errors import CorruptStoreError, StoreDamagedError
from .layout import (
    BLOBS_DIR,
    CHECKSUMS_DIR,
    COMPACTION_LOCK,
    DATA_DIR,
    EPISODES_DIR,
    LOCKS_DIR,
    VERSION_SUFFIX,
    VERSIONS_DIR,
)
from .processes import lock_is_live
from .row_snapshot import RowSnapshot, snapshot_rows
from .segment import ArrayLayout
from .segment_files import read_json, slot_size
from .store_listing import PARTIAL_SUFFIX, all_files, is_tmp, top_files
from .verify import as_store, verify

if TYPE_CHECKING:  # pragma: no cover
    from .store import Store

#: The messages of gc keep the logger name they have always been shown under.
log = logging.getLogger(__name__)

#: Temporary files (".tmp-*", "*.partial") outside a dead writer's segment are removed once this old.
TMP_MAX_AGE_SECONDS = 3600


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
    store = as_store(store)
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
    lock_files = {rel: size for rel, size, _m in all_files(sfs, LOCKS_DIR)}
    inactive: set[str] = set()
    dead_locks: list[tuple[str, int]] = []
    for seg in sorted(set(segment_dirs) | set(meta_dirs)):
        lock_rel = f"{LOCKS_DIR}/{seg}.json"
        if sfs.exists(lock_rel):
            if not ignore_locks and lock_is_live(sfs, lock_rel):
                report.skipped_active.append(seg)
                continue
        inactive.add(seg)
    for rel, size, mtime in all_files(sfs, LOCKS_DIR):
        if rel == COMPACTION_LOCK or is_tmp(rel) or not rel.endswith(".json"):
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
    snap = snapshot_rows(sfs)
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
        committed.setdefault(row["segment"], []).append((start, start + slot_size(row["length"], align)))
    for eid, (rec, _rel) in records.records.items():
        start = int(rec["seg_start"])  # a commit record whose row file is missing still protects its frames
        committed.setdefault(rec["segment"], []).append((start, start + slot_size(rec["length"], align)))
    protected: set[str] = {rel.split("/")[1] for rel in records.unreadable if rel.count("/") >= 2}
    for eid in referenced:
        if eid not in have_row and records.get(eid) is None:
            protected.add(_segment_of(eid))  # the frame range is unknown: keep the whole segment

    # 3. data of inactive segments
    for seg in sorted(inactive & set(segment_dirs)):
        if seg in protected:
            report.kept_referenced.append(seg)
            continue
        files = all_files(sfs, f"{DATA_DIR}/{seg}")
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
                 for f in all_files(sfs, top)]
    leftovers += top_files(sfs, DATA_DIR)
    for rel, size, mtime in leftovers:
        if not is_tmp(rel):
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
            table = read_parquet(sfs, rel)
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
                meta = read_json(sfs, rel)
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
        if rel.endswith(PARTIAL_SUFFIX):  # an interrupted chunk write
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


def _gc_superseded(store: "Store", snap: RowSnapshot, report: GcReport, drop: Any) -> None:
    """Delete superseded row files in an order that never lets a deleted file's rows resurface."""
    present = set(snap.files)
    superseded = [f for f in snap.files if f in snap.superseded]
    sizes = {rel: size for rel, size, _m in all_files(store.sfs, EPISODES_DIR)}
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
