"""Chart builders (Altair specs and Graphviz DOT text); pure functions of their inputs."""

from __future__ import annotations

import json
from typing import Sequence

import altair as alt
import numpy as np
import pandas as pd

Range = tuple[int, int]

#: How many dimensions a time-series chart draws at most (the rest are listed as omitted).
MAX_DIMS = 12


def long_series(values: np.ndarray, name: str) -> pd.DataFrame:
    """(T, ...) array -> long frame with columns frame, dim, value (at most MAX_DIMS dims)."""
    flat = np.asarray(values, dtype=np.float64).reshape(len(values), -1)[:, :MAX_DIMS]
    frames = np.repeat(np.arange(flat.shape[0]), flat.shape[1])
    dims = np.tile([f"{name}[{i}]" if flat.shape[1] > 1 else name for i in range(flat.shape[1])], flat.shape[0])
    return pd.DataFrame({"frame": frames, "dim": dims, "value": flat.reshape(-1)})


def removed_ranges(length: int, kept: Sequence[Range]) -> list[Range]:
    """Complement of the kept ranges within [0, length)."""
    out, pos = [], 0
    for start, stop in sorted(kept):
        if start > pos:
            out.append((pos, start))
        pos = max(pos, stop)
    if pos < length:
        out.append((pos, length))
    return out


def series_chart(data: pd.DataFrame, *, title: str, current: int, length: int, kept: Sequence[Range] | None = None,
                 height: int = 180) -> alt.LayerChart:
    """Lines per dimension over frames, the current frame as a rule, removed frames shaded red."""
    x = alt.X("frame:Q", scale=alt.Scale(domain=[0, max(length - 1, 1)], nice=False), title="frame",
              axis=alt.Axis(format="d", tickMinStep=1))
    layers = []
    if kept is not None:
        gaps = pd.DataFrame(removed_ranges(length, kept), columns=["start", "stop"])
        if len(gaps):
            gaps["stop"] = gaps["stop"] - 0.5
            gaps["start"] = gaps["start"] - 0.5
            layers.append(alt.Chart(gaps).mark_rect(color="#e4572e", opacity=0.18).encode(
                x="start:Q", x2="stop:Q", tooltip=[alt.Tooltip("start:Q", title="removed from"),
                                                   alt.Tooltip("stop:Q", title="to")]))
    layers.append(alt.Chart(data).mark_line(strokeWidth=1.4).encode(
        x=x, y=alt.Y("value:Q", title=None),
        color=alt.Color("dim:N", sort=None, legend=alt.Legend(
            title=None, orient="right", columns=1 if data["dim"].nunique() <= 6 else 2, labelFontSize=10,
            symbolSize=40, rowPadding=1, columnPadding=6, labelLimit=120)),
        tooltip=["frame:Q", "dim:N", alt.Tooltip("value:Q", format=".4f")]))
    layers.append(alt.Chart(pd.DataFrame({"frame": [current]})).mark_rule(color="black", strokeDash=[4, 3]).encode(
        x="frame:Q"))
    return alt.layer(*layers).properties(title=title, height=height)


def bar_chart(frame: pd.DataFrame, x: str, y: str, *, color: str | None = None, title: str = "",
              y_title: str | None = None, height: int = 220) -> alt.Chart:
    """A simple (optionally grouped) bar chart."""
    enc = {"x": alt.X(f"{x}:N", title=x, axis=alt.Axis(labelAngle=0)), "y": alt.Y(f"{y}:Q", title=y_title or y),
           "tooltip": list(frame.columns)}
    if color:
        enc["color"] = alt.Color(f"{color}:N")
        enc["xOffset"] = alt.XOffset(f"{color}:N")
    return alt.Chart(frame).mark_bar().encode(**enc).properties(title=title, height=height)


def sr_histogram(rates: pd.Series, *, threshold: float | None = None, title: str = "",
                 height: int = 220) -> alt.LayerChart:
    """Histogram of per-initial-state success rates in 10 bins, with an optional threshold rule."""
    edges = np.linspace(0, 1, 11)
    counts, _ = np.histogram(np.asarray(rates, dtype=float), bins=edges)
    frame = pd.DataFrame({"from": edges[:-1], "to": edges[1:], "initial states": counts})
    layers = [alt.Chart(frame).mark_bar(color="#4c78a8").encode(
        x=alt.X("from:Q", bin="binned", title="success rate of the initial state", scale=alt.Scale(domain=[0, 1])),
        x2="to:Q", y=alt.Y("initial states:Q"), tooltip=["from:Q", "to:Q", "initial states:Q"])]
    if threshold is not None:
        rule = alt.Chart(pd.DataFrame({"t": [threshold]})).mark_rule(color="#e4572e", strokeWidth=2)
        layers.append(rule.encode(x="t:Q"))
    return alt.layer(*layers).properties(title=title, height=height)


def _dot_quote(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def version_kind(rule: str | None, parents: Sequence[str]) -> str:
    """Short kind of a version from its rule JSON: trim, selection, union, query or root."""
    try:
        parsed = json.loads(rule) if isinstance(rule, str) and rule else None
    except ValueError:
        parsed = None
    kind = parsed.get("kind") if isinstance(parsed, dict) else None
    if kind:
        return str(kind)
    if isinstance(parsed, dict) and "rule" in parsed:
        return "selection"
    return "derived" if len(parents) else "root"


KIND_COLORS = {"root": "#d9ead3", "trim": "#fce5cd", "union": "#cfe2f3", "selection": "#ead1dc", "select": "#ead1dc",
               "query": "#fff2cc", "derived": "#eeeeee"}


def lineage_dot(versions: pd.DataFrame, highlight: str | None = None) -> str:
    """Graphviz DOT of versions (nodes with counts) and their parent links, oldest at the top."""
    lines = ["digraph lineage {", '  rankdir="TB"; node [shape=box, style="rounded,filled", fontname="Helvetica", '
             'fontsize=10]; edge [color="#888888"];']
    for row in versions.itertuples(index=False):
        parents = list(row.parents) if row.parents is not None else []
        kind = version_kind(row.rule, parents)
        rate = "" if row.success_rate is None or pd.isna(row.success_rate) else f", SR {row.success_rate:.2f}"
        label = "\\n".join(_dot_quote(part)[1:-1] for part in
                             (row.name, f"{kind}: {row.n_episodes} ep, {row.n_frames} frames{rate}"))
        color = KIND_COLORS.get(kind, "#eeeeee")
        pen = ', penwidth=2.5, color="#e4572e"' if row.name == highlight else ""
        lines.append(f'  {_dot_quote(row.name)} [label="{label}", '
                     f'fillcolor="{color}"{pen}];')
    names = set(versions["name"]) if len(versions) else set()
    for row in versions.itertuples(index=False):
        for parent in list(row.parents) if row.parents is not None else []:
            if parent in names:
                lines.append(f"  {_dot_quote(parent)} -> {_dot_quote(row.name)};")
    lines.append("}")
    return "\n".join(lines)
