"""Where a run keeps each result: version names in the store and checkpoint directories under --out."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


# <task>/sime/<run>/seed<seed>/round0/{eval,collect,explore}
# <task>/sime/<run>/seed<seed>/<branch>/round<r>            training version of round r >= 1
# <task>/sime/<run>/seed<seed>/<branch>/round<r>/{eval,collect,explore}
#   eval:    no exploration, on the held-out evaluation states (the score)
#   collect: no exploration, on the collection states (the baseline branch's data)
#   explore: SIME exploration, on the collection states (the SIME branch's data)
ROLLOUT_NAME_RE = re.compile(
    r"^(?P<task>[^/]+)/sime/(?P<run>[^/]+)/seed(?P<seed>\d+)/(?:(?P<branch>[^/]+)/)?round(?P<round>\d+)/"
    r"(?P<kind>eval|collect|explore)$")


#: written into a round's checkpoint directory when it reuses the previous round's policy (carry_over.py)
CARRIED_OVER_MARKER = "carried_over.json"


@dataclass(frozen=True)
class Chain:
    """One (seed, branch) line of rounds; round 0 is shared by both branches of a seed."""

    task: str
    run: str
    seed: int
    branch: str

    @property
    def prefix(self) -> str:
        """Version-name prefix of everything this seed's run creates."""
        return f"{self.task}/sime/{self.run}/seed{self.seed}"

    def _round_prefix(self, round_: int) -> str:
        return f"{self.prefix}/round0" if round_ == 0 else f"{self.prefix}/{self.branch}/round{round_}"

    def train_version(self, round_: int, base: str) -> str:
        """Training data of round r: the core demos for r = 0, else a version this run creates."""
        return base if round_ == 0 else self._round_prefix(round_)

    def curated_version(self, round_: int) -> str:
        """Where a person saves round r's training data after trimming it (used instead when it exists)."""
        return f"{self._round_prefix(round_)}/curated"

    def eval_version(self, round_: int) -> str:
        """Rollouts without exploration of round r's policy on the evaluation states (its score)."""
        return f"{self._round_prefix(round_)}/eval"

    def collect_version(self, round_: int) -> str:
        """Rollouts without exploration of round r's policy on the collection states (the baseline's data)."""
        return f"{self._round_prefix(round_)}/collect"

    def explore_version(self, round_: int) -> str:
        """Rollouts with SIME exploration of round r's policy (the SIME branch's data)."""
        return f"{self._round_prefix(round_)}/explore"

    def rollout_version(self, kind: str, round_: int) -> str:
        """Round r's rollouts of one kind: 'eval', 'collect' or 'explore'."""
        versions = {"eval": self.eval_version, "collect": self.collect_version, "explore": self.explore_version}
        if kind not in versions:
            raise ValueError(f"unknown rollout kind {kind!r}; one of {tuple(versions)}")
        return versions[kind](round_)

    def data_version(self, round_: int, held_out: bool = True) -> str:
        """The rollouts this branch selects from after round r (without held-out states the eval is the data)."""
        if self.branch == "sime":
            return self.explore_version(round_)
        return self.collect_version(round_) if held_out else self.eval_version(round_)

    def checkpoint_dir(self, out: Path, round_: int) -> Path:
        """Training run directory of round r under the run's output directory."""
        return out / "checkpoints" / f"seed{self.seed}" / ("round0" if round_ == 0 else f"{self.branch}/round{round_}")


def parse_rollout_name(name: str) -> dict[str, str | int | None] | None:
    """Task, run, seed, branch (None for round 0), round and kind of a run's rollout version name."""
    match = ROLLOUT_NAME_RE.match(name)
    if not match:
        return None
    parts: dict[str, str | int | None] = dict(match.groupdict())
    parts["seed"], parts["round"] = int(match["seed"]), int(match["round"])
    return parts
