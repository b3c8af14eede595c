"""Helpers and fixtures for the curation app tests (imported by the test modules; no conftest.py here so the
suite-wide `conftest` module name stays unambiguous): a small real store with demos, rollouts and versions."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import sime_data

APP_FILE = str(Path(__file__).resolve().parents[2] / "curation_app" / "app.py")
#: Per initial state: successes out of TRIALS (success rates 0, .25, .5, .75, 1, 1).
SUCCESSES = (0, 1, 2, 3, 4, 4)
TRIALS = 4
LENGTH = 16
IMAGE = (48, 48, 3)  # large enough to be stored as an image key


def _step(t: int, k: int) -> dict:
    image = np.zeros(IMAGE, np.uint8)
    image[:, : (t * 3) % IMAGE[1]] = (40 * k) % 255
    image[t % IMAGE[0], :, 1] = 255
    return {
        "obs": {"robot0_eef_pos": np.array([t, k, -t], np.float32) / 10, "agentview_image": image},
        "action": np.sin(np.arange(10) + t / 3).astype(np.float32),
        "reward": float(t == LENGTH - 1), "done": t == LENGTH - 1, "state": np.arange(8, dtype=np.float64) + t,
    }


def build_app_store(location: Path) -> sime_data.Store:
    """Demos (version `demos`) and round-0 rollouts (version `round0/rollouts`) with camera frames."""
    store = sime_data.init_store(location)
    with store.writer(source="demo", task="lift") as w:
        for k in range(4):
            for t in range(LENGTH):
                w.add_step(**_step(t, k))
            w.finish(success=True, init_state_id=f"state{k}", trial=0)
        demo_ids = w.episodes_committed
    store.create_version("demos", demo_ids, message="4 demonstrations")
    with store.writer(source="rollout", task="lift", round=0, checkpoint="ckpt-0", explore_mode="sime",
                      noise_scale=0.01, tau1=0.0, tau2=1.0, seed=7, branch="sime") as w:
        for k, wins in enumerate(SUCCESSES):
            for trial in range(TRIALS):
                for t in range(LENGTH):
                    w.add_step(**_step(t, k))
                w.finish(success=trial < wins, init_state_id=f"state{k}", trial=trial)
        rollout_ids = w.episodes_committed
    store.create_version("round0/rollouts", rollout_ids, parents=["demos"], message="round-0 rollouts")
    return store


@pytest.fixture(scope="session")
def _template_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("app_template") / "store"
    build_app_store(path)
    return path


@pytest.fixture
def app_store(_template_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of the app test store; $SIME_STORE points at it and simulator rendering is off."""
    path = tmp_path / "store"
    shutil.copytree(_template_store, path)
    monkeypatch.setenv("SIME_STORE", str(path))
    monkeypatch.setenv("SIME_APP_RENDER", "0")
    return path
