"""SIME curation app: `streamlit run curation_app/app.py -- --store PATH` (or `sime-app --store PATH`)."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

if __package__ in (None, ""):  # run as a script by `streamlit run`: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sime_data  # noqa: E402

from curation_app import auth, data, frames  # noqa: E402
from curation_app.views import browser, overview, selection, trimming, versions  # noqa: E402

#: Page key -> (label in the sidebar, one-line help, render function).
PAGES = {
    "overview": ("Overview", "counts, success rates, SQL", overview.render),
    "browser": ("Episode browser", "filter episodes, scrub frames", browser.render),
    "trimming": ("Trimming", "cut frames, drop episodes, save a version", trimming.render),
    "selection": ("Selection", "keep successes of weak initial states", selection.render),
    "versions": ("Versions", "list, lineage graph, diff", versions.render),
}
PAGE_KEY = "nav_page"


def _sync_page_from_url() -> None:
    wanted = st.query_params.get("page")
    if PAGE_KEY not in st.session_state and wanted in PAGES:
        st.session_state[PAGE_KEY] = wanted


def _on_page_change() -> None:
    st.query_params["page"] = st.session_state[PAGE_KEY]


def main() -> None:
    """Set up the page, pick the store and draw the chosen page."""
    # a local icon: a Material icon here would make the browser fetch it from fonts.gstatic.com
    st.set_page_config(page_title="SIME curation", page_icon=data.PAGE_ICON, layout="wide")
    if not auth.signed_in():
        st.stop()
    path = data.store_path()
    with st.sidebar:
        st.markdown("## SIME curation")
        if not path:
            st.error("No store given. Start with `sime-app --store PATH`.")
            st.stop()
        try:
            store = data.get_store(path)
        except sime_data.StoreError as exc:
            st.error(str(exc))
            st.stop()
        frames.prewarm(store)  # start the render worker early when the store has states to render from
        _sync_page_from_url()
        page = st.radio("Page", list(PAGES), key=PAGE_KEY, on_change=_on_page_change,
                        format_func=lambda k: PAGES[k][0], captions=[p[1] for p in PAGES.values()])
        st.divider()
        st.caption(f"Store: `{store.location}`")
        unreadable = store.unreadable_versions()
        if unreadable:
            st.warning(f"{len(unreadable)} version file(s) could not be read and are left out: "
                       + "; ".join(f"`{rel}`" for rel in unreadable) + ". Run `sime-data verify`.")
        st.caption("Nothing is ever deleted: trims and selections are saved as new versions.")
    PAGES[page][2](path)


main()
