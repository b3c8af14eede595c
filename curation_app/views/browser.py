"""Episode browser: filter episodes by version, source, outcome, round and initial state; open one."""

from __future__ import annotations

from typing import Iterable

import pandas as pd
import streamlit as st

from .. import data, media
from ..components import video_player
from ..display import table
from .episode import VIDEO_SCALE, episode_source, show_episode

ALL = "all episodes"
OUTCOMES = ("any", "success", "failure")
TABLE_COLUMNS = ["episode_id", "source", "task", "round", "branch", "init_state_id", "trial", "success", "length",
                 "explore_mode", "noise_scale"]


def filter_episodes(episodes: pd.DataFrame, *, ids: Iterable[str] | None = None, sources: Iterable[str] = (),
                    outcome: str = "any", rounds: Iterable[int] = (), init_state: str = "") -> pd.DataFrame:
    """Rows matching every given filter (empty filters match everything)."""
    frame = episodes
    if ids is not None:
        frame = frame[frame["episode_id"].isin(set(ids))]
    sources = list(sources)
    if sources:
        frame = frame[frame["source"].isin(sources)]
    if outcome == "success":
        frame = frame[frame["success"].fillna(False).astype(bool)]
    elif outcome == "failure":
        frame = frame[~frame["success"].fillna(True).astype(bool)]
    rounds = list(rounds)
    if rounds:
        frame = frame[frame["round"].isin(rounds)]
    if init_state.strip():
        frame = frame[frame["init_state_id"].fillna("").str.contains(init_state.strip(), regex=False)]
    return frame


def _on_table_select() -> None:
    state = st.session_state.get("br_table")
    try:
        rows = list(state["selection"]["rows"]) if state is not None else []
    except (KeyError, TypeError):
        rows = []
    visible = st.session_state.get("br_visible_ids", [])
    if rows and rows[0] < len(visible):
        st.session_state["br_episode"] = visible[rows[0]]


def render(path: str) -> None:
    """Draw the episode browser page."""
    token = data.state_token(data.get_store(path))
    episodes = data.episodes_table(path, token)
    st.title("Episode browser")
    if episodes.empty:
        st.info("The store has no episodes yet.")
        return
    c1, c2, c3, c4, c5 = st.columns([3, 2, 1.3, 1.5, 2])
    version = c1.selectbox("Version", [ALL, *data.version_names(path, token)], key="br_version")
    sources = c2.multiselect("Source", sorted(episodes["source"].dropna().unique()), key="br_source",
                             placeholder="all sources")
    outcome = c3.selectbox("Outcome", OUTCOMES, key="br_outcome")
    rounds = c4.multiselect("Round", sorted(episodes["round"].dropna().astype(int).unique()), key="br_round",
                            placeholder="all rounds")
    init_state = c5.text_input("Initial state id contains", key="br_init_state")
    ids = None if version == ALL else data.version_episode_ids(path, token, version)
    shown = filter_episodes(episodes, ids=ids, sources=sources, outcome=outcome, rounds=rounds, init_state=init_state)
    st.caption(f"{len(shown):,} of {len(episodes):,} episodes match · click a row to open it")
    if shown.empty:
        st.info("No episode matches these filters.")
        return
    visible_ids = shown["episode_id"].tolist()
    st.session_state["br_visible_ids"] = visible_ids
    st.dataframe(table(shown[TABLE_COLUMNS]), hide_index=True, width="stretch", height=240, key="br_table",
                 on_select=_on_table_select, selection_mode="single-row")
    if st.session_state.get("br_episode") not in visible_ids:
        st.session_state["br_episode"] = visible_ids[0]
    labels = data.episode_labels(path, token)
    episode_id = st.selectbox("Episode", visible_ids, key="br_episode", format_func=lambda e: labels.get(e, e),
                              help="id · outcome · length · round/branch (eval / collect / explore for a run's "
                                   "round-0 rollouts)")
    with st.container(border=True):
        show_episode(path, episode_id, key="br")
    _compare_section(path, token, episodes, episode_id, labels)


def compare_candidates(episodes: pd.DataFrame, episode_id: str, limit: int = 200) -> list[str]:
    """Episodes worth playing beside `episode_id`: same initial state first (other trials, with/without
    exploration), then the rest of the same task."""
    row = episodes[episodes["episode_id"] == episode_id]
    if row.empty:
        return []
    state, task = row["init_state_id"].iloc[0], row["task"].iloc[0]
    others = episodes[episodes["episode_id"] != episode_id]
    same_state = others[others["init_state_id"] == state] if isinstance(state, str) else others.iloc[:0]
    rest = others[(others["task"] == task) & ~others["episode_id"].isin(set(same_state["episode_id"]))]
    return [*same_state["episode_id"].tolist(), *rest["episode_id"].tolist()][:limit]


def _compare_section(path: str, token: str, episodes: pd.DataFrame, episode_id: str, labels: dict[str, str]) -> None:
    candidates = compare_candidates(episodes, episode_id)
    if not candidates:
        return
    st.subheader("Side by side")
    other = st.selectbox("Play beside it", [None, *candidates], key=f"br_compare_{episode_id}",
                         format_func=lambda e: "(choose an episode: same initial state first)" if e is None
                         else labels.get(e, e))
    if other is None:
        return
    sources = [episode_source(path, episode_id), episode_source(path, other)]
    problem = next((s.problem for s in sources if s.problem), None)
    cameras = [] if problem else media.shared_cameras(sources)
    if problem or not cameras:
        st.info(problem or "The two episodes share no camera to show side by side.")
        return
    polling = any(s.from_states for s in sources) and not media.compare_clip(
        data.get_store(path), sources, cameras[0]).final
    st.fragment(_compare_body, run_every=1.5 if polling else None)(path, sources, cameras[0], labels, polling)


def _compare_body(path: str, sources: list, cameras: list[str], labels: dict[str, str], polling: bool) -> None:
    state = media.compare_clip(data.get_store(path), sources, cameras)
    left, right = (labels.get(s.episode_id, s.episode_id) for s in sources)
    if state.clip is None:
        st.caption(state.note)
    else:
        video_player("br_compare_player", state.clip, title=f"left: {left}  |  right: {right}", note=state.note,
                     scale=VIDEO_SCALE - 1, jump=False, partial=not state.final)
    if polling and state.final:
        st.rerun()
