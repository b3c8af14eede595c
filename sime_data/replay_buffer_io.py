"""Diffusion Policy ReplayBuffer interop: export a version as a DP replay-buffer Zarr, import one as episodes.

The layout, from Diffusion Policy's ``diffusion_policy/common/replay_buffer.py`` (github:real-stanford/
diffusion_policy, read at commit 5ba07ac): a Zarr group (written by zarr 2.x, so Zarr format 2: ``.zgroup``,
``.zarray``, ``.zattrs``) holding::

    data/<key>          one array per key, every episode concatenated along axis 0 (time); chunked in time only
    meta/episode_ends   int64, the cumulative end index of each episode (episode i is [ends[i-1], ends[i]))

``ReplayBuffer.__init__`` asserts ``data``, ``meta`` and ``meta/episode_ends`` exist and that every data array
has ``episode_ends[-1]`` rows. ``create_empty_zarr`` and ``_convert_robomimic_to_replay``
(``dataset/robomimic_replay_image_dataset.py``) write ``episode_ends`` without a compressor; ``add_episode``
and ``save_to_store`` compress data with ``resolve_compressor('default')`` = ``Blosc(cname='lz4', clevel=5,
shuffle=NOSHUFFLE)`` in chunks sized by ``get_optimal_chunks`` (about 2 MB, ``target_chunk_bytes=2e6``). DP
also reads the same layout from a ``.zarr.zip`` (``zarr.ZipStore``, e.g. the robomimic image dataset cache).

Export writes exactly that (Zarr format 2, via zarr 3's ``zarr_format=2``): DP's default Blosc-lz4 on data,
time-only chunks of about 2 MB, ``episode_ends`` int64 uncompressed in one chunk; a path ending in ``.zip``
is written as a zip store. Key names follow DP's robomimic and real-robot datasets (``_convert_robomimic_to_replay``
stores ``obs/<k>`` as ``<k>`` and ``actions`` as ``action``; ``real_world/real_env.py`` records ``timestamp``)::

    store key          replay-buffer key
    actions            action
    obs/<k>            <k>            ('/' inside <k> becomes '.': DP keys are flat)
    timestamps         timestamp
    anything else      the same name  (rewards, dones, states, ...; '/' becomes '.')

The root group's ``sime`` attribute (ignored by DP) records the exact key mapping, the exported version and,
per episode, its source episode id, frame range, success, init_state_id and trial, plus the model XML of each
simulator model, so importing an export restores the store keys, metadata and models. A foreign replay buffer
(no such attribute) maps ``action`` -> ``actions``, ``timestamp`` -> ``timestamps``, ``rewards``/``dones``/
``states`` to themselves and every other key ``<k>`` -> ``obs/<k>``.

Import is all-or-nothing (one commit batch, like the robomimic importer), records the sha256 of the buffer's
content (every array's name, dtype, shape and bytes, the episode ends and the metadata used: the same buffer as
a directory or a zip has the same hash) in each episode's ``meta`` and in the version's rule, so importing the
same content again is a no-op, and an import killed after its commit is completed instead of duplicated.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numcodecs
import numpy as np
import zarr
from tqdm.auto import tqdm

from .errors import EmptyVersionError, ImportFormatError, InvalidNameError, StoreError, UnknownKeyError
from .processes import lock_fd
from .robomimic_io import _ExportTemp, _publish, default_version_name, remove_stale_export_temps
from .schema import check_array_key
from .segment import SUPPORTED_KINDS, KeySpec
from .versions import check_names_free
from .import_records import committed_import_records, version_of_import

if TYPE_CHECKING:  # pragma: no cover
    from .store import Store

log = logging.getLogger(__name__)

#: Rule `kind` of the version an import creates.
IMPORT_RULE_KIND = "replay_buffer_import"
#: Key of the episode `meta` JSON naming the buffer (sha256) and episode an imported episode came from.
META_KEY = "replay_buffer"
#: Root-group attribute holding what an exact re-import needs (ignored by Diffusion Policy).
SIME_ATTR = "sime"
SIME_FORMAT = "sime.replay_buffer"
#: Store keys with a Diffusion Policy name of their own; every other key keeps its name (minus 'obs/').
DP_NAMES = {"actions": "action", "timestamps": "timestamp"}
#: Replay-buffer keys a foreign import keeps as top-level store keys (the rest become 'obs/<k>').
_STORE_LEVEL = {"rewards", "dones", "states"}
#: Diffusion Policy's default data compressor (`ReplayBuffer.resolve_compressor('default')`).
DP_COMPRESSOR = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.NOSHUFFLE)
#: Diffusion Policy's chunk size target (`get_optimal_chunks(target_chunk_bytes=2e6)`).
TARGET_CHUNK_BYTES = 2_000_000
#: Rows read at once (rounded to whole chunks) when hashing and importing.
_READ_BLOCK_BYTES = 16 << 20
_TMP_INFIX = ".sime-export-"
_TMP_SUFFIX = ".tmp"


# ============================================================================ results
@dataclass
class ReplayBufferExport:
    """What `export_replay_buffer` wrote: path, episodes, frames and the key mapping (buffer key -> store key)."""

    path: Path
    n_episodes: int
    n_frames: int
    keys: dict[str, str] = field(default_factory=dict)


@dataclass
class ReplayBufferImport:
    """What `import_replay_buffer` created: episode ids (buffer order), the version, frames and the key mapping."""

    episode_ids: list[str]
    version: str
    n_frames: int
    keys: dict[str, str] = field(default_factory=dict)
    #: True when the same content had been imported before and nothing was written
    already_imported: bool = False


# ============================================================================ key names
def replay_buffer_key(store_key: str) -> str:
    """Diffusion Policy name of a store key ('actions' -> 'action', 'obs/object' -> 'object')."""
    if store_key in DP_NAMES:
        return DP_NAMES[store_key]
    name = store_key[4:] if store_key.startswith("obs/") else store_key
    return name.replace("/", ".")


def default_store_key(name: str) -> str:
    """Store key of a foreign replay-buffer key ('action' -> 'actions', 'rewards' -> 'rewards', 'img' -> 'obs/img')."""
    inverse = {dp: key for key, dp in DP_NAMES.items()}
    if name in inverse:
        return inverse[name]
    return name if name in _STORE_LEVEL else f"obs/{name}"


# ============================================================================ export
def _version_keys(store: "Store", items: list[dict[str, Any]], keys: Sequence[str] | None) -> list[str]:
    """The store keys to export: the given ones (every episode must have them) or those all episodes share."""
    if keys is not None:
        wanted = list(dict.fromkeys(keys))
        for it in items:
            missing = [k for k in wanted if k not in it["row"]["keys"]]
            if missing:
                raise UnknownKeyError(f"episode {it['episode_id']} has no array(s) {missing}; it has "
                                      f"{sorted(it['row']['keys'])}")
        return wanted
    common = set(items[0]["row"]["keys"])
    every: set[str] = set()
    for it in items:
        common &= set(it["row"]["keys"])
        every |= set(it["row"]["keys"])
    if every - common:
        log.warning("not exported: key(s) %s, which only some episodes of the version have (pass keys=... to choose)",
                    sorted(every - common))
    return sorted(common)


def _key_specs(store: "Store", items: list[dict[str, Any]], keys: list[str]) -> dict[str, KeySpec]:
    """Per-step shape and dtype of each key; ValueError when episodes disagree (they are concatenated)."""
    specs: dict[str, KeySpec] = {}
    first: dict[str, str] = {}
    for it in items:
        seg_specs = store.segment_keys(it["row"]["segment"])
        for key in keys:
            spec = seg_specs[key]
            if key not in specs:
                specs[key], first[key] = spec, it["episode_id"]
            elif spec != specs[key]:
                raise ValueError(
                    f"{key!r} has shape {spec.shape} dtype {np.dtype(spec.dtype)} in episode {it['episode_id']} but "
                    f"{specs[key].shape} {np.dtype(specs[key].dtype)} in episode {first[key]}: a replay buffer "
                    "concatenates episodes, so every episode needs the same per-step shape and dtype")
    return specs


def _chunk_rows(spec: KeySpec, total: int) -> int:
    """Rows per chunk: time-only chunks of about TARGET_CHUNK_BYTES (whole steps), at most `total`."""
    row_bytes = int(np.prod(spec.shape, dtype=np.int64)) * np.dtype(spec.dtype).itemsize
    rows = TARGET_CHUNK_BYTES // row_bytes if row_bytes else total
    return int(max(1, min(total, rows)))


class _ChunkedAppender:
    """Appends rows to a Zarr array, writing only whole chunks (and the last, partial one at `close`)."""

    def __init__(self, array: Any, chunk_rows: int) -> None:
        self.array, self.chunk_rows = array, chunk_rows
        self.pending: list[np.ndarray] = []
        self.pending_rows = 0
        self.written = 0

    def append(self, rows: np.ndarray) -> None:
        """Queue rows; write every chunk that is now complete."""
        self.pending.append(rows)
        self.pending_rows += len(rows)
        if self.pending_rows >= self.chunk_rows:
            block = np.concatenate(self.pending)
            full = (len(block) // self.chunk_rows) * self.chunk_rows
            self.array[self.written:self.written + full] = block[:full]
            self.written += full
            rest = block[full:]
            self.pending, self.pending_rows = ([rest] if len(rest) else []), len(rest)

    def close(self) -> None:
        """Write what is left."""
        if self.pending_rows:
            block = np.concatenate(self.pending)
            self.array[self.written:self.written + len(block)] = block
            self.written += len(block)
            self.pending, self.pending_rows = [], 0


def _episode_record(it: Mapping[str, Any]) -> dict[str, Any]:
    """What the `sime` attribute keeps about one exported episode."""
    row = it["row"]
    return {"episode_id": it["episode_id"], "frame_start": it["start"], "frame_stop": it["stop"],
            "success": row["success"], "init_state_id": row["init_state_id"], "trial": row["trial"],
            "task": row["task"], "source": row["source"], "model_xml_sha": row["model_xml_sha"]}


def _tmp_name(path: Path) -> Path:
    """Hidden temp path beside `path` that an export writes before publishing."""
    return path.with_name(f".{path.name}{_TMP_INFIX}{uuid.uuid4().hex[:8]}{_TMP_SUFFIX}")


class _ExportTempDir:
    """A hidden temp directory an export writes into, OS-locked (on its own fd) while the export runs."""

    def __init__(self, path: Path) -> None:
        self.path = _tmp_name(path)
        self.path.mkdir()
        self._fd: int | None = os.open(self.path, os.O_RDONLY)
        lock_fd(self._fd)

    def release(self) -> None:
        """Remove the temp directory if it is still there and drop the lock."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def remove_stale_export_dirs(directory: Path) -> list[Path]:
    """Delete temp directories of replay-buffer exports into `directory` whose process is gone; returns them."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    for entry in entries:
        ours = entry.name.startswith(".") and _TMP_INFIX in entry.name and entry.name.endswith(_TMP_SUFFIX)
        if not ours or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY)
        except OSError:
            continue
        try:
            if not lock_fd(fd, wait=False):
                continue  # an export that is still running
            shutil.rmtree(entry.path)
        except OSError:
            continue
        finally:
            os.close(fd)
        removed.append(Path(entry.path))
        log.warning("removed %s, left by an export that was killed", entry.path)
    return removed


def _publish_dir(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move the finished temp directory into place; an existing path is replaced only when `overwrite`."""
    exists = os.path.lexists(path)
    if exists and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    old = path.with_name(f".{path.name}.sime-replaced-{uuid.uuid4().hex[:8]}") if exists else None
    if old is not None:
        os.rename(path, old)
    try:
        os.rename(tmp, path)
    except OSError as exc:
        if old is not None:
            os.rename(old, path)
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise FileExistsError(f"{path} was created by someone else meanwhile; nothing was replaced") from None
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()


def export_replay_buffer(
    store: "Store",
    version: str,
    out_path: str | os.PathLike,
    *,
    keys: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> ReplayBufferExport:
    """Write a version (trims applied, manifest order) as a Diffusion Policy replay buffer (Zarr v2 dir or .zip).

    `keys` are store keys to export (default: every key all the version's episodes have); 'actions' is required.
    """
    path = Path(out_path)
    ver = store.version(version)
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    table = store.episode_columns(["episode_id", "segment", "length", "task", "source", "success",
                                           "init_state_id", "trial", "model_xml_sha", "keys"])
    rows = {r["episode_id"]: r for r in table.to_pylist()}
    items = [{"episode_id": eid, "start": int(start), "stop": int(stop), "row": rows[eid]}
             for eid, start, stop in ver.manifest.itertuples(index=False) if int(stop) > int(start)]
    if not items:
        raise EmptyVersionError(f"version {version!r} keeps no frames: nothing to export")
    store_keys = _version_keys(store, items, keys)
    if "actions" not in store_keys:
        raise ValueError(f"a replay buffer needs 'actions' (exported as 'action'); the keys to export are {store_keys}")
    specs = _key_specs(store, items, store_keys)
    names: dict[str, str] = {}
    for key in store_keys:
        name = replay_buffer_key(key)
        if name in names:
            raise ValueError(f"store keys {names[name]!r} and {key!r} would both be exported as {name!r}; "
                             "pass keys=... without one of them")
        names[name] = key
    ends = np.cumsum([it["stop"] - it["start"] for it in items], dtype=np.int64)
    total = int(ends[-1])
    xmls = {}
    for it in items:
        sha = it["row"]["model_xml_sha"]
        if sha is not None and sha not in xmls:
            xmls[sha] = store.model_xml(it["episode_id"])
    tasks = [it["row"]["task"] for it in items if it["row"]["task"]]
    attrs = {SIME_ATTR: {"format": SIME_FORMAT, "format_version": 1, "version": version,
                         "task": Counter(tasks).most_common(1)[0][0] if tasks else None,
                         "keys": names, "episodes": [_episode_record(it) for it in items], "model_xml": xmls}}

    path.parent.mkdir(parents=True, exist_ok=True)
    as_zip = path.name.endswith(".zip")
    if as_zip:
        remove_stale_export_temps(path.parent, path.name)
        temp: _ExportTemp | _ExportTempDir = _ExportTemp(path)
    else:
        remove_stale_export_dirs(path.parent)
        temp = _ExportTempDir(path)
    try:
        zstore = (zarr.storage.ZipStore(temp.path, mode="w") if as_zip
                  else zarr.storage.LocalStore(temp.path))
        try:
            _write_buffer(zstore, store, items, names, specs, ends, attrs, path.name, progress)
        finally:
            zstore.close()
        if as_zip:
            _publish(temp.path, path, overwrite)
        else:
            _publish_dir(temp.path, path, overwrite)
    finally:
        temp.release()
    log.info("exported version %s (%d episodes, %d frames) as a replay buffer to %s", version, len(items), total, path)
    return ReplayBufferExport(path=path, n_episodes=len(items), n_frames=total, keys=dict(names))


def _write_buffer(zstore: Any, store: "Store", items: list[dict[str, Any]], names: Mapping[str, str],
                  specs: Mapping[str, KeySpec], ends: np.ndarray, attrs: dict[str, Any], label: str,
                  progress: bool) -> None:
    """Write data/<key> (streamed, episode by episode, whole chunks at a time) and meta/episode_ends."""
    total = int(ends[-1])
    # "w-", not "w": clearing would replace the (locked) temp directory or file with a new one
    root = zarr.open_group(zstore, mode="w-", zarr_format=2, attributes=attrs)
    data = root.create_group("data")
    meta = root.create_group("meta")
    appenders = {}
    for name, key in names.items():
        spec = specs[key]
        rows = _chunk_rows(spec, total)
        array = data.create_array(name, shape=(total, *spec.shape), chunks=(rows, *spec.shape),
                                  dtype=np.dtype(spec.dtype), compressors=DP_COMPRESSOR)
        appenders[key] = _ChunkedAppender(array, rows)
    episode_ends = meta.create_array("episode_ends", shape=ends.shape, chunks=ends.shape, dtype=np.int64,
                                     compressors=None)
    episode_ends[:] = ends
    for it in tqdm(items, desc=f"export {label}", unit="episode", disable=not progress):
        arrays = store.read_episode(it["episode_id"], keys=list(names.values()), start=it["start"], stop=it["stop"])
        for key, appender in appenders.items():
            appender.append(arrays[key])
    for appender in appenders.values():
        appender.close()


# ============================================================================ import: inspection
@dataclass
class _BufferPlan:
    """A validated replay buffer: its arrays (buffer key -> zarr array), store keys, episode ends and metadata."""

    label: str
    arrays: dict[str, Any]
    keys: dict[str, str]
    ends: np.ndarray
    episodes: list[dict[str, Any]] | None
    model_xml: dict[str, str]

    @property
    def bounds(self) -> list[tuple[int, int]]:
        """[start, stop) of each episode."""
        starts = np.concatenate([[0], self.ends[:-1]])
        return [(int(a), int(b)) for a, b in zip(starts, self.ends)]


def _open_buffer(path: Path) -> tuple[Any, Any]:
    """(zarr root group, store to close) of a replay buffer directory or zip; ImportFormatError if it is neither."""
    if not os.path.lexists(path):
        raise FileNotFoundError(f"no such replay buffer: {path}")
    zstore: Any = None
    try:
        if path.is_file():
            if not zipfile.is_zipfile(path):
                raise ImportFormatError(f"{path}: a file that is not a zip archive; a replay buffer is a Zarr "
                                        "directory or a .zarr.zip")
            zstore = zarr.storage.ZipStore(path, mode="r")
        else:
            zstore = zarr.storage.LocalStore(path, read_only=True)
        return zarr.open_group(zstore, mode="r"), zstore
    except ImportFormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - zarr raises many kinds for "not a group"
        if zstore is not None:
            zstore.close()
        raise ImportFormatError(f"{path}: cannot be opened as a Zarr group (v2 or v3): {exc}") from exc


def _members(group: Any, where: str, label: str) -> tuple[dict[str, Any], list[str]]:
    """Arrays and subgroup names of a group (ImportFormatError if its metadata cannot be read)."""
    try:
        members = dict(group.members())
    except Exception as exc:  # noqa: BLE001 - unknown codecs, damaged metadata, ...
        raise ImportFormatError(f"{label}: cannot read the members of {where} (damaged metadata or a compressor "
                                f"that is not installed?): {exc}") from exc
    arrays = {n: m for n, m in members.items() if isinstance(m, zarr.Array)}
    groups = sorted(n for n, m in members.items() if isinstance(m, zarr.Group))
    return arrays, groups


def _check_ends(raw: Any, n_rows: int | None, label: str) -> np.ndarray:
    """Validated episode ends: 1-D integers, strictly increasing from > 0, ending at the data's length."""
    if raw.ndim != 1 or np.dtype(raw.dtype).kind not in "iu":
        raise ImportFormatError(f"{label}: meta/episode_ends must be a 1-D integer array, found shape {raw.shape} "
                                f"dtype {raw.dtype}")
    try:
        ends = np.asarray(raw[:]).astype(np.int64)
    except Exception as exc:  # noqa: BLE001
        raise ImportFormatError(f"{label}: cannot read meta/episode_ends: {exc}") from exc
    if len(ends) == 0:
        raise ImportFormatError(f"{label}: meta/episode_ends is empty: the replay buffer holds no episodes")
    if ends[0] <= 0:
        raise ImportFormatError(f"{label}: meta/episode_ends[0] = {ends[0]}: the first episode would be empty "
                                "(each end is the cumulative number of frames, so it must be > 0)")
    steps = np.diff(ends)
    if (steps <= 0).any():
        i = int(np.argmax(steps <= 0)) + 1
        raise ImportFormatError(
            f"{label}: meta/episode_ends is not strictly increasing: episode_ends[{i}] = {ends[i]} after "
            f"episode_ends[{i - 1}] = {ends[i - 1]} (cumulative ends of non-empty episodes must increase)")
    if n_rows is not None and ends[-1] != n_rows:
        where = "past the end of" if ends[-1] > n_rows else "short of the end of"
        raise ImportFormatError(
            f"{label}: meta/episode_ends[-1] = {ends[-1]} is {where} the data arrays ({n_rows} frames); out of range "
            "(Diffusion Policy requires every data array to have episode_ends[-1] rows)")
    return ends


def _sime_metadata(root: Any, names: Sequence[str], ends: np.ndarray, label: str
                   ) -> tuple[dict[str, str], list[dict[str, Any]] | None, dict[str, str]]:
    """Key mapping, per-episode metadata and model XMLs from an export's `sime` attribute (defaults when absent)."""
    keys = {name: default_store_key(name) for name in names}
    raw = dict(root.attrs).get(SIME_ATTR)
    if raw is None:
        return keys, None, {}
    if not isinstance(raw, dict) or raw.get("format") != SIME_FORMAT:
        log.warning("%s: ignoring the root attribute %r (not written by this toolkit)", label, SIME_ATTR)
        return keys, None, {}
    mapping = raw.get("keys")
    if isinstance(mapping, dict):
        for name in names:
            if isinstance(mapping.get(name), str):
                keys[name] = mapping[name]
    episodes = raw.get("episodes")
    lengths = np.diff(np.concatenate([[0], ends]))
    if not (isinstance(episodes, list) and len(episodes) == len(ends) and all(
            isinstance(e, dict) and isinstance(e.get("frame_start"), int) and isinstance(e.get("frame_stop"), int)
            and e["frame_stop"] - e["frame_start"] == n for e, n in zip(episodes, lengths))):
        if episodes is not None:
            log.warning("%s: the episode metadata in attribute %r does not match meta/episode_ends (edited after "
                        "export?); importing without it", label, SIME_ATTR)
        episodes = None
    xmls = raw.get("model_xml") if isinstance(raw.get("model_xml"), dict) else {}
    xmls = {sha: xml for sha, xml in xmls.items()
            if isinstance(xml, str) and hashlib.sha256(xml.encode()).hexdigest() == sha}
    return keys, episodes, xmls


def _inspect(root: Any, label: str) -> _BufferPlan:
    """Validate a replay buffer's layout (no bulk data read) and work out its store keys and metadata."""
    if "meta" not in root or not isinstance(root["meta"], zarr.Group):
        raise ImportFormatError(f"{label}: no 'meta' group with meta/episode_ends; not a Diffusion Policy replay "
                                f"buffer (top level: {sorted(root.keys())})")
    meta_arrays, _ = _members(root["meta"], "meta", label)
    if "episode_ends" not in meta_arrays:
        raise ImportFormatError(f"{label}: no meta/episode_ends array; not a Diffusion Policy replay buffer "
                                f"(meta holds {sorted(root['meta'].keys()) or 'nothing'})")
    if "data" not in root or not isinstance(root["data"], zarr.Group):
        raise ImportFormatError(f"{label}: no 'data' group; not a Diffusion Policy replay buffer "
                                f"(top level: {sorted(root.keys())})")
    arrays, groups = _members(root["data"], "data", label)
    if groups:
        raise ImportFormatError(f"{label}: data/{groups[0]} is a group; replay-buffer data holds one array per key")
    if not arrays:
        raise ImportFormatError(f"{label}: the data group holds no arrays")
    for name, arr in sorted(arrays.items()):
        dtype = np.dtype(arr.dtype)
        if dtype.kind not in SUPPORTED_KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise ImportFormatError(f"{label}: data/{name} has dtype {dtype}, not numeric: the store holds numbers "
                                    "and bools only")
        if arr.ndim == 0:
            raise ImportFormatError(f"{label}: data/{name} is a scalar; data arrays need a time axis")
    lengths = {name: int(arr.shape[0]) for name, arr in arrays.items()}
    if len(set(lengths.values())) > 1:
        listing = ", ".join(f"{n} {v}" for n, v in sorted(lengths.items()))
        raise ImportFormatError(f"{label}: the data arrays have different lengths ({listing}); every array of a "
                                "replay buffer holds one row per frame")
    if "action" not in arrays:
        raise ImportFormatError(f"{label}: no data/action array (the data group has {sorted(arrays)}); Diffusion "
                                "Policy replay buffers keep the actions under 'action'")
    ends = _check_ends(meta_arrays["episode_ends"], next(iter(lengths.values())), label)
    keys, episodes, xmls = _sime_metadata(root, sorted(arrays), ends, label)
    seen: dict[str, str] = {}
    for name, key in sorted(keys.items()):
        try:
            check_array_key(key)
        except InvalidNameError as exc:
            raise ImportFormatError(f"{label}: data/{name}: {exc}") from None
        if key in seen:
            raise ImportFormatError(f"{label}: data/{seen[key]} and data/{name} would both become store key {key!r}")
        seen[key] = name
    if keys["action"] != "actions":
        raise ImportFormatError(f"{label}: the 'sime' attribute maps data/action to {keys['action']!r}, not 'actions'")
    return _BufferPlan(label=label, arrays=dict(sorted(arrays.items())), keys=keys, ends=ends, episodes=episodes,
                       model_xml=xmls)


class _SequentialReader:
    """Reads consecutive row ranges of a Zarr array, decoding each block of whole chunks once."""

    def __init__(self, array: Any, name: str, label: str) -> None:
        self.array, self.name, self.label = array, name, label
        row_bytes = max(1, int(np.prod(array.shape[1:], dtype=np.int64)) * np.dtype(array.dtype).itemsize)
        chunk = int(array.chunks[0]) if array.chunks else 1
        self.block = chunk * max(1, _READ_BLOCK_BYTES // (chunk * row_bytes))
        self.lo = self.hi = 0
        self.buffer: np.ndarray | None = None

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as a new array."""
        parts = []
        while start < stop:
            if self.buffer is None or not self.lo <= start < self.hi:
                self.lo = start - start % self.block
                self.hi = min(self.lo + self.block, int(self.array.shape[0]))
                try:
                    self.buffer = np.asarray(self.array[self.lo:self.hi])
                except Exception as exc:  # noqa: BLE001 - damaged chunk, missing codec, ...
                    raise ImportFormatError(f"{self.label}: cannot read data/{self.name} rows {self.lo}..{self.hi} "
                                            f"(damaged chunk or a compressor that is not installed?): {exc}") from exc
            take = min(stop, self.hi) - start
            parts.append(self.buffer[start - self.lo:start - self.lo + take])
            start += take
        return np.concatenate(parts) if len(parts) > 1 else parts[0].copy()


def _content_sha(plan: _BufferPlan, progress: bool) -> str:
    """sha256 of the buffer's content: names, store keys, dtypes, shapes, bytes, episode ends, metadata used."""
    digest = hashlib.sha256(b"sime.replay_buffer.content.v1\0")
    n = int(plan.ends[-1])
    for name, arr in tqdm(plan.arrays.items(), desc=f"hash {Path(plan.label).name}", unit="key", disable=not progress):
        header = {"name": name, "key": plan.keys[name], "dtype": np.dtype(arr.dtype).str, "shape": list(arr.shape)}
        digest.update(json.dumps(header, sort_keys=True).encode() + b"\0")
        reader = _SequentialReader(arr, name, plan.label)
        for lo in range(0, n, reader.block):
            digest.update(np.ascontiguousarray(reader.read(lo, min(n, lo + reader.block))).tobytes())
    digest.update(plan.ends.astype("<i8").tobytes())
    extra = {"episodes": plan.episodes, "model_xml": sorted(plan.model_xml)}
    digest.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return digest.hexdigest()


# ============================================================================ import
def default_buffer_version(path: str | os.PathLike) -> str:
    """Version name an import of `path` uses by default: its name without .zip / .zarr, made valid."""
    base = re.sub(r"(\.zarr)?(\.zip)?$", "", Path(path).name) or "replay_buffer"
    return default_version_name(Path(base + ".zarr"))  # the stem of '<base>.zarr' is <base>


def _import_of(store: "Store", sha: str) -> str | None:
    """Name of the version of an earlier import of this content (sha256), if any."""
    return version_of_import(store, IMPORT_RULE_KIND, sha)


def _committed_episodes(store: "Store", sha: str) -> dict[int, str]:
    """Buffer episode index -> episode id of episodes already committed from content with this sha256."""
    return {record["episode"]: eid for eid, record in committed_import_records(store, META_KEY, sha)
            if isinstance(record.get("episode"), int)}


def _episode_meta(plan: _BufferPlan, index: int, sha: str) -> dict[str, Any]:
    """Metadata of the buffer's episode `index`: provenance, plus what an export recorded about it."""
    record: dict[str, Any] = {"sha256": sha, "episode": index}
    meta: dict[str, Any] = {}
    if plan.episodes is not None:
        src = plan.episodes[index]
        record["exported_from"] = {name: src.get(name) for name in ("episode_id", "source", "frame_start", "frame_stop")}
        if isinstance(src.get("success"), bool):
            meta["success"] = src["success"]
        if isinstance(src.get("init_state_id"), str):
            meta["init_state_id"] = src["init_state_id"]
        if isinstance(src.get("trial"), int) and not isinstance(src.get("trial"), bool):
            meta["trial"] = src["trial"]
        xml = plan.model_xml.get(src.get("model_xml_sha"))
        if xml is not None:
            meta["model_xml"] = xml
    meta[META_KEY] = record
    return meta


def _write_episodes(store: "Store", plan: _BufferPlan, sha: str, source: str, task: str | None,
                    progress: bool) -> list[str]:
    """Write every episode through one commit batch (one writer: all episodes share a layout); ids in order."""
    readers = {name: _SequentialReader(arr, name, plan.label) for name, arr in plan.arrays.items()}
    ids = []
    with store.commit_batch() as batch:
        writer = batch.writer(source=source, task=task)
        for index, (start, stop) in enumerate(tqdm(plan.bounds, desc=f"import {Path(plan.label).name}",
                                                   unit="episode", disable=not progress)):
            arrays = {plan.keys[name]: reader.read(start, stop) for name, reader in readers.items()}
            meta = _episode_meta(plan, index, sha)
            states = arrays.get("states")
            if states is not None and states.ndim == 2:
                meta["init_state"] = states[0]
            ids.append(writer.add_episode(arrays, **meta))
    return ids


def import_replay_buffer(
    store: "Store",
    path: str | os.PathLike,
    *,
    task: str | None,
    version: str | None = None,
    source: str = "replay_buffer",
    progress: bool = True,
) -> ReplayBufferImport:
    """Import a Diffusion Policy replay buffer (Zarr v2/v3 directory or .zarr.zip): one episode per buffer episode.

    All-or-nothing; creates one version holding every episode (default name: the path's name without
    .zarr/.zip). Importing content imported before changes nothing and returns that import with
    ``already_imported=True``.
    """
    path = Path(path)
    label = str(path)
    root, zstore = _open_buffer(path)
    try:
        try:
            plan = _inspect(root, label)
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise ImportFormatError(f"{label}: cannot read the replay buffer's layout (damaged?): {exc}") from exc
        sha = _content_sha(plan, progress)
        earlier = _import_of(store, sha)
        if earlier is not None:
            if version not in (None, earlier):
                log.warning("%s was imported before as version %s; version=%r is ignored", path, earlier, version)
            found = store.version(earlier)
            log.warning("%s was imported before as version %s (same content): nothing to do", path, earlier)
            return ReplayBufferImport(episode_ids=found.episode_ids, version=earlier, n_frames=found.n_frames,
                                      keys=dict(plan.keys), already_imported=True)
        name = version if version is not None else default_buffer_version(path)
        check_names_free(store, [name], "import with another version= name")
        done = _committed_episodes(store, sha)
        n_episodes = len(plan.ends)
        if done:  # an earlier import of this content committed its episodes but died before its version
            if sorted(done) != list(range(n_episodes)):
                raise StoreError(f"{label}: {len(done)} of its {n_episodes} episodes are already in the store (not from "
                                 "one complete import of this buffer); nothing was changed")
            log.warning("%s: completing an earlier, interrupted import (its %d episodes are committed; writing its "
                        "version now)", label, n_episodes)
            episode_ids = [done[i] for i in range(n_episodes)]
        else:
            episode_ids = _write_episodes(store, plan, sha, source, task, progress)
    finally:
        zstore.close()
    n_frames = int(plan.ends[-1])
    rule = {"kind": IMPORT_RULE_KIND, "file": path.name, "sha256": sha, "keys": plan.keys}
    store.create_version(name, episode_ids, message=f"replay buffer import of {path.name} ({n_episodes} episodes)",
                         rule=rule)
    log.info("imported %d episodes (%d frames) from %s as version %s", n_episodes, n_frames, path, name)
    return ReplayBufferImport(episode_ids=episode_ids, version=name, n_frames=n_frames, keys=dict(plan.keys))

