"""Shared helpers for the benchmark scripts: result rows, timing, rich table, CSV and PNG output.

A benchmark collects `Row`s (one per figure it measures) and hands them to `report`, which
prints a rich table with the columns figure | measured | baseline/target | ratio | pass?,
writes them as CSV and (when matplotlib is installed) draws a PNG. `ratio` is
measured / target where the row has a target, else measured / baseline. `pass?` is only
decided for rows with a target.

Nothing here imports the project: the helpers are reusable by every benchmark script.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import csv
import gc
import io
import math
import os
import pstats
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

__all__ = [
    "Row", "DirSize", "time_calls", "median", "fmt_value", "fmt_bytes", "dir_size", "pinned_to_one_core", "idlest_cpu",
    "profiled", "output_dir", "bench_arg_parser", "print_table", "write_csv", "write_series_csv",
    "new_figure", "plot_ratios", "plot_series", "save_figure", "report",
]


# ---------------------------------------------------------------------------- result rows
@dataclass
class Row:
    """One measured figure, with an optional target (pass/fail) and an optional baseline to compare with."""

    figure: str
    measured: float
    unit: str
    target: float | None = None
    higher_is_better: bool = False
    baseline: float | None = None
    baseline_label: str = ""
    note: str = ""
    samples: list[float] = field(default_factory=list)

    @property
    def reference(self) -> float | None:
        """The value the ratio divides by: the target when there is one, else the baseline."""
        return self.target if self.target is not None else self.baseline

    @property
    def ratio(self) -> float | None:
        """measured / reference (None without a reference or with a zero reference)."""
        ref = self.reference
        if ref is None or ref == 0 or not math.isfinite(self.measured):
            return None
        return self.measured / ref

    @property
    def passed(self) -> bool | None:
        """True/False against the target; None when the row has no target."""
        if self.target is None:
            return None
        if not math.isfinite(self.measured):
            return False
        return self.measured >= self.target if self.higher_is_better else self.measured < self.target

    def reference_text(self) -> str:
        """Human text for the baseline/target column."""
        parts = []
        if self.target is not None:
            parts.append(f"target {'>=' if self.higher_is_better else '<'} {fmt_value(self.target, self.unit)}")
        if self.baseline is not None:
            label = f"{self.baseline_label} " if self.baseline_label else "baseline "
            parts.append(f"{label}{fmt_value(self.baseline, self.unit)}")
        return "; ".join(parts) or "-"

    def as_dict(self) -> dict[str, Any]:
        """Flat dict for CSV output."""
        ratio = self.ratio
        return {
            "figure": self.figure,
            "measured": f"{self.measured:.6g}",
            "unit": self.unit,
            "target": "" if self.target is None else f"{self.target:.6g}",
            "higher_is_better": self.higher_is_better,
            "baseline": "" if self.baseline is None else f"{self.baseline:.6g}",
            "baseline_label": self.baseline_label,
            "baseline_target": self.reference_text(),
            "ratio": "" if ratio is None else f"{ratio:.4g}",
            "passed": "" if self.passed is None else ("yes" if self.passed else "NO"),
            "note": self.note,
            "samples": ";".join(f"{s:.6g}" for s in self.samples),
        }


# ---------------------------------------------------------------------------- timing
def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence (nan when empty)."""
    return statistics.median(values) if values else float("nan")


def time_calls(fn: Callable[[], Any], repeat: int = 5, warmup: int = 1,
               setup: Callable[[], Any] | None = None) -> list[float]:
    """Wall-clock seconds (time.perf_counter) of `repeat` calls of `fn` after `warmup` untimed ones."""
    times: list[float] = []
    for i in range(warmup + repeat):
        if setup is not None:
            setup()
        gc.collect()
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        if i >= warmup:
            times.append(elapsed)
    return times


def _cpu_busy_ticks() -> dict[int, tuple[int, int]]:
    """Per CPU (busy, total) jiffies from /proc/stat ({} where unavailable)."""
    out: dict[int, tuple[int, int]] = {}
    try:
        with open("/proc/stat") as handle:
            for line in handle:
                if line.startswith("cpu") and line[3:4].isdigit():
                    name, *fields = line.split()
                    values = [int(v) for v in fields]
                    idle = values[3] + (values[4] if len(values) > 4 else 0)
                    out[int(name[3:])] = (sum(values) - idle, sum(values))
    except OSError:
        pass
    return out


def idlest_cpu(allowed: set[int], sample_s: float = 0.3) -> int:
    """The CPU among `allowed` that was least busy over a short sample (the lowest number when unknown)."""
    before = _cpu_busy_ticks()
    time.sleep(sample_s)
    after = _cpu_busy_ticks()
    best, best_load = min(allowed), float("inf")
    for cpu in sorted(allowed):
        if cpu in before and cpu in after:
            busy = after[cpu][0] - before[cpu][0]
            total = max(1, after[cpu][1] - before[cpu][1])
            if busy / total < best_load:
                best, best_load = cpu, busy / total
    return best


@contextlib.contextmanager
def pinned_to_one_core(cpu: int | None = None) -> Iterator[str]:
    """Pin every thread of this process (and threads started meanwhile) to one CPU; yields a description.

    Restores the original affinity of all threads on exit. Where the OS cannot pin threads,
    nothing is changed and the description says so.
    """
    if not hasattr(os, "sched_setaffinity") or not os.path.isdir("/proc/self/task"):
        yield "unpinned (no sched_setaffinity)"
        return
    original = os.sched_getaffinity(0)
    chosen = cpu if cpu is not None else idlest_cpu(original)

    def _set_all(mask: set[int]) -> None:
        for tid in os.listdir("/proc/self/task"):
            try:
                os.sched_setaffinity(int(tid), mask)
            except OSError:
                pass

    try:
        _set_all({chosen})
    except OSError:
        yield "unpinned (affinity refused)"
        return
    try:
        yield f"pinned to CPU {chosen}"
    finally:
        _set_all(set(original))


@contextlib.contextmanager
def profiled(enabled: bool, path: Path | None, top: int = 30) -> Iterator[None]:
    """Run the block under cProfile when `enabled` and write the top functions (cumulative) to `path`."""
    if not enabled or path is None:
        yield
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("cumulative").print_stats(top)
        stats.sort_stats("tottime").print_stats(top)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.getvalue())


# ---------------------------------------------------------------------------- sizes and formatting
@dataclass(frozen=True)
class DirSize:
    """Bytes below a directory: apparent (sum of file sizes), allocated on disk (like du), file count."""

    apparent: int
    allocated: int
    files: int


def dir_size(path: str | os.PathLike) -> DirSize:
    """Apparent and allocated bytes and file count of everything below `path` (a file works too)."""
    path = os.fspath(path)
    apparent = allocated = files = 0
    if os.path.isfile(path):
        st = os.stat(path)
        return DirSize(st.st_size, getattr(st, "st_blocks", 0) * 512 or st.st_size, 1)
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            try:
                st = os.stat(os.path.join(dirpath, name))
            except OSError:
                continue
            apparent += st.st_size
            allocated += getattr(st, "st_blocks", 0) * 512 or st.st_size
            files += 1
    return DirSize(apparent, allocated, files)


def fmt_bytes(n: float) -> str:
    """Bytes with a binary-ish unit (B, KB, MB, GB; powers of 1000)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} GB"  # pragma: no cover


def fmt_value(value: float, unit: str) -> str:
    """A number with 3-4 significant digits and its unit."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "B":
        return fmt_bytes(value)
    magnitude = abs(value)
    if magnitude >= 1000:
        text = f"{value:,.0f}"
    elif magnitude >= 100:
        text = f"{value:.0f}"
    elif magnitude >= 1:
        text = f"{value:.3g}"
    elif magnitude == 0:
        text = "0"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip()


# ---------------------------------------------------------------------------- CLI and output
def bench_arg_parser(description: str) -> argparse.ArgumentParser:
    """Parser with the options every benchmark script shares: --quick, --out, --keep, --profile."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repetitions (about 2 minutes)")
    parser.add_argument("--out", default=None, help="directory for the CSV and PNG (default: a new temp directory)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch stores and files the benchmark wrote")
    parser.add_argument("--profile", action="store_true", help="write cProfile summaries of the timed sections to --out")
    return parser


def output_dir(out: str | os.PathLike | None, prefix: str = "sime-bench-") -> Path:
    """`out` created if needed, or a fresh temp directory when `out` is None."""
    if out is None:
        return Path(tempfile.mkdtemp(prefix=prefix))
    path = Path(out).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def print_table(rows: Sequence[Row], title: str, console: Any | None = None) -> None:
    """Print rows as a rich table (figure, measured, baseline/target, ratio, pass?)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    table.add_column("figure", overflow="fold")
    table.add_column("measured", justify="right")
    table.add_column("baseline/target", overflow="fold")
    table.add_column("ratio", justify="right")
    table.add_column("pass?", justify="center")
    for row in rows:
        ratio = row.ratio
        verdict = row.passed
        table.add_row(
            row.figure,
            fmt_value(row.measured, row.unit),
            row.reference_text(),
            "-" if ratio is None else f"{ratio:.3g}",
            "-" if verdict is None else ("[green]yes[/green]" if verdict else "[bold red]NO[/bold red]"),
        )
    (console or Console(width=160)).print(table)
    notes = [(row.figure, row.note) for row in rows if row.note]
    if notes:
        (console or Console(width=160)).print("\n".join(f"  * {fig}: {note}" for fig, note in notes))


def write_csv(rows: Sequence[Row], path: str | os.PathLike) -> Path:
    """Write rows as CSV (one line per figure, raw samples included)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dicts = [row.as_dict() for row in rows]
    fields = list(Row("", 0.0, "").as_dict().keys())
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(dicts)
    return path


def write_series_csv(path: str | os.PathLike, records: Sequence[Mapping[str, Any]]) -> Path:
    """Write a list of flat dicts (same keys) as CSV, e.g. a curve per round."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields: list[str] = []
    for record in records:
        fields.extend(k for k in record if k not in fields)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(records)
    return path


def new_figure(n_panels: int, width_per_panel: float = 6.0, height: float = 4.5) -> tuple[Any, list[Any]] | None:
    """A matplotlib figure with `n_panels` side by side (Agg backend), or None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, n_panels, figsize=(width_per_panel * n_panels, height), squeeze=False)
    return fig, list(axes[0])


def plot_ratios(ax: Any, rows: Sequence[Row], title: str = "relative to target (< 1 = pass)",
                label_chars: int = 48) -> None:
    """Horizontal bars per row with a target: measured/target for '<' targets, target/measured for '>=' ones.

    Either way a bar left of the dashed line at 1 passes (green) and one right of it misses (red).
    """
    import numpy as np

    judged = [row for row in rows if row.target is not None and row.ratio]
    labels = [row.figure if len(row.figure) <= label_chars else row.figure[: label_chars - 1] + "…" for row in judged]
    values = [1.0 / row.ratio if row.higher_is_better else row.ratio for row in judged]
    colors = ["tab:green" if row.passed else "tab:red" for row in judged]
    y = np.arange(len(judged))
    ax.barh(y, values, color=colors)
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    if values and min(values) > 0:
        ax.set_xscale("log")
    for yi, value, row in zip(y, values, judged):
        ax.text(value, yi, f" {fmt_value(row.measured, row.unit)}", va="center", fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("measured/target ('<' targets) or target/measured ('>=' targets); < 1 passes", fontsize=8)


def plot_series(ax: Any, x: Sequence[float], series: Mapping[str, Sequence[float]], *, title: str, xlabel: str,
                ylabel: str, logy: bool = False) -> None:
    """Line plot of several named curves over the same x values."""
    for name, values in series.items():
        ax.plot(list(x), list(values), marker="o", label=name)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    if logy:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)


def save_figure(fig: Any, path: str | os.PathLike) -> Path:
    """Save and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report(rows: Sequence[Row], out: Path, name: str, title: str, console: Any | None = None) -> dict[str, Path]:
    """Print the table and write `<name>.csv` into `out`; returns the written paths."""
    print_table(rows, title, console)
    return {"csv": write_csv(rows, out / f"{name}.csv")}
