"""Writer process for the crash-safety and concurrency tests (run as a script; also imported for `expected_episode`).

Usage: python _writer_worker.py MODE STORE WSEED [options]

Every episode's content is a pure function of (WSEED, attempt index), so the parent can check what it reads.
Lines printed (flushed) on stdout:
    READY <segment>                 the writer exists (no episode written yet)
    COMMITTED <episode_id> <wseed> <index> <length>   after finish() returned
    DISCARDED <index>               an episode abandoned with discard()
    CLOSING / CLOSED                around writer.close() (close-time compaction)
    COMPACTING / COMPACTED <rows>   around store.compact()
    OK <name> / EXISTS <name>       version creation outcome (mode 'version')
    DONE                            the script is about to exit normally
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np

IMAGE_SHAPE = (48, 48, 3)  # 6912 bytes per frame: above IMAGE_MIN_BYTES, so stored sharded like camera images
SEED_BASE = 100_000  # episode seed = wseed * SEED_BASE + index


def expected_episode(wseed: int, index: int, min_len: int = 20, max_len: int = 200, image: bool = True
                     ) -> dict[str, np.ndarray]:
    """The arrays of attempt `index` of the worker seeded `wseed`, keyed like the store's array keys."""
    rng = np.random.default_rng([wseed, index])
    length = int(rng.integers(min_len, max_len + 1))
    t = np.arange(length)
    out = {
        "obs/pos": np.stack([np.full(length, wseed), np.full(length, index), t, np.sin(t + index)], 1).astype(np.float64),
        "actions": (index * 1000.0 + t[:, None] + np.arange(7)[None, :] / 10.0).astype(np.float32),
        "rewards": (t == length - 1).astype(np.float64),
        "dones": t == length - 1,
    }
    if image:
        flat = np.arange(int(np.prod(IMAGE_SHAPE)), dtype=np.int64)
        out["obs/image"] = ((flat[None, :] + 7 * t[:, None] + 13 * index + 31 * wseed) % 251).astype(np.uint8).reshape(
            length, *IMAGE_SHAPE)
    return out


def decode_seed(seed: int) -> tuple[int, int]:
    """(wseed, index) from an episode's seed column."""
    return int(seed) // SEED_BASE, int(seed) % SEED_BASE


def say(text: str) -> None:
    """Print one protocol line and flush it."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def write_episode(writer: Any, wseed: int, index: int, args: argparse.Namespace, rng: np.random.Generator) -> str | None:
    """Write attempt `index` step by step; returns its id, or None when it was discarded on purpose."""
    data = expected_episode(wseed, index, args.min_len, args.max_len, not args.no_image)
    length = len(data["actions"])
    discard_at = int(rng.integers(1, length)) if rng.random() < args.discard else None
    for t in range(length):
        if discard_at is not None and t == discard_at:
            writer.discard()
            say(f"DISCARDED {index}")
            return None
        obs = {"pos": data["obs/pos"][t]}
        if "obs/image" in data:
            obs["image"] = data["obs/image"][t]
        writer.add_step(obs=obs, action=data["actions"][t], reward=data["rewards"][t], done=data["dones"][t])
        if args.step_sleep:
            time.sleep(args.step_sleep)
    eid = writer.finish(seed=wseed * SEED_BASE + index, trial=index, init_state_id=f"w{wseed}", success=bool(index % 2))
    say(f"COMMITTED {eid} {wseed} {index} {length}")
    return eid


# ---------------------------------------------------------------------- parent side
class WorkerProcess:
    """A running worker script whose stdout lines are collected by a thread (for the tests)."""

    def __init__(self, *args: Any) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), *map(str, args)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        self.stderr = ""
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._out = threading.Thread(target=self._pump_stdout, daemon=True)
        self._err = threading.Thread(target=self._pump_stderr, daemon=True)
        self._out.start()
        self._err.start()

    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.endswith("\n"):  # a line cut by the kill is not a report
                self.lines.append(line.rstrip("\n"))
                self._queue.put(self.lines[-1])
        self._queue.put(None)

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def wait_for(self, prefix: str, timeout: float = 60.0) -> str:
        """Block until the worker prints a line starting with `prefix`; return it."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"worker printed no {prefix!r} line within {timeout}s; lines: {self.lines[-5:]}")
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self._queue.put(None)
                self.proc.wait()
                raise RuntimeError(f"worker exited (rc={self.proc.returncode}) before {prefix!r}: {self.stderr[-3000:]}")
            if line.startswith(prefix):
                return line

    def poll(self) -> list[str]:
        """Lines printed since the last call (never blocks)."""
        out = []
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return out
            if line is None:
                self._queue.put(None)
                return out
            out.append(line)

    def kill(self) -> None:
        """SIGKILL the worker, reap it and collect everything it printed."""
        try:
            os.kill(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self._out.join(10)
        self._err.join(10)

    def join(self, timeout: float = 120.0) -> None:
        """Wait for a normal exit; raise with the worker's stderr if it failed."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._out.join(10)
        self._err.join(10)
        if self.proc.returncode != 0:
            raise RuntimeError(f"worker failed (rc={self.proc.returncode}):\n{self.stderr[-3000:]}")

    @property
    def segment(self) -> str | None:
        """The worker's segment, once it printed READY."""
        for line in self.lines:
            if line.startswith("READY "):
                return line.split()[1]
        return None

    def committed(self) -> dict[str, tuple[int, int, int]]:
        """episode_id -> (wseed, index, length) for every episode the worker reported as committed."""
        out = {}
        for line in self.lines:
            parts = line.split()
            if parts and parts[0] == "COMMITTED" and len(parts) == 5:
                out[parts[1]] = (int(parts[2]), int(parts[3]), int(parts[4]))
        return out


def check_episode(store: Any, row: dict[str, Any], **gen: Any) -> None:
    """Assert an episode's stored arrays equal what the worker generated for it (complete, exact)."""
    wseed, index = decode_seed(row["seed"])
    want = expected_episode(wseed, index, **gen)
    eid = row["episode_id"]
    assert row["length"] == len(want["actions"]), f"{eid}: length {row['length']} != {len(want['actions'])}"
    assert sorted(row["keys"]) == sorted(want), f"{eid}: keys {row['keys']}"
    got = store.read_episode(eid)
    for key, value in want.items():
        assert got[key].dtype == value.dtype, f"{eid} {key}: dtype {got[key].dtype} != {value.dtype}"
        assert np.array_equal(got[key], value), f"{eid} {key}: stored frames differ from the written ones"


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["loop", "batch", "compact", "atomic", "version"])
    parser.add_argument("store")
    parser.add_argument("wseed", type=int)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--min-len", type=int, default=20)
    parser.add_argument("--max-len", type=int, default=200)
    parser.add_argument("--no-image", action="store_true")
    parser.add_argument("--step-sleep", type=float, default=0.0)
    parser.add_argument("--episode-sleep", type=float, default=0.0)
    parser.add_argument("--discard", type=float, default=0.0, help="probability of abandoning an episode")
    parser.add_argument("--slow-remove", type=float, default=0.0, help="seconds added to every file removal")
    parser.add_argument("--version-names", default="")
    parser.add_argument("--start-at", type=float, default=0.0)
    parser.add_argument("--stagger", type=float, default=0.25)
    args = parser.parse_args(argv)

    from sime_data import VersionExistsError, open_store
    from sime_data.storefs import StoreFS

    if args.slow_remove:  # widen the compaction window so a kill lands inside it (test hook, this process only)
        original = StoreFS.remove

        def slow_remove(self: StoreFS, rel: str, recursive: bool = False) -> None:
            time.sleep(args.slow_remove)
            original(self, rel, recursive)

        StoreFS.remove = slow_remove  # type: ignore[method-assign]

    store = open_store(args.store)
    rng = np.random.default_rng([args.wseed, 999_999])

    if args.mode == "version":
        ids = store.episodes(columns=["episode_id"])["episode_id"].tolist()
        say("READY -")
        for j, name in enumerate(n for n in args.version_names.split(",") if n):
            target = args.start_at + j * args.stagger
            while time.time() < target - 0.002:
                time.sleep(0.001)
            while time.time() < target:
                pass
            try:
                store.create_version(name, ids, message=f"from worker {args.wseed}")
                say(f"OK {name}")
            except VersionExistsError:
                say(f"EXISTS {name}")
        say("DONE")
        return 0

    writer = store.writer("rollout", "crash-test", atomic=args.mode == "atomic")
    say(f"READY {writer.segment}")
    if args.mode == "loop":
        index = 0
        while True:  # until killed
            write_episode(writer, args.wseed, index, args, rng)
            index += 1
            if args.episode_sleep:
                time.sleep(args.episode_sleep)
    for index in range(args.episodes):
        write_episode(writer, args.wseed, index, args, rng)
        if args.episode_sleep:
            time.sleep(args.episode_sleep)
    say("CLOSING")
    writer.close()
    say("CLOSED")
    if args.mode == "compact":
        say("COMPACTING")
        rows = store.compact()
        say(f"COMPACTED {rows}")
    say("DONE")
    return 0


if __name__ == "__main__":
    sys.exit(main())
