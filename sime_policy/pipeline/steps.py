"""The pipeline's steps, each idempotent: a step whose result is already in the store or --out is skipped."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from sime_data.errors import VersionNotFoundError
from sime_data.selection import create_selection_version

from ..exploration import NO_EXPLORATION, Exploration
from .config import PipelineConfig
from .names import Chain, rule_dict

if TYPE_CHECKING:  # pragma: no cover
    from sime_data import Store

log = logging.getLogger(__name__)


class PipelineStateError(ValueError):
    """Results already on disk or in the store that belong to different settings than this run's."""


@dataclass(frozen=True)
class StepOutcome:
    """What a step produced and whether it had to run (False: found done, skipped)."""

    kind: str
    result: str
    ran: bool


def _say(chain: Chain, round_: int, text: str) -> None:
    who = f"seed {chain.seed}" + ("" if round_ == 0 else f" {chain.branch}") + f" round {round_}"
    log.info("[%s] %s", who, text)
    print(f"[{who}] {text}", flush=True)


# ---------------------------------------------------------------------- demos
def ensure_demos(store: "Store", config: PipelineConfig, progress: bool = True) -> str:
    """The round-0 training version, recorded with the scripted expert first when allowed and missing."""
    from ..demos import CORE_SIZES, EXPERT_CONFIGS, record_demos

    name = config.base_version
    if store.has_version(name):
        return name
    fix = (f"record them with `sime demos --task {config.task} --n {config.demos} --store {store.location}` "
           f"(or import robomimic demos with `sime demos --task {config.task} --import-robomimic FILE`), "
           "or pass --record-demos")
    if not config.record_demos:
        raise VersionNotFoundError(f"the store {store.location} has no version {name!r} with the {config.task} demos "
                                   f"round 0 trains on: {fix}")
    if config.demos not in CORE_SIZES:
        raise ValueError(f"--demos {config.demos}: recorded demos come in core sets of {list(CORE_SIZES)}")
    if config.task not in EXPERT_CONFIGS:
        raise ValueError(f"no scripted expert for {config.task!r}: import robomimic demos with "
                         f"`sime demos --task {config.task} --import-robomimic FILE`")
    if store.has_version(f"{config.task}/demos"):
        raise VersionNotFoundError(f"the store has {config.task}/demos but no {name!r}; use --demos with one of the "
                                   f"core sizes it has (see `sime-data versions list`)")
    print(f"recording {config.demos} scripted {config.task} demos into {store.location}", flush=True)
    record_demos(store, config.task, config.demos, seed=0, progress=progress)
    return name


def initial_states(config: PipelineConfig) -> list[np.ndarray]:
    """The run's initial states: the same K states for every seed, round and branch."""
    from ..envs import SimEnv

    with SimEnv(config.task) as env:
        return env.sample_init_states(config.init_states, config.states_seed)


# ---------------------------------------------------------------------- training
def training_version(store: "Store", config: PipelineConfig, chain: Chain, round_: int) -> str:
    """The version round r trains on: the curated (trimmed) one when a person saved it, else the selection."""
    if round_ > 0 and store.has_version(chain.curated_version(round_)):
        return chain.curated_version(round_)
    return chain.train_version(round_, config.base_version)


class CurationPending(Exception):
    """The run stops so a person can trim round r's training data (--curate)."""


def curation_step(store: "Store", config: PipelineConfig, chain: Chain, round_: int) -> None:
    """With --curate, stop until the person has saved round r's trimmed training version."""
    if not config.curate or round_ == 0 or store.has_version(chain.curated_version(round_)):
        return
    selection = chain.train_version(round_, config.base_version)
    raise CurationPending(
        f"round {round_} data of seed {chain.seed} / {chain.branch} is ready for curation: open "
        f"`sime-app --store {store.location}`, trim or drop episodes of {selection!r} and save them as "
        f"{chain.curated_version(round_)!r} (or save it unchanged); then rerun this command")


def train_step(store: "Store", config: PipelineConfig, chain: Chain, round_: int, out: Path,
               progress: bool = True) -> StepOutcome:
    """Train round r's policy on its training version (resumes a partial run; skips a finished one)."""
    from ..checkpoint import checkpoint_info
    from ..trainer import train

    version = training_version(store, config, chain, round_)
    run_dir = chain.checkpoint_dir(out, round_)
    final, latest = run_dir / "final.ckpt", run_dir / "latest.ckpt"
    for existing in (final, latest):
        if existing.is_file():
            trained_on = checkpoint_info(existing)["data"].get("version")
            if trained_on != version:
                raise PipelineStateError(
                    f"{existing} was trained on {trained_on!r}, but this run trains round {round_} on {version!r}: "
                    "the --out directory belongs to another run; use a fresh --out or the original settings")
            break
    if final.is_file():
        return StepOutcome("train", str(final), ran=False)
    resume = run_dir if latest.is_file() else None
    experiment = config.experiment(chain.seed)
    _say(chain, round_, f"train {experiment.train.steps} steps on {version} "
                        f"({store.version(version).n_episodes} episodes){' (resuming)' if resume else ''}")
    result = train(store, version, experiment, run_dir, resume=resume, progress=progress)
    assert result.final_checkpoint is not None
    return StepOutcome("train", str(result.final_checkpoint), ran=True)


# ---------------------------------------------------------------------- rollouts
def exploration_of(config: PipelineConfig) -> Exploration:
    """The SIME branch's collection exploration."""
    return Exploration("sime", noise_scale=config.noise_scale, image_noise_scale=config.image_noise_scale,
                       tau1=config.tau1, tau2=config.tau2)


def rollout_step(store: "Store", config: PipelineConfig, chain: Chain, round_: int, kind: str, checkpoint: str,
                 states: Sequence[np.ndarray], progress: bool = True) -> StepOutcome:
    """Roll round r's policy out from the run's states: 'eval' without exploration, 'explore' with SIME."""
    from ..rollout import collect_rollouts

    name = chain.eval_version(round_) if kind == "eval" else chain.explore_version(round_)
    if store.has_version(name):
        return StepOutcome(kind, name, ran=False)
    exploration = NO_EXPLORATION if kind == "eval" else exploration_of(config)
    _say(chain, round_, f"{kind}: {config.init_states} states x {config.trials} trials"
                        f"{'' if kind == 'eval' else f', sime noise {config.noise_scale:g}'} -> {name}")
    result = collect_rollouts(store, checkpoint, task=config.task, init_states=list(states), trials=config.trials,
                              exploration=exploration, seed=chain.seed, workers=config.workers, round=round_,
                              branch=None if round_ == 0 else chain.branch, version=name, max_steps=config.max_steps,
                              progress=progress)
    _say(chain, round_, f"{kind}: success rate {result.success_rate:.3f} ± {result.stderr:.3f}")
    return StepOutcome(kind, name, ran=True)


# ---------------------------------------------------------------------- selection
def select_step(store: "Store", config: PipelineConfig, chain: Chain, round_: int) -> StepOutcome:
    """Training version of round r + 1 = round r's training version + the selection from round r's data."""
    name = chain.train_version(round_ + 1, config.base_version)
    source = chain.data_version(round_)
    base = training_version(store, config, chain, round_)
    if store.has_version(name):
        rule = store.version(name).rule or {}
        if rule.get("source") != source or rule.get("base") != base or rule.get("pipeline") != config.identity():
            raise PipelineStateError(
                f"version {name!r} already exists with other settings (rule {rule.get('rule')}, source "
                f"{rule.get('source')!r}); versions are immutable: run with another --name")
        return StepOutcome("select", name, ran=False)
    version = create_selection_version(store, name, source, config.rule, config.threshold, base=base,
                                       seed=chain.seed, extra_rule={"pipeline": config.identity()})
    _say(chain, round_ + 1, f"data: {version.message} -> {name} ({version.n_episodes} episodes)")
    return StepOutcome("select", name, ran=True)


def check_run_settings(store: "Store", config: PipelineConfig) -> None:
    """PipelineStateError when this run name already holds versions made with other settings."""
    prefix = f"{config.task}/sime/{config.name}/"
    names = store.sql(f"SELECT name, rule FROM versions WHERE starts_with(name, '{prefix}')")
    for _, row in names.iterrows():
        saved = rule_dict(row["rule"]).get("pipeline")
        if saved is not None and saved != config.identity():
            changed = sorted(k for k in set(saved) | set(config.identity()) if saved.get(k) != config.identity().get(k))
            raise PipelineStateError(
                f"run {config.name!r} in {store.location} was made with other settings ({', '.join(changed)} differ); "
                "rerun with the original settings to resume it, or pass another --name for a new run")

