"""A thread-safe LRU cache of single image frames, sized by a memory budget."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

#: Default memory budget of the per-process image frame cache.
DEFAULT_IMAGE_CACHE_MB = 256.0


class FrameCache:
    """Thread-safe LRU cache of single frames keyed by (array key, buffer frame index)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(0, int(capacity))
        self._items: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, int]) -> np.ndarray | None:
        """Cached frame or None (counts hits and misses)."""
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: tuple[str, int], value: np.ndarray) -> None:
        """Insert a frame, evicting the least recently used beyond capacity."""
        if self.capacity == 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def clear(self) -> None:
        """Drop every cached frame."""
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
