"""Zarr v3 arrays of one writer's segment: per-key chunking, creation and block writes."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from .errors import UnsupportedDtypeError
from .layout import IMAGE_MIN_BYTES

#: Arrays are created this long up front so their metadata never has to be rewritten (no resize).
MAX_FRAMES = 2**40
#: numpy dtype kinds a per-step array may have: bool, signed/unsigned int, float, complex (fixed-size numbers).
SUPPORTED_KINDS = "biufc"


@dataclass(frozen=True)
class KeySpec:
    """Shape (of one step) and dtype of a per-step array."""

    shape: tuple[int, ...]
    dtype: str

    @property
    def is_image(self) -> bool:
        """True for large per-step arrays (camera frames), stored one frame per inner chunk."""
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize >= IMAGE_MIN_BYTES

    def to_json(self) -> dict[str, Any]:
        """JSON form for the segment's attributes."""
        return {"shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "KeySpec":
        """Inverse of `to_json`."""
        return cls(tuple(int(x) for x in raw["shape"]), str(raw["dtype"]))

    @classmethod
    def of(cls, value: np.ndarray, key: str = "?") -> "KeySpec":
        """Spec of one step's value (UnsupportedDtypeError for strings, bytes, dates, objects, records)."""
        check_dtype(key, value.dtype)
        return cls(tuple(int(x) for x in value.shape), value.dtype.str)


def check_dtype(key: str, dtype: np.dtype) -> None:
    """Raise UnsupportedDtypeError unless `dtype` is a plain number or bool type the store keeps exactly."""
    if dtype.kind not in SUPPORTED_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise UnsupportedDtypeError(
            f"array {key!r} has dtype {dtype} ({_KIND_NAMES.get(dtype.kind, 'unsupported kind')}): per-step arrays "
            "must hold bools or numbers; keep text, bytes or timestamps in episode metadata (finish(notes=..., "
            "my_field=...)) or encode them as numbers (e.g. timestamps as float64 seconds)"
        )


_KIND_NAMES = {"U": "text", "S": "bytes", "O": "Python objects", "M": "datetime", "m": "timedelta",
               "V": "raw bytes / record"}


class ArrayLayout:
    """Shape, chunk grid and chunk-key encoding of one Zarr v3 array, read from its zarr.json."""

    def __init__(self, meta: dict[str, Any]) -> None:
        if meta.get("node_type") != "array":
            raise ValueError(f"node_type is {meta.get('node_type')!r}, not 'array'")
        self.shape = tuple(int(x) for x in meta["shape"])
        grid = meta["chunk_grid"]
        if grid.get("name") != "regular":
            raise ValueError(f"unsupported chunk grid {grid.get('name')!r}")
        # with the sharding codec this is the shard shape: one file per grid cell either way
        self.chunk_shape = tuple(int(x) for x in grid["configuration"]["chunk_shape"])
        encoding = meta.get("chunk_key_encoding", {"name": "default"})
        self.encoding = encoding.get("name", "default")
        default_sep = "/" if self.encoding == "default" else "."
        self.separator = (encoding.get("configuration") or {}).get("separator", default_sep)
        self.data_type = meta.get("data_type")
        self.sharded = any(c.get("name") == "sharding_indexed" for c in meta.get("codecs", []))

    @property
    def frames_per_file(self) -> int:
        """Frames along axis 0 held by one chunk (or shard) file."""
        return self.chunk_shape[0]

    def chunk_key(self, coords: Iterable[int]) -> str:
        """Path of a chunk file relative to the array directory."""
        joined = self.separator.join(str(int(c)) for c in coords)
        return f"c{self.separator}{joined}" if self.encoding == "default" else joined

    def parse_chunk_key(self, key: str) -> tuple[int, ...] | None:
        """Inverse of `chunk_key`; None for anything that is not a chunk file of this array."""
        if self.encoding == "default":
            prefix = "c" + self.separator
            if not key.startswith(prefix):
                return None
            key = key[len(prefix):]
        parts = key.split(self.separator)
        if len(parts) != len(self.shape) or not all(p.isdigit() for p in parts):
            return None
        return tuple(int(p) for p in parts)

    def file_keys_for_frames(self, start: int, stop: int) -> list[str]:
        """Chunk keys of every file holding frames [start, stop)."""
        n = self.frames_per_file
        first, last = start // n, (stop - 1) // n
        trailing = [range(-(-s // c)) for s, c in zip(self.shape[1:], self.chunk_shape[1:])]
        return [self.chunk_key((i, *rest)) for i in range(first, last + 1) for rest in itertools.product(*trailing)]


def block_frames(spec: KeySpec, align: int, image_shard: int) -> int:
    """Frames written to storage at once for this key (one shard for images, one chunk for low-dim)."""
    return image_shard if spec.is_image else align


def create_segment(
    root: zarr.Group, segment: str, specs: dict[str, KeySpec], align: int, image_shard: int, attrs: dict[str, Any]
) -> dict[str, zarr.Array]:
    """Create the segment group and one array per key; metadata is written once, here."""
    # every chunk is written even when it holds only fill values, so `verify` can tell a missing chunk file
    # from an all-zero one (recorded in the group attributes)
    group = root.create_group(
        segment, attributes={**attrs, "keys": {k: s.to_json() for k, s in specs.items()}, "write_empty_chunks": True}
    )
    arrays: dict[str, zarr.Array] = {}
    for key, spec in specs.items():
        dtype = np.dtype(spec.dtype)
        if spec.is_image:
            chunks = (1, *spec.shape)
            shards: tuple[int, ...] | None = (image_shard, *spec.shape)
            compressor = BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle" if dtype.itemsize == 1 else "shuffle")
        else:
            chunks = (align, *spec.shape)
            shards = None
            compressor = BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")
        arrays[key] = group.create_array(
            key,
            shape=(MAX_FRAMES, *spec.shape),
            chunks=chunks,
            shards=shards,
            dtype=dtype,
            compressors=[compressor],
            fill_value=np.zeros((), dtype=dtype).item() if dtype.kind != "V" else None,
            config={"write_empty_chunks": True},
        )
    return arrays


def write_blocks(writes: list[tuple[zarr.Array, int, np.ndarray]]) -> None:
    """Write several (array, first frame, data) blocks concurrently."""
    if not writes:
        return
    if len(writes) == 1:
        array, start, data = writes[0]
        array[start: start + len(data)] = data
        return

    async def _all() -> None:
        await asyncio.gather(
            *(array._async_array.setitem(slice(start, start + len(data)), data) for array, start, data in writes)
        )

    from zarr.core.sync import sync

    sync(_all())


def read_blocks(reads: list[tuple[zarr.Array, int, int]]) -> list[np.ndarray]:
    """Read several (array, start, stop) frame ranges concurrently."""
    if len(reads) == 1:
        array, start, stop = reads[0]
        return [np.asarray(array[start:stop])]

    async def _all() -> list[Any]:
        return await asyncio.gather(*(array._async_array.getitem(slice(start, stop)) for array, start, stop in reads))

    from zarr.core.sync import sync

    return [np.asarray(x) for x in sync(_all())]
