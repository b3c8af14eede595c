"""RNG states of a training process, captured into checkpoints and restored on resume."""

from __future__ import annotations

import logging
import random
from typing import Any, Mapping

import numpy as np
import torch

log = logging.getLogger(__name__)


def capture_rng_state(batch_rng: np.random.Generator) -> dict[str, Any]:
    """torch, CUDA, numpy, Python and batch-sampler RNG states (for exact resume)."""
    np_state = np.random.get_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return {
        "torch": torch.get_rng_state(),
        "cuda": cuda,
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": random.getstate(),
        "batch": batch_rng.bit_generator.state,
    }


def restore_rng_state(state: Mapping[str, Any], batch_rng: np.random.Generator) -> None:
    """Put back what `capture_rng_state` captured."""
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
        except (RuntimeError, IndexError):
            log.warning("could not restore CUDA RNG states (different GPU count); continuing")
    n = state["numpy"]
    keys = n["keys"].cpu().numpy().astype(np.uint32)
    np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    batch_rng.bit_generator.state = state["batch"]
