"""How much a round's score depends on its training seed: retrain one branch's round on the very same training
version with other training seeds and score each on the run's own held-out (state, trial, seed) pairs.

    python -m sime_policy.pipeline.seed_variance --store sime_store --preset quick --seeds 2333 23333

Each retraining goes to `<out>/seed_variance/<branch>/round<R>/train_seed<N>/` (resumable: a finished one is
reused) and its evaluation to the version `<task>/sime/<run>/seed<S>/<branch>/round<R>/train_seed<N>/eval`.
The table compares each with the run's round 0 on the same pairs (t interval clustered by initial state), next to
the run's own result.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .replicate_stats import Difference, paired_difference

from .config import PipelineConfig, get_pipeline_preset
from .names import Chain
from .report import evaluation_outcomes


def retrain_and_score(store: object, config: PipelineConfig, chain: Chain, round_: int, train_seed: int, out: Path,
                      progress: bool = True) -> str:
    """Train the chain's round-r version with `train_seed` (resuming or reusing a run) and evaluate it: the eval version."""
    from ..collect.rollouts import collect_rollouts
    from ..training.trainer import train
    from .steps import initial_states, training_version

    run_dir = out / "seed_variance" / chain.branch / f"round{round_}" / f"train_seed{train_seed}"
    final = run_dir / "final.ckpt"
    if not final.is_file():
        resume = run_dir if (run_dir / "latest.ckpt").is_file() else None
        train(store, training_version(store, config, chain, round_), config.experiment(train_seed), run_dir,
              resume=resume, progress=progress, device=config.resolved_device)
    name = f"{chain.train_version(round_, config.base_version)}/train_seed{train_seed}/eval"
    if not store.has_version(name):
        states = initial_states(config)
        collect_rollouts(store, str(final), task=config.task, init_states=list(states.evaluation),
                         trials=config.evaluation_trials, seed=chain.seed, workers=config.workers, round=round_,
                         branch=chain.branch, version=name, max_steps=config.evaluation_max_steps, progress=progress,
                         envs=config.envs, lanes=config.lanes, device=config.resolved_device,
                         extra_rule={"pipeline_kind": "seed_variance", "train_seed": train_seed})
    return name


@dataclass(frozen=True)
class SeedResult:
    """One training seed's score on the run's held-out pairs, paired against round 0."""

    train_seed: int
    is_runs_own: bool
    eval_version: str
    success_rate: float
    n: int
    vs_round0: Difference


def compare_training_seeds(store: object, config: PipelineConfig, out: Path, seeds: Sequence[int],
                           branch: str = "sime", round_: int = 1, progress: bool = True) -> list[SeedResult]:
    """The run's own round-r result for its first seed, then one retraining per training seed in `seeds`."""
    chain = Chain(config.task, config.name, config.seeds[0], branch)
    round0 = evaluation_outcomes(store, chain.eval_version(0), chain.seed)
    versions = [(config.seeds[0], True, chain.eval_version(round_))]
    versions += [(seed, False, retrain_and_score(store, config, chain, round_, seed, out, progress)) for seed in seeds]
    results = []
    for seed, own, version in versions:
        outcomes = evaluation_outcomes(store, version, chain.seed)
        results.append(SeedResult(seed, own, version, sum(outcomes.values()) / max(1, len(outcomes)), len(outcomes),
                                  paired_difference(round0, outcomes)))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Retrain a finished run's round with other training seeds and print the paired comparison per seed."""
    import sime_data

    parser = argparse.ArgumentParser(prog="python -m sime_policy.pipeline.seed_variance",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--store", default="sime_store")
    parser.add_argument("--preset", default="quick", help="the run's pipeline preset (its settings and name)")
    parser.add_argument("--out", help="the run's output directory (default sime_runs/<preset>)")
    parser.add_argument("--branch", default="sime", choices=["sime", "baseline"])
    parser.add_argument("--round", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", required=True, help="training seeds to retrain with")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    config = get_pipeline_preset(args.preset)
    out = Path(args.out or Path("sime_runs") / config.name)
    results = compare_training_seeds(sime_data.open_store(args.store), config, out, args.seeds, args.branch,
                                     args.round, progress=not args.no_progress)
    print(f"{config.name} {args.branch} round {args.round}: the same training version, other training seeds, "
          "scored on the run's held-out pairs")
    for r in results:
        label = f"{r.train_seed}{' (the run)' if r.is_runs_own else ''}"
        print(f"  training seed {label:>12}: {r.success_rate:.3f} (n = {r.n}), vs round 0 {r.vs_round0.describe()}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
