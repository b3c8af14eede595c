"""Pool of spawned rollout worker processes: each runs its job through its own writer and reports episodes."""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_module
import signal
import traceback
from typing import Any

import torch

from .jobs import EpisodeCallback, Job, run_items


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def worker_main(index: int, job: Job, messages: Any) -> None:
    """Entry point of a spawned rollout worker: own env, own policy copy, own writer; reports through `messages`."""
    signal.signal(signal.SIGTERM, _raise_interrupt)  # terminate() closes the writer cleanly (in-flight episode lost)
    try:
        if job.threads:
            torch.set_num_threads(job.threads)
        from sime_data import open_store

        policy = job.policy
        if policy is None:
            raise ValueError("a worker's job must carry the policy to roll out (see rollouts._split)")
        store = open_store(job.store_location)
        parent = os.getppid()

        def report(episode_id: str, state_id: str, trial: int, success: bool) -> None:
            messages.put(("episode", index, episode_id, state_id, trial, success))
            if os.getppid() != parent:  # the parent was killed: stop after this committed episode
                raise KeyboardInterrupt("parent process gone")

        policy.to(job.device)
        with job.open_envs() as envs:
            run_items(store, envs, policy, job, report)
        messages.put(("finished", index))
    except KeyboardInterrupt:
        messages.put(("interrupted", index))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        messages.put(("error", index, traceback.format_exc()))


class WorkerError(RuntimeError):
    """A rollout worker process failed (its committed episodes are kept; rerun to resume)."""


def run_workers(jobs: list[Job], on_episode: EpisodeCallback, poll_s: float = 0.5) -> None:
    """Run jobs in spawned processes, forwarding each finished episode to `on_episode`; raise if one fails."""
    ctx = mp.get_context("spawn")
    messages = ctx.Queue()
    procs = [ctx.Process(target=worker_main, args=(i, job, messages), name=f"sime-rollout-{i}", daemon=True)
             for i, job in enumerate(jobs)]
    for proc in procs:
        proc.start()
    finished: set[int] = set()
    try:
        while len(finished) < len(procs):
            try:
                message = messages.get(timeout=poll_s)
            except queue_module.Empty:
                for i, proc in enumerate(procs):  # exited processes have flushed their messages already
                    if i not in finished and not proc.is_alive():
                        raise WorkerError(f"rollout worker {i} exited with code {proc.exitcode} before finishing; "
                                          "committed episodes are kept, rerun with the same arguments to resume")
                continue
            kind, index = message[0], message[1]
            if kind == "episode":
                on_episode(*message[2:])
            elif kind == "finished":
                finished.add(index)
            elif kind == "interrupted":
                raise KeyboardInterrupt(f"rollout worker {index} was interrupted")
            else:
                raise WorkerError(f"rollout worker {index} failed; committed episodes are kept, rerun to resume. "
                                  f"Worker traceback:\n{message[2]}")
    finally:
        _stop(procs)
        messages.close()


def _stop(procs: list[Any], grace_s: float = 10.0) -> None:
    """Let finished workers exit; terminate (SIGTERM: clean writer close) the ones still running."""
    for proc in procs:
        proc.join(timeout=0.1 if proc.is_alive() else grace_s)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=grace_s)
        if proc.is_alive():  # pragma: no cover - stuck in native code
            proc.kill()
            proc.join()
