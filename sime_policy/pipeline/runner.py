"""`sime run`: round 0 on the demos, then per round and branch: select, retrain, evaluate, explore."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .config import BRANCHES, PipelineConfig
from .executors import LocalExecutor, make_executor
from .names import Chain
from .report import RunReport, build_report, write_report
from .steps import (CurationPending, StepOutcome, check_run_settings, curation_step, ensure_demos, initial_states,
                    rollout_step, select_step, train_step)

if TYPE_CHECKING:  # pragma: no cover
    from sime_data import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoundJob:
    """One round of one (seed, branch) chain: everything a worker needs, picklable."""

    config: PipelineConfig
    store: str
    out: str
    seed: int
    branch: str
    round: int
    states: tuple[np.ndarray, ...]
    progress: bool = True


def run_round(job: RoundJob) -> list[StepOutcome]:
    """Round 0: train on the demos, evaluate, explore. Round r: select, train, evaluate (and explore if not last)."""
    from sime_data import open_store

    store = open_store(job.store)
    config, r, out = job.config, job.round, Path(job.out)
    chain = Chain(config.task, config.name, job.seed, job.branch)
    done: list[StepOutcome] = []
    if r > 0:
        done.append(select_step(store, config, chain, r - 1))
        try:
            curation_step(store, config, chain, r)
        except CurationPending as pending:
            return [*done, StepOutcome("curate", str(pending), ran=False)]
    trained = train_step(store, config, chain, r, out, progress=job.progress)
    done.append(trained)
    done.append(rollout_step(store, config, chain, r, "eval", trained.result, job.states, progress=job.progress))
    explore_needed = r < config.rounds and (r == 0 or chain.branch == "sime")
    if explore_needed:
        done.append(rollout_step(store, config, chain, r, "explore", trained.result, job.states,
                                 progress=job.progress))
    return done


def round_jobs(config: PipelineConfig, store: str, out: Path, round_: int, states: Sequence[np.ndarray],
               progress: bool) -> list[RoundJob]:
    """The independent jobs of one round: one per seed for round 0, one per seed and branch after."""
    branches = ("sime",) if round_ == 0 else BRANCHES
    return [RoundJob(config, store, str(out), seed, branch, round_, tuple(states), progress)
            for seed in config.seeds for branch in branches]


def describe(config: PipelineConfig, store: "Store", out: Path, executor_description: str) -> str:
    """A few lines saying what the run will do."""
    rule = "success" if config.rule == "success" else f"{config.rule}_{config.threshold:g}"
    return (f"SIME run {config.name!r}: {config.task}, round 0 on {config.base_version}, {config.rounds} round(s), "
            f"seeds {list(config.seeds)}\n"
            f"  each round: train {config.experiment(config.seeds[0]).train.steps} steps ({config.preset}); "
            f"{config.init_states} initial states x {config.trials} trials without exploration (score + baseline "
            f"data) and with SIME exploration (noise {config.noise_scale:g}, tau {config.tau1:g}-{config.tau2:g}); "
            f"select {rule}\n"
            f"  store {store.location}; checkpoints and report in {out}; jobs: {executor_description}")


def run_pipeline(store_location: str, config: PipelineConfig, out: str | Path, *, ray_address: str | None = None,
                 progress: bool = True) -> RunReport:
    """Run (or resume) a whole SIME experiment and return its report (also written to `out`).

    With ``config.curate`` the run stops with `CurationPending` after a round's selection until a person
    has saved the trimmed training version; rerunning then continues.
    """
    from sime_data import open_store

    config.validate()
    out = Path(out)
    store = open_store(store_location, create=True)
    ensure_demos(store, config, progress=progress)
    check_run_settings(store, config)
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")
    executor = make_executor(ray_address, cpus_per_job=float(config.workers))
    try:
        print(describe(config, store, out, executor.description), flush=True)
        states = initial_states(config)
        started = time.monotonic()
        inner_progress = progress and isinstance(executor, LocalExecutor)
        for round_ in range(config.rounds + 1):
            outcomes = executor.map(run_round, round_jobs(config, store.location, out, round_, states, inner_progress))
            pending = [o.result for job in outcomes for o in job if o.kind == "curate"]
            if pending:
                raise CurationPending("\n".join(pending))
            skipped = sum(not o.ran for job in outcomes for o in job)
            ran = sum(o.ran for job in outcomes for o in job)
            print(f"round {round_} complete: {ran} step(s) run, {skipped} found done "
                  f"({time.monotonic() - started:.0f} s so far)", flush=True)
    finally:
        executor.close()
    report = build_report(store, task=config.task, run=config.name)
    write_report(report, out)
    report.print()
    return report
