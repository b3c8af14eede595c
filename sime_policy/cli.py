"""`sime`: train policies (and, later, roll them out and run the SIME pipeline) from the command line.

Each subcommand is one ``_add_<name>(subparsers)`` function registering its arguments and handler;
add new ones to ``SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from .config import ExperimentConfig

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
    from .config import ExperimentConfig, get_preset

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


# ---------------------------------------------------------------------- train
def cmd_train(args: argparse.Namespace) -> int:
    """Train a diffusion policy on a store version."""
    from .trainer import DistContext, train

    if args.config is None:
        if args.resume is None:
            raise ValueError("train needs --config PRESET_OR_FILE (or --resume CKPT to reuse a checkpoint's config)")
        from .checkpoint import checkpoint_info
        from .config import ExperimentConfig

        saved = ExperimentConfig.from_dict(checkpoint_info(args.resume)["config"])
        config = saved.with_overrides(seed=args.seed, steps=args.steps, **_overrides(args.set or []))
    else:
        config = load_config(args.config, seed=args.seed, steps=args.steps, overrides=args.set or [])
    if args.batch_size is not None:
        config = config.with_overrides(batch_size=args.batch_size)
    if args.out is not None:
        out = Path(args.out)
    elif args.resume is not None:
        resume = Path(args.resume)
        out = resume if resume.is_dir() else resume.parent
    else:
        out = Path("runs") / f"{config.name}-{args.version}-seed{config.train.seed}"
    if args.print_config:
        print(config.to_json())
    result = train(args.store, args.version, config, out, resume=args.resume, progress=not args.no_progress,
                   device=args.device, stop_after=args.stop_after)
    if DistContext.from_env().is_main:
        val = result.final_val_loss
        print(f"trained {result.step} steps: train loss {result.final_train_loss:.5f}"
              + (f", validation loss {val:.5f}" if val is not None else "")
              + f"; checkpoint {result.checkpoint_id} in {result.out_dir}")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a diffusion policy on a store version",
                       description="Train a diffusion policy on a store version (runs under torchrun for DDP).")
    p.add_argument("--store", required=True, help="store location")
    p.add_argument("--version", required=True, help="version name to train on")
    p.add_argument("--config", default=None,
                   help="preset name (e.g. lift_lowdim, lift_lowdim_cpu) or a JSON file; with --resume, default: the "
                        "checkpoint's config")
    p.add_argument("--seed", type=int, default=None, help="training seed (default: the config's)")
    p.add_argument("--steps", type=int, default=None, help="total optimisation steps (default: the config's)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size per process")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="override a policy/train config field, e.g. --set lr=3e-4 --set down_dims=[64,128]")
    p.add_argument("--out", default=None, help="run directory (default: runs/<config>-<version>-seed<seed>, or the "
                                              "resumed checkpoint's directory)")
    p.add_argument("--resume", default=None, help="checkpoint file or run directory to continue from")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available, else cpu)")
    p.add_argument("--stop-after", type=int, default=None, help="stop after this many steps (resumable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON first")
    p.set_defaults(func=cmd_train)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_train]


# ---------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    """The `sime` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="sime", description="SIME policy toolkit: train, roll out, improve.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
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
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    from sime_data.errors import StoreError

    from .checkpoint import CheckpointError
    from .policy import PolicyInputError

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
