"""End to end: the real app server (`sime-app`, rendering from states on) driven from headless Chromium.

One server and one browser run every check in turn:

* a trim and a threshold selection made through the UI land in the store with the right contents; the
  keyboard shortcuts N and D pressed 0.1 s apart both take effect (issue 13: a D 0.4 s after N was lost);
* camera frames rendered from a real Lift episode's simulator states are, pixel for pixel, the frames
  `SimEnv` renders directly from the same states (fetched as the PNG the page shows);
* the episode's video plays (its currentTime advances), at 0.25x when asked, and "Show this frame below"
  moves the frame scrubber to the frame on screen; two episodes play side by side;
* at 1280 and 1920 px the bounding boxes of camera images, captions, video players and plots do not
  intersect;
* the server listened on loopback only, every request went to it, and the page logged no console error
  and had no failed request.

Screenshots of every page land in $SIME_TEST_ARTIFACTS (default artifacts/app_screenshots/ at the repository
root, git-ignored). Debian's /usr/bin/chromium is used; no browser is downloaded.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import sime_data
from sime_data.verify import verify
from sime_data.video_codec import decode_image

from app_testlib import (  # noqa: F401 (fixtures)
    CHROMIUM,
    CHROMIUM_ARGS,
    LENGTH,
    REF_FRAMES,
    _template_store,
    add_lift_episode,
    foreign_requests,
    lift_recording,
    listening_addresses,
    need_browser,
    record_requests,
    serve_app,
)

ARTIFACTS = Path(os.environ.get("SIME_TEST_ARTIFACTS")
                 or Path(__file__).resolve().parents[2] / "artifacts" / "app_screenshots")
TIMEOUT_MS = 30_000
WIDTHS = (1280, 1920)

#: Page boxes that must never overlap: camera images, their captions, video players, plots.
BOXES_JS = """() => {
  const out = [];
  const add = (kind, el) => { const r = el.getBoundingClientRect();
    if (r.width > 0 && r.height > 0) out.push({kind, x: r.left, y: r.top + window.scrollY, w: r.width, h: r.height,
                                               text: (el.innerText || el.alt || '').slice(0, 60)}); };
  document.querySelectorAll('[data-testid="stImage"]').forEach(fig => {
    const cap = fig.querySelector('[data-testid="stImageCaption"]');
    const strip = cap && cap.innerText.startsWith('Filmstrip');
    fig.querySelectorAll('img').forEach(el => add(strip ? 'filmstrip' : 'image', el));
  });
  document.querySelectorAll('[data-testid="stImageCaption"]').forEach(el => add('caption', el));
  document.querySelectorAll('[data-testid="stVegaLiteChart"]').forEach(el => add('plot', el));
  document.querySelectorAll('[data-testid="stMultiSelect"]').forEach(el => add('plot controls', el));
  const walk = (root) => root.querySelectorAll('*').forEach(el => {
    if (el.shadowRoot) { el.shadowRoot.querySelectorAll('.sime-player').forEach(p => add('video', p)); walk(el.shadowRoot); }
  });
  walk(document);
  return out;
}"""


def overlaps(boxes: list[dict], slack: float = 0.5) -> list[tuple[str, str]]:
    """Pairs of boxes that intersect by more than `slack` pixels both ways."""
    found = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            dx = min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"])
            dy = min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"])
            if dx > slack and dy > slack:
                found.append((f"{a['kind']} {a['text']!r}", f"{b['kind']} {b['text']!r}"))
    return found


@pytest.fixture
def server(_template_store: Path, tmp_path: Path, lift_recording) -> Iterator[tuple[str, Path, str]]:
    """(base URL, store path, id of the Lift episode without camera frames) of a `sime-app` server with its
    default address (loopback) and rendering from states on; stopped afterwards."""
    need_browser()
    store = tmp_path / "store"
    shutil.copytree(_template_store, store)
    lift_id = add_lift_episode(sime_data.open_store(store), lift_recording)
    with serve_app(store, tmp_path / "server.log", render=True) as url:
        yield url, store, lift_id


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


def _shown_image(page, url: str, caption: str) -> np.ndarray:
    """The exact pixels of the camera image whose caption is `caption` (the PNG the page shows)."""
    figure = page.locator('[data-testid="stImage"]').filter(has_text=caption)
    src = figure.locator("img").get_attribute("src")
    if src.startswith("data:image/png;base64,"):
        return decode_image(base64.b64decode(src.split(",", 1)[1]))
    reply = page.request.get(src if src.startswith("http") else f"{url}{src}")
    assert reply.ok, (src, reply.status)
    return decode_image(reply.body())


def _check_layout(page, name: str) -> None:
    """Images, captions, players and plots of the episode on screen do not overlap at any tested width."""
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 2200})
        page.wait_for_timeout(700)
        boxes = page.evaluate(BOXES_JS)
        kinds = {b["kind"] for b in boxes}
        assert {"image", "caption", "plot", "video"} <= kinds, (name, width, kinds)
        assert overlaps(boxes) == [], (name, width)
        images = [b for b in boxes if b["kind"] == "image"]
        assert len({round(b["y"]) for b in images}) == 1 and all(round(b["w"]) == 168 for b in images)  # a row
        _shot(page, f"{name}_{width}")


def test_curation_workflow_through_the_browser(server: tuple[str, Path, str], lift_recording) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)  # a loaded CI machine redraws slowly
    url, store_path, _lift_id = server
    listening = listening_addresses(int(url.rsplit(":", 1)[1]))
    assert listening and set(listening) <= {"127.0.0.1", "::1"}, f"listening on {listening}, not loopback only"
    store = sime_data.open_store(store_path)
    ids = store.version("round0/rollouts").episode_ids
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 2000})
            requests = record_requests(page)
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"failed request: {r.url} {r.failure}"))
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{url}/?page=overview")
            expect(page.get_by_text("Episodes by source, task and round")).to_be_visible()
            _idle(page)
            _shot(page, "01_overview")

            # ---- trimming: keep frames 3..13 of the first rollout, then N and D 0.1 s apart, save
            page.get_by_text("Trimming", exact=True).click()
            expect(page.get_by_text("Keep frames (first, last)")).to_be_visible()
            _idle(page)
            _choose(page, "Base version", "round0/rollouts")
            _press(page, "Keep frames (first, last) — start", "ArrowRight", 3)
            _press(page, "Keep frames (first, last) — end", "ArrowLeft", 2)
            expect(page.get_by_text("keeps 11 of 16 frames")).to_be_visible()
            page.wait_for_timeout(500)
            _shot(page, "02_trimming_episode")
            page.keyboard.press("n")  # next episode ...
            page.wait_for_timeout(100)
            page.keyboard.press("d")  # ... and drop it, while the rerun for N is still running
            _idle(page)
            expect(page.get_by_text("Episodes dropped")).to_be_visible()
            name = page.get_by_label("New version name", exact=True)
            name.fill("round0/e2e_trimmed")
            page.get_by_label("Message", exact=True).fill("trimmed in the browser")
            _shot(page, "03_trimming_queued")
            page.get_by_role("button", name="Save version").click()
            expect(page.get_by_text("Saved version 'round0/e2e_trimmed'")).to_be_visible()
            _idle(page)
            _shot(page, "04_trimming_saved")
            _check_layout(page, "05_trimming_layout")

            # ---- selection: threshold 0.9 on the rollouts, on top of the demos
            page.set_viewport_size({"width": 1280, "height": 2000})
            page.get_by_text("Selection", exact=True).click()
            expect(page.get_by_text("What each threshold keeps")).to_be_visible()
            _idle(page)
            _choose(page, "Rollout version", "round0/rollouts")
            _press(page, "Threshold", "ArrowRight", 8)  # 0.50 -> 0.90 in steps of 0.05
            expect(page.get_by_text("sr_lss_0.9 of round0/rollouts: 6 episodes")).to_be_visible()
            _choose(page, "Combine with base version", "demos")
            expect(page.get_by_label("New version name", exact=True)).to_have_value("round0/rollouts_sr_lss_0.9_train")
            _shot(page, "06_selection_preview")
            page.get_by_role("button", name="Create selection version").click()
            expect(page.get_by_text("Saved version 'round0/rollouts_sr_lss_0.9_train'")).to_be_visible()
            _idle(page)

            # ---- versions: the newest is compared with its parent
            page.get_by_text("Versions", exact=True).click()
            expect(page.get_by_text("Lineage", exact=True)).to_be_visible()
            _idle(page)
            page.wait_for_timeout(800)
            _shot(page, "07_versions")

            # ---- episode browser: frames rendered from states equal SimEnv's own renders
            page.get_by_text("Episode browser", exact=True).click()
            expect(page.get_by_text("click a row to open it")).to_be_visible()
            _idle(page)
            page.get_by_label("Initial state id contains", exact=True).fill("lift-rendered")
            page.keyboard.press("Enter")
            _idle(page)
            expect(page.get_by_text("1 of 29 episodes match")).to_be_visible()
            caption = "agentview · frame 0 · rendered from state"
            expect(page.get_by_text(caption)).to_be_visible(timeout=120_000)  # the worker may still be starting
            _idle(page)
            for camera, short in (("agentview_image", "agentview"), ("robot0_eye_in_hand_image", "robot0_eye_in_hand")):
                shown = _shown_image(page, url, f"{short} · frame 0 · rendered from state")
                assert np.array_equal(shown, lift_recording.refs[0][camera]), camera
            _press(page, "Frame", "ArrowRight", REF_FRAMES[1])
            expect(page.get_by_text(f"agentview · frame {REF_FRAMES[1]} · rendered from state")).to_be_visible()
            shown = _shown_image(page, url, f"agentview · frame {REF_FRAMES[1]} · rendered from state")
            assert np.array_equal(shown, lift_recording.refs[REF_FRAMES[1]]["agentview_image"])

            # ---- the video plays, at 0.25x, and jumps the scrubber to the frame on screen
            player = page.locator(f'.sime-player[data-frames="{len(lift_recording.states)}"]').first
            expect(player).to_be_visible(timeout=60_000)  # every frame rendered (partial clips come first)
            video = player.locator("video")
            page.wait_for_function("v => v.readyState >= 2", arg=video.element_handle(), timeout=TIMEOUT_MS)
            player.locator("select.speed").select_option("0.25")  # 24 frames at 20 fps: 4.8 s of playback
            player.locator("button.play").click()
            page.wait_for_function("v => v.currentTime > 0.1", arg=video.element_handle(), timeout=TIMEOUT_MS)
            assert video.evaluate("v => v.playbackRate") == 0.25
            player.locator("button.goto").click()  # pauses, then sends the frame on screen
            expect(player).to_have_attribute("data-sent", re.compile(r"\d+"))
            sent = int(player.get_attribute("data-sent"))
            assert sent == video.evaluate("v => Math.floor(v.currentTime * 20 + 1e-3)") and sent > 0
            thumb = page.locator('input[type="range"][aria-label="Frame"]')
            expect(thumb).to_have_value(str(sent))
            expect(page.get_by_text(f"agentview · frame {sent} · rendered from state")).to_be_visible()
            _idle(page)
            _shot(page, "08_browser_rendered")
            _check_layout(page, "09_browser_layout")

            # ---- side by side: the rendered episode beside a stored one
            page.set_viewport_size({"width": 1280, "height": 2400})
            page.get_by_role("combobox", name="Play beside it", exact=True).click()
            page.get_by_role("option").nth(1).click()
            _idle(page)
            expect(page.locator(".sime-player")).to_have_count(2, timeout=60_000)
            side = page.locator(".sime-player").nth(1)
            expect(side.locator(".title")).to_contain_text("left:")
            page.wait_for_function("v => v.readyState >= 2", arg=side.locator("video").element_handle())
            _shot(page, "10_browser_side_by_side")
        finally:
            browser.close()
    assert len(requests) > 20 and any(u.startswith("ws://") for u in requests)  # the recording saw the page work
    assert foreign_requests(requests, url) == [], "the page contacted something other than the app server"
    assert problems == [], problems

    trimmed = store.version("round0/e2e_trimmed")
    assert trimmed.parents == ["round0/rollouts"] and trimmed.message == "trimmed in the browser"
    ranges = trimmed.ranges()
    assert ranges[ids[0]] == [(3, 14)] and ids[1] not in ranges  # N then D: the second episode was dropped
    assert all(ranges[e] == [(0, LENGTH)] for e in ids[2:])
    selected = store.version("round0/rollouts_sr_lss_0.9_train")
    assert selected.parents == ["demos", "round0/rollouts"] and selected.rule["threshold"] == 0.9
    demos = store.version("demos").episode_ids
    picked = [e for e in selected.episode_ids if e not in demos]
    rows = store.episodes(version="round0/rollouts").set_index("episode_id").loc[picked]
    assert len(picked) == 6 and rows["success"].all()
    assert sorted(set(rows["init_state_id"])) == ["state1", "state2", "state3"]
    assert set(demos) <= set(selected.episode_ids)
    assert (store_path / "cache" / "media").is_dir() and verify(store).ok  # clips outside versions
