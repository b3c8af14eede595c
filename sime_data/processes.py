"""Liveness of the processes that hold store locks.

A writer's lock file is held with an OS lock (`flock`) for the writer's whole life on local disks: the kernel
releases it when the process ends in any way (kill -9 included), whatever PID namespace (container) the process
runs in, so "is the lock held" answers "does the writer run" without looking at pid numbers. Where no shared
kernel can answer (object stores, a lock written by another machine over a network file system), the lock is
refreshed by a heartbeat and counts as live until it is older than a grace period.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

try:  # POSIX only; elsewhere every lock is judged by its heartbeat
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:  # pragma: no cover
    from .storefs import StoreFS

log = logging.getLogger(__name__)

#: How often a live writer refreshes its lock's heartbeat.
HEARTBEAT_SECONDS = 30.0
#: A lock whose holder cannot be asked through an OS lock counts as live until its heartbeat is this old.
LOCK_GRACE_SECONDS = 15 * 60.0

_BOOT_ID: list[str | None] = []


def boot_id() -> str | None:
    """Identifier of the running kernel (the same in every container on this machine), or None if unknown."""
    if not _BOOT_ID:
        try:
            with open("/proc/sys/kernel/random/boot_id") as handle:
                _BOOT_ID.append(handle.read().strip() or None)
        except OSError:
            _BOOT_ID.append(None)
    return _BOOT_ID[0]


def pid_alive(pid: int) -> bool:
    """True when a process with this id runs in this PID namespace (zombies count as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            return False
    except (OSError, IndexError):
        pass
    return True


def lock_fd(fd: int, *, wait: bool = True) -> bool:
    """Take an exclusive OS lock on an open file or directory; False if another holder has it (`wait=False`).

    Where the platform has no `flock` this always succeeds (liveness then rests on heartbeats alone).
    """
    if fcntl is None:  # pragma: no cover
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


class HeldLock:
    """A lock file created already locked; held (and its heartbeat refreshed) until `release`.

    Raises FileExistsError if the lock file exists already.
    """

    def __init__(self, sfs: "StoreFS", rel: str, info: dict[str, Any]) -> None:
        self.sfs = sfs
        self.rel = rel
        self._fd: int | None = None
        self._stop = threading.Event()
        self.info = {**info, "pid": os.getpid(), "boot_id": boot_id(), "heartbeat_at": time.time()}
        if sfs.is_local:
            self._acquire_local()
        else:
            sfs.write_atomic(rel, json.dumps(self.info).encode(), exclusive=True, durable=False)
        self._thread = threading.Thread(target=self._beat, name=f"sime-lock-heartbeat {rel}", daemon=True)
        self._thread.start()

    def _acquire_local(self) -> None:
        """Create the lock file under a temporary name, lock it, then link it into place (never seen unlocked)."""
        target = self.sfs.path(self.rel)
        parent = os.path.dirname(target)
        os.makedirs(parent, exist_ok=True)
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex}-{os.path.basename(target)}"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, json.dumps(self.info).encode())
            os.link(tmp, target)
        except BaseException:
            os.close(fd)
            raise
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        self._fd = fd

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 - a failed heartbeat must not kill the writer
                log.warning("could not refresh lock %s: %s", self.rel, exc)

    def refresh(self) -> None:
        """Renew the heartbeat (file time locally; the lock's JSON on object stores)."""
        if self._stop.is_set():
            return
        if self.sfs.is_local:
            os.utime(self.sfs.path(self.rel))
        else:
            self.info["heartbeat_at"] = time.time()
            self.sfs.write_atomic(self.rel, json.dumps(self.info).encode(), durable=False)

    @property
    def lost(self) -> bool:
        """True when the lock file was removed while held (someone decided this holder was dead)."""
        if self._fd is not None:
            return os.fstat(self._fd).st_nlink == 0
        return not self.sfs.exists(self.rel)

    def release(self, remove: bool = True) -> None:
        """Stop the heartbeat, remove the lock file (unless `remove` is False) and drop the OS lock."""
        if self._stop.is_set():
            return
        self._stop.set()
        if remove:
            self.sfs.remove(self.rel)
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None


def lock_is_live(sfs: "StoreFS", rel: str, mtime: float | None = None) -> bool:
    """True when the holder of the lock file `rel` may still run (False when it is certainly gone)."""
    try:
        info = json.loads(sfs.read_bytes(rel))
        if not isinstance(info, dict):
            info = {}
    except FileNotFoundError:
        return False
    except Exception:  # noqa: BLE001 - unreadable lock: judge by its age
        info = {}
    if sfs.is_local and fcntl is not None:
        state = _flock_state(sfs.path(rel))
        if state is None:
            return False  # vanished meanwhile: its holder released it
        if state == "held":
            return True
        if state == "free" and info.get("boot_id") and info.get("boot_id") == boot_id():
            return False  # written under this kernel, which would hold the lock for a running holder
        if mtime is None:
            try:
                mtime = os.stat(sfs.path(rel)).st_mtime
            except FileNotFoundError:
                return False
        return time.time() - _last_sign_of_life(info, mtime) < LOCK_GRACE_SECONDS
    # object stores: the heartbeat rewrites the JSON; a listing's file time is only a fallback
    return time.time() - _last_sign_of_life(info, None if _has_times(info) else mtime) < LOCK_GRACE_SECONDS


def _has_times(info: dict[str, Any]) -> bool:
    return any(isinstance(info.get(k), (int, float)) for k in ("heartbeat_at", "at")) or "started_at" in info


def _flock_state(path: str) -> str | None:
    """'held', 'free' or 'unknown' (the file system refuses locks); None if the file is gone."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return "held"
    except OSError:
        return "unknown"
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return "free"
    finally:
        os.close(fd)


def _last_sign_of_life(info: dict[str, Any], mtime: float | None) -> float:
    """Newest of the lock's heartbeat, start time and file time (now when none is known)."""
    times = []
    for key in ("heartbeat_at", "at"):
        if isinstance(info.get(key), (int, float)):
            times.append(float(info[key]))
    if isinstance(info.get("started_at"), str):
        try:
            times.append(datetime.fromisoformat(info["started_at"]).timestamp())
        except ValueError:
            pass
    if mtime is not None:
        times.append(mtime)
    return max(times) if times else time.time()
