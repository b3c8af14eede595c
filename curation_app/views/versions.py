"""Versions page: the list with lineage and counts, a lineage graph, details and a diff of two versions."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from .. import data
from ..charts import lineage_dot, version_kind
from ..display import NULL, table


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
        parents=[", ".join(p) if p is not None and len(p) else NULL for p in versions["parents"]])
    cols = ["name", "kind", "parents", "message", "n_episodes", "n_frames", "success_rate", "created_at"]
    return out[cols].iloc[::-1].reset_index(drop=True)


def parent_of(versions: pd.DataFrame, name: str) -> str | None:
    """The first parent of a version that still exists, else None."""
    names = set(versions["name"])
    row = versions[versions["name"] == name]
    parents = list(row["parents"].iloc[0]) if len(row) and row["parents"].iloc[0] is not None else []
    return next((p for p in parents if p in names), None)


def default_pair(versions: pd.DataFrame) -> str:
    """The version the diff shows first: the newest one that has a parent (else the newest)."""
    names = list(reversed(versions["name"].tolist()))
    return next((n for n in names if parent_of(versions, n) is not None), names[0])


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
    listed = version_list(versions).rename(columns={"success_rate": "success rate"})
    listed["created_at"] = pd.to_datetime(listed["created_at"], errors="coerce").dt.strftime("%Y-%m-%d %H:%M")
    st.dataframe(table(listed), hide_index=True, width="stretch", height=min(420, 38 + 35 * len(versions)),
                 column_config={"n_episodes": "episodes", "n_frames": "frames", "created_at": "created"})
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
        b = st.selectbox("Version (B)", names, index=names.index(default_pair(versions)), key="vs_b",
                         help="compared with its parent unless you pick another version below")
        base = parent_of(versions, b)
        a = st.selectbox("Compared with (A)", names, index=None if base is None else names.index(base),
                         key=f"vs_a::{b}", placeholder="B has no parent: pick a version to compare with",
                         help="defaults to B's parent")
        if a is None:
            st.info(f"`{b}` has no parent version. Pick a version to compare it with.")
            return
        diff = cached_diff(path, token, a, b)
        st.markdown(f"**{diff['summary']}**")
        added, removed = diff["frames_added"], diff["frames_removed"]
        for (label_a, value_a), (label_b, value_b) in (
                (("Episodes added", len(diff["added"])), ("Episodes removed", len(diff["removed"]))),
                (("Episodes re-trimmed", len(diff["changed"])), ("Frames added", f"+{added:,}" if added else "0")),
                (("Frames removed", f"-{removed:,}" if removed else "0"), (None, None))):
            m = st.columns(2)
            m[0].metric(label_a, value_a)
            if label_b:
                m[1].metric(label_b, value_b)
        tabs = st.tabs(["Added", "Removed", "Re-trimmed"])
        tabs[0].dataframe(pd.DataFrame({"episode_id": diff["added"]}), hide_index=True, width="stretch", height=200)
        tabs[1].dataframe(pd.DataFrame({"episode_id": diff["removed"]}), hide_index=True, width="stretch", height=200)
        changed = diff["changed"].assign(ranges_a=lambda f: f["ranges_a"].astype(str),
                                         ranges_b=lambda f: f["ranges_b"].astype(str))
        tabs[2].dataframe(table(changed), hide_index=True, width="stretch", height=200)
