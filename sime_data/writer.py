"""Episode writer: owns one segment, buffers steps, commits each episode atomically."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import socket
import uuid
from typing import Any, Mapping

import numpy as np
import pyarrow.parquet as pq
import zarr

from .catalog import Catalog
from .compaction import compact_segment
from .checksums import ChecksumRecorder, episode_record, write_record_file
from .data_root import DataRoot
from .errors import StepMismatchError, WriterStateError
from .layout import BLOBS_DIR, EPISODES_DIR, LOCKS_DIR, RootMeta
from .metadata_types import check_metadata_types
from .migration_state import ensure_no_migration_running
from .processes import HeldLock
from .schema import RESERVED_COLUMNS, build_row, check_array_key, rows_to_table, utc_now
from .segment import KeySpec, block_frames, check_dtype, create_segment, write_blocks
from .storefs import StoreFS

log = logging.getLogger(__name__)


def new_segment_id() -> str:
    """A fresh, globally unique segment id."""
    return uuid.uuid4().hex[:12]


def flatten_step(
    obs: Mapping[str, Any] | None,
    action: Any,
    reward: Any,
    done: Any,
    state: Any,
    timestamp: Any,
    extras: Mapping[str, Any] | None,
) -> dict[str, np.ndarray]:
    """Map add_step's arguments to array keys ('obs/<k>', 'actions', 'rewards', ...)."""
    flat: dict[str, np.ndarray] = {}
    for key, value in (obs or {}).items():
        flat[f"obs/{key}"] = np.asarray(value)
    for key, value in (("actions", action), ("rewards", reward), ("dones", done), ("states", state), ("timestamps", timestamp)):
        if value is not None:
            flat[key] = np.asarray(value)
    _flatten_into(flat, "", extras or {})
    return flat


def _flatten_into(out: dict[str, np.ndarray], prefix: str, tree: Mapping[str, Any]) -> None:
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            _flatten_into(out, path + "/", value)
        else:
            if path in out:
                raise StepMismatchError(f"array key {path!r} given twice in one step")
            out[path] = np.asarray(value)


def store_blob(sfs: StoreFS, data: bytes, suffix: str) -> str:
    """Store `data` content-addressed under blobs/ and return its sha256."""
    digest = hashlib.sha256(data).hexdigest()
    rel = f"{BLOBS_DIR}/{digest}{suffix}"
    if not sfs.exists(rel):
        try:
            sfs.write_atomic(rel, data, exclusive=True)
        except FileExistsError:
            pass  # another writer stored the same blob first
    return digest


class EpisodeWriter:
    """Writes episodes into its own segment; `finish()` makes an episode visible atomically.

    Use as a context manager. With `atomic=True`, every episode of the writer becomes visible
    together when the writer closes without error, and none does otherwise. The writer holds a lock on
    its segment (an OS lock on local disks) for its whole life, so `gc` never takes a live writer's frames.
    It is given the store's files, root metadata, catalog (for compacting its rows) and Zarr root.
    """

    def __init__(
        self,
        sfs: StoreFS,
        root_meta: RootMeta,
        catalog: Catalog,
        data: DataRoot,
        /,
        source: str,
        task: str | None = None,
        *,
        atomic: bool = False,
        model_xml: str | None = None,
        durable: bool = False,
        batch: "CommitBatch | None" = None,
        **defaults: Any,
    ) -> None:
        bad = sorted(set(defaults) & RESERVED_COLUMNS)
        if bad:
            raise ValueError(f"writer defaults may not set {bad}: the store fills these columns itself")
        check_metadata_types({"source": source, "task": task, **defaults}, where="store.writer()")
        self.sfs = sfs
        self.catalog = catalog
        self.data = data
        self.segment = new_segment_id()
        self.atomic = atomic or batch is not None
        self.batch = batch
        #: fsync each committed row file (and its directory). Off by default: the atomic rename already makes a
        #: commit all-or-nothing for a crashed process, and the Zarr chunks are not fsynced either.
        self.durable = durable
        self.defaults: dict[str, Any] = {"source": source, "task": task, **defaults}
        self._pending_blobs: dict[str, bytes] = {}
        self._model_xml_sha = self._blob_sha(model_xml) if model_xml else None
        self._align = root_meta.align_frames
        self._image_shard = root_meta.image_shard_frames
        self._specs: dict[str, KeySpec] | None = None
        self._arrays: dict[str, "zarr.Array"] = {}
        self._next_slot = 0
        self._pending_rows: list[dict[str, Any]] = []
        self._pending_records: dict[str, dict[str, Any]] = {}
        self._recorder: ChecksumRecorder | None = None
        self._committed: list[str] = []
        self._closed = False
        self._reset_episode()
        self._lock = HeldLock(sfs, f"{LOCKS_DIR}/{self.segment}.json",
                              {"host": socket.gethostname(), "started_at": utc_now().isoformat(), "source": source,
                               "task": task})
        if sfs.is_local:
            try:  # after taking the lock, so a migration starting now sees this writer (and we see it)
                ensure_no_migration_running(sfs.root)
            except BaseException:
                self._lock.release()
                raise

    def _blob_sha(self, model_xml: str) -> str:
        """Store the model XML now (or, for an atomic writer, when it commits); return its sha256."""
        data = model_xml.encode()
        if not self.atomic:
            return store_blob(self.sfs, data, ".xml")
        sha = hashlib.sha256(data).hexdigest()
        self._pending_blobs[sha] = data
        return sha

    # ----------------------------------------------------------------- episode state
    def _reset_episode(self) -> None:
        self._buffers: dict[str, list[np.ndarray]] = {}
        self._flushed: dict[str, int] = {}
        self._ep_specs: dict[str, KeySpec] | None = None
        self._blocks: dict[str, int] = {}
        self._flush_due = 0
        self._length = 0
        self._slot_start = self._next_slot

    @property
    def episodes_committed(self) -> list[str]:
        """Ids of the episodes this writer has finished (visible now, or at close when atomic)."""
        return list(self._committed)

    @property
    def steps_in_flight(self) -> int:
        """Steps added to the current, unfinished episode."""
        return self._length

    def _check_open(self) -> None:
        if self._closed:
            raise WriterStateError("this writer is closed; open a new one with store.writer(...)")

    def _ensure_segment(self, specs: dict[str, KeySpec]) -> None:
        """Create the segment's arrays from the first step's keys, or check later episodes match them."""
        if self._specs is None:
            for key in specs:
                check_array_key(key)
            attrs = {"writer": {"pid": os.getpid(), "host": socket.gethostname(), "created_at": utc_now().isoformat(),
                                **{k: v for k, v in self.defaults.items() if isinstance(v, (str, int, float, bool))}}}
            # chunk files are written through a recorder that notes their checksums for the commit records
            self._recorder = ChecksumRecorder(self.data.group.store, f"{self.segment}/")
            root = zarr.open_group(self._recorder, mode="r+", zarr_format=3)
            self._arrays = create_segment(root, self.segment, specs, self._align, self._image_shard, attrs)
            self._specs = dict(specs)
            return
        if specs != self._specs:
            raise StepMismatchError(
                "this episode's arrays differ from the earlier episodes of the same writer: "
                + _describe_difference(self._specs, specs)
                + "; use a new writer for data of another layout"
            )

    # ----------------------------------------------------------------- writing
    def add_step(
        self,
        obs: Mapping[str, Any] | None = None,
        action: Any = None,
        reward: Any = None,
        done: Any = None,
        state: Any = None,
        timestamp: Any = None,
        extras: Mapping[str, Any] | None = None,
    ) -> None:
        """Append one step to the current episode (keys, shapes and dtypes must match its first step)."""
        self._check_open()
        flat = flatten_step(obs, action, reward, done, state, timestamp, extras)
        if not flat:
            raise StepMismatchError("add_step got no data: pass at least obs or action")
        if self._ep_specs is None:
            specs = {key: KeySpec.of(value, key) for key, value in flat.items()}
            self._ensure_segment(specs)
            self._ep_specs = specs
            self._buffers = {key: [] for key in specs}
            self._flushed = {key: 0 for key in specs}
            self._blocks = {key: block_frames(spec, self._align, self._image_shard) for key, spec in specs.items()}
            self._flush_due = min(self._blocks.values())
        else:
            if flat.keys() != self._ep_specs.keys():
                missing = sorted(self._ep_specs.keys() - flat.keys())
                added = sorted(flat.keys() - self._ep_specs.keys())
                raise StepMismatchError(
                    f"step {self._length} has different keys from the episode's first step "
                    f"(missing: {missing}, unexpected: {added})"
                )
            for key, value in flat.items():
                spec = self._ep_specs[key]
                if value.shape != spec.shape or value.dtype.str != spec.dtype:
                    raise StepMismatchError(
                        f"step {self._length}: {key!r} has shape {value.shape} dtype {value.dtype}, "
                        f"but the episode started with shape {spec.shape} dtype {np.dtype(spec.dtype)}"
                    )
        for key, value in flat.items():
            self._buffers[key].append(value)
        self._length += 1
        if self._length >= self._flush_due:
            self._flush(final=False)

    def add_episode(self, data: Mapping[str, Any], **meta: Any) -> str:
        """Write a whole episode at once from arrays keyed like 'obs/<k>', 'actions', ...; returns its id."""
        self._check_open()
        if self._length:
            raise WriterStateError("an episode is in progress (add_step was called); finish() or discard() it first")
        flat: dict[str, np.ndarray] = {}
        _flatten_into(flat, "", data)
        lengths = {key: len(value) if value.ndim else -1 for key, value in flat.items()}
        if not flat or len(set(lengths.values())) != 1 or -1 in lengths.values() or 0 in lengths.values():
            raise StepMismatchError(f"add_episode needs non-empty arrays of equal length per key, got lengths {lengths}")
        for key, value in flat.items():
            check_dtype(key, value.dtype)
        self._check_meta(meta, "add_episode()")
        specs = {key: KeySpec(tuple(value.shape[1:]), value.dtype.str) for key, value in flat.items()}
        self._ensure_segment(specs)
        self._ep_specs = specs
        self._length = next(iter(lengths.values()))
        write_blocks([(self._arrays[key], self._slot_start, np.ascontiguousarray(value)) for key, value in flat.items()])
        self._flushed = {key: self._length for key in flat}
        self._buffers = {key: [] for key in flat}
        self._blocks = {}
        rewards = flat.get("rewards")
        return self._commit(meta, rewards)

    def _flush(self, final: bool) -> None:
        """Write buffered frames: full blocks during the episode, everything at the end."""
        writes = []
        for key, buffer in self._buffers.items():
            if not buffer:
                continue
            block = self._blocks[key]
            if not final and len(buffer) < block:
                continue
            count = len(buffer) if final else (len(buffer) // block) * block
            writes.append((self._arrays[key], self._slot_start + self._flushed[key], np.stack(buffer[:count])))
            self._flushed[key] += count
            del buffer[:count]
        write_blocks(writes)
        if self._blocks:
            self._flush_due = min(self._flushed[k] + b for k, b in self._blocks.items())

    def finish(self, **meta: Any) -> str:
        """End the current episode and commit its metadata row (success=, init_state_id=, trial=, ...)."""
        self._check_open()
        if self._length == 0:
            raise WriterStateError("finish() called with no steps: add_step at least once first")
        self._check_meta(meta, "finish()")  # before anything is written: a refused finish() can be retried
        rewards_written = None
        if "rewards" in self._buffers:
            rewards_written = self._flushed["rewards"]
        pending_rewards = list(self._buffers.get("rewards", []))
        self._flush(final=True)
        rewards = None
        if rewards_written is not None:
            head = (
                np.asarray(self._arrays["rewards"][self._slot_start: self._slot_start + rewards_written])
                if rewards_written
                else np.zeros(0)
            )
            rewards = np.concatenate([head.ravel(), np.asarray(pending_rewards, dtype=np.float64).ravel()])
        return self._commit(meta, rewards)

    def discard(self) -> None:
        """Drop the current episode; its frames stay unreferenced until `gc`."""
        self._check_open()
        if self._length:
            self._next_slot = self._slot_start + self._slot_size(self._length)
        if self._recorder is not None:
            self._recorder.take()  # the dropped episode's chunk files get no commit record
        self._reset_episode()

    def _slot_size(self, length: int) -> int:
        return -(-length // self._align) * self._align

    def _check_meta(self, meta: Mapping[str, Any], where: str) -> None:
        """Refuse reserved columns and wrongly typed values before any frame of the episode is written."""
        bad = sorted(set(meta) & RESERVED_COLUMNS - {"model_xml_sha"})
        if bad:
            raise ValueError(f"{where} may not set {bad}: the store fills these columns itself")
        check_metadata_types(meta, where=where)
        if meta.get("model_xml") is not None and not isinstance(meta["model_xml"], str):
            raise ValueError(f"{where}: model_xml must be the model's XML text, got {type(meta['model_xml']).__name__}")

    def _commit(self, meta: dict[str, Any], rewards: np.ndarray | None) -> str:
        if self._lock.lost:
            raise WriterStateError(
                f"the lock of writer {self.segment} was removed while it ran (by `sime-data gc --ignore-locks` or by "
                "hand), so its frames may be gone; this episode was not committed: write it again with a new writer"
            )
        model_xml = meta.pop("model_xml", None)
        episode_id = f"{self.segment}-{len(self._committed):05d}"
        fields = {**self.defaults, **meta}
        if rewards is not None and fields.get("episode_return") is None:
            fields["episode_return"] = float(np.sum(rewards, dtype=np.float64))
        row = build_row(fields)
        row.update(
            episode_id=episode_id,
            segment=self.segment,
            seg_start=self._slot_start,
            length=self._length,
            created_at=utc_now(),
            keys=sorted(self._ep_specs),
            model_xml_sha=self._blob_sha(model_xml) if model_xml else self._model_xml_sha,
        )
        files = self._recorder.take() if self._recorder is not None else {}
        record = episode_record(row, files)
        if self.atomic:
            self._pending_rows.append(row)
            self._pending_records[episode_id] = record
        else:
            write_rows(self.sfs, f"{EPISODES_DIR}/{self.segment}/{episode_id}.parquet", [row], durable=self.durable)
            self._write_records(episode_id, {episode_id: record})
        self._committed.append(episode_id)
        self._next_slot = self._slot_start + self._slot_size(self._length)
        self._reset_episode()
        return episode_id

    def _write_records(self, name: str, records: dict[str, dict[str, Any]]) -> None:
        """Write the checksum records of committed episodes (a failure leaves them committed, without records)."""
        try:
            write_record_file(self.sfs, self.segment, name, records, durable=self.durable)
        except Exception as exc:  # noqa: BLE001 - the rows are committed already; verify will note the gap
            log.warning("writer %s: could not write checksum records %s: %s", self.segment, name, exc)

    # ----------------------------------------------------------------- closing
    def close(self, error: BaseException | None = None) -> None:
        """Finish the writer: discard an unfinished episode, commit (atomic mode) and release the segment."""
        if self._closed:
            return
        if self._length:
            log.warning("writer %s closed with an unfinished episode of %d steps: discarded", self.segment, self._length)
            self._reset_episode()
        self._closed = True
        if self.batch is not None:  # the batch commits (or drops) every writer's episodes and releases the locks
            if error is not None:
                self._drop_uncommitted()
            return
        try:
            if self.atomic:
                if error is None and self._pending_rows:
                    for data in self._pending_blobs.values():
                        store_blob(self.sfs, data, ".xml")
                    write_rows(self.sfs, f"{EPISODES_DIR}/{self.segment}/batch.parquet", self._pending_rows)
                    self._write_records("batch", self._pending_records)
                elif error is not None:
                    self._drop_uncommitted()
                self._pending_rows, self._pending_blobs, self._pending_records = [], {}, {}
            elif len(self._committed) > 1:
                compact_segment(self.sfs, self.catalog, self.segment)
        finally:
            self._lock.release()

    def _drop_uncommitted(self) -> None:
        """Forget an atomic writer's pending episodes and delete its frames (nothing of it was visible)."""
        self._committed.clear()
        self._pending_rows, self._pending_blobs, self._pending_records = [], {}, {}
        self.sfs.remove(f"data/{self.segment}", recursive=True)

    def __enter__(self) -> "EpisodeWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(exc)


class CommitBatch:
    """Atomic writers (one per array layout) whose episodes all become visible at once, in one row file.

    Use as a context manager: on a clean exit every writer's episodes are committed together; on an error
    (or a killed process) none is, and the writers' frames are removed (or left for `gc`).
    """

    def __init__(self, sfs: StoreFS, root_meta: RootMeta, catalog: Catalog, data: DataRoot) -> None:
        self.sfs = sfs
        self.root_meta = root_meta
        self.catalog = catalog
        self.data = data
        self._writers: list[EpisodeWriter] = []
        self._closed = False

    def writer(self, source: str, task: str | None = None, *, model_xml: str | None = None,
               **defaults: Any) -> EpisodeWriter:
        """A new atomic writer taking part in this batch."""
        if self._closed:
            raise WriterStateError("this commit batch is closed")
        writer = EpisodeWriter(self.sfs, self.root_meta, self.catalog, self.data, source, task, model_xml=model_xml,
                               batch=self, **defaults)
        self._writers.append(writer)
        return writer

    def close(self, error: BaseException | None = None) -> None:
        """Commit every writer's episodes in one row file (or, after an error, drop them all); release the locks."""
        if self._closed:
            return
        self._closed = True
        committed = False
        try:
            for writer in self._writers:
                writer.close(error)
            with_rows = [w for w in self._writers if w._pending_rows]
            if error is None and with_rows:
                for writer in with_rows:
                    for data in writer._pending_blobs.values():
                        store_blob(self.sfs, data, ".xml")
                rows = [row for w in with_rows for row in w._pending_rows]
                # the single commit point: every episode of the batch becomes visible with this one file
                write_rows(self.sfs, f"{EPISODES_DIR}/{with_rows[0].segment}/batch.parquet", rows)
                committed = True
                for writer in with_rows:
                    writer._write_records("batch", writer._pending_records)
        except BaseException:
            if not committed:
                for writer in self._writers:
                    writer._drop_uncommitted()
            raise
        finally:
            for writer in self._writers:
                writer._pending_rows, writer._pending_blobs, writer._pending_records = [], {}, {}
                writer._lock.release()

    def __enter__(self) -> "CommitBatch":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(exc)


def write_rows(sfs: StoreFS, rel: str, rows: list[dict[str, Any]], metadata: dict[bytes, bytes] | None = None,
               durable: bool = True) -> None:
    """Commit episode rows as one Parquet file (visible all at once, never overwritten)."""
    table = rows_to_table(rows)
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    sfs.write_atomic(rel, buffer.getvalue(), exclusive=True, durable=durable)


def _describe_difference(old: dict[str, KeySpec], new: dict[str, KeySpec]) -> str:
    parts = []
    if old.keys() != new.keys():
        parts.append(f"missing keys {sorted(old.keys() - new.keys())}, unexpected keys {sorted(new.keys() - old.keys())}")
    for key in sorted(old.keys() & new.keys()):
        if old[key] != new[key]:
            parts.append(
                f"{key!r} shape {new[key].shape} dtype {np.dtype(new[key].dtype)} "
                f"(was {old[key].shape} {np.dtype(old[key].dtype)})"
            )
    return "; ".join(parts)
