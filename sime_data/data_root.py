"""The store's Zarr root group under data/, opened on first use and shared by its readers and writers."""

from __future__ import annotations

from typing import Any

import zarr

from .layout import DATA_DIR
from .storefs import StoreFS


class DataRoot:
    """The Zarr v3 group holding one subgroup per segment, opened lazily (local disk or fsspec)."""

    def __init__(self, sfs: StoreFS) -> None:
        self.sfs = sfs
        self._group: zarr.Group | None = None

    @property
    def group(self) -> zarr.Group:
        """The root group (opened on the first call)."""
        if self._group is None:
            self._group = _open_root(self.sfs)
        return self._group


def _open_root(sfs: StoreFS) -> zarr.Group:
    """Open data/ as a Zarr v3 group for reading and writing."""
    if sfs.is_local:
        zstore = zarr.storage.LocalStore(sfs.path(DATA_DIR))
    else:
        zstore = zarr.storage.FsspecStore(_async_fs(sfs.fs), path=sfs.path(DATA_DIR))
    return zarr.open_group(zstore, mode="a", zarr_format=3)


def _async_fs(fs: Any) -> Any:
    """An asynchronous twin of an fsspec filesystem, as zarr's FsspecStore requires."""
    if getattr(fs, "async_impl", False):
        return fs
    from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper

    return AsyncFileSystemWrapper(fs, asynchronous=True)
