"""Finding an episode that has rows in two episode row files, cheaply enough to do on every listing.

Each row file's footer records the smallest and largest episode_id it holds. Files whose id ranges do
not overlap cannot share an episode, so ids are read only for files in a group of overlapping ranges,
and each group is checked with one hash probe of its largest file.
"""

from __future__ import annotations

from typing import Callable, Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

#: The id range of a file without rows.
EMPTY = ("", "")
IdRange = tuple[str, str] | None  # None: the footer has no usable statistics (overlaps everything)


def id_range(metadata: pq.FileMetaData, column: str = "episode_id") -> IdRange:
    """(smallest, largest) value of `column` from a Parquet footer's statistics; None if unknown."""
    if metadata.num_rows == 0:
        return EMPTY
    index = metadata.schema.to_arrow_schema().get_field_index(column)
    if index < 0:
        return None
    lo = hi = None
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        if group.num_rows == 0:
            continue
        stats = group.column(index).statistics
        if stats is None or not stats.has_min_max:
            return None
        g_lo, g_hi = _text(stats.min), _text(stats.max)
        lo = g_lo if lo is None else min(lo, g_lo)
        hi = g_hi if hi is None else max(hi, g_hi)
    return EMPTY if lo is None else (lo, hi)


def _text(value: object) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def overlapping_groups(ranges: dict[str, IdRange]) -> list[tuple[str, ...]]:
    """Groups (of two or more files) whose id ranges chain-overlap; a file without statistics joins all."""
    known = sorted((r[0], r[1], rel) for rel, r in ranges.items() if r is not None and r != EMPTY)
    unknown = [rel for rel, r in ranges.items() if r is None]
    if unknown:
        group = tuple(sorted(unknown + [rel for _lo, _hi, rel in known]))
        return [group] if len(group) > 1 else []
    groups: list[list[str]] = []
    high = None
    for lo, hi, rel in known:
        if high is not None and lo <= high:
            groups[-1].append(rel)
            high = max(high, hi)
        else:
            groups.append([rel])
            high = hi
    return [tuple(sorted(g)) for g in groups if len(g) > 1]


def shared_episode(group: Iterable[str], ids_of: Callable[[str], pa.Array]) -> tuple[str, str, str] | None:
    """(episode_id, file a, file b) for an episode with rows in two files of `group`, else None.

    Cost: one hash table over all but the largest file, one probe of the largest.
    """
    files = sorted(group, key=lambda rel: len(ids_of(rel)), reverse=True)
    largest, rest = files[0], files[1:]
    rest_ids = pa.chunked_array([ids_of(rel) for rel in rest], pa.string())
    if pc.count_distinct(rest_ids).as_py() != len(rest_ids):
        seen: dict[str, str] = {}
        for rel in rest:
            for eid in ids_of(rel).to_pylist():
                if eid in seen and seen[eid] != rel:
                    return eid, seen[eid], rel
                seen.setdefault(eid, rel)
    hits = pc.is_in(ids_of(largest), value_set=rest_ids.combine_chunks())
    if not pc.any(hits).as_py():
        return None
    eid = ids_of(largest).filter(hits)[0].as_py()
    other = next(rel for rel in rest if pc.any(pc.equal(ids_of(rel), eid)).as_py())
    return eid, largest, other
