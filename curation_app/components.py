"""Two small in-page components (Streamlit components v2, no files fetched from anywhere):

* `key_queue`: keyboard shortcuts that never drop a key. Every key press is numbered and kept in the
  browser until the app acknowledges it, and it is sent as component *state* (not a one-run trigger),
  so keys pressed while a rerun is still running arrive together at the next run and are applied in
  order (Streamlit's button shortcuts lost a D pressed 0.4 s after an N).
* `video_player`: an mp4 (sent inline, played from a blob: URL) with play/pause, speed 0.25x-4x, the
  current frame, and a button that moves the app's frame scrubber to the frame being shown. A new clip
  of the same player (e.g. more frames rendered) keeps the playback position, speed and play state.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
import streamlit as st

#: Playback speeds offered by the player.
SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0)

_KEYS_JS = r"""
export default function(component) {
  const { data, setStateValue } = component;
  const allowed = new Set((data && data.allowed) || []);
  const ack = (data && data.ack) || 0;
  const slot = data.slot;
  let q = window.__simeKeyQueues && window.__simeKeyQueues[slot];
  if (!q) {
    window.__simeKeyQueues = window.__simeKeyQueues || {};
    q = { seq: ack, pending: [], allowed, send: null };
    q.handler = (event) => {
      if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
      const t = event.target;
      const tag = t && t.tagName ? t.tagName.toLowerCase() : "";
      if (tag === "input" || tag === "textarea" || tag === "select" || (t && t.isContentEditable)) return;
      const key = (event.key || "").toLowerCase();
      if (!q.allowed.has(key)) return;
      event.preventDefault();
      q.seq += 1;
      q.pending.push({ seq: q.seq, key: key });
      if (q.send) q.send();
    };
    document.addEventListener("keydown", q.handler, true);
    window.__simeKeyQueues[slot] = q;
  }
  q.allowed = allowed;
  q.seq = Math.max(q.seq, ack);
  q.pending = q.pending.filter((p) => p.seq > ack);
  q.send = () => setStateValue("pressed", { keys: q.pending.slice() });
  return () => {
    document.removeEventListener("keydown", q.handler, true);
    if (window.__simeKeyQueues) delete window.__simeKeyQueues[slot];
  };
}
"""

_PLAYER_CSS = r"""
.sime-player { font-family: "Source Sans Pro", sans-serif; font-size: 14px; color: inherit; }
.sime-player video { display: block; background: #000; image-rendering: pixelated; }
.sime-player .bar { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; margin-top: 4px; }
.sime-player button, .sime-player select { font: inherit; padding: 2px 8px; border-radius: 6px;
  border: 1px solid rgba(49, 51, 63, 0.3); background: transparent; color: inherit; cursor: pointer; }
.sime-player .readout { font-family: "Source Code Pro", monospace; font-size: 13px; }
.sime-player .title { font-weight: 600; margin-bottom: 2px; }
.sime-player .note { font-size: 13px; opacity: 0.75; margin-top: 2px; }
"""

_PLAYER_HTML = r"""
<div class="sime-player">
  <div class="title"></div>
  <video muted playsinline controls preload="auto" data-testid="sime-video"></video>
  <div class="bar">
    <button class="play" type="button">Play</button>
    <label>speed <select class="speed"></select></label>
    <span class="readout"></span>
    <button class="goto" type="button">Show this frame below</button>
  </div>
  <div class="note"></div>
</div>
"""

_PLAYER_JS = r"""
export default function(component) {
  const { data, parentElement, setTriggerValue } = component;
  const root = parentElement.querySelector(".sime-player");
  const video = root.querySelector("video");
  const s = root.__sime || (root.__sime = { token: null, url: null, rate: 1.0 });
  s.data = data;
  s.trigger = setTriggerValue;
  const frameAt = () => {
    const d = s.data;
    const f = Math.floor(video.currentTime * d.fps + 1e-3);
    return Math.max(0, Math.min(d.frames - 1, f));
  };
  const readout = () => {
    const d = s.data;
    root.querySelector(".readout").textContent =
      `frame ${frameAt() + d.offset} · ${video.currentTime.toFixed(2)} s · ${s.rate}x`;
    root.querySelector(".play").textContent = video.paused ? "Play" : "Pause";
  };
  if (!s.wired) {
    s.wired = true;
    const speed = root.querySelector(".speed");
    for (const r of data.speeds) {
      const o = document.createElement("option");
      o.value = String(r); o.textContent = `${r}x`; if (r === 1) o.selected = true;
      speed.appendChild(o);
    }
    speed.addEventListener("change", () => {
      s.rate = parseFloat(speed.value);
      video.defaultPlaybackRate = s.rate; video.playbackRate = s.rate; readout();
    });
    root.querySelector(".play").addEventListener("click", () => {
      if (video.paused) { if (video.ended) video.currentTime = 0; video.play().catch(() => {}); }
      else video.pause();
    });
    // s.want: the user wants it playing; a clip still growing resumes where it ended when more frames arrive
    video.addEventListener("play", () => { s.want = true; });
    video.addEventListener("pause", () => { if (!(video.ended && s.data.partial)) s.want = false; });
    root.querySelector(".goto").addEventListener("click", () => {
      video.pause();
      const frame = frameAt() + s.data.offset;
      root.dataset.sent = String(frame);
      s.trigger("goto", { frame: frame, token: s.data.token, at: Date.now() });
    });
    for (const ev of ["timeupdate", "play", "pause", "seeked", "ratechange", "ended"]) {
      video.addEventListener(ev, readout);
    }
  }
  root.dataset.frames = String(data.frames);
  root.dataset.key = data.key;
  root.querySelector(".goto").style.display = data.jump ? "" : "none";
  root.querySelector(".title").textContent = data.title || "";
  root.querySelector(".note").textContent = data.note || "";
  video.style.width = `${data.width}px`;
  video.style.height = `${data.height}px`;
  if (s.token !== data.token) {
    const resume = s.token !== null && s.key === data.key;
    const at = resume ? video.currentTime : 0;
    const playing = resume && s.want;
    const bytes = Uint8Array.from(atob(data.src), (c) => c.charCodeAt(0));
    const url = URL.createObjectURL(new Blob([bytes], { type: "video/mp4" }));
    const old = s.url;
    s.url = url; s.token = data.token; s.key = data.key;
    video.addEventListener("loadedmetadata", () => {
      video.defaultPlaybackRate = s.rate; video.playbackRate = s.rate;
      if (at > 0) video.currentTime = Math.min(at, Math.max(0, video.duration - 1e-3));
      if (playing) video.play().catch(() => {});
      if (old) URL.revokeObjectURL(old);
      readout();
    }, { once: true });
    video.src = url;
  }
  readout();
  return () => { if (s.url) URL.revokeObjectURL(s.url); };
}
"""

_key_component = st.components.v2.component("sime_key_queue", js=_KEYS_JS, html="<span></span>")
_player_component = st.components.v2.component("sime_video_player", html=_PLAYER_HTML, css=_PLAYER_CSS,
                                               js=_PLAYER_JS)


def key_queue(key: str, allowed: str, ack_key: str) -> list[tuple[int, str]]:
    """Key presses (sequence number, lower-case key) not yet handled, oldest first; marks them handled.

    `allowed` lists the keys to capture (e.g. "npkdu"); typing into text fields is never captured.
    The caller applies the returned keys in order during this run.
    """
    ack = int(st.session_state.get(ack_key, 0))
    result = _key_component(key=key, data={"allowed": list(allowed), "ack": ack, "slot": key}, height=0,
                            default={"pressed": {"keys": []}}, on_pressed_change=lambda: None)
    pressed = (result.get("pressed") or {}).get("keys") or [] if result is not None else []
    fresh = sorted(((int(p["seq"]), str(p["key"])) for p in pressed if int(p.get("seq", 0)) > ack))
    if fresh:
        st.session_state[ack_key] = fresh[-1][0]
    return fresh


@dataclass(frozen=True)
class Clip:
    """An mp4 to play: its bytes, frame rate, frame count and the episode frame of its first frame."""

    data: bytes
    fps: float
    frames: int
    offset: int = 0
    #: (height, width) of a frame in pixels
    size: tuple[int, int] = (84, 84)


def video_player(key: str, clip: Clip, *, title: str = "", note: str = "", scale: int = 3,
                 jump: bool = True, partial: bool = False) -> int | None:
    """Show the player; returns the episode frame the user asked to jump to in this run, else None.

    `jump` offers the button that moves the frame scrubber to the frame on screen; `partial` says more frames
    will come (playback that reached the end resumes when they do)."""
    token = hashlib.sha1(clip.data).hexdigest()[:16]
    height, width = clip.size
    data = {"src": base64.b64encode(clip.data).decode("ascii"), "fps": float(clip.fps), "frames": int(clip.frames),
            "offset": int(clip.offset), "token": token, "partial": bool(partial), "key": key, "title": title,
            "note": note,
            "speeds": list(SPEEDS), "jump": bool(jump), "width": int(width * scale), "height": int(height * scale)}
    result = _player_component(key=key, data=data, on_goto_change=lambda: None)
    goto = result.get("goto") if result is not None else None
    if isinstance(goto, dict) and "frame" in goto:
        return int(goto["frame"])
    return None

