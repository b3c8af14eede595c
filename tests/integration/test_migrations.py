"""Store format versions and `sime-data migrate`, tested on the frozen format-1 fixture."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import sime_data
from migrations import MIGRATIONS, Migration, latest_version, migrate
from migrations.runner import COMPLETE_MARKER
from sime_data.cli import main as cli_main
from sime_data.storefs import StoreFS

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store_v1"


@pytest.fixture
def v1_store(tmp_path: Path) -> Path:
    """A private copy of the frozen format-1 store."""
    target = tmp_path / "store"
    shutil.copytree(FIXTURE, target)
    return target


def _add_notes_file(sfs: StoreFS) -> None:
    """A realistic test migration: rewrite every episode row file, filling the notes column."""
    for rel in sfs.list_files("meta/episodes", ".parquet"):
        table = pq.read_table(sfs.path(rel))
        index = table.column_names.index("notes")
        table = table.set_column(index, "notes", pa.array(["migrated"] * table.num_rows))
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        sfs.write_atomic(rel, buffer.getvalue())


MIGRATION_3 = Migration(3, "0003_test_notes", "fill the notes column of episode rows", _add_notes_file)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_migrations_are_numbered_and_match_code():
    assert [m.number for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert MIGRATIONS[0].name == "0001_create"
    assert latest_version() == sime_data.SCHEMA_VERSION


def test_format_1_fixture_is_readable(v1_store):
    store = sime_data.Store.open(v1_store, schema_version=1)
    episodes = store.episodes().sort_values("seg_start")
    assert episodes["length"].tolist() == [6, 7, 8]
    first = store.read_episode(episodes["episode_id"].iloc[2])
    np.testing.assert_array_equal(first["obs/cam"][:, 0, 0, 0], 20 + np.arange(8))
    np.testing.assert_array_equal(first["obs/eef_pos"][:, 1], np.arange(8))
    assert store.version("fixture/trimmed").n_frames == 3 + 8
    assert store.model_xml(episodes["episode_id"].iloc[0]) == "<mujoco model='fixture'/>"


def test_outdated_store_is_refused_with_the_command(v1_store):
    with pytest.raises(sime_data.OutdatedStoreError, match="sime-data migrate"):
        sime_data.open_store(v1_store)


def test_migrate_copy_on_write_then_switch(v1_store):
    original = _snapshot(v1_store)
    before = sime_data.Store.open(v1_store, schema_version=1).episodes().sort_values("episode_id")
    applied = migrate(v1_store, migrations=[*MIGRATIONS, MIGRATION_3])
    assert applied == ["0002_checksums", "0003_test_notes"]
    store = sime_data.Store.open(v1_store, schema_version=3)
    assert store.root_meta.migrations_applied == ["0001_create", "0002_checksums", "0003_test_notes"]
    assert (store.episodes()["notes"] == "migrated").all()
    after = store.episodes().sort_values("episode_id")
    assert after["episode_id"].tolist() == before["episode_id"].tolist()
    for eid in after["episode_id"]:
        assert store.read_episode(eid)["actions"].shape[0] == store.episode(eid)["length"]
    backups = [p for p in v1_store.parent.iterdir() if p.name.startswith("store.pre-migrate-v1-")]
    assert len(backups) == 1
    assert _snapshot(backups[0]) == original  # hard-linked chunks and rewritten rows left the backup intact
    assert migrate(v1_store, migrations=[*MIGRATIONS, MIGRATION_3]) == []


def test_failed_migration_leaves_store_untouched(v1_store):
    original = _snapshot(v1_store)

    def explode(sfs: StoreFS) -> None:
        _add_notes_file(sfs)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        migrate(v1_store, migrations=[*MIGRATIONS, Migration(3, "0003_boom", "fails", explode)])
    assert _snapshot(v1_store) == original
    assert [p.name for p in v1_store.parent.iterdir()] == ["store"]
    assert sime_data.Store.open(v1_store, schema_version=1).episodes().shape[0] == 3


def test_newer_store_is_refused(v1_store):
    meta = json.loads((v1_store / "sime_store.json").read_text())
    meta["schema_version"] = 99
    (v1_store / "sime_store.json").write_text(json.dumps(meta))
    with pytest.raises(sime_data.NewerStoreError, match="newer"):
        sime_data.open_store(v1_store)
    with pytest.raises(sime_data.NewerStoreError):
        migrate(v1_store)


def test_interrupted_switch_is_completed(v1_store):
    staging = v1_store.parent / "store.migrating-20260101T000000"
    shutil.copytree(v1_store, staging)
    (staging / COMPLETE_MARKER).write_text("backup")
    shutil.move(v1_store, v1_store.parent / "store.pre-migrate-v1-20260101T000000")
    assert migrate(v1_store) == ["0002_checksums"]  # the switch is finished first, then the real upgrade runs
    assert not staging.exists() and not (v1_store / COMPLETE_MARKER).exists()
    assert len(sime_data.open_store(v1_store).episodes()) == 3


def test_migrate_refuses_while_writers_hold_locks(v1_store):
    store = sime_data.Store.open(v1_store, schema_version=1)
    writer = store.writer(source="demo", task="lift")
    try:
        with pytest.raises(sime_data.StoreError, match="writers are active"):
            migrate(v1_store, migrations=[*MIGRATIONS, MIGRATION_3])
    finally:
        writer.close()


def test_cli_migrate_then_up_to_date(v1_store, capsys):
    assert cli_main(["migrate", "--store", str(v1_store), "--no-backup"]) == 0
    assert "applied: 0002_checksums" in capsys.readouterr().out
    assert cli_main(["migrate", "--store", str(v1_store)]) == 0
    assert "up to date" in capsys.readouterr().out
    assert os.listdir(v1_store.parent) == ["store"]
