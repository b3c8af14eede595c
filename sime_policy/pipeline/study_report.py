"""The report of a replicated study, rebuilt from the store: one row per replicate, the replicate as the unit.

Per replicate: round 0 and both round-1 branches scored on the replicate's own (state, trial) pairs, and the
paired differences with 95% t intervals clustered by initial state. Across replicates (`replicate_stats`):
the mean difference, its 95% interval and p-value (t over replicates, two-way clustered by replicate and
state), the between-replicate sd, and how many replicates an effect of +0.05 / +0.07 would need. Files:
``report.md``, ``summary.csv`` (across), ``replicates.csv`` (per replicate) and ``forest.png``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .replicate_stats import (ReplicatedDifference, format_p, paired_difference, replicated_difference,
                              replicates_for_half_width, replicates_for_power)
from .names import Chain
from .report import gather, headless_pyplot, save_figure

if TYPE_CHECKING:  # pragma: no cover
    from sime_data import Store

#: (label, column, B, A): B - A on the replicate's pairs; "round0" is round 0's evaluation
COMPARISONS = (("SIME round 1 - round 0", "sime_vs_round0", "sime", "round0"),
               ("baseline round 1 - round 0", "baseline_vs_round0", "baseline", "round0"),
               ("SIME - baseline (round 1)", "sime_vs_baseline", "sime", "baseline"))
EFFECTS = (0.05, 0.07)
TARGET_HALF_WIDTH = 0.05
SUMMARY_COLUMNS = ["comparison", "replicates", "mean", "ci_low", "ci_high", "half_width", "p_value", "between_sd",
                   "within_se", "replicates_for_0.05", "replicates_for_0.07", "replicates_for_half_width_0.05",
                   "note"]


@dataclass(frozen=True)
class StudyReport:
    """Per-replicate rows and the across-replicate summary of one study."""

    study: str
    task: str
    replicates: pd.DataFrame
    summary: pd.DataFrame
    shared_round0: bool
    across: dict[str, ReplicatedDifference]

    def markdown(self) -> str:
        """The study's tables and what they say, as markdown."""
        if self.replicates.empty:
            return f"study {self.study!r}: no finished replicate yet\n"
        reps = self.replicates
        lines = [f"## Study {self.study} ({self.task}): {len(reps)} replicate(s)", ""]
        scope = ("Round 0 is shared (trained once; every replicate starts from it): the intervals cover collecting, "
                 "selecting and retraining from that policy, not round 0's own training variance."
                 if self.shared_round0 else "Every replicate trains its own round 0.")
        lines += [f"Each replicate is a whole run with its own seed, collection states and held-out evaluation "
                  f"states; its differences are paired on its own (state, trial) pairs, 95% t intervals clustered "
                  f"by initial state. {scope}", ""]
        lines += ["| replicate | seed | round 0 | SIME r1 | baseline r1 | n | SIME - round 0 [95% CI] | p | "
                  "SIME - baseline [95% CI] | p | training episodes SIME / baseline | steps to succeed r0 / SIME / "
                  "baseline | wall s |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in reps.itertuples():
            lines.append(f"| {row.replicate} | {row.seed} | {row.round0:.3f} | {row.sime:.3f} | {row.baseline:.3f} | "
                         f"{row.n} | {_ci(row.sime_vs_round0, row.sime_vs_round0_low, row.sime_vs_round0_high)} | "
                         f"{format_p(row.sime_vs_round0_p)} | "
                         f"{_ci(row.sime_vs_baseline, row.sime_vs_baseline_low, row.sime_vs_baseline_high)} | "
                         f"{format_p(row.sime_vs_baseline_p)} | {row.sime_train_episodes} / "
                         f"{row.baseline_train_episodes}{' (reuses round 0)' if row.baseline_reused else ''} | "
                         f"{row.round0_success_steps:.0f} / {row.sime_success_steps:.0f} / "
                         f"{row.baseline_success_steps:.0f} | {row.wall_s:.0f} |")
        lines += ["", "Across replicates (the replicate is the unit: mean of the replicates' differences, 95% t "
                  "interval over replicates, two-way clustered by replicate and initial state):", "",
                  "| comparison | replicates | mean [95% CI] | p | between-replicate sd | within-replicate s.e. | "
                  "replicates for +0.05 / +0.07 (80% power) | replicates for ±0.05 |",
                  "|---|---|---|---|---|---|---|---|"]
        for _, row in self.summary.iterrows():
            lines.append(f"| {row['comparison']} | {row['replicates']} | "
                         f"{_ci(row['mean'], row['ci_low'], row['ci_high'])} | {format_p(row['p_value'])} | "
                         f"{_num(row['between_sd'])} | {_num(row['within_se'])} | "
                         f"{_count(row['replicates_for_0.05'])} / {_count(row['replicates_for_0.07'])} | "
                         f"{_count(row['replicates_for_half_width_0.05'])} |")
        lines += ["", "```", self.text_forest(), "```", "", self.verdict(), ""]
        return "\n".join(lines)

    def text_forest(self, key: str = "sime_vs_round0", width: int = 61) -> str:
        """The forest plot as text: one line per replicate (o, its 95% CI as -) and the mean over replicates (#)."""
        reps = self.replicates
        label = next(name for name, column, _, _ in COMPARISONS if column == key)
        result = self.across.get(label)
        lows = [*reps[f"{key}_low"], *([result.ci_low] if result and result.replicates > 1 else [])]
        highs = [*reps[f"{key}_high"], *([result.ci_high] if result and result.replicates > 1 else [])]
        bound = max(0.1, *(abs(v) for v in [*lows, *highs] if not math.isnan(v)))
        bound = math.ceil(bound * 10) / 10

        def column(value: float) -> int:
            return int(round((max(-bound, min(bound, value)) + bound) / (2 * bound) * (width - 1)))

        def line(name: str, value: float, low: float, high: float, mark: str) -> str:
            cells = [" "] * width
            cells[column(0.0)] = "|"
            if not math.isnan(low):
                for i in range(column(low), column(high) + 1):
                    cells[i] = "-" if cells[i] != "|" else "+"
            cells[column(value)] = mark
            return f"{name:>8} {''.join(cells)} {_ci(value, low, high)}"

        rows = [f"{label}: -{bound:g} .. +{bound:g}, | = 0"]
        rows += [line(f"r{int(r['replicate']):03d}", r[key], r[f"{key}_low"], r[f"{key}_high"], "o")
                 for _, r in reps.iterrows()]
        if result is not None and result.replicates > 1:
            rows.append(line("mean", result.mean, result.ci_low, result.ci_high, "#"))
        return "\n".join(rows)

    def verdict(self) -> str:
        """What the study shows, in words, as measured."""
        main = self.across.get(COMPARISONS[0][0])
        if main is None or main.replicates < 2:
            return "Fewer than 2 replicates: no run-level interval yet."
        width = (f"the interval's half-width is {main.half_width:.3f} "
                 f"({'within' if main.half_width <= TARGET_HALF_WIDTH else 'wider than'} the ±{TARGET_HALF_WIDTH:g} "
                 "aimed for)")
        if main.ci_low > 0:
            claim = "SIME round 1 is better than round 0"
        elif main.ci_high < 0:
            claim = "SIME round 1 is worse than round 0"
        else:
            claim = "the study cannot tell SIME round 1 from round 0"
        ruled = [f"+{e:g}" for e in EFFECTS if main.ci_high < e]
        excluded = f"; gains of {' and '.join(ruled)} or more are ruled out" if ruled else ""
        text = (f"Over {main.replicates} replicates {claim}: {main.describe()}; {width}{excluded}.")
        reps = self.replicates
        if len(reps) and bool(reps["baseline_reused"].all()):
            text += (" The baseline kept no new data in any replicate (its rollouts without exploration are "
                     "deterministic per state), so its round 1 is round 0 and 'SIME - baseline' is 'SIME round 1 - "
                     "round 0' again, not a comparison with a control.")
        return text


def _ci(value: float, low: float, high: float) -> str:
    return "-" if math.isnan(value) else f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"


def _num(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def _count(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else str(int(value))


def replicate_runs(store: "Store", task: str, study: str) -> list[tuple[int, str]]:
    """(number, run name) of every replicate of `study` with versions in the store, in order."""
    pattern = re.compile(rf"^{re.escape(task)}/sime/({re.escape(study)}-r(\d+))/")
    found = {}
    for name in store.versions()["name"]:
        match = pattern.match(name)
        if match:
            found[int(match.group(2))] = match.group(1)
    return sorted(found.items())


def success_steps(store: "Store", version: str) -> float:
    """Mean length in steps of a version's successful episodes (nan without any)."""
    rows = store.episodes(version=version, columns=["episode_id", "success", "length"])
    won = rows[rows["success"].fillna(False).astype(bool)]
    return float(won["length"].mean()) if len(won) else float("nan")


def _wall_time(out: Path | None, run: str) -> float:
    path = out / "replicates" / run / "replicate.json" if out is not None else None
    if path is None or not path.is_file():
        return float("nan")
    return float(json.loads(path.read_text()).get("wall_s", float("nan")))


def build_study_report(store: "Store", task: str, study: str, shared_round0: bool = True,
                       out: str | Path | None = None) -> StudyReport:
    """The study's report from the store (wall times from `out` when given)."""
    out = Path(out) if out is not None else None
    records, pairs = [], {label: {} for label, _, _, _ in COMPARISONS}
    for number, run in replicate_runs(store, task, study):
        rows, outcomes = gather(store, task, run)
        if rows.empty or not {1}.issubset(set(rows["round"])):
            continue
        seed = int(rows["seed"].iloc[0])
        scored = {"round0": outcomes.get((run, seed, 0, "sime"), {}),
                  "sime": outcomes.get((run, seed, 1, "sime"), {}),
                  "baseline": outcomes.get((run, seed, 1, "baseline"), {})}
        if not all(scored.values()):
            continue  # a replicate still running
        record: dict[str, Any] = {"replicate": number, "run": run, "seed": seed}
        for branch, outcome in scored.items():
            record[branch] = sum(outcome.values()) / len(outcome)
        for label, key, b, a in COMPARISONS:
            one = paired_difference(scored[a], scored[b])
            record.update({key: one.diff, f"{key}_low": one.ci_low, f"{key}_high": one.ci_high,
                           f"{key}_p": one.p_value, f"{key}_se": one.stderr})
            pairs[label][run] = (scored[a], scored[b])
        record["n"] = len(scored["sime"])
        record["states"] = len({key[1] for key in scored["sime"]})
        one_row = rows[(rows["round"] == 1)].set_index("branch")
        record["sime_train_episodes"] = int(one_row.loc["sime", "train_episodes"])
        record["baseline_train_episodes"] = int(one_row.loc["baseline", "train_episodes"])
        record["baseline_reused"] = bool(one_row.loc["baseline", "reused"])
        record["sime_fit_position_mm"] = float(one_row.loc["sime", "fit_position_mm"])
        record["wall_s"] = _wall_time(out, run)
        for branch, round_ in (("round0", 0), ("sime", 1), ("baseline", 1)):   # how fast each policy succeeds
            chain = Chain(task, run, seed, "sime" if branch == "round0" else branch)
            record[f"{branch}_success_steps"] = success_steps(store, chain.eval_version(round_))
        records.append(record)
    replicates = pd.DataFrame.from_records(records)
    across = {label: replicated_difference(pairs[label]) for label, _, _, _ in COMPARISONS if pairs[label]}
    summary = pd.DataFrame.from_records([_summary_row(label, result, replicates)
                                         for label, result in across.items()], columns=SUMMARY_COLUMNS)
    return StudyReport(study, task, replicates, summary, shared_round0, across)


def _summary_row(label: str, result: ReplicatedDifference, replicates: pd.DataFrame) -> dict[str, Any]:
    note = ""
    if label.startswith("SIME - baseline") and len(replicates) and bool(replicates["baseline_reused"].all()):
        note = "baseline = round 0 in every replicate: the same as SIME round 1 - round 0"
    sd = result.between_sd
    return {"comparison": label, "replicates": result.replicates, "mean": result.mean, "ci_low": result.ci_low,
            "ci_high": result.ci_high, "half_width": result.half_width, "p_value": result.p_value,
            "between_sd": sd, "within_se": result.within_se,
            "replicates_for_0.05": replicates_for_power(0.05, sd),
            "replicates_for_0.07": replicates_for_power(0.07, sd),
            "replicates_for_half_width_0.05": replicates_for_half_width(TARGET_HALF_WIDTH, sd), "note": note}


def plot_forest(report: StudyReport, path: Path) -> Path | None:
    """Forest plot: one row per replicate (difference, 95% CI) and the across-replicate estimate, per comparison."""
    plt = headless_pyplot()
    if plt is None:
        return None
    reps = report.replicates
    if reps.empty:
        return None
    panels = [(label, key) for label, key, _, _ in COMPARISONS if key != "baseline_vs_round0"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 1.2 + 0.32 * (len(reps) + 2)), squeeze=False, sharey=True)
    labels = [f"r{n:03d}" for n in reps["replicate"]] + ["", "all (run-level)"]
    for ax, (label, key) in zip(axes[0], panels):
        ys = list(range(len(reps)))[::-1]
        offset = len(reps) + 1
        ys = [y + 2 for y in ys]
        ax.errorbar(reps[key], ys, xerr=[(reps[key] - reps[f"{key}_low"]).clip(lower=0),
                                         (reps[f"{key}_high"] - reps[key]).clip(lower=0)],
                    fmt="o", color="#1f77b4", capsize=3, markersize=4, label="replicate (clustered by state)")
        result = report.across.get(label)
        if result is not None and result.replicates >= 2:
            ax.errorbar([result.mean], [0], xerr=[[result.mean - result.ci_low], [result.ci_high - result.mean]],
                        fmt="D", color="#d62728", capsize=4, markersize=7, label="mean over replicates")
            ax.set_title(f"{label}\n{result.describe()}", fontsize=8)
        else:
            ax.set_title(label, fontsize=9)
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.axvline(0.05, color="#7f7f7f", linewidth=0.8, linestyle="--", label="+0.05 (the paper's gain)")
        ax.set_yticks([*[y for y in ys], 0])
        ax.set_yticklabels([*labels[:len(reps)], labels[-1]], fontsize=7)
        ax.set_xlabel("difference in success rate")
        ax.grid(True, axis="x", alpha=0.3)
        ax.set_ylim(-1, offset + 1.5)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"study {report.study} ({report.task}): {len(reps)} replicate(s)", fontsize=10)
    return save_figure(fig, path, rect=(0, 0.08, 1, 1))


def write_study_report(report: StudyReport, out: str | Path) -> dict[str, Path]:
    """report.md, summary.csv, replicates.csv and forest.png under `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"markdown": out / "report.md", "summary": out / "summary.csv", "replicates": out / "replicates.csv"}
    files["markdown"].write_text(f"# SIME study {report.study}\n\n" + report.markdown())
    report.summary.to_csv(files["summary"], index=False)
    report.replicates.to_csv(files["replicates"], index=False)
    plot = plot_forest(report, out / "forest.png")
    if plot is not None:
        files["plot"] = plot
    return files


__all__ = ["StudyReport", "build_study_report", "plot_forest", "replicate_runs", "write_study_report"]
