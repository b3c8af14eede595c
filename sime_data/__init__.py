"""SIME trajectory store: versioned episodes in Zarr + Parquet with a read-only DuckDB catalog."""

from .errors import (
    CorruptStoreError,
    EmptyVersionError,
    EpisodeNotFoundError,
    ImportFormatError,
    InvalidManifestError,
    InvalidNameError,
    NewerStoreError,
    OutdatedStoreError,
    ReadOnlySQLError,
    SchemaVersionError,
    SQLError,
    StepMismatchError,
    StoreError,
    StoreExistsError,
    StoreNotFoundError,
    UnknownKeyError,
    VersionExistsError,
    VersionNotFoundError,
    WriterStateError,
)
from .robomimic_io import ExportResult, ImportResult, export_robomimic, import_robomimic
from .selection import Selection, create_selection_version, per_state_success, preview_thresholds, select
from .sampler import SequenceSampler, VersionData, load_version_arrays, split_episodes
from .stats import version_stats
from .store import SCHEMA_VERSION, Store, init_store, open_store
from .versions import Version, VersionDiff
from .writer import EpisodeWriter

__all__ = [
    "SCHEMA_VERSION", "Store", "open_store", "init_store", "EpisodeWriter", "Version", "VersionDiff",
    "StoreError", "StoreNotFoundError", "StoreExistsError", "SchemaVersionError", "OutdatedStoreError",
    "NewerStoreError", "EpisodeNotFoundError", "VersionNotFoundError", "VersionExistsError", "InvalidNameError",
    "StepMismatchError", "WriterStateError", "ReadOnlySQLError", "SQLError", "InvalidManifestError",
    "ImportFormatError", "CorruptStoreError", "import_robomimic", "export_robomimic", "ImportResult", "ExportResult",
    "SequenceSampler", "VersionData", "load_version_arrays", "split_episodes", "version_stats", "UnknownKeyError",
    "EmptyVersionError", "Selection", "select", "per_state_success", "preview_thresholds", "create_selection_version",
]
