"""Success-rate summaries of rollouts: mean, binomial standard error and a per-initial-state table."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import pandas as pd

from sime_data.selection import PER_STATE_COLUMNS, per_state_table

if TYPE_CHECKING:  # pragma: no cover
    from sime_data import Store



@dataclass(frozen=True)
class RolloutSummary:
    """Success rate over all episodes, its binomial standard error and per-initial-state counts."""

    n_episodes: int
    successes: int
    success_rate: float
    stderr: float
    per_state: pd.DataFrame


def binomial_stderr(successes: int, n: int) -> float:
    """Standard error of a success rate from n Bernoulli trials: sqrt(p (1 - p) / n) (nan for n = 0)."""
    if n <= 0:
        return float("nan")
    p = successes / n
    return math.sqrt(p * (1.0 - p) / n)


def summarize(episodes: pd.DataFrame, state_order: Sequence[str] | None = None) -> RolloutSummary:
    """Summary of episode rows with `init_state_id` and `success` (None counts as failure).

    `state_order` fixes the row order of the per-state table (states without episodes get 0 trials);
    by default states appear in order of first occurrence.
    """
    per_state = per_state_table(episodes, state_order)
    success = episodes["success"].fillna(False).astype(bool) if len(episodes) else pd.Series([], dtype=bool)
    n, wins = int(len(episodes)), int(success.sum())
    rate = wins / n if n else float("nan")
    return RolloutSummary(n, wins, rate, binomial_stderr(wins, n), per_state)



def summarize_version(store: "Store", version: str) -> RolloutSummary:
    """Summary of the episodes of a store version (e.g. one a rollout collection created)."""
    rows = store.episodes(version=version, columns=["episode_id", "init_state_id", "trial", "success"])
    return summarize(rows.sort_values(["init_state_id", "trial"], kind="stable"))


def format_rate(summary: RolloutSummary) -> str:
    """One line: 'success rate 0.780 ± 0.019 (390/500 episodes, 100 initial states)'."""
    return (f"success rate {summary.success_rate:.3f} ± {summary.stderr:.3f} "
            f"({summary.successes}/{summary.n_episodes} episodes, {len(summary.per_state)} initial states)")


def print_report(summary: RolloutSummary, *, title: str = "rollouts", console: Any | None = None,
                 max_rows: int | None = None) -> None:
    """Print the success rate ± standard error and the per-initial-state table with rich."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    console.print(format_rate(summary))
    table = Table(title=title)
    for column in PER_STATE_COLUMNS:
        table.add_column(column, justify="left" if column == "init_state_id" else "right")
    rows = summary.per_state if max_rows is None else summary.per_state.head(max_rows)
    for row in rows.itertuples(index=False):
        rate = "-" if pd.isna(row.success_rate) else f"{row.success_rate:.2f}"
        table.add_row(str(row.init_state_id), str(row.trials), str(row.successes), rate)
    console.print(table)
    if max_rows is not None and len(summary.per_state) > max_rows:
        console.print(f"... {len(summary.per_state) - max_rows} more initial states")
