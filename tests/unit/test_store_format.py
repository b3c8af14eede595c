"""A new store is written at the current format by sime_data itself, exactly as applying every migration would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sime_data
from migrations import MIGRATIONS
from migrations.runner import _record
from sime_data.layout import FORMAT_MIGRATIONS, ROOT_FILE, SCHEMA_VERSION
from sime_data.storefs import StoreFS


def _by_migrations(sfs: StoreFS) -> None:
    """How stores used to be created: migration 1 from nothing, then each later one recorded in place."""
    MIGRATIONS[0].apply(sfs)
    for migration in MIGRATIONS[1:]:
        migration.apply(sfs)
        _record(sfs, migration)


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) + ("/" if p.is_dir() else "") for p in root.rglob("*"))


def _root_meta(sfs: StoreFS) -> dict:
    meta = json.loads(sfs.read_bytes(ROOT_FILE))
    return {k: v for k, v in meta.items() if k not in ("store_id", "created_at")}


def test_format_constants_match_the_migrations():
    assert FORMAT_MIGRATIONS == tuple(m.name for m in MIGRATIONS)
    assert SCHEMA_VERSION == MIGRATIONS[-1].number == sime_data.SCHEMA_VERSION


def test_created_store_equals_every_migration_applied(tmp_path):
    created = sime_data.init_store(tmp_path / "created")
    migrated = StoreFS(tmp_path / "migrated")
    _by_migrations(migrated)
    assert _tree(tmp_path / "created") == _tree(tmp_path / "migrated")
    assert _root_meta(created.sfs) == _root_meta(migrated)
    assert created.sfs.read_bytes("data/zarr.json") == migrated.read_bytes("data/zarr.json")


@pytest.mark.parametrize("url", ["memory://sime-format-created"])
def test_created_object_store_equals_every_migration_applied(url):
    created = sime_data.init_store(url)
    migrated = StoreFS(url + "-migrated")
    _by_migrations(migrated)
    assert created.sfs.list_files("") == [f.replace("-migrated", "") for f in migrated.list_files("")] == [ROOT_FILE]
    assert _root_meta(created.sfs) == _root_meta(migrated)
