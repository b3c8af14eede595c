"""A round whose training data did not change reuses the previous round's policy and rollouts.

Training and rollouts are deterministic: the same episodes (in the same order), the same settings and the same
training seed give the same weights, and the same checkpoint with the same (state, trial, seed) gives the same
episodes. So when a branch keeps nothing new (e.g. the baseline, whose rollouts of a state all succeed or all
fail, so `sr_lss` finds nothing), retraining and rolling out again would reproduce the previous round bit for bit.
Instead the round's checkpoint directory links the previous one and its rollout versions are new versions over
the previous round's episodes, each recording where it came from.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from .config import PipelineConfig
from .names import CARRIED_OVER_MARKER, Chain
from .steps import StepOutcome, say, training_version

if TYPE_CHECKING:  # pragma: no cover
    from sime_data import Store

_LINKED_FILES = ("final.ckpt", "fit.json")


def unchanged_since_previous_round(store: "Store", config: PipelineConfig, chain: Chain, round_: int) -> str | None:
    """The previous round's training version when round r would train from scratch on exactly its data, else None."""
    if round_ < 1 or config.init_from != "scratch":
        return None
    if config.curate and not store.has_version(chain.curated_version(round_)):
        return None  # a person has yet to trim this round's data
    current = training_version(store, config, chain, round_)
    if not store.has_version(current):
        return None
    previous = training_version(store, config, chain, round_ - 1)
    columns = ["episode_id", "frame_start", "frame_stop"]
    now = store.version(current).manifest[columns].reset_index(drop=True)
    before = store.version(previous).manifest[columns].reset_index(drop=True)
    return previous if now.equals(before) else None


def _link_or_copy(source: Path, target: Path) -> None:
    if target.exists():
        return
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(source, target)


def carry_over(store: "Store", config: PipelineConfig, chain: Chain, round_: int, out: Path,
               kinds: list[str]) -> list[StepOutcome]:
    """Give round r the previous round's checkpoint and its rollout versions of `kinds` (missing ones only)."""
    previous_dir, run_dir = chain.checkpoint_dir(out, round_ - 1), chain.checkpoint_dir(out, round_)
    current = training_version(store, config, chain, round_)
    previous = training_version(store, config, chain, round_ - 1)
    if not (previous_dir / "final.ckpt").is_file():
        raise FileNotFoundError(f"round {round_ - 1} of seed {chain.seed} has no {previous_dir / 'final.ckpt'} to "
                                "carry over; rerun with the original --out")
    outcomes: list[StepOutcome] = []
    if not (run_dir / CARRIED_OVER_MARKER).is_file():
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in _LINKED_FILES:
            if (previous_dir / name).is_file():
                _link_or_copy(previous_dir / name, run_dir / name)
        (run_dir / CARRIED_OVER_MARKER).write_text(json.dumps({"from": str(previous_dir), "train_version": current,
                                                  "same_data_as": previous}, indent=2) + "\n")
        outcomes.append(StepOutcome("train", str(run_dir / "final.ckpt"), ran=True))
    for kind in kinds:
        name, source = chain.rollout_version(kind, round_), chain.rollout_version(kind, round_ - 1)
        if store.has_version(name):
            continue
        earlier = store.version(source)
        rule = {**(earlier.rule or {}), "trained_on": current, "carried_over_from": source}
        store.create_version(name, earlier.manifest, parents=[source], rule=rule,
                             message=f"round {round_} trains on the same data as round {round_ - 1} ({previous}), so "
                                     f"its policy and these rollouts are those of {source}")
        outcomes.append(StepOutcome(kind, name, ran=True))
    if outcomes:
        say(chain, round_, f"training data unchanged since round {round_ - 1} ({current} = {previous}): reusing "
                           f"round {round_ - 1}'s policy and rollouts ({', '.join(['checkpoint', *kinds])}) instead "
                           "of reproducing them")
    return outcomes


__all__ = ["carry_over", "unchanged_since_previous_round"]
