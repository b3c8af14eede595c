"""End to end: the real app server (`sime-app`) driven from headless Chromium through playwright.

A trim and a threshold selection are made through the UI; the test then checks the store holds the
new versions with the right contents, that the server listened on loopback only (its default), and
that every request the page made went to that server (no fonts, icons or telemetry from the internet).
Screenshots are saved under $SIME_TEST_ARTIFACTS (default tests/app/artifacts/, git-ignored). Debian's
/usr/bin/chromium is used; no browser is downloaded.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest

import sime_data

from app_testlib import (  # noqa: F401 (fixture)
    CHROMIUM,
    CHROMIUM_ARGS,
    LENGTH,
    _template_store,
    foreign_requests,
    listening_addresses,
    need_browser,
    record_requests,
    serve_app,
)

ARTIFACTS = Path(os.environ.get("SIME_TEST_ARTIFACTS") or Path(__file__).resolve().parent / "artifacts")
TIMEOUT_MS = 30_000


@pytest.fixture
def server(_template_store: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, store path) of a `sime-app` server with its default address (loopback); killed afterwards."""
    need_browser()
    store = tmp_path / "store"
    shutil.copytree(_template_store, store)
    with serve_app(store, tmp_path / "server.log") as url:
        yield url, store


def _idle(page) -> None:
    """Wait until the script run triggered by the last interaction has finished and everything is drawn."""
    page.wait_for_timeout(300)
    page.locator("[data-testid='stStatusWidget']").wait_for(state="hidden", timeout=TIMEOUT_MS)
    page.wait_for_function("document.querySelectorAll(\"[data-testid='stSkeleton']\").length === 0",
                           timeout=TIMEOUT_MS)


def _choose(page, label: str, option: str) -> None:
    """Pick `option` in the selectbox labelled `label`."""
    page.get_by_role("combobox", name=label, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()
    _idle(page)


def _press(page, label: str, key: str, times: int) -> None:
    """Move the slider thumb labelled `label` with the keyboard."""
    thumb = page.locator(f'input[type="range"][aria-label="{label}"]')
    thumb.focus()
    for _ in range(times):
        page.keyboard.press(key)
    page.wait_for_timeout(400)
    page.mouse.click(5, 5)  # release focus so the value is sent
    _idle(page)


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_trim_and_selection_through_the_browser(server: tuple[str, Path]) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)  # a loaded CI machine redraws slowly

    url, store_path = server
    listening = listening_addresses(int(url.rsplit(":", 1)[1]))
    assert listening and set(listening) <= {"127.0.0.1", "::1"}, f"listening on {listening}, not loopback only"
    store = sime_data.open_store(store_path)
    ids = store.version("round0/rollouts").episode_ids
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1900})
            requests = record_requests(page)
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{url}/?page=overview")
            expect(page.get_by_text("Episodes by source, task and round")).to_be_visible()
            _idle(page)
            _shot(page, "01_overview")

            # ---- trimming: keep frames 3..13 of the first rollout, drop the second (keyboard 'D'), save
            page.get_by_text("Trimming", exact=True).click()
            expect(page.get_by_text("Keep frames (first, last)")).to_be_visible()
            _idle(page)
            _choose(page, "Base version", "round0/rollouts")
            _press(page, "Keep frames (first, last) — start", "ArrowRight", 3)
            _press(page, "Keep frames (first, last) — end", "ArrowLeft", 2)
            expect(page.get_by_text("keeps 11 of 16 frames")).to_be_visible()
            page.wait_for_timeout(500)
            _shot(page, "02_trimming_episode")
            page.keyboard.press("n")  # next episode
            _idle(page)
            page.keyboard.press("d")  # drop it and move on
            _idle(page)
            expect(page.get_by_text("Frames kept")).to_be_visible()
            name = page.get_by_label("New version name", exact=True)
            name.fill("round0/e2e_trimmed")
            page.get_by_label("Message", exact=True).fill("trimmed in the browser")
            _shot(page, "03_trimming_queued")
            page.get_by_role("button", name="Save version").click()
            expect(page.get_by_text("Saved version 'round0/e2e_trimmed'")).to_be_visible()
            _idle(page)
            _shot(page, "04_trimming_saved")

            # ---- selection: threshold 0.9 on the rollouts, on top of the demos
            page.get_by_text("Selection", exact=True).click()
            expect(page.get_by_text("What each threshold keeps")).to_be_visible()
            _idle(page)
            _choose(page, "Rollout version", "round0/rollouts")
            _press(page, "Threshold", "ArrowRight", 8)  # 0.50 -> 0.90 in steps of 0.05
            expect(page.get_by_text("sr_lss_0.9 of round0/rollouts: 6 episodes")).to_be_visible()
            _choose(page, "Combine with base version", "demos")
            expect(page.get_by_label("New version name", exact=True)).to_have_value("round0/rollouts_sr_lss_0.9_train")
            _shot(page, "05_selection_preview")
            page.get_by_role("button", name="Create selection version").click()
            expect(page.get_by_text("Saved version 'round0/rollouts_sr_lss_0.9_train'")).to_be_visible()
            _idle(page)
            _shot(page, "06_selection_saved")

            # ---- the versions page shows both, with lineage
            page.get_by_text("Versions", exact=True).click()
            expect(page.get_by_text("Lineage", exact=True)).to_be_visible()
            _idle(page)
            page.wait_for_timeout(1000)
            _shot(page, "07_versions")
            page.get_by_text("Episode browser", exact=True).click()
            expect(page.get_by_text("click a row to open it")).to_be_visible()
            _idle(page)
            page.wait_for_timeout(1000)
            _shot(page, "08_browser")
        finally:
            browser.close()
    assert len(requests) > 20 and any(u.startswith("ws://") for u in requests)  # the recording saw the page work
    assert foreign_requests(requests, url) == [], "the page contacted something other than the app server"

    trimmed = store.version("round0/e2e_trimmed")
    assert trimmed.parents == ["round0/rollouts"] and trimmed.message == "trimmed in the browser"
    ranges = trimmed.ranges()
    assert ranges[ids[0]] == [(3, 14)] and ids[1] not in ranges
    assert all(ranges[e] == [(0, LENGTH)] for e in ids[2:])
    selected = store.version("round0/rollouts_sr_lss_0.9_train")
    assert selected.parents == ["demos", "round0/rollouts"] and selected.rule["threshold"] == 0.9
    demos = store.version("demos").episode_ids
    picked = [e for e in selected.episode_ids if e not in demos]
    rows = store.episodes(version="round0/rollouts").set_index("episode_id").loc[picked]
    assert len(picked) == 6 and rows["success"].all()
    assert sorted(set(rows["init_state_id"])) == ["state1", "state2", "state3"]
    assert set(demos) <= set(selected.episode_ids)
