"""A writer that commits episodes, then holds an open episode until told to go on (writer-liveness tests).

Usage: python _liveness_worker.py STORE [--pid N]

With --pid N (run as root of a fresh PID namespace, e.g. under `unshare --pid --fork --mount-proc`), the
writer runs in a child process whose pid is N in that namespace (set through /proc/sys/kernel/ns_last_pid),
so the pid number the writer records names no process outside the namespace.

Lines printed (flushed) on stdout:
    COMMITTED <episode_id>      after each finish()
    HOLDING <segment> <pid>     the 4th episode has frames on disk and is not finished
    DONE                        after the 4th episode was committed and the writer closed (once stdin says GO)
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np

N_COMMITTED = 3
OPEN_EPISODE_STEPS = 300
IMAGE = (48, 48, 3)


def episode(index: int, length: int) -> dict[str, np.ndarray]:
    """Deterministic arrays of episode `index` (what the test expects to read back)."""
    t = np.arange(length)
    return {
        "obs/pos": np.stack([np.full(length, index), t], 1).astype(np.float64),
        "obs/image": ((t[:, None, None, None] + index + np.zeros((1, *IMAGE))) % 251).astype(np.uint8),
        "actions": (index * 100.0 + t[:, None] + np.zeros((1, 2))).astype(np.float32),
    }


def say(text: str) -> None:
    """Print one protocol line and flush it."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def write(writer, index: int, length: int) -> None:
    """Add the steps of episode `index` (without finishing it)."""
    data = episode(index, length)
    for t in range(length):
        writer.add_step(obs={"pos": data["obs/pos"][t], "image": data["obs/image"][t]}, action=data["actions"][t])


def main() -> int:
    """Run the writer (or, with --pid, start it as a child with that pid)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("--pid", type=int)
    args = parser.parse_args()
    if args.pid:
        with open("/proc/sys/kernel/ns_last_pid", "w") as handle:
            handle.write(str(args.pid - 1))
        return subprocess.call([sys.executable, __file__, args.store])

    import os

    from sime_data import open_store

    store = open_store(args.store)
    with store.writer(source="rollout", task="liveness") as writer:
        for index in range(N_COMMITTED):
            write(writer, index, 20 + index)
            say(f"COMMITTED {writer.finish(trial=index)}")
        write(writer, N_COMMITTED, OPEN_EPISODE_STEPS)
        say(f"HOLDING {writer.segment} {os.getpid()}")
        if sys.stdin.readline().strip() != "GO":
            return 1
        say(f"COMMITTED {writer.finish(trial=N_COMMITTED)}")
    say("DONE")
    return 0


if __name__ == "__main__":
    sys.exit(main())
