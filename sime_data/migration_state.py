"""Copies of a store that `sime-data migrate` builds beside it: finding them, locking them, and recovering from a
migration that died (opening or writing a store first finishes or rolls back such a migration)."""

from __future__ import annotations

import logging
import os
import shutil
import time
from typing import Callable

from .errors import MigrationInProgressError, StoreError
from .processes import lock_fd

#: Recovery messages keep the logger name they have always been shown under (the CLI prints it).
log = logging.getLogger("migrations.runner")
#: Written into a migration copy once it is complete: the copy may then replace the store.
COMPLETE_MARKER = ".migration-complete"
#: Migration copies are named `<store>.migrating-<time>-<id>` beside the store.
STAGING_INFIX = ".migrating-"


class StagingLock:
    """An OS lock on a migration's staging directory, held while the migration runs (released by the kernel)."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd: int | None = fd

    @classmethod
    def create(cls, path: str) -> "StagingLock":
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
    def try_take(cls, path: str) -> "StagingLock | None":
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
    say = say or (lambda text: log.warning(text))
    deadline = time.monotonic() + wait_s
    while True:
        live = False
        for staging in _stagings(root):
            held = StagingLock.try_take(staging)
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
    recover_interrupted_migration(root)
    for staging in _stagings(root):
        held = StagingLock.try_take(staging)
        if held is None and os.path.isdir(staging):
            raise MigrationInProgressError(
                f"`sime-data migrate` is upgrading the store at {root} right now; episodes written now would be "
                "left behind in the pre-migration copy, so writing waits until it has finished"
            )
        if held is not None:
            held.release()
