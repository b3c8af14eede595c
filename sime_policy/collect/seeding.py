"""Deterministic seeds of rollouts and real-rig episodes: one per episode, one per policy call, from printable parts."""

from __future__ import annotations

import hashlib
from typing import Any

_SEED_BITS = 62  # per-episode/chunk seeds stay well inside int64 (the store column) and torch's seed range


def derive_seed(*parts: Any) -> int:
    """Deterministic 62-bit seed from any printable parts (stable across processes and platforms)."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> (64 - _SEED_BITS)


def episode_seed(seed: int, state_id: str, trial: int) -> int:
    """Per-episode seed from (collection seed, init_state_id, trial)."""
    return derive_seed("episode", int(seed), state_id, int(trial))


def chunk_seed(ep_seed: int, chunk: int) -> int:
    """Seed of the `chunk`-th policy.predict call of an episode."""
    return derive_seed("chunk", int(ep_seed), int(chunk))
