"""Results of SIME runs rebuilt from the store alone: success rates with paired comparisons, table and plot.

Every evaluation of a run uses the same (seed, initial state, trial) pairs for every round and branch
(the episode seed is derived from them), so rounds and branches are compared pair by pair. The statistics
follow `replicate_stats`: with one seed, the paired difference with a 95% t interval clustered by initial
state (the trials of a state are near-copies); with several seeds, the seed (run) is the unit: the mean of
the seeds' paired differences with a run-level interval (t over seeds, two-way clustered by seed and state),
never one test over every seed's pairs pooled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .config import BRANCHES
from .replicate_stats import format_p, p_clause, paired_difference, replicated_difference, replicated_difference_of
from sime_data.versions import rule_dict

from .names import parse_rollout_name

if TYPE_CHECKING:  # pragma: no cover
    from sime_data import Store

ROW_COLUMNS = ["run", "task", "seed", "round", "branch", "success_rate", "successes", "rollouts", "held_out",
               "eval_version", "train_version", "train_episodes", "train_frames", "fit_position_mm", "fit_jitter_mm",
               "fit_ok", "reused"]
SUMMARY_COLUMNS = ["run", "task", "round", "branch", "success_rate", "stderr", "n", "ci_rate_low", "ci_rate_high",
                   "diff_vs_round0", "ci_low", "ci_high", "p_value", "diff_vs_other", "ci_low_vs_other",
                   "ci_high_vs_other", "p_value_vs_other", "seeds", "success_rate_mean", "success_rate_std",
                   "per_seed", "held_out", "train_episodes", "train_frames", "fit_position_mm", "fit_jitter_mm",
                   "fit_ok", "reused_seeds", "unit", "states", "design_effect", "between_seed_sd"]
Outcomes = dict[tuple[int, str, int], bool]
#: what the last replicated study measured (README, "The replicated study"); quoted under single-run verdicts
LAST_STUDY_ANSWER = ("its last measurement, 11 replicates of the quick round on 2 CPU cores (2026-12-07): SIME round 1 "
                     "minus round 0 = -0.082 [-0.155, -0.009]; README, 'The replicated study'")


@dataclass(frozen=True)
class RunReport:
    """Per-seed results, their summary with paired comparisons, for one or more runs."""

    rows: pd.DataFrame
    summary: pd.DataFrame
    #: run -> (collection states whose trials disagreed, collection states) of round 0 without exploration
    mixed_without_exploration: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def runs(self) -> list[str]:
        """Run names in the report."""
        return list(dict.fromkeys(self.summary["run"]))

    def _row(self, run: str, round_: int, branch: str) -> pd.Series | None:
        hit = self.summary[(self.summary["run"] == run) & (self.summary["round"] == round_)
                           & (self.summary["branch"] == branch)]
        return hit.iloc[0] if len(hit) else None

    def value(self, run: str, round_: int, branch: str) -> float:
        """Success rate (pooled over seeds) of one run, round and branch (nan when absent)."""
        row = self._row(run, round_, branch)
        return float(row["success_rate"]) if row is not None else float("nan")

    def markdown(self) -> str:
        """The summary as markdown tables, one per run, with a line on what the comparisons show."""
        parts = []
        for run in self.runs:
            table = self.summary[self.summary["run"] == run]
            task = table["task"].iloc[0]
            where = "held-out evaluation states" if table["held_out"].all() else \
                "the collection states (not held out: the score includes states whose successes were trained on)"
            parts.append(f"### {task} / {run}\n")
            unit = ("each seed is one run (the unit): rates and differences are means over seeds with 95% t "
                    "intervals over seeds, clustered by seed and initial state" if int(table["seeds"].max()) > 1 else
                    "one run: 95% t intervals clustered by initial state (its trials are near-copies)")
            parts.append(f"Success rate without exploration on {where}; n = evaluation pairs (seed, state, trial); "
                         f"differences are paired on the same pairs; {unit}.\n")
            parts.append("| round | branch | success rate | s.e. | n | vs round 0 [95% CI] | p | vs other branch "
                         "[95% CI] | p | per seed | training episodes / frames | fit (mm pos / jitter) |")
            parts.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
            for _, row in table.iterrows():
                parts.append(f"| {row['round']} | {row['branch']} | {row['success_rate']:.3f} | {row['stderr']:.3f} | "
                             f"{row['n']} | {_diff(row, '')} | {format_p(row['p_value'])} | {_diff(row, '_vs_other')} "
                             f"| {format_p(row['p_value_vs_other'])} | {row['per_seed']} | "
                             f"{row['train_episodes']:g} / {row['train_frames']:g} | {_fit(row)} |")
            parts.append("")
            parts.append(self.verdict(run) + "\n")
        return "\n".join(parts) if parts else "no SIME run results in this store\n"

    def verdict(self, run: str) -> str:
        """What the paired comparisons of the last round say, in words (as measured, whatever the direction)."""
        table = self.summary[self.summary["run"] == run]
        last = int(table["round"].max())
        if last == 0:
            return "Only round 0 has been evaluated."
        seeds = int(table["seeds"].max())
        lines = []
        for branch in BRANCHES:
            row = self._row(run, last, branch)
            if row is None or math.isnan(row["diff_vs_round0"]):
                continue
            direction = "better than" if row["diff_vs_round0"] > 0 else "worse than" if row["diff_vs_round0"] < 0 \
                else "equal to"
            significant = "significant" if row["p_value"] < 0.05 else "not significant"
            reused = (f"; it reuses round {last - 1}'s policy for {row['reused_seeds']} of {row['seeds']} seed(s): "
                      "no new training data" if row["reused_seeds"] else "")
            lines.append(f"round {last} {branch} is {direction} round 0 by {row['diff_vs_round0']:+.3f} "
                         f"[{row['ci_low']:+.3f}, {row['ci_high']:+.3f}] ({p_clause(row['p_value'])}, "
                         f"{significant} at 0.05{reused})")
        sime, baseline = self._row(run, last, "sime"), self._row(run, last, "baseline")
        if sime is not None and not math.isnan(sime["diff_vs_other"]):
            disguise = ""
            if baseline is not None and last == 1 and baseline["reused_seeds"] == baseline["seeds"]:
                disguise = (" - the baseline kept no new data and reuses round 0, so this is round 1 minus round 0 "
                            "again, not a comparison with a control")
            lines.append(f"SIME minus baseline in round {last}: {sime['diff_vs_other']:+.3f} "
                         f"[{sime['ci_low_vs_other']:+.3f}, {sime['ci_high_vs_other']:+.3f}] "
                         f"({p_clause(sime['p_value_vs_other'])}){disguise}")
        mixed = self.mixed_without_exploration.get(run)
        if mixed and mixed[1] and mixed[0] <= 0.1 * mixed[1]:
            lines.append(f"without exploration the round-0 policy is (nearly) deterministic per state: its trials "
                         f"disagreed on {mixed[0]} of {mixed[1]} collection states, so the baseline has almost nothing "
                         "to select; --baseline-exploration action_noise (the reference's sigma 0.05) or ddim_eta "
                         "gives a control whose trials vary")
        text = "; ".join(lines) + "." if lines else ""
        if seeds == 1 and text:
            text += (" One run shows the loop working, not whether the method helps: a round's outcome varies between "
                     "runs (collected data, training seed) by more than this interval. Replicate it with "
                     f"`sime study` ({LAST_STUDY_ANSWER}).")
        return text

    def print(self, console: Any | None = None) -> None:
        """Print the summary as rich tables, with the verdict under each."""
        from rich.console import Console
        from rich.table import Table

        console = console or Console(width=max(Console().width, 140))
        if self.summary.empty:
            console.print("no SIME run results in this store (run `sime run` first)")
            return
        for run in self.runs:
            rows = self.summary[self.summary["run"] == run]
            held = "held-out states" if rows["held_out"].all() else "collection states"
            table = Table(title=f"SIME run {rows['task'].iloc[0]} / {run}: success rate without exploration ({held})")
            for column in ("round", "branch", "success rate", "s.e.", "n", "vs round 0 [95% CI]", "p",
                           "vs other branch [95% CI]", "p ", "per seed", "train ep/frames", "fit pos/jitter mm"):
                table.add_column(column, justify="left" if column in ("branch", "per seed") else "right")
            for _, row in rows.iterrows():
                table.add_row(str(row["round"]), row["branch"], f"{row['success_rate']:.3f}", f"{row['stderr']:.3f}",
                              str(row["n"]), _diff(row, ""), format_p(row["p_value"]), _diff(row, "_vs_other"),
                              format_p(row["p_value_vs_other"]), row["per_seed"],
                              f"{row['train_episodes']:g}/{row['train_frames']:g}", _fit(row))
            console.print(table)
            console.print(self.verdict(run))


def _diff(row: pd.Series, suffix: str) -> str:
    diff = row["diff_vs_round0" if not suffix else "diff_vs_other"]
    if math.isnan(diff):
        return "-"
    return f"{diff:+.3f} [{row['ci_low' + suffix]:+.3f}, {row['ci_high' + suffix]:+.3f}]"


def _fit(row: pd.Series) -> str:
    if math.isnan(row["fit_position_mm"]):
        return "-"
    flag = "" if row["fit_ok"] else " POOR"
    return f"{row['fit_position_mm']:.1f} / {row['fit_jitter_mm']:.1f}{flag}"


# ---------------------------------------------------------------------- gathering
def _eval_versions(store: "Store", task: str | None, run: str | None) -> list[tuple[dict[str, Any], pd.Series]]:
    """(parsed name, version row) of every evaluation version of the selected runs."""
    found = []
    for _, version in store.versions().iterrows():
        parts = parse_rollout_name(version["name"])
        if parts is None or parts["kind"] != "eval":
            continue
        if (task and parts["task"] != task) or (run and parts["run"] != run):
            continue
        found.append((parts, version))
    return found


def evaluation_outcomes(store: "Store", version: str, seed: int) -> Outcomes:
    """Success per (seed, init_state_id, trial) of an evaluation version."""
    rows = store.episodes(version=version, columns=["episode_id", "init_state_id", "trial", "success"])
    return {(int(seed), str(r.init_state_id), int(r.trial)): bool(r.success) if not pd.isna(r.success) else False
            for r in rows.itertuples()}


def gather(store: "Store", task: str | None = None, run: str | None = None) -> tuple[pd.DataFrame,
                                                                                     dict[tuple, Outcomes]]:
    """Per-seed result rows and the per-pair outcomes of each (run, seed, round, branch)."""
    by_name = store.versions().set_index("name")
    records, outcomes = [], {}
    for parts, version in _eval_versions(store, task, run):
        rule = rule_dict(version["rule"])
        trained_on = rule.get("trained_on")
        train = by_name.loc[trained_on] if trained_on in by_name.index else None
        fit = rule.get("fit") or {}
        pairs = evaluation_outcomes(store, version["name"], parts["seed"])
        base = {
            "run": parts["run"], "task": parts["task"], "seed": parts["seed"], "round": parts["round"],
            "success_rate": float(version["success_rate"]), "rollouts": len(pairs),
            "successes": sum(pairs.values()), "held_out": bool(rule.get("held_out", False)),
            "eval_version": version["name"], "train_version": trained_on,
            "train_episodes": int(train["n_episodes"]) if train is not None else -1,
            "train_frames": int(train["n_frames"]) if train is not None else -1,
            "fit_position_mm": _number(fit.get("position_error_mm")), "fit_jitter_mm": _number(fit.get("jitter_mm")),
            "fit_ok": bool(fit.get("ok", True)),
            "reused": bool(rule.get("carried_over_from")),   # the previous round's policy (training data unchanged)
        }
        for branch in (BRANCHES if parts["branch"] is None else (parts["branch"],)):
            records.append({**base, "branch": branch})
            outcomes[(parts["run"], parts["seed"], parts["round"], branch)] = pairs
    rows = pd.DataFrame.from_records(records, columns=ROW_COLUMNS)
    return rows.sort_values(["run", "round", "branch", "seed"], kind="stable").reset_index(drop=True), outcomes


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


def _by_seed(outcomes: dict[tuple, Outcomes], run: str, round_: int, branch: str,
             seeds: list[int]) -> dict[int, Outcomes]:
    return {seed: outcomes.get((run, seed, round_, branch), {}) for seed in seeds}


@dataclass(frozen=True)
class Comparison:
    """B - A for a report cell: the estimate, its 95% interval and p-value, and how it was computed."""

    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    unit: str
    states: int = 0
    design_effect: float = float("nan")
    between_seed_sd: float = float("nan")


NO_COMPARISON = Comparison(float("nan"), float("nan"), float("nan"), float("nan"), "")


def compare_seeds(a: dict[int, Outcomes], b: dict[int, Outcomes]) -> Comparison:
    """B - A on shared pairs: one seed clustered by initial state; several seeds with the seed as the unit."""
    seeds = [seed for seed in a if a[seed] and b.get(seed)]
    if not seeds:
        return NO_COMPARISON
    if len(seeds) == 1:
        one = paired_difference(a[seeds[0]], b[seeds[0]])
        return Comparison(one.diff, one.ci_low, one.ci_high, one.p_value, "1 run, pairs clustered by state",
                          one.states, one.design_effect)
    many = replicated_difference({seed: (a[seed], b[seed]) for seed in seeds})
    return Comparison(many.mean, many.ci_low, many.ci_high, many.p_value,
                      f"{many.replicates} seeds (run-level t, clustered by seed and state)",
                      between_seed_sd=many.between_sd)


def rate_interval(by_seed: dict[int, Outcomes]) -> tuple[float, float, float, float]:
    """Success rate (mean over seeds), its s.e. and 95% interval: clustered by state, and by seed when several."""
    import numpy as np

    values, seeds, states = [], [], []
    for seed, pairs in by_seed.items():
        values.extend(float(v) for v in pairs.values())
        seeds.extend([seed] * len(pairs))
        states.extend(f"{seed}/{key[1]}" if len(by_seed) == 1 else key[1] for key in pairs)
    if not values:
        nan = float("nan")
        return nan, nan, nan, nan
    if len(by_seed) == 1:  # one run: the clustered t interval of a mean is that of a difference from zero
        only = next(iter(by_seed.values()))
        one = paired_difference({k: False for k in only}, only)
        rate, stderr, low, high = one.diff, one.stderr, one.ci_low, one.ci_high
    else:
        codes = {name: i for i, name in enumerate(dict.fromkeys(states))}
        many = replicated_difference_of(np.asarray(values), np.asarray(seeds), np.asarray([codes[s] for s in states]))
        rate, stderr, low, high = many.mean, many.stderr, many.ci_low, many.ci_high
    return rate, stderr, max(0.0, low), min(1.0, high)


def summarize_rows(rows: pd.DataFrame, outcomes: dict[tuple, Outcomes]) -> pd.DataFrame:
    """Per run, round and branch: success rate with its interval, and paired differences vs round 0 / other branch."""
    records = []
    for (run, task, round_, branch), group in rows.groupby(["run", "task", "round", "branch"], sort=True):
        seeds = [int(s) for s in group["seed"]]
        mine = _by_seed(outcomes, run, round_, branch, seeds)
        n = sum(len(v) for v in mine.values())
        rate, stderr, low, high = rate_interval(mine)
        vs_round0 = compare_seeds(_by_seed(outcomes, run, 0, branch, seeds), mine) if round_ > 0 else NO_COMPARISON
        other = BRANCHES[1 - BRANCHES.index(branch)] if branch in BRANCHES else None
        vs_other = (compare_seeds(_by_seed(outcomes, run, round_, other, seeds), mine)
                    if round_ > 0 and other is not None else NO_COMPARISON)
        rates = group["success_rate"].astype(float)
        fits = group["fit_position_mm"].astype(float)
        records.append({
            "run": run, "task": task, "round": int(round_), "branch": branch,
            "success_rate": rate, "stderr": stderr, "n": n, "ci_rate_low": low, "ci_rate_high": high,
            "diff_vs_round0": vs_round0.diff, "ci_low": vs_round0.ci_low, "ci_high": vs_round0.ci_high,
            "p_value": vs_round0.p_value,
            "diff_vs_other": vs_other.diff, "ci_low_vs_other": vs_other.ci_low,
            "ci_high_vs_other": vs_other.ci_high, "p_value_vs_other": vs_other.p_value,
            "seeds": len(group), "success_rate_mean": float(rates.mean()),
            "success_rate_std": float(rates.std(ddof=1)) if len(group) > 1 else float("nan"),
            "per_seed": ", ".join(f"{s}: {r:.2f}" for s, r in zip(group["seed"], rates)),
            "held_out": bool(group["held_out"].all()),
            "train_episodes": float(group["train_episodes"].mean()),
            "train_frames": float(group["train_frames"].mean()),
            "fit_position_mm": float(fits.mean()) if fits.notna().any() else float("nan"),
            "fit_jitter_mm": float(group["fit_jitter_mm"].astype(float).mean()) if fits.notna().any() else float("nan"),
            "fit_ok": bool(group["fit_ok"].all()),
            "reused_seeds": int(group["reused"].astype(bool).sum()),
            "unit": vs_round0.unit or vs_other.unit, "states": vs_round0.states,
            "design_effect": vs_round0.design_effect, "between_seed_sd": vs_round0.between_seed_sd,
        })
    return pd.DataFrame.from_records(records, columns=SUMMARY_COLUMNS)


def build_report(store: "Store", task: str | None = None, run: str | None = None) -> RunReport:
    """The report of every SIME run in the store (or one task / run)."""
    rows, outcomes = gather(store, task, run)
    return RunReport(rows=rows, summary=summarize_rows(rows, outcomes),
                     mixed_without_exploration=mixed_without_exploration(store, rows))


def mixed_states(store: "Store", version: str) -> tuple[int, int]:
    """(initial states whose trials disagreed, initial states with 2+ trials) of a rollout version."""
    rows = store.episodes(version=version, columns=["episode_id", "init_state_id", "success"])
    if rows.empty:
        return 0, 0
    success = rows["success"].fillna(False).astype(bool)
    per_state = success.groupby(rows["init_state_id"]).agg(["mean", "size"])
    repeated = per_state[per_state["size"] > 1]
    return int(((repeated["mean"] > 0) & (repeated["mean"] < 1)).sum()), len(repeated)


def mixed_without_exploration(store: "Store", rows: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """Per run: mixed and repeated collection states of round 0's rollouts without exploration, over its seeds."""
    from .names import Chain

    found: dict[str, tuple[int, int]] = {}
    for (run, task), group in rows.groupby(["run", "task"]):
        mixed = total = 0
        for seed in sorted(set(group["seed"])):
            version = Chain(task, run, int(seed), "baseline").collect_version(0)
            if store.has_version(version):
                m, t = mixed_states(store, version)
                mixed, total = mixed + m, total + t
        if total:
            found[run] = (mixed, total)
    return found


# ---------------------------------------------------------------------- files
def plot_report(report: RunReport, path: Path) -> Path | None:
    """Per run: success rate vs round with 95% intervals (left) and paired differences vs round 0 (right)."""
    plt = headless_pyplot()
    if plt is None:
        return None
    runs = report.runs
    if not runs:
        return None
    fig, axes = plt.subplots(len(runs), 2, figsize=(11, 4.2 * len(runs)), squeeze=False)
    colors = {"baseline": "#7f7f7f", "sime": "#1f77b4"}
    labels = {"baseline": "baseline (no exploration)", "sime": "SIME (exploration)"}
    for (rate_ax, diff_ax), run in zip(axes, runs):
        summary = report.summary[report.summary["run"] == run]
        rows = report.rows[report.rows["run"] == run]
        for branch in BRANCHES:
            part = summary[summary["branch"] == branch].sort_values("round")
            offset = 0.05 if branch == "sime" else -0.05
            yerr = [(part["success_rate"] - part["ci_rate_low"]).clip(lower=0).fillna(0.0),
                    (part["ci_rate_high"] - part["success_rate"]).clip(lower=0).fillna(0.0)]
            rate_ax.errorbar(part["round"] + offset, part["success_rate"], yerr=yerr, marker="o", capsize=4,
                             color=colors[branch], label=labels[branch])
            seeds = rows[rows["branch"] == branch]
            if seeds["seed"].nunique() > 1:
                rate_ax.scatter(seeds["round"] + offset, seeds["success_rate"], color=colors[branch], alpha=0.35, s=14)
            later = part[part["round"] > 0]
            diff_err = [(later["diff_vs_round0"] - later["ci_low"]).fillna(0.0),
                        (later["ci_high"] - later["diff_vs_round0"]).fillna(0.0)]
            diff_ax.errorbar(later["round"] + offset, later["diff_vs_round0"], yerr=diff_err, marker="s", capsize=4,
                             color=colors[branch], label=labels[branch], linestyle="none")
            for _, row in later.iterrows():
                diff_ax.annotate(p_clause(row["p_value"], sep=""), (row["round"] + offset, row["ci_high"]),
                                 textcoords="offset points", xytext=(0, 4), ha="center", fontsize=7,
                                 color=colors[branch])
        held = "held-out states" if summary["held_out"].all() else "collection states"
        n = int(summary["n"].max())
        rate_ax.set_title(f"{summary['task'].iloc[0]} / {run}: success rate, 95% CI ({held}, n={n})", fontsize=9)
        rate_ax.set_xlabel("round")
        rate_ax.set_ylabel("success rate (no exploration)")
        rate_ax.set_xticks(sorted(summary["round"].unique()))
        rate_ax.set_ylim(-0.02, 1.02)
        rate_ax.grid(True, alpha=0.3)
        rate_ax.legend(fontsize=8, loc="lower right")
        diff_ax.axhline(0.0, color="black", linewidth=0.8)
        unit = "(t over seeds)" if int(summary["seeds"].max()) > 1 else "(clustered by state)"
        diff_ax.set_title(f"paired difference vs round 0, 95% CI {unit}", fontsize=9)
        diff_ax.set_xlabel("round")
        diff_ax.set_ylabel("success rate - round 0")
        rounds = sorted(r for r in summary["round"].unique() if r > 0)
        diff_ax.set_xticks(rounds or [1])
        diff_ax.set_xlim(min(rounds or [1]) - 0.5, max(rounds or [1]) + 0.5)  # room for the p-value labels
        diff_ax.margins(y=0.15)
        diff_ax.grid(True, alpha=0.3)
    return save_figure(fig, path)


def headless_pyplot() -> Any | None:
    """matplotlib.pyplot on the file-only Agg backend, or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is in the policy extra
        return None
    return plt


def save_figure(fig: Any, path: Path, rect: tuple[float, float, float, float] = (0, 0, 1, 1)) -> Path:
    """Lay out (within `rect` of the figure), write (PNG, 110 dpi) and close a matplotlib figure; the path."""
    import matplotlib.pyplot as plt

    fig.tight_layout(rect=rect)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(report: RunReport, out: str | Path) -> dict[str, Path]:
    """report.md, summary.csv, results.csv (per seed) and success_rate.png under `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"markdown": out / "report.md", "summary": out / "summary.csv", "results": out / "results.csv"}
    files["markdown"].write_text("# SIME results\n\n" + report.markdown())
    report.summary.to_csv(files["summary"], index=False)
    report.rows.to_csv(files["results"], index=False)
    plot = plot_report(report, out / "success_rate.png")
    if plot is not None:
        files["plot"] = plot
    return files
