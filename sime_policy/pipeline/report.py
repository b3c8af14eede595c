"""Results of SIME runs rebuilt from the store alone: success rate per round and branch, table and plot."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..rollout_report import binomial_stderr
from .config import BRANCHES
from .names import parse_rollout_name, rule_dict

if TYPE_CHECKING:  # pragma: no cover
    from sime_data import Store

ROW_COLUMNS = ["run", "task", "seed", "round", "branch", "success_rate", "successes", "rollouts", "eval_version",
               "train_version", "train_episodes", "train_frames"]
SUMMARY_COLUMNS = ["run", "task", "round", "branch", "seeds", "success_rate_mean", "success_rate_std", "stderr",
                   "rollouts", "per_seed", "train_episodes", "train_frames"]


@dataclass(frozen=True)
class RunReport:
    """Per-seed results and their summary over seeds, for one or more runs."""

    rows: pd.DataFrame
    summary: pd.DataFrame

    @property
    def runs(self) -> list[str]:
        """Run names in the report."""
        return list(dict.fromkeys(self.summary["run"]))

    def value(self, run: str, round_: int, branch: str) -> float:
        """Mean success rate over seeds of one run, round and branch (nan when absent)."""
        hit = self.summary[(self.summary["run"] == run) & (self.summary["round"] == round_)
                           & (self.summary["branch"] == branch)]
        return float(hit["success_rate_mean"].iloc[0]) if len(hit) else float("nan")

    def markdown(self) -> str:
        """The summary as markdown tables, one per run."""
        parts = []
        for run in self.runs:
            table = self.summary[self.summary["run"] == run]
            task = table["task"].iloc[0]
            parts.append(f"### {task} / {run}\n")
            parts.append("| round | branch | success rate (mean ± std over seeds) | s.e. (binomial) | seeds | rollouts "
                         "| per seed | training episodes | training frames |")
            parts.append("|---|---|---|---|---|---|---|---|---|")
            for _, row in table.iterrows():
                parts.append(f"| {row['round']} | {row['branch']} | {_mean_std(row)} | {row['stderr']:.3f} | "
                             f"{row['seeds']} | {row['rollouts']} | {row['per_seed']} | {row['train_episodes']:g} | "
                             f"{row['train_frames']:g} |")
            parts.append("")
        return "\n".join(parts) if parts else "no SIME run results in this store\n"

    def print(self, console: Any | None = None) -> None:
        """Print the summary as rich tables."""
        from rich.console import Console
        from rich.table import Table

        console = console or Console(width=max(Console().width, 120))
        if self.summary.empty:
            console.print("no SIME run results in this store (run `sime run` first)")
            return
        for run in self.runs:
            rows = self.summary[self.summary["run"] == run]
            table = Table(title=f"SIME run {rows['task'].iloc[0]} / {run}: success rate without exploration")
            for column in ("round", "branch", "success rate", "s.e.", "seeds", "rollouts", "per seed", "train episodes",
                           "train frames"):
                table.add_column(column, justify="left" if column in ("branch", "per seed") else "right")
            for _, row in rows.iterrows():
                table.add_row(str(row["round"]), row["branch"], _mean_std(row), f"{row['stderr']:.3f}",
                              str(row["seeds"]), str(row["rollouts"]), row["per_seed"], f"{row['train_episodes']:g}",
                              f"{row['train_frames']:g}")
            console.print(table)


def _mean_std(row: pd.Series) -> str:
    std = row["success_rate_std"]
    return f"{row['success_rate_mean']:.3f}" + ("" if math.isnan(std) else f" ± {std:.3f}")


def result_rows(store: "Store", task: str | None = None, run: str | None = None) -> pd.DataFrame:
    """One row per evaluation (seed, round, branch) of SIME runs; round 0 appears under both branches."""
    versions = store.versions()
    by_name = versions.set_index("name")
    records = []
    for _, version in versions.iterrows():
        parts = parse_rollout_name(version["name"])
        if parts is None or parts["kind"] != "eval":
            continue
        if (task and parts["task"] != task) or (run and parts["run"] != run):
            continue
        trained_on = rule_dict(version["rule"]).get("trained_on")
        train = by_name.loc[trained_on] if trained_on in by_name.index else None
        rollouts = int(version["n_episodes"])
        base = {
            "run": parts["run"], "task": parts["task"], "seed": parts["seed"], "round": parts["round"],
            "success_rate": float(version["success_rate"]), "rollouts": rollouts,
            "successes": int(round(float(version["success_rate"]) * rollouts)), "eval_version": version["name"],
            "train_version": trained_on,
            "train_episodes": int(train["n_episodes"]) if train is not None else -1,
            "train_frames": int(train["n_frames"]) if train is not None else -1,
        }
        for branch in (BRANCHES if parts["branch"] is None else (parts["branch"],)):
            records.append({**base, "branch": branch})
    rows = pd.DataFrame.from_records(records, columns=ROW_COLUMNS)
    return rows.sort_values(["run", "round", "branch", "seed"], kind="stable").reset_index(drop=True)


def summarize_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation (over seeds) of the success rate per run, round and branch."""
    records = []
    for (run, task, round_, branch), group in rows.groupby(["run", "task", "round", "branch"], sort=True):
        rates = group["success_rate"].astype(float)
        rollouts, successes = int(group["rollouts"].sum()), int(group["successes"].sum())
        records.append({
            "run": run, "task": task, "round": int(round_), "branch": branch, "seeds": int(len(group)),
            "success_rate_mean": float(rates.mean()),
            "success_rate_std": float(rates.std(ddof=1)) if len(group) > 1 else float("nan"),
            "stderr": binomial_stderr(successes, rollouts), "rollouts": rollouts,
            "per_seed": ", ".join(f"{s}: {r:.2f}" for s, r in zip(group["seed"], rates)),
            "train_episodes": float(group["train_episodes"].mean()),
            "train_frames": float(group["train_frames"].mean()),
        })
    return pd.DataFrame.from_records(records, columns=SUMMARY_COLUMNS)


def build_report(store: "Store", task: str | None = None, run: str | None = None) -> RunReport:
    """The report of every SIME run in the store (or one task / run)."""
    rows = result_rows(store, task, run)
    return RunReport(rows=rows, summary=summarize_rows(rows))


def plot_report(report: RunReport, path: Path) -> Path | None:
    """Success rate vs round, both branches, mean ± std over seeds with per-seed points (PNG)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is in the policy extra
        return None
    runs = report.runs
    if not runs:
        return None
    fig, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 4.2), squeeze=False)
    colors = {"baseline": "#7f7f7f", "sime": "#1f77b4"}
    for ax, run in zip(axes[0], runs):
        summary = report.summary[report.summary["run"] == run]
        rows = report.rows[report.rows["run"] == run]
        for branch in BRANCHES:
            part = summary[summary["branch"] == branch]
            label = "SIME (exploration)" if branch == "sime" else "baseline (no exploration)"
            spread = part["success_rate_std"].where(part["seeds"] > 1, part["stderr"])  # one seed: binomial s.e.
            ax.errorbar(part["round"], part["success_rate_mean"], yerr=spread.fillna(0.0),
                        marker="o", capsize=4, color=colors[branch], label=label)
            seeds = rows[rows["branch"] == branch]
            offset = 0.04 if branch == "sime" else -0.04
            ax.scatter(seeds["round"] + offset, seeds["success_rate"], color=colors[branch], alpha=0.35, s=14)
        ax.set_title(f"{summary['task'].iloc[0]} / {run} ({int(summary['seeds'].max())} seed(s))", fontsize=10)
        ax.set_xlabel("round")
        ax.set_ylabel("success rate (no exploration)")
        ax.set_xticks(sorted(summary["round"].unique()))
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
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
