"""Errors raised by the trajectory store; each names the problem and, where there is one, the fix."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error the trajectory store raises on purpose."""


class StoreNotFoundError(StoreError):
    """No store exists at the given location."""


class StoreExistsError(StoreError):
    """A store (or other data) already exists where a new store was to be created."""


class SchemaVersionError(StoreError):
    """The store's on-disk format is older or newer than this code understands."""


class OutdatedStoreError(SchemaVersionError):
    """The store's format is older than this code: it must be migrated first."""


class NewerStoreError(SchemaVersionError):
    """The store was written by a newer version of the toolkit."""


class EpisodeNotFoundError(StoreError, KeyError):
    """An episode id that the store does not contain."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class VersionNotFoundError(StoreError, KeyError):
    """A version name that the store does not contain."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class VersionExistsError(StoreError):
    """A version with this name already exists; versions are immutable."""


class InvalidNameError(StoreError, ValueError):
    """A version name or array key with characters the store does not accept."""


class StepMismatchError(StoreError, ValueError):
    """A step whose keys, shapes or dtypes differ from the episode's first step."""


class WriterStateError(StoreError):
    """A writer used out of order (finish without steps, writing after close, ...)."""


class ReadOnlySQLError(StoreError):
    """A SQL statement that would modify data; the catalog only answers queries."""


class SQLError(StoreError):
    """A SQL query that DuckDB could not run (syntax error, unknown column, ...)."""


class InvalidManifestError(StoreError, ValueError):
    """A version manifest that refers to missing episodes or impossible frame ranges."""


class ImportFormatError(StoreError):
    """An input file that is corrupt or not in the expected layout."""


class CorruptStoreError(StoreError):
    """The store is damaged (a missing chunk, an unreadable metadata file, ...)."""


class UnknownKeyError(StoreError, KeyError):
    """An array key that the version's episodes do not all have."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class EmptyVersionError(StoreError, ValueError):
    """A version (or episode subset) that yields no frames or no training windows."""


class SQLTimeoutError(SQLError):
    """A SQL query that ran longer than its time limit and was stopped."""


class SQLResultTooLargeError(SQLError):
    """A SQL query whose result has more rows than the cap allows."""


class StoreWarning(UserWarning):
    """Part of the store could not be read and was left out (the message names the file)."""


class UnsupportedDtypeError(StoreError, TypeError):
    """A per-step array whose dtype the store does not hold (text, bytes, dates, objects, records)."""


class MetadataTypeError(StoreError, TypeError):
    """An episode metadata value of the wrong type (a string or NaN for `success`, a float for `trial`, ...)."""


class StoreDamagedError(CorruptStoreError):
    """`gc` refused to run because `verify` found damage (rerun with force after reading the dry-run listing)."""


class MigrationInProgressError(StoreError):
    """A format migration of the store is running (or switching) right now; retry when it has finished."""
