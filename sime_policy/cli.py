"""`sime`: train policies, roll them out, record demos and run the SIME pipeline from the command line.

Each subcommand is one ``_add_<name>(subparsers)`` function registering its arguments and handler;
add new ones to ``SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from sime_data.cli_store import accept_store_anywhere, resolve_store

from .settings import add_flags, field_help, flag_values

if TYPE_CHECKING:  # pragma: no cover
    from .policy.config import ExperimentConfig
    from .policy.exploration import Exploration

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- config loading
def _parse_value(text: str) -> Any:
    """JSON value if it parses (numbers, true/false, lists), else the raw string."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return tuple(value) if isinstance(value, list) else value


def load_config(name_or_path: str, *, seed: int | None = None, steps: int | None = None,
                overrides: Sequence[str] = ()) -> "ExperimentConfig":
    """A preset name or a JSON file (ExperimentConfig.to_json form), with seed/steps and FIELD=VALUE overrides."""
    from .policy.config import ExperimentConfig, get_preset

    path = Path(name_or_path)
    if name_or_path.endswith(".json") or path.is_file():
        if not path.is_file():
            raise ValueError(f"config file {path} does not exist")
        try:
            config = ExperimentConfig.from_dict(json.loads(path.read_text()))
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"config file {path} is not an experiment config: {exc}") from exc
    else:
        config = get_preset(name_or_path)
    return config.with_overrides(seed=seed, steps=steps, **_overrides(overrides))


def _overrides(items: Sequence[str]) -> dict[str, Any]:
    """FIELD=VALUE strings as a dict of parsed values."""
    updates: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects FIELD=VALUE, got {item!r}")
        updates[key.strip()] = _parse_value(value)
    return updates


# ---------------------------------------------------------------------- tracking
def _track_argument(text: str) -> str:
    """The --track value, checked (known backends, packages installed) and in canonical form."""
    from .training.tracking import TrackingError, check_track_spec

    try:
        return check_track_spec(text)
    except TrackingError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_track_argument(p: argparse.ArgumentParser, what: str) -> None:
    """--track none|tensorboard|wandb|tensorboard,wandb (default $SIME_TRACK, else none)."""
    from .training.tracking import ENV_VAR, INSTALL_HINT

    p.add_argument("--track", type=_track_argument, default=os.environ.get(ENV_VAR, "none"),
                   metavar="{none,tensorboard,wandb,tensorboard,wandb}",
                   help=f"log {what} to TensorBoard and/or wandb (offline unless $WANDB_MODE says otherwise); "
                        f"default ${ENV_VAR} or none; needs {INSTALL_HINT}")


# ---------------------------------------------------------------------- train
def experiment_config_from_args(args: argparse.Namespace) -> "ExperimentConfig":
    """The ExperimentConfig of `sime train`: a preset, file or checkpoint's config with --set and field flags on top."""
    from .policy.config import ExperimentConfig, PolicyConfig, TrainConfig

    if args.config is None:
        if args.resume is None:
            raise ValueError("train needs --config PRESET_OR_FILE (or --resume CKPT to reuse a checkpoint's config)")
        from .training.checkpoint import checkpoint_info

        config = ExperimentConfig.from_dict(checkpoint_info(args.resume)["config"])
    else:
        config = load_config(args.config)
    updates = _overrides(args.set or [])
    flags = {**flag_values(args, PolicyConfig), **flag_values(args, TrainConfig)}
    clashes = sorted(k for k in flags if k in updates and updates[k] != flags[k])
    if clashes:
        raise ValueError(f"{', '.join(clashes)} given twice, by --set and by its own flag, with different values")
    return config.with_overrides(**{**updates, **flags})


def cmd_train(args: argparse.Namespace) -> int:
    """Train a diffusion policy on a store version."""
    from .training.trainer import DistContext, train

    config = experiment_config_from_args(args)
    if args.out is not None:
        out = Path(args.out)
    elif args.resume is not None:
        resume = Path(args.resume)
        out = resume if resume.is_dir() else resume.parent
    else:
        out = Path("runs") / f"{config.name}-{args.version}-seed{config.train.seed}"
    if args.print_config:
        print(config.to_json())
    from .training.tracking import make_tracker

    main_rank = DistContext.from_env().is_main
    tracker = make_tracker(args.track if main_rank else "none", out, out.name, job_type="train",
                           config={"experiment": config.to_dict(), "store": str(args.store), "version": args.version})
    with tracker:
        result = train(args.store, args.version, config, out, resume=args.resume, progress=not args.no_progress,
                       device=args.device, stop_after=args.stop_after, init_from=args.init_from, tracker=tracker)
    for line in tracker.locations():
        print(f"tracking: {line}")
    if main_rank:
        val = result.final_val_loss
        print(f"trained {result.step} steps: train loss {result.final_train_loss:.5f}"
              + (f", validation loss {val:.5f}" if val is not None else "")
              + f"; checkpoint {result.checkpoint_id} in {result.out_dir}")
        if result.fit is not None:
            print(result.fit.summary())
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    from .policy.config import PolicyConfig, TrainConfig

    p = sub.add_parser("train", help="train a diffusion policy on a store version",
                       description="Train a diffusion policy on a store version (runs under torchrun for DDP). "
                                   "Every policy and training setting has its own flag; unset ones keep the "
                                   "config's value.")
    p.add_argument("--store", required=True, help="store location")
    p.add_argument("--version", required=True, help="version name to train on")
    p.add_argument("--config", default=None,
                   help="preset name (e.g. lift_lowdim, lift_lowdim_cpu) or a JSON file; with --resume, default: the "
                        "checkpoint's config")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="override a policy/train config field, e.g. --set lr=3e-4 --set down_dims=[64,128]")
    p.add_argument("--out", default=None, help="run directory (default: runs/<config>-<version>-seed<seed>, or the "
                                              "resumed checkpoint's directory)")
    p.add_argument("--resume", default=None, help="checkpoint file or run directory to continue from")
    p.add_argument("--init-from", default=None,
                   help="start a new run from this checkpoint's weights (fine-tuning; optimiser and schedule afresh)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available, else cpu)")
    p.add_argument("--stop-after", type=int, default=None, help="stop after this many steps (resumable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON first")
    _add_track_argument(p, "losses, learning rate, gradient norm and the fit report")
    unset = "(default: the config's)"
    add_flags(p.add_argument_group("training settings (TrainConfig)"), TrainConfig, default_note=unset)
    add_flags(p.add_argument_group("policy settings (PolicyConfig)"), PolicyConfig, default_note=unset)
    p.set_defaults(func=cmd_train)


# ---------------------------------------------------------------------- rollout
def exploration_from_args(args: argparse.Namespace) -> "Exploration":
    """Exploration settings from --explore/--noise-scale/--image-noise-scale/--tau1/--tau2/--eta."""
    from .policy.exploration import Exploration

    if args.explore in ("sime", "cads", "action_noise") and args.noise_scale == 0 and not args.image_noise_scale:
        log.warning("--explore %s with --noise-scale 0 adds no noise: this collects like --explore none", args.explore)
    return Exploration(args.explore, noise_scale=args.noise_scale, image_noise_scale=args.image_noise_scale,
                       tau1=args.tau1, tau2=args.tau2, eta=args.eta, noise_units=args.noise_units)


def cmd_rollout(args: argparse.Namespace) -> int:
    """Roll a checkpoint out (K initial states x N trials), store every episode, print the success rate."""
    from .collect.rollouts import collect_rollouts
    from .collect.workers import WorkerError

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None  # `kill` stops like Ctrl-C
    try:
        result = collect_rollouts(args.store, args.checkpoint, task=args.task, init_states=args.init_states,
                                  trials=args.trials, exploration=exploration_from_args(args), seed=args.seed,
                                  workers=args.workers, round=args.round, branch=args.branch, version=args.version,
                                  progress=not args.no_progress, max_steps=args.max_steps,
                                  torch_threads=args.torch_threads, envs=args.envs, lanes=args.lanes,
                                  device=args.device)
    except KeyboardInterrupt:
        print("interrupted: finished episodes are stored; rerun the same command to resume", file=sys.stderr)
        return 130
    except WorkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    result.print(max_rows=args.max_rows)
    resumed = len(result.episode_ids) - result.n_new
    print(f"version {result.version}: {len(result.episode_ids)} episodes ({result.n_new} new"
          + (f", {resumed} from an earlier run" if resumed else "") + f"), collection {result.collection}")
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    """Signal handler raising KeyboardInterrupt."""
    raise KeyboardInterrupt(f"signal {signum}")


def _add_rollout(sub: argparse._SubParsersAction) -> None:
    from .collect.rollouts import DEFAULT_ENVS, DEFAULT_LANES, DEFAULT_SEED
    from .policy.exploration import MODES, NOISE_UNITS

    p = sub.add_parser("rollout", help="roll a policy out in simulation and store every episode",
                       description="Roll a checkpoint out from K initial states x N trials each, write every episode "
                                   "to the store and create a version of the collection. Rerunning the same command "
                                   "resumes an interrupted collection.")
    p.add_argument("--checkpoint", required=True, help="checkpoint file or training run directory")
    p.add_argument("--store", required=True, help="store location")
    p.add_argument("--task", default=None, help="task (default: the one the checkpoint was trained for)")
    p.add_argument("--init-states", type=int, default=100, help="number K of initial states (default 100)")
    p.add_argument("--trials", type=int, default=5, help="trials N per initial state (default 5)")
    p.add_argument("--explore", choices=MODES, default="none", help="exploration mode (default none)")
    p.add_argument("--noise-scale", type=float, default=0.0, help="exploration noise scale")
    p.add_argument("--image-noise-scale", type=float, default=None, help="separate noise scale for image features")
    p.add_argument("--tau1", type=float, default=0.0, help="schedule start (default 0)")
    p.add_argument("--tau2", type=float, default=1.0, help="schedule end (default 1)")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM eta for --explore ddim_eta")
    p.add_argument("--noise-units", choices=NOISE_UNITS, default="raw",
                   help="units of --noise-scale on low-dim observations: raw observation units, as the SIME reference "
                        "(default), or the normalised [-1, 1] space")
    p.add_argument("--workers", type=int, default=1, help="parallel rollout processes (default 1)")
    p.add_argument("--envs", type=int, default=DEFAULT_ENVS,
                   help=f"simulators per process, one batched policy call per chunk for all (default {DEFAULT_ENVS})")
    p.add_argument("--lanes", type=int, default=DEFAULT_LANES,
                   help=f"policy rows per forward pass (default {DEFAULT_LANES}); the same lanes give the same episodes "
                        "for any --envs and --workers")
    p.add_argument("--device", default=None, help="device of the policy during rollouts (cpu, cuda; default cpu)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"collection seed (default {DEFAULT_SEED})")
    p.add_argument("--round", type=int, default=None, help="SIME round recorded with the episodes")
    p.add_argument("--branch", default=None, help="branch recorded with the episodes (e.g. sime, baseline)")
    p.add_argument("--version", default=None,
                   help="version name (default <task>/rollouts/<checkpoint>/<mode>/seed<seed>)")
    p.add_argument("--max-steps", type=int, default=None, help="episode step limit (default: the task horizon)")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch threads per rollout process (default 1: best with several workers or a busy CPU; "
                        "2 can be faster for one worker of a large policy on an idle machine)")
    p.add_argument("--max-rows", type=int, default=None, help="show at most this many initial states in the table")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_rollout)


# ---------------------------------------------------------------------- demos
def cmd_demos(args: argparse.Namespace) -> int:
    """Record scripted-expert demos into a store (created if missing)."""
    from sime_data import open_store

    from .collect.demos import demo_version_names, record_demos

    store = open_store(args.store, create=True)
    if args.import_robomimic:
        from .collect.robomimic_demos import import_robomimic_demos

        ids = import_robomimic_demos(store, args.import_robomimic, task=args.task, version=args.version,
                                     progress=not args.no_progress)
        print(f"imported {len(ids)} {args.task} demos from {args.import_robomimic} (actions converted to absolute "
              f"10-D; originals kept as 'actions_delta') into {store.location}")
        return 0
    if args.n is None:
        raise ValueError("give --n N (scripted demos to record) or --import-robomimic FILE")
    ids = record_demos(store, args.task, args.n, seed=args.seed, noise_std=args.noise_std, cameras=args.cameras,
                       progress=not args.no_progress)
    full, cores = demo_version_names(args.task, args.n)
    print(f"recorded {len(ids)} {args.task} demos into {store.location}: versions {', '.join([full, *cores.values()])}")
    return 0


def _add_demos(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demos", help="record scripted-expert demonstrations into a store",
                       description="Record N successful scripted-expert demos of a task; creates versions "
                                   "<task>/demos and <task>/core_<N>. The store is created if missing.")
    p.add_argument("--task", required=True, help="task name (lift, can, ...)")
    p.add_argument("--n", type=int, help="number of successful scripted demos to record")
    p.add_argument("--import-robomimic", metavar="FILE",
                   help="instead: import a robomimic HDF5 file, converting its delta actions to absolute 10-D")
    p.add_argument("--version", help="with --import-robomimic: version name (default <task>/demos)")
    p.add_argument("--store", required=True, help="store location (created if missing)")
    p.add_argument("--seed", type=int, default=0, help="seed of initial states and expert noise (default 0)")
    p.add_argument("--noise-std", type=float, default=0.0, help="expert action noise std (default 0)")
    p.add_argument("--cameras", action="store_true", help="also record camera images")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demos)


# ---------------------------------------------------------------------- run / report
#: PipelineConfig fields whose `sime run` flags are written by hand (another name, or another meaning)
_RUN_HANDWRITTEN = {"policy_preset": "--config", "train_steps": "--steps", "record_demos": "--record-demos",
                    "curate": "--curate", "reuse_unchanged": "--retrain-unchanged", "track": "--track",
                    "policy_overrides": "--set"}


def pipeline_config_from_args(args: argparse.Namespace) -> Any:
    """The PipelineConfig of `sime run` (or of a study's replicates): a preset (or the defaults) with the flags given
    on top."""
    from .pipeline import PipelineConfig, get_pipeline_preset

    config = get_pipeline_preset(args.preset) if args.preset else PipelineConfig()
    updates: dict[str, Any] = flag_values(args, PipelineConfig, skip=tuple(_RUN_HANDWRITTEN))
    name = getattr(args, "name", None) if args.command == "run" else None
    updates.update({
        "name": name if name else (None if args.preset else f"{args.task or config.task}"),
        "policy_preset": args.config, "train_steps": args.steps,
        "record_demos": True if args.record_demos else None,
        "curate": True if getattr(args, "curate", False) else None, "track": getattr(args, "track", None),
        "reuse_unchanged": False if args.retrain_unchanged else None,
    })
    if args.steps is not None and args.train_epochs is None:  # a fixed step count replaces a data-scaled budget
        config = dataclasses.replace(config, train_epochs=None, min_train_steps=None, train_step_cap=None)
    if args.train_epochs is not None and args.steps is None:  # and the other way round
        config = dataclasses.replace(config, train_steps=None)
    if args.set:
        updates["policy_overrides"] = {**config.policy_overrides, **_overrides(args.set)}
    return config.with_updates(**updates).validate()


def cmd_run(args: argparse.Namespace) -> int:
    """Run (or resume) the SIME pipeline and print its report."""
    from .pipeline import run_pipeline

    config = pipeline_config_from_args(args)
    out = Path(args.out) if args.out else Path("sime_runs") / config.name
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2, sort_keys=True))
        return 0
    from .pipeline.steps import CurationPending, PoorFitError

    try:
        report = run_pipeline(args.store, config, out, ray_address=args.ray, progress=not args.no_progress)
    except CurationPending as pending:
        print(f"paused: {pending}")
        return 3
    except PoorFitError as poor:
        print(f"stopped before collecting: {poor}", file=sys.stderr)
        return 4
    print(f"report: {out / 'report.md'}, {out / 'summary.csv'}, {out / 'results.csv'}, {out / 'success_rate.png'}")
    return 0 if not report.summary.empty else 1


def _add_pipeline_flags(p: argparse.ArgumentParser, default_preset: str | None,
                        skip: tuple[str, ...] = ()) -> None:
    """The flags that set a PipelineConfig (a preset, its generated field flags and the hand-written ones)."""
    from .pipeline import PIPELINE_PRESETS, PipelineConfig

    doc = field_help(PipelineConfig)
    p.add_argument("--preset", choices=sorted(PIPELINE_PRESETS), default=default_preset,
                   help="named settings (quick: about 30 min on a 2-core CPU; lift: 2 seeds, fuller; quick-study: one "
                        f"replicate of `sime study`){'' if default_preset is None else f'; default {default_preset}'}; "
                        "flags below override it")
    p.add_argument("--store", default=os.environ.get("SIME_STORE", "sime_store"),
                   help="store location (default: $SIME_STORE or ./sime_store; created if missing)")
    p.add_argument("--out", default=None, help="checkpoints and report (default ./sime_runs/<name>)")
    add_flags(p, PipelineConfig, skip=tuple(_RUN_HANDWRITTEN) + skip)
    p.add_argument("--record-demos", action="store_true", help=doc["record_demos"])
    p.add_argument("--config", default=None, help=doc["policy_preset"])
    p.add_argument("--steps", type=int, default=None, help=doc["train_steps"])
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a policy/train config field")
    p.add_argument("--retrain-unchanged", action="store_true",
                   help="retrain and roll out a round whose training data did not change (default: reuse the previous "
                        "round's policy and rollouts, which is what retraining would reproduce)")
    p.add_argument("--ray", default=None, metavar="auto|HOST:PORT",
                   help="dispatch jobs as tasks to an existing Ray cluster (needs the cluster extra)")
    p.add_argument("--print-config", action="store_true", help="print the resulting settings and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the whole SIME pipeline (resumable)",
                       description="Round 0: train on the core demos, evaluate without exploration (score and the "
                                   "baseline's data), collect with SIME exploration. Each later round, for both "
                                   "branches: select the successful rollouts of weak initial states, add them to the "
                                   "branch's previous training version (no copying), retrain, evaluate. Rerunning the "
                                   "same command resumes after the last completed step.")
    _add_pipeline_flags(p, default_preset=None)
    p.add_argument("--curate", action="store_true",
                   help="stop after each selection until its trimmed version <...>/roundR/curated is saved (sime-app); "
                        "rerun to continue")
    _add_track_argument(p, "each round's training, fit, success rates, paired differences and one evaluation video")
    p.set_defaults(func=cmd_run)


def cmd_report(args: argparse.Namespace) -> int:
    """Rebuild the results table and plot of SIME runs from the store alone."""
    from sime_data import open_store

    from .pipeline import build_report, write_report

    report = build_report(open_store(args.store), task=args.task, run=args.run)
    report.print()
    if report.summary.empty:
        return 1
    files = write_report(report, args.out)
    print("written: " + ", ".join(str(p) for p in files.values()))
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="results of SIME runs (table + plot) rebuilt from the store",
                       description="Success rate per round and branch (mean ± std over seeds), training data per "
                                   "version; writes report.md, summary.csv, results.csv and success_rate.png.")
    p.add_argument("--store", default=os.environ.get("SIME_STORE", "sime_store"), help="store location")
    p.add_argument("--task", default=None, help="only this task")
    p.add_argument("--run", default=None, help="only this run name")
    p.add_argument("--out", default="sime_report", help="directory for the files (default ./sime_report)")
    p.set_defaults(func=cmd_report)


# ---------------------------------------------------------------------- study
#: PipelineConfig fields a study sets per replicate (or refuses), so `sime study` has no flag for them
_STUDY_SETS = ("name", "parallel", "seeds", "rounds", "curate", "track")


def cmd_study(args: argparse.Namespace) -> int:
    """Run, resume or extend a replicated study and print its report (or only rebuild the report)."""
    from .pipeline.study import StudyConfig, run_study

    base = pipeline_config_from_args(args)
    study = StudyConfig(**{"name": base.name, **flag_values(args, StudyConfig)}).validate()
    out = Path(args.out) if args.out else Path("sime_runs") / study.name
    if args.print_config:
        print(json.dumps({"study": dataclasses.asdict(study), "replicate": base.to_dict()}, indent=2, sort_keys=True))
        return 0
    if args.report_only:
        from sime_data import open_store

        from .pipeline.study_report import build_study_report, write_study_report

        report = build_study_report(open_store(args.store), base.task, study.name, study.share_round0, out)
        files = write_study_report(report, out)
        print(report.markdown())
        print("written: " + ", ".join(str(p) for p in files.values()))
        return 0 if not report.replicates.empty else 1
    report = run_study(args.store, base, study, out, ray_address=args.ray, progress=not args.no_progress)
    print(f"report: {out / 'report.md'}, {out / 'summary.csv'}, {out / 'replicates.csv'}, {out / 'forest.png'}")
    return 0 if not report.replicates.empty else 1


def _add_study(sub: argparse._SubParsersAction) -> None:
    from .pipeline.study import StudyConfig

    p = sub.add_parser("study", help="replicated SIME study: N independent runs of a round, the run as the unit",
                       description="Run N replicates of one SIME round (each with its own seed, collection and "
                                   "held-out evaluation states; round 0 shared by default) and report the "
                                   "difference of round 1 and round 0 (and SIME and baseline) with the replicate as "
                                   "the unit: per-replicate intervals clustered by state, the mean over replicates "
                                   "with a run-level 95% interval, a forest plot. Resumable; a larger --replicates "
                                   "extends a study.")
    _add_pipeline_flags(p, default_preset="quick-study", skip=_STUDY_SETS)
    add_flags(p, StudyConfig)
    p.add_argument("--report-only", action="store_true", help="rebuild the study's report from the store; run nothing")
    p.set_defaults(func=cmd_study)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_train, _add_rollout, _add_demos, _add_run,
                                                                   _add_study, _add_report]


# ---------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    """The `sime` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="sime", description="SIME policy toolkit: train, roll out, improve.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    for command in sub.choices.values():  # `sime run ... -v` as well as `sime -v run ...`
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                             help="log progress messages")
    accept_store_anywhere(parser)
    return parser


class _TqdmHandler(logging.Handler):
    """Log records written with tqdm.write, so they appear above a running progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


_handler: logging.Handler | None = None


def _setup_logging(verbose: bool) -> None:
    """One stderr handler (INFO with --verbose, else WARNING); repeated calls replace it."""
    global _handler
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = _TqdmHandler()
    _handler.setLevel(logging.INFO if verbose else logging.WARNING)
    _handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(_handler)
    logging.getLogger("sime_policy").setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `sime`; input errors print 'error: ...' and return 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    resolve_store(parser, args)
    _setup_logging(args.verbose)
    from sime_data.errors import StoreError

    from .policy.diffusion import PolicyInputError
    from .training.checkpoint import CheckpointError

    try:
        return args.func(args)
    except (StoreError, PolicyInputError, CheckpointError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FloatingPointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
