"""One rank of a 2-process CPU training run (launched by test_train_ddp with torchrun-style env variables)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from sime_policy.policy.config import ExperimentConfig
from sime_policy.training.trainer import StepInfo, train


def main(store: str, version: str, config_path: str, out_dir: str, record_dir: str) -> None:
    """Train, then save this rank's batch indices and final weights under record_dir."""
    config = ExperimentConfig.from_dict(json.loads(Path(config_path).read_text()))
    indices: list[np.ndarray] = []

    def on_step(info: StepInfo) -> None:
        indices.append(np.asarray(info.indices))

    result = train(store, version, config, out_dir, progress=False, device="cpu", on_step=on_step)
    record = Path(record_dir)
    np.save(record / f"indices_rank{result.rank}.npy", np.stack(indices))
    torch.save({"model": result.policy.state_dict(), "ema": result.ema_policy.state_dict(),
                "world_size": result.world_size, "losses": result.history.train_loss},
               record / f"state_rank{result.rank}.pt")


if __name__ == "__main__":
    main(*sys.argv[1:6])
