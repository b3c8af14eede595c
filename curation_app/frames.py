"""Camera frames of an episode: stored images, or rendered from the recorded simulator states."""

from __future__ import annotations

import os
import threading
from typing import Any, Mapping

import numpy as np
import streamlit as st

#: Set to 0 to never start a simulator for rendering (e.g. on machines without EGL/OSMesa).
ENV_RENDER = "SIME_APP_RENDER"
_LOCK = threading.Lock()


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
    """A frame as uint8 HxWxC (or HxW) for st.image."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.dtype != np.uint8:
        lo, hi = float(np.min(image)), float(np.max(image))
        image = ((image - lo) / (hi - lo if hi > lo else 1.0) * 255).astype(np.uint8)
    return image


def rendering_enabled() -> bool:
    """False when $SIME_APP_RENDER is 0/false/no."""
    return os.environ.get(ENV_RENDER, "1").strip().lower() not in {"0", "false", "no", "off"}


@st.cache_resource(show_spinner="Starting the simulator to render frames ...")
def _sim_env(task: str) -> Any:
    """One camera-enabled SimEnv per task for this server process (imported lazily)."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    from sime_policy.envs import SimEnv

    return SimEnv(task, cameras=True)


@st.cache_data(show_spinner=False, max_entries=256)
def render_from_state(task: str, state: np.ndarray, model_xml: str | None) -> dict[str, np.ndarray]:
    """Camera images of the simulator restored to `state` (raises on any simulator failure)."""
    env = _sim_env(task)
    with _LOCK:
        obs = env.reset_to(state, model_xml)
    return {k: np.asarray(v) for k, v in obs.items() if k.endswith("_image")}


def rendered_frames(task: str, state: np.ndarray, model_xml: str | None) -> tuple[dict[str, np.ndarray], str | None]:
    """(images, None) rendered from a state, or ({}, reason) when rendering is off or unavailable."""
    if not rendering_enabled():
        return {}, f"No camera frames are stored and rendering is off (${ENV_RENDER}=0)."
    try:
        from sime_policy.envs import task_names

        if task not in task_names():
            return {}, f"No camera frames are stored, and task '{task}' has no simulator to render them from."
        return render_from_state(task, state, model_xml), None
    except Exception as exc:  # robosuite/mujoco/EGL missing or broken: say so, keep the page usable
        return {}, f"No camera frames are stored and rendering from states failed: {type(exc).__name__}: {exc}"
