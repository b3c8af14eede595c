"""Where things live inside a store directory, and the store's root metadata file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

#: On-disk format this code reads and writes; equals the number of the newest migration.
SCHEMA_VERSION = 2
#: The `migrations_applied` of a store created at this format: every migration's name, oldest first.
FORMAT_MIGRATIONS = ("0001_create", "0002_checksums")

ROOT_FILE = "sime_store.json"
STORE_FORMAT = "sime-store"
DATA_DIR = "data"  # Zarr v3 hierarchy: data/<segment>/<array key>
EPISODES_DIR = "meta/episodes"  # committed episode rows: meta/episodes/<segment>/<file>.parquet
COMPACT_PREFIX = "compact-"  # meta/episodes/compact-<id>.parquet merges (supersedes) other row files
VERSIONS_DIR = "versions"  # versions/<name>.version.parquet
VERSION_SUFFIX = ".version.parquet"
BLOBS_DIR = "blobs"  # content-addressed blobs, e.g. model XML: blobs/<sha256>.xml
LOCKS_DIR = "locks"  # locks/<segment>.json while a writer owns the segment (held with an OS lock)
CHECKSUMS_DIR = "checksums"  # checksums/<segment>/<name>.json: crc32c and size of each committed chunk file
#: Store-wide compaction lock file (held while a compaction merges row files).
COMPACTION_LOCK = f"{LOCKS_DIR}/compaction.lock"

#: Frames per episode slot: every episode starts at a multiple of this in its segment's arrays,
#: so no two episodes ever share a chunk and committed chunks are never rewritten.
DEFAULT_ALIGN_FRAMES = 512
#: Per-step arrays of at least this many bytes are stored one frame per inner chunk (images);
#: smaller ones many frames per chunk (low-dim).
IMAGE_MIN_BYTES = 4096
#: Frames per shard for image-like arrays (a shard is one file holding many one-frame chunks).
IMAGE_SHARD_FRAMES = 64


@dataclass
class RootMeta:
    """Contents of `sime_store.json`: format name, schema version and store-wide layout settings."""

    schema_version: int
    store_id: str
    created_at: str
    format: str = STORE_FORMAT
    align_frames: int = DEFAULT_ALIGN_FRAMES
    image_shard_frames: int = IMAGE_SHARD_FRAMES
    migrations_applied: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        """Serialised form."""
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "RootMeta":
        """Parse the root metadata file, keeping unknown future keys out."""
        raw = json.loads(data)
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        return cls(**known)


def version_path(name: str) -> str:
    """Relative path of a version's manifest file."""
    return f"{VERSIONS_DIR}/{name}{VERSION_SUFFIX}"


def version_name_from_path(rel: str) -> str:
    """Inverse of `version_path`."""
    return rel[len(VERSIONS_DIR) + 1: -len(VERSION_SUFFIX)]
