"""Terminal output of the command-line tools: the consoles and DataFrames printed as tables."""

from __future__ import annotations

import sys
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

#: Piped output (files, CI logs) gets wide tables instead of the 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def print_frame(frame: pd.DataFrame, *, title: str | None = None, max_rows: int = 50) -> None:
    """Print a DataFrame as a table (first `max_rows` rows)."""
    table = Table(title=title, show_lines=False)
    for column in frame.columns:
        table.add_column(str(column), overflow="fold")
    for row in frame.head(max_rows).itertuples(index=False):
        table.add_row(*(cell_text(v) for v in row))
    console.print(table)
    if len(frame) > max_rows:
        console.print(f"... {len(frame) - max_rows} more rows (use --max-rows, --csv or --json)")


#: How a missing value (SQL NULL, NaN, None, pd.NA) prints in tables; the curation app shows the same.
NULL_TEXT = "—"


def cell_text(value: Any) -> str:
    """One table cell as text: missing values as NULL_TEXT, floats to 4 digits, long text cut."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return NULL_TEXT
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 120 else text[:117] + "..."


def human_bytes(n: int) -> str:
    """A byte count for people (1.5 KiB, 3.2 GiB)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n} B"
