"""The episode viewer on an episode without camera frames where it cannot render them: a clear note, and no
frames, filmstrip or video. (Frames rendered from states are checked pixel for pixel in test_render_worker.py
and, in the real app, in test_browser_e2e.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import sime_data

from app_testlib import APP_FILE


def test_without_simulator_rendering_the_page_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = sime_data.init_store(tmp_path / "store")
    with store.writer(source="rollout", task="lift") as w:
        for t in range(3):
            w.add_step(obs={"pos": [float(t)]}, action=[0.0], reward=0.0, done=False, state=[float(t)] * 4)
        w.finish(success=False)
    monkeypatch.setenv("SIME_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("SIME_APP_RENDER", "0")
    at = AppTest.from_file(APP_FILE, default_timeout=60)
    at.session_state["nav_page"] = "browser"
    at.run()
    assert not at.exception and any("rendering is off" in i.value for i in at.info)
    assert not at.image  # no frames, no filmstrip, no video: the note instead
