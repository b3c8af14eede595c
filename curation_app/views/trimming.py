"""Trimming page: keep windows, removed inner segments and dropped episodes, saved as a new version."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from .. import data
from ..components import key_queue
from ..display import table
from ..saving import save_version, suggest_name
from ..trims import TrimQueue, count
from .episode import show_episode

QUEUES = "tr_queues"
#: The episode being trimmed. Kept apart from the episode picker's widget value: a rerun interrupted by the
#: next key press would otherwise bring back the picker's stale value from the browser (and D would drop the
#: episode before the one N moved to).
CURRENT = "tr_current"
#: Bumped whenever the app (not the picker) changes CURRENT, so the picker starts afresh on the new episode.
NAV = "tr_nav"
#: Keyboard shortcuts of the page (captured by a queue that never drops a key, see components.key_queue).
SHORTCUTS = {"n": "next", "p": "previous", "k": "keep & next", "d": "drop & next", "u": "reset episode"}
KEYS_ACK = "tr_keys_ack"


def get_queue(path: str, token: str, base: str) -> TrimQueue:
    """This session's trim queue for `base` (created on first use; kept while switching bases)."""
    queues: dict[str, TrimQueue] = st.session_state.setdefault(QUEUES, {})
    if base not in queues:
        queues[base] = TrimQueue(base, data.version_ranges(path, token, base))
    return queues[base]


def _window_key(base: str, eid: str) -> str:
    return f"tr_window::{base}::{eid}"


def _cut_key(base: str, eid: str, window: tuple[int, int]) -> str:
    """Key of the inner-segment slider; it includes the keep window so the slider restarts inside a new window."""
    return f"tr_cut::{base}::{eid}::{window[0]}-{window[1]}"


def _forget_widgets(base: str, eid: str) -> None:
    st.session_state.pop(_window_key(base, eid), None)


def _go(queue: TrimQueue, step: int) -> None:
    _set_current(queue.neighbour(st.session_state[CURRENT], step))


def _set_current(eid: str) -> None:
    if st.session_state.get(CURRENT) != eid:
        st.session_state[CURRENT] = eid
        st.session_state[NAV] = st.session_state.get(NAV, 0) + 1


def picker_key() -> str:
    """Widget key of the episode picker right now."""
    return f"tr_episode::{st.session_state.get(NAV, 0)}"


def _on_window(queue: TrimQueue, eid: str) -> None:
    first, last = st.session_state[_window_key(queue.base, eid)]
    queue.set_window(eid, int(first), int(last) + 1)


def _on_remove_segment(queue: TrimQueue, eid: str) -> None:
    first, last = st.session_state[_cut_key(queue.base, eid, queue.window(eid))]
    queue.remove_segment(eid, int(first), int(last) + 1)


def _on_restore(queue: TrimQueue, eid: str, index: int) -> None:
    queue.restore_segment(eid, index)


def _on_keep(queue: TrimQueue, eid: str) -> None:
    queue.drop(eid, False)
    _go(queue, 1)


def _on_drop(queue: TrimQueue, eid: str) -> None:
    queue.drop(eid, True)
    _go(queue, 1)


def _on_reset(queue: TrimQueue, eid: str) -> None:
    queue.reset(eid)
    _forget_widgets(queue.base, eid)


def _on_save(path: str, queue: TrimQueue) -> None:
    store = data.get_store(path)
    name = st.session_state.get("tr_name", "")
    message = st.session_state.get("tr_message", "")
    problems = queue.problems()
    if problems:
        st.session_state["tr_result"] = (False, "Cannot save: " + "; ".join(problems))
        return
    result = save_version(store, name, lambda n: store.create_version_from_trims(
        n, queue.base, queue.trims(), drop=queue.drops(), message=message or f"trimmed from {queue.base} in the app"))
    st.session_state["tr_result"] = (result.ok, result.message)
    if result.ok:
        for eid in queue.changed():
            _forget_widgets(queue.base, eid)
        queue.clear()
        st.session_state["tr_name"] = suggest_name(name, [*store.versions()["name"].tolist()])
        st.session_state["tr_message"] = ""


def apply_key(queue: TrimQueue, key: str) -> None:
    """What one shortcut does to the queue and the current episode (N, P, K, D, U)."""
    eid = st.session_state[CURRENT]
    if key == "n":
        _go(queue, 1)
    elif key == "p":
        _go(queue, -1)
    elif key == "k":
        _on_keep(queue, eid)
    elif key == "d":
        _on_drop(queue, eid)
    elif key == "u":
        _on_reset(queue, eid)


def _label(queue: TrimQueue, eid: str, labels: dict[str, str]) -> str:
    text = labels.get(eid, eid)
    if queue.is_dropped(eid):
        return f"{text}  · DROPPED"
    if queue.is_changed(eid):
        return f"{text}  · trimmed"
    return text


def _editor(queue: TrimQueue, eid: str, length: int) -> None:
    """Keep-window slider, inner-segment removal and the keyboard-friendly action buttons."""
    base = queue.base
    start, stop = queue.window(eid)
    last = max(length - 1, 1)
    st.slider("Keep frames (first, last)", 0, last, (start, min(stop - 1, last)), key=_window_key(base, eid),
              on_change=_on_window, args=(queue, eid),
              help="Frames outside this window are left out of the new version (shaded red on the plots).")
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    lo, hi = start, max(min(stop - 1, last), start + 1)
    c1.slider("Inner segment to remove (first, last)", lo, hi, (lo, lo), key=_cut_key(base, eid, (start, stop)),
              help="Pick frames inside the keep window, then press Remove segment")
    c2.button("Remove segment", key="tr_remove", on_click=_on_remove_segment, args=(queue, eid),
              icon=":material/content_cut:",
              width="stretch")
    cuts = queue.cuts(eid)
    if cuts:
        cols = st.columns(min(len(cuts), 4) or 1)
        for i, (a, b) in enumerate(cuts):
            cols[i % len(cols)].button(f"Restore {a}–{b - 1}", key=f"tr_restore_{i}", on_click=_on_restore,
                                       args=(queue, eid, i), icon=":material/undo:")
    kept = queue.keep_ranges(eid)
    status = "dropped" if queue.is_dropped(eid) else ("trimmed" if queue.is_changed(eid) else "unchanged")
    st.caption(f"Status: **{status}** · keeps {count(kept)} of {count(queue.base_ranges[eid])} frames "
               f"({', '.join(f'{a}–{b - 1}' for a, b in kept) or 'none'})")
    row = st.container(horizontal=True)
    row.button("Previous", key="tr_prev", on_click=_go, args=(queue, -1), icon=":material/arrow_back:")
    row.button("Next", key="tr_next", on_click=_go, args=(queue, 1), icon=":material/arrow_forward:")
    row.button("Keep & next", key="tr_keep", on_click=_on_keep, args=(queue, eid), type="primary",
               icon=":material/check:")
    row.button("Drop & next", key="tr_drop", on_click=_on_drop, args=(queue, eid),
               icon=":material/delete:")
    row.button("Reset episode", key="tr_reset", on_click=_on_reset, args=(queue, eid),
               icon=":material/restart_alt:")


def _save_section(path: str, token: str, queue: TrimQueue) -> None:
    st.subheader("Queued changes")
    rows = queue.rows()
    before, after = queue.frames()
    c1, c2, c3 = st.columns(3)
    c1.metric("Episodes changed", len(rows))
    c2.metric("Episodes dropped", len(queue.drops()))
    c3.metric("Frames kept", f"{after:,} / {before:,}")
    if rows:
        st.dataframe(table(pd.DataFrame(rows)), hide_index=True, width="stretch", height=min(300, 38 + 35 * len(rows)))
    else:
        st.caption("Nothing queued yet. Adjust the keep window, remove a segment or drop an episode.")
    if "tr_name" not in st.session_state:
        st.session_state["tr_name"] = suggest_name(f"{queue.base}_trim", data.version_names(path, token))
    with st.form("tr_save_form", border=True):
        st.markdown(f"**Save as a new version** derived from `{queue.base}` (the base stays unchanged)")
        c1, c2 = st.columns([2, 3])
        c1.text_input("New version name", key="tr_name")
        c2.text_input("Message", key="tr_message", placeholder="what was trimmed and why")
        st.form_submit_button("Save version", type="primary", on_click=_on_save, args=(path, queue),
                              disabled=not rows, icon=":material/save:")
    result = st.session_state.pop("tr_result", None)
    if result:
        (st.success if result[0] else st.error)(result[1])


def render(path: str) -> None:
    """Draw the trimming page."""
    token = data.state_token(data.get_store(path))
    st.title("Trimming")
    names = data.version_names(path, token)
    if not names:
        st.info("The store has no versions yet; trimming starts from a version (e.g. the demos or a selection).")
        return
    c1, c2 = st.columns(2)
    base = c1.selectbox("Base version", names, key="tr_base",
                        help="The new version = this version with your trims and drops applied; nothing is deleted.")
    queue = get_queue(path, token, base)
    if st.session_state.get(CURRENT) not in queue.base_ranges:
        _set_current(queue.episode_ids[0])
    for _seq, key in key_queue("tr_keys", "".join(SHORTCUTS), KEYS_ACK):
        apply_key(queue, key)
    ids = queue.episode_ids
    labels = data.episode_labels(path, token)
    current = st.session_state[CURRENT]
    eid = c2.selectbox(f"Episode ({len(ids)} in the base version)", ids, key=picker_key(), index=ids.index(current),
                       format_func=lambda e: _label(queue, e, labels),
                       help="id · outcome · length · round/branch. N / P move to the next / previous episode")
    if eid != current:  # picked by the user
        st.session_state[CURRENT] = eid
    length = int(data.episode_row(path, eid)["length"])

    def controls() -> list[tuple[int, int]]:
        _editor(queue, eid, length)
        return queue.keep_ranges(eid)

    with st.container(border=True):
        show_episode(path, eid, key="tr", controls=controls)
    st.caption("Keyboard: **N** next · **P** previous · **K** keep & next · **D** drop & next · **U** reset episode · "
               "← / → move a focused slider")
    _save_section(path, token, queue)
