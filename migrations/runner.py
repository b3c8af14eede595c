"""Discover numbered migrations and upgrade an existing store copy-on-write: build the upgraded store beside it,
then switch."""

from __future__ import annotations

import importlib
import json
import logging
import os
import pkgutil
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Sequence

from sime_data.errors import NewerStoreError, StoreError, StoreNotFoundError
from sime_data.layout import DATA_DIR, LOCKS_DIR, ROOT_FILE, RootMeta
from sime_data.migration_state import (
    COMPLETE_MARKER,
    STAGING_INFIX,
    StagingLock,
    ensure_no_migration_running,
    recover_interrupted_migration,
)
from sime_data.processes import lock_is_live
from sime_data.store import Store
from sime_data.storefs import StoreFS

__all__ = ["COMPLETE_MARKER", "MIGRATIONS", "STAGING_INFIX", "Migration", "ensure_no_migration_running", "latest_version",
           "migrate", "pending_migrations", "recover_interrupted_migration"]

log = logging.getLogger(__name__)
_MODULE_RE = re.compile(r"^m(\d{4})_\w+$")


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


#: The project's migrations, in order. Migration 1 is format 1's layout; new stores are created at the current
#: format by `sime_data.Store.create`, so migrations only ever upgrade existing stores.
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


def _copy_tree_for_migration(src: str, dst: str) -> None:
    """Copy a local store into `dst`; Zarr chunk files (never rewritten in place) are hard-linked, the rest copied."""
    data_prefix = os.path.join(src, DATA_DIR)

    def _copy(source: str, target: str) -> str:
        if source.startswith(data_prefix + os.sep) and not source.endswith("zarr.json"):
            try:
                os.link(source, target)
                return target
            except OSError:
                pass
        return shutil.copy2(source, target)

    shutil.copytree(src, dst, copy_function=_copy, ignore=shutil.ignore_patterns(".tmp-*"), dirs_exist_ok=True)


def _live_writers(sfs: StoreFS) -> list[str]:
    return [f for f in sfs.list_files(LOCKS_DIR, ".json") if not f.endswith("compaction.lock") and lock_is_live(sfs, f)]


def migrate(location: str | os.PathLike, *, migrations: Sequence[Migration] | None = None, keep_backup: bool = True,
            progress: Callable[[str], None] | None = None) -> list[str]:
    """Upgrade the store at `location` to the newest format; returns the names of the migrations applied.

    The upgrade runs on a copy next to the store (`<store>.migrating-*`, OS-locked while the migration
    runs); the original is only renamed away (and kept as a backup unless `keep_backup=False`) once the copy
    is complete and opens cleanly. A migration killed at any point is finished or rolled back by the next
    open, create or migrate of the store.
    """
    migrations = list(migrations or MIGRATIONS)
    say = progress or (lambda text: log.info(text))
    sfs = StoreFS(location)
    if not sfs.is_local:
        raise StoreError("sime-data migrate works on local stores; copy the store locally, migrate, and upload it")
    root = sfs.root
    recover_interrupted_migration(root, say)
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
    stamp = time.strftime("%Y%m%dT%H%M%S")
    staging = f"{root}{STAGING_INFIX}{stamp}-{uuid.uuid4().hex[:6]}"
    backup = f"{root}.pre-migrate-v{meta.schema_version}-{stamp}"
    held = StagingLock.create(staging)  # announces the migration before the writer check (writers do the reverse)
    try:
        writers = _live_writers(sfs)
        if writers:
            raise StoreError(f"writers are active on the store ({len(writers)} live lock(s) in {LOCKS_DIR}/); stop "
                             "them first")
        say(f"copying store to {staging} (chunks hard-linked)")
        _copy_tree_for_migration(root, staging)
        staged = StoreFS(staging)
        for migration in todo:
            say(f"applying {migration.name}: {migration.description}")
            migration.apply(staged)
            _record(staged, migration)
        Store.open(staging, schema_version=target)  # must open cleanly before we switch
        marker = {"backup": backup, "from_version": meta.schema_version, "to_version": target}
        staged.write_atomic(COMPLETE_MARKER, json.dumps(marker).encode())
        held.check_still_mine()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        held.release()
        raise
    try:
        os.rename(root, backup)
        os.rename(staging, root)  # killed between the two renames: the next open finishes the switch
        os.unlink(os.path.join(root, COMPLETE_MARKER))
    finally:
        held.release()
    say(f"switched: store is now at format {target}; previous store kept at {backup}")
    if not keep_backup:
        shutil.rmtree(backup, ignore_errors=True)
    return [m.name for m in todo]
