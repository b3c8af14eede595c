"""Per-chunk checksums: the crc32c and size of every chunk file an episode's frames live in, recorded at commit.

A record file `checksums/<segment>/<name>.json` is written once (never rewritten) right after the episode's row
is committed, from the bytes the writer handed to the storage layer, so recording costs no extra read.
Migration 0002 adds the same records for the chunks of stores written before checksums existed, by reading
them; no chunk is rewritten. `verify` compares every record with its row (fast) and, with `deep`, every chunk
file's bytes with its checksum.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import google_crc32c
from zarr.core.buffer import Buffer
from zarr.storage import WrapperStore

from .layout import CHECKSUMS_DIR, DATA_DIR

if TYPE_CHECKING:  # pragma: no cover
    from .storefs import StoreFS

#: Checksum algorithm of every record (its name is stored in each record file).
ALGORITHM = "crc32c"
#: Version of the record file layout.
RECORD_FORMAT = 1


def checksum(data: Any) -> str:
    """crc32c of a bytes-like object, as 8 hex digits."""
    return f"{google_crc32c.value(data):08x}"


class ChecksumRecorder(WrapperStore):
    """A Zarr store wrapper noting (checksum, size) of each chunk file written below `prefix`."""

    def __init__(self, store: Any, prefix: str) -> None:
        super().__init__(store)
        self.prefix = prefix
        self._written: dict[str, tuple[str, int]] = {}

    def _note(self, key: str, value: Buffer) -> None:
        if key.startswith(self.prefix) and not key.endswith("zarr.json"):
            data = value.as_numpy_array()
            self._written[key[len(self.prefix):]] = (checksum(data), int(data.nbytes))

    async def set(self, key: str, value: Buffer) -> None:
        """Write a file and note its checksum."""
        await self._store.set(key, value)
        self._note(key, value)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        """Write a file unless it exists (metadata only in practice)."""
        await self._store.set_if_not_exists(key, value)

    def take(self) -> dict[str, tuple[str, int]]:
        """The files noted since the last call (path below the segment -> (crc32c, size)), forgetting them."""
        out, self._written = self._written, {}
        return out


def episode_record(row: Mapping[str, Any], files: Mapping[str, tuple[str, int]]) -> dict[str, Any]:
    """The checksum record of one committed episode."""
    return {
        "segment": row["segment"],
        "seg_start": int(row["seg_start"]),
        "length": int(row["length"]),
        "keys": sorted(row["keys"]),
        "files": {rel: [crc, size] for rel, (crc, size) in sorted(files.items())},
    }


def write_record_file(sfs: "StoreFS", segment: str, name: str, records: Mapping[str, dict[str, Any]], *,
                      durable: bool = True, source: str = "commit") -> str:
    """Write `checksums/<segment>/<name>.json` once (never replaced); returns its path."""
    rel = f"{CHECKSUMS_DIR}/{segment}/{name}.json"
    body = {"format": RECORD_FORMAT, "algorithm": ALGORITHM, "source": source, "episodes": dict(records)}
    sfs.write_atomic(rel, json.dumps(body, sort_keys=True).encode(), exclusive=True, durable=durable)
    return rel


@dataclass
class RecordSet:
    """Every checksum record of a store: episode id -> (record, file it came from), plus unreadable files."""

    records: dict[str, tuple[dict[str, Any], str]]
    unreadable: dict[str, str]
    conflicts: list[str]

    def get(self, episode_id: str) -> dict[str, Any] | None:
        """The record of an episode, or None."""
        found = self.records.get(episode_id)
        return found[0] if found else None


def load_records(sfs: "StoreFS") -> RecordSet:
    """Read every checksum record file (they are only ever added, so one listing is a consistent view)."""
    records: dict[str, tuple[dict[str, Any], str]] = {}
    unreadable: dict[str, str] = {}
    conflicts: list[str] = []
    for rel in sfs.list_files(CHECKSUMS_DIR, ".json"):
        try:
            body = json.loads(sfs.read_bytes(rel))
            if body.get("algorithm") != ALGORITHM:
                raise ValueError(f"unknown checksum algorithm {body.get('algorithm')!r}")
            episodes = body["episodes"]
            for eid, rec in episodes.items():
                _check_record_shape(rec)
        except FileNotFoundError:
            continue  # removed by gc with its segment
        except Exception as exc:  # noqa: BLE001 - any decoding failure is damage to report
            unreadable[rel] = f"{type(exc).__name__}: {exc}"
            continue
        for eid, rec in episodes.items():
            if eid in records and records[eid][0] != rec:
                conflicts.append(f"episode {eid} has different checksum records in {records[eid][1]} and {rel}")
                continue
            records.setdefault(eid, (rec, rel))
    return RecordSet(records, unreadable, conflicts)


def _check_record_shape(rec: Any) -> None:
    if not isinstance(rec, dict):
        raise ValueError("an episode record is not an object")
    for key, kind in (("segment", str), ("seg_start", int), ("length", int), ("keys", list), ("files", dict)):
        if not isinstance(rec.get(key), kind):
            raise ValueError(f"an episode record has no valid {key!r}")


def compare_with_row(rec: Mapping[str, Any], row: Mapping[str, Any]) -> list[str]:
    """How an episode's row differs from what was recorded when it was committed (empty when it agrees)."""
    out = []
    for key in ("segment", "seg_start", "length"):
        if rec[key] != row[key]:
            out.append(f"its row says {key}={row[key]!r} but it was committed with {key}={rec[key]!r}")
    if sorted(rec["keys"]) != sorted(row["keys"] or []):
        out.append(f"its row lists arrays {sorted(row['keys'] or [])} but it was committed with {rec['keys']}")
    return out


def hash_files(sfs: "StoreFS", segment: str, rels: Iterable[str]) -> dict[str, tuple[str, int]]:
    """(crc32c, size) of existing chunk files of a segment, read from storage (missing files are left out)."""
    out: dict[str, tuple[str, int]] = {}
    for rel in rels:
        try:
            data = sfs.read_bytes(f"{DATA_DIR}/{segment}/{rel}")
        except FileNotFoundError:
            continue
        out[rel] = (checksum(data), len(data))
    return out
