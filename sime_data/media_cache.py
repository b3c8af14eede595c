"""A cache area of a store for derived media (mp4 clips, filmstrips): never part of versions, safe to delete.

Files live under `<store>/cache/media/<kind>/<k[:2]>/<k>.<ext>`, where `k` is a digest of everything the
file was made from (episode id, kept frame ranges, camera and the encoder/render settings). A cached file
is written to a temp file beside its final name and renamed into place, so a reader sees either nothing
or a whole file; two processes making the same file at once both succeed and one copy remains.

`sime-data verify` and `gc` look only at the store's own directories (data/, meta/, versions/, blobs/,
checksums/, locks/), so they neither report nor reclaim anything under cache/. Deleting cache/ at any
time loses nothing but the time to make the files again.

Stores on object storage (fsspec URLs) keep their cache on this machine instead, under
`$SIME_MEDIA_CACHE` or `~/.cache/sime/media/<digest of the store location>`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

#: Cache directory relative to a local store's root.
CACHE_DIR = "cache/media"
#: Overrides where stores that are not local directories keep their media cache.
ENV_MEDIA_CACHE = "SIME_MEDIA_CACHE"
#: Marker in the name of files still being written (never returned by `get`).
_TMP_MARK = ".part-"


def media_key(episode_id: str, ranges: Sequence[Sequence[int]] | None, camera: str,
              settings: Mapping[str, Any] | None = None) -> str:
    """Digest naming one derived file: episode id + kept frame ranges + camera + settings (JSON-canonical)."""
    payload = {
        "episode": str(episode_id),
        "ranges": None if ranges is None else [[int(a), int(b)] for a, b in ranges],
        "camera": str(camera),
        "settings": dict(settings or {}),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def _safe_part(text: str, what: str) -> str:
    if not text or not all(c.isalnum() or c in "-_" for c in text):
        raise ValueError(f"media cache {what} must be letters, digits, '-' or '_', got {text!r}")
    return text


class MediaCache:
    """Derived media files of one store, keyed by `media_key`, written atomically."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    @classmethod
    def for_store(cls, store: Any) -> "MediaCache":
        """The cache of a `Store`: `<store>/cache/media` for local stores, a per-store directory otherwise."""
        sfs = store.sfs
        if sfs.is_local:
            return cls(Path(sfs.root) / CACHE_DIR)
        base = os.environ.get(ENV_MEDIA_CACHE) or str(Path.home() / ".cache" / "sime" / "media")
        digest = hashlib.sha256(str(sfs.location).encode()).hexdigest()[:16]
        return cls(Path(base) / digest)

    def path(self, kind: str, key: str, ext: str) -> Path:
        """Where the file of (kind, key, ext) lives (whether or not it exists yet)."""
        kind, key, ext = _safe_part(kind, "kind"), _safe_part(key, "key"), _safe_part(ext, "extension")
        return self.root / kind / key[:2] / f"{key}.{ext}"

    def get(self, kind: str, key: str, ext: str) -> Path | None:
        """The cached file, or None when it has not been made (or was deleted)."""
        target = self.path(kind, key, ext)
        return target if target.is_file() else None

    def read(self, kind: str, key: str, ext: str) -> bytes | None:
        """Bytes of the cached file, or None when it is not there."""
        target = self.get(kind, key, ext)
        if target is None:
            return None
        try:
            return target.read_bytes()
        except FileNotFoundError:  # removed between the check and the read
            return None

    @contextlib.contextmanager
    def writing(self, kind: str, key: str, ext: str) -> Iterator[Path]:
        """Yield a temp path to write the file to; on success it is renamed into place, on error removed."""
        target = self.path(kind, key, ext)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.stem}{_TMP_MARK}{uuid.uuid4().hex[:12]}.{ext}")
        try:
            yield tmp
            if not tmp.is_file():
                raise FileNotFoundError(f"nothing was written to {tmp}")
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def put_bytes(self, kind: str, key: str, ext: str, data: bytes) -> Path:
        """Store `data` as the file of (kind, key, ext), atomically; returns its path."""
        with self.writing(kind, key, ext) as tmp:
            tmp.write_bytes(data)
        return self.path(kind, key, ext)

    def files(self) -> list[Path]:
        """Every finished cached file."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.rglob("*") if p.is_file() and _TMP_MARK not in p.name)

    def size_bytes(self) -> int:
        """Total size of the cached files."""
        return sum(p.stat().st_size for p in self.files())

    def clear(self, stale_part_s: float = 3600.0) -> int:
        """Delete every cached file, and temp files older than `stale_part_s` (left by killed writers; younger
        ones may belong to a writer still running); returns how many finished files went."""
        removed = 0
        for path in self.files():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
        if self.root.is_dir():
            now = time.time()
            for part in self.root.rglob(f"*{_TMP_MARK}*"):
                with contextlib.suppress(FileNotFoundError):
                    if now - part.stat().st_mtime > stale_part_s:
                        part.unlink()
        return removed

