"""`sime run`: round 0 on the demos, then per round and branch: select, retrain, evaluate, explore."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING


from .carry_over import carry_over, unchanged_since_previous_round
from .config import BRANCHES, PipelineConfig
from .executors import LocalExecutor, make_executor
from .names import Chain
from .report import RunReport, build_report, write_report
from .steps import (CurationPending, RunStates, StepOutcome, check_held_out, check_run_settings, curation_step,
                    ensure_demos, fit_step, initial_states, rollout_step, select_step, train_step, training_version)
from .tracking import close_trackers, log_round, round_trackers

if TYPE_CHECKING:  # pragma: no cover
    from sime_data import Store

    from ..collect.loading import PolicyHandle

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
    states: RunStates
    progress: bool = True


def data_kinds(config: PipelineConfig, chain: Chain, round_: int) -> list[str]:
    """Rollout sets round r collects for the next round: both branches' data after round 0, then the branch's own."""
    if round_ >= config.rounds:
        return []
    kinds = []
    if config.held_out and (round_ == 0 or chain.branch == "baseline"):
        kinds.append("collect")   # without held-out states the eval rollouts are the baseline's data
    if round_ == 0 or chain.branch == "sime":
        kinds.append("explore")
    return kinds


def run_round(job: RoundJob) -> list[StepOutcome]:
    """Round 0: train on the demos, check the fit, evaluate, collect both branches' data. Round r: select, train,
    check the fit, evaluate, and (if not the last round) collect this branch's data."""
    from sime_data import open_store

    from ..collect.loading import load_policy_handle

    store = open_store(job.store)
    config, r, out = job.config, job.round, Path(job.out)
    chain = Chain(config.task, config.name, job.seed, job.branch)
    done: list[StepOutcome] = []
    if r > 0:
        done.append(select_step(store, config, chain, r - 1, progress=job.progress))
        try:
            curation_step(store, config, chain, r)
        except CurationPending as pending:
            return [*done, StepOutcome("curate", str(pending), ran=False)]
    if config.held_out:
        check_held_out(store, training_version(store, config, chain, r), job.states)
    trained = train_step(store, config, chain, r, out, progress=job.progress)
    done.append(trained)
    fit = fit_step(config, chain, r, out)
    policy: PolicyHandle | None = None  # loaded once, for the first rollout set still to collect
    for kind in ["eval", *data_kinds(config, chain, r)]:
        if policy is None and not store.has_version(chain.rollout_version(kind, r)):
            policy = load_policy_handle(trained.result)
        done.append(rollout_step(store, config, chain, r, kind, policy or trained.result, job.states,
                                 progress=job.progress, fit=fit))
    return done


def carry_over_round(store: "Store", config: PipelineConfig, out: Path, round_: int,
                     progress: bool) -> tuple[set[tuple[int, str]], list[StepOutcome]]:
    """Select every chain's round-r data here, and carry over the chains whose training data did not change:
    the (seed, branch) pairs that need no job, and what carrying them over did."""
    carried: set[tuple[int, str]] = set()
    done: list[StepOutcome] = []
    if round_ == 0:
        return carried, done
    for seed in config.seeds:
        for branch in BRANCHES:
            chain = Chain(config.task, config.name, seed, branch)
            done.append(select_step(store, config, chain, round_ - 1, progress=progress))
            if config.reuse_unchanged and unchanged_since_previous_round(store, config, chain, round_) is not None:
                done.extend(carry_over(store, config, chain, round_, out, ["eval", *data_kinds(config, chain, round_)]))
                carried.add((seed, branch))
    return carried, done


def round_jobs(config: PipelineConfig, store: str, out: Path, round_: int, states: RunStates,
               progress: bool, carried: set[tuple[int, str]] = frozenset()) -> list[RoundJob]:
    """The independent jobs of one round: one per seed for round 0, one per seed and branch after (except the
    carried-over ones)."""
    branches = ("sime",) if round_ == 0 else BRANCHES
    pairs = [(seed, branch) for seed in config.seeds for branch in branches if (seed, branch) not in carried]
    # rollout processes are shared out between the jobs that run at the same time (parallel > 1), so the
    # machine runs config.workers rollout processes whether one job runs or several
    at_once = max(1, min(config.parallel, len(pairs)))
    job_config = replace(config, workers=max(1, config.workers // at_once))
    return [RoundJob(job_config, store, str(out), seed, branch, round_, states, progress) for seed, branch in pairs]


def describe(config: PipelineConfig, store: "Store", out: Path, executor_description: str) -> str:
    """A few lines saying what the run will do."""
    rule = "success" if config.rule == "success" else f"{config.rule}_{config.threshold:g}"
    def steps(limit: int | None) -> str:
        return f" ({limit} steps)" if limit is not None else ""

    baseline = ("without exploration" if config.baseline_exploration == "none"
                else f"with {config.baseline_exploration}")
    if config.held_out:
        score = (f"score on {config.eval_states} held-out states x {config.evaluation_trials} trials"
                 f"{steps(config.evaluation_max_steps)}; data from {config.init_states} collection states x "
                 f"{config.trials} trials{steps(config.max_steps)} {baseline} (baseline) and with SIME exploration")
    else:
        score = (f"score and baseline data on the {config.init_states} collection states x {config.trials} trials "
                 "(the reference's protocol: the score is measured on states whose successes are trained on); SIME "
                 "data with exploration")
    return (f"SIME run {config.name!r}: {config.task}, round 0 on {config.base_version}, {config.rounds} round(s), "
            f"seeds {list(config.seeds)}\n"
            f"  each round: train {config.budget_description()} ({config.preset}"
            f"{', fine-tuning the previous round' if config.init_from == 'previous' else ', from scratch'}); "
            f"{score} (noise {config.noise_scale:g} {config.noise_units}, tau {config.tau1:g}-{config.tau2:g}); "
            f"select {rule}{', smoothed and replay-verified' if config.smooth else ''}\n"
            f"  rollouts: {config.workers} process(es) x {config.envs} envs, {config.lanes} policy lanes, device "
            f"{config.resolved_device}\n"
            f"  store {store.location}; checkpoints and report in {out}; jobs: {executor_description}"
            + (f"\n  tracking: {config.track} (per round and branch in {out / 'tracking'}, training runs beside "
               "their checkpoints)" if config.track != "none" else ""))


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
    executor = make_executor(ray_address, cpus_per_job=float(config.workers), parallel=config.parallel)
    trackers = round_trackers(config, out)  # per-round figures, logged here in the parent process only
    try:
        print(describe(config, store, out, executor.description), flush=True)
        states = initial_states(config)
        started = time.monotonic()
        inner_progress = progress and isinstance(executor, LocalExecutor)
        for round_ in range(config.rounds + 1):
            carried, carried_steps = carry_over_round(store, config, out, round_, progress)
            jobs = round_jobs(config, store.location, out, round_, states, inner_progress, carried)
            outcomes = [*executor.map(run_round, jobs), carried_steps]
            pending = [o.result for job in outcomes for o in job if o.kind == "curate"]
            if pending:
                raise CurationPending("\n".join(pending))
            skipped = sum(not o.ran for job in outcomes for o in job)
            ran = sum(o.ran for job in outcomes for o in job)
            print(f"round {round_} complete: {ran} step(s) run, {skipped} found done "
                  f"({time.monotonic() - started:.0f} s so far)", flush=True)
            log_round(trackers, store, config, out, round_)
    finally:
        executor.close()
        close_trackers(trackers)
        for line in (line for tracker in trackers.values() for line in tracker.locations()):
            print(f"tracking: {line}", flush=True)
    report = build_report(store, task=config.task, run=config.name)
    write_report(report, out)
    report.print()
    return report
