"""How the app writes values: one mark for missing values everywhere, and episode labels for pickers."""

from __future__ import annotations

import math
from typing import Any, Mapping

import pandas as pd

#: The one mark for a missing value, in every table, caption and metric of the app (the CLI uses it too).
NULL = "—"


def is_null(value: Any) -> bool:
    """True for None, NaN and pandas' missing markers."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value)) if not isinstance(value, (list, tuple, dict)) else False
    except (TypeError, ValueError):
        return False


def fmt(value: Any, digits: int = 4) -> str:
    """A value as text: floats with `digits` significant digits, missing values as NULL."""
    if is_null(value):
        return NULL
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    return str(value)


def _cell(value: Any, whole: bool, digits: int) -> Any:
    if is_null(value):
        return NULL
    if isinstance(value, float):
        return f"{value:.0f}" if whole else f"{value:.{digits}f}"
    return value


def table(frame: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """A copy of `frame` for st.dataframe where every missing value reads NULL.

    Columns without missing values keep their type (numbers stay sortable); a column with missing
    values becomes text, its numbers written with `digits` decimals (whole numbers without any).
    """
    if frame.empty:
        return frame
    shown = frame.copy()
    for column in shown.columns:
        series = shown[column]
        nulls = series.map(is_null)
        numeric = pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)
        values = series[~nulls]
        whole = numeric and len(values) > 0 and bool((values.astype(float) % 1 == 0).all())
        if not nulls.any():
            if numeric and whole and pd.api.types.is_float_dtype(series.dtype) and "rate" not in str(column):
                shown[column] = series.astype("int64")
            continue
        shown[column] = [_cell(v, whole, digits) for v in series.astype(object)]
    return shown


def outcome(success: Any) -> str:
    """'success', 'fail' or 'no outcome'."""
    if is_null(success):
        return "no outcome"
    return "success" if bool(success) else "fail"


def round_label(row: Mapping[str, Any], group: str | None = None) -> str:
    """'round 0/eval', 'round 1/sime', 'demo', ... for an episode row (group: its run kind when known)."""
    rnd = row.get("round")
    if is_null(rnd):
        return str(row.get("source") or NULL)
    tail = group or (None if is_null(row.get("branch")) else str(row.get("branch")))
    return f"round {int(rnd)}" + (f"/{tail}" if tail else "")


def episode_label(row: Mapping[str, Any], group: str | None = None) -> str:
    """Picker label: 'id · success/fail · length · round/branch'."""
    return (f"{row.get('episode_id')} · {outcome(row.get('success'))} · {fmt(row.get('length'))} frames · "
            f"{round_label(row, group)}")


def episode_labels(episodes: pd.DataFrame, groups: Mapping[str, str] | None = None) -> dict[str, str]:
    """{episode_id: picker label} for every row of an episodes table."""
    groups = groups or {}
    return {row["episode_id"]: episode_label(row, groups.get(row["episode_id"]))
            for row in episodes[["episode_id", "success", "length", "round", "branch", "source"]].to_dict("records")}
