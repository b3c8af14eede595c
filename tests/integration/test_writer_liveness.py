"""Writer liveness is an OS lock held for the writer's lifetime, not a pid number: a live writer in another PID
namespace keeps its segment through gc, a kill -9'd one is reclaimed, and object-store writers live by heartbeat."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import sime_data
from sime_data.layout import DATA_DIR, LOCKS_DIR
from sime_data.gc import gc
from sime_data.verify import verify
from sime_data.processes import LOCK_GRACE_SECONDS

WORKER = Path(__file__).with_name("_liveness_worker.py")
_spec = importlib.util.spec_from_file_location("_sime_liveness_worker", WORKER)
lw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lw)  # type: ignore[union-attr]
REPO = str(Path(__file__).resolve().parents[2])


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _read_until(proc: subprocess.Popen, word: str, timeout: float = 60.0) -> list[str]:
    """Lines of the worker's stdout up to (and including) the first one starting with `word`."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"worker exited before {word!r}: {lines} {proc.stderr.read()}")
        lines.append(line.strip())
        if line.startswith(word):
            return lines
    raise AssertionError(f"no {word!r} within {timeout}s: {lines}")


def _unshare_prefix() -> list[str]:
    """The command prefix that runs a process as pid 1 of a new PID namespace, or skip the test."""
    if not shutil.which("unshare"):
        pytest.skip("util-linux `unshare` is not installed: cannot start a writer in another PID namespace")
    candidates = [["unshare", "--pid", "--fork", "--mount-proc"],
                  ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc"]]
    for prefix in candidates:
        probe = subprocess.run([*prefix, "sh", "-c", "echo $$ > /proc/sys/kernel/ns_last_pid"], capture_output=True)
        if probe.returncode == 0:
            return prefix
    pytest.skip("this machine does not allow new PID namespaces with a settable ns_last_pid "
                f"(unshare said: {probe.stderr.decode().strip()!r})")


def _pid_free_on_host() -> int:
    """A pid number that no process of this (the host's) namespace has."""
    with open("/proc/sys/kernel/pid_max") as handle:
        pid_max = int(handle.read())
    rnd = random.Random()
    for _ in range(1000):
        pid = rnd.randrange(max(300, pid_max // 2), pid_max - 10)
        if not os.path.exists(f"/proc/{pid}"):
            return pid
    pytest.skip("found no free pid number")


def _check_all(store: sime_data.Store, ids: list[str]) -> None:
    for index, eid in enumerate(ids):
        row = store.episode(eid)
        want = lw.episode(index, row["length"])
        got = store.read_episode(eid)
        for key, value in want.items():
            np.testing.assert_array_equal(got[key], value, err_msg=f"{eid} {key}")


def test_live_writer_in_another_pid_namespace_survives_gc(tmp_path: Path) -> None:
    """The writer's recorded pid names no process here (old pid check: 'dead'); its OS lock says live."""
    prefix = _unshare_prefix()
    root = tmp_path / "store"
    sime_data.init_store(root)
    pid = _pid_free_on_host()
    proc = subprocess.Popen([*prefix, sys.executable, str(WORKER), str(root), "--pid", str(pid)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        lines = _read_until(proc, "HOLDING")
        _, segment, inner_pid = lines[-1].split()
        lock = json.loads((root / LOCKS_DIR / f"{segment}.json").read_text())
        assert lock["pid"] == int(inner_pid) == pid and not os.path.exists(f"/proc/{pid}"), \
            "the writer's pid number must name no process outside its namespace for this test to mean anything"
        shards_before = sorted(p.name for p in (root / DATA_DIR / segment / "obs" / "image" / "c").iterdir())
        assert len(shards_before) >= 4  # the open episode's frames are on disk

        report = gc(sime_data.open_store(root))
        assert report.skipped_active == [segment] and not report.chunk_files_removed, report.summary()
        assert sorted(p.name for p in (root / DATA_DIR / segment / "obs" / "image" / "c").iterdir()) == shards_before

        proc.stdin.write("GO\n")
        proc.stdin.flush()
        lines += _read_until(proc, "DONE")
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    ids = [line.split()[1] for line in lines if line.startswith("COMMITTED")]
    assert len(ids) == lw.N_COMMITTED + 1
    store = sime_data.open_store(root)
    _check_all(store, ids)
    assert verify(store, deep=True).ok


def test_kill_9_releases_the_lock_and_gc_reclaims_the_orphan(tmp_path: Path) -> None:
    root = tmp_path / "store"
    sime_data.init_store(root)
    proc = subprocess.Popen([sys.executable, str(WORKER), str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())
    try:
        lines = _read_until(proc, "HOLDING")
        segment = lines[-1].split()[1]
        assert gc(sime_data.open_store(root)).skipped_active == [segment]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (root / LOCKS_DIR / f"{segment}.json").exists()  # the file stays; the kernel dropped the OS lock
    store = sime_data.open_store(root)
    report = gc(store)
    assert not report.skipped_active and f"{LOCKS_DIR}/{segment}.json" in report.locks_removed
    assert report.chunk_files_removed >= 4, report.summary()  # the unfinished episode's image shards
    ids = [line.split()[1] for line in lines if line.startswith("COMMITTED")]
    _check_all(store, ids)
    assert verify(store, deep=True).ok
    assert gc(store).bytes_freed == 0


def test_object_store_writer_lives_by_heartbeat(tmp_path: Path) -> None:
    """memory:// has no OS locks: a writer's fresh heartbeat keeps its segment; a heartbeat past the grace
    period (a crashed machine) lets gc reclaim it, and that writer then refuses to commit."""
    url = f"memory://liveness-{os.getpid()}-{time.time_ns()}"
    store = sime_data.init_store(url)
    writer = store.writer(source="rollout", task="heartbeat")
    lw.write(writer, 0, 20)
    first = writer.finish()
    lw.write(writer, 1, 200)  # unfinished: 3 image shards on "disk"
    report = gc(store)
    assert report.skipped_active == [writer.segment] and not report.chunk_files_removed

    # the machine "crashes": no more heartbeats, and the last one is older than the grace period
    writer._lock._stop.set()
    lock_rel = f"{LOCKS_DIR}/{writer.segment}.json"
    info = json.loads(store.sfs.read_bytes(lock_rel))
    info["heartbeat_at"] = time.time() - LOCK_GRACE_SECONDS - 60
    info["started_at"] = "2000-01-01T00:00:00+00:00"
    store.sfs.write_atomic(lock_rel, json.dumps(info).encode())
    report = gc(store)
    assert not report.skipped_active and lock_rel in report.locks_removed
    assert report.chunk_files_removed == 3, report.summary()
    np.testing.assert_array_equal(store.read_episode(first)["actions"], lw.episode(0, 20)["actions"])
    with pytest.raises(sime_data.WriterStateError, match="lock"):
        writer.finish()
    assert len(store.episodes()) == 1
