"""Replicated SIME studies: N independent replicates of a SIME round, the run as the unit of replication.

    sime study --preset quick-study --replicates 16 --parallel 2

Each replicate is a whole `sime run` (run name ``<study>-r001``, ``-r002``, ...) with its own seed (training and
rollouts, derived from the study seed and the replicate's number), its own collection states (or the base
run's, with --shared-collection-states) and its own held-out evaluation states. Round 0 is shared by default: it
is trained once (``<out>/round0``) and every replicate starts from that checkpoint, so the study measures the
variation of collecting, selecting and retraining from one round-0 policy, not of round 0's own training (the
report says so; --no-share-round0 trains one per replicate). Every replicate's round 0 is scored on the
replicate's own evaluation states, so each replicate's difference is paired on its own (state, trial) pairs.

A study resumes where it stopped (every replicate is a resumable run), runs replicates at once (--parallel, or
as Ray tasks with --ray), and extends: rerunning with a larger --replicates adds replicates; replicate k's seeds
depend only on the study seed and k. The report (`study_report`) treats the replicate as the unit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..settings import check_fields, setting
from .config import BRANCHES, PipelineConfig
from .names import Chain

if TYPE_CHECKING:  # pragma: no cover
    from sime_data import Store

    from .study_report import StudyReport

log = logging.getLogger(__name__)

#: written into a replicate's round-0 checkpoint directory when it starts from the study's shared round 0
SHARED_ROUND0_MARKER = "shared_round0.json"
#: offsets replicate k adds to the base run's state seeds (k >= 1): replicate k draws states_seed + k, ...
MAX_REPLICATES = 9999


@dataclass(frozen=True)
class StudyConfig:
    """How a study replicates its base run: how many replicates, their seeds, and what they share."""

    name: str = setting("study", "study name: replicate k is the run <name>-r<k> (default: the preset's name)")
    replicates: int = setting(16, "replicates to run; a larger number later adds replicates (default 16)",
                              positive=True)
    study_seed: int = setting(0, "seed every replicate's own seed is derived from, with its number (default 0)")
    share_round0: bool = setting(True, "train round 0 once and start every replicate from it (default); the "
                                       "report's intervals then do not include round 0's own training variance")
    shared_collection_states: bool = setting(False, "every replicate collects on the base run's collection states "
                                                    "(default: each draws its own)")
    parallel: int = setting(1, "replicates at once on this machine (each on one core; default 1)", positive=True)

    def validate(self) -> "StudyConfig":
        """Self, or ValueError naming the bad setting."""
        from sime_data.schema import check_version_name

        check_fields(self)
        if "/" in self.name:
            raise ValueError(f"study name {self.name!r} must not contain '/'")
        check_version_name(self.name)
        if self.replicates > MAX_REPLICATES:
            raise ValueError(f"replicates must be at most {MAX_REPLICATES}, got {self.replicates}")
        return self

    def identity(self) -> dict[str, Any]:
        """The settings that decide results (a rerun must match them; replicates and parallel may change)."""
        data = dataclasses.asdict(self)
        data.pop("replicates")
        data.pop("parallel")
        return data


def replicate_seed(study_seed: int, index: int) -> int:
    """Replicate `index`'s seed (training and rollouts): reproducible, and distinct between replicates."""
    if index < 1:
        raise ValueError(f"replicates are numbered from 1, got {index}")
    return int(np.random.SeedSequence([int(study_seed), int(index)]).generate_state(1)[0] % (2 ** 31 - 1)) + 1


def replicate_name(study: str, index: int) -> str:
    """Run name of replicate `index`."""
    return f"{study}-r{index:03d}"


def replicate_config(base: PipelineConfig, study: StudyConfig, index: int) -> PipelineConfig:
    """Replicate `index`'s run: the base run with its own name, seed, evaluation states and (by default) collection
    states, one job at a time on one core."""
    states_seed = base.states_seed if study.shared_collection_states else base.states_seed + index
    return replace(base, name=replicate_name(study.name, index), seeds=(replicate_seed(study.study_seed, index),),
                   states_seed=states_seed, eval_states_seed=base.eval_states_seed + index, parallel=1,
                   workers=1, record_demos=False)


def round0_config(base: PipelineConfig, study: StudyConfig) -> PipelineConfig:
    """The shared round 0: the base run's round 0 under the name <study>-round0, trained with the base's seed."""
    return replace(base, name=f"{study.name}-round0", seeds=base.seeds[:1])


def check_study(base: PipelineConfig, study: StudyConfig) -> None:
    """ValueError when replicates would share states with each other's training data or the base run's."""
    if not base.held_out:
        raise ValueError("a study scores on held-out evaluation states: give --eval-states > 0")
    if base.rounds != 1:
        raise ValueError(f"a study replicates one SIME round (round 1 against round 0); got --rounds {base.rounds}")
    ranges = {"states_seed": base.states_seed, "eval_states_seed": base.eval_states_seed}
    low, high = sorted(ranges.values())
    if high - low <= study.replicates:
        raise ValueError(f"states_seed ({base.states_seed}) and eval_states_seed ({base.eval_states_seed}) must be "
                         f"more than --replicates ({study.replicates}) apart: replicate k draws each seed + k")


# ---------------------------------------------------------------------- running
@dataclass(frozen=True)
class ReplicateJob:
    """One replicate: everything its process needs, picklable."""

    index: int
    config: PipelineConfig
    store: str
    out: str
    shared_round0: str | None   # the shared round-0 run directory to start from (None: train its own)


def replicate_done(store: "Store", config: PipelineConfig) -> bool:
    """True when both branches of the replicate's last round are evaluated."""
    seed = config.seeds[0]
    return all(store.has_version(Chain(config.task, config.name, seed, branch).eval_version(config.rounds))
               for branch in BRANCHES)


def link_shared_round0(shared_dir: Path, chain: Chain, out: Path) -> None:
    """Give a replicate the shared round-0 checkpoint and fit report (hard links, else copies), marked as shared."""
    target = chain.checkpoint_dir(out, 0)
    if (target / SHARED_ROUND0_MARKER).is_file():
        return
    target.mkdir(parents=True, exist_ok=True)
    for name in ("final.ckpt", "fit.json"):
        source, destination = shared_dir / name, target / name
        if source.is_file() and not destination.exists():
            try:
                os.link(source, destination)
            except OSError:
                shutil.copy2(source, destination)
    (target / SHARED_ROUND0_MARKER).write_text(json.dumps({"from": str(shared_dir)}, indent=2) + "\n")


class WallClock:
    """A replicate's wall time over all the parts it ran in, kept in <out>/replicate.json every `every_s` seconds
    (so a part that is killed loses at most that much of its count)."""

    def __init__(self, path: Path, record: dict[str, Any], every_s: float = 30.0) -> None:
        self.path, self.every_s = path, every_s
        earlier = json.loads(path.read_text()) if path.is_file() else {}
        self.record = {**record, "wall_s": float(earlier.get("wall_s", 0.0)), "parts": int(earlier.get("parts", 0)) + 1,
                       "done": False}
        self._base, self._started = self.record["wall_s"], time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="sime-replicate-clock", daemon=True)

    def _write(self, done: bool = False) -> None:
        from ..training.checkpoint import atomic_write_bytes

        self.record.update(wall_s=round(self._base + time.monotonic() - self._started, 1), done=done)
        atomic_write_bytes(self.path, (json.dumps(self.record, indent=2) + "\n").encode())

    def _beat(self) -> None:
        while not self._stop.wait(self.every_s):
            self._write()

    def __enter__(self) -> "WallClock":
        self._write()
        self._thread.start()
        return self

    def _halt(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()  # no beat may land after the final record

    def finish(self) -> dict[str, Any]:
        """Stop counting and record the replicate as done; its record."""
        self._halt()
        self._write(done=True)
        return dict(self.record)

    def __exit__(self, *exc: object) -> None:
        self._halt()


def run_replicate(job: ReplicateJob) -> dict[str, Any]:
    """Run (or resume) one replicate, its output in <out>/run.log; its run name, seed and wall time."""
    from .runner import run_pipeline

    out = Path(job.out)
    out.mkdir(parents=True, exist_ok=True)
    chain = Chain(job.config.task, job.config.name, job.config.seeds[0], "sime")
    if job.shared_round0 is not None:
        link_shared_round0(Path(job.shared_round0), chain, out)
    record = {"index": job.index, "run": job.config.name, "seed": job.config.seeds[0],
              "states_seed": job.config.states_seed, "eval_states_seed": job.config.eval_states_seed}
    with WallClock(out / "replicate.json", record) as clock, open(out / "run.log", "a") as log_file, \
            contextlib.redirect_stdout(log_file):
        run_pipeline(job.store, job.config, out, progress=False)
        return clock.finish()


def train_shared_round0(store: "Store", base: PipelineConfig, study: StudyConfig, out: Path,
                        progress: bool = True) -> Path:
    """Train (or find) the study's round 0 once: the directory replicates start from."""
    from .steps import fit_step, train_step

    config = round0_config(base, study)
    chain = Chain(config.task, config.name, config.seeds[0], "sime")
    train_step(store, config, chain, 0, out / "round0", progress=progress)
    fit_step(config, chain, 0, out / "round0")
    return chain.checkpoint_dir(out / "round0", 0)


def _absolute(location: str) -> str:
    """A local store path made absolute (Ray tasks run elsewhere); URLs unchanged."""
    return location if "://" in location else str(Path(location).resolve())


def check_study_file(out: Path, base: PipelineConfig, study: StudyConfig) -> None:
    """Write <out>/study.json, or ValueError when it records other settings (resume with the same ones)."""
    path = out / "study.json"
    mine = {"study": study.identity(), "run": base.identity(), "seed": list(base.seeds[:1])}
    if path.is_file():
        saved = json.loads(path.read_text())
        changed = sorted(k for part in ("study", "run") for k in set(saved.get(part, {})) | set(mine[part])
                         if saved.get(part, {}).get(k) != mine[part].get(k))
        if saved.get("seed") != mine["seed"]:
            changed.append("seeds")
        if changed:
            raise ValueError(f"{out} holds study {saved['study'].get('name')!r} made with other settings "
                             f"({', '.join(changed)} differ); use the original settings to resume or extend it, or "
                             "another --name and --out for a new study")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**mine, "replicates": study.replicates}, indent=2, sort_keys=True) + "\n")


def run_study(store_location: str, base: PipelineConfig, study: StudyConfig, out: str | Path, *,
              ray_address: str | None = None, progress: bool = True) -> "StudyReport":
    """Run (or resume, or extend) a replicated study and return its report (also written to `out`)."""
    from tqdm.auto import tqdm

    from sime_data import open_store

    from .executors import make_executor
    from .steps import ensure_demos
    from .study_report import build_study_report, write_study_report

    base.validate()
    study.validate()
    check_study(base, study)
    out = Path(out).resolve()
    store = open_store(_absolute(store_location), create=True)
    ensure_demos(store, base, progress=progress)
    check_study_file(out, base, study)
    shared = None
    if study.share_round0:
        shared = str(train_shared_round0(store, base, study, out, progress=progress))
    jobs = [ReplicateJob(k, replicate_config(base, study, k), store.location,
                         str(out / "replicates" / replicate_name(study.name, k)), shared)
            for k in range(1, study.replicates + 1)]
    todo = [job for job in jobs if not replicate_done(store, job.config)]
    executor = make_executor(ray_address, cpus_per_job=1.0, parallel=min(study.parallel, max(1, len(todo))))
    print(f"study {study.name!r}: {study.replicates} replicate(s) of {base.name!r} ({len(jobs) - len(todo)} done), "
          f"round 0 {'shared (trained once)' if shared else 'trained per replicate'}, "
          f"{'shared' if study.shared_collection_states else 'own'} collection states, own evaluation states; "
          f"jobs: {executor.description}; each replicate's log: {out}/replicates/<run>/run.log", flush=True)
    started = time.monotonic()
    try:
        with tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="replicates", disable=not progress) as bar:
            for _, record in executor.as_completed(run_replicate, todo):
                bar.update(1)
                log.info("replicate %s done in %.0f s", record["run"], record["wall_s"])
                tqdm.write(f"replicate {record['run']} (seed {record['seed']}) done: {record['wall_s']:.0f} s; "
                           f"{time.monotonic() - started:.0f} s into this session")
    finally:
        executor.close()
    report = build_study_report(store, base.task, study.name, shared_round0=study.share_round0, out=out)
    write_study_report(report, out)
    print(report.markdown(), flush=True)
    return report


__all__ = ["StudyConfig", "replicate_config", "replicate_name", "replicate_seed", "run_study"]
