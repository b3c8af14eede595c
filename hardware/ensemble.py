"""Temporal ensembling of overlapping action chunks (modes new, old, avg, act, hato of the reference)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from . import geometry as geo

MODES = ("new", "old", "avg", "act", "hato")


def ensemble_weights(mode: str, ages: np.ndarray, k: float = 0.01, tau: float = 0.5) -> np.ndarray:
    """Normalised weights of the predictions for one step, given their ages (steps since each was predicted).

    `ages` is ordered oldest prediction first. new: all weight on the newest; old: on the oldest;
    avg: uniform; act: exp(-k * age); hato: tau ** age (tau = 0.5 by default).
    """
    ages = np.asarray(ages, dtype=np.float64)
    if ages.ndim != 1 or ages.size == 0:
        raise ValueError("need at least one prediction")
    if mode == "new":
        weights = np.zeros_like(ages)
        weights[-1] = 1.0
    elif mode == "old":
        weights = np.zeros_like(ages)
        weights[0] = 1.0
    elif mode == "avg":
        weights = np.ones_like(ages)
    elif mode == "act":
        weights = np.exp(-k * ages)
    elif mode == "hato":
        weights = tau ** ages
    else:
        raise ValueError(f"unknown ensemble mode {mode!r}; choose one of {', '.join(MODES)}")
    return weights / weights.sum()


class TemporalEnsembler:
    """Collects action chunks keyed by the step their first action is for; `get(t)` blends the ones covering t.

    10-D actions are blended as vectors, then their 6-D rotation is re-orthonormalised (a weighted
    mean of nearby rotations, exact for the one-hot modes new and old).
    """

    def __init__(self, mode: str = "new", k: float = 0.01, tau: float = 0.5) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown ensemble mode {mode!r}; choose one of {', '.join(MODES)}")
        self.mode, self.k, self.tau = mode, float(k), float(tau)
        self._slots: dict[int, list[tuple[int, np.ndarray]]] = defaultdict(list)

    def clear(self) -> None:
        """Forget every chunk (new episode)."""
        self._slots.clear()

    def add(self, chunk: np.ndarray, t0: int) -> None:
        """Add a chunk predicted at step t0 (chunk[i] is the action for step t0 + i)."""
        for i, action in enumerate(np.asarray(chunk, dtype=np.float64)):
            self._slots[t0 + i].append((t0, action))

    def get(self, t: int) -> np.ndarray | None:
        """The blended action for step t (None when no chunk covers it); older slots are dropped."""
        for stale in [s for s in self._slots if s < t]:
            del self._slots[stale]
        entries = sorted(self._slots.pop(t, []), key=lambda e: e[0])
        if not entries:
            return None
        ages = np.array([t - t0 for t0, _ in entries])
        weights = ensemble_weights(self.mode, ages, self.k, self.tau)
        action = np.tensordot(weights, np.stack([a for _, a in entries]), axes=1)
        if action.shape[-1] >= 9:
            action[3:9] = geo.matrix_to_rot6d(geo.rot6d_to_matrix(action[3:9]))
        return action
