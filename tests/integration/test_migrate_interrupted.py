"""`sime-data migrate` killed (-9) at each point of its copy-and-switch: the next open, create or migrate rolls it
back or finishes it, never leaves `*.migrating-*` copies, and never creates an empty store in place of the
pending one. Run on copies of the frozen format-1 fixture, with real processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sime_data
from migrations import migrate
from sime_data.errors import MigrationInProgressError
from sime_data.verify import verify

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store_v1"
WORKER = Path(__file__).with_name("_fault_worker.py")
REPO = str(Path(__file__).resolve().parents[2])


@pytest.fixture
def v1_store(tmp_path: Path) -> Path:
    """A private copy of the frozen format-1 store."""
    target = tmp_path / "store"
    shutil.copytree(FIXTURE, target)
    return target


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, str(WORKER), *args], capture_output=True, text=True, env=env, timeout=120)


def _killed(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == -signal.SIGKILL, result.stdout + result.stderr


def _siblings(store: Path, infix: str) -> list[str]:
    return sorted(p.name for p in store.parent.iterdir() if infix in p.name)


def _assert_fixture_content(store: sime_data.Store) -> None:
    episodes = store.episodes().sort_values("seg_start")
    assert episodes["length"].tolist() == [6, 7, 8]
    last = store.read_episode(episodes["episode_id"].iloc[2])
    np.testing.assert_array_equal(last["obs/cam"][:, 0, 0, 0], 20 + np.arange(8))
    assert store.version("fixture/trimmed").n_frames == 3 + 8


@pytest.mark.parametrize("point", ["migrate-copy", "migrate-marked"])
def test_killed_before_the_switch_is_rolled_back(v1_store, point):
    _killed(_run(point, str(v1_store), *(["3"] if point == "migrate-copy" else [])))
    assert len(_siblings(v1_store, ".migrating-")) == 1  # the dead migration's copy
    with pytest.raises(sime_data.OutdatedStoreError, match="sime-data migrate"):
        sime_data.open_store(v1_store)  # the store itself is untouched (still format 1) ...
    assert _siblings(v1_store, ".migrating-") == []  # ... and opening it removed the stray copy
    assert migrate(v1_store, keep_backup=False) == ["0002_checksums"]
    store = sime_data.open_store(v1_store)
    _assert_fixture_content(store)
    assert verify(store, deep=True).ok
    assert sorted(p.name for p in v1_store.parent.iterdir()) == ["store"]


def test_killed_between_the_renames_create_finishes_the_switch(v1_store):
    _killed(_run("migrate-between", str(v1_store)))
    assert not v1_store.exists()  # the old store was renamed away, the new one not moved in
    assert len(_siblings(v1_store, ".migrating-")) == 1 and len(_siblings(v1_store, ".pre-migrate-v1-")) == 1
    store = sime_data.open_store(v1_store, create=True)  # what `sime run` / `sime demos` do
    assert store.root_meta.schema_version == sime_data.SCHEMA_VERSION
    _assert_fixture_content(store)  # the migrated store, not an empty new one
    assert verify(store, deep=True).ok
    assert _siblings(v1_store, ".migrating-") == [] and not (v1_store / ".migration-complete").exists()


def test_killed_between_the_renames_migrate_finishes_the_switch(v1_store):
    _killed(_run("migrate-between", str(v1_store)))
    assert migrate(v1_store) == []  # finished the switch; nothing left to apply
    _assert_fixture_content(sime_data.open_store(v1_store))
    assert _siblings(v1_store, ".migrating-") == []


def test_running_migration_blocks_writers_not_readers(v1_store, tmp_path):
    gate = tmp_path / "gate"
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, str(WORKER), "migrate-pause", str(v1_store), str(gate)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "PAUSED", proc.stderr.read()
        staging = _siblings(v1_store, ".migrating-")
        assert len(staging) == 1
        old = sime_data.Store.open(v1_store, schema_version=1)  # readers still see the store ...
        assert len(old.episodes()) == 3
        with pytest.raises(MigrationInProgressError, match="migrate"):
            old.writer(source="demo", task="lift")  # ... but new episodes would land in the backup: refused
        with pytest.raises(sime_data.OutdatedStoreError):
            sime_data.open_store(v1_store)
        assert _siblings(v1_store, ".migrating-") == staging  # a live migration's copy is never removed
        gate.write_text("go")
        assert proc.wait(60) == 0 and "DONE" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    store = sime_data.open_store(v1_store)
    _assert_fixture_content(store)
    with store.writer(source="demo", task="lift") as writer:
        writer.add_episode({"actions": np.zeros((3, 2))})
    assert len(store.episodes()) == 4
    assert verify(store, deep=True).ok
