"""HDF5 attributes as JSON that turns back into identical values (for bit-exact HDF5 round trips)."""

from __future__ import annotations

import base64
from typing import Any, Iterable, Mapping

import h5py
import numpy as np


def encode_attr(value: Any) -> dict[str, Any]:
    """JSON form of one HDF5 attribute value that `decode_attr` turns back into an identical value."""
    if isinstance(value, str):
        return {"t": "str", "v": value}
    if isinstance(value, bytes) and not isinstance(value, np.bytes_):
        return {"t": "bytes", "b64": base64.b64encode(value).decode()}
    if isinstance(value, h5py.Empty):
        return {"t": "empty", "dtype": np.dtype(value.dtype).str}
    arr = np.asarray(value)
    if arr.dtype.kind == "O":  # variable-length strings
        items = [x.decode() if isinstance(x, bytes) else str(x) for x in arr.ravel().tolist()]
        return {"t": "str_array", "shape": list(arr.shape), "v": items}
    if arr.ndim == 0 and arr.dtype.kind in "biuf":
        return {"t": "scalar", "dtype": arr.dtype.str, "v": arr.item()}
    return {"t": "array", "dtype": arr.dtype.str, "shape": list(arr.shape),
            "b64": base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode()}


def decode_attr(raw: Mapping[str, Any]) -> Any:
    """Value to write with h5py for an attribute encoded by `encode_attr`."""
    kind = raw["t"]
    if kind == "str":
        return raw["v"]
    if kind == "bytes":
        return base64.b64decode(raw["b64"])
    if kind == "empty":
        return h5py.Empty(np.dtype(raw["dtype"]))
    if kind == "str_array":
        return np.array(raw["v"], dtype=h5py.string_dtype()).reshape(raw["shape"])
    if kind == "scalar":
        return np.array(raw["v"], dtype=np.dtype(raw["dtype"]))[()]
    arr = np.frombuffer(base64.b64decode(raw["b64"]), dtype=np.dtype(raw["dtype"])).reshape(raw["shape"])
    return arr[()] if arr.ndim == 0 else arr.copy()


def encode_attrs(attrs: h5py.AttributeManager, skip: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """Encode every attribute of an HDF5 object except those named in `skip`."""
    skipped = set(skip)
    return {name: encode_attr(attrs[name]) for name in attrs.keys() if name not in skipped}
