"""The episode viewer shared by the browser and trimming pages: metadata, scrubber, filmstrip, frames, video, plots.

Layout, top to bottom: the metadata line, the page's controls, the frame scrubber, a filmstrip (the trim
window drawn under it), one row with the camera frames at the scrubber's frame (fixed size, captions
under them) and the video player, then the plots at full width. Nothing shares a column, so images,
captions and plots never overlap, whatever the window width (the row wraps when it is too narrow).
"""

from __future__ import annotations

import base64
from typing import Any, Callable, Sequence

import numpy as np
import streamlit as st

from sime_data.video_codec import encode_png

from .. import data, frames, media, render_worker
from ..charts import long_series, series_chart
from ..components import video_player
from ..display import fmt, outcome

Range = tuple[int, int]
#: Display size of a camera frame in pixels (84x84 frames are scaled up, pixels kept sharp).
IMAGE_PX = 168
#: The video is shown at this multiple of its frame size.
VIDEO_SCALE = 3
#: Width of the video player's column (video plus its control bar).
PLAYER_PX = 360
#: Seconds between looks at a video that is still being rendered.
POLL_S = 1.0
_STYLE = """<style>
[data-testid="stImage"] img { image-rendering: pixelated; }
</style>"""


def metadata_line(row: dict[str, Any]) -> str:
    """One markdown line with success, length, init state, trial, origin and exploration settings."""
    success = row.get("success")
    badge = {"success": ":green-badge[success]", "fail": ":red-badge[failure]"}.get(outcome(success),
                                                                                   ":gray-badge[no outcome]")
    explore = row.get("explore_mode")
    explore_text = ("exploration **off**" if not explore or explore in ("none", "off") else
                    f"exploration **{explore}** (noise {fmt(row.get('noise_scale'))}, "
                    f"τ1 {fmt(row.get('tau1'))}, τ2 {fmt(row.get('tau2'))})")
    parts = [
        badge,
        f"**{row.get('length')}** frames",
        f"init state `{fmt(row.get('init_state_id'))}` trial {fmt(row.get('trial'))}",
        f"{row.get('source')} / {row.get('task')}",
        f"round {fmt(row.get('round'))}, branch {fmt(row.get('branch'))}",
        f"checkpoint `{fmt(row.get('checkpoint'))}`",
        explore_text,
        f"seed {fmt(row.get('seed'))}",
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


def episode_source(path: str, episode_id: str) -> frames.EpisodeFrames:
    """Where the episode's frames come from (waits, with a spinner, while the renderer starts)."""
    row = data.episode_row(path, episode_id)
    specs = data.episode_specs(path, episode_id)
    lowdim = data.episode_lowdim(path, episode_id)
    with st.spinner("Starting the simulator renderer (the first time takes about 20 s) ...", show_time=True):
        return frames.episode_frames(data.get_store(path), row, specs, lowdim)


def inline_png(image: np.ndarray) -> str:
    """A frame as a lossless PNG data URI: drawn from the page itself, so a rerun can never leave the browser
    asking for an image the server already dropped (Streamlit's media files are per run)."""
    return "data:image/png;base64," + base64.b64encode(encode_png(frames.to_display(image))).decode("ascii")


def _caption(key: str, frame: int, rendered: bool) -> str:
    return f"{key.removeprefix('obs/').removesuffix('_image')} · frame {frame}" + (" · rendered from state" if rendered
                                                                                    else "")


def show_images(path: str, source: frames.EpisodeFrames, frame: int) -> None:
    """Camera frames at `frame`, each at IMAGE_PX with its caption under it: stored, or rendered from the state."""
    if source.problem:
        st.info(source.problem)
        return
    if source.stored:
        for key in source.stored:
            st.image(inline_png(data.episode_frame(path, source.episode_id, key, frame)),
                     caption=_caption(key, frame, False), width=IMAGE_PX)
        return
    try:
        images = frames.rendered_images(source, [frame])
    except render_worker.RenderError as exc:
        st.info(f"No camera frames are stored and rendering from states failed: {exc}")
        return
    for key in source.rendered:
        st.image(inline_png(images[key][0]), caption=_caption(key, frame, True), width=IMAGE_PX)


def show_filmstrip(path: str, source: frames.EpisodeFrames, frame: int, kept: Sequence[Range] | None) -> None:
    """Thumbnails across the episode over a timeline of the kept (green) and removed (red) frames."""
    if source.problem or not source.cameras:
        return
    camera = source.cameras[0]
    indices = media.filmstrip_indices(source.length)
    try:
        thumbs = media.filmstrip_images(data.get_store(path), source, camera, indices)
    except render_worker.RenderError as exc:
        st.caption(f"No filmstrip: {exc}")
        return
    strip = media.compose_filmstrip(thumbs, indices, source.length, kept, frame)
    st.image(inline_png(strip), width="stretch",
             caption=f"Filmstrip ({camera.removeprefix('obs/')}): frames {', '.join(map(str, indices))} · "
                     "bar: green kept, red removed, black = current frame")


def _player_body(path: str, source: frames.EpisodeFrames, key: str, slider_key: str, polling: bool) -> None:
    cameras = source.cameras
    camera = cameras[0]
    if len(cameras) > 1:
        camera = st.selectbox("Video camera", cameras, key=f"{key}_video_camera",
                              format_func=lambda k: k.removeprefix("obs/"))
    state = media.episode_clip(data.get_store(path), source, camera)
    if state.clip is None:
        st.caption(state.note or "No video.")
    else:
        goto = video_player(f"{key}_player_{source.episode_id}", state.clip, title=f"Video · {camera.removeprefix('obs/')}",
                            note=state.note, scale=VIDEO_SCALE, partial=not state.final)
        if goto is not None:
            st.session_state[slider_key] = min(max(goto, 0), source.length - 1)
            st.rerun()
    if polling and state.final:
        st.rerun()  # done: redraw once without polling


def show_player(path: str, source: frames.EpisodeFrames, key: str, slider_key: str) -> None:
    """The episode's video (growing while it renders), speed 0.25x-4x, and a jump to the scrubber."""
    if source.problem or not source.cameras:
        return
    polling = source.from_states and not _clip_final(path, source, key)
    st.fragment(_player_body, run_every=POLL_S if polling else None)(path, source, key, slider_key, polling)


def _clip_final(path: str, source: frames.EpisodeFrames, key: str) -> bool:
    camera = st.session_state.get(f"{key}_video_camera") or source.cameras[0]
    if camera not in source.cameras:
        camera = source.cameras[0]
    return media.episode_clip(data.get_store(path), source, camera).final


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
    cols = st.columns(2, gap="medium") if len(chosen) > 1 else [st.container()]
    for i, obs_key in enumerate(chosen):
        with cols[i % len(cols)]:
            st.altair_chart(series_chart(long_series(lowdim[obs_key], obs_key.removeprefix("obs/")),
                                         title=obs_key.removeprefix("obs/"), current=frame, length=length, kept=kept,
                                         height=140), width="stretch", height=180)


def show_episode(path: str, episode_id: str, *, key: str, kept: Sequence[Range] | None = None,
                 controls: Callable[[], Sequence[Range] | None] | None = None) -> int:
    """Render one episode (metadata, optional controls, scrubber, filmstrip, frames, video, plots).

    `controls` runs right under the metadata line and may return the kept ranges to shade (overriding `kept`).
    Returns the current frame.
    """
    st.html(_STYLE)
    row = data.episode_row(path, episode_id)
    specs = data.episode_specs(path, episode_id)
    lowdim = data.episode_lowdim(path, episode_id)
    length = int(row["length"])
    st.markdown(metadata_line(row))
    if controls is not None:
        kept = controls()
    slider_key = f"{key}_frame_{episode_id}"
    frame = frame_slider(slider_key, length)
    strip_box = st.container()
    source = episode_source(path, episode_id)
    with st.container(horizontal=True, gap="medium", key=f"{key}_media_row"):
        show_images(path, source, frame)
        with st.container(width=PLAYER_PX):
            show_player(path, source, key, slider_key)
    with strip_box:
        show_filmstrip(path, source, frame, kept)
    if "rewards" in lowdim and len(lowdim["rewards"]):
        st.caption(f"reward at frame {frame}: {fmt(float(lowdim['rewards'][frame]))} · "
                   f"return {fmt(row.get('episode_return'))}")
    show_plots(lowdim, specs, frame, length, kept, key=f"{key}_obs_keys")
    return frame
