"""Store access for the app: one Store per path, a cheap state token, and cached read-only queries.

Every cached query takes the store's state token, which changes whenever an episode or version is
committed (by this app or anyone else), so a page never shows data older than the last save.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

import sime_data
from sime_data.sql_sandbox import INTERACTIVE_MAX_ROWS, INTERACTIVE_TIMEOUT_S

#: Episode columns the app shows (the big init_state blobs and key lists stay on disk).
EPISODE_COLUMNS = [
    "episode_id", "source", "task", "init_state_id", "trial", "success", "length", "episode_return", "round",
    "branch", "checkpoint", "explore_mode", "noise_scale", "tau1", "tau2", "seed", "created_at", "tags", "notes",
]
ENV_STORE = "SIME_STORE"
ENV_SQL_TIMEOUT = "SIME_APP_SQL_TIMEOUT"
ENV_SQL_MAX_ROWS = "SIME_APP_SQL_MAX_ROWS"
#: Favicon: a plain emoji, drawn by the browser itself (no icon font is fetched from the internet).
PAGE_ICON = "🤖"


def store_path(argv: list[str] | None = None) -> str | None:
    """The store location from `--store` after `streamlit run app.py --`, else $SIME_STORE, else None."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--store", default=None)
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    return args.store or os.environ.get(ENV_STORE) or None


@st.cache_resource(show_spinner=False)
def get_store(path: str) -> sime_data.Store:
    """The opened store at `path` (one per server process; its catalog refreshes itself)."""
    return sime_data.open_store(path)


def state_token(store: sime_data.Store) -> str:
    """A digest of the committed episode files and version names: changes on every commit."""
    files = store.row_files()
    versions = store.version_files()
    digest = hashlib.sha1()
    for name in (*files, "|", *versions):
        digest.update(name.encode())
        digest.update(b"\n")
    return digest.hexdigest()


@st.cache_data(show_spinner=False, max_entries=8)
def episodes_table(path: str, token: str) -> pd.DataFrame:
    """All episode rows (app columns only) for the store state `token`."""
    table = get_store(path).episode_columns(EPISODE_COLUMNS).to_pandas()
    table["success"] = table["success"].astype("boolean")
    return table


@st.cache_data(show_spinner=False, max_entries=8)
def versions_table(path: str, token: str) -> pd.DataFrame:
    """All versions with parents, message, rule and counts, newest last."""
    frame = get_store(path).versions()
    return frame.sort_values("created_at", kind="stable").reset_index(drop=True) if len(frame) else frame


def version_names(path: str, token: str) -> list[str]:
    """Version names, newest first."""
    frame = versions_table(path, token)
    return list(reversed(frame["name"].tolist())) if len(frame) else []


@st.cache_data(show_spinner=False, max_entries=32)
def version_ranges(path: str, token: str, name: str) -> dict[str, list[tuple[int, int]]]:
    """Kept frame ranges per episode of a version (versions are immutable; the token guards renames)."""
    return get_store(path).version(name).ranges()


@st.cache_data(show_spinner=False, max_entries=32)
def version_episode_ids(path: str, token: str, name: str) -> list[str]:
    """Episode ids of a version, in manifest order."""
    return list(version_ranges(path, token, name))


def sql_limits() -> tuple[float | None, int | None]:
    """(timeout in seconds, result row cap) of the SQL box: $SIME_APP_SQL_TIMEOUT / $SIME_APP_SQL_MAX_ROWS."""
    timeout = float(os.environ.get(ENV_SQL_TIMEOUT) or INTERACTIVE_TIMEOUT_S)
    max_rows = int(os.environ.get(ENV_SQL_MAX_ROWS) or INTERACTIVE_MAX_ROWS)
    return (timeout if timeout > 0 else None), (max_rows if max_rows > 0 else None)


@st.cache_data(show_spinner=False, max_entries=16)
def sql_query(path: str, token: str, query: str) -> pd.DataFrame:
    """Result of a read-only SQL query, time-limited and row-capped (raises SQLError / ReadOnlySQLError)."""
    timeout_s, max_rows = sql_limits()
    return get_store(path).sql(query, timeout_s=timeout_s, max_rows=max_rows)


@st.cache_data(show_spinner=False, max_entries=64)
def episode_lowdim(path: str, episode_id: str) -> dict[str, np.ndarray]:
    """All arrays of an episode except camera frames (committed episodes never change)."""
    from .frames import image_keys

    store = get_store(path)
    specs = store.episode_keys(episode_id)
    images = set(image_keys(specs))
    keys = [k for k in specs if k not in images]
    return store.read_episode(episode_id, keys=keys)


@st.cache_data(show_spinner=False, max_entries=512)
def episode_frame(path: str, episode_id: str, key: str, frame: int) -> np.ndarray:
    """One stored camera frame."""
    return get_store(path).read_episode(episode_id, keys=[key], start=frame, stop=frame + 1)[key][0]


def episode_specs(path: str, episode_id: str) -> dict[str, Any]:
    """Array keys of an episode with their per-step shape and dtype."""
    return get_store(path).episode_keys(episode_id)


def episode_row(path: str, episode_id: str) -> dict[str, Any]:
    """Full metadata row of one episode (init state blob excluded)."""
    row = dict(get_store(path).episode(episode_id))
    row.pop("init_state", None)
    return row


@st.cache_data(show_spinner=False, max_entries=8)
def episode_groups(path: str, token: str) -> dict[str, str]:
    """{episode_id: 'eval' | 'collect' | 'explore' | '<branch> <kind>'} for episodes of a run's rollout versions."""
    from .runs import episode_groups as groups_of

    return groups_of(versions_table(path, token), lambda name: version_ranges(path, token, name))


@st.cache_data(show_spinner=False, max_entries=8)
def reused_rollouts(path: str, token: str) -> list[tuple[int, str, list[str]]]:
    """(round, group label, episode ids) of run rollout versions that reuse an earlier round's rollouts."""
    from .runs import reused_rollouts as reused_of

    return reused_of(versions_table(path, token), lambda name: version_ranges(path, token, name))


@st.cache_data(show_spinner=False, max_entries=8)
def episode_labels(path: str, token: str) -> dict[str, str]:
    """{episode_id: 'id · success/fail · length · round/branch'} for the episode pickers."""
    from .display import episode_labels as labels_of

    return labels_of(episodes_table(path, token), episode_groups(path, token))
