"""Camera frames rendered from recorded simulator states, in a worker process that owns its GL context.

A MuJoCo/EGL context renders correctly only in the thread that created it; Streamlit runs every rerun in
a new thread, so rendering there gave noise. Here one worker *process* (started once per app server and
shared by every session) creates the simulators and renders in its main thread; sessions send it
requests through `RenderService`, a thread-safe client with:

* a dispatcher thread, the only user of the connection to the worker, that serves requests by priority
  (a frame someone is looking at, then the first chunk of a new video, then filmstrips, then background
  video jobs in small chunks, so a frame request never waits behind a whole episode);
* shared `RenderJob`s for whole episodes (one per episode and camera, whichever sessions ask), rendered
  in order chunk by chunk so playback can start before the last frame exists; jobs nobody polled for
  `JOB_IDLE_S` seconds are dropped;
* an in-memory LRU of rendered frames keyed by (task, model XML digest, state digest, camera).

The worker is a fresh interpreter (`python -m curation_app.render_worker ADDRESS SIZE`), not a fork or a
multiprocessing spawn (a spawn re-runs the parent's __main__, which in a Streamlit server is the app
script); it connects back over a Unix socket with a random key passed in its environment.

Frames equal what `SimEnv(task, cameras=True).reset_to(state, model_xml)` observes, pixel for pixel: the
worker restores the model and resets once with `reset_to`, then sets each state and renders the cameras
the way SimEnv's observations do (robosuite's offscreen renderer, flipped upright when robosuite uses the
OpenGL image convention). `tests/app/test_render_worker.py` checks this from several threads at once.

`SimStateRenderer` is the same renderer in the calling thread (for `sime-data export-video`); it refuses
calls from any other thread than the one that created it.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.util
import itertools
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from multiprocessing.connection import Client, Listener
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)

#: Pixel size of rendered frames (SimEnv's default; what the policies see).
IMAGE_SIZE = 84
#: Frames per background chunk: a frame request waits at most one chunk (about 0.5 s on 2 CPU cores).
CHUNK_FRAMES = 8
#: Seconds a background job lives without anyone asking about it.
JOB_IDLE_S = 45.0
#: Rendered frames kept in memory (84x84x3 frames: about 21 KB each).
CACHE_FRAMES = 6000
#: Seconds to wait for the worker to import the simulator and answer its first request.
START_TIMEOUT_S = 240.0
#: Seconds the worker process gets to connect back after it was started.
CONNECT_TIMEOUT_S = 60.0
#: Priorities of requests (lower first); background jobs come after all of them.
PRIORITY_INFO, PRIORITY_FRAME, PRIORITY_STRIP, PRIORITY_WARM = -1, 0, 1, 2
ENV_GL = "MUJOCO_GL"
#: The worker reads its connection key from this variable (never from its command line).
ENV_AUTHKEY = "SIME_RENDER_AUTHKEY"


def simulator_installed() -> bool:
    """True when robosuite, mujoco and sime_policy can be imported (checked without importing them)."""
    return all(importlib.util.find_spec(name) is not None for name in ("robosuite", "mujoco", "sime_policy"))


def renderer_name(size: int = IMAGE_SIZE) -> str:
    """What rendered frames depend on besides states and model: simulator versions and image size."""
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for package in ("robosuite", "mujoco"):
        try:
            parts.append(f"{package}-{version(package)}")
        except PackageNotFoundError:
            parts.append(f"{package}-?")
    return "/".join([*parts, f"{size}px"])


def xml_digest(model_xml: str | None) -> str | None:
    """Short digest of a model XML (None for None)."""
    return None if model_xml is None else hashlib.sha256(model_xml.encode()).hexdigest()[:16]


def state_digest(state: np.ndarray) -> str:
    """Digest of one simulator state's exact float64 bytes."""
    return hashlib.sha1(np.ascontiguousarray(np.asarray(state, np.float64)).tobytes()).hexdigest()[:20]


def camera_name(key: str) -> str:
    """'agentview_image' -> 'agentview'."""
    return key.removesuffix("_image")


# ============================================================================ rendering (one thread)
class _Simulators:
    """The simulators of one thread: a camera-enabled SimEnv per task, the model each was reset to."""

    def __init__(self, size: int = IMAGE_SIZE) -> None:
        os.environ.setdefault(ENV_GL, "egl")
        self.size = size
        self.thread = threading.get_ident()
        self.envs: dict[str, Any] = {}
        self.loaded: dict[str, str | None] = {}  # task -> digest of the model XML its env was last reset to

    def tasks(self) -> list[str]:
        from sime_policy.envs import task_names

        return list(task_names())

    def cameras(self, task: str) -> list[str]:
        from sime_policy.envs import get_task, task_names

        return list(get_task(task).image_keys) if task in task_names() else []

    def env(self, task: str) -> Any:
        if task not in self.envs:
            from sime_policy.envs import SimEnv

            self.envs[task] = SimEnv(task, cameras=True, image_size=self.size)
            self.loaded[task] = "<never reset>"
        return self.envs[task]

    def render(self, task: str, model_xml: str | None, states: np.ndarray,
               cameras: Sequence[str] | None) -> dict[str, np.ndarray]:
        if threading.get_ident() != self.thread:
            raise RuntimeError("a simulator's GL context renders only in the thread that created it; "
                               "use curation_app.render_worker.RenderService from other threads")
        states = np.asarray(states, np.float64)
        if states.ndim != 2:
            raise ValueError(f"states must be (T, D), got shape {states.shape}")
        known = self.cameras(task)
        if not known:
            raise ValueError(f"task {task!r} has no simulator to render (known tasks: {self.tasks()})")
        cameras = known if cameras is None else list(cameras)
        unknown = [c for c in cameras if c not in known]
        if unknown:
            raise ValueError(f"task {task!r} has no camera(s) {unknown}; it has {known}")
        out = {c: np.empty((len(states), self.size, self.size, 3), np.uint8) for c in cameras}
        if not len(states):
            return out
        env = self.env(task)
        digest = xml_digest(model_xml)
        if self.loaded.get(task) != digest:
            env.reset_to(states[0], model_xml)  # loads the episode's model (when given) and resets everything once
            self.loaded[task] = digest
        sim = env.env.sim
        flip = bool(getattr(env, "_flip_images", False))
        for i, state in enumerate(states):
            sim.set_state_from_flattened(state)
            sim.forward()
            for key in cameras:
                image = sim.render(camera_name=camera_name(key), width=self.size, height=self.size, depth=False)
                out[key][i] = image[::-1] if flip else image
        return out

    def close(self) -> None:
        for env in self.envs.values():
            with contextlib.suppress(Exception):  # closing is best effort
                env.close()
        self.envs.clear()


class SimStateRenderer:
    """A `sime_data.video_export.StateRenderer` that renders in the calling thread (for scripts and the CLI)."""

    def __init__(self, size: int = IMAGE_SIZE) -> None:
        self.name = renderer_name(size)
        self._sims = _Simulators(size)

    def cameras(self, task: str) -> list[str]:
        """Camera keys of a task ('agentview_image', ...); empty for a task without a simulator."""
        return self._sims.cameras(task)

    def render(self, task: str, model_xml: str | None, states: np.ndarray,
               cameras: Sequence[str]) -> dict[str, np.ndarray]:
        """{camera: (T, H, W, 3) uint8} of the simulator restored to each state."""
        return self._sims.render(task, model_xml, states, cameras)

    def close(self) -> None:
        """Release the simulators."""
        self._sims.close()


def state_renderer() -> SimStateRenderer:
    """Entry point (`sime.state_renderers`): the simulator renderer, or ModuleNotFoundError naming what is missing."""
    if not simulator_installed():
        raise ModuleNotFoundError("rendering from simulator states needs robosuite and mujoco: pip install -e '.[sim]'")
    return SimStateRenderer()


# ============================================================================ the worker process
def _worker_main(conn: Any, size: int) -> None:
    """Serve render requests from `conn` until it closes (the worker process's main thread)."""
    os.environ.setdefault(ENV_GL, "egl")
    try:
        import torch  # imported by sime_policy anyway; one thread leaves the cores to the app and the GL rasteriser

        torch.set_num_threads(1)
    except ImportError:
        pass
    sims = _Simulators(size)
    xmls: dict[str, str] = {}
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            break
        op = request.get("op")
        if op == "stop":
            break
        reply: dict[str, Any] = {"id": request.get("id")}
        start = time.perf_counter()
        try:
            if op == "info":
                tasks = sims.tasks()
                reply.update(ok=True, tasks=tasks, cameras={t: sims.cameras(t) for t in tasks},
                             name=renderer_name(size))
            elif op == "render":
                sha = request.get("xml_sha")
                if request.get("xml") is not None:
                    xmls[sha] = request["xml"]
                if sha is not None and sha not in xmls:
                    raise KeyError(f"model XML {sha} was never sent to this worker")
                frames = sims.render(request["task"], xmls.get(sha) if sha else None, request["states"],
                                     request["cameras"])
                reply.update(ok=True, frames=frames)
            else:
                raise ValueError(f"unknown request {op!r}")
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller; the worker lives on
            reply.update(ok=False, error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc(limit=6))
        reply["seconds"] = time.perf_counter() - start
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            break
    sims.close()


def _worker_entry(address: str, size: str) -> None:
    """`python -m curation_app.render_worker ADDRESS SIZE`: connect back to the app server and serve it."""
    key = bytes.fromhex(os.environ.pop(ENV_AUTHKEY, ""))
    conn = Client(address, family="AF_UNIX", authkey=key)
    _worker_main(conn, int(size))


# ============================================================================ the client (server side)
class RenderError(RuntimeError):
    """Rendering failed: the simulator is missing, the worker died, or the request was refused."""


@dataclass
class _Request:
    """One request for the worker and the caller waiting on it."""

    priority: int
    seq: int
    message: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    reply: dict[str, Any] | None = None


class RenderJob:
    """All frames of one camera of an episode, rendered in order in the background; shared by sessions."""

    def __init__(self, key: str, task: str, model_xml: str | None, states: np.ndarray, camera: str,
                 size: int = IMAGE_SIZE) -> None:
        self.key = key
        self.task = task
        self.model_xml = model_xml
        self.states = np.asarray(states, np.float64)
        self.camera = camera
        self.size = size
        self.total = len(self.states)
        self.frames: np.ndarray | None = None
        self.done_upto = 0
        self.error: str | None = None
        self.touched = time.monotonic()
        self.started = time.monotonic()
        self.finished_at: float | None = None
        self._lock = threading.Lock()

    def touch(self) -> None:
        """Mark the job as still wanted (jobs nobody touches for JOB_IDLE_S are dropped)."""
        self.touched = time.monotonic()

    @property
    def done(self) -> bool:
        """True when every frame is rendered (or the job failed)."""
        return self.error is not None or self.done_upto >= self.total

    def ready(self) -> np.ndarray:
        """The frames rendered so far, from the first one (a copy)."""
        with self._lock:
            if self.frames is None:
                return np.zeros((0, self.size, self.size, 3), np.uint8)
            return self.frames[: self.done_upto].copy()

    def add(self, start: int, frames: np.ndarray) -> None:
        """Store rendered frames [start, start + len(frames))."""
        with self._lock:
            if self.frames is None:
                self.frames = np.zeros((self.total, *frames.shape[1:]), np.uint8)
            self.frames[start:start + len(frames)] = frames
            self.done_upto = max(self.done_upto, start + len(frames))
            if self.done_upto >= self.total:
                self.finished_at = time.monotonic()


class RenderService:
    """Thread-safe client of one render worker process (see the module docstring); a `StateRenderer`."""

    def __init__(self, *, size: int = IMAGE_SIZE, chunk: int = CHUNK_FRAMES, cache_frames: int = CACHE_FRAMES,
                 start_timeout: float = START_TIMEOUT_S) -> None:
        self.size = size
        self.chunk = chunk
        self.cache_frames = cache_frames
        self.start_timeout = start_timeout
        self.name = renderer_name(size)
        self.stats = {"requests": 0, "frames_rendered": 0, "cache_hits": 0, "render_seconds": 0.0}
        self._cond = threading.Condition()
        self._queue: list[_Request] = []
        self._jobs: dict[str, RenderJob] = {}
        self._cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._seq = itertools.count()
        self._process: subprocess.Popen | None = None
        self._listener: Any = None
        self._conn: Any = None
        self._thread: threading.Thread | None = None
        self._info_request: _Request | None = None
        self._known_xml: set[str] = set()
        self._info: dict[str, Any] | None = None
        self._failure: str | None = None
        self._restarts = 0
        self._closed = False

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Start the worker process and the dispatcher (returns at once; the worker warms up meanwhile)."""
        with self._cond:
            if self._closed:
                raise RenderError("this render service was closed")
            if self._process is not None and self._process.poll() is None:
                return
            if self._restarts > 3:
                return  # gave up: status() and every request say why
            key = secrets.token_bytes(32)
            listener = Listener(family="AF_UNIX", authkey=key)
            env = dict(os.environ, **{ENV_AUTHKEY: key.hex()})
            env.setdefault(ENV_GL, "egl")
            self._process = subprocess.Popen(
                [sys.executable, "-m", "curation_app.render_worker", str(listener.address), str(self.size)],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
            self._listener, self._conn = listener, None
            self._known_xml = set()
            self._info = None
            self._failure = None
            self._info_request = _Request(PRIORITY_INFO, next(self._seq), {"op": "info"})
            self._queue.append(self._info_request)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._dispatch, name="sime-render-dispatch", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def close(self) -> None:
        """Stop the worker and fail whatever is still waiting."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            conn, process, listener = self._conn, self._process, self._listener
        if listener is not None:
            listener.close()
        if conn is not None:
            try:
                conn.send({"op": "stop"})
            except (BrokenPipeError, OSError):
                pass
        if process is not None:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self._fail_pending("the render service was closed")

    def status(self) -> tuple[str, str]:
        """('off' | 'starting' | 'ready' | 'failed', a sentence for the user)."""
        if self._failure:
            return "failed", self._failure
        if self._process is None:
            return "off", "The simulator renderer is not started."
        if self._info is None:
            return "starting", "Starting the simulator renderer (it imports robosuite: about 20 s) ..."
        return "ready", "The simulator renderer is ready."

    def info(self, timeout: float | None = None) -> dict[str, Any]:
        """Tasks and cameras the worker renders (starts it and waits for it when needed)."""
        if self._info is None:
            self.start()
            request = self._info_request
            if request is None:
                raise RenderError(self._failure or "the simulator renderer could not be started")
            if not request.done.wait(self.start_timeout if timeout is None else timeout):
                raise RenderError(f"the simulator renderer did not start within {self.start_timeout:g} s")
            self._check(request)
        return self._info or {}

    # ------------------------------------------------------------------ StateRenderer
    def cameras(self, task: str) -> list[str]:
        """Camera keys the worker renders for `task` (empty when it has no simulator)."""
        return list(self.info().get("cameras", {}).get(task, []))

    def render(self, task: str, model_xml: str | None, states: np.ndarray, cameras: Sequence[str], *,
               priority: int = PRIORITY_FRAME, timeout: float = 300.0) -> dict[str, np.ndarray]:
        """{camera: (T, H, W, 3) uint8} for each state (frames in the memory cache are not rendered again)."""
        states = np.asarray(states, np.float64)
        if states.ndim == 1:
            states = states[None]
        cameras = list(cameras)
        digest = xml_digest(model_xml)
        out = {c: np.empty((len(states), self.size, self.size, 3), np.uint8) for c in cameras}
        missing: list[int] = []
        with self._cond:
            for i, state in enumerate(states):
                k = state_digest(state)
                hits = [self._cache.get((task, digest, k, c)) for c in cameras]
                if all(h is not None for h in hits):
                    for c, h in zip(cameras, hits):
                        out[c][i] = h
                        self._cache.move_to_end((task, digest, k, c))
                    self.stats["cache_hits"] += 1
                else:
                    missing.append(i)
        if not missing:
            return out
        tasks = self.info().get("tasks", [])
        if task not in tasks:
            raise RenderError(f"task {task!r} has no simulator to render it (known tasks: {tasks})")
        request = self._submit(priority, task, model_xml, digest, states[missing], cameras)
        if not request.done.wait(timeout):
            raise RenderError(f"rendering {len(missing)} frame(s) took longer than {timeout:g} s")
        frames = self._check(request)["frames"]
        for j, i in enumerate(missing):
            for c in cameras:
                out[c][i] = frames[c][j]
        return out

    def warm(self, task: str, model_xml: str | None, states: np.ndarray) -> None:
        """Load `task`'s simulator and model in the worker now, behind any real request (returns at once)."""
        states = np.asarray(states, np.float64)
        self._submit(PRIORITY_WARM, task, model_xml, xml_digest(model_xml),
                     states[:1] if states.ndim == 2 else states[None], None)

    # ------------------------------------------------------------------ background jobs
    def job(self, key: str, task: str, model_xml: str | None, states: np.ndarray, camera: str) -> RenderJob:
        """The shared background job rendering every state of an episode for one camera (started if new)."""
        with self._cond:
            job = self._jobs.get(key)
            if job is None or (job.error is not None and time.monotonic() - job.touched > 5):
                job = RenderJob(key, task, model_xml, states, camera, self.size)
                self._jobs[key] = job
                self._cond.notify_all()
            job.touch()
        self.start()
        return job

    def jobs(self) -> list[RenderJob]:
        """Jobs alive now."""
        with self._cond:
            return list(self._jobs.values())

    # ------------------------------------------------------------------ internals
    def _submit(self, priority: int, task: str, model_xml: str | None, digest: str | None, states: np.ndarray,
                cameras: list[str] | None) -> _Request:
        message = {"op": "render", "task": task, "xml": model_xml, "xml_sha": digest, "states": states,
                   "cameras": cameras}
        request = _Request(priority, next(self._seq), message)
        with self._cond:
            if self._closed:
                raise RenderError("the render service was closed")
            self._queue.append(request)
            self._cond.notify_all()
        if self._process is None or self._process.poll() is not None:
            self.start()
        return request

    @staticmethod
    def _check(request: _Request) -> dict[str, Any]:
        reply = request.reply or {"ok": False, "error": "no reply"}
        if not reply.get("ok"):
            raise RenderError(str(reply.get("error")))
        return reply

    def _next(self) -> tuple[_Request | None, RenderJob | None, int]:
        """The next thing to do (under the lock): a queued request, or a job and its next chunk's start."""
        now = time.monotonic()
        for key, job in list(self._jobs.items()):
            if now - job.touched > JOB_IDLE_S:
                del self._jobs[key]
        runnable = [j for j in self._jobs.values() if not j.done]
        if self._queue:
            self._queue.sort(key=lambda r: (r.priority, r.seq))
            unstarted = [j for j in runnable if j.done_upto == 0]
            if unstarted and self._queue[0].priority >= PRIORITY_STRIP and self._info is not None:
                job = max(unstarted, key=lambda j: j.touched)  # a video's first chunk goes before filmstrips
                return None, job, 0
            return self._queue.pop(0), None, 0
        if not runnable:
            return None, None, 0
        job = max(runnable, key=lambda j: j.touched)  # the one someone looked at last
        return None, job, job.done_upto

    def _dispatch(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    request, job, start = self._next()
                    if request is not None or job is not None:
                        break
                    self._cond.wait(timeout=1.0)
            if job is not None:
                request = _Request(PRIORITY_WARM + 1, next(self._seq), {
                    "op": "render", "task": job.task, "xml": job.model_xml, "xml_sha": xml_digest(job.model_xml),
                    "states": job.states[start:start + self.chunk], "cameras": [job.camera]})
            self._send(request)
            if job is not None:
                reply = request.reply or {}
                if reply.get("ok"):
                    job.add(start, reply["frames"][job.camera])
                else:
                    job.error = str(reply.get("error"))

    def _connect(self) -> None:
        """Accept the worker's connection (dispatcher thread); EOFError when it exits or takes too long."""
        listener, process = self._listener, self._process
        if listener is None or process is None:
            raise EOFError("the render worker is not running")
        deadline = time.monotonic() + CONNECT_TIMEOUT_S

        def watchdog() -> None:
            while self._conn is None and self._listener is listener:
                if process.poll() is not None or time.monotonic() > deadline:
                    listener.close()  # unblocks accept()
                    return
                time.sleep(0.2)

        threading.Thread(target=watchdog, daemon=True, name="sime-render-connect").start()
        try:
            conn = listener.accept()
        except OSError as exc:
            raise EOFError(f"the render worker did not connect back (exit code {process.poll()})") from exc
        finally:
            self._listener = None
            listener.close()
        self._conn = conn

    def _send(self, request: _Request) -> None:
        """Send one request and wait for its reply (dispatcher thread only)."""
        message = dict(request.message)
        if message.get("op") == "render" and (message.get("xml_sha") is None
                                              or message["xml_sha"] in self._known_xml):
            message["xml"] = None  # the worker has it already
        try:
            if self._process is None or self._process.poll() is not None:
                raise EOFError("the render worker is not running")
            if self._conn is None:
                self._connect()
            self._conn.send(message)
            reply = self._conn.recv()
        except (EOFError, OSError) as exc:
            code = None if self._process is None else self._process.poll()
            reason = (f"the simulator renderer stopped (exit code {code}): {type(exc).__name__}: {exc}; it is "
                      "started again on the next request")
            log.warning(reason)
            request.reply = {"ok": False, "error": reason}
            request.done.set()
            self._after_crash(reason)
            return
        if message.get("op") == "render":
            if message.get("xml_sha") is not None:
                self._known_xml.add(message["xml_sha"])
            if reply.get("ok"):
                self.stats["requests"] += 1
                self.stats["frames_rendered"] += len(message["states"])
                self.stats["render_seconds"] += float(reply.get("seconds", 0.0))
                self._remember(message["task"], message.get("xml_sha"), message["states"], reply["frames"])
        elif message.get("op") == "info":
            if reply.get("ok"):
                self._info = reply
            else:
                self._failure = f"rendering from simulator states is unavailable here: {reply.get('error')}"
        request.reply = reply
        request.done.set()

    def _after_crash(self, reason: str) -> None:
        with self._cond:
            self._restarts += 1
            if self._process is not None and self._process.poll() is None:
                self._process.kill()
            self._process, self._conn, self._info = None, None, None
            if self._restarts > 3:
                self._failure = reason.split(";")[0] + " (given up after 3 restarts)"
            pending, self._queue = self._queue, []
            for job in self._jobs.values():
                if not job.done:
                    job.error = reason
        for request in pending:
            request.reply = {"ok": False, "error": reason}
            request.done.set()

    def _fail_pending(self, reason: str) -> None:
        with self._cond:
            pending, self._queue = self._queue, []
        for request in pending:
            request.reply = {"ok": False, "error": reason}
            request.done.set()

    def _remember(self, task: str, digest: str | None, states: np.ndarray, frames: dict[str, np.ndarray]) -> None:
        with self._cond:
            for i, state in enumerate(states):
                k = state_digest(state)
                for camera, block in frames.items():
                    self._cache[(task, digest, k, camera)] = block[i]
                    self._cache.move_to_end((task, digest, k, camera))
            while len(self._cache) > self.cache_frames:
                self._cache.popitem(last=False)


_SERVICE: RenderService | None = None
_SERVICE_LOCK = threading.Lock()


def get_service() -> RenderService:
    """The render service of this process (one worker shared by every session); created on first use."""
    global _SERVICE
    with _SERVICE_LOCK:
        if _SERVICE is None:
            _SERVICE = RenderService()
            atexit.register(_SERVICE.close)
        return _SERVICE


if __name__ == "__main__":
    _worker_entry(sys.argv[1], sys.argv[2])
