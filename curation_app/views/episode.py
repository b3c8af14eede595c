"""The episode viewer shared by the browser and trimming pages: metadata, frame scrubber, images, plots."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import streamlit as st

from .. import data, frames
from ..charts import long_series, series_chart

Range = tuple[int, int]
#: Display width of camera frames in pixels (84x84 frames are upscaled; larger ones fit the column).
IMAGE_WIDTH = 300


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def metadata_line(row: dict[str, Any]) -> str:
    """One markdown line with success, length, init state, trial, origin and exploration settings."""
    success = row.get("success")
    badge = {True: ":green-badge[success]", False: ":red-badge[failure]"}.get(success, ":gray-badge[no outcome]")
    explore = row.get("explore_mode")
    explore_text = ("exploration **off**" if not explore or explore in ("none", "off") else
                    f"exploration **{explore}** (noise {_fmt(row.get('noise_scale'))}, "
                    f"τ1 {_fmt(row.get('tau1'))}, τ2 {_fmt(row.get('tau2'))})")
    parts = [
        badge,
        f"**{row.get('length')}** frames",
        f"init state `{_fmt(row.get('init_state_id'))}` trial {_fmt(row.get('trial'))}",
        f"{row.get('source')} / {row.get('task')}",
        f"round {_fmt(row.get('round'))}, branch {_fmt(row.get('branch'))}",
        f"checkpoint `{_fmt(row.get('checkpoint'))}`",
        explore_text,
        f"seed {_fmt(row.get('seed'))}",
    ]
    return " · ".join(parts)


def frame_slider(key: str, length: int) -> int:
    """A frame scrubber (arrow keys move it once focused); returns the current frame."""
    if st.session_state.get(key, 0) > length - 1:
        st.session_state[key] = length - 1
    if length <= 1:
        st.caption("frame 0 of 1")
        return 0
    return int(st.slider("Frame", 0, length - 1, key=key, help="Drag, or click the handle and use ← / →"))


def show_images(path: str, episode_id: str, row: dict[str, Any], specs: dict[str, Any], frame: int,
                lowdim: dict[str, np.ndarray]) -> None:
    """Camera frames at `frame`: stored ones, else rendered from the recorded simulator state."""
    keys = frames.image_keys(specs)
    if keys:
        cols = st.columns(min(len(keys), 2))
        for i, key in enumerate(keys):
            with cols[i % len(cols)]:
                st.image(frames.to_display(data.episode_frame(path, episode_id, key, frame)),
                         caption=f"{key.removeprefix('obs/')} · frame {frame}", width=IMAGE_WIDTH)
        return
    states = lowdim.get("states")
    if states is None or not len(states):
        st.info("This episode has no camera frames and no simulator states to render them from.")
        return
    xml = data.get_store(path).model_xml(episode_id) if frames.rendering_enabled() else None
    images, problem = frames.rendered_frames(str(row.get("task")), states[frame], xml)
    if problem:
        st.info(problem)
        return
    cols = st.columns(max(1, min(len(images), 2)))
    for i, (key, image) in enumerate(sorted(images.items())):
        with cols[i % len(cols)]:
            st.image(frames.to_display(image), caption=f"{key} · frame {frame} (rendered from state)",
                     width=IMAGE_WIDTH)


def show_plots(lowdim: dict[str, np.ndarray], specs: dict[str, Any], frame: int, length: int,
               kept: Sequence[Range] | None, key: str) -> None:
    """Action plot and chosen low-dim observation plots, current frame marked, removed frames shaded."""
    if "actions" in lowdim:
        st.altair_chart(series_chart(long_series(lowdim["actions"], "a"), title="actions", current=frame,
                                     length=length, kept=kept), width="stretch", height=230)
    obs_keys = frames.lowdim_obs_keys(specs)
    if not obs_keys:
        return
    chosen = st.multiselect("Observations to plot", obs_keys, default=obs_keys[: min(2, len(obs_keys))], key=key,
                            format_func=lambda k: k.removeprefix("obs/"))
    for obs_key in chosen:
        st.altair_chart(series_chart(long_series(lowdim[obs_key], obs_key.removeprefix("obs/")),
                                     title=obs_key.removeprefix("obs/"), current=frame, length=length, kept=kept,
                                     height=140), width="stretch", height=180)


def show_episode(path: str, episode_id: str, *, key: str, kept: Sequence[Range] | None = None,
                 controls: Callable[[], Sequence[Range] | None] | None = None) -> int:
    """Render one episode (metadata, optional controls, scrubber, images, plots); returns the current frame.

    `controls` runs right under the metadata line and may return the kept ranges to shade (overriding `kept`).
    """
    row = data.episode_row(path, episode_id)
    specs = data.episode_specs(path, episode_id)
    lowdim = data.episode_lowdim(path, episode_id)
    length = int(row["length"])
    st.markdown(metadata_line(row))
    if controls is not None:
        kept = controls()
    frame = frame_slider(f"{key}_frame_{episode_id}", length)
    left, right = st.columns([1, 2], gap="medium")
    with left:
        show_images(path, episode_id, row, specs, frame, lowdim)
        if "rewards" in lowdim and len(lowdim["rewards"]):
            st.caption(f"reward at frame {frame}: {_fmt(float(lowdim['rewards'][frame]))} · "
                       f"return {_fmt(row.get('episode_return'))}")
    with right:
        show_plots(lowdim, specs, frame, length, kept, key=f"{key}_obs_keys")
    return frame
