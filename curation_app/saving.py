"""Saving versions from the app: free-name suggestions and a save that reports a taken name clearly."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable

import sime_data
from sime_data.schema import check_version_name


@dataclass(frozen=True)
class SaveResult:
    """Outcome of one save: the version on success, else a message for the user (nothing was written)."""

    ok: bool
    message: str
    version: sime_data.Version | None = None


def suggest_name(wanted: str, taken: Iterable[str]) -> str:
    """`wanted` if free, else `wanted-2`, `wanted-3`, ... (a trailing -N is bumped)."""
    taken = set(taken)
    if wanted not in taken:
        return wanted
    stem = re.sub(r"-\d+$", "", wanted)
    n = 2
    while f"{stem}-{n}" in taken:
        n += 1
    return f"{stem}-{n}"


def save_version(store: sime_data.Store, name: str, create: Callable[[str], sime_data.Version]) -> SaveResult:
    """Run `create(name)`; a taken or invalid name, or a bad manifest, comes back as a message, never a crash."""
    name = name.strip()
    try:
        check_version_name(name)
    except sime_data.InvalidNameError as exc:
        return SaveResult(False, str(exc))
    try:
        version = create(name)
    except sime_data.VersionExistsError:
        free = suggest_name(name, store.versions()["name"].tolist())
        return SaveResult(False, f"The name '{name}' is taken: another session (or an earlier save) created a version "
                                 f"with it. Nothing was saved and your work is kept; pick another name, "
                                 f"e.g. '{free}'.")
    except (sime_data.InvalidManifestError, sime_data.VersionNotFoundError, ValueError) as exc:
        return SaveResult(False, f"Could not save '{name}': {exc}")
    return SaveResult(True, f"Saved version '{name}': {version.stats.get('n_episodes')} episodes, "
                            f"{version.stats.get('n_frames')} frames.", version)
