"""Immutable named versions: manifests of (episode_id, frame_start, frame_stop) with lineage."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Protocol, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .catalog import MANIFEST_SCHEMA, VERSION_INFO_KEY, Catalog
from .errors import InvalidManifestError, VersionExistsError, VersionNotFoundError
from .layout import version_path
from .schema import check_version_name, utc_now
from .storefs import StoreFS

ManifestLike = pd.DataFrame | Sequence[str] | Sequence[tuple[str, int, int]]


class VersionLookup(Protocol):
    """Anything that tells whether a version name is taken, and where its store lives (a Catalog, a Store)."""

    @property
    def location(self) -> str:
        """Where the store lives."""

    def has_version(self, name: str) -> bool:
        """True when a version of this name exists."""


def rule_dict(rule: Any) -> dict[str, Any]:
    """A version's rule as a dict, from the catalog's JSON text (empty when absent or not an object)."""
    if isinstance(rule, dict):
        return rule
    try:
        value = json.loads(rule) if isinstance(rule, str) and rule else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class Version:
    """A named, immutable selection of episode frame ranges plus how it was made."""

    name: str
    parents: list[str]
    message: str
    rule: dict[str, Any] | None
    query: str | None
    created_at: str
    stats: dict[str, Any]
    manifest: pd.DataFrame = field(repr=False)

    @property
    def episode_ids(self) -> list[str]:
        """Distinct episode ids, in manifest order."""
        return list(dict.fromkeys(self.manifest["episode_id"].tolist()))

    @property
    def n_episodes(self) -> int:
        """Number of distinct episodes."""
        return int(self.manifest["episode_id"].nunique())

    @property
    def n_frames(self) -> int:
        """Frames kept in total."""
        return int((self.manifest["frame_stop"] - self.manifest["frame_start"]).sum())

    def ranges(self) -> dict[str, list[tuple[int, int]]]:
        """Kept frame ranges per episode."""
        out: dict[str, list[tuple[int, int]]] = {}
        for eid, start, stop in self.manifest.itertuples(index=False):
            out.setdefault(eid, []).append((int(start), int(stop)))
        return out

    def describe(self) -> str:
        """Multi-line human summary."""
        lines = [
            f"version   {self.name}",
            f"created   {self.created_at}",
            f"parents   {', '.join(self.parents) or '-'}",
            f"message   {self.message or '-'}",
        ]
        if self.rule:
            lines.append(f"rule      {json.dumps(self.rule, sort_keys=True)}")
        if self.query:
            lines.append(f"query     {self.query}")
        s = self.stats
        rate = s.get("success_rate")
        lines.append(
            f"episodes  {s.get('n_episodes')}  ranges {s.get('n_ranges')}  frames {s.get('n_frames')}"
            f"  success {'-' if rate is None else f'{rate:.3f}'}"
        )
        if s.get("sources"):
            lines.append("sources   " + ", ".join(f"{k}: {v}" for k, v in sorted(s["sources"].items())))
        return "\n".join(lines)


@dataclass(frozen=True)
class VersionDiff:
    """What changed between two versions (b relative to a)."""

    a: str
    b: str
    added: list[str]
    removed: list[str]
    changed: pd.DataFrame  # episode_id, frames_a, frames_b for episodes in both whose ranges differ
    frames_added: int
    frames_removed: int

    def summary(self) -> str:
        """One paragraph for people."""
        return (
            f"{self.b} vs {self.a}: +{len(self.added)} episodes, -{len(self.removed)} episodes, "
            f"{len(self.changed)} re-trimmed; frames +{self.frames_added} -{self.frames_removed}"
        )


def to_manifest_frame(episodes: ManifestLike) -> pd.DataFrame:
    """Accept ids, (id, start, stop) tuples or a DataFrame; return a frame with the three manifest columns."""
    if isinstance(episodes, pd.DataFrame):
        if "episode_id" not in episodes.columns:
            raise InvalidManifestError("a manifest DataFrame needs an 'episode_id' column")
        frame = pd.DataFrame({"episode_id": episodes["episode_id"].astype(str)})
        frame["frame_start"] = episodes["frame_start"] if "frame_start" in episodes.columns else pd.NA
        frame["frame_stop"] = episodes["frame_stop"] if "frame_stop" in episodes.columns else pd.NA
        return frame.reset_index(drop=True)
    items = list(episodes)
    if items and all(isinstance(x, (tuple, list)) for x in items):
        return pd.DataFrame([(str(e), s, t) for e, s, t in items], columns=["episode_id", "frame_start", "frame_stop"])
    return pd.DataFrame({"episode_id": [str(x) for x in items], "frame_start": pd.NA, "frame_stop": pd.NA})


def validate_manifest(catalog: Catalog, frame: pd.DataFrame, merge_overlaps: bool = False) -> pd.DataFrame:
    """Check ids exist and ranges fit; fill whole-episode ranges; sort and (optionally) merge overlaps."""
    if frame.empty:
        raise InvalidManifestError("a version needs at least one episode")
    lengths = catalog.episode_columns(["episode_id", "length"]).to_pandas()
    merged = frame.merge(lengths, on="episode_id", how="left", sort=False)
    missing = merged.loc[merged["length"].isna(), "episode_id"].unique().tolist()
    if missing:
        raise InvalidManifestError(f"{len(missing)} episode id(s) not in the store, e.g. {missing[:5]}")
    start = pd.to_numeric(merged["frame_start"], errors="coerce").fillna(0).astype(np.int64)
    stop = pd.to_numeric(merged["frame_stop"], errors="coerce")
    stop = stop.fillna(merged["length"]).astype(np.int64)
    length = merged["length"].astype(np.int64)
    bad = (start < 0) | (stop > length) | (start >= stop)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InvalidManifestError(
            f"episode {merged['episode_id'].iloc[i]}: frame range [{start.iloc[i]}, {stop.iloc[i]}) does not fit "
            f"its {length.iloc[i]} frames (need 0 <= start < stop <= length)"
        )
    out = pd.DataFrame({"episode_id": merged["episode_id"], "frame_start": start, "frame_stop": stop})
    order = pd.Index(pd.unique(out["episode_id"]))
    out["_order"] = order.get_indexer(out["episode_id"])
    out = out.sort_values(["_order", "frame_start", "frame_stop"], kind="stable").drop(columns="_order").reset_index(drop=True)
    return _merge_ranges(out, merge_overlaps)


def _merge_ranges(frame: pd.DataFrame, merge_overlaps: bool) -> pd.DataFrame:
    """Merge touching/overlapping ranges of the same episode (frame must be sorted per episode)."""
    ids = frame["episode_id"].to_numpy()
    starts = frame["frame_start"].to_numpy()
    stops = frame["frame_stop"].to_numpy()
    same = np.zeros(len(frame), dtype=bool)
    same[1:] = ids[1:] == ids[:-1]
    overlap = same.copy()
    overlap[1:] &= starts[1:] < stops[:-1]
    if not overlap.any() and not (same[1:] & (starts[1:] == stops[:-1])).any():
        return frame
    if overlap.any() and not merge_overlaps:
        i = int(np.flatnonzero(overlap)[0])
        raise InvalidManifestError(f"episode {ids[i]}: frame ranges overlap ([{starts[i-1]}, {stops[i-1]}) and [{starts[i]}, {stops[i]}))")
    rows: list[list[Any]] = []
    for eid, start, stop in zip(ids, starts, stops):
        if rows and rows[-1][0] == eid and start <= rows[-1][2]:
            rows[-1][2] = max(rows[-1][2], int(stop))
        else:
            rows.append([eid, int(start), int(stop)])
    return pd.DataFrame(rows, columns=["episode_id", "frame_start", "frame_stop"])


def manifest_stats(catalog: Catalog, manifest: pd.DataFrame) -> dict[str, Any]:
    """Summary numbers stored with a version."""
    episodes = catalog.episode_columns(["episode_id", "success", "source", "task"]).to_pandas()
    ids = pd.DataFrame({"episode_id": pd.unique(manifest["episode_id"])})
    info = ids.merge(episodes, on="episode_id", how="left")
    success = info["success"].dropna()
    return {
        "n_episodes": int(len(ids)),
        "n_ranges": int(len(manifest)),
        "n_frames": int((manifest["frame_stop"] - manifest["frame_start"]).sum()),
        "n_success": int(success.astype(bool).sum()),
        "success_rate": float(success.astype(bool).mean()) if len(success) else None,
        "sources": {str(k): int(v) for k, v in info["source"].value_counts().items()},
        "tasks": {str(k): int(v) for k, v in info["task"].value_counts().items()},
    }


def write_version(
    sfs: StoreFS,
    catalog: Catalog,
    name: str,
    manifest: pd.DataFrame,
    *,
    parents: Iterable[str] = (),
    message: str = "",
    rule: Mapping[str, Any] | None = None,
    query: str | None = None,
) -> Version:
    """Validate and commit a new version; raises VersionExistsError if the name is taken."""
    check_version_name(name)
    parents = list(parents)
    for parent in parents:
        if catalog.version(parent) is None:
            raise VersionNotFoundError(f"parent version {parent!r} does not exist")
    if catalog.version(name) is not None:
        raise VersionExistsError(f"version {name!r} already exists and versions are immutable; choose another name")
    manifest = validate_manifest(catalog, manifest)
    info = {
        "name": name,
        "parents": parents,
        "message": message,
        "rule": dict(rule) if rule is not None else None,
        "query": query,
        "created_at": utc_now().isoformat(),
        "stats": manifest_stats(catalog, manifest),
    }
    table = pa.Table.from_pandas(manifest, schema=MANIFEST_SCHEMA, preserve_index=False)
    table = table.replace_schema_metadata({VERSION_INFO_KEY: json.dumps(info).encode()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    try:
        sfs.write_atomic(version_path(name), buffer.getvalue(), exclusive=True)
    except FileExistsError:
        raise VersionExistsError(f"version {name!r} already exists and versions are immutable; choose another name") from None
    return Version(manifest=manifest, **info)


def check_names_free(versions: VersionLookup, names: Iterable[str], hint: str = "choose other names") -> None:
    """Raise InvalidNameError / VersionExistsError unless every name is valid and unused (check before writing)."""
    names = [check_version_name(name) for name in names]
    taken = [name for name in names if versions.has_version(name)]
    if taken:
        raise VersionExistsError(f"version(s) {taken} already exist in {versions.location} and versions are immutable; {hint}")


def load_version(catalog: Catalog, name: str) -> Version:
    """Read a version by name."""
    found = catalog.version(name)
    if found is None:
        known = catalog.versions()[0]["name"].to_pylist()
        hint = f"; known versions: {', '.join(known[:10])}{' ...' if len(known) > 10 else ''}" if known else "; the store has no versions yet"
        raise VersionNotFoundError(f"unknown version {name!r}{hint}")
    info, table = found
    return Version(manifest=table.to_pandas(), **{k: info.get(k) for k in ("name", "parents", "message", "rule", "query", "created_at", "stats")})


def trimmed_manifest(
    base: Version, trims: Mapping[str, Sequence[tuple[int, int]]] | None = None, drop: Iterable[str] = ()
) -> pd.DataFrame:
    """Base manifest with episodes dropped and per-episode keep-ranges intersected with the base's."""
    trims = dict(trims or {})
    drop = set(drop)
    base_ranges = base.ranges()
    unknown = sorted((set(trims) | drop) - set(base_ranges))
    if unknown:
        raise InvalidManifestError(f"episode(s) {unknown[:5]} are not in base version {base.name!r}")
    rows: list[tuple[str, int, int]] = []
    for eid, ranges in base_ranges.items():
        if eid in drop:
            continue
        if eid not in trims:
            rows.extend((eid, s, t) for s, t in ranges)
            continue
        kept = []
        for ks, kt in sorted((int(a), int(b)) for a, b in trims[eid]):
            if ks >= kt:
                raise InvalidManifestError(f"episode {eid}: empty keep range [{ks}, {kt})")
            for s, t in ranges:
                lo, hi = max(s, ks), min(t, kt)
                if lo < hi:
                    kept.append((eid, lo, hi))
        if not kept:
            raise InvalidManifestError(
                f"episode {eid}: the keep ranges {list(trims[eid])} keep none of its frames in {base.name!r}; "
                "drop the episode instead"
            )
        rows.extend(kept)
    return pd.DataFrame(rows, columns=["episode_id", "frame_start", "frame_stop"])


def diff_versions(a: Version, b: Version) -> VersionDiff:
    """Episodes added/removed and ranges changed from a to b."""
    ra, rb = a.ranges(), b.ranges()
    added = [e for e in rb if e not in ra]
    removed = [e for e in ra if e not in rb]
    changed_rows = []
    frames_added = sum(t - s for e in added for s, t in rb[e])
    frames_removed = sum(t - s for e in removed for s, t in ra[e])
    for eid in ra.keys() & rb.keys():
        if ra[eid] != rb[eid]:
            fa, fb = _frame_set(ra[eid]), _frame_set(rb[eid])
            frames_added += len(fb - fa)
            frames_removed += len(fa - fb)
            changed_rows.append((eid, ra[eid], rb[eid]))
    changed = pd.DataFrame(changed_rows, columns=["episode_id", "ranges_a", "ranges_b"])
    return VersionDiff(a.name, b.name, added, removed, changed, frames_added, frames_removed)


def _frame_set(ranges: list[tuple[int, int]]) -> set[int]:
    return {i for s, t in ranges for i in range(s, t)}
