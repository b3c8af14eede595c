"""Discover numbered migrations and apply them copy-on-write: build the upgraded store beside it, then switch."""

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
from sime_data.processes import lock_fd
from sime_data.storefs import StoreFS

log = logging.getLogger(__name__)
_MODULE_RE = re.compile(r"^m(\d{4})_\w+$")
COMPLETE_MARKER = ".migration-complete"
#: Migration copies are named `<store>.migrating-<time>-<id>` beside the store.
STAGING_INFIX = ".migrating-"


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
    from sime_data.processes import lock_is_live

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
    held = _StagingLock.create(staging)  # announces the migration before the writer check (writers do the reverse)
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
        from sime_data.store import Store

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


class _StagingLock:
    """An OS lock on a migration's staging directory, held while the migration runs (released by the kernel)."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd: int | None = fd

    @classmethod
    def create(cls, path: str) -> "_StagingLock":
        """Make the staging directory and lock it (a recovery may only remove it once it is unlocked)."""
        os.mkdir(path)
        fd = os.open(path, os.O_RDONLY)
        if not lock_fd(fd, wait=False):
            os.close(fd)
            raise StoreError(f"could not lock the migration copy {path}")
        held = cls(path, fd)
        held.check_still_mine()
        return held

    @classmethod
    def try_take(cls, path: str) -> "_StagingLock | None":
        """Lock an existing staging directory if no live migration holds it; None if one does (or it vanished)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not lock_fd(fd, wait=False):
            os.close(fd)
            return None
        return cls(path, fd)

    def check_still_mine(self) -> None:
        """Raise if the directory at `path` is no longer the one this lock holds (removed and recreated)."""
        try:
            same = os.stat(self.path).st_ino == os.fstat(self.fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            raise StoreError(f"the migration copy {self.path} was removed while the migration ran; nothing changed")

    def release(self) -> None:
        """Drop the OS lock."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _stagings(root: str) -> list[str]:
    """Paths of the migration copies of the store at `root` (newest first)."""
    parent, name = os.path.split(root)
    try:
        entries = [e.name for e in os.scandir(parent) if e.name.startswith(name + STAGING_INFIX)]
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []
    return [os.path.join(parent, e) for e in sorted(entries, reverse=True)]


def recover_interrupted_migration(root: str, say: Callable[[str], None] | None = None,
                                  wait_s: float = 30.0) -> None:
    """Finish or roll back a migration of the store at `root` whose process died; wait out one that is switching.

    A dead migration's copy is removed while the store is still in place (rolled back: the store was never
    changed). If the store was already renamed away and the copy is complete, the copy is moved in (the
    switch is finished). Raises MigrationInProgressError if a live migration keeps the store missing.
    """
    from sime_data.errors import MigrationInProgressError

    say = say or (lambda text: log.warning(text))
    deadline = time.monotonic() + wait_s
    while True:
        live = False
        for staging in _stagings(root):
            held = _StagingLock.try_take(staging)
            if held is None:
                live = live or os.path.isdir(staging)
                continue
            try:
                _resolve_dead_staging(root, staging, say)
            finally:
                held.release()
        leftover = os.path.join(root, COMPLETE_MARKER)
        if os.path.exists(leftover) and not live:
            try:
                os.unlink(leftover)
            except FileNotFoundError:
                pass
        if os.path.exists(root) or not live:
            return
        if time.monotonic() > deadline:
            raise MigrationInProgressError(
                f"the store at {root} is being switched to a migrated copy by a running `sime-data migrate`; "
                "retry when it has finished"
            )
        time.sleep(0.05)


def _resolve_dead_staging(root: str, staging: str, say: Callable[[str], None]) -> None:
    """Roll back (remove) or roll forward (move into place) the copy of a migration that died."""
    complete = os.path.exists(os.path.join(staging, COMPLETE_MARKER))
    if not os.path.exists(root) and complete:
        os.rename(staging, root)
        try:
            os.unlink(os.path.join(root, COMPLETE_MARKER))
        except FileNotFoundError:
            pass
        say(f"finished an interrupted migration: moved the complete copy {staging} into place at {root}")
        return
    shutil.rmtree(staging, ignore_errors=True)
    state = "a complete but unswitched" if complete else "an incomplete"
    say(f"rolled back an interrupted migration: removed {state} copy {staging} (the store itself was unchanged)")


def ensure_no_migration_running(root: str) -> None:
    """Resolve a dead migration of the store at `root`; raise MigrationInProgressError while a live one runs."""
    from sime_data.errors import MigrationInProgressError

    recover_interrupted_migration(root)
    for staging in _stagings(root):
        held = _StagingLock.try_take(staging)
        if held is None and os.path.isdir(staging):
            raise MigrationInProgressError(
                f"`sime-data migrate` is upgrading the store at {root} right now; episodes written now would be "
                "left behind in the pre-migration copy, so writing waits until it has finished"
            )
        if held is not None:
            held.release()
