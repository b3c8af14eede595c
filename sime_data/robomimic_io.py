"""robomimic HDF5 interop: import a robomimic file as episodes + versions, export a version back, bit-exactly.

robomimic layout (read and written with h5py; the robomimic package is never imported)::

    data/                       attrs: env_args (JSON string), total (frames in all demos), ...
      demo_N/                   attrs: num_samples, model_file (MuJoCo XML), ...
        actions, states, rewards, dones, obs/<key>, next_obs/<key>, ...   (first dim = num_samples)
    mask/<filter_key>           1-D array of byte strings naming demos (e.g. train / valid)

Import writes every demo as one episode through one commit batch (one atomic writer per array layout, all
committed in a single row file: nothing becomes visible unless every demo was written), then makes one
version with all demos and one per filter key. The file's sha256 is recorded (episode `meta` and version
rule), so importing the same file again is a no-op, and an import killed after its commit but before its
versions were written is completed instead of duplicated. Everything an
exact export needs that is not an array is kept: demo attrs and HDF5 dataset settings in each
episode's `meta` JSON (key ``robomimic``), file-level attrs and mask formats in the version's rule.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import h5py
import numpy as np
from tqdm.auto import tqdm

from .errors import ImportFormatError, StoreError
from .hdf5_attrs import decode_attr, encode_attr, encode_attrs
from .import_records import committed_import_records, version_of_import
from .processes import lock_fd
from .robomimic_reader import MODEL_FILE_ATTR, NUM_SAMPLES_ATTR, FilePlan, inspect_file, open_h5, read_demo
from .versions import check_names_free

__all__ = ["ExportResult", "ImportResult", "decode_attr", "default_version_name", "encode_attr", "encode_attrs",
           "export_robomimic", "file_sha256", "import_robomimic", "remove_stale_export_temps"]

if TYPE_CHECKING:  # pragma: no cover
    from .store import Store
    from .versions import Version
    from .writer import EpisodeWriter

log = logging.getLogger(__name__)

#: Rule `kind` of the all-demos version an import creates.
IMPORT_RULE_KIND = "robomimic_import"
#: Rule `kind` of the per-filter-key versions an import creates.
MASK_RULE_KIND = "robomimic_mask"
#: Key of the episode `meta` JSON holding what an exact export needs.
META_KEY = "robomimic"


# ============================================================================ results
@dataclass
class ImportResult:
    """What `import_robomimic` created: episode ids (in demo order), version names and frame count."""

    episode_ids: list[str]
    versions: list[str]
    n_frames: int
    #: True when the file had been imported before (same sha256) and nothing was written
    already_imported: bool = False

    @property
    def version(self) -> str:
        """Name of the all-demos version."""
        return self.versions[0]


@dataclass
class ExportResult:
    """What `export_robomimic` wrote: file path, number of demos and frames, and the demo names used."""

    path: Path
    n_demos: int
    n_frames: int
    demo_names: list[str] = field(default_factory=list)


# ============================================================================ attribute encoding
def _write_attrs(target: h5py.HLObject, encoded: Mapping[str, Mapping[str, Any]] | None) -> None:
    """Set attributes encoded by `encode_attrs` on an HDF5 object."""
    for name, raw in (encoded or {}).items():
        target.attrs[name] = decode_attr(raw)


def default_version_name(path: str | os.PathLike) -> str:
    """Version name an import of `path` uses by default: the file stem, made into a valid name."""
    stem = Path(path).stem
    name = re.sub(r"[^A-Za-z0-9_.\-]+", "_", stem).replace("..", "_").lstrip("_.-")
    return name[:200] or "robomimic"


# ============================================================================ import
def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (read in blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(8 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _import_of(store: "Store", sha: str) -> str | None:
    """Name of the version of an earlier import of this content (sha256), if any."""
    return version_of_import(store, IMPORT_RULE_KIND, sha)


def _committed_demos(store: "Store", sha: str) -> dict[str, str]:
    """demo name -> episode id of episodes already committed from the file with this sha256."""
    return {str(record.get("demo")): eid
            for eid, record in committed_import_records(store, META_KEY, sha, sha_field="file_sha256")}


def import_robomimic(
    store: "Store",
    path: str | os.PathLike,
    *,
    task: str | None = None,
    source: str = "import",
    version: str | None = None,
    progress: bool = True,
) -> ImportResult:
    """Import a robomimic HDF5 file: one episode per demo, all-or-nothing, plus an all-demos and per-mask versions.

    Importing a file imported before (same content) changes nothing and returns the earlier import with
    `already_imported=True`.
    """
    path = Path(path)
    file_label = str(path)
    with open_h5(path) as f:
        try:
            plan = inspect_file(f, file_label)
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            raise ImportFormatError(f"{file_label}: cannot read the file's layout (corrupt file?): {exc}") from exc
        sha = file_sha256(path)
        earlier = _import_of(store, sha)
        if earlier is not None and version not in (None, earlier):
            log.warning("%s was imported before as version %s; version=%r is ignored", path, earlier, version)
        version = earlier or (version if version is not None else default_version_name(path))
        mask_versions = {key: f"{version}/mask/{key}" for key in plan.masks if plan.masks[key]}
        if earlier is not None:
            missing = {k: n for k, n in mask_versions.items() if not store.has_version(n)}
            if not missing:
                return _earlier_import(store, earlier, path)
            log.warning("%s: completing an earlier, interrupted import (version %s exists, writing its filter-key "
                        "versions %s)", file_label, earlier, sorted(missing.values()))
            mask_versions = missing
        else:
            check_names_free(store, [version, *mask_versions.values()], "import with another version= name")
        if task is None and isinstance(plan.env_args, dict) and isinstance(plan.env_args.get("env_name"), str):
            task = plan.env_args["env_name"]

        names = [d.name for d in plan.demos]
        done = dict(zip(names, store.version(earlier).episode_ids)) if earlier else _committed_demos(store, sha)
        if done:  # an earlier import of this file committed its episodes but died before making all its versions
            if sorted(done) != sorted(names):
                raise StoreError(
                    f"{file_label}: {len(done)} of its {len(names)} demos are already in the store (not from one "
                    "complete import of this file); nothing was changed"
                )
            if earlier is None:
                log.warning("%s: completing an earlier, interrupted import of this file (its %d episodes are "
                            "committed; writing its versions now)", file_label, len(done))
            episode_ids = [done[name] for name in names]
        else:
            episode_ids = _write_demos(store, f, plan, path, sha, source, task, progress)
    # every episode is committed now (all at once); versions refer to them
    by_demo = dict(zip(names, episode_ids))
    n_frames = sum(d.length for d in plan.demos)
    rule = {
        "kind": IMPORT_RULE_KIND,
        "file": path.name,
        "sha256": sha,
        "env_args": plan.env_args,
        "data_attrs": plan.data_attrs,
        "file_attrs": plan.file_attrs,
        "masks": list(plan.masks),
        "mask_formats": plan.mask_formats,
    }
    if earlier is None:
        store.create_version(version, episode_ids,
                             message=f"robomimic import of {path.name} ({len(episode_ids)} demos)", rule=rule)
    created = [version]
    for key, name in mask_versions.items():
        store.create_version(
            name, [by_demo[d] for d in plan.masks[key]], parents=[version],
            message=f"robomimic filter key {key!r} of {path.name}",
            rule={"kind": MASK_RULE_KIND, "file": path.name, "filter_key": key},
        )
        created.append(name)
    log.info("imported %d demos (%d frames) from %s as version %s", len(episode_ids), n_frames, path, version)
    all_versions = [version, *(f"{version}/mask/{key}" for key in plan.masks if plan.masks[key])]
    return ImportResult(episode_ids=episode_ids, versions=all_versions, n_frames=n_frames)


def _write_demos(store: "Store", f: h5py.File, plan: FilePlan, path: Path, sha: str, source: str,
                 task: str | None, progress: bool) -> list[str]:
    """Write every demo through one commit batch (one writer per array layout); returns ids in demo order."""
    episode_ids: list[str] = []
    with store.commit_batch() as batch:
        writers: dict[tuple[Any, ...], "EpisodeWriter"] = {}
        for demo in tqdm(plan.demos, desc=f"import {path.name}", unit="demo", disable=not progress):
            arrays = read_demo(f["data"][demo.name], demo, str(path))
            writer = writers.get(demo.signature)
            if writer is None:
                writer = writers[demo.signature] = batch.writer(source=source, task=task)
            meta: dict[str, Any] = {"source_name": demo.name,
                                    META_KEY: {**demo.record, "file": path.name, "file_sha256": sha}}
            states = arrays.get("states")
            if states is not None and states.ndim == 2:
                meta["init_state"] = states[0]
            episode_ids.append(writer.add_episode(arrays, model_xml=demo.model_xml, **meta))
    return episode_ids


def _earlier_import(store: "Store", name: str, path: Path) -> ImportResult:
    """The result of an earlier import of the same file (nothing is written)."""
    ver = store.version(name)
    masks = sorted(_default_masks(store, name).values())
    log.warning("%s was imported before as version %s (same sha256): nothing to do", path, name)
    return ImportResult(episode_ids=ver.episode_ids, versions=[name, *masks], n_frames=ver.n_frames,
                        already_imported=True)


# ============================================================================ export
def _import_rule(store: "Store", version: "Version") -> dict[str, Any] | None:
    """The robomimic import rule of `version` or its nearest ancestor, if any."""
    queue, seen = [version.name], set()
    while queue:
        name = queue.pop(0)
        if name in seen or not store.has_version(name):
            continue
        seen.add(name)
        found = version if name == version.name else store.version(name)
        if found.rule and found.rule.get("kind") == IMPORT_RULE_KIND:
            return found.rule
        queue.extend(found.parents)
    return None


def _mask_names(entries: list[str], fmt: Mapping[str, Any] | None) -> np.ndarray:
    """Mask dataset contents in the recorded on-disk format when it fits, else robomimic's usual 'S' strings."""
    if fmt and fmt.get("vlen"):
        return np.array(entries, dtype=h5py.string_dtype())
    encoded = [e.encode() for e in entries]
    if fmt and "dtype" in fmt:
        dtype = np.dtype(fmt["dtype"])
        if dtype.kind == "S" and all(len(e) <= dtype.itemsize for e in encoded):
            return np.array(encoded, dtype=dtype)
    return np.array(encoded, dtype="S") if encoded else np.zeros(0, dtype="S1")


def _choose_names(items: list[dict[str, Any]]) -> list[str]:
    """Original demo names when every demo is a whole imported episode with a unique name, else demo_<i>."""
    originals = [it["record"].get("demo") if it["record"] and it["whole"] else None for it in items]
    if all(originals) and len(set(originals)) == len(originals):
        return [str(n) for n in originals]
    return [f"demo_{i}" for i in range(len(items))]


def _default_masks(store: "Store", version: str) -> dict[str, str]:
    """Filter key -> version name for the versions named '<version>/mask/<key>'."""
    prefix = f"{version}/mask/"
    names = store.versions()["name"].tolist()
    return {n[len(prefix):]: n for n in names if n.startswith(prefix)}


def _write_demo(data_group: h5py.Group, name: str, arrays: Mapping[str, np.ndarray], record: Mapping[str, Any] | None,
                model_xml: str | None, length: int) -> None:
    """Write one demo group: datasets with their recorded settings, then attrs."""
    record = record or {}
    grp = data_group.create_group(name)
    for sub in record.get("groups", []):
        grp.require_group(sub)
    ds_records = record.get("datasets", {})
    for key, arr in arrays.items():
        rec = ds_records.get(key, {})
        kwargs = {k: rec[k] for k in ("compression", "compression_opts", "shuffle", "fletcher32") if k in rec}
        ds = grp.create_dataset(key, data=arr, **kwargs)
        _write_attrs(ds, rec.get("attrs"))
    for sub, attrs in record.get("group_attrs", {}).items():
        _write_attrs(grp.require_group(sub), attrs)
    attrs = dict(record.get("attrs", {}))
    num_fmt = attrs.pop(NUM_SAMPLES_ATTR, None)
    num_dtype = np.dtype(num_fmt["dtype"]) if num_fmt and num_fmt.get("t") == "scalar" else np.dtype(np.int64)
    _write_attrs(grp, attrs)
    grp.attrs[NUM_SAMPLES_ATTR] = np.array(length, dtype=num_dtype)[()]
    if model_xml is not None:
        grp.attrs[MODEL_FILE_ATTR] = model_xml
    elif record.get("has_model_file"):
        grp.attrs[MODEL_FILE_ATTR] = ""


#: Export temp files are named `.<out name>.sime-export-<id>.tmp` beside the output and OS-locked while written.
_EXPORT_TMP_INFIX = ".sime-export-"
_EXPORT_TMP_SUFFIX = ".tmp"


class _ExportTemp:
    """The hidden temp file an export writes before publishing; locked so other exports know it is in use."""

    def __init__(self, path: Path) -> None:
        self.path = path.with_name(f".{path.name}{_EXPORT_TMP_INFIX}{uuid.uuid4().hex[:8]}{_EXPORT_TMP_SUFFIX}")
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        lock_fd(self._fd)

    def release(self) -> None:
        """Remove the temp file if it is still there and drop the lock."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def remove_stale_export_temps(directory: Path, name: str | None = None) -> list[Path]:
    """Delete temp files of exports into `directory` whose process is gone (their lock is free); returns them."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    for entry in entries:
        ours = entry.name.startswith(".") and _EXPORT_TMP_INFIX in entry.name and entry.name.endswith(_EXPORT_TMP_SUFFIX)
        legacy = name is not None and re.fullmatch(rf"\.{re.escape(name)}\.tmp-[0-9a-f]{{8}}", entry.name) is not None
        if not (ours or legacy) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            if not lock_fd(fd, wait=False):
                continue  # an export that is still running
            os.unlink(entry.path)
        except OSError:
            continue  # already gone, or not ours to remove
        finally:
            os.close(fd)
        removed.append(Path(entry.path))
        log.warning("removed %s, left by an export that was killed", entry.path)
    return removed


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move the finished temp file into place (atomically; never replacing a file unless `overwrite`)."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(f"{path} already exists; pass overwrite=True (CLI: --overwrite) to replace it") from None
    except OSError:  # file systems without hard links
        if path.exists():
            raise FileExistsError(f"{path} already exists; pass overwrite=True (CLI: --overwrite) to replace it") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def export_robomimic(
    store: "Store",
    version: str,
    path: str | os.PathLike,
    *,
    masks: Mapping[str, str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> ExportResult:
    """Write a version as a robomimic HDF5 file: one demo per kept frame range, with attrs and filter-key masks."""
    path = Path(path)
    ver = store.version(version)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    mask_versions = dict(masks) if masks is not None else _default_masks(store, version)
    mask_members = {key: store.version(name).episode_ids for key, name in mask_versions.items()}

    table = store.episode_columns(["episode_id", "length", "task", "meta", "model_xml_sha", "keys"])
    rows = {r["episode_id"]: r for r in table.to_pylist()}
    items: list[dict[str, Any]] = []
    for eid, start, stop in ver.manifest.itertuples(index=False):
        row = rows[eid]
        if "actions" not in row["keys"]:
            raise ValueError(f"episode {eid} has no 'actions' array; robomimic files need one per demo")
        meta = json.loads(row["meta"]) if row["meta"] else {}
        items.append({"episode_id": eid, "start": int(start), "stop": int(stop), "record": meta.get(META_KEY),
                      "whole": int(start) == 0 and int(stop) == int(row["length"]), "row": row})
    names = _choose_names(items)

    rule = _import_rule(store, ver)
    data_attrs = dict(rule.get("data_attrs") or {}) if rule else {}
    file_attrs = dict(rule.get("file_attrs") or {}) if rule else {}
    total_fmt = data_attrs.pop("total", None)
    if "env_args" not in data_attrs:
        tasks = [it["row"]["task"] for it in items if it["row"]["task"]]
        env_name = max(set(tasks), key=tasks.count) if tasks else None
        data_attrs["env_args"] = encode_attr(json.dumps({"env_name": env_name, "type": 1, "env_kwargs": {}}))
    empty_masks: dict[str, dict[str, Any]] = {}
    mask_formats: dict[str, Any] = (rule or {}).get("mask_formats") or {}
    if masks is None and ver.rule and ver.rule.get("kind") == IMPORT_RULE_KIND:
        empty_masks = {k: v for k, v in mask_formats.items() if v.get("n") == 0 and k not in mask_versions}

    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_export_temps(path.parent, path.name)
    temp = _ExportTemp(path)
    tmp = temp.path
    xml_cache: dict[str, str | None] = {}
    n_frames = 0
    try:
        # HDF5's own file locking is off: the temp file is locked by `_ExportTemp` for as long as it is written
        with h5py.File(tmp, "w", locking=False) as f:
            _write_attrs(f, file_attrs)
            data_group = f.create_group("data")
            for it, name in tqdm(list(zip(items, names)), desc=f"export {path.name}", unit="demo", disable=not progress):
                sha = it["row"]["model_xml_sha"]
                if sha is not None and sha not in xml_cache:
                    xml_cache[sha] = store.model_xml(it["episode_id"])
                arrays = store.read_episode(it["episode_id"], start=it["start"], stop=it["stop"])
                length = it["stop"] - it["start"]
                _write_demo(data_group, name, arrays, it["record"], xml_cache.get(sha) if sha else None, length)
                n_frames += length
            _write_attrs(data_group, data_attrs)
            total_dtype = np.dtype(total_fmt["dtype"]) if total_fmt and total_fmt.get("t") == "scalar" else np.dtype(np.int64)
            data_group.attrs["total"] = np.array(n_frames, dtype=total_dtype)[()]
            if mask_versions or empty_masks:
                mask_group = f.create_group("mask")
                demos_of: dict[str, list[str]] = {}
                for it, name in zip(items, names):
                    demos_of.setdefault(it["episode_id"], []).append(name)
                for key, members in mask_members.items():
                    entries = [n for eid in members for n in demos_of.get(eid, [])]
                    mask_group.create_dataset(key, data=_mask_names(entries, mask_formats.get(key)))
                for key, fmt in empty_masks.items():
                    mask_group.create_dataset(key, data=_mask_names([], fmt))
        _publish(tmp, path, overwrite)
    finally:
        temp.release()
    log.info("exported version %s (%d demos, %d frames) to %s", version, len(items), n_frames, path)
    return ExportResult(path=path, n_demos=len(items), n_frames=n_frames, demo_names=names)
