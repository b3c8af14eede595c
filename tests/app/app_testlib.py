"""Helpers and fixtures for the curation app tests (imported by the test modules; no conftest.py here so the
suite-wide `conftest` module name stays unambiguous): a small real store with demos, rollouts and versions."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

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


# ---------------------------------------------------------------------- real app servers (browser tests)
CHROMIUM = os.environ.get("SIME_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def need_browser() -> None:
    """Skip the calling test unless Chromium and playwright are available."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (install Debian's `chromium` package, or set $SIME_CHROMIUM)")
    pytest.importorskip("playwright.sync_api", reason="the playwright python package is not installed")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_app(store: Path, log_path: Path, *args: str, env: dict | None = None,
              cwd: Path | None = None, render: bool = False) -> Iterator[str]:
    """Run `sime-app --store STORE --port P --headless ARGS` (in `cwd`) and yield its base URL; stopped afterwards.

    Rendering frames from simulator states is off unless `render`."""
    from curation_app.cli import stop_server, wait_until_serving

    port = free_port()
    cli = shutil.which("sime-app")
    cmd = [cli] if cli else [sys.executable, "-m", "curation_app.cli"]
    repo = str(Path(__file__).resolve().parents[2])  # importable from any cwd, installed or not
    base = dict(os.environ if env is None else env)
    server_env = dict(base, SIME_APP_RENDER="1" if render else "0", PYTHONPATH=os.pathsep.join(p for p in (repo, base.get("PYTHONPATH")) if p))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*cmd, "--store", str(store), "--port", str(port), "--headless", *args],
                                stdout=log, stderr=subprocess.STDOUT, env=server_env, cwd=cwd)
        url = f"http://127.0.0.1:{port}"
        try:
            try:
                wait_until_serving(url, proc)
            except RuntimeError as exc:
                log.flush()
                pytest.fail(f"{exc}:\n{log_path.read_text()[-3000:]}")
            yield url
        finally:
            stop_server(proc)


def listening_addresses(port: int) -> list[str]:
    """Local addresses with a listening TCP socket on `port` (from /proc/net/tcp{,6}); skips off Linux."""
    if not os.path.exists("/proc/net/tcp"):
        pytest.skip("no /proc/net/tcp to read listening sockets from (not Linux)")
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if fields[3] != "0A" or int(port_hex, 16) != port:  # 0A = LISTEN
                continue
            raw = bytes.fromhex(address)
            if width == 8:
                found.append(str(ipaddress.IPv4Address(raw[::-1])))
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                found.append(str(ipaddress.IPv6Address(words)))
    return found


def record_requests(page) -> list[str]:
    """Start recording the URL of every request `page` makes (documents, scripts, fonts, fetches, websockets)."""
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url))
    page.on("websocket", lambda socket_: seen.append(socket_.url))
    return seen


def foreign_requests(seen: list[str], url: str) -> list[str]:
    """The recorded requests that did not go to the app server at `url` (inline data:/blob: URLs aside)."""
    host = url.split("://", 1)[1]
    allowed = (f"http://{host}/", f"ws://{host}/")
    return sorted({u for u in seen if not u.startswith(allowed) and u != f"http://{host}"
                   and not u.startswith(("data:", "blob:", "about:"))})


def open_page(page: str) -> Any:
    """A fresh app session (streamlit AppTest) showing `page`, whose first run raised nothing."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP_FILE, default_timeout=60)
    at.session_state["nav_page"] = page
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


# ---------------------------------------------------------------------- a real Lift episode (render tests)
LIFT_STEPS = 24
#: Frames whose reference images are rendered directly by SimEnv (frame 0 was the broken one).
REF_FRAMES = (0, 9, 23)


@dataclass
class LiftRecording:
    """A short scripted Lift episode: per-step states and eef positions, the model XML, and reference images
    of REF_FRAMES rendered directly by `SimEnv(task, cameras=True).reset_to(state, xml)` in this thread."""

    states: np.ndarray
    eef: np.ndarray
    actions: np.ndarray
    model_xml: str
    refs: dict[int, dict[str, np.ndarray]]


#: Made once per test process: a session fixture imported into several test modules runs once per module.
_ONCE: dict[str, Any] = {}


def _need_simulator() -> None:
    import importlib.util

    if importlib.util.find_spec("robosuite") is None:
        pytest.skip("rendering needs the sim extra (robosuite)")


@pytest.fixture(scope="session")
def render_service() -> Any:
    """This test process's render worker, started now (ask for it before `lift_recording`: they overlap)."""
    _need_simulator()
    from curation_app.render_worker import get_service

    service = get_service()
    service.start()
    return service


@pytest.fixture(scope="session")
def lift_recording() -> LiftRecording:
    """The recording, made once per test process (one camera-enabled SimEnv, about 15 s)."""
    if "lift" not in _ONCE:
        _ONCE["lift"] = _record_lift()
    return _ONCE["lift"]


def _record_lift() -> LiftRecording:
    _need_simulator()
    os.environ.setdefault("MUJOCO_GL", "egl")
    from sime_policy.envs import SimEnv

    try:
        env = SimEnv("lift", cameras=True, seed=5)
    except Exception as exc:  # noqa: BLE001 - no headless GL on this machine
        pytest.skip(f"no camera-enabled simulator here: {type(exc).__name__}: {exc}")
    try:
        obs = env.reset()
        states, eef, actions = [], [], []
        for t in range(LIFT_STEPS):
            states.append(env.get_state())
            eef.append(np.asarray(obs["robot0_eef_pos"], np.float32))
            action = env.eef_action(-1.0 if t < LIFT_STEPS // 2 else 1.0)
            action[2] -= 0.012 * min(t, 12)
            action[0] += 0.004 * t
            actions.append(action.astype(np.float32))
            obs, *_ = env.step(action)
        xml = env.model_xml()
        refs = {t: {k: v for k, v in env.reset_to(states[t], xml).items() if k.endswith("_image")} for t in REF_FRAMES}
    finally:
        env.close()
    return LiftRecording(np.stack(states), np.stack(eef), np.stack(actions), xml, refs)


def add_lift_episode(store: sime_data.Store, rec: LiftRecording) -> str:
    """Write the recording into `store` as a round-0 rollout without camera frames; returns its episode id."""
    with store.writer(source="rollout", task="lift", model_xml=rec.model_xml, round=0, explore_mode="none") as w:
        for t in range(len(rec.states)):
            w.add_step(obs={"robot0_eef_pos": rec.eef[t]}, action=rec.actions[t], reward=0.0,
                       done=t == len(rec.states) - 1, state=rec.states[t])
        w.finish(success=False, init_state_id="lift-rendered", trial=0)
        return w.episodes_committed[-1]
