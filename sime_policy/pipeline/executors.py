"""Where independent pipeline jobs run: one after another here, or as tasks on an existing Ray cluster."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable, Iterator, Protocol, Sequence, TypeVar

log = logging.getLogger(__name__)

Job = TypeVar("Job")
Result = TypeVar("Result")


class Executor(Protocol):
    """Runs a function over independent jobs and returns their results in order."""

    description: str

    def map(self, fn: Callable[[Job], Result], jobs: Sequence[Job]) -> list[Result]:
        """fn(job) for every job; results in job order; the first failure is raised."""

    def as_completed(self, fn: Callable[[Job], Result], jobs: Sequence[Job]) -> Iterator[tuple[int, Result]]:
        """(index of the job, fn(job)) as each job finishes; the first failure is raised."""

    def close(self) -> None:
        """Release what the executor holds."""


class LocalExecutor:
    """Jobs one after another in this process (each still uses the run's rollout workers)."""

    description = "local (one job at a time)"

    def map(self, fn: Callable[[Job], Result], jobs: Sequence[Job]) -> list[Result]:
        """fn(job) for every job, in order."""
        return [fn(job) for job in jobs]

    def as_completed(self, fn: Callable[[Job], Result], jobs: Sequence[Job]) -> Iterator[tuple[int, Result]]:
        """(index, fn(job)) for every job, in order."""
        for index, job in enumerate(jobs):
            yield index, fn(job)

    def close(self) -> None:
        """Nothing to release."""


def exit_with_parent(parent: int, poll_s: float = 1.0) -> None:
    """In a job process: end it when the process that started it is gone (killed, not only Ctrl-C'd)."""

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                log.warning("the pipeline process %d is gone: stopping this job (rerun to resume)", parent)
                os._exit(1)

    threading.Thread(target=watch, name="sime-parent-watch", daemon=True).start()


class ProcessExecutor:
    """Up to `parallel` jobs at once in spawned processes on this machine (e.g. both branches of a round)."""

    def __init__(self, parallel: int) -> None:
        if parallel < 2:
            raise ValueError(f"ProcessExecutor needs parallel >= 2, got {parallel}")
        self.parallel = int(parallel)
        self.description = f"local, {self.parallel} jobs at once (spawned processes)"

    def map(self, fn: Callable[[Job], Result], jobs: Sequence[Job]) -> list[Result]:
        """fn(job) for every job, `parallel` at a time; results in job order; the first failure is raised."""
        return _in_order(self.as_completed(fn, jobs), len(jobs))

    def as_completed(self, fn: Callable[[Job], Result], jobs: Sequence[Job]) -> Iterator[tuple[int, Result]]:
        """(index, fn(job)) as each job finishes, `parallel` at a time; the first failure is raised."""
        if len(jobs) <= 1:
            yield from ((i, fn(job)) for i, job in enumerate(jobs))
            return
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        with ProcessPoolExecutor(max_workers=min(self.parallel, len(jobs)), mp_context=mp.get_context("spawn"),
                                 initializer=exit_with_parent, initargs=(os.getpid(),)) as pool:
            futures = {pool.submit(fn, job): i for i, job in enumerate(jobs)}
            try:
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in sorted(done, key=futures.__getitem__):
                        yield futures[future], future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise

    def close(self) -> None:
        """Nothing to release (the pool closes after each map)."""


class RayExecutor:
    """Jobs as Ray tasks on an existing cluster ('auto' or 'HOST:PORT'); each job writes its own store segments."""

    def __init__(self, address: str, cpus_per_job: float = 1.0) -> None:
        try:
            import ray
        except ImportError:
            raise ValueError("--ray needs Ray: pip install -e \".[cluster]\" (or pip install ray) on every node") from None
        self._ray = ray
        self.cpus_per_job = float(cpus_per_job)
        try:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=True, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ValueError(f"could not connect to the Ray cluster at {address!r}: {exc}. Start one with "
                             "`ray start --head` (or give its address as --ray HOST:PORT)") from None
        resources = ray.cluster_resources()
        self.description = f"Ray cluster {address} ({resources.get('CPU', 0):g} CPUs, {int(resources.get('GPU', 0))} GPUs)"

    def map(self, fn: Callable[[Job], Result], jobs: Sequence[Job]) -> list[Result]:
        """Submit every job as a Ray task and wait for all of them."""
        return _in_order(self.as_completed(fn, jobs), len(jobs))

    def as_completed(self, fn: Callable[[Job], Result], jobs: Sequence[Job]) -> Iterator[tuple[int, Result]]:
        """Submit every job as a Ray task; (index, result) as each finishes."""
        if not jobs:
            return
        task = self._ray.remote(num_cpus=self.cpus_per_job, max_retries=0)(fn)
        refs = {task.remote(job): i for i, job in enumerate(jobs)}
        pending = list(refs)
        while pending:
            done, pending = self._ray.wait(pending, num_returns=1)
            try:
                result = self._ray.get(done[0])
            except self._ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, (ValueError, KeyError, FileNotFoundError)):
                    raise cause from None
                raise RuntimeError(f"a pipeline task failed on the Ray cluster: {cause or exc}; rerun the same "
                                   "command to resume") from None
            yield refs[done[0]], result

    def close(self) -> None:
        """Disconnect from the cluster (the cluster keeps running)."""
        self._ray.shutdown()


def _in_order(finished: Iterator[tuple[int, Result]], count: int) -> list[Result]:
    """The results of `as_completed` in job order."""
    results = dict(finished)
    return [results[i] for i in range(count)]


def make_executor(ray_address: str | None, cpus_per_job: float = 1.0, parallel: int = 1) -> Executor:
    """A RayExecutor connected to `ray_address`, else local: one job at a time, or `parallel` processes."""
    if ray_address:
        return RayExecutor(ray_address, cpus_per_job)
    return ProcessExecutor(parallel) if parallel > 1 else LocalExecutor()
