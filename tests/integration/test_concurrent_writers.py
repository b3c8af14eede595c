"""Several processes writing one store at once: no lost or duplicated episodes, race-free version names,
and a reader that sees each commit as soon as it is made."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest

from sime_data import open_store
from sime_data.verify import verify

pytestmark = pytest.mark.slow

_spec = importlib.util.spec_from_file_location("_sime_writer_worker", Path(__file__).with_name("_writer_worker.py"))
ww = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ww)  # type: ignore[union-attr]

GEN = {"min_len": 10, "max_len": 40, "image": False}
GEN_ARGS = ["--min-len", GEN["min_len"], "--max-len", GEN["max_len"], "--no-image"]


def _rows(store) -> list[dict]:
    return store.episodes(columns=["episode_id", "segment", "seg_start", "length", "seed", "keys"]).to_dict("records")


def test_four_processes_write_100_episodes_each(tmp_path: Path) -> None:
    """4 writers x 100 episodes at the same time (while the store is compacted and verified): all 400 intact."""
    root = tmp_path / "store"
    open_store(root, create=True)
    workers = [ww.WorkerProcess("batch", root, 10 + i, "--episodes", 100, *GEN_ARGS) for i in range(4)]
    reader = open_store(root)
    compactions = verifies = 0
    try:
        while any(w.proc.poll() is None for w in workers):
            # compaction and verification racing the writers' commits (and their own close-time compactions)
            compactions += bool(reader.compact())
            report = verify(reader, check_chunks=False)
            assert report.ok, "\n".join(report.problems)
            verifies += 1
            time.sleep(0.05)
        for w in workers:
            w.join()
    finally:
        for w in workers:
            if w.proc.poll() is None:
                w.kill()
    assert verifies >= 1 and compactions >= 1

    store = open_store(root)
    report = verify(store)
    assert report.ok, "\n".join(report.problems)
    rows = _rows(store)
    ids = [r["episode_id"] for r in rows]
    assert len(ids) == 400 and len(set(ids)) == 400
    reported = {}
    for w in workers:
        mine = w.committed()
        assert len(mine) == 100
        reported.update(mine)
    assert set(reported) == set(ids)
    assert len({r["segment"] for r in rows}) == 4
    for row in rows:
        ww.check_episode(store, row, **GEN)
    by_worker = store.sql("SELECT init_state_id, count(*) AS n FROM episodes GROUP BY 1 ORDER BY 1")
    assert by_worker["n"].tolist() == [100] * 4


def test_same_version_name_from_two_processes(tmp_path: Path) -> None:
    """Two processes creating the same version name at the same instant: exactly one wins, one gets VersionExistsError."""
    root = tmp_path / "store"
    store = open_store(root, create=True)
    with store.writer("demo", "race") as writer:
        for i in range(5):
            writer.add_episode({"obs/pos": np.full((10, 3), i, np.float64), "actions": np.zeros((10, 2))})
    names = [f"race/v{i}" for i in range(6)]
    start_at = time.time() + 3.0
    workers = [ww.WorkerProcess("version", root, i, "--version-names", ",".join(names), "--start-at", start_at,
                                "--stagger", 0.15) for i in range(2)]
    for w in workers:
        w.join(60)
    for name in names:
        outcomes = sorted(line.split()[0] for w in workers for line in w.lines if line.split()[1:] == [name])
        assert outcomes == ["EXISTS", "OK"], (name, outcomes)
    store = open_store(root)
    listed = store.versions()["name"].tolist()
    assert sorted(listed) == sorted(names)
    for name in names:
        assert len(store.version(name).episode_ids) == 5
    assert verify(store).ok


def test_reader_sees_episodes_appear_while_writers_run(tmp_path: Path) -> None:
    """A reader in this process sees every episode as soon as its writer reports the commit."""
    root = tmp_path / "store"
    open_store(root, create=True)
    reader = open_store(root)  # opened (and its catalog cached) before anything is written
    assert len(reader.episodes()) == 0
    workers = [ww.WorkerProcess("batch", root, 30 + i, "--episodes", 15, "--episode-sleep", 0.08, *GEN_ARGS)
               for i in range(2)]
    counts: list[int] = []
    seen: set[str] = set()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            running = any(w.proc.poll() is None for w in workers)
            for w in workers:
                for line in w.poll():
                    parts = line.split()
                    if parts[0] != "COMMITTED":
                        continue
                    eid = parts[1]
                    row = reader.episode(eid)  # visible to this reader right after the writer's finish()
                    ww.check_episode(reader, row, **GEN)
                    seen.add(eid)
            n = len(reader.episodes())
            assert n >= len(seen)
            sql_n = int(reader.sql("SELECT count(*) AS n FROM episodes")["n"].iloc[0])
            assert sql_n >= len(seen)
            counts.append(n)
            if not running:
                break
            time.sleep(0.02)
        for w in workers:
            w.join()
        for w in workers:
            for eid in w.committed():
                if eid not in seen:
                    reader.episode(eid)
                    seen.add(eid)
    finally:
        for w in workers:
            if w.proc.poll() is None:
                w.kill()
    assert len(seen) == 30
    assert len(reader.episodes()) == 30
    assert counts == sorted(counts), "the reader's episode count went backwards"
    intermediate = {c for c in counts if 0 < c < 30}
    assert len(intermediate) >= 3, f"the reader never saw episodes appear one by one: {sorted(set(counts))}"
