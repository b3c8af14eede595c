"""Export a store version as a LeRobot v3.0 dataset directory (without the lerobot package).

Layout written (see `lerobot_layout` for where each fact comes from in LeRobot's code)::

    meta/info.json                            codebase_version "v3.0", fps, features, path templates, totals, splits
    meta/stats.json                           per feature min/max/mean/std/count/q01..q99
    meta/tasks.parquet                        task string (index "task") -> task_index
    meta/episodes/chunk-000/file-000.parquet  one row per episode: length, tasks, data and video offsets,
                                              stats/<feature>/<stat>, and our "sime/<column>" metadata
    meta/sime.json                            feature -> store key, shape and dtype (read by `import_lerobot`)
    data/chunk-XXX/file-XXX.parquet           one row per frame, one row group per episode, many episodes per file
    videos/<video_key>/chunk-XXX/file-XXX.mp4 one H.264 stream per camera, many episodes per file

Each kept frame range of the version (a trimmed episode's windows) becomes one LeRobot episode. Features:
`action` (store `actions`), `observation.<key>` per low-dim `obs/<key>`, `observation.state` (the low-dim obs keys
concatenated, float32, with element names), `observation.images.<camera>` per uint8 (H, W, 3) `obs/<camera>`
(video, or with `video=False` PNG "image" columns in the parquet), `next.reward` / `next.done` (store `rewards` /
`dones`) and any other key with '/' written as '.'. Low-dim values keep their dtype (float32 stays float32),
so an import gives them back bit-exactly; camera frames come back within `VIDEO_ROUNDTRIP_MIN_PSNR_DB`.

Everything is written into a hidden, locked temp directory beside `out_dir` and moved into place at the end:
a failed or killed export never leaves a half-written dataset under the name (a killed one's temp directory is
removed by the next export into the same parent directory).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from . import lerobot_layout as L
from .processes import lock_fd

if TYPE_CHECKING:  # pragma: no cover
    from .store import Store
    from .video_codec import Mp4Writer

log = logging.getLogger(__name__)

_MB = 1024 * 1024
_TMP_INFIX = ".sime-lerobot-"
_TMP_SUFFIX = ".tmp"
_IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


@dataclass
class LeRobotExportResult:
    """What `export_lerobot` wrote: where, how many episodes/frames/tasks, its features and files."""

    path: Path
    n_episodes: int
    n_frames: int
    n_tasks: int
    fps: int
    #: camera features stored as MP4 video (empty with video=False)
    video_keys: list[str] = field(default_factory=list)
    #: camera features stored as PNG images in the parquet files (video=False)
    image_keys: list[str] = field(default_factory=list)
    #: every feature of info.json except the five bookkeeping columns
    features: list[str] = field(default_factory=list)
    #: files written, relative to `path`
    data_files: list[str] = field(default_factory=list)
    video_files: list[str] = field(default_factory=list)
    #: video codec (e.g. 'h264'), None without videos
    codec: str | None = None

    def summary(self) -> str:
        """One line for people (what the CLI prints)."""
        cams = (f", {len(self.video_keys)} camera(s) as {self.codec} video in {len(self.video_files)} file(s)"
                if self.video_keys else f", {len(self.image_keys)} camera(s) as PNG images" if self.image_keys else "")
        return (f"exported {self.n_episodes} episodes ({self.n_frames} frames, {self.n_tasks} task(s)) at {self.fps} fps "
                f"to {self.path}: {len(self.data_files)} data file(s){cams}")


# ============================================================================ feature plan
@dataclass
class _Feature:
    """One LeRobot feature and where its values come from."""

    name: str
    kind: str  # "array" (a store key), "camera" (store key, video/image), "state" (concatenated obs)
    dtype: np.dtype
    shape: tuple[int, ...]  # the LeRobot shape
    names: Any
    store_key: str | None = None
    store_shape: tuple[int, ...] = ()
    sources: list[str] = field(default_factory=list)  # state: the store keys concatenated

    @property
    def size(self) -> int:
        """Numbers per frame of a flat feature."""
        return int(np.prod(self.shape, dtype=np.int64))

    def info_entry(self, video: bool) -> dict[str, Any]:
        """This feature's entry in info.json's `features`."""
        if self.kind == "camera":
            return {"dtype": "video" if video else "image", "shape": list(self.shape),
                    "names": ["height", "width", "channels"]}
        return {"dtype": L.dtype_name(self.dtype), "shape": list(self.shape), "names": self.names}

    def arrow_type(self, video: bool) -> pa.DataType | None:
        """Parquet column type (None for video features, which live in MP4 files)."""
        if self.kind == "camera":
            return None if video else _IMAGE_TYPE
        value = pa.from_numpy_dtype(self.dtype)
        return value if self.shape == (1,) else pa.list_(value, self.size)

    def hf_entry(self, video: bool) -> dict[str, Any] | None:
        """The HF `datasets` feature JSON of the column (parquet schema metadata)."""
        if self.kind == "camera":
            return None if video else {"_type": "Image"}
        value = {"dtype": L.dtype_name(self.dtype), "_type": "Value"}
        return value if self.shape == (1,) else {"feature": value, "length": self.size, "_type": "Sequence"}


def _plan_features(specs: Mapping[str, Any], video: bool) -> list[_Feature]:
    """LeRobot features for a store array layout {key: KeySpec} (ValueError for what LeRobot cannot hold)."""
    features: list[_Feature] = []
    low_dim: list[_Feature] = []
    def group(key: str) -> tuple[int, str]:  # action, low-dim obs, cameras, the rest (LeRobot's usual order)
        if key == "actions":
            return 0, key
        if key.startswith("obs/"):
            return (2 if L.is_camera(specs[key].shape, specs[key].dtype) else 1), key
        return 3, key

    for key in sorted(specs, key=group):
        spec = specs[key]
        dtype = np.dtype(spec.dtype)
        shape = tuple(spec.shape)
        if dtype.kind == "c":
            raise ValueError(f"array {key!r} holds complex numbers ({dtype}), which LeRobot's parquet files cannot hold")
        camera = group(key)[0] == 2
        name = L.feature_name_for(key, camera)
        if camera:
            if video and (shape[0] % 2 or shape[1] % 2):
                raise ValueError(f"camera {key!r} has odd frame size {shape[1]}x{shape[0]}: H.264 yuv420p video "
                                 "needs even sizes; export with video=False (--images) to store PNG frames instead")
            features.append(_Feature(name, "camera", dtype, shape, None, key, shape))
            continue
        size = int(np.prod(shape, dtype=np.int64))
        if size == 0:
            log.warning("array %r has no values per step (shape %s); left out of the LeRobot dataset", key, shape)
            continue
        short = key.split("/", 1)[1] if key.startswith("obs/") else name
        feat = _Feature(name, "array", dtype, (size,), L.element_names(short.replace("/", "."), size), key, shape)
        features.append(feat)
        if key.startswith("obs/"):
            low_dim.append(feat)
    names = [f.name for f in features]
    clashes = sorted({n for n in names if names.count(n) > 1} | (set(names) & set(L.DEFAULT_FEATURES)))
    if clashes:
        raise ValueError(f"store keys {sorted(f.store_key for f in features if f.name in clashes)} map to the LeRobot "
                         f"feature name(s) {clashes}, which are taken; rename the arrays before exporting")
    if low_dim and L.OBS_STATE not in names:
        state = _Feature(L.OBS_STATE, "state", np.dtype(np.float32), (sum(f.size for f in low_dim),),
                         [n for f in low_dim for n in f.names], sources=[f.store_key for f in low_dim])
        at = names.index(low_dim[0].name)
        features.insert(at, state)
    return features


# ============================================================================ rolling writers
class _RollingParquet:
    """Parquet files of one template, one row group per episode; a new file when the size limit is reached."""

    def __init__(self, root: Path, template: str, schema: pa.Schema, limit_bytes: float, chunks_size: int) -> None:
        self.root, self.template, self.schema = root, template, schema
        self.limit_bytes, self.chunks_size = limit_bytes, chunks_size
        self.chunk, self.file = 0, 0
        self.files: list[str] = []
        self._writer: pq.ParquetWriter | None = None
        self._bytes = 0

    def write(self, table: pa.Table) -> tuple[int, int]:
        """Append one episode's rows; returns the (chunk, file) indices it went to."""
        if self._writer is not None and self._bytes and self._bytes + table.nbytes >= self.limit_bytes:
            self._writer.close()
            self._writer = None
            self.chunk, self.file = L.next_chunk_file(self.chunk, self.file, self.chunks_size)
        if self._writer is None:
            rel = self.template.format(chunk_index=self.chunk, file_index=self.file)
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(path, self.schema, compression="snappy", use_dictionary=True)
            self.files.append(rel)
            self._bytes = 0
        self._writer.write_table(table)
        self._bytes += table.nbytes
        return self.chunk, self.file

    def close(self) -> None:
        """Finish the open file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class _RollingVideo:
    """MP4 files of one camera, many episodes each; a new file when the size limit would be passed."""

    def __init__(self, root: Path, video_key: str, fps: int, limit_bytes: float, chunks_size: int,
                 codec: str, crf: int) -> None:
        self.root, self.video_key, self.fps = root, video_key, fps
        self.limit_bytes, self.chunks_size, self.codec, self.crf = limit_bytes, chunks_size, codec, crf
        self.chunk, self.file = 0, 0
        self.files: list[str] = []
        self._writer: "Mp4Writer | None" = None

    def write(self, frames: np.ndarray) -> tuple[int, int, float, float]:
        """Append one episode's frames; returns (chunk, file, from_timestamp, to_timestamp)."""
        from .video_codec import Mp4Writer

        writer = self._writer
        if writer is not None and writer.frames_written:
            per_frame = writer.size_bytes() / writer.frames_written
            if writer.size_bytes() + per_frame * len(frames) >= self.limit_bytes:
                writer.close()
                self._writer = writer = None
                self.chunk, self.file = L.next_chunk_file(self.chunk, self.file, self.chunks_size)
        if writer is None:
            rel = L.VIDEO_PATH.format(video_key=self.video_key, chunk_index=self.chunk, file_index=self.file)
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = writer = Mp4Writer(path, self.fps, codec=self.codec, crf=self.crf)
            self.files.append(rel)
        start = writer.write(frames)
        return self.chunk, self.file, start / self.fps, (start + len(frames)) / self.fps

    def close(self) -> None:
        """Finish the open file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


# ============================================================================ temp directory and publishing
class _ExportDir:
    """The hidden directory an export writes before publishing; OS-locked so other exports know it is in use."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir.with_name(f".{out_dir.name}{_TMP_INFIX}{uuid.uuid4().hex[:8]}{_TMP_SUFFIX}")
        self.path.mkdir()
        self._fd: int | None = os.open(self.path, os.O_RDONLY)
        lock_fd(self._fd)

    def release(self, remove: bool) -> None:
        """Drop the lock; delete the directory when `remove` (it was not published)."""
        if remove:
            shutil.rmtree(self.path, ignore_errors=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def remove_stale_export_dirs(parent: Path, name: str) -> list[Path]:
    """Delete temp directories of LeRobot exports named `name` whose process is gone (lock free); returns them."""
    removed: list[Path] = []
    prefix = f".{name}{_TMP_INFIX}"
    try:
        entries = [e for e in os.scandir(parent) if e.name.startswith(prefix) and e.name.endswith(_TMP_SUFFIX)]
    except FileNotFoundError:
        return removed
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY)
        except OSError:
            continue
        try:
            if not lock_fd(fd, wait=False):
                continue  # an export still running
            shutil.rmtree(entry.path, ignore_errors=True)
        finally:
            os.close(fd)
        removed.append(Path(entry.path))
        log.warning("removed %s, left by a LeRobot export that was killed", entry.path)
    return removed


def _check_target(out_dir: Path, overwrite: bool) -> None:
    """Refuse a target that is a file, or a non-empty directory unless `overwrite`."""
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise FileExistsError(f"{out_dir} exists and is not a directory; choose another output directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir} exists and is not empty; pass overwrite=True (CLI: --overwrite) to replace it")


def _publish(tmp: Path, out_dir: Path, overwrite: bool) -> None:
    """Move the finished directory into place (a rename; an existing one is replaced only with `overwrite`)."""
    _check_target(out_dir, overwrite)
    if out_dir.is_dir() and any(out_dir.iterdir()):
        old = out_dir.with_name(f".{out_dir.name}{_TMP_INFIX}old-{uuid.uuid4().hex[:8]}")
        os.rename(out_dir, old)
        try:
            os.rename(tmp, out_dir)
        except BaseException:
            os.rename(old, out_dir)
            raise
        shutil.rmtree(old, ignore_errors=True)
        return
    try:
        os.replace(tmp, out_dir)  # replaces an empty directory, creates a missing one
    except OSError as exc:
        if out_dir.exists():
            raise FileExistsError(f"{out_dir} was created by someone else during the export; nothing was replaced") from exc
        raise


# ============================================================================ per-episode columns
def _column(feature: _Feature, values: np.ndarray) -> pa.Array:
    """One feature's parquet column for one episode."""
    flat = np.ascontiguousarray(values).reshape(len(values), -1)
    if feature.shape == (1,):
        return pa.array(flat.reshape(-1))
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), feature.size)


def _image_column(frames: np.ndarray) -> pa.Array:
    """PNG frames as HF `Image` structs {bytes, path}."""
    from .video_codec import encode_png

    data = pa.array([encode_png(frame) for frame in frames], pa.binary())
    return pa.StructArray.from_arrays([data, pa.nulls(len(frames), pa.string())], names=["bytes", "path"])


def _sime_columns(row: Mapping[str, Any], start: int, stop: int) -> dict[str, Any]:
    """The "sime/<column>" values of one exported episode (store metadata and its frame window)."""
    out: dict[str, Any] = {}
    for name in L.EXPORTED_EPISODE_COLUMNS:
        value = row.get(name)
        if name == "meta" and value:
            meta = {k: v for k, v in json.loads(value).items() if k not in L.PROVENANCE_META_KEYS}
            value = json.dumps(meta, sort_keys=True) if meta else None
        out[L.SIME_COLUMN_PREFIX + name] = value
    out[L.SIME_COLUMN_PREFIX + "frame_start"] = start
    out[L.SIME_COLUMN_PREFIX + "frame_stop"] = stop
    return out


def _episodes_table(rows: list[dict[str, Any]]) -> pa.Table:
    """meta/episodes rows as a table; the "sime/" columns get the store's own types (so all-null ones are typed)."""
    types = L.episode_column_types()
    columns = list(rows[0])
    arrays = {}
    for name in columns:
        values = [r.get(name) for r in rows]
        arrays[name] = pa.array(values, types[name]) if name in types else pa.array(values)
    return pa.table(arrays)


# ============================================================================ export
def export_lerobot(
    store: "Store",
    version: str,
    out_dir: str | os.PathLike,
    *,
    fps: int = 20,
    video: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    robot_type: str | None = None,
    crf: int | None = None,
    chunks_size: int = L.DEFAULT_CHUNK_SIZE,
    data_files_size_in_mb: float = L.DEFAULT_DATA_FILE_SIZE_IN_MB,
    video_files_size_in_mb: float = L.DEFAULT_VIDEO_FILE_SIZE_IN_MB,
) -> LeRobotExportResult:
    """Write a version as a LeRobot v3.0 dataset directory: one episode per kept frame range, trims applied.

    `video=False` stores camera frames as PNG "image" columns in the parquet files instead of MP4 video.
    Refuses an existing non-empty `out_dir` unless `overwrite`.
    """
    from .video_codec import DEFAULT_CRF

    given = Path(out_dir)
    out_dir = Path(os.path.abspath(given))  # normalised, symlinks not followed ('.' and 'a/..' have a name)
    if int(fps) != fps or fps <= 0:
        raise ValueError(f"fps must be a positive whole number (LeRobot's info.json holds an int), got {fps}")
    fps = int(fps)
    if chunks_size < 1 or data_files_size_in_mb <= 0 or video_files_size_in_mb <= 0:
        raise ValueError("chunks_size and the file size limits must be positive")
    crf = DEFAULT_CRF if crf is None else int(crf)
    ver = store.version(version)
    _check_target(out_dir, overwrite)

    columns = ["episode_id", "segment", "length", "keys", *[c for c in L.EXPORTED_EPISODE_COLUMNS if c != "episode_id"]]
    rows = {r["episode_id"]: r for r in store.episode_columns(L.unique(columns)).to_pylist()}
    items = [(str(eid), int(start), int(stop)) for eid, start, stop in ver.manifest.itertuples(index=False)]
    layout = _common_layout(store, version, [rows[eid] for eid, _, _ in items])
    features = _plan_features(layout, video)
    cameras = [f for f in features if f.kind == "camera"]
    tasks = L.unique(rows[eid]["task"] or version for eid, _, _ in items)
    task_index = {task: i for i, task in enumerate(tasks)}

    codec_name = None
    encoder = None
    if video and cameras:
        from .video_codec import available_encoder

        encoder = available_encoder()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_export_dirs(out_dir.parent, out_dir.name)
    temp = _ExportDir(out_dir)
    root = temp.path
    published = False
    try:
        schema = _data_schema(features, video)
        data = _RollingParquet(root, L.DATA_PATH, schema, data_files_size_in_mb * _MB, chunks_size)
        videos = {f.name: _RollingVideo(root, f.name, fps, video_files_size_in_mb * _MB, chunks_size, encoder, crf)
                  for f in cameras} if video else {}
        episode_rows: list[dict[str, Any]] = []
        stats_by_feature: dict[str, list[dict[str, np.ndarray]]] = {}
        n_frames = 0
        try:
            for ep_index, (eid, start, stop) in enumerate(
                    tqdm(items, desc=f"export {out_dir.name}", unit="episode", disable=not progress)):
                row = rows[eid]
                arrays = store.read_episode(eid, keys=list(layout), start=start, stop=stop)
                length = stop - start
                task = row["task"] or version
                episode: dict[str, Any] = {"episode_index": ep_index, "tasks": [task], "length": length}
                table, ep_stats = _episode_data(features, arrays, video, ep_index, n_frames, task_index[task], fps)
                chunk, file = data.write(table)
                episode.update({"data/chunk_index": chunk, "data/file_index": file,
                                "dataset_from_index": n_frames, "dataset_to_index": n_frames + length})
                for feat in cameras:
                    if video:
                        v_chunk, v_file, t0, t1 = videos[feat.name].write(arrays[feat.store_key])
                        episode.update({f"videos/{feat.name}/chunk_index": v_chunk,
                                        f"videos/{feat.name}/file_index": v_file,
                                        f"videos/{feat.name}/from_timestamp": t0,
                                        f"videos/{feat.name}/to_timestamp": t1})
                for name, stats in ep_stats.items():
                    stats_by_feature.setdefault(name, []).append(stats)
                    episode.update({f"stats/{name}/{k}": np.asarray(v).tolist() for k, v in stats.items()})
                episode.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
                episode.update(_sime_columns(row, start, stop))
                episode_rows.append(episode)
                n_frames += length
        finally:
            data.close()
            for writer in videos.values():
                writer.close()
        if video and cameras:
            from .video_codec import probe_video

            first = probe_video(root / videos[cameras[0].name].files[0])
            codec_name = first.codec
        info = _info_json(features, video, fps, robot_type, len(items), n_frames, len(tasks), chunks_size,
                          data_files_size_in_mb, video_files_size_in_mb, codec_name, crf)
        L.write_json(root / L.INFO_PATH, info)
        L.write_json(root / L.STATS_PATH, {name: L.stats_to_json(L.aggregate_stats(s))
                                           for name, s in stats_by_feature.items()})
        tasks_frame = pd.DataFrame({"task_index": range(len(tasks))}, index=pd.Index(tasks, name="task"))
        tasks_frame.to_parquet(root / L.TASKS_PATH)
        episodes_path = root / L.EPISODES_PATH.format(chunk_index=0, file_index=0)
        episodes_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_episodes_table(episode_rows), episodes_path, compression="snappy")
        L.write_json(root / L.SIME_PATH, _sime_json(features, version, fps, video, encoder, codec_name, crf))
        _publish(root, out_dir, overwrite)
        published = True
    finally:
        temp.release(remove=not published)
    result = LeRobotExportResult(
        path=given, n_episodes=len(items), n_frames=n_frames, n_tasks=len(tasks), fps=fps,
        video_keys=[f.name for f in cameras] if video else [], image_keys=[] if video else [f.name for f in cameras],
        features=[f.name for f in features], data_files=list(data.files),
        video_files=[rel for w in videos.values() for rel in w.files], codec=codec_name)
    log.info("%s", result.summary())
    return result


def _gop() -> int:
    """Keyframe interval the video files are written with."""
    from .video_codec import DEFAULT_GOP

    return DEFAULT_GOP


def _common_layout(store: "Store", version: str, rows: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The one array layout {key: KeySpec} every episode of the version has (ValueError when they differ)."""
    layout = None
    first_id = None
    for row in rows:
        specs = store.segment_keys(row["segment"])
        this = {k: specs[k] for k in row["keys"]}
        if layout is None:
            layout, first_id = this, row["episode_id"]
            continue
        if this != layout:
            missing = sorted(set(layout) - set(this))
            added = sorted(set(this) - set(layout))
            changed = sorted(k for k in set(this) & set(layout) if this[k] != layout[k])
            raise ValueError(
                f"version {version!r} mixes array layouts (episode {row['episode_id']} vs {first_id}: missing "
                f"{missing}, extra {added}, other shape/dtype {changed}); a LeRobot dataset has one feature set, "
                "so export a version whose episodes share one layout"
            )
    if not layout:
        raise ValueError(f"version {version!r} has no episodes with arrays to export")
    return layout


def _data_schema(features: list[_Feature], video: bool) -> pa.Schema:
    """Schema of the data parquet files, with the HF `datasets` feature metadata LeRobot's files carry."""
    fields, hf = [], {}
    for feat in features:
        t = feat.arrow_type(video)
        if t is not None:
            fields.append(pa.field(feat.name, t))
            hf[feat.name] = feat.hf_entry(video)
    for name, spec in L.DEFAULT_FEATURES.items():
        fields.append(pa.field(name, pa.from_numpy_dtype(np.dtype(spec["dtype"]))))
        hf[name] = {"dtype": spec["dtype"], "_type": "Value"}
    return pa.schema(fields, metadata={b"huggingface": json.dumps({"info": {"features": hf}}).encode()})


def _episode_data(features: list[_Feature], arrays: Mapping[str, np.ndarray], video: bool, ep_index: int,
                  first_index: int, task_index: int, fps: int) -> tuple[pa.Table, dict[str, dict[str, np.ndarray]]]:
    """One episode's parquet rows and the per-episode stats of every feature."""
    length = len(next(iter(arrays.values())))
    columns: dict[str, pa.Array] = {}
    stats: dict[str, dict[str, np.ndarray]] = {}
    for feat in features:
        if feat.kind == "camera":
            frames = arrays[feat.store_key]
            stats[feat.name] = L.feature_stats(frames, image=True)
            if not video:
                columns[feat.name] = _image_column(frames)
            continue
        if feat.kind == "state":
            values = np.concatenate([arrays[k].reshape(length, -1).astype(np.float32) for k in feat.sources], axis=1)
        else:
            values = arrays[feat.store_key].reshape(length, feat.size)
        columns[feat.name] = _column(feat, values)
        stats[feat.name] = L.feature_stats(values)
    frame_index = np.arange(length, dtype=np.int64)
    bookkeeping = {
        "timestamp": (frame_index / fps).astype(np.float32),
        "frame_index": frame_index,
        "episode_index": np.full(length, ep_index, dtype=np.int64),
        "index": np.arange(first_index, first_index + length, dtype=np.int64),
        "task_index": np.full(length, task_index, dtype=np.int64),
    }
    for name, values in bookkeeping.items():
        columns[name] = pa.array(values)
        stats[name] = L.feature_stats(values)
    return pa.table(columns), stats


def _info_json(features: list[_Feature], video: bool, fps: int, robot_type: str | None, n_episodes: int,
               n_frames: int, n_tasks: int, chunks_size: int, data_mb: float, video_mb: float,
               codec: str | None, crf: int) -> dict[str, Any]:
    """meta/info.json, in the field order of LeRobot's DatasetInfo."""
    entries: dict[str, Any] = {}
    for feat in features:
        entry = feat.info_entry(video)
        if feat.kind == "camera" and video:
            entry["info"] = {"video.height": feat.shape[0], "video.width": feat.shape[1], "video.codec": codec,
                             "video.pix_fmt": "yuv420p", "video.fps": fps, "video.channels": 3,
                             "video.g": _gop(), "video.crf": crf, "video.video_backend": "pyav",
                             "is_depth_map": False, "has_audio": False}
        entries[feat.name] = entry
    entries.update({k: dict(v) for k, v in L.DEFAULT_FEATURES.items()})
    return {
        "codebase_version": L.CODEBASE_VERSION,
        "fps": fps,
        "features": entries,
        "total_episodes": n_episodes,
        "total_frames": n_frames,
        "total_tasks": n_tasks,
        "chunks_size": chunks_size,
        "data_files_size_in_mb": data_mb,
        "video_files_size_in_mb": video_mb,
        "data_path": L.DATA_PATH,
        "video_path": L.VIDEO_PATH if video and any(f.kind == "camera" for f in features) else None,
        "robot_type": robot_type,
        "splits": {"train": f"0:{n_episodes}"},
    }


def _sime_json(features: list[_Feature], version: str, fps: int, video: bool, encoder: str | None,
               codec: str | None, crf: int) -> dict[str, Any]:
    """meta/sime.json: how each feature maps back to a store array (key, per-step shape, dtype)."""
    mapping: dict[str, Any] = {}
    derived: dict[str, Any] = {}
    for feat in features:
        if feat.kind == "state":
            derived[feat.name] = {"concatenates": feat.sources, "dtype": "float32"}
        else:
            mapping[feat.name] = {"store_key": feat.store_key, "shape": list(feat.store_shape),
                                  "dtype": feat.dtype.str}
    return {
        "format": L.SIME_FORMAT,
        "format_version": 1,
        "version": version,
        "fps": fps,
        "features": mapping,
        "derived": derived,
        "video": ({"encoder": encoder, "codec": codec, "crf": crf, "gop": _gop(), "pix_fmt": "yuv420p",
                   "min_roundtrip_psnr_db": L.VIDEO_ROUNDTRIP_MIN_PSNR_DB} if encoder else None),
    }
