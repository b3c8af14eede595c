"""Read robomimic HDF5 files: open one, validate its layout without reading bulk data, read a demo's arrays.

The layout (``data/demo_N/...``, ``mask/<filter_key>``) is described in `sime_data.robomimic_io`; h5py
reads it, the robomimic package is never imported.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .errors import ImportFormatError, InvalidNameError
from .hdf5_attrs import encode_attrs
from .schema import check_array_key

__all__ = ["DemoPlan", "FilePlan", "MODEL_FILE_ATTR", "NUM_SAMPLES_ATTR", "inspect_file", "open_h5", "read_demo"]

#: Messages keep the logger name they have always been shown under (the CLI prints it).
log = logging.getLogger("sime_data.robomimic_io")

#: Demo attrs handled separately from the recorded ones.
MODEL_FILE_ATTR = "model_file"
NUM_SAMPLES_ATTR = "num_samples"
_DEMO_RE = re.compile(r"^demo_(\d+)$")
#: HDF5 compression filters re-applied on export (always available in h5py builds).
_PORTABLE_COMPRESSION = {"gzip", "lzf"}


@dataclass
class DemoPlan:
    """One demo as found in the file: its name, datasets (key -> (shape, dtype)) and export notes."""

    name: str
    length: int
    datasets: dict[str, tuple[tuple[int, ...], str]]
    model_xml: str | None
    record: dict[str, Any]

    @property
    def signature(self) -> tuple[Any, ...]:
        """Array layout (keys, per-step shapes, dtypes): demos with equal signatures share a writer."""
        return tuple(sorted((k, shape[1:], dtype) for k, (shape, dtype) in self.datasets.items()))


@dataclass
class FilePlan:
    """Everything `import_robomimic` validated before writing anything."""

    demos: list[DemoPlan]
    data_attrs: dict[str, dict[str, Any]]
    file_attrs: dict[str, dict[str, Any]]
    env_args: Any
    masks: dict[str, list[str]]
    mask_formats: dict[str, dict[str, Any]]


def _demo_sort_key(name: str) -> tuple[int, int, str]:
    """Sort demo_2 before demo_10; names without a number go last."""
    match = _DEMO_RE.match(name)
    return (0, int(match.group(1)), name) if match else (1, 0, name)


def _walk(group: h5py.Group, prefix: str = "") -> tuple[dict[str, h5py.Dataset], dict[str, h5py.Group]]:
    """All datasets and subgroups below `group`, keyed by their path relative to it."""
    datasets: dict[str, h5py.Dataset] = {}
    groups: dict[str, h5py.Group] = {}
    for name, item in group.items():
        path = f"{prefix}{name}"
        if isinstance(item, h5py.Dataset):
            datasets[path] = item
        elif isinstance(item, h5py.Group):
            groups[path] = item
            sub_d, sub_g = _walk(item, path + "/")
            datasets.update(sub_d)
            groups.update(sub_g)
    return datasets, groups


def _dataset_record(ds: h5py.Dataset) -> dict[str, Any]:
    """Storage settings and attrs of a dataset worth restoring on export (empty when all default)."""
    info: dict[str, Any] = {}
    if ds.compression in _PORTABLE_COMPRESSION:
        info["compression"] = ds.compression
        if ds.compression_opts is not None:
            info["compression_opts"] = ds.compression_opts
    if ds.shuffle:
        info["shuffle"] = True
    if ds.fletcher32:
        info["fletcher32"] = True
    attrs = encode_attrs(ds.attrs)
    if attrs:
        info["attrs"] = attrs
    return info


def _inspect_demo(name: str, group: h5py.Group, file_label: str) -> DemoPlan:
    """Check one demo group's layout (no bulk data read) and note what an exact export needs."""
    where = f"{file_label}: data/{name}"
    datasets, groups = _walk(group)
    if "actions" not in datasets:
        raise ImportFormatError(f"{where} has no 'actions' dataset (it has {sorted(datasets) or 'no datasets'})")
    length = int(datasets["actions"].shape[0]) if datasets["actions"].ndim else -1
    if length <= 0:
        raise ImportFormatError(f"{where}/actions has shape {datasets['actions'].shape}: a demo needs at least one step")
    specs: dict[str, tuple[tuple[int, ...], str]] = {}
    ds_records: dict[str, Any] = {}
    for key, ds in sorted(datasets.items()):
        if ds.ndim == 0 or ds.shape[0] != length:
            raise ImportFormatError(
                f"{where}/{key} has shape {ds.shape} but data/{name}/actions has {length} rows: every per-step dataset "
                f"of a demo must have the same first dimension"
            )
        if ds.dtype.kind not in "biufc":
            raise ImportFormatError(f"{where}/{key} has dtype {ds.dtype}, which the store cannot hold (numbers/bools only)")
        try:
            check_array_key(key)
        except InvalidNameError as exc:
            raise ImportFormatError(f"{where}/{key}: {exc}") from None
        specs[key] = (tuple(int(x) for x in ds.shape), ds.dtype.str)
        rec = _dataset_record(ds)
        if rec:
            ds_records[key] = rec
    attrs = group.attrs
    if NUM_SAMPLES_ATTR in attrs:
        try:
            num = int(np.asarray(attrs[NUM_SAMPLES_ATTR]))
        except (TypeError, ValueError):
            num = None
        if num != length:
            raise ImportFormatError(
                f"{where} says num_samples={attrs[NUM_SAMPLES_ATTR]!r} but its actions have {length} rows"
            )
    model_raw = attrs[MODEL_FILE_ATTR] if MODEL_FILE_ATTR in attrs else None
    model_xml = model_raw if isinstance(model_raw, str) else None
    record: dict[str, Any] = {
        "demo": name,
        "attrs": encode_attrs(attrs, skip=[MODEL_FILE_ATTR] if model_xml is not None else []),
        "has_model_file": model_xml is not None,
    }
    if ds_records:
        record["datasets"] = ds_records
    group_attrs = {g: encode_attrs(grp.attrs) for g, grp in groups.items() if len(grp.attrs)}
    record["groups"] = sorted(groups)
    if group_attrs:
        record["group_attrs"] = group_attrs
    return DemoPlan(name=name, length=length, datasets=specs, model_xml=model_xml, record=record)


def _read_mask(name: str, ds: Any, file_label: str) -> tuple[list[str], dict[str, Any]]:
    """Demo names listed by one mask dataset, and its on-disk format."""
    if not isinstance(ds, h5py.Dataset) or ds.ndim != 1 or ds.dtype.kind not in "SOU":
        shape = getattr(ds, "shape", None)
        raise ImportFormatError(f"{file_label}: mask/{name} must be a 1-D array of demo names (found {type(ds).__name__} {shape})")
    raw = ds[()]
    entries = [x.decode() if isinstance(x, bytes) else str(x) for x in raw.tolist()]
    fmt: dict[str, Any] = {"n": len(entries)}
    if ds.dtype.kind == "O":
        fmt["vlen"] = True
    else:
        fmt["dtype"] = ds.dtype.str
    return entries, fmt


def inspect_file(f: h5py.File, file_label: str) -> FilePlan:
    """Validate the whole file's layout and collect what import and export need."""
    data = f.get("data")
    if not isinstance(data, h5py.Group):
        raise ImportFormatError(f"{file_label}: no 'data' group at the top level (found {sorted(f.keys())}); not a robomimic file")
    names = []
    for name, item in data.items():
        if not name.startswith("demo_"):
            log.warning("%s: ignoring data/%s (not a demo_* group)", file_label, name)
            continue
        if not isinstance(item, h5py.Group):
            raise ImportFormatError(f"{file_label}: data/{name} is not a group")
        names.append(name)
    if not names:
        raise ImportFormatError(f"{file_label}: the 'data' group holds no demo_* groups")
    names.sort(key=_demo_sort_key)
    demos = [_inspect_demo(name, data[name], file_label) for name in names]
    data_attrs = encode_attrs(data.attrs)
    env_args: Any = None
    if "env_args" in data.attrs:
        raw_env = data.attrs["env_args"]
        raw_env = raw_env.decode() if isinstance(raw_env, bytes) else raw_env
        try:
            env_args = json.loads(raw_env) if isinstance(raw_env, str) else None
        except json.JSONDecodeError:
            log.warning("%s: data.attrs['env_args'] is not JSON; kept as a string", file_label)
            env_args = raw_env
    masks: dict[str, list[str]] = {}
    mask_formats: dict[str, dict[str, Any]] = {}
    mask_group = f.get("mask")
    if mask_group is not None:
        if not isinstance(mask_group, h5py.Group):
            raise ImportFormatError(f"{file_label}: 'mask' is not a group")
        known = set(names)
        for key, ds in _walk(mask_group)[0].items():
            entries, fmt = _read_mask(key, ds, file_label)
            unknown = [e for e in entries if e not in known]
            if unknown:
                raise ImportFormatError(
                    f"{file_label}: mask/{key} lists demo(s) not in the file: {unknown[:5]}"
                    f"{' ...' if len(unknown) > 5 else ''}"
                )
            if len(set(entries)) != len(entries):
                log.warning("%s: mask/%s lists some demos twice; each is kept once", file_label, key)
                entries = list(dict.fromkeys(entries))
            masks[key] = entries
            mask_formats[key] = fmt
    return FilePlan(demos=demos, data_attrs=data_attrs, file_attrs=encode_attrs(f.attrs), env_args=env_args,
                     masks=masks, mask_formats=mask_formats)


def open_h5(path: Path) -> h5py.File:
    """Open an HDF5 file read-only, turning 'corrupt/not HDF5' into ImportFormatError."""
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ImportFormatError(f"{path}: cannot be opened as HDF5 (truncated, corrupt or another format): {exc}") from exc


def read_demo(group: h5py.Group, plan: DemoPlan, file_label: str) -> dict[str, np.ndarray]:
    """Arrays of one demo, keyed like the store's array keys ('obs/<k>', 'actions', ...)."""
    out: dict[str, np.ndarray] = {}
    for key in plan.datasets:
        try:
            out[key] = np.asarray(group[key][()])
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            raise ImportFormatError(f"{file_label}: cannot read data/{plan.name}/{key} (corrupt file?): {exc}") from exc
    return out
