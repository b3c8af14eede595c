"""The LeRobot dataset layout (v3.0, and v2.1 for reading) shared by `lerobot_export` and `lerobot_import`.

Written from LeRobot's own code and docs (huggingface/lerobot, commit 7427f31 of 2026-08; the lerobot package
itself is never imported):

- `src/lerobot/datasets/utils.py`: `INFO_PATH` "meta/info.json", `STATS_PATH` "meta/stats.json",
  `DEFAULT_TASKS_PATH` "meta/tasks.parquet", `CHUNK_FILE_PATTERN` "chunk-{chunk_index:03d}/file-{file_index:03d}",
  `DEFAULT_EPISODES_PATH` "meta/episodes/" + pattern + ".parquet", `DEFAULT_DATA_PATH` "data/" + pattern +
  ".parquet", `DEFAULT_VIDEO_PATH` "videos/{video_key}/" + pattern + ".mp4", `DEFAULT_CHUNK_SIZE` 1000 (files per
  chunk directory), `DEFAULT_DATA_FILE_SIZE_IN_MB` 100, `DEFAULT_VIDEO_FILE_SIZE_IN_MB` 200,
  `update_chunk_file_indices` (file index runs to chunks_size - 1, then the chunk index moves on), `DatasetInfo`
  (the info.json fields and their order), `LEGACY_EPISODES_PATH` "meta/episodes.jsonl", `LEGACY_TASKS_PATH`
  "meta/tasks.jsonl", `LEGACY_EPISODES_STATS_PATH` "meta/episodes_stats.jsonl".
- `src/lerobot/utils/constants.py`: `DEFAULT_FEATURES` (timestamp float32, frame_index / episode_index / index /
  task_index int64, all shape (1,), names null).
- `src/lerobot/datasets/feature_utils.py` `get_hf_features_from_features`: a feature of shape (1,) is a scalar
  parquet column, shape (n,) a fixed-length list; "video" features are not in the parquet, "image" features are
  HF `Image` structs {bytes, path}. `lerobot/utils/feature_utils.py`: feature names may not contain "/".
- `src/lerobot/datasets/dataset_writer.py` / `dataset_metadata.py`: per-frame `index` is global, `frame_index`
  restarts at 0, `timestamp = frame_index / fps`; episode rows hold episode_index, tasks, length,
  data/chunk_index, data/file_index, dataset_from_index, dataset_to_index, videos/<key>/{chunk_index, file_index,
  from_timestamp, to_timestamp} (an episode's frames are [from, to) seconds of a file holding many episodes),
  flattened "stats/<feature>/<stat>" columns and meta/episodes/{chunk_index, file_index}; tasks.parquet is a
  pandas frame indexed by the task string ("task") with a "task_index" column; splits {"train": "0:N"}.
- `src/lerobot/datasets/compute_stats.py`: per feature min, max, mean, std, count and quantiles q01, q10, q50,
  q90, q99 (`DEFAULT_QUANTILES`); image/video stats per channel with shape (3, 1, 1), divided by 255;
  `aggregate_feature_stats` (count-weighted mean, pooled variance, min/max of extremes, quantile envelope).
- `src/lerobot/datasets/video_utils.py` `get_video_info`: the "video.*" keys of a video feature's `info`.
- `src/lerobot/scripts/convert_dataset_v21_to_v30.py` and the v2.1 `utils.py` (commit d602e81, the parent of
  "Dataset v3 (#1412)"): v2.1 layout `data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet`,
  `videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4`, episode_chunk =
  episode_index // chunks_size, one video per episode starting at 0 s, codebase_version "v2.1" (v2.0 has the
  same files).

Our additions, which LeRobot ignores: `meta/sime.json` (how each feature maps back to a store array key, shape and
dtype, so an import restores them exactly) and "sime/<column>" episode columns (the store's episode metadata).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa

from .schema import EPISODE_SCHEMA

# ---------------------------------------------------------------------------- v3.0 paths and defaults
CODEBASE_VERSION = "v3.0"
#: Older layouts this package reads (v2.0 and v2.1 share their files; v2.1 added episodes_stats.jsonl).
LEGACY_VERSIONS = ("v2.0", "v2.1")
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
CHUNK_FILE_PATTERN = "chunk-{chunk_index:03d}/file-{file_index:03d}"
EPISODES_PATH = EPISODES_DIR + "/" + CHUNK_FILE_PATTERN + ".parquet"
DATA_PATH = "data/" + CHUNK_FILE_PATTERN + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE_PATTERN + ".mp4"
DEFAULT_CHUNK_SIZE = 1000
DEFAULT_DATA_FILE_SIZE_IN_MB = 100
DEFAULT_VIDEO_FILE_SIZE_IN_MB = 200
#: Our own metadata file beside LeRobot's (LeRobot never reads it).
SIME_PATH = "meta/sime.json"
SIME_FORMAT = "sime-lerobot-export"

# ---------------------------------------------------------------------------- v2.1 paths
LEGACY_EPISODES_PATH = "meta/episodes.jsonl"
LEGACY_TASKS_PATH = "meta/tasks.jsonl"
LEGACY_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
LEGACY_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"

# ---------------------------------------------------------------------------- features
#: Per-frame bookkeeping columns every LeRobot dataset has (lerobot.utils.constants.DEFAULT_FEATURES).
DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
ACTION = "action"
OBS_STATE = "observation.state"
OBS_PREFIX = "observation."
IMAGES_PREFIX = "observation.images."
REWARD = "next.reward"
DONE = "next.done"
#: Store keys with a conventional LeRobot name (other store keys: '/' becomes '.').
STORE_TO_FEATURE = {"actions": ACTION, "rewards": REWARD, "dones": DONE}
FEATURE_TO_STORE = {v: k for k, v in STORE_TO_FEATURE.items()}
#: Quantiles LeRobot records with each feature's stats.
DEFAULT_QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
#: Most frames per episode sampled for image stats (LeRobot samples too).
IMAGE_STATS_MAX_FRAMES = 100

# ---------------------------------------------------------------------------- episode metadata columns
#: Prefix of the episode columns carrying the store's episode metadata through a LeRobot dataset.
SIME_COLUMN_PREFIX = "sime/"
#: Store episode columns exported as "sime/<name>" and restored on import.
EXPORTED_EPISODE_COLUMNS = ("episode_id", "source", "task", "init_state_id", "trial", "success", "episode_return",
                            "round", "branch", "checkpoint", "explore_mode", "noise_scale", "tau1", "tau2", "seed",
                            "tags", "notes", "init_state", "meta")
#: Frame window of the store episode a LeRobot episode was cut from.
WINDOW_COLUMNS = ("frame_start", "frame_stop")
#: Episode `meta` keys recording where an episode was imported from: not carried into another store.
PROVENANCE_META_KEYS = ("robomimic", "lerobot")

#: Lowest PSNR (dB) of camera frames after export to H.264 video and import back, for smooth camera images
#: (photographs, renders). Measured: 40.6 dB on the test's 64x64 smooth synthetic scenes at the default CRF 18
#: (RGB -> yuv420p chroma subsampling alone caps it near 42 dB); MPEG-4 fallback at qscale 2: 40.5 dB.
#: Images with sharp one-pixel colour edges lose more (about 27 dB): use `video=False` to keep them exact.
VIDEO_ROUNDTRIP_MIN_PSNR_DB = 35.0


def episode_column_types() -> dict[str, pa.DataType]:
    """Arrow type of each "sime/<column>" episode column (the store's own column types)."""
    types = {name: EPISODE_SCHEMA.field(name).type for name in EXPORTED_EPISODE_COLUMNS}
    types.update({name: pa.int64() for name in WINDOW_COLUMNS})
    return {SIME_COLUMN_PREFIX + name: t for name, t in types.items()}


def next_chunk_file(chunk_index: int, file_index: int, chunks_size: int) -> tuple[int, int]:
    """The (chunk, file) indices after the given ones (LeRobot's update_chunk_file_indices)."""
    if file_index >= chunks_size - 1:
        return chunk_index + 1, 0
    return chunk_index, file_index + 1


def is_camera(shape: Sequence[int], dtype: np.dtype | str) -> bool:
    """True for per-step arrays that are RGB images: uint8 of shape (H, W, 3)."""
    return np.dtype(dtype) == np.uint8 and len(shape) == 3 and shape[-1] == 3 and shape[0] > 1 and shape[1] > 1


def feature_name_for(key: str, camera: bool) -> str:
    """LeRobot feature name of a store array key ('obs/agentview_image' -> 'observation.images.agentview_image')."""
    if key in STORE_TO_FEATURE:
        return STORE_TO_FEATURE[key]
    if key.startswith("obs/"):
        rest = key[len("obs/"):].replace("/", ".")
        return (IMAGES_PREFIX if camera else OBS_PREFIX) + rest
    return key.replace("/", ".")


def store_key_for(feature: str) -> str:
    """Store array key of a LeRobot feature that carries no mapping of ours (the inverse of `feature_name_for`)."""
    if feature in FEATURE_TO_STORE:
        return FEATURE_TO_STORE[feature]
    if feature.startswith(IMAGES_PREFIX):
        return "obs/" + feature[len(IMAGES_PREFIX):]
    if feature.startswith(OBS_PREFIX):
        return "obs/" + feature[len(OBS_PREFIX):]
    return feature


def dtype_name(dtype: np.dtype | str) -> str:
    """LeRobot/HF dtype name of a numpy dtype ('float32', 'int64', 'bool', 'uint8', ...)."""
    return np.dtype(dtype).name


def element_names(prefix: str, size: int) -> list[str]:
    """Names of the elements of a flat feature: the key itself for one element, else '<key>_<i>'."""
    return [prefix] if size == 1 else [f"{prefix}_{i}" for i in range(size)]


# ---------------------------------------------------------------------------- stats
def feature_stats(values: np.ndarray, *, image: bool = False) -> dict[str, np.ndarray]:
    """LeRobot stats of one feature over one episode: min, max, mean, std, count and quantiles.

    `values` is (T,) or (T, n) for numbers, (T, H, W, 3) uint8 for images (per-channel stats in [0, 1],
    shaped (3, 1, 1), on at most IMAGE_STATS_MAX_FRAMES evenly spaced frames).
    """
    arr = np.asarray(values)
    if image:
        count = len(arr)
        if len(arr) > IMAGE_STATS_MAX_FRAMES:
            arr = arr[np.linspace(0, len(arr) - 1, IMAGE_STATS_MAX_FRAMES).round().astype(int)]
        stride = max(1, max(arr.shape[1], arr.shape[2]) // 150)  # LeRobot downsamples big frames to ~150 px
        pixels = arr[:, ::stride, ::stride, :].reshape(-1, 3).astype(np.float64) / 255.0
        stats = _reduce(pixels)
        stats = {k: v.reshape(3, 1, 1) for k, v in stats.items()}
        stats["count"] = np.array([count], dtype=np.int64)
        return stats
    data = arr.astype(np.float64) if arr.dtype.kind == "b" else arr
    flat = data.reshape(len(data), -1)
    stats = _reduce(flat)
    stats["count"] = np.array([len(flat)], dtype=np.int64)
    return stats


def _reduce(flat: np.ndarray) -> dict[str, np.ndarray]:
    """min/max (in the data's dtype), mean/std/quantiles (float64) over axis 0 of a 2-D array."""
    as_float = flat.astype(np.float64)
    out = {"min": flat.min(axis=0), "max": flat.max(axis=0), "mean": as_float.mean(axis=0),
           "std": as_float.std(axis=0)}
    quantiles = np.quantile(as_float, DEFAULT_QUANTILES, axis=0)
    for q, value in zip(DEFAULT_QUANTILES, quantiles):
        out[quantile_key(q)] = value
    return out


def quantile_key(q: float) -> str:
    """Stats key of a quantile: 0.01 -> 'q01', 0.5 -> 'q50'."""
    return f"q{int(round(q * 100)):02d}"


def aggregate_stats(per_episode: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Dataset stats of one feature from its per-episode stats (LeRobot's aggregate_feature_stats rule)."""
    counts = np.array([int(np.asarray(s["count"]).ravel()[0]) for s in per_episode], dtype=np.float64)
    means = np.stack([np.asarray(s["mean"], dtype=np.float64) for s in per_episode])
    variances = np.stack([np.asarray(s["std"], dtype=np.float64) ** 2 for s in per_episode])
    weights = counts.reshape((-1,) + (1,) * (means.ndim - 1))
    total = counts.sum()
    mean = (means * weights).sum(axis=0) / total
    variance = ((variances + (means - mean) ** 2) * weights).sum(axis=0) / total
    out = {"min": np.min(np.stack([s["min"] for s in per_episode]), axis=0),
           "max": np.max(np.stack([s["max"] for s in per_episode]), axis=0),
           "mean": mean, "std": np.sqrt(variance), "count": np.array([int(total)], dtype=np.int64)}
    for q in DEFAULT_QUANTILES:
        key = quantile_key(q)
        stacked = np.stack([np.asarray(s[key]) for s in per_episode])
        out[key] = stacked.min(axis=0) if q <= 0.5 else stacked.max(axis=0)
    return out


def stats_to_json(stats: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Stats of one feature as JSON lists."""
    return {k: np.asarray(v).tolist() for k, v in stats.items()}


# ---------------------------------------------------------------------------- files
def read_json(path: Path, what: str) -> Any:
    """Parse a JSON file, raising ImportFormatError naming the file for missing or broken ones."""
    from .errors import ImportFormatError

    if not path.is_file():
        raise ImportFormatError(f"{path}: no {what} file")
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImportFormatError(f"{path}: is not valid JSON ({exc})") from None


def write_json(path: Path, data: Any) -> None:
    """Write JSON the way LeRobot does (indent 4, UTF-8)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=4, ensure_ascii=False) + "\n")


def content_sha256(directory: Path) -> str:
    """Content hash of a dataset directory: every file under meta/ and data/, plus each video's name and size."""
    digest = hashlib.sha256()
    for sub, with_content in (("meta", True), ("data", True), ("videos", False)):
        root = directory / sub
        if not root.is_dir():
            continue
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(directory).as_posix()
            digest.update(rel.encode() + b"\0")
            if with_content:
                with open(path, "rb") as handle:
                    for block in iter(lambda: handle.read(8 << 20), b""):
                        digest.update(block)
            else:
                digest.update(str(path.stat().st_size).encode())
            digest.update(b"\0")
    return digest.hexdigest()


def default_version_name(directory: Path) -> str:
    """Version name an import of `directory` uses by default: the directory name, made into a valid name."""
    name = re.sub(r"[^A-Za-z0-9_.\-]+", "_", Path(directory).resolve().name).replace("..", "_").lstrip("_.-")
    name = name[:200]
    if name.lower().endswith(".version.parquet"):
        name = name[: -len(".version.parquet")] or "lerobot"
    return name or "lerobot"


def unique(items: Iterable[Any]) -> list[Any]:
    """Items without repeats, first occurrence order."""
    return list(dict.fromkeys(items))
