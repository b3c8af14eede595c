"""Selection page: per-initial-state success rates, what each threshold keeps, and the selection version."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import sime_data
from sime_data import selection as sel

from .. import data
from ..charts import sr_histogram
from ..saving import save_version, suggest_name

NO_BASE = "(none: the selection alone)"
RULE_LABELS = {"sr_lss": "success rate < threshold (SIME)", "success": "every success", "random": "random (same count)"}
PREVIEW_THRESHOLDS = (0.3, 0.5, 0.9)


@st.cache_data(show_spinner=False, max_entries=32)
def cached_preview(path: str, token: str, version: str, thresholds: tuple[float, ...]) -> pd.DataFrame:
    """Episodes, frames and states each threshold (and `success`) keeps."""
    return sel.preview_thresholds(data.get_store(path), version, thresholds=thresholds, include_success=True)


@st.cache_data(show_spinner=False, max_entries=32)
def cached_select(path: str, token: str, version: str, rule: str, threshold: float, seed: int) -> sel.Selection:
    """The selection a rule would make (nothing written)."""
    return sel.select(data.get_store(path), version, rule, threshold, seed)


def preview_thresholds_for(threshold: float) -> tuple[float, ...]:
    """The side-by-side thresholds: 0.3, 0.5, 0.9 and the chosen one, sorted."""
    return tuple(sorted({*PREVIEW_THRESHOLDS, round(float(threshold), 4)}))


def default_name(source: str, rule: str, threshold: float, base: str | None) -> str:
    """A descriptive version name such as 'lift/round0_rollouts_sr_lss_0.5' (+ '_plus_base')."""
    tag = f"sr_lss_{threshold:g}" if rule == "sr_lss" else ("success" if rule == "success" else f"random_{threshold:g}")
    name = f"{source}_{tag}"
    return f"{name}_train" if base else name


def _on_create(path: str, source: str, rule: str, threshold: float, base: str | None, seed: int) -> None:
    store = data.get_store(path)
    name = st.session_state.get("se_name", "")
    message = st.session_state.get("se_message", "")
    result = save_version(store, name, lambda n: sel.create_selection_version(
        store, n, source, rule, threshold, base=base, seed=seed, message=message))
    st.session_state["se_result"] = (result.ok, result.message)
    if result.ok:
        st.session_state["se_name"] = suggest_name(name, store.versions()["name"].tolist())


def _preview_section(preview: pd.DataFrame, threshold: float, rule: str) -> None:
    st.subheader("What each threshold keeps")
    shown = preview.assign(chosen=[
        (rule == "success" and r == "success") or (rule != "success" and t == round(threshold, 4))
        for r, t in zip(preview["rule"], preview["threshold"].fillna(-1))])
    st.dataframe(shown[["rule", "states_kept", "states", "episodes", "frames", "chosen"]], hide_index=True,
                 width="stretch", key="se_preview",
                 column_config={"states_kept": "initial states kept",
                                "chosen": st.column_config.CheckboxColumn("chosen")})


def render(path: str) -> None:
    """Draw the selection page."""
    store = data.get_store(path)
    token = data.state_token(store)
    st.title("Selection")
    st.caption("Keep the successful rollouts of initial states where the policy is still weak "
               "(success rate below the threshold), optionally on top of the previous training version.")
    names = data.version_names(path, token)
    if not names:
        st.info("The store has no versions yet; save the rollouts of a round as a version first.")
        return
    rollout_like = [n for n in names if "rollout" in n] or names
    c1, c2, c3 = st.columns([3, 3, 2])
    source = c1.selectbox("Rollout version", rollout_like + [n for n in names if n not in rollout_like],
                          key="se_source")
    rule = c2.radio("Rule", list(RULE_LABELS), format_func=RULE_LABELS.get, key="se_rule", horizontal=True)
    threshold = c3.slider("Threshold", 0.0, 1.01, 0.5, 0.05, key="se_threshold", disabled=rule == "success",
                          help="keep successes of initial states whose success rate is below this (1.01 keeps all)")
    seed = 0
    try:
        preview = cached_preview(path, token, source, preview_thresholds_for(threshold))
        chosen = cached_select(path, token, source, rule, float(threshold), seed)
    except (sime_data.StoreError, ValueError) as exc:
        st.error(f"Cannot select from '{source}': {exc}")
        return
    per_state = chosen.per_state
    m = st.columns(4)
    m[0].metric("Initial states", f"{len(per_state):,}")
    m[1].metric("States kept", f"{chosen.n_states_kept:,}")
    m[2].metric("Episodes kept", f"{chosen.n_episodes:,}")
    m[3].metric("Frames kept", f"{chosen.n_frames:,}")
    left, right = st.columns([1, 1], gap="large")
    with left:
        _preview_section(preview, float(threshold), rule)
        line = None if rule == "success" else threshold
        st.altair_chart(sr_histogram(per_state["success_rate"].dropna(), threshold=line,
                                     title="initial states by success rate (red line: threshold)", height=200),
                        width="stretch")
    with right:
        st.subheader("Per initial state")
        st.dataframe(per_state.sort_values(["success_rate", "init_state_id"]), hide_index=True, width="stretch",
                     height=min(460, 38 + 35 * len(per_state)), column_config={
                         "init_state_id": st.column_config.TextColumn("initial state"),
                         "success_rate": st.column_config.ProgressColumn("success rate", min_value=0, max_value=1,
                                                                         format="%.2f", width="small"),
                         "kept": st.column_config.NumberColumn("kept", help="episodes this rule keeps")})
    _create_section(path, token, names, source, rule, float(threshold), seed, chosen)


def _create_section(path: str, token: str, names: list[str], source: str, rule: str, threshold: float, seed: int,
                    chosen: sel.Selection) -> None:
    with st.container(border=True):
        st.markdown(f"**Create the selection version** · {chosen.describe()}")
        c1, c2 = st.columns([2, 5])
        base_choice = c1.selectbox("Combine with base version", [NO_BASE, *[n for n in names if n != source]],
                                   key="se_base", help="new version = base + selected episodes (no data copied)")
        base = None if base_choice == NO_BASE else base_choice
        wanted = default_name(source, rule, threshold, base)
        if st.session_state.get("se_name_for") != wanted:
            st.session_state["se_name"] = suggest_name(wanted, names)
            st.session_state["se_name_for"] = wanted
        with c2.form("se_form", border=False):
            f1, f2 = st.columns([2, 3])
            f1.text_input("New version name", key="se_name")
            f2.text_input("Message", key="se_message", placeholder="optional; the rule and counts are recorded anyway")
            st.form_submit_button("Create selection version", type="primary", icon=":material/filter_alt:",
                                  on_click=_on_create, args=(path, source, rule, threshold, base, seed))
    result = st.session_state.pop("se_result", None)
    if result:
        (st.success if result[0] else st.error)(result[1])
