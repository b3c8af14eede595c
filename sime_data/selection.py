"""Inter-demo selection: keep successful rollouts of initial states where the policy is still weak."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import EmptyVersionError, InvalidManifestError

if TYPE_CHECKING:  # pragma: no cover
    from .store import Store
    from .versions import Version

RULES = ("sr_lss", "success", "random")
THRESHOLD_RANGE = (0.0, 1.01)
DEFAULT_PREVIEW_THRESHOLDS = (0.3, 0.5, 0.9)
PER_STATE_COLUMNS = ["init_state_id", "trials", "successes", "success_rate"]
_EPISODE_COLUMNS = ["episode_id", "init_state_id", "trial", "success", "length"]


@dataclass(frozen=True)
class Selection:
    """Episodes kept by a selection rule, with the per-initial-state table it was decided on."""

    rule: str
    threshold: float | None
    source: str
    episode_ids: list[str]
    n_frames: int
    per_state: pd.DataFrame = field(repr=False)
    seed: int | None = None

    @property
    def n_episodes(self) -> int:
        """Number of episodes kept."""
        return len(self.episode_ids)

    @property
    def n_states_kept(self) -> int:
        """Number of initial states that contribute at least one episode."""
        return int((self.per_state["kept"] > 0).sum())

    @property
    def label(self) -> str:
        """The reference's name for the rule: 'sr_lss_0.5', 'success' or 'random_<n>'."""
        if self.rule == "sr_lss":
            return f"sr_lss_{self.threshold:g}"
        if self.rule == "random":
            return f"random_{self.n_episodes}"
        return "success"

    def as_rule(self) -> dict[str, Any]:
        """JSON-ready record of the rule, its inputs and its counts (stored with the version)."""
        return {"kind": "selection", "rule": self.rule, "threshold": self.threshold, "source": self.source,
                "seed": self.seed, "n_episodes": self.n_episodes, "n_frames": self.n_frames,
                "n_states": int(len(self.per_state)), "n_states_kept": self.n_states_kept}

    def describe(self) -> str:
        """One line: rule, counts and source."""
        return (f"{self.label} of {self.source}: {self.n_episodes} episodes ({self.n_frames} frames) "
                f"from {self.n_states_kept}/{len(self.per_state)} initial states")


def check_threshold(threshold: float) -> float:
    """The threshold as a float, or ValueError when it lies outside [0, 1.01]."""
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a number in [0, 1.01], got {threshold!r}") from None
    low, high = THRESHOLD_RANGE
    if not (low <= value <= high) or np.isnan(value):
        raise ValueError(f"threshold must lie in [{low}, {high}] (success rate < threshold keeps a state; "
                         f"1.01 keeps every state), got {threshold!r}")
    return value


def check_rule(rule: str) -> str:
    """The rule name, or ValueError naming the known rules."""
    if rule not in RULES:
        raise ValueError(f"unknown selection rule {rule!r}; choose one of {list(RULES)}")
    return rule


def per_state_table(episodes: pd.DataFrame, state_order: Sequence[str] | None = None) -> pd.DataFrame:
    """Trials, successes and success rate per init_state_id of episode rows (missing success = failure).

    Rows follow `state_order` when given (absent states get 0 trials and a NaN rate), else order of
    first appearance.
    """
    if len(episodes):
        ids = episodes["init_state_id"].astype(str).to_numpy()
        success = episodes["success"].fillna(False).astype(bool).to_numpy()
    else:
        ids, success = np.array([], dtype=str), np.array([], dtype=bool)
    frame = pd.DataFrame({"init_state_id": ids, "success": success})
    grouped = frame.groupby("init_state_id", sort=False)["success"].agg(trials="size", successes="sum")
    order = list(state_order) if state_order is not None else list(dict.fromkeys(frame["init_state_id"]))
    grouped = grouped.reindex(order, fill_value=0)
    table = pd.DataFrame({"init_state_id": grouped.index.astype(str),
                          "trials": grouped["trials"].astype(int).to_numpy(),
                          "successes": grouped["successes"].astype(int).to_numpy()})
    table["success_rate"] = (table["successes"] / table["trials"].where(table["trials"] > 0)).astype(float)
    return table[PER_STATE_COLUMNS].reset_index(drop=True)


def rollout_rows(store: "Store", version: str) -> pd.DataFrame:
    """Episode rows of a rollout version (id, init state, trial, success, kept length), in manifest order."""
    ver = store.version(version)
    ranges = ver.manifest.assign(kept=lambda m: m["frame_stop"] - m["frame_start"])
    kept = ranges.groupby("episode_id", sort=False)["kept"].sum()
    rows = store.episodes(version=version, columns=_EPISODE_COLUMNS)
    missing = rows["init_state_id"].isna()
    if missing.any():
        raise InvalidManifestError(
            f"version {version!r} has {int(missing.sum())} episode(s) without an init_state_id (e.g. "
            f"{rows.loc[missing, 'episode_id'].iloc[0]}); selection groups rollouts by initial state, "
            "so pick a rollout version")
    rows = rows.set_index("episode_id").loc[kept.index].reset_index()
    rows["frames"] = kept.to_numpy().astype(np.int64)
    return rows


def per_state_success(store: "Store", version: str) -> pd.DataFrame:
    """Trials, successes and success rate per initial state of a rollout version."""
    return per_state_table(rollout_rows(store, version))


def _select_rows(rows: pd.DataFrame, rule: str, threshold: float | None, seed: int | None) -> tuple[pd.Series, pd.DataFrame]:
    table = per_state_table(rows)
    success = rows["success"].fillna(False).astype(bool)
    if rule == "success":
        keep = success
    else:
        weak = set(table.loc[table["success_rate"] < threshold, "init_state_id"])
        keep = success & rows["init_state_id"].astype(str).isin(weak)
        if rule == "random":
            # same number of episodes as sr_lss at this threshold, drawn from all successful ones
            pool = np.flatnonzero(success.to_numpy())
            rng = np.random.default_rng(seed)
            picked = rng.choice(pool, size=int(keep.sum()), replace=False) if len(pool) else pool
            keep = pd.Series(False, index=rows.index)
            keep.iloc[np.sort(picked)] = True
    kept_per_state = rows.loc[keep].groupby(rows["init_state_id"].astype(str), sort=False).size()
    table["kept"] = table["init_state_id"].map(kept_per_state).fillna(0).astype(int)
    return keep, table


def select(store: "Store", version: str, rule: str = "sr_lss", threshold: float | None = 0.5,
           seed: int | None = 0) -> Selection:
    """Apply a selection rule to a rollout version (nothing is written).

    `sr_lss`: successful episodes of the initial states whose success rate is below `threshold`;
    `success`: every successful episode; `random`: as many successful episodes as `sr_lss` keeps at
    `threshold`, drawn at random (seeded) from all successful ones.
    """
    check_rule(rule)
    threshold = None if rule == "success" else check_threshold(0.5 if threshold is None else threshold)
    rows = rollout_rows(store, version)
    keep, table = _select_rows(rows, rule, threshold, seed)
    kept = rows.loc[keep]
    return Selection(rule=rule, threshold=threshold, source=version, episode_ids=kept["episode_id"].astype(str).tolist(),
                     n_frames=int(kept["frames"].sum()), per_state=table,
                     seed=seed if rule == "random" else None)


def preview_thresholds(store: "Store", version: str, thresholds: Iterable[float] = DEFAULT_PREVIEW_THRESHOLDS,
                       include_success: bool = True) -> pd.DataFrame:
    """What each threshold (and `success`) would keep: one row per rule with states, episodes and frames."""
    rows = rollout_rows(store, version)
    records = []
    choices: list[tuple[str, float | None]] = [("sr_lss", check_threshold(t)) for t in thresholds]
    if include_success:
        choices.append(("success", None))
    for rule, threshold in choices:
        keep, table = _select_rows(rows, rule, threshold, None)
        records.append({
            "rule": f"sr_lss_{threshold:g}" if rule == "sr_lss" else rule,
            "threshold": threshold,
            "states_kept": int((table["kept"] > 0).sum()),
            "states": int(len(table)),
            "episodes": int(keep.sum()),
            "frames": int(rows.loc[keep, "frames"].sum()),
        })
    return pd.DataFrame.from_records(records)


def create_selection_version(store: "Store", name: str, source: str, rule: str = "sr_lss",
                             threshold: float | None = 0.5, *, base: str | None = None, seed: int | None = 0,
                             message: str = "", extra_rule: Mapping[str, Any] | None = None,
                             replacements: Mapping[str, str | None] | None = None) -> "Version":
    """Save a selection of a rollout version as a new version, optionally on top of a base version.

    `replacements` maps selected episode ids to the episodes that stand in for them (e.g. curated copies;
    None drops one); every selected id must be in it.

    With `base` the new version is base's frame ranges + the selected episodes (no data copied), the
    reference's "previous training data + new selection". The rule, threshold, source, base and counts
    are recorded in the version's rule and message (with `extra_rule`'s fields added).
    """
    selection = select(store, source, rule, threshold, seed)
    rule_record = {**selection.as_rule(), **dict(extra_rule or {})}
    if replacements is not None:
        missing = [e for e in selection.episode_ids if e not in replacements]
        if missing:
            raise ValueError(f"replacements lack {len(missing)} selected episode(s), e.g. {missing[0]!r}")
        rule_record["replaced"] = {e: replacements[e] for e in selection.episode_ids}
        chosen = [replacements[e] for e in selection.episode_ids if replacements[e] is not None]
        note = f"; replaced by {len(chosen)} curated copies ({selection.n_episodes - len(chosen)} dropped)"
    else:
        chosen, note = list(selection.episode_ids), ""
    parents = [source]
    if base is not None:
        base_manifest = store.version(base).manifest[["episode_id", "frame_start", "frame_stop"]]
        in_base = set(base_manifest["episode_id"])
        added = [e for e in chosen if e not in in_base]
        new_rows = pd.DataFrame({"episode_id": added, "frame_start": pd.NA, "frame_stop": pd.NA})
        manifest = pd.concat([base_manifest, new_rows], ignore_index=True) if added else base_manifest
        rule_record.update(base=base, n_added=len(added))
        parents = [base, source]
    elif not chosen:
        raise EmptyVersionError(
            f"{selection.label} of {source!r} keeps no episode (no successful rollout of a state with success rate "
            f"< {threshold}); raise the threshold, collect more rollouts, or pass a base version")
    else:
        manifest = pd.DataFrame({"episode_id": chosen, "frame_start": pd.NA, "frame_stop": pd.NA})
    text = message or selection.describe() + note + (f"; added to {base}" if base is not None else "")
    return store.create_version(name, manifest, parents=parents, message=text, rule=rule_record)
