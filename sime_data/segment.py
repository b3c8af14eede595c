"""Zarr v3 arrays of one writer's segment: per-key chunking, creation and block writes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from .layout import IMAGE_MIN_BYTES

#: Arrays are created this long up front so their metadata never has to be rewritten (no resize).
MAX_FRAMES = 2**40


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
    def of(cls, value: np.ndarray) -> "KeySpec":
        """Spec of one step's value."""
        return cls(tuple(int(x) for x in value.shape), value.dtype.str)


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
