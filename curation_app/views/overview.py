"""Overview page: counts, success rates per round and kind of rollout, per-initial-state histogram, SQL box."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import sime_data
from sime_data.errors import SQLResultTooLargeError, SQLTimeoutError

from .. import data
from ..charts import bar_chart, sr_histogram
from ..display import NULL, table
from ..runs import KIND_HELP, rates_by_group

DEFAULT_SQL = ("SELECT init_state_id, count(*) AS trials, avg(success::INT) AS success_rate\n"
               "FROM episodes WHERE source = 'rollout'\nGROUP BY init_state_id ORDER BY success_rate LIMIT 100")


def counts_table(episodes: pd.DataFrame) -> pd.DataFrame:
    """Episodes, frames and success rate per (source, task, round)."""
    if episodes.empty:
        return pd.DataFrame(columns=["source", "task", "round", "episodes", "frames", "success_rate"])
    frame = episodes.assign(round=[(NULL if pd.isna(r) else str(int(r))) for r in episodes["round"]],
                            ok=episodes["success"].astype("Float64"))
    out = frame.groupby(["source", "task", "round"], dropna=False, sort=True).agg(
        episodes=("episode_id", "size"), frames=("length", "sum"), success_rate=("ok", "mean")).reset_index()
    return out


def per_state_rates(episodes: pd.DataFrame) -> pd.DataFrame:
    """Trials, successes and success rate per initial state."""
    frame = episodes[episodes["init_state_id"].notna() & episodes["success"].notna()]
    grouped = frame.assign(ok=frame["success"].astype(int)).groupby("init_state_id")["ok"]
    return pd.DataFrame({"trials": grouped.size(), "successes": grouped.sum(),
                         "success_rate": grouped.mean()}).reset_index()


def _metrics(episodes: pd.DataFrame, n_versions: int) -> None:
    cols = st.columns(5)
    cols[0].metric("Episodes", f"{len(episodes):,}")
    cols[1].metric("Frames", f"{int(episodes['length'].sum()) if len(episodes) else 0:,}")
    rate = episodes["success"].astype("Float64").mean() if len(episodes) else None
    cols[2].metric("Success rate", NULL if rate is None or pd.isna(rate) else f"{rate:.1%}")
    cols[3].metric("Initial states", f"{episodes['init_state_id'].nunique():,}")
    cols[4].metric("Versions", f"{n_versions:,}")


def _histogram_section(path: str, token: str, episodes: pd.DataFrame) -> None:
    st.subheader("Success rate per initial state")
    versions = data.version_names(path, token)
    sources = sorted(episodes["source"].dropna().unique().tolist())
    c1, c2, c3 = st.columns(3)
    scope = c1.selectbox("Episodes of", ["all episodes", *versions], key="ov_hist_version")
    default_source = ["rollout"] if "rollout" in sources else sources
    chosen_sources = c2.multiselect("Source", sources, default=default_source, key="ov_hist_source")
    rounds = sorted(episodes["round"].dropna().astype(int).unique().tolist())
    chosen_rounds = c3.multiselect("Round", rounds, default=[], key="ov_hist_round", placeholder="all rounds")
    frame = episodes
    if scope != "all episodes":
        frame = frame[frame["episode_id"].isin(set(data.version_episode_ids(path, token, scope)))]
    if chosen_sources:
        frame = frame[frame["source"].isin(chosen_sources)]
    if chosen_rounds:
        frame = frame[frame["round"].isin(chosen_rounds)]
    rates = per_state_rates(frame)
    if rates.empty:
        st.info("No episodes with an initial state and an outcome match these filters.")
        return
    left, right = st.columns([3, 2])
    left.altair_chart(sr_histogram(rates["success_rate"], title=f"{len(rates)} initial states, "
                                   f"{int(rates['trials'].sum())} trials"), width="stretch")
    right.dataframe(rates.sort_values("success_rate"), hide_index=True, height=260, width="stretch",
                    column_config={"success_rate": st.column_config.ProgressColumn("success rate", min_value=0,
                                                                                   max_value=1, format="%.2f")})


def sql_error_text(exc: Exception) -> str:
    """The error as markdown, DuckDB's message in a monospace block so its ^ marker sits under the right column."""
    text = str(exc).replace("`" * 3, "'" * 3)
    return f"The query failed:\n```text\n{text}\n```"


def _rounds_section(path: str, token: str, episodes: pd.DataFrame) -> None:
    st.subheader("Success rate by round")
    rates = rates_by_group(episodes, data.episode_groups(path, token), data.reused_rollouts(path, token))
    if rates.empty:
        st.info("No episode records a round yet.")
        return
    st.altair_chart(bar_chart(rates.rename(columns={"group": "rollouts"}), "round", "success_rate",
                              color="rollouts", y_title="success rate",
                              title="per round: one bar per kind of rollout"), width="stretch")
    st.dataframe(table(rates.rename(columns={"group": "rollouts", "success_rate": "success rate"})),
                 hide_index=True, width="stretch", height=min(260, 38 + 35 * len(rates)))
    kinds = set(rates["group"].str.rsplit(" ", n=1).str[-1])
    explained = [f"**{k}**: {KIND_HELP[k]}" for k in KIND_HELP if k in kinds]
    if explained:
        st.caption("Round 0 is shared by both branches. " + "; ".join(explained) + ". After round 0 the branch "
                   "(baseline / sime) comes first. Episodes in no run rollout version are shown by branch, else by "
                   "source (curated: smoothed replays and trimmed copies), else as 'unlabelled'."
                   + (" **reused**: the round's training data did not change, so it reuses the previous round's "
                      "policy and rollouts (counted again under its own round)." if rates["reused"].any() else ""))
    else:
        st.caption("One bar per branch (the rollouts of a `sime run` are split into eval / collect / explore).")


def _sql_section(path: str, token: str) -> None:
    st.subheader("SQL")
    timeout_s, max_rows = data.sql_limits()
    limits = ", ".join(part for part in (f"stopped after {timeout_s:g} s" if timeout_s else "",
                                         f"at most {max_rows:,} rows" if max_rows else "") if part)
    st.caption("Read-only queries over the views `episodes`, `versions` and `version_episodes` (DuckDB dialect)"
               + (f"; {limits}." if limits else "."))
    with st.form("ov_sql_form", border=False):
        query = st.text_area("Query", DEFAULT_SQL, height=110, key="ov_sql")
        submitted = st.form_submit_button("Run query", type="primary", shortcut="Ctrl+Enter")
    if submitted:
        st.session_state["ov_sql_ran"] = query
    ran = st.session_state.get("ov_sql_ran")
    if not ran:
        return
    try:
        result = data.sql_query(path, token, ran)
    except sime_data.ReadOnlySQLError as exc:
        st.error(f"Refused: {exc}")
        return
    except (SQLTimeoutError, SQLResultTooLargeError) as exc:
        st.error(f"Stopped: {exc}")
        return
    except sime_data.SQLError as exc:
        st.error(sql_error_text(exc))
        return
    st.caption(f"{len(result):,} rows")
    st.dataframe(table(result), hide_index=True, width="stretch", height=min(400, 38 + 35 * max(len(result), 1)))
    st.download_button("Download CSV", result.to_csv(index=False).encode(), file_name="query.csv", mime="text/csv",
                       key="ov_sql_csv")


def render(path: str) -> None:
    """Draw the overview page."""
    store = data.get_store(path)
    token = data.state_token(store)
    episodes = data.episodes_table(path, token)
    st.title("Overview")
    st.caption(f"Store `{store.location}`")
    _metrics(episodes, len(data.version_names(path, token)))
    if episodes.empty:
        st.info("The store has no episodes yet. Collect demonstrations or rollouts first "
                "(`sime demos`, `sime rollout`).")
        return
    left, right = st.columns([3, 2], gap="large")
    with left:
        st.subheader("Episodes by source, task and round")
        st.dataframe(table(counts_table(episodes).rename(columns={"success_rate": "success rate"})),
                     hide_index=True, width="stretch")
    with right:
        _rounds_section(path, token, episodes)
    _histogram_section(path, token, episodes)
    _sql_section(path, token)
