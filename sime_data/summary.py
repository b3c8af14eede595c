"""Store-wide summary numbers for `sime-data info` and the app's overview."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:  # pragma: no cover
    from .store import Store


def store_summary(store: "Store") -> dict[str, Any]:
    """Counts, frames, per-(source, task, round) success rates, array keys with shapes, and disk size."""
    frame = store.episode_columns(["segment", "length", "source", "task", "round", "success"]).to_pandas()
    by_group: list[dict[str, Any]] = []
    if len(frame):
        grouped = frame.assign(success_f=frame["success"].astype("float")).groupby(
            ["source", "task", "round"], dropna=False, sort=True
        )
        for (source, task, rnd), part in grouped:
            by_group.append({
                "source": source, "task": task, "round": None if rnd != rnd else rnd,
                "episodes": int(len(part)), "frames": int(part["length"].sum()),
                "success_rate": None if part["success_f"].isna().all() else round(float(part["success_f"].mean()), 4),
            })
    keys: dict[str, dict[str, Any]] = {}
    for segment, n in frame.groupby("segment").size().items() if len(frame) else []:
        for key, spec in store.segment_keys(str(segment)).items():
            entry = keys.setdefault(f"{key} {spec.shape} {spec.dtype}", {"key": key, "shape": str(spec.shape),
                                                                          "dtype": spec.dtype, "episodes": 0})
            entry["episodes"] += int(n)
    versions = store.catalog.versions()[0]
    return {
        "location": store.location,
        "schema_version": store.root_meta.schema_version,
        "store_id": store.root_meta.store_id,
        "n_episodes": int(len(frame)),
        "n_frames": int(frame["length"].sum()) if len(frame) else 0,
        "n_segments": int(frame["segment"].nunique()) if len(frame) else 0,
        "n_versions": int(versions.num_rows),
        "by_group": by_group,
        "keys": sorted(keys.values(), key=lambda e: e["key"]),
        "disk_bytes": store.sfs.size(),
    }
