"""Type rules for the typed episode columns a writer is given (finish(success=..., trial=...), writer defaults)."""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from .errors import MetadataTypeError

#: Columns holding a bool: only True/False (Python or numpy) are accepted.
BOOL_COLUMNS = ("success",)
#: Columns holding an integer: Python or numpy integers, never bools, floats or strings.
INT_COLUMNS = ("trial", "round", "seed")
#: Columns holding a float: any real number (bools and strings refused).
FLOAT_COLUMNS = ("episode_return", "noise_scale", "tau1", "tau2")
#: Columns holding text.
STR_COLUMNS = ("source", "task", "branch", "checkpoint", "explore_mode", "notes")
#: Column holding an id that may be given as text or an integer.
ID_COLUMNS = ("init_state_id",)


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not _is_bool(value)


def _is_real(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, (float, np.floating))) and not _is_bool(value)


def _why_not(column: str, value: Any) -> str | None:
    """The rule `value` breaks for `column`, or None when it is acceptable."""
    if value is None:
        return None
    if column in BOOL_COLUMNS and not _is_bool(value):
        extra = " (NaN is not a bool)" if isinstance(value, float) and math.isnan(value) else ""
        return f"must be True or False{extra}; use success=bool(...) only on a real truth value"
    if column in INT_COLUMNS and not _is_int(value):
        if isinstance(value, (float, np.floating)) and not _is_bool(value) and float(value).is_integer():
            return "must be an int, not a float; pass int(...) if the value is meant to be whole"
        return "must be an int"
    if column in FLOAT_COLUMNS and not _is_real(value):
        return "must be a number"
    if column in STR_COLUMNS and not isinstance(value, str):
        return "must be a string"
    if column in ID_COLUMNS and not (isinstance(value, str) or _is_int(value)):
        return "must be a string (or an int)"
    return None


def check_metadata_types(fields: Mapping[str, Any], where: str = "finish()") -> None:
    """Raise MetadataTypeError naming every typed column whose value has the wrong type."""
    bad = []
    for column, value in fields.items():
        why = _why_not(column, value)
        if why:
            bad.append(f"{column}={value!r} ({type(value).__name__}) {why}")
    if bad:
        raise MetadataTypeError(f"{where} refused: " + "; ".join(bad) + ". Nothing was committed.")
