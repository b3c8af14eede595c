"""Versions page: the list with lineage and counts, a lineage graph, details and a diff of two versions."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from .. import data
from ..charts import lineage_dot, version_kind


@st.cache_data(show_spinner=False, max_entries=32)
def cached_diff(path: str, token: str, a: str, b: str) -> dict:
    """Diff of b relative to a as plain data (added, removed, changed, frame counts)."""
    diff = data.get_store(path).diff_versions(a, b)
    return {"summary": diff.summary(), "added": diff.added, "removed": diff.removed, "changed": diff.changed,
            "frames_added": diff.frames_added, "frames_removed": diff.frames_removed}


def version_list(versions: pd.DataFrame) -> pd.DataFrame:
    """Versions newest first with kind, parents joined, and counts, for display."""
    if versions.empty:
        return versions
    out = versions.assign(
        kind=[version_kind(r, p if p is not None else []) for r, p in zip(versions["rule"], versions["parents"])],
        parents=[", ".join(p) if p is not None and len(p) else "-" for p in versions["parents"]])
    cols = ["name", "kind", "parents", "message", "n_episodes", "n_frames", "success_rate", "created_at"]
    return out[cols].iloc[::-1].reset_index(drop=True)


def render(path: str) -> None:
    """Draw the versions page."""
    token = data.state_token(data.get_store(path))
    versions = data.versions_table(path, token)
    st.title("Versions")
    if versions.empty:
        st.info("The store has no versions yet.")
        return
    st.caption("Versions are immutable manifests of (episode, frame range); trims and selections make new ones, "
               "so every training set can be traced back to the demonstrations.")
    st.dataframe(version_list(versions), hide_index=True, width="stretch", height=min(420, 38 + 35 * len(versions)),
                 column_config={"success_rate": st.column_config.NumberColumn("success rate", format="%.3f"),
                                "n_episodes": "episodes", "n_frames": "frames",
                                "created_at": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm")})
    names = list(reversed(versions["name"].tolist()))
    left, right = st.columns([3, 2], gap="large")
    with left:
        st.subheader("Lineage")
        focus = st.selectbox("Highlight", ["(none)", *names], key="vs_focus")
        st.graphviz_chart(lineage_dot(versions, None if focus == "(none)" else focus), width="stretch")
        if focus != "(none)":
            st.code(data.get_store(path).version(focus).describe(), language=None)
    with right:
        st.subheader("Diff")
        a = st.selectbox("From (A)", names, index=min(1, len(names) - 1), key="vs_a")
        b = st.selectbox("To (B)", names, index=0, key="vs_b")
        diff = cached_diff(path, token, a, b)
        st.markdown(f"**{diff['summary']}**")
        m = st.columns(2)
        m[0].metric("Episodes added", len(diff["added"]))
        m[1].metric("Episodes removed", len(diff["removed"]))
        m = st.columns(2)
        m[0].metric("Episodes re-trimmed", len(diff["changed"]))
        m[1].metric("Frames added / removed", f"+{diff['frames_added']} / -{diff['frames_removed']}")
        tabs = st.tabs(["Added", "Removed", "Re-trimmed"])
        tabs[0].dataframe(pd.DataFrame({"episode_id": diff["added"]}), hide_index=True, width="stretch", height=200)
        tabs[1].dataframe(pd.DataFrame({"episode_id": diff["removed"]}), hide_index=True, width="stretch", height=200)
        changed = diff["changed"].assign(ranges_a=lambda f: f["ranges_a"].astype(str),
                                         ranges_b=lambda f: f["ranges_b"].astype(str))
        tabs[2].dataframe(changed, hide_index=True, width="stretch", height=200)
