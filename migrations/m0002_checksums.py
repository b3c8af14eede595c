"""Migration 0002: add per-chunk checksum records (crc32c and size) for every committed episode (format 2).

Format-2 writers record the checksums of the chunk files they write at commit time. This migration adds the
same records for the episodes of a format-1 store by reading their chunk files once; it only adds files
under `checksums/`, no chunk or row file is rewritten.
"""

from __future__ import annotations

import json
from collections import defaultdict

from sime_data.catalog import Catalog
from sime_data.checksums import episode_record, hash_files, write_record_file
from sime_data.layout import CHECKSUMS_DIR, DATA_DIR
from sime_data.segment import ArrayLayout
from sime_data.storefs import StoreFS

NUMBER = 2
NAME = "0002_checksums"
DESCRIPTION = "record crc32c checksums of the chunk files of every committed episode (no chunk is rewritten)"
#: Name of the record file written per segment.
RECORD_NAME = "migrated-0002"


def apply(sfs: StoreFS) -> None:
    """Write checksums/<segment>/migrated-0002.json for each segment holding committed episodes."""
    sfs.makedirs(CHECKSUMS_DIR)
    table = Catalog(sfs).episodes().select(["episode_id", "segment", "seg_start", "length", "keys"])
    by_segment: dict[str, list[dict]] = defaultdict(list)
    for row in table.to_pylist():
        by_segment[row["segment"]].append(row)
    for segment, rows in sorted(by_segment.items()):
        layouts: dict[str, ArrayLayout | None] = {}
        records = {}
        for row in rows:
            wanted: list[str] = []
            for key in row["keys"] or []:
                if key not in layouts:
                    layouts[key] = _layout(sfs, segment, key)
                layout = layouts[key]
                if layout is None:
                    continue  # unreadable array metadata: `verify` reports it
                start = int(row["seg_start"])
                wanted += [f"{key}/{chunk}" for chunk in layout.file_keys_for_frames(start, start + int(row["length"]))]
            records[row["episode_id"]] = episode_record(row, hash_files(sfs, segment, wanted))
        write_record_file(sfs, segment, RECORD_NAME, records, source=f"migration {NAME}")


def _layout(sfs: StoreFS, segment: str, key: str) -> ArrayLayout | None:
    try:
        return ArrayLayout(json.loads(sfs.read_bytes(f"{DATA_DIR}/{segment}/{key}/zarr.json")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
