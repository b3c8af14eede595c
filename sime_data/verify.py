"""`verify`: a read-only check of a store's metadata, rows, checksum records, versions, blobs and chunk files."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

from .catalog import MANIFEST_SCHEMA, VERSION_INFO_KEY, read_parquet
from .checksums import RecordSet, checksum, compare_with_row, load_records
from .errors import StoreError
from .layout import (
    BLOBS_DIR,
    COMPACTION_LOCK,
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
from .row_snapshot import snapshot_rows
from .segment import read_blocks
from .segment_files import SegmentInfo, slot_size
from .store_listing import all_files, is_tmp

if TYPE_CHECKING:  # pragma: no cover
    from .store import Store


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


def as_store(store: "Store | str | os.PathLike") -> "Store":
    """The store itself, or the store opened at a path."""
    from .store import Store

    return store if isinstance(store, Store) else Store.open(store)


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
        store = as_store(store)
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
    snap = snapshot_rows(store.sfs)
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
    segments: dict[str, SegmentInfo] = {}
    slots: dict[str, list[tuple[int, int, str]]] = {}
    for row in episodes:
        eid, seg = row["episode_id"], row["segment"]
        start, length = int(row["seg_start"]), int(row["length"])
        if length <= 0 or start < 0:
            problems.append(f"episode {eid}: impossible frame range (seg_start={start}, length={length})")
            continue
        if start % align:
            problems.append(f"episode {eid}: seg_start {start} is not a multiple of align_frames={align}")
        slots.setdefault(seg, []).append((start, start + slot_size(length, align), eid))
        info = segments.get(seg)
        if info is None:
            info = segments[seg] = SegmentInfo.load(sfs, seg)
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
            table = read_parquet(sfs, rel)
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
    for rel, _size, mtime in all_files(sfs, LOCKS_DIR):
        if rel == COMPACTION_LOCK or is_tmp(rel) or not rel.endswith(".json"):
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


def _check_episode_chunks(store: "Store", row: dict[str, Any], info: SegmentInfo | None,
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
