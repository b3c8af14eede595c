"""Crash safety on real files: writers SIGKILLed at random moments never leave a half episode or damage
committed data; `verify` passes after every crash and `gc` reclaims what the crashed writers left."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import time
from pathlib import Path

import pytest

from sime_data import open_store
from sime_data.layout import DATA_DIR, LOCKS_DIR
from sime_data.gc import gc
from sime_data.verify import verify

pytestmark = pytest.mark.slow

_spec = importlib.util.spec_from_file_location("_sime_writer_worker", Path(__file__).with_name("_writer_worker.py"))
ww = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ww)  # type: ignore[union-attr]


def _rows(store) -> list[dict]:
    return store.episodes(columns=["episode_id", "segment", "seg_start", "length", "seed", "keys"]).to_dict("records")


def _assert_verified(store, check_chunks: bool = True) -> None:
    report = verify(store, check_chunks=check_chunks)
    assert report.ok, report.summary() + "\n" + "\n".join(report.problems)


def _chunk_files_outside_slots(root: Path, store) -> list[str]:
    """Chunk files on disk (independently of gc's code) that lie in no committed episode's slot."""
    align = store.root_meta.align_frames
    slots: dict[str, list[tuple[int, int]]] = {}
    for row in _rows(store):
        start = int(row["seg_start"])
        slots.setdefault(row["segment"], []).append((start, start + -(-int(row["length"]) // align) * align))
    orphans = []
    for meta_path in (root / DATA_DIR).rglob("zarr.json"):
        meta = json.loads(meta_path.read_text())
        if meta.get("node_type") != "array":
            continue
        segment = meta_path.relative_to(root / DATA_DIR).parts[0]
        per_file = meta["chunk_grid"]["configuration"]["chunk_shape"][0]
        for chunk in (meta_path.parent / "c").rglob("*"):
            if chunk.is_dir() or chunk.name.endswith(".partial"):  # interrupted writes: listed below
                continue
            first = int(chunk.relative_to(meta_path.parent / "c").parts[0]) * per_file
            if not any(s < first + per_file and first < e for s, e in slots.get(segment, [])):
                orphans.append(str(chunk.relative_to(root)))
    orphans += [str(p.relative_to(root)) for p in (root / DATA_DIR).glob("*/**/*.partial")]
    return orphans


def test_sigkill_writers_never_leave_half_episodes(tmp_path: Path) -> None:
    """>= 20 writers killed at random moments: committed episodes survive intact, partial ones stay invisible."""
    root = tmp_path / "store"
    open_store(root, create=True)
    rnd = random.Random(1234)
    reported: dict[str, tuple[int, int, int]] = {}
    checked: set[str] = set()
    kills = 0
    for it in range(22):
        wseed = 100 + it
        worker = ww.WorkerProcess("loop", root, wseed, "--step-sleep", "0.001", "--discard", "0.15")
        if it % 5 == 4:
            time.sleep(rnd.uniform(0.0, 0.9))  # may land while the worker imports or opens the store
        else:
            # most kills come after a first commit, so that however loaded the machine, there are committed
            # episodes to lose; the rest may land in the worker's first episode
            worker.wait_for("COMMITTED" if it % 3 else "READY")
            time.sleep(rnd.uniform(0.0, 0.7))
        worker.kill()
        kills += 1
        mine = worker.committed()
        reported.update(mine)

        store = open_store(root)  # opens cleanly after the crash
        _assert_verified(store)
        rows = _rows(store)
        ids = [r["episode_id"] for r in rows]
        assert len(ids) == len(set(ids)), "duplicate episode rows"
        missing = set(reported) - set(ids)
        assert not missing, f"committed episodes lost after kill {kills}: {sorted(missing)}"
        # episodes of this worker that it did not report: only the one whose finish() the kill interrupted
        unreported = [r for r in rows if ww.decode_seed(r["seed"])[0] == wseed and r["episode_id"] not in mine]
        assert len(unreported) <= 1, unreported
        if unreported:
            last = max((index for _w, index, _l in mine.values()), default=-1)
            assert ww.decode_seed(unreported[0]["seed"])[1] > last
            assert unreported[0]["segment"] == worker.segment
        for row in rows:  # every visible episode is complete and exact (new ones; committed data is immutable)
            if row["episode_id"] not in checked:
                ww.check_episode(store, row)
                checked.add(row["episode_id"])
    assert kills >= 20
    assert len(reported) > 10, "the workers committed too few episodes for the test to mean anything"

    store = open_store(root)
    orphans_before = _chunk_files_outside_slots(root, store)
    dry = gc(store, dry_run=True)
    assert _chunk_files_outside_slots(root, store) == orphans_before, "dry run removed files"
    report = gc(store)
    assert report.bytes_freed == dry.bytes_freed and report.bytes_freed > 0, report.summary()
    assert report.segments_removed or report.chunk_files_removed, report.summary()
    assert not report.skipped_active, "all writers are dead"
    assert _chunk_files_outside_slots(root, store) == [], "unreferenced chunk files survived gc"
    assert not list((root / LOCKS_DIR).glob("*.json")), "stale locks survived gc"
    committed_segments = {r["segment"] for r in _rows(store)}
    assert {p.name for p in (root / DATA_DIR).iterdir() if p.is_dir()} == committed_segments
    # zarr's own temporary files outside segments (a kill while it created the root group "if not exists")
    # may belong to a live process, so gc only takes them once old: pretend an hour has passed
    leftover_tmp = [p for p in root.rglob("*") if p.is_file() and (p.name.endswith(".partial") or p.name.startswith(".tmp-"))]
    for path in leftover_tmp:
        old = time.time() - 2 * 3600
        os.utime(path, (old, old))
    later = gc(store)
    assert later.tmp_files_removed == len(leftover_tmp) and not later.chunk_files_removed, later.summary()
    assert not [p for p in root.rglob("*") if p.is_file() and (p.name.endswith(".partial") or p.name.startswith(".tmp-"))]

    store = open_store(root)
    _assert_verified(store)
    rows = _rows(store)
    assert set(reported) <= {r["episode_id"] for r in rows}
    for row in rows:
        ww.check_episode(store, row)
    again = gc(store)
    assert again.bytes_freed == 0 and not again.chunk_files_removed, again.summary()


def test_kill_during_compaction_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """Writers killed inside their close-time compaction or inside store.compact() keep every episode exactly once."""
    root = tmp_path / "store"
    open_store(root, create=True)
    rnd = random.Random(99)
    reported: dict[str, tuple[int, int, int]] = {}
    interrupted = 0
    for it in range(14):
        phase = "CLOSING" if it % 2 == 0 else "COMPACTING"
        n = rnd.randint(3, 7)
        worker = ww.WorkerProcess("compact", root, 500 + it, "--episodes", n, "--max-len", 60, "--no-image",
                                  "--slow-remove", 0.01)
        worker.wait_for(phase)
        time.sleep(rnd.uniform(0.0, 0.02 * n if phase == "CLOSING" else 0.01 * (len(reported) + n) + 0.02))
        worker.kill()
        mine = worker.committed()
        assert len(mine) == n  # all were reported before the compaction started
        reported.update(mine)

        store = open_store(root)
        superseded = store.catalog.superseded_files()
        lock = (root / LOCKS_DIR / "compaction.lock").exists()
        interrupted += bool(superseded or lock)
        _assert_verified(store)  # includes: no episode has two active rows
        ids = store.episodes(columns=["episode_id"])["episode_id"].tolist()
        assert len(ids) == len(set(ids))
        assert set(ids) == set(reported), (set(ids) ^ set(reported))
        if it % 3 == 2 or lock:  # gc clears a dead compaction's lock and leftovers; otherwise the next one does
            gc(store)
            assert not store.catalog.superseded_files()
            assert not (root / LOCKS_DIR / "compaction.lock").exists()
            _assert_verified(store, check_chunks=False)
            assert set(store.episodes(columns=["episode_id"])["episode_id"]) == set(reported)
    print(f"{interrupted} of 14 kills interrupted a compaction")
    assert interrupted >= 1, "no kill landed inside a compaction"

    store = open_store(root)
    assert store.compact() in (0, len(reported))  # a clean compaction afterwards merges everything exactly once
    assert len(store.catalog.active_episode_files()) == 1
    gc(store)
    _assert_verified(store)
    rows = _rows(store)
    assert sorted(r["episode_id"] for r in rows) == sorted(reported)
    for row in rows:
        ww.check_episode(store, row, max_len=60, image=False)


def test_atomic_writer_killed_is_all_or_nothing(tmp_path: Path) -> None:
    """An atomic writer killed at any moment leaves either all of its episodes visible or none."""
    root = tmp_path / "store"
    open_store(root, create=True)
    rnd = random.Random(7)
    outcomes = []
    for it in range(6):
        worker = ww.WorkerProcess("atomic", root, 700 + it, "--episodes", 4, "--max-len", 80)
        worker.wait_for("COMMITTED" if it % 2 else "CLOSING")
        time.sleep(rnd.uniform(0.0, 0.03))
        worker.kill()
        store = open_store(root)
        _assert_verified(store)
        mine = [r for r in _rows(store) if r["segment"] == worker.segment]
        assert len(mine) in (0, 4), f"atomic writer left {len(mine)} of 4 episodes"
        if "CLOSED" in worker.lines:
            assert len(mine) == 4
        for row in mine:
            ww.check_episode(store, row, max_len=80)
        outcomes.append(len(mine))
    gc(open_store(root))
    _assert_verified(open_store(root))
    assert 0 in outcomes  # killed mid-writing at least once


def test_gc_skips_live_writer_and_verify_reports_damage(tmp_path: Path) -> None:
    """gc leaves a live writer's segment alone (unless forced after it died); verify names damaged chunks."""
    root = tmp_path / "store"
    open_store(root, create=True)
    worker = ww.WorkerProcess("loop", root, 42, "--step-sleep", "0.0005")
    try:
        worker.wait_for("COMMITTED")
        store = open_store(root)
        report = gc(store)
        assert report.skipped_active == [worker.segment]
        assert not report.segments_removed and not report.chunk_files_removed
        assert (root / LOCKS_DIR / f"{worker.segment}.json").exists()
    finally:
        worker.kill()
    store = open_store(root)
    report = gc(store)
    assert not report.skipped_active and f"{LOCKS_DIR}/{worker.segment}.json" in report.locks_removed
    _assert_verified(store)
    rows = _rows(store)
    assert rows
    for row in rows:
        ww.check_episode(store, row)

    # damage: remove one chunk file and truncate one image shard of committed episodes
    row = rows[0]
    seg_dir = root / DATA_DIR / row["segment"]
    os.unlink(seg_dir / "obs" / "pos" / "c" / str(row["seg_start"] // store.root_meta.align_frames) / "0")
    shard = seg_dir / "obs" / "image" / "c" / str(row["seg_start"] // store.root_meta.image_shard_frames) / "0" / "0" / "0"
    shard.write_bytes(shard.read_bytes()[:100])
    report = verify(open_store(root))
    assert not report.ok
    text = "\n".join(report.problems)
    assert f"episode {row['episode_id']} key obs/pos" in text and "missing" in text
    assert f"episode {row['episode_id']} key obs/image" in text and "unreadable" in text
    assert verify(open_store(root), check_chunks=False).ok  # metadata alone is still consistent
