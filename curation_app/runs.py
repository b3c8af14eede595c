"""Which rollouts of a `sime run` are which: eval, collect or explore, per round and branch.

Round 0 is shared by both branches and holds three rollout versions (README, "The SIME pipeline"):
`eval` (held-out evaluation states, no exploration: the score in the results table), `collect`
(collection states, no exploration: the baseline branch's data) and `explore` (collection states with
SIME exploration: the SIME branch's data). Episode rows do not say which of them they belong to; their
rollout version does, through its rule's `pipeline_kind` or its name,
`<task>/sime/<run>/seed<S>/[<branch>/]round<R>/<eval|collect|explore>`. The name pattern is the one of
`sime_policy/pipeline/names.py` (`ROLLOUT_NAME_RE`), repeated here because importing sime_policy imports torch.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Mapping

import pandas as pd

from sime_data.versions import rule_dict

ROLLOUT_NAME_RE = re.compile(
    r"^(?P<task>[^/]+)/sime/(?P<run>[^/]+)/seed(?P<seed>\d+)/(?:(?P<branch>[^/]+)/)?round(?P<round>\d+)/"
    r"(?P<kind>eval|collect|explore)$")
KINDS = ("eval", "collect", "explore")
#: What each kind is, for captions.
KIND_HELP = {
    "eval": "held-out evaluation states, no exploration: the score in the results table",
    "collect": "collection states, no exploration: the baseline branch's data",
    "explore": "collection states with SIME exploration: the SIME branch's data",
}


def rollout_kind(name: str, rule: Any = None) -> tuple[str, str | None] | None:
    """(kind, branch or None for round 0) of a run's rollout version, from its rule or its name; else None."""
    parsed = rule_dict(rule)
    match = ROLLOUT_NAME_RE.match(str(name))
    kind = parsed.get("pipeline_kind") if parsed.get("pipeline_kind") in KINDS else (match["kind"] if match else None)
    if kind is None:
        return None
    branch = parsed.get("branch") if parsed.get("branch") else (match["branch"] if match else None)
    return kind, (str(branch) if branch else None)


def group_label(kind: str, branch: str | None) -> str:
    """'eval' for round 0 (shared by both branches), 'sime eval' / 'baseline collect' ... later."""
    return kind if not branch else f"{branch} {kind}"


def episode_groups(versions: pd.DataFrame, ranges_of: Callable[[str], Mapping[str, Any]]) -> dict[str, str]:
    """{episode_id: 'eval' | 'sime explore' | ...} for episodes of a run's rollout versions."""
    out: dict[str, str] = {}
    if versions is None or versions.empty:
        return out
    for name, rule in zip(versions["name"], versions["rule"]):
        found = rollout_kind(name, rule)
        if found is None:
            continue
        label = group_label(*found)
        for episode_id in ranges_of(name):
            out.setdefault(episode_id, label)
    return out


def reused_rollouts(versions: pd.DataFrame,
                    ranges_of: Callable[[str], Mapping[str, Any]]) -> list[tuple[int, str, list[str]]]:
    """(round, group label, episode ids) of rollout versions that reuse an earlier round's rollouts.

    A round whose training data did not change reuses the previous round's policy and rollouts (`sime run`'s
    carry-over): its version holds the earlier episodes, which record the earlier round.
    """
    out: list[tuple[int, str, list[str]]] = []
    if versions is None or versions.empty:
        return out
    for name, rule in zip(versions["name"], versions["rule"]):
        match, found = ROLLOUT_NAME_RE.match(str(name)), rollout_kind(name, rule)
        if match is None or found is None or not rule_dict(rule).get("carried_over_from"):
            continue
        out.append((int(match["round"]), group_label(*found), list(ranges_of(name))))
    return out


def rates_by_group(episodes: pd.DataFrame, groups: Mapping[str, str],
                   reused: Iterable[tuple[int, str, list[str]]] = ()) -> pd.DataFrame:
    """Success rate and count per (round, group) of episodes that have a round.

    The group is the run kind (eval / collect / explore, prefixed by the branch after round 0) when the
    episode belongs to a run's rollout version, else its branch, else its source when that is not 'rollout'
    (e.g. 'curated': smoothed replays), else 'unlabelled'. Each `reused` entry (`reused_rollouts`) counts
    its earlier episodes again under its own round and group, marked ``reused``.
    """
    frame = episodes[episodes["round"].notna()]
    if frame.empty:
        return pd.DataFrame(columns=["round", "group", "episodes", "success_rate", "reused"])
    sources = frame["source"] if "source" in frame else pd.Series([None] * len(frame), index=frame.index)
    labels = [groups.get(e) or (b if isinstance(b, str) and b else None)
              or (s if isinstance(s, str) and s and s != "rollout" else "unlabelled")
              for e, b, s in zip(frame["episode_id"], frame["branch"], sources)]
    frame = frame.assign(round=frame["round"].astype("Int64").astype(str), group=labels,
                         ok=frame["success"].astype("Float64"), reused=False)
    copies = [frame[frame["episode_id"].isin(set(ids))].assign(round=str(round_), group=label, reused=True)
              for round_, label, ids in reused]
    frame = pd.concat([frame, *[c for c in copies if not c.empty]], ignore_index=True)
    out = frame.groupby(["round", "group"], sort=True).agg(
        episodes=("episode_id", "size"), success_rate=("ok", "mean"), reused=("reused", "any")).reset_index()
    order = {g: i for i, g in enumerate(_group_order(out["group"]))}
    return out.sort_values(["round", "group"], key=lambda s: s.map(order) if s.name == "group" else s.astype(int),
                           kind="stable").reset_index(drop=True)


def _group_order(groups: Iterable[str]) -> list[str]:
    """eval first, then collect, explore, then anything else (alphabetical within)."""
    def rank(g: str) -> tuple[int, str]:
        kind = g.rsplit(" ", 1)[-1]
        return (KINDS.index(kind) if kind in KINDS else len(KINDS), g)
    return sorted(set(groups), key=rank)
