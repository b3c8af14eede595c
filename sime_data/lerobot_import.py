"""Import a LeRobot dataset directory (v3.0, or v2.1 / v2.0) into the store, all-or-nothing (without lerobot).

Every LeRobot episode becomes one store episode, written through one commit batch (nothing is visible unless
every episode was read and written), then one version holds them all. Features map back to store keys:
`action` -> `actions`, `observation.<key>` -> `obs/<key>`, `observation.images.<cam>` (video or image) ->
`obs/<cam>` uint8 (H, W, 3), `next.reward` / `next.done` -> `rewards` / `dones`, anything else by name. A dataset
written by `export_lerobot` carries `meta/sime.json`, which restores each array's exact key, per-step shape and
dtype (and skips the derived `observation.state`), and "sime/<column>" episode columns, which restore the
episodes' metadata (success, init_state_id, trial, round, branch, exploration settings, ...).

The directory's content hash (`lerobot_layout.content_sha256`: meta/ and data/ files, video names and sizes)
is recorded in each episode's `meta` (key "lerobot") and the version's rule, so importing the same directory
again changes nothing, and an import killed after its commit but before its version is completed instead of
duplicated. Layouts it does not understand raise ImportFormatError naming the file and the problem.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from . import lerobot_layout as L
from .errors import ImportFormatError, InvalidNameError, MetadataTypeError, StoreError
from .metadata_types import check_metadata_types
from .schema import RESERVED_COLUMNS, SETTABLE_COLUMNS, check_array_key
from .versions import check_names_free
from .import_records import committed_import_records, version_of_import

if TYPE_CHECKING:  # pragma: no cover
    from .store import Store
    from .writer import EpisodeWriter

log = logging.getLogger(__name__)

#: Rule `kind` of the version an import creates.
IMPORT_RULE_KIND = "lerobot_import"
#: Key of the episode `meta` JSON recording where an imported episode came from.
META_KEY = "lerobot"
#: Largest gap (s) between a frame's timestamp and a decoded video frame's time (LeRobot's tolerance_s).
TIMESTAMP_TOLERANCE_S = 1e-4
_REQUIRED_EPISODE_COLUMNS = ("episode_index", "length", "data/chunk_index", "data/file_index",
                             "dataset_from_index", "dataset_to_index")


@dataclass
class LeRobotImportResult:
    """What `import_lerobot` did: the version made, its episode ids (in LeRobot episode order) and frames."""

    directory: Path
    version: str
    episode_ids: list[str]
    n_frames: int
    codebase_version: str
    sha256: str
    #: True when this directory (same content hash) had been imported before and nothing was written
    already_imported: bool = False

    @property
    def n_episodes(self) -> int:
        """Number of episodes imported."""
        return len(self.episode_ids)

    def summary(self) -> str:
        """One line for people (what the CLI prints)."""
        if self.already_imported:
            return (f"{self.directory} was imported before as version {self.version} ({self.n_episodes} episodes, "
                    f"{self.n_frames} frames): nothing to do")
        return (f"imported {self.n_episodes} episodes ({self.n_frames} frames) from LeRobot {self.codebase_version} "
                f"dataset {self.directory} as version {self.version}")


# ============================================================================ plan
@dataclass
class _Source:
    """One LeRobot feature to import and the store array it becomes."""

    feature: str
    store_key: str
    kind: str  # "column", "video" or "image"
    dtype: np.dtype
    store_shape: tuple[int, ...]


@dataclass
class _Episode:
    """One LeRobot episode: its length, task(s), data file, frame range, videos and episode-row columns."""

    index: int
    length: int
    tasks: list[str]
    data_file: Path
    first_index: int
    videos: dict[str, tuple[Path, float, float | None]] = field(default_factory=dict)
    columns: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Plan:
    """Everything `import_lerobot` validated before writing anything."""

    directory: Path
    codebase_version: str
    fps: float
    sources: list[_Source]
    episodes: list[_Episode]
    tasks: dict[int, str]


def _read_info(directory: Path) -> dict[str, Any]:
    """meta/info.json, checked for the fields every LeRobot dataset has."""
    if not directory.is_dir():
        raise ImportFormatError(f"{directory}: not a directory (a LeRobot dataset is a directory with meta/info.json)")
    path = directory / L.INFO_PATH
    if not path.is_file():
        raise ImportFormatError(f"{directory}: no {L.INFO_PATH}, so this is not a LeRobot dataset directory")
    info = L.read_json(path, "LeRobot info")
    if not isinstance(info, dict):
        raise ImportFormatError(f"{path}: holds a {type(info).__name__}, not a JSON object")
    version = info.get("codebase_version")
    if version != L.CODEBASE_VERSION and version not in L.LEGACY_VERSIONS:
        raise ImportFormatError(f"{path}: unknown codebase_version {version!r}; this importer reads LeRobot "
                                f"{L.CODEBASE_VERSION} and {' / '.join(L.LEGACY_VERSIONS)} datasets")
    fps = info.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or fps <= 0:
        raise ImportFormatError(f"{path}: 'fps' must be a positive number, got {fps!r}")
    features = info.get("features")
    if not isinstance(features, dict) or not features:
        raise ImportFormatError(f"{path}: 'features' must be a non-empty object of feature definitions")
    for key in ("data_path", "total_episodes", "total_frames"):
        if key not in info:
            raise ImportFormatError(f"{path}: has no {key!r} field")
    return info


def _read_sime(directory: Path) -> dict[str, Any] | None:
    """meta/sime.json of a dataset written by `export_lerobot`, if present."""
    path = directory / L.SIME_PATH
    if not path.exists():
        return None
    data = L.read_json(path, "sime export metadata")
    if not isinstance(data, dict) or data.get("format") != L.SIME_FORMAT or not isinstance(data.get("features"), dict):
        raise ImportFormatError(f"{path}: is not sime export metadata (format {L.SIME_FORMAT!r} expected)")
    return data


def _frame_hw(name: str, ft: Mapping[str, Any], where: str) -> tuple[int, int]:
    """Height and width of a camera feature from its shape and names ((H, W, C), or (C, H, W) by names)."""
    shape = ft.get("shape")
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(x, int) and x > 0 for x in shape)):
        raise ImportFormatError(f"{where}: camera feature {name!r} has shape {shape!r}; three positive sizes expected")
    names = ft.get("names") or []
    if isinstance(names, list) and names and str(names[0]).startswith("channel"):
        channels, height, width = shape
    else:
        height, width, channels = shape
    if channels != 3:
        raise ImportFormatError(f"{where}: camera feature {name!r} has {channels} channels; only RGB (3) is imported")
    return height, width


def _plan_sources(info: Mapping[str, Any], sime: Mapping[str, Any] | None, where: str) -> list[_Source]:
    """Store arrays for the dataset's features (ImportFormatError for features the store cannot hold)."""
    mapping = (sime or {}).get("features") or {}
    derived = set((sime or {}).get("derived") or {})
    sources: list[_Source] = []
    for name, ft in info["features"].items():
        if name in L.DEFAULT_FEATURES or name in derived:
            continue
        if not isinstance(ft, dict) or "dtype" not in ft or "shape" not in ft:
            raise ImportFormatError(f"{where}: feature {name!r} needs 'dtype' and 'shape', got {ft!r}")
        ours = mapping.get(name) or {}
        store_key = ours.get("store_key") or L.store_key_for(name)
        try:
            check_array_key(store_key)
        except InvalidNameError as exc:
            raise ImportFormatError(f"{where}: feature {name!r} cannot become a store array: {exc}") from None
        kind = ft["dtype"]
        if kind in ("video", "image"):
            height, width = _frame_hw(name, ft, where)
            sources.append(_Source(name, store_key, kind, np.dtype(np.uint8), (height, width, 3)))
            continue
        try:
            dtype = np.dtype(kind)
        except TypeError:
            dtype = None
        if dtype is None or dtype.kind not in "biuf":
            raise ImportFormatError(f"{where}: feature {name!r} has dtype {kind!r}; the store holds numbers, bools, "
                                    "images and videos only (non-numeric features cannot be imported)")
        shape = ft["shape"]
        if not (isinstance(shape, list) and all(isinstance(x, int) and x >= 0 for x in shape)):
            raise ImportFormatError(f"{where}: feature {name!r} has shape {shape!r}; a list of sizes expected")
        size = int(np.prod(shape, dtype=np.int64))
        if ours:
            store_shape = tuple(int(x) for x in ours.get("shape", []))
            if np.dtype(ours.get("dtype", dtype)) != dtype or int(np.prod(store_shape, dtype=np.int64)) != size:
                raise ImportFormatError(f"{where}: {L.SIME_PATH} maps feature {name!r} to shape {store_shape} dtype "
                                        f"{ours.get('dtype')}, which does not fit its {kind} {shape}")
        elif store_key in ("rewards", "dones") and size == 1:
            store_shape = ()
        else:
            store_shape = tuple(shape)
        sources.append(_Source(name, store_key, "column", dtype, store_shape))
    keys = [s.store_key for s in sources]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ImportFormatError(f"{where}: several features map to the store key(s) {dup}")
    if not sources:
        raise ImportFormatError(f"{where}: no features to import (only bookkeeping columns)")
    return sources


def _read_parquet(path: Path, what: str, columns: list[str] | None = None) -> pa.Table:
    """A parquet file as a table, with ImportFormatError naming missing or unreadable files."""
    if not path.is_file():
        raise ImportFormatError(f"{path}: missing ({what})")
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ImportFormatError(f"{path}: cannot be read as parquet ({what}): {exc}") from None


def _plan_v3(directory: Path, info: Mapping[str, Any], sources: list[_Source]) -> tuple[list[_Episode], dict[int, str]]:
    """Episodes of a v3.0 dataset from meta/episodes and meta/tasks.parquet (files checked, not yet read)."""
    files = sorted((directory / L.EPISODES_DIR).glob("*/*.parquet"))
    if not files:
        raise ImportFormatError(f"{directory}: no {L.EPISODES_DIR}/chunk-*/file-*.parquet episode files")
    tables = []
    for path in files:
        try:
            names = pq.read_schema(path).names
        except (pa.ArrowException, OSError) as exc:
            raise ImportFormatError(f"{path}: cannot be read as parquet (episode metadata): {exc}") from None
        tables.append(_read_parquet(path, "episode metadata", [n for n in names if not n.startswith("stats/")]))
    try:
        table = pa.concat_tables(tables, promote_options="default")
    except pa.ArrowException as exc:
        raise ImportFormatError(f"{directory / L.EPISODES_DIR}: episode files do not share one schema: {exc}") from None
    video_columns = [f"videos/{s.feature}/{c}" for s in sources if s.kind == "video"
                     for c in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")]
    missing = [c for c in (*_REQUIRED_EPISODE_COLUMNS, *video_columns) if c not in table.column_names]
    if missing:
        raise ImportFormatError(f"{directory / L.EPISODES_DIR}: episode rows lack the column(s) {missing}")
    empty = [c for c in (*_REQUIRED_EPISODE_COLUMNS, *video_columns) if table[c].null_count]
    if empty:
        raise ImportFormatError(f"{directory / L.EPISODES_DIR}: episode rows have missing values in {empty}")
    if any(s.kind == "video" for s in sources) and not isinstance(info.get("video_path"), str):
        raise ImportFormatError(f"{directory / L.INFO_PATH}: has video features but no 'video_path' template")
    tasks_table = _read_parquet(directory / L.TASKS_PATH, "task list")
    task_col = "task" if "task" in tasks_table.column_names else "__index_level_0__"
    if "task_index" not in tasks_table.column_names or task_col not in tasks_table.column_names:
        raise ImportFormatError(f"{directory / L.TASKS_PATH}: needs 'task' and 'task_index' columns, "
                                f"has {tasks_table.column_names}")
    tasks = {int(i): str(t) for i, t in zip(tasks_table["task_index"].to_pylist(), tasks_table[task_col].to_pylist())}
    episodes = []
    for row in sorted(table.to_pylist(), key=lambda r: r["episode_index"]):
        ep = int(row["episode_index"])
        data_file = directory / _format(info["data_path"], directory, chunk_index=row["data/chunk_index"],
                                        file_index=row["data/file_index"])
        videos = {}
        for s in sources:
            if s.kind == "video":
                rel = _format(info["video_path"], directory, video_key=s.feature,
                              chunk_index=row[f"videos/{s.feature}/chunk_index"],
                              file_index=row[f"videos/{s.feature}/file_index"])
                videos[s.feature] = (directory / rel, float(row[f"videos/{s.feature}/from_timestamp"]),
                                     float(row[f"videos/{s.feature}/to_timestamp"]))
        episodes.append(_Episode(ep, int(row["length"]), list(row.get("tasks") or []), data_file,
                                 int(row["dataset_from_index"]), videos,
                                 {k: v for k, v in row.items() if k.startswith(L.SIME_COLUMN_PREFIX)}))
        if int(row["dataset_to_index"]) - int(row["dataset_from_index"]) != int(row["length"]):
            raise ImportFormatError(f"{directory / L.EPISODES_DIR}: episode {ep} has length {row['length']} but its "
                                    f"dataset index range is [{row['dataset_from_index']}, {row['dataset_to_index']})")
    return episodes, tasks


def _plan_v2(directory: Path, info: Mapping[str, Any], sources: list[_Source]) -> tuple[list[_Episode], dict[int, str]]:
    """Episodes of a v2.1 / v2.0 dataset from meta/episodes.jsonl and meta/tasks.jsonl."""
    chunks_size = info.get("chunks_size") or L.DEFAULT_CHUNK_SIZE
    rows = _read_jsonl(directory / L.LEGACY_EPISODES_PATH, "episode list")
    try:
        tasks = {int(r["task_index"]): str(r["task"])
                 for r in _read_jsonl(directory / L.LEGACY_TASKS_PATH, "task list", ("task_index", "task"))}
    except (TypeError, ValueError):
        raise ImportFormatError(f"{directory / L.LEGACY_TASKS_PATH}: task_index must be an integer") from None
    if any(s.kind == "video" for s in sources) and not isinstance(info.get("video_path"), str):
        raise ImportFormatError(f"{directory / L.INFO_PATH}: has video features but no 'video_path' template")
    try:
        rows = sorted(({**r, "episode_index": int(r["episode_index"]), "length": int(r["length"])} for r in rows),
                      key=lambda r: r["episode_index"])
    except (TypeError, ValueError):
        raise ImportFormatError(f"{directory / L.LEGACY_EPISODES_PATH}: episode_index and length must be integers") from None
    episodes, first = [], 0
    for row in rows:
        ep = row["episode_index"]
        chunk = ep // int(chunks_size)
        data_file = directory / _format(info["data_path"], directory, episode_chunk=chunk, episode_index=ep)
        videos = {s.feature: (directory / _format(info["video_path"], directory, episode_chunk=chunk,
                                                  video_key=s.feature, episode_index=ep), 0.0, None)
                  for s in sources if s.kind == "video"}
        episodes.append(_Episode(ep, int(row["length"]), list(row.get("tasks") or []), data_file, first, videos))
        first += int(row["length"])
    return episodes, tasks


def _read_jsonl(path: Path, what: str, required: tuple[str, ...] = ("episode_index", "length")) -> list[dict]:
    """Rows of a JSON-lines file, each an object with the `required` keys."""
    if not path.is_file():
        raise ImportFormatError(f"{path}: missing ({what})")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ImportFormatError(f"{path}: line {n} is not valid JSON ({exc})") from None
        if not isinstance(row, dict) or any(k not in row for k in required):
            raise ImportFormatError(f"{path}: line {n} needs the keys {list(required)}")
        rows.append(row)
    return rows


def _format(template: Any, directory: Path, **values: Any) -> str:
    """A path template of info.json filled in (ImportFormatError for templates it cannot fill)."""
    if not isinstance(template, str):
        raise ImportFormatError(f"{directory / L.INFO_PATH}: path template {template!r} is not a string")
    try:
        rel = template.format(**values)
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise ImportFormatError(f"{directory / L.INFO_PATH}: path template {template!r} cannot be filled with "
                                f"{sorted(values)}: {exc}") from None
    if Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise ImportFormatError(f"{directory / L.INFO_PATH}: path template {template!r} points outside the dataset")
    return rel


def _make_plan(directory: Path, info: Mapping[str, Any]) -> _Plan:
    """Validate the dataset's metadata and files (no bulk data read) and list what to import."""
    where = str(directory / L.INFO_PATH)
    sources = _plan_sources(info, _read_sime(directory), where)
    version = info["codebase_version"]
    episodes, tasks = (_plan_v3 if version == L.CODEBASE_VERSION else _plan_v2)(directory, info, sources)
    if not episodes:
        raise ImportFormatError(f"{directory}: holds no episodes")
    indices = [e.index for e in episodes]
    if len(set(indices)) != len(indices):
        raise ImportFormatError(f"{directory}: episode indices repeat in the episode metadata")
    n_frames = sum(e.length for e in episodes)
    if info["total_episodes"] != len(episodes) or info["total_frames"] != n_frames:
        raise ImportFormatError(
            f"{where}: says {info['total_episodes']} episodes / {info['total_frames']} frames but the episode metadata "
            f"lists {len(episodes)} episodes / {n_frames} frames"
        )
    if any(e.length <= 0 for e in episodes):
        raise ImportFormatError(f"{directory}: episode(s) {[e.index for e in episodes if e.length <= 0]} have no frames")
    rows_per_file: dict[Path, int] = {}
    for e in episodes:
        rows_per_file[e.data_file] = rows_per_file.get(e.data_file, 0) + e.length
        for path, _, _ in e.videos.values():
            if not path.is_file():
                raise ImportFormatError(f"{path}: missing (video of episode {e.index})")
    for path, expected in rows_per_file.items():
        if not path.is_file():
            raise ImportFormatError(f"{path}: missing (frame data)")
        try:
            rows = pq.read_metadata(path).num_rows
        except (pa.ArrowException, OSError) as exc:
            raise ImportFormatError(f"{path}: cannot be read as parquet (frame data): {exc}") from None
        if rows != expected:
            raise ImportFormatError(f"{path}: holds {rows} frames but the episode metadata gives its episodes "
                                    f"{expected} frames")
    return _Plan(directory, version, float(info["fps"]), sources, episodes, tasks)


# ============================================================================ reading one episode
class _DataCache:
    """The data parquet file read last (episodes of one file follow each other)."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = columns
        self._path: Path | None = None
        self._table: pa.Table | None = None

    def rows(self, episode: _Episode) -> pa.Table:
        """The rows of one episode, ordered by frame_index, checked against its length and index range."""
        if episode.data_file != self._path:
            try:
                schema = pq.read_schema(episode.data_file)
            except (pa.ArrowException, OSError) as exc:
                raise ImportFormatError(f"{episode.data_file}: cannot be read as parquet (frame data): {exc}") from None
            wanted = [c for c in self.columns if c in schema.names]
            absent = [c for c in self.columns if c not in schema.names and c not in L.DEFAULT_FEATURES]
            if absent:
                raise ImportFormatError(f"{episode.data_file}: has no column(s) {absent} declared in info.json")
            self._table = _read_parquet(episode.data_file, "frame data", wanted)
            self._path = episode.data_file
        table = self._table
        if "episode_index" not in table.column_names:
            raise ImportFormatError(f"{episode.data_file}: has no 'episode_index' column")
        rows = table.filter(pc.equal(table["episode_index"], episode.index))
        where = f"{episode.data_file}: episode {episode.index}"
        if rows.num_rows != episode.length:
            raise ImportFormatError(f"{where} has {rows.num_rows} frames but the episode metadata says {episode.length}")
        if "frame_index" in rows.column_names:
            order = pc.sort_indices(rows["frame_index"])
            rows = rows.take(order)
            if rows["frame_index"].to_numpy().tolist() != list(range(episode.length)):
                raise ImportFormatError(f"{where}: frame_index is not 0..{episode.length - 1}")
        if "index" in rows.column_names:
            index = rows["index"].to_numpy()
            if index.tolist() != list(range(episode.first_index, episode.first_index + episode.length)):
                raise ImportFormatError(f"{where}: 'index' does not run over its dataset range "
                                        f"[{episode.first_index}, {episode.first_index + episode.length})")
        return rows


def _column_values(column: pa.ChunkedArray, source: _Source, length: int, where: str) -> np.ndarray:
    """A numeric feature column as (length, *store_shape) numbers of the declared dtype."""
    if column.null_count:
        raise ImportFormatError(f"{where}: feature {source.feature!r} has {column.null_count} missing values")
    arr = column.combine_chunks()
    size = int(np.prod(source.store_shape, dtype=np.int64))
    try:
        while pa.types.is_list(arr.type) or pa.types.is_fixed_size_list(arr.type) or pa.types.is_large_list(arr.type):
            arr = arr.flatten()
        values = arr.to_numpy(zero_copy_only=False)
    except (pa.ArrowException, TypeError) as exc:
        raise ImportFormatError(f"{where}: feature {source.feature!r} has column type {column.type}, which is not "
                                f"a number or list of numbers: {exc}") from None
    if values.dtype.kind not in "biuf" or values.size != length * size:
        raise ImportFormatError(f"{where}: feature {source.feature!r} holds {values.size} {values.dtype} values for "
                                f"{length} frames of shape {source.store_shape}")
    return values.astype(source.dtype, copy=False).reshape((length, *source.store_shape))


def _image_values(column: pa.ChunkedArray, source: _Source, length: int, directory: Path, where: str) -> np.ndarray:
    """An HF Image column ({bytes, path} structs) decoded to (length, H, W, 3) uint8."""
    from .video_codec import VideoError, decode_image

    if not pa.types.is_struct(column.type) or column.type.get_field_index("bytes") < 0:
        raise ImportFormatError(f"{where}: image feature {source.feature!r} has column type {column.type}, "
                                "not an image struct {bytes, path}")
    frames = []
    for i, item in enumerate(column.to_pylist()):
        data = (item or {}).get("bytes")
        if data is None and (item or {}).get("path"):
            path = directory / item["path"]
            data = path.read_bytes() if path.is_file() else None
        if data is None:
            raise ImportFormatError(f"{where}: image feature {source.feature!r} frame {i} has no image bytes")
        try:
            frame = decode_image(data)
        except VideoError as exc:
            raise ImportFormatError(f"{where}: image feature {source.feature!r} frame {i}: {exc}") from None
        if frame.shape != source.store_shape:
            raise ImportFormatError(f"{where}: image feature {source.feature!r} frame {i} is {frame.shape}, "
                                    f"info.json says {source.store_shape}")
        frames.append(frame)
    return np.stack(frames)


def _video_values(episode: _Episode, source: _Source, timestamps: np.ndarray) -> np.ndarray:
    """The episode's frames of one video feature: the decoded frame at from_timestamp + each frame's timestamp."""
    from .video_codec import VideoError, decode_video_with_times

    path, start, stop = episode.videos[source.feature]
    where = f"{path} (episode {episode.index})"
    try:
        frames, times = decode_video_with_times(path, start, stop)
    except VideoError as exc:  # its message names the file
        raise ImportFormatError(f"{exc} (video of episode {episode.index})") from None
    if frames.shape[1:] != source.store_shape:
        raise ImportFormatError(f"{where}: frames are {frames.shape[1:]}, info.json says {source.store_shape}")
    wanted = start + timestamps.astype(np.float64)
    if len(times) == 0:
        raise ImportFormatError(f"{where}: has no frames in [{start:.4f}, {stop}) s; the episode needs {len(wanted)}")
    pos = np.clip(np.searchsorted(times, wanted), 1, max(len(times) - 1, 1))
    candidates = np.stack([pos - 1, np.minimum(pos, len(times) - 1)])
    best = np.take_along_axis(candidates, np.argmin(np.abs(times[candidates] - wanted), axis=0)[None], axis=0)[0]
    found = np.abs(times[best] - wanted) <= TIMESTAMP_TOLERANCE_S
    if not found.all():
        raise ImportFormatError(
            f"{where}: has only {int(found.sum())} of the episode's {len(wanted)} frames (decoded {len(times)} frames "
            f"in [{start:.4f}, {stop if stop is None else round(stop, 4)}) s; first missing at {wanted[~found][0]:.4f} s)"
        )
    return frames[best]


def _episode_arrays(plan: _Plan, episode: _Episode, cache: _DataCache) -> tuple[dict[str, np.ndarray], str | None]:
    """Every store array of one episode, and the task of its first frame (from task_index) if it has one."""
    rows = cache.rows(episode)
    task = None
    if "task_index" in rows.column_names and rows.num_rows and rows["task_index"][0].is_valid:
        task = plan.tasks.get(int(rows["task_index"][0].as_py()))
    where = f"{episode.data_file}: episode {episode.index}"
    if "timestamp" in rows.column_names:
        timestamps = rows["timestamp"].to_numpy().astype(np.float64)
    else:
        timestamps = np.arange(episode.length) / plan.fps
    out: dict[str, np.ndarray] = {}
    for source in plan.sources:
        if source.kind == "video":
            out[source.store_key] = _video_values(episode, source, timestamps)
        elif source.kind == "image":
            out[source.store_key] = _image_values(rows[source.feature], source, episode.length, plan.directory, where)
        else:
            out[source.store_key] = _column_values(rows[source.feature], source, episode.length, where)
    return out, task


# ============================================================================ metadata
def _episode_meta(plan: _Plan, episode: _Episode, sha: str, task: str | None) -> dict[str, Any]:
    """Episode metadata for the writer: restored "sime/" columns, the task and our provenance record."""
    cols = {k[len(L.SIME_COLUMN_PREFIX):]: v for k, v in episode.columns.items()}
    record: dict[str, Any] = {"directory": plan.directory.name, "sha256": sha, "episode_index": episode.index,
                              "codebase_version": plan.codebase_version}
    meta: dict[str, Any] = {}
    raw_meta = cols.pop("meta", None)
    if raw_meta:
        try:
            extra = json.loads(raw_meta)
        except (TypeError, json.JSONDecodeError):
            extra = None
        if isinstance(extra, dict):
            meta.update({k: v for k, v in extra.items() if k not in L.PROVENANCE_META_KEYS
                         and k not in RESERVED_COLUMNS and k not in SETTABLE_COLUMNS and k != "model_xml"})
    for name in ("episode_id", "source", "frame_start", "frame_stop"):
        if cols.get(name) is not None:
            record[{"episode_id": "source_episode_id"}.get(name, name)] = cols[name]
    for name in SETTABLE_COLUMNS:
        if name in ("source", "task") or cols.get(name) is None:
            continue
        meta[name] = cols[name]
    if task is not None:
        meta["task"] = task
    elif "task" in cols:
        meta["task"] = cols["task"]
    elif episode.tasks:
        meta["task"] = episode.tasks[0]
    meta[META_KEY] = record
    return meta


def _check_meta(plan: _Plan, metas: list[dict[str, Any]]) -> None:
    """Refuse wrongly typed restored metadata before anything is written."""
    for episode, meta in zip(plan.episodes, metas):
        try:
            check_metadata_types({k: v for k, v in meta.items() if k != META_KEY},
                                 where=f"episode {episode.index}'s sime/ columns")
        except MetadataTypeError as exc:
            raise ImportFormatError(f"{plan.directory / L.EPISODES_DIR}: {exc}") from None


def _import_of(store: "Store", sha: str) -> str | None:
    """Name of the version of an earlier import of this content (sha256), if any."""
    return version_of_import(store, IMPORT_RULE_KIND, sha)


def _committed_episodes(store: "Store", sha: str) -> dict[int, str]:
    """LeRobot episode index -> store episode id of episodes already committed from this content hash."""
    return {int(record["episode_index"]): eid for eid, record in committed_import_records(store, META_KEY, sha)}


# ============================================================================ import
def import_lerobot(
    store: "Store",
    directory: str | os.PathLike,
    *,
    version: str | None = None,
    task: str | None = None,
    source: str = "lerobot",
    progress: bool = True,
) -> LeRobotImportResult:
    """Import a LeRobot v3.0 (or v2.1 / v2.0) dataset directory: one episode per LeRobot episode, one version.

    All-or-nothing. `version` defaults to the directory name (made valid); `task` overrides the episodes'
    tasks. Importing a directory imported before (same content hash) changes nothing and returns the earlier
    import with `already_imported=True`.
    """
    directory = Path(directory)
    info = _read_info(directory)
    sha = L.content_sha256(directory)
    earlier = _import_of(store, sha)
    if earlier is not None:
        if version not in (None, earlier):
            log.warning("%s was imported before as version %s; version=%r is ignored", directory, earlier, version)
        ver = store.version(earlier)
        log.warning("%s was imported before as version %s (same content): nothing to do", directory, earlier)
        return LeRobotImportResult(directory, earlier, ver.episode_ids, ver.n_frames, str(info["codebase_version"]),
                                   sha, already_imported=True)
    plan = _make_plan(directory, info)
    version = version if version is not None else L.default_version_name(directory)
    check_names_free(store, [version], "import with another version= name")
    metas = [_episode_meta(plan, e, sha, task) for e in plan.episodes]
    _check_meta(plan, metas)

    done = _committed_episodes(store, sha)
    if done:  # an earlier import of this directory committed its episodes but died before making its version
        if sorted(done) != sorted(e.index for e in plan.episodes):
            raise StoreError(f"{directory}: {len(done)} of its {len(plan.episodes)} episodes are already in the store "
                             "(not from one complete import of this directory); nothing was changed")
        log.warning("%s: completing an earlier, interrupted import (its %d episodes are committed; writing its "
                    "version now)", directory, len(done))
        episode_ids = [done[e.index] for e in plan.episodes]
    else:
        episode_ids = _write_episodes(store, plan, metas, source, progress)
    n_frames = sum(e.length for e in plan.episodes)
    rule = {"kind": IMPORT_RULE_KIND, "directory": directory.name, "sha256": sha,
            "codebase_version": plan.codebase_version, "fps": plan.fps,
            "features": {s.feature: s.store_key for s in plan.sources}}
    store.create_version(version, episode_ids, rule=rule,
                         message=f"LeRobot {plan.codebase_version} import of {directory.name} ({len(episode_ids)} episodes)")
    result = LeRobotImportResult(directory, version, episode_ids, n_frames, plan.codebase_version, sha)
    log.info("%s", result.summary())
    return result


def _write_episodes(store: "Store", plan: _Plan, metas: list[dict[str, Any]], source: str,
                    progress: bool) -> list[str]:
    """Read and write every episode through one commit batch (one writer per array layout); ids in order."""
    columns = L.unique([s.feature for s in plan.sources if s.kind != "video"] + list(L.DEFAULT_FEATURES))
    cache = _DataCache(columns)
    episode_ids: list[str] = []
    with store.commit_batch() as batch:
        writers: dict[tuple[Any, ...], "EpisodeWriter"] = {}
        for episode, meta in tqdm(list(zip(plan.episodes, metas)), desc=f"import {plan.directory.name}",
                                  unit="episode", disable=not progress):
            arrays, frame_task = _episode_arrays(plan, episode, cache)
            if "task" not in meta and frame_task is not None:  # no task in the episode rows: the frames' one
                meta = {**meta, "task": frame_task}
            signature = tuple(sorted((k, v.shape[1:], v.dtype.str) for k, v in arrays.items()))
            writer = writers.get(signature)
            if writer is None:
                writer = writers[signature] = batch.writer(source=source)
            episode_ids.append(writer.add_episode(arrays, **meta))
    return episode_ids
