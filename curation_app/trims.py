"""The trim queue: per-episode keep windows, removed inner segments and dropped episodes (pure Python)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

Range = tuple[int, int]
#: Missing-value mark (the same as curation_app.display.NULL).
NULL = "—"


def normalise(ranges: Iterable[Sequence[int]]) -> list[Range]:
    """Sorted, merged, non-empty half-open ranges."""
    out: list[list[int]] = []
    for start, stop in sorted((int(a), int(b)) for a, b in ranges):
        if start >= stop:
            continue
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], stop)
        else:
            out.append([start, stop])
    return [(a, b) for a, b in out]


def subtract(ranges: Sequence[Range], cut: Range) -> list[Range]:
    """`ranges` with the frames of `cut` removed."""
    lo, hi = cut
    out: list[Range] = []
    for start, stop in ranges:
        if stop <= lo or start >= hi:
            out.append((start, stop))
            continue
        if start < lo:
            out.append((start, lo))
        if stop > hi:
            out.append((hi, stop))
    return out


def intersect(a: Sequence[Range], b: Sequence[Range]) -> list[Range]:
    """Frames in both range lists."""
    out: list[Range] = []
    for s1, t1 in a:
        for s2, t2 in b:
            lo, hi = max(s1, s2), min(t1, t2)
            if lo < hi:
                out.append((lo, hi))
    return normalise(out)


def count(ranges: Sequence[Range]) -> int:
    """Number of frames covered by the ranges."""
    return sum(t - s for s, t in ranges)


@dataclass
class EpisodeEdit:
    """What the user decided for one episode: a keep window, inner cuts, or drop."""

    window: Range
    cuts: list[Range] = field(default_factory=list)
    dropped: bool = False


class TrimQueue:
    """Pending trims and drops across the episodes of one base version, saved together as a new version."""

    def __init__(self, base: str, base_ranges: Mapping[str, Sequence[Range]]) -> None:
        self.base = base
        self.base_ranges: dict[str, list[Range]] = {k: normalise(v) for k, v in base_ranges.items()}
        self.edits: dict[str, EpisodeEdit] = {}

    # ------------------------------------------------------------------ queries
    @property
    def episode_ids(self) -> list[str]:
        """Episodes of the base version, in manifest order."""
        return list(self.base_ranges)

    def base_window(self, episode_id: str) -> Range:
        """First and last frame (exclusive) the base version keeps of an episode."""
        ranges = self._ranges(episode_id)
        return ranges[0][0], ranges[-1][1]

    def window(self, episode_id: str) -> Range:
        """Current keep window (start, stop) of an episode."""
        edit = self.edits.get(episode_id)
        return edit.window if edit else self.base_window(episode_id)

    def cuts(self, episode_id: str) -> list[Range]:
        """Inner segments removed from an episode."""
        edit = self.edits.get(episode_id)
        return list(edit.cuts) if edit else []

    def is_dropped(self, episode_id: str) -> bool:
        """True when the episode is queued to be left out."""
        edit = self.edits.get(episode_id)
        return bool(edit and edit.dropped)

    def keep_ranges(self, episode_id: str) -> list[Range]:
        """Frames the new version keeps of an episode (empty when dropped)."""
        if self.is_dropped(episode_id):
            return []
        kept = [self.window(episode_id)]
        for cut in self.cuts(episode_id):
            kept = subtract(kept, cut)
        return intersect(kept, self._ranges(episode_id))

    def is_changed(self, episode_id: str) -> bool:
        """True when the episode's kept frames differ from the base version's."""
        if episode_id not in self.edits:
            return False
        return self.is_dropped(episode_id) or self.keep_ranges(episode_id) != self._ranges(episode_id)

    def changed(self) -> list[str]:
        """Episodes with a pending change, in base order."""
        return [e for e in self.base_ranges if e in self.edits and self.is_changed(e)]

    def trims(self) -> dict[str, list[Range]]:
        """Keep-ranges of the trimmed (not dropped) episodes, as `create_version_from_trims` takes them."""
        return {e: self.keep_ranges(e) for e in self.changed() if not self.is_dropped(e)}

    def drops(self) -> list[str]:
        """Episodes queued to be dropped."""
        return [e for e in self.changed() if self.is_dropped(e)]

    def frames(self) -> tuple[int, int]:
        """(frames in the base version, frames the new version would keep)."""
        before = sum(count(r) for r in self.base_ranges.values())
        after = sum(count(self.keep_ranges(e)) if e in self.edits else count(r) for e, r in self.base_ranges.items())
        return before, after

    def problems(self) -> list[str]:
        """Reasons the queue cannot be saved (empty list when it can)."""
        out = [f"episode {e}: the keep ranges remove every frame; drop it instead"
               for e in self.changed() if not self.is_dropped(e) and not self.keep_ranges(e)]
        if self.base_ranges and all(self.is_dropped(e) for e in self.base_ranges):
            out.append("every episode is dropped; a version needs at least one")
        if not self.changed():
            out.append("nothing queued yet: trim or drop at least one episode")
        return out

    def rows(self) -> list[dict[str, object]]:
        """One summary row per changed episode, for a table."""
        rows = []
        for e in self.changed():
            rows.append({
                "episode_id": e,
                "action": "drop" if self.is_dropped(e) else "trim",
                "keep frames": NULL if self.is_dropped(e) else ", ".join(f"{s}–{t - 1}" for s, t in self.keep_ranges(e)),
                "frames_before": count(self._ranges(e)),
                "frames_after": count(self.keep_ranges(e)),
            })
        return rows

    # ------------------------------------------------------------------ edits
    def set_window(self, episode_id: str, start: int, stop: int) -> None:
        """Keep only frames in [start, stop) (inner cuts stay)."""
        start, stop = int(start), int(stop)
        if start >= stop:
            raise ValueError(f"empty keep window [{start}, {stop})")
        self._edit(episode_id).window = (start, stop)

    def remove_segment(self, episode_id: str, start: int, stop: int) -> None:
        """Remove the inner frames [start, stop) of an episode."""
        start, stop = int(start), int(stop)
        if start >= stop:
            raise ValueError(f"empty segment [{start}, {stop})")
        edit = self._edit(episode_id)
        edit.cuts = normalise([*edit.cuts, (start, stop)])

    def restore_segment(self, episode_id: str, index: int) -> None:
        """Undo one removed inner segment (by its position in `cuts`)."""
        edit = self._edit(episode_id)
        del edit.cuts[index]

    def drop(self, episode_id: str, dropped: bool = True) -> None:
        """Queue an episode to be left out of the new version (or take it back)."""
        self._edit(episode_id).dropped = dropped

    def reset(self, episode_id: str) -> None:
        """Forget every pending change of an episode."""
        self.edits.pop(episode_id, None)

    def clear(self) -> None:
        """Forget every pending change."""
        self.edits.clear()

    def neighbour(self, episode_id: str, step: int) -> str:
        """The episode `step` places after (or before) `episode_id`, clamped to the ends."""
        ids = self.episode_ids
        i = ids.index(episode_id) if episode_id in ids else 0
        return ids[max(0, min(len(ids) - 1, i + step))]

    # ------------------------------------------------------------------ helpers
    def _ranges(self, episode_id: str) -> list[Range]:
        if episode_id not in self.base_ranges:
            raise KeyError(f"episode {episode_id!r} is not in base version {self.base!r}")
        return self.base_ranges[episode_id]

    def _edit(self, episode_id: str) -> EpisodeEdit:
        if episode_id not in self.edits:
            self.edits[episode_id] = EpisodeEdit(self.base_window(episode_id))
        return self.edits[episode_id]
