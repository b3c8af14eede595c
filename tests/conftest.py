"""Shared fixtures: real stores on disk and deterministic synthetic episodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import sime_data


def step_values(episode: int, t: int) -> dict:
    """Deterministic step content so tests can check what they read back."""
    return {
        "obs": {
            "eef_pos": np.full(3, episode * 1000 + t, dtype=np.float32),
            "gripper": np.array([t % 2, -(t % 2)], dtype=np.float32),
        },
        "action": np.full(7, episode + t / 1000.0, dtype=np.float64),
        "reward": float(t == 9),
        "done": False,
        "state": np.arange(12, dtype=np.float64) + episode,
    }


def write_episodes(store: sime_data.Store, n: int, length: int = 10, *, start_index: int = 0, **writer_meta) -> list[str]:
    """Write `n` synthetic episodes through one writer; episode i succeeds when i is even."""
    ids = []
    with store.writer(source=writer_meta.pop("source", "rollout"), task=writer_meta.pop("task", "lift"), **writer_meta) as w:
        for i in range(start_index, start_index + n):
            for t in range(length):
                w.add_step(**step_values(i, t))
            ids.append(w.finish(success=i % 2 == 0, init_state_id=f"s{i // 2}", trial=i % 2))
    return ids


@pytest.fixture
def store(tmp_path: Path) -> sime_data.Store:
    """A fresh, empty store on local disk."""
    return sime_data.init_store(tmp_path / "store")


@pytest.fixture
def filled_store(store: sime_data.Store) -> sime_data.Store:
    """A store with 6 episodes of 10 steps (3 init states x 2 trials)."""
    write_episodes(store, 6)
    return store
