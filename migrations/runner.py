"""Discover numbered migrations and apply them copy-on-write: build the upgraded store beside it, then switch."""

from __future__ import annotations

import importlib
import logging
import os
import pkgutil
import re
import shutil
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from sime_data.errors import NewerStoreError, StoreError, StoreNotFoundError
from sime_data.layout import DATA_DIR, LOCKS_DIR, ROOT_FILE, RootMeta
from sime_data.storefs import StoreFS

log = logging.getLogger(__name__)
_MODULE_RE = re.compile(r"^m(\d{4})_\w+$")
COMPLETE_MARKER = ".migration-complete"


@dataclass(frozen=True)
class Migration:
    """One numbered format change: `apply` turns a store of format number-1 into format number."""

    number: int
    name: str
    description: str
    apply: Callable[[StoreFS], None]


def _discover() -> list[Migration]:
    found = []
    package = importlib.import_module(__package__ or "migrations")
    for info in pkgutil.iter_modules(package.__path__):
        match = _MODULE_RE.match(info.name)
        if not match:
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        if module.NUMBER != int(match.group(1)):
            raise RuntimeError(f"migration module {info.name} declares NUMBER={module.NUMBER}")
        found.append(Migration(module.NUMBER, module.NAME, module.DESCRIPTION, module.apply))
    found.sort(key=lambda m: m.number)
    numbers = [m.number for m in found]
    if numbers != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..N without gaps, found {numbers}")
    return found


#: The project's migrations, in order. Migration 1 creates a store from nothing.
MIGRATIONS: list[Migration] = _discover()


def latest_version(migrations: Sequence[Migration] | None = None) -> int:
    """Format version produced by applying every migration."""
    return (migrations or MIGRATIONS)[-1].number


def pending_migrations(current: int, migrations: Sequence[Migration] | None = None) -> list[Migration]:
    """Migrations still to apply to a store of format `current`."""
    return [m for m in (migrations or MIGRATIONS) if m.number > current]


def _record(sfs: StoreFS, migration: Migration) -> None:
    meta = RootMeta.from_json(sfs.read_bytes(ROOT_FILE))
    meta.schema_version = migration.number
    meta.migrations_applied = [*meta.migrations_applied, migration.name]
    sfs.write_atomic(ROOT_FILE, meta.to_json())


def create_store(sfs: StoreFS, migrations: Sequence[Migration] | None = None) -> None:
    """Create a store at the newest format: migration 1, then every later one in place (the store is empty)."""
    migrations = list(migrations or MIGRATIONS)
    migrations[0].apply(sfs)
    for migration in migrations[1:]:
        migration.apply(sfs)
        _record(sfs, migration)


def _copy_tree_for_migration(src: str, dst: str) -> None:
    """Copy a local store; Zarr chunk files (never rewritten in place) are hard-linked, everything else copied."""
    data_prefix = os.path.join(src, DATA_DIR)

    def _copy(source: str, target: str) -> str:
        if source.startswith(data_prefix + os.sep) and not source.endswith("zarr.json"):
            try:
                os.link(source, target)
                return target
            except OSError:
                pass
        return shutil.copy2(source, target)

    shutil.copytree(src, dst, copy_function=_copy, ignore=shutil.ignore_patterns(".tmp-*"))


def _live_writers(sfs: StoreFS) -> list[str]:
    return [f for f in sfs.list_files(LOCKS_DIR, ".json") if not f.endswith("compaction.lock")]


def migrate(location: str | os.PathLike, *, migrations: Sequence[Migration] | None = None, keep_backup: bool = True,
            progress: Callable[[str], None] | None = None) -> list[str]:
    """Upgrade the store at `location` to the newest format; returns the names of the migrations applied.

    The upgrade runs on a copy next to the store; the original is only renamed away (and kept as a
    backup unless `keep_backup=False`) once the copy is complete and opens cleanly.
    """
    migrations = list(migrations or MIGRATIONS)
    say = progress or (lambda text: log.info(text))
    sfs = StoreFS(location)
    if not sfs.is_local:
        raise StoreError("sime-data migrate works on local stores; copy the store locally, migrate, and upload it")
    root = sfs.root
    _finish_interrupted_switch(root, say)
    if not sfs.exists(ROOT_FILE):
        raise StoreNotFoundError(f"no SIME store at {root}")
    meta = RootMeta.from_json(sfs.read_bytes(ROOT_FILE))
    target = latest_version(migrations)
    if meta.schema_version > target:
        raise NewerStoreError(f"store format {meta.schema_version} is newer than this code's {target}; nothing changed")
    todo = pending_migrations(meta.schema_version, migrations)
    if not todo:
        say(f"store is at format {meta.schema_version}: nothing to do")
        return []
    writers = _live_writers(sfs)
    if writers:
        raise StoreError(f"writers are active on the store ({len(writers)} lock(s) in {LOCKS_DIR}/); stop them first "
                         "or run `sime-data gc` if they crashed")
    stamp = time.strftime("%Y%m%dT%H%M%S")
    staging = f"{root}.migrating-{stamp}"
    backup = f"{root}.pre-migrate-v{meta.schema_version}-{stamp}"
    say(f"copying store to {staging} (chunks hard-linked)")
    _copy_tree_for_migration(root, staging)
    staged = StoreFS(staging)
    try:
        for migration in todo:
            say(f"applying {migration.name}: {migration.description}")
            migration.apply(staged)
            _record(staged, migration)
        from sime_data.store import Store

        Store.open(staging, schema_version=target)  # must open cleanly before we switch
        staged.write_atomic(COMPLETE_MARKER, backup.encode())
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    os.rename(root, backup)
    os.rename(staging, root)
    os.unlink(os.path.join(root, COMPLETE_MARKER))
    say(f"switched: store is now at format {target}; previous store kept at {backup}")
    if not keep_backup:
        shutil.rmtree(backup, ignore_errors=True)
    return [m.name for m in todo]


def _finish_interrupted_switch(root: str, say: Callable[[str], None]) -> None:
    """If a migration died between renaming the old store away and moving the new one in, complete it."""
    if os.path.exists(root):
        return
    parent, name = os.path.split(root)
    if not os.path.isdir(parent):
        return
    for entry in sorted(os.listdir(parent)):
        if entry.startswith(f"{name}.migrating-") and os.path.exists(os.path.join(parent, entry, COMPLETE_MARKER)):
            os.rename(os.path.join(parent, entry), root)
            os.unlink(os.path.join(root, COMPLETE_MARKER))
            say(f"completed an interrupted migration switch from {entry}")
            return
