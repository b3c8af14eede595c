"""Camera frames of an episode: stored images, or rendered from the recorded simulator states.

Rendering happens in the render worker process (`curation_app.render_worker`), which owns its GL
context; this module only asks it, so no simulator is ever created in a Streamlit script thread.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from sime_data.video_export import to_rgb

from . import render_worker

#: Set to 0 to never start a simulator for rendering (e.g. on machines without EGL/OSMesa).
ENV_RENDER = "SIME_APP_RENDER"


def image_keys(specs: Mapping[str, Any]) -> list[str]:
    """Keys holding camera frames: (H, W, 3|4) or (H, W) arrays large enough to be images."""
    out = []
    for key, spec in specs.items():
        shape = tuple(spec.shape)
        if spec.is_image and (len(shape) == 2 or (len(shape) == 3 and shape[-1] in (1, 3, 4))):
            out.append(key)
    return sorted(out)


def lowdim_obs_keys(specs: Mapping[str, Any]) -> list[str]:
    """Observation keys (`obs/...`) that are not camera frames (plotted as time series)."""
    images = set(image_keys(specs))
    return sorted(k for k in specs if k.startswith("obs/") and k not in images)


def to_display(image: np.ndarray) -> np.ndarray:
    """A frame as uint8 HxWx3 for st.image (grey, one-channel, RGBA and float frames converted)."""
    return to_rgb(np.asarray(image)[None])[0]


def rendering_enabled() -> bool:
    """False when $SIME_APP_RENDER is 0/false/no."""
    return os.environ.get(ENV_RENDER, "1").strip().lower() not in {"0", "false", "no", "off"}


@dataclass(frozen=True)
class EpisodeFrames:
    """Where an episode's camera frames come from: stored keys, or a simulator and the recorded states."""

    episode_id: str
    task: str
    length: int
    stored: list[str] = field(default_factory=list)
    rendered: list[str] = field(default_factory=list)
    states: np.ndarray | None = None
    model_xml: str | None = None
    problem: str | None = None

    @property
    def cameras(self) -> list[str]:
        """Camera keys there are frames of."""
        return self.stored or self.rendered

    @property
    def from_states(self) -> bool:
        """True when frames are rendered from simulator states."""
        return not self.stored and bool(self.rendered)


def render_problem(task: str) -> str | None:
    """Why frames of `task` cannot be rendered from states here (None when they can, as far as known)."""
    if not rendering_enabled():
        return f"No camera frames are stored and rendering is off (${ENV_RENDER}=0)."
    if not render_worker.simulator_installed():
        return ("No camera frames are stored, and the simulator is not installed to render them from the recorded "
                "states (`pip install -e '.[sim]'`).")
    service = render_worker.get_service()
    state, message = service.status()
    if state == "failed":
        return f"No camera frames are stored and rendering from states failed: {message}"
    return None


def episode_frames(store: Any, row: Mapping[str, Any], specs: Mapping[str, Any],
                   lowdim: Mapping[str, np.ndarray]) -> EpisodeFrames:
    """How to get the camera frames of one episode (may wait for the render worker to start)."""
    base = dict(episode_id=str(row["episode_id"]), task=str(row.get("task")), length=int(row["length"]))
    stored = image_keys(specs)
    if stored:
        return EpisodeFrames(**base, stored=stored)
    states = lowdim.get("states")
    if states is None or not len(states):
        return EpisodeFrames(**base, problem="This episode has no camera frames and no simulator states to render "
                                             "them from.")
    problem = render_problem(base["task"])
    if problem:
        return EpisodeFrames(**base, problem=problem)
    service = render_worker.get_service()
    try:
        cameras = service.cameras(base["task"])
    except render_worker.RenderError as exc:
        return EpisodeFrames(**base, problem=f"No camera frames are stored and rendering from states failed: {exc}")
    if not cameras:
        return EpisodeFrames(**base, problem=f"No camera frames are stored, and task '{base['task']}' has no "
                                             "simulator to render them from.")
    return EpisodeFrames(**base, rendered=cameras, states=np.asarray(states, np.float64),
                         model_xml=store.model_xml(base["episode_id"]))


def rendered_images(source: EpisodeFrames, frames: list[int], *, priority: int = render_worker.PRIORITY_FRAME
                    ) -> dict[str, np.ndarray]:
    """{camera: (len(frames), H, W, 3)} rendered from the states at `frames` (raises RenderError)."""
    assert source.states is not None
    return render_worker.get_service().render(source.task, source.model_xml, source.states[frames],
                                              source.rendered, priority=priority)


_PREWARMED: set[str] = set()


def prewarm(store: Any) -> None:
    """Start the render worker and load the simulator of the store's newest episode with states (once per store
    and server; returns at once)."""
    if store.location in _PREWARMED or not rendering_enabled() or not render_worker.simulator_installed():
        return
    _PREWARMED.add(store.location)
    service = render_worker.get_service()
    if service.status()[0] != "off":
        return
    try:
        found = store.sql("SELECT episode_id, task FROM episodes WHERE list_contains(keys, 'states') "
                          "AND task IS NOT NULL ORDER BY created_at DESC LIMIT 1", timeout_s=10, max_rows=10)
    except Exception:  # noqa: BLE001 - prewarming is an optimisation only
        return
    if found.empty:
        return
    service.start()
    episode_id, task = str(found["episode_id"][0]), str(found["task"][0])
    try:
        state = store.read_episode(episode_id, keys=["states"], start=0, stop=1)["states"]
        service.warm(task, store.model_xml(episode_id), state)
    except Exception:  # noqa: BLE001
        return
