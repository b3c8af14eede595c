"""Lay out a new, empty store at the current on-disk format."""

from __future__ import annotations

import uuid

import zarr

from .layout import (
    BLOBS_DIR,
    CHECKSUMS_DIR,
    DATA_DIR,
    EPISODES_DIR,
    FORMAT_MIGRATIONS,
    LOCKS_DIR,
    ROOT_FILE,
    SCHEMA_VERSION,
    VERSIONS_DIR,
    RootMeta,
)
from .schema import utc_now
from .storefs import StoreFS


def write_new_store(sfs: StoreFS) -> None:
    """Write an empty store of format SCHEMA_VERSION; the root file comes last, so a crash leaves no store."""
    for rel in (DATA_DIR, EPISODES_DIR, VERSIONS_DIR, BLOBS_DIR, LOCKS_DIR, CHECKSUMS_DIR):
        sfs.makedirs(rel)
    if sfs.is_local:
        zarr.open_group(zarr.storage.LocalStore(sfs.path(DATA_DIR)), mode="a", zarr_format=3)
    meta = RootMeta(schema_version=SCHEMA_VERSION, store_id=uuid.uuid4().hex, created_at=utc_now().isoformat(),
                    migrations_applied=list(FORMAT_MIGRATIONS))
    sfs.write_atomic(ROOT_FILE, meta.to_json(), exclusive=True)
