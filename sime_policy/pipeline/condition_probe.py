"""How low-dim observations should enter the condition: round 0 of a run under each condition, measured side by side.

    python -m sime_policy.pipeline.condition_probe --store dev_store --out dev_runs --preset quick \\
        --variants minmax floor raw

Each variant is round 0 of the preset (train on the core demos, check the fit, score on the evaluation states,
collect without and with SIME exploration) under its own run name ``<preset>-cond-<variant>``, with the
policy's `obs_condition` / `obs_range_floor` set as the variant says:

- ``minmax``: min-max normalised over the demos (near-constant dimensions get huge scales);
- ``floor``: min-max with each dimension's range widened to at least ``--floor`` raw units;
- ``raw``: the unnormalised observation vector, as the SIME reference feeds it.

The table gives, per variant: the fit, the score without exploration, the explored rollouts' success, the states
they make mixed, and their chatter (gripper flips per episode, commanded position change in mm per step), for
the explored successes too (what selection keeps). Run it on the development states only (the preset's own
seeds): the decision it informs must not look at the confirmatory evaluation set. Resumable (every step is a
pipeline step).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from .config import PipelineConfig, get_pipeline_preset

if TYPE_CHECKING:  # pragma: no cover
    from sime_data import Store

VARIANTS = ("minmax", "floor", "raw")
DEFAULT_FLOOR = 0.1
#: end-effector position target of an absolute-pose action (first 3 of the 10 per arm), in metres
POSITION = slice(0, 3)


def variant_config(base: PipelineConfig, variant: str, floor: float = DEFAULT_FLOOR) -> PipelineConfig:
    """The base run with its policy's observation condition set as `variant` says, under its own run name."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown condition variant {variant!r}; choose from {VARIANTS}")
    condition = {"minmax": {"obs_condition": "minmax", "obs_range_floor": 0.0},
                 "floor": {"obs_condition": "minmax", "obs_range_floor": float(floor)},
                 "raw": {"obs_condition": "raw", "obs_range_floor": 0.0}}[variant]
    return replace(base, name=f"{base.name}-cond-{variant}", rounds=1,
                   policy_overrides={**base.policy_overrides, **condition})


@dataclass(frozen=True)
class Chatter:
    """How much a set of rollouts chatters: gripper sign flips per episode and commanded position change per step."""

    episodes: int
    gripper_flips: float
    position_mm_per_step: float
    steps: float

    @classmethod
    def of(cls, store: "Store", episode_ids: Sequence[str]) -> "Chatter":
        """Measured over the actions of the given episodes (nan figures for none)."""
        from ..collect.smoothing import gripper_flips

        flips, jumps, lengths = [], [], []
        for episode_id in episode_ids:
            actions = np.asarray(store.read_episode(episode_id, keys=["actions"])["actions"], dtype=np.float64)
            flips.append(gripper_flips(actions))
            lengths.append(len(actions))
            if len(actions) > 1:
                jumps.append(float(np.linalg.norm(np.diff(actions[:, POSITION], axis=0), axis=1).mean() * 1000.0))
        mean = (lambda xs: float(np.mean(xs)) if xs else float("nan"))
        return cls(len(episode_ids), mean(flips), mean(jumps), mean(lengths))


def measure_variant(store: "Store", config: PipelineConfig, out: Path) -> dict[str, Any]:
    """One row of the probe's table for a variant whose round 0 is done."""
    from ..training.fit_report import read_fit_report
    from .names import Chain

    chain = Chain(config.task, config.name, config.seeds[0], "sime")
    columns = ["episode_id", "init_state_id", "trial", "success"]
    evaluation = store.episodes(version=chain.eval_version(0), columns=columns)
    explored = store.episodes(version=chain.explore_version(0), columns=columns)
    collected = store.episodes(version=chain.collect_version(0), columns=columns)
    fit = read_fit_report(chain.checkpoint_dir(out, 0))

    def mixed(rows: pd.DataFrame) -> int:
        per_state = rows.groupby("init_state_id")["success"].agg(lambda s: s.fillna(False).astype(bool).mean())
        return int(((per_state > 0) & (per_state < 1)).sum())

    wins = explored[explored["success"].fillna(False).astype(bool)]
    everything, kept = Chatter.of(store, list(explored["episode_id"])), Chatter.of(store, list(wins["episode_id"]))
    overrides = config.policy_overrides
    return {
        "variant": config.name.rsplit("-cond-", 1)[-1], "obs_condition": overrides.get("obs_condition"),
        "obs_range_floor": overrides.get("obs_range_floor"),
        "fit_position_mm": fit.position_error_mm if fit else float("nan"),
        "fit_jitter_mm": fit.jitter_mm if fit else float("nan"),
        "eval_success": float(evaluation["success"].fillna(False).astype(bool).mean()), "eval_n": len(evaluation),
        "collect_success": float(collected["success"].fillna(False).astype(bool).mean()),
        "collect_mixed_states": mixed(collected),
        "explore_success": float(explored["success"].fillna(False).astype(bool).mean()), "explore_n": len(explored),
        "explore_mixed_states": mixed(explored), "states": int(explored["init_state_id"].nunique()),
        "explore_flips": everything.gripper_flips, "explore_mm_per_step": everything.position_mm_per_step,
        "explore_steps": everything.steps,
        "success_flips": kept.gripper_flips, "success_mm_per_step": kept.position_mm_per_step,
        "success_steps": kept.steps,
    }


def run_probe(store_location: str, base: PipelineConfig, out: Path, variants: Sequence[str],
              floor: float = DEFAULT_FLOOR, parallel: int = 1, progress: bool = True) -> pd.DataFrame:
    """Round 0 of every variant (resuming what is done), then the table of their measurements."""
    from sime_data import open_store

    from .executors import make_executor
    from .runner import round_jobs, run_round
    from .steps import ensure_demos, initial_states

    configs = [variant_config(base, v, floor).validate() for v in variants]
    store = open_store(store_location, create=True)
    ensure_demos(store, base, progress=progress)
    states = initial_states(base)
    jobs = [job for config in configs
            for job in round_jobs(replace(config, parallel=1, workers=max(1, base.workers // max(1, parallel))),
                                  store.location, out / config.name, 0, states, progress)]
    executor = make_executor(None, parallel=max(1, min(parallel, len(jobs))))
    try:
        executor.map(run_round, jobs)
    finally:
        executor.close()
    return pd.DataFrame([measure_variant(store, config, out / config.name) for config in configs])


def markdown_table(table: pd.DataFrame) -> str:
    """The probe's table as markdown."""
    lines = ["| variant | fit mm (pos / jitter) | score | collect: success, mixed states | explore: success, mixed "
             "states | explored flips / mm per step / steps | explored successes: flips / mm per step / steps |",
             "|---|---|---|---|---|---|---|"]
    for row in table.itertuples():
        floor = f" {row.obs_range_floor:g}" if row.variant == "floor" else ""
        lines.append(f"| {row.variant}{floor} | {row.fit_position_mm:.1f} / {row.fit_jitter_mm:.1f} | "
                     f"{row.eval_success:.3f} (n = {row.eval_n}) | {row.collect_success:.3f}, "
                     f"{row.collect_mixed_states}/{row.states} | {row.explore_success:.3f}, "
                     f"{row.explore_mixed_states}/{row.states} | {row.explore_flips:.1f} / "
                     f"{row.explore_mm_per_step:.1f} / {row.explore_steps:.0f} | {row.success_flips:.1f} / "
                     f"{row.success_mm_per_step:.1f} / {row.success_steps:.0f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run (or resume) the probe and print and write its table."""
    parser = argparse.ArgumentParser(prog="python -m sime_policy.pipeline.condition_probe",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--store", default="sime_store")
    parser.add_argument("--out", default="sime_runs/condition_probe")
    parser.add_argument("--preset", default="quick", help="the pipeline preset whose round 0 is probed")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--floor", type=float, default=DEFAULT_FLOOR, help="range floor of the 'floor' variant "
                                                                            "(raw units)")
    parser.add_argument("--parallel", type=int, default=2, help="variants trained at once")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    table = run_probe(args.store, get_pipeline_preset(args.preset), out, args.variants, args.floor, args.parallel,
                      progress=not args.no_progress)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "condition_probe.csv", index=False)
    text = markdown_table(table)
    (out / "condition_probe.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
