"""Migration 0001: the store layout of format version 1 at an empty location.

It is never applied to an existing store (every store is at format 1 or later); `sime_data.Store.create` writes
new stores at the current format. It stays as the record of what format 1 is.
"""

from __future__ import annotations

import uuid

from sime_data.layout import BLOBS_DIR, DATA_DIR, EPISODES_DIR, LOCKS_DIR, ROOT_FILE, VERSIONS_DIR, RootMeta
from sime_data.schema import utc_now
from sime_data.storefs import StoreFS

NUMBER = 1
NAME = "0001_create"
DESCRIPTION = "create an empty store: root metadata, Zarr data group, metadata and version directories"


def apply(sfs: StoreFS) -> None:
    """Lay out an empty format-1 store; the root file is written last, so a crash leaves no store."""
    import zarr

    for rel in (DATA_DIR, EPISODES_DIR, VERSIONS_DIR, BLOBS_DIR, LOCKS_DIR):
        sfs.makedirs(rel)
    if sfs.is_local:
        zarr.open_group(zarr.storage.LocalStore(sfs.path(DATA_DIR)), mode="a", zarr_format=3)
    meta = RootMeta(schema_version=NUMBER, store_id=uuid.uuid4().hex, created_at=utc_now().isoformat(),
                    migrations_applied=[NAME])
    sfs.write_atomic(ROOT_FILE, meta.to_json(), exclusive=True)
