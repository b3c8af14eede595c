"""File access below a store root, local or through fsspec, with atomic commits."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem


def _split_url(location: str | os.PathLike) -> tuple[fsspec.AbstractFileSystem, str, bool]:
    """Return (filesystem, root path on it, is_local) for a path or fsspec URL."""
    text = os.fspath(location)
    if "://" not in text or text.startswith("file://"):
        local = text[len("file://"):] if text.startswith("file://") else text
        return LocalFileSystem(), str(Path(local).expanduser().absolute()), True
    fs, path = fsspec.core.url_to_fs(text)
    return fs, path.rstrip("/"), False


class StoreFS:
    """Files of one store: relative paths in, atomic writes, listings, removal."""

    def __init__(self, location: str | os.PathLike) -> None:
        self.location = os.fspath(location)
        self.fs, self.root, self.is_local = _split_url(location)

    def path(self, rel: str) -> str:
        """Absolute path (on the store's filesystem) of a path relative to the root."""
        return f"{self.root}/{rel}" if rel else self.root

    def exists(self, rel: str) -> bool:
        """True when the file or directory exists."""
        if self.is_local:
            return os.path.exists(self.path(rel))
        return self.fs.exists(self.path(rel))

    def file_size(self, rel: str) -> int | None:
        """Size in bytes of a file, or None when it does not exist."""
        if self.is_local:
            try:
                return os.stat(self.path(rel)).st_size
            except (FileNotFoundError, NotADirectoryError):
                return None
        try:
            info = self.fs.info(self.path(rel))
        except FileNotFoundError:
            return None
        return int(info.get("size") or 0) if info.get("type", "file") == "file" else None

    def read_bytes(self, rel: str) -> bytes:
        """Whole content of a file."""
        if self.is_local:
            return Path(self.path(rel)).read_bytes()
        return self.fs.cat_file(self.path(rel))

    def open(self, rel: str, mode: str = "rb"):
        """A file object for reading (or writing, for non-committing scratch files)."""
        if self.is_local:
            return open(self.path(rel), mode)
        return self.fs.open(self.path(rel), mode)

    def makedirs(self, rel: str) -> None:
        """Create a directory and its parents (no-op on object stores)."""
        if self.is_local:
            os.makedirs(self.path(rel), exist_ok=True)
        else:
            self.fs.makedirs(self.path(rel), exist_ok=True)

    def write_atomic(self, rel: str, data: bytes, *, exclusive: bool = False, durable: bool = True) -> None:
        """Write a file so readers see either nothing or all of it.

        With `exclusive`, raise FileExistsError instead of replacing an existing file.
        """
        target = self.path(rel)
        parent = target.rsplit("/", 1)[0]
        if self.is_local:
            os.makedirs(parent, exist_ok=True)
            tmp = f"{parent}/.tmp-{uuid.uuid4().hex}-{os.path.basename(target)}"
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                if durable:
                    os.fsync(handle.fileno())
            try:
                if exclusive:
                    os.link(tmp, target)  # fails atomically if target exists
                else:
                    os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            if durable:
                _fsync_dir(parent)
            return
        if exclusive and self.fs.exists(target):
            raise FileExistsError(target)
        self.fs.makedirs(parent, exist_ok=True)
        # object stores make a single put visible atomically; memory/other fs: write then move
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
        self.fs.pipe_file(tmp, data)
        self.fs.mv(tmp, target)

    def list_files(self, rel: str, suffix: str = "") -> list[str]:
        """Relative paths of all files below `rel` ending in `suffix` (temp files skipped), sorted."""
        base = self.path(rel)
        out: list[str] = []
        if self.is_local:
            if not os.path.isdir(base):
                return []
            for dirpath, _dirs, files in os.walk(base):
                for name in files:
                    if name.startswith(".tmp-") or not name.endswith(suffix):
                        continue
                    out.append(os.path.relpath(os.path.join(dirpath, name), self.root).replace(os.sep, "/"))
        else:
            if not self.fs.exists(base):
                return []
            for full in self.fs.find(base):
                name = full.rsplit("/", 1)[-1]
                if name.startswith(".tmp-") or not name.endswith(suffix):
                    continue
                out.append(full[len(self.root.rstrip("/")) + 1:] if full.startswith(self.root) else full)
        return sorted(out)

    def list_dirs(self, rel: str) -> list[str]:
        """Names of the immediate subdirectories of `rel`."""
        base = self.path(rel)
        if self.is_local:
            if not os.path.isdir(base):
                return []
            return sorted(e.name for e in os.scandir(base) if e.is_dir())
        if not self.fs.exists(base):
            return []
        return sorted(p["name"].rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(base, detail=True) if p["type"] == "directory")

    def remove(self, rel: str, recursive: bool = False) -> None:
        """Delete a file (or a directory tree with `recursive`); missing paths are ignored."""
        target = self.path(rel)
        if self.is_local:
            if os.path.isdir(target):
                if recursive:
                    import shutil

                    shutil.rmtree(target, ignore_errors=True)
            elif os.path.exists(target):
                os.unlink(target)
            return
        if self.fs.exists(target):
            self.fs.rm(target, recursive=recursive)

    def size(self, rel: str = "") -> int:
        """Total bytes of the files below `rel`."""
        base = self.path(rel)
        if self.is_local:
            total = 0
            for dirpath, _dirs, files in os.walk(base):
                for name in files:
                    try:
                        total += os.path.getsize(os.path.join(dirpath, name))
                    except OSError:
                        pass
            return total
        return int(self.fs.du(base)) if self.fs.exists(base) else 0


def _fsync_dir(path: str) -> None:
    """Flush a directory entry (the rename) to disk where the OS allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
