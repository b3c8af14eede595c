"""The pipeline's steps, each idempotent: a step whose result is already in the store or --out is skipped."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sime_data.errors import VersionNotFoundError
from sime_data.selection import create_selection_version, select
from sime_data.versions import rule_dict

from ..policy.exploration import NO_EXPLORATION, Exploration
from .config import PipelineConfig
from .names import CARRIED_OVER_MARKER, Chain

if TYPE_CHECKING:  # pragma: no cover
    from sime_data import Store

    from ..collect.loading import PolicyHandle

log = logging.getLogger(__name__)


class PipelineStateError(ValueError):
    """Results already on disk or in the store that belong to different settings than this run's."""


@dataclass(frozen=True)
class StepOutcome:
    """What a step produced and whether it had to run (False: found done, skipped)."""

    kind: str
    result: str
    ran: bool


def say(chain: Chain, round_: int, text: str) -> None:
    """Print one line about a (seed, branch, round) and log it at DEBUG (so -v does not show it twice)."""
    who = f"seed {chain.seed}" + ("" if round_ == 0 else f" {chain.branch}") + f" round {round_}"
    log.debug("[%s] %s", who, text)
    print(f"[{who}] {text}", flush=True)


# ---------------------------------------------------------------------- demos
def ensure_demos(store: "Store", config: PipelineConfig, progress: bool = True) -> str:
    """The round-0 training version, recorded with the scripted expert first when allowed and missing."""
    from ..collect.demos import CORE_SIZES, EXPERT_CONFIGS, record_demos

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


@dataclass(frozen=True)
class RunStates:
    """The run's initial states: collection states (data) and held-out evaluation states (the score)."""

    collection: tuple[np.ndarray, ...]
    evaluation: tuple[np.ndarray, ...]

    def of(self, kind: str) -> tuple[np.ndarray, ...]:
        """States a rollout kind runs from: 'eval' the evaluation states, 'collect'/'explore' the collection ones."""
        return self.evaluation if kind == "eval" else self.collection


def initial_states(config: PipelineConfig) -> RunStates:
    """The run's states: the same for every seed, round and branch; evaluation states disjoint from collection ones."""
    from ..envs import SimEnv, init_state_id

    with SimEnv(config.task) as env:
        collection = env.sample_init_states(config.init_states, config.states_seed)
        if not config.held_out:
            return RunStates(tuple(collection), tuple(collection))
        evaluation = env.sample_init_states(config.eval_states, config.eval_states_seed)
    shared = {init_state_id(s) for s in collection} & {init_state_id(s) for s in evaluation}
    if shared:
        raise ValueError(f"{len(shared)} evaluation state(s) are also collection states: pick another eval_states_seed")
    return RunStates(tuple(collection), tuple(evaluation))


def check_held_out(store: "Store", version: str, states: RunStates) -> None:
    """ValueError when a training episode of `version` starts from an evaluation state (the score would flatter)."""
    from ..envs import init_state_id

    evaluation = {init_state_id(s) for s in states.evaluation}
    trained = set(store.episodes(version=version, columns=["episode_id", "init_state_id"])["init_state_id"].dropna())
    overlap = evaluation & trained
    if overlap:
        raise ValueError(f"{len(overlap)} evaluation state(s) of this run are initial states of training episodes in "
                         f"{version!r} (e.g. {sorted(overlap)[0]}): evaluate on held-out states (another "
                         "--eval-states-seed)")


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


def previous_checkpoint(chain: Chain, round_: int, out: Path) -> Path:
    """Final checkpoint of the round before r in this chain (round 0 is shared by both branches)."""
    return chain.checkpoint_dir(out, round_ - 1) / "final.ckpt"


def train_step(store: "Store", config: PipelineConfig, chain: Chain, round_: int, out: Path,
               progress: bool = True) -> StepOutcome:
    """Train round r's policy on its training version (resumes a partial run; skips a finished one)."""
    from ..training.checkpoint import checkpoint_info
    from ..training.fit_report import read_fit_report
    from ..training.trainer import train

    version = training_version(store, config, chain, round_)
    run_dir = chain.checkpoint_dir(out, round_)
    final, latest = run_dir / "final.ckpt", run_dir / "latest.ckpt"
    if (run_dir / CARRIED_OVER_MARKER).is_file():  # the previous round's policy (carry_over.py)
        return StepOutcome("train", str(final), ran=False)
    for existing in (final, latest):
        if existing.is_file():
            trained_on = checkpoint_info(existing)["data"].get("version")
            if trained_on != version:
                raise PipelineStateError(
                    f"{existing} was trained on {trained_on!r}, but this run trains round {round_} on {version!r}: "
                    "the --out directory belongs to another run; use a fresh --out or the original settings")
            break
    if final.is_file():
        if read_fit_report(run_dir) is None and config.experiment(chain.seed).train.fit_report:
            from ..training.checkpoint import load_checkpoint, policy_from_checkpoint
            from ..training.fit_report import fit_report_of_episodes

            ckpt = load_checkpoint(final)
            policy = policy_from_checkpoint(ckpt)[0].eval()
            train_ids = ckpt["data"].get("train_episodes") or None
            fit_report_of_episodes(policy, store, version, train_ids, seed=chain.seed).write(run_dir)
        return StepOutcome("train", str(final), ran=False)
    resume = run_dir if latest.is_file() else None
    init_from = previous_checkpoint(chain, round_, out) if config.init_from == "previous" and round_ > 0 else None
    experiment = config.experiment(chain.seed)
    data = store.version(version)
    say(chain, round_, f"train on {version} ({data.n_episodes} episodes, "
                        f"{data.n_frames} frames), budget {config.budget_description()}"
                        f"{', fine-tuning round ' + str(round_ - 1) if init_from else ''}"
                        f"{' (resuming)' if resume else ''}")
    from .tracking import training_tracker

    with training_tracker(config, chain, round_, run_dir, version) as tracker:  # this job's own run directory
        result = train(store, version, experiment, run_dir, resume=resume, progress=progress,
                       device=config.resolved_device, init_from=init_from, tracker=tracker)
    assert result.final_checkpoint is not None
    if result.budget is not None:
        say(chain, round_, f"trained {result.budget.describe()} in {result.wall_time_s:.0f} s, final loss "
                            f"{result.final_train_loss:.4f}")
    return StepOutcome("train", str(result.final_checkpoint), ran=True)


class PoorFitError(RuntimeError):
    """A round's policy does not reproduce its own training data (fit gate 'stop')."""


def fit_step(config: PipelineConfig, chain: Chain, round_: int, out: Path) -> dict[str, Any] | None:
    """The round's fit report (printed; flagged before any rollout); PoorFitError when the gate is 'stop'."""
    from ..training.fit_report import read_fit_report

    report = read_fit_report(chain.checkpoint_dir(out, round_))
    if report is None:
        return None
    say(chain, round_, ("" if report.ok else "FLAG: ") + report.summary())
    if not report.ok:
        advice = ("train longer (--train-epochs / --min-train-steps), use a larger model, or check the data; "
                  "its rollouts would be jittery and slow and could poison the next round's data")
        if config.fit_gate == "stop":
            raise PoorFitError(f"round {round_} policy of seed {chain.seed} ({chain.branch}) fits its training data "
                               f"poorly ({'; '.join(report.problems)}): {advice}. Rerun with --fit-gate warn to "
                               "collect anyway")
        say(chain, round_, f"FLAG: collecting anyway (--fit-gate warn); {advice}")
    return report.to_dict()


# ---------------------------------------------------------------------- rollouts
def exploration_of(config: PipelineConfig) -> Exploration:
    """The SIME branch's collection exploration."""
    return Exploration("sime", noise_scale=config.noise_scale, image_noise_scale=config.image_noise_scale,
                       tau1=config.tau1, tau2=config.tau2, noise_units=config.noise_units)


def baseline_exploration_of(config: PipelineConfig) -> Exploration:
    """The baseline branch's collection: none (sampling randomness only), action noise or DDIM eta."""
    if config.baseline_exploration == "action_noise":
        return Exploration("action_noise", noise_scale=config.baseline_noise_scale)
    if config.baseline_exploration == "ddim_eta":
        return Exploration("ddim_eta", eta=config.baseline_eta)
    return NO_EXPLORATION




def rollout_step(store: "Store", config: PipelineConfig, chain: Chain, round_: int, kind: str,
                 policy: "PolicyHandle | str", states: RunStates, progress: bool = True,
                 fit: dict[str, Any] | None = None) -> StepOutcome:
    """Roll round r's policy (a loaded handle or its checkpoint) out: 'eval' (held-out states, no exploration),
    'collect' (collection states, no exploration) or 'explore' (collection states, SIME exploration)."""
    from ..collect.rollouts import collect_rollouts

    name = chain.rollout_version(kind, round_)
    if store.has_version(name):
        return StepOutcome(kind, name, ran=False)
    exploration = {"explore": exploration_of(config), "collect": baseline_exploration_of(config)}.get(kind,
                                                                                                   NO_EXPLORATION)
    trials = config.evaluation_trials if kind == "eval" and config.held_out else config.trials
    chosen = states.of(kind)
    where = "held-out evaluation states" if kind == "eval" and config.held_out else "collection states"
    noise = f", sime noise {config.noise_scale:g} ({config.noise_units})" if kind == "explore" else \
        f", baseline {config.baseline_exploration}" if kind == "collect" and exploration.mode != "none" else ""
    say(chain, round_, f"{kind}: {len(chosen)} {where} x {trials} trials{noise} -> {name}")
    result = collect_rollouts(store, policy, task=config.task, init_states=list(chosen), trials=trials,
                              exploration=exploration, seed=chain.seed, workers=config.workers, round=round_,
                              branch=None if round_ == 0 else chain.branch, version=name,
                              max_steps=config.evaluation_max_steps if kind == "eval" else config.max_steps,
                              progress=progress, envs=config.envs, lanes=config.lanes, device=config.resolved_device,
                              extra_rule={"pipeline_kind": kind, "held_out": bool(kind == "eval" and config.held_out),
                                          "fit": fit})
    say(chain, round_, f"{kind}: success rate {result.success_rate:.3f} ± {result.stderr:.3f} "
                        f"({len(result.episode_ids)} episodes)")
    return StepOutcome(kind, name, ran=True)


# ---------------------------------------------------------------------- selection
def select_step(store: "Store", config: PipelineConfig, chain: Chain, round_: int,
                progress: bool = True) -> StepOutcome:
    """Training version of round r + 1 = round r's training version + the selection from round r's data."""
    name = chain.train_version(round_ + 1, config.base_version)
    source = chain.data_version(round_, config.held_out)
    base = training_version(store, config, chain, round_)
    if store.has_version(name):
        rule = store.version(name).rule or {}
        if rule.get("source") != source or rule.get("base") != base or config.identity_changes(rule.get("pipeline") or {}):
            raise PipelineStateError(
                f"version {name!r} already exists with other settings (rule {rule.get('rule')}, source "
                f"{rule.get('source')!r}); versions are immutable: run with another --name")
        return StepOutcome("select", name, ran=False)
    replacements, extra = None, {"pipeline": config.identity()}
    if config.smooth:
        from ..collect.smoothing import smooth_and_replay

        chosen = select(store, source, config.rule, config.threshold, chain.seed)
        smoothed = smooth_and_replay(store, config.task, chosen.episode_ids, progress=progress)
        say(chain, round_ + 1, f"data: {smoothed.describe()}")
        replacements, extra = smoothed.replacements, {**extra, **smoothed.as_rule()}
    version = create_selection_version(store, name, source, config.rule, config.threshold, base=base,
                                       seed=chain.seed, extra_rule=extra, replacements=replacements)
    say(chain, round_ + 1, f"data: {version.message} -> {name} ({version.n_episodes} episodes)")
    return StepOutcome("select", name, ran=True)


def check_run_settings(store: "Store", config: PipelineConfig) -> None:
    """PipelineStateError when this run name already holds versions made with other settings."""
    prefix = f"{config.task}/sime/{config.name}/"
    names = store.sql(f"SELECT name, rule FROM versions WHERE starts_with(name, '{prefix}')")
    for _, row in names.iterrows():
        saved = rule_dict(row["rule"]).get("pipeline")
        changed = config.identity_changes(saved) if saved is not None else []
        if changed:
            raise PipelineStateError(
                f"run {config.name!r} in {store.location} was made with other settings ({', '.join(changed)} differ); "
                "rerun with the original settings to resume it, or pass another --name for a new run")

