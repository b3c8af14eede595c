"""Curation app benchmark: how long each page takes to render on a store of 10,000 episodes.

    python tests/benchmarks/bench_app.py [--quick] [--out DIR] [--keep] [--profile] [--store DIR] [--no-browser]
                                         [--no-render]
    python -m pytest tests/benchmarks/bench_app.py      # small store, correctness only

The store holds 100 demonstrations with 84x84 camera frames and 10,000 round-0 rollouts (2,000
initial states x 5 trials, low-dim observations, 10-D actions, simulator states), and the versions
a round produces (demos, rollouts, a selection, the next training set). Each page of the app is
run through streamlit's AppTest (the real script, in-process: server-side render time, the
browser's drawing excluded), in three situations:

* first view   - as in a fresh server process: Streamlit's caches cleared, the store opened and its catalog
                 loaded (the Python modules stay imported);
* after a save - another session has just committed a version, so every cached query misses;
* rerun        - the same session interacts again (warm caches).

When Debian's Chromium and playwright are installed (skip with --no-browser), the app is also served
by `sime-app` and driven from headless Chromium: the first load of the app, and switching to each page
from the sidebar until it is fully drawn (no placeholder left) - what a person waits for.

Rendered playback (skip with --no-render; needs robosuite, Chromium and playwright): a store of Lift
episodes of 400 steps without camera frames, recorded with the real simulator, served with rendering from
states on. After a warm-up episode (the render worker started and its model loaded, as the app's prewarm
does), each long episode is opened in the browser page and timed until its first camera frame is shown
(target < 2 s) and until its video can play (target < 5 s: playback starts on the frames rendered so far
and the clip grows); the time until the whole 400-frame clip is rendered, and a cold start, are reported
without a target.

Each figure is the median wall-clock time (time.perf_counter) over the repetitions; target < 2 s for pages.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from curation_app.cli import stop_server, wait_until_serving

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_util import (  # noqa: E402
    Row,
    bench_arg_parser,
    median,
    new_figure,
    output_dir,
    plot_ratios,
    profiled,
    report,
    save_figure,
    time_calls,
)

REPO = Path(__file__).resolve().parents[2]
APP_FILE = str(REPO / "curation_app" / "app.py")
TARGET_S = 2.0
#: Rendered playback: steps of each long episode, and the targets for its first frame and first playback.
RENDER_STEPS = 400
TARGET_FIRST_FRAME_S = 2.0
TARGET_FIRST_VIDEO_S = 5.0
PAGES = ("overview", "browser", "trimming", "selection", "versions")
CHROMIUM = os.environ.get("SIME_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: Sidebar label and a heading each page shows once drawn.
PAGE_LABELS = {"overview": "Overview", "browser": "Episode browser", "trimming": "Trimming", "selection": "Selection",
               "versions": "Versions"}
LOWDIM = {"robot0_eef_pos": 3, "robot0_eef_quat": 4, "robot0_gripper_qpos": 2, "object": 10}


@dataclass(frozen=True)
class Sizes:
    """Store size and repetitions of one benchmark run."""

    rollouts: int = 10_000
    trials: int = 5
    rollout_steps: int = 30
    demos: int = 100
    demo_steps: int = 40
    reps: int = 5
    warmup: int = 1


FULL = Sizes()
QUICK = Sizes(reps=3)
#: For the pytest-collected test: seconds, not minutes.
TINY = Sizes(rollouts=100, rollout_steps=8, demos=4, demo_steps=8, reps=1, warmup=0)


# ============================================================================ the store
def build_store(location: Path, sizes: Sizes, log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Write the benchmark store; returns names and counts."""
    import sime_data
    from sime_data.selection import create_selection_version

    store = sime_data.init_store(location)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    with store.writer(source="demo", task="lift") as w:
        for k in range(sizes.demos):
            for t in range(sizes.demo_steps):
                image = np.full((84, 84, 3), (k * 7 + t * 3) % 255, np.uint8)
                image[t % 84] = 255
                w.add_step(obs={**{key: rng.normal(size=n).astype(np.float32) for key, n in LOWDIM.items()},
                                "agentview_image": image},
                           action=rng.normal(size=10).astype(np.float32), reward=0.0, done=False,
                           state=rng.normal(size=45))
            w.finish(success=True, init_state_id=f"demo{k:04d}", trial=0)
        demo_ids = w.episodes_committed
    store.create_version("bench/demos", demo_ids, message="demonstrations with camera frames")
    n_states = max(1, sizes.rollouts // sizes.trials)
    skill = rng.uniform(0, 1, n_states)
    obs = {key: rng.normal(size=(sizes.rollout_steps, n)).astype(np.float32) for key, n in LOWDIM.items()}
    actions = rng.normal(size=(sizes.rollout_steps, 10)).astype(np.float32)
    states = rng.normal(size=(sizes.rollout_steps, 45))
    with store.writer(source="rollout", task="lift", round=0, branch="sime", checkpoint="round0", explore_mode="sime",
                      noise_scale=0.01, tau1=0.0, tau2=1.0, seed=233) as w:
        for i in range(sizes.rollouts):
            for t in range(sizes.rollout_steps):
                w.add_step(obs={key: value[t] for key, value in obs.items()}, action=actions[t], reward=0.0,
                           done=False, state=states[t])
            k = i // sizes.trials
            w.finish(success=bool(rng.random() < skill[k % n_states]), init_state_id=f"s{k:05d}",
                     trial=i % sizes.trials)
        rollout_ids = w.episodes_committed
    store.create_version("bench/round0_rollouts", rollout_ids, message="round-0 rollouts")
    create_selection_version(store, "bench/round0_sr_lss_0.5", "bench/round0_rollouts", "sr_lss", 0.5)
    store.create_version_union("bench/round1_train", ["bench/demos", "bench/round0_sr_lss_0.5"])
    n_episodes = len(store.episodes(columns=["episode_id"]))
    log(f"built a store of {n_episodes:,} episodes in {time.perf_counter() - start:.0f} s")
    return {"episodes": sizes.demos + sizes.rollouts}


# ============================================================================ timing the pages
def _session(page: str) -> Any:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP_FILE, default_timeout=120)
    at.session_state["nav_page"] = page
    if page == "trimming":
        at.session_state["tr_base"] = "bench/round0_rollouts"  # the 10,000-episode version
    return at


def _run(at: Any) -> None:
    at.run()
    if at.exception:
        raise RuntimeError(f"the page raised: {[e.value for e in at.exception]}")
    errors = [e.value for e in at.error]
    if errors:
        raise RuntimeError(f"the page shows errors: {errors}")


def time_pages(location: Path, sizes: Sizes, profile_dir: Path | None = None,
               log: Callable[[str], Any] = print) -> dict[str, dict[str, list[float]]]:
    """{page: {situation: [seconds, ...]}} for the three situations of the module docstring."""
    import streamlit as st

    import sime_data

    os.environ["SIME_STORE"] = str(location)
    os.environ["SIME_APP_RENDER"] = "0"
    writer = sime_data.open_store(location)
    demo_ids = writer.version("bench/demos").episode_ids
    counter = iter(range(10**6))
    run_id = time.strftime("%Y%m%d%H%M%S")
    out: dict[str, dict[str, list[float]]] = {}
    for page in PAGES:
        holder: dict[str, Any] = {}

        def fresh() -> None:
            st.cache_data.clear()
            st.cache_resource.clear()
            holder["at"] = _session(page)

        def saved() -> None:
            writer.create_version(f"bench/other_session_{run_id}_{next(counter)}", demo_ids[:2],
                                  message="another session")
            holder["at"] = _session(page)

        with profiled(profile_dir is not None, None if profile_dir is None else profile_dir / f"{page}.txt"):
            first = time_calls(lambda: _run(holder["at"]), repeat=sizes.reps, warmup=sizes.warmup, setup=fresh)
            after = time_calls(lambda: _run(holder["at"]), repeat=sizes.reps, warmup=sizes.warmup, setup=saved)
            _run(holder["at"])
            rerun = time_calls(lambda: _run(holder["at"]), repeat=sizes.reps, warmup=sizes.warmup)
        out[page] = {"first view": first, "after a save": after, "rerun": rerun}
        log(f"{page:10s} first view {median(first):.3f} s, after a save {median(after):.3f} s, "
            f"rerun {median(rerun):.3f} s")
    return out


BARE_APP = """import altair as alt
import pandas as pd
import streamlit as st

st.title("Overview")
st.dataframe(pd.DataFrame({"a": range(10)}))
st.altair_chart(alt.Chart(pd.DataFrame({"a": range(10)})).mark_bar().encode(x="a:Q"))
st.write("Episodes by source")
"""


@contextlib.contextmanager
def serve(location: Path | None = None, script: Path | None = None, render: bool = False) -> Iterator[str]:
    """Run `sime-app` on `location` (or plain `streamlit run script`) on a free loopback port; yields its URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    if script is not None:
        cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
               "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    else:
        cmd = [sys.executable, "-m", "curation_app.cli", "--store", str(location), "--port", str(port),
               "--host", "127.0.0.1", "--headless"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
                            env=dict(os.environ, SIME_APP_RENDER="1" if render else "0"))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, proc)
        yield url
    finally:
        stop_server(proc)


def _drawn(page: Any, start: float) -> float:
    """Seconds from `start` until the script run is over and no element placeholder is left."""
    page.wait_for_timeout(50)
    page.locator("[data-testid='stStatusWidget']").wait_for(state="hidden")
    page.wait_for_function("document.querySelectorAll(\"[data-testid='stSkeleton']\").length === 0")
    return time.perf_counter() - start


def _first_loads(browser: Any, url: str, reps: int) -> list[float]:
    """Seconds to fully draw `url` in `reps` new browser contexts (nothing cached, like a new visitor)."""
    samples = []
    for _ in range(reps):
        context = browser.new_context(viewport={"width": 1400, "height": 1900})
        page = context.new_page()
        page.set_default_timeout(120_000)
        start = time.perf_counter()
        page.goto(url)
        page.get_by_text("Episodes by source").wait_for()
        samples.append(_drawn(page, start))
        context.close()
    return samples


def bare_streamlit_load(scratch: Path, reps: int) -> list[float]:
    """First-load seconds of a bare Streamlit app with one table and one chart: the framework's own cost."""
    from playwright.sync_api import sync_playwright

    script = scratch / "bare_streamlit_app.py"
    script.write_text(BARE_APP)
    with serve(script=script) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            _first_loads(browser, url, 1)  # server-side first run
            return _first_loads(browser, url, reps)
        finally:
            browser.close()


@contextlib.contextmanager
def app_in_browser(location: Path, *, width: int, height: int, timeout_ms: int,
                   render: bool = False) -> Iterator[tuple[str, Any, Any]]:
    """(url, browser, page): a fresh `sime-app` server on `location` and a headless Chromium page of that size."""
    from playwright.sync_api import sync_playwright

    with serve(location, render=render) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(timeout_ms)
            yield url, browser, page
        finally:
            browser.close()


def time_in_browser(location: Path, sizes: Sizes, log: Callable[[str], Any] = print) -> dict[str, list[float]]:
    """{figure: [seconds, ...]}: first load of the app and switching to each page, in headless Chromium."""
    out: dict[str, list[float]] = {}
    with app_in_browser(location, width=1400, height=1900, timeout_ms=120_000) as (url, browser, page):
        start = time.perf_counter()
        page.goto(f"{url}/?page=overview")
        page.get_by_text("Episodes by source").wait_for()
        out["app: first load in Chromium (fresh server)"] = [_drawn(page, start)]
        for rep in range(sizes.warmup + sizes.reps):
            for name, label in PAGE_LABELS.items():
                start = time.perf_counter()
                page.get_by_test_id("stRadioGroup").get_by_text(label, exact=True).click()
                page.wait_for_function(
                    f"[...document.querySelectorAll('h1')].some(h => h.innerText.startsWith({label!r}))")
                seconds = _drawn(page, start)
                if rep >= sizes.warmup:
                    out.setdefault(f"{name}: switch to it in Chromium", []).append(seconds)
        # another person opens the app: new browser context (nothing cached), server warm
        out["app: first load in a new browser (server running)"] = _first_loads(
            browser, f"{url}/?page=overview", sizes.reps)
    log("browser: " + ", ".join(f"{k} {median(v):.2f} s" for k, v in out.items()))
    return out


def browser_available() -> bool:
    """True when Chromium and playwright are installed."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return os.path.exists(CHROMIUM)


# ============================================================================ rendered playback
def build_render_store(location: Path, n_long: int, steps: int = RENDER_STEPS,
                       log: Callable[[str], Any] = print) -> None:
    """Lift episodes without camera frames (states only), recorded with the real simulator: one short
    warm-up episode and `n_long` episodes of `steps` steps, each from its own initial state."""
    import sime_data

    os.environ.setdefault("MUJOCO_GL", "egl")
    from sime_policy.envs import SimEnv

    start = time.perf_counter()
    store = sime_data.init_store(location)
    env = SimEnv("lift", seed=11)
    with store.writer(source="rollout", task="lift", model_xml=env.model_xml(), round=0) as w:
        for name, length in [("warmup", 30)] + [(f"long{i}", steps) for i in range(n_long)]:
            obs = env.reset()
            for t in range(length):
                action = env.eef_action(-1.0 if t < length // 2 else 1.0)
                action[:3] += 0.03 * np.array([np.sin(t / 25), np.cos(t / 31), -np.sin(t / 40)])
                w.add_step(obs={"robot0_eef_pos": obs["robot0_eef_pos"]}, action=action.astype(np.float32),
                           reward=0.0, done=t == length - 1, state=env.get_state())
                obs, *_ = env.step(action)
            w.finish(success=False, init_state_id=f"render-{name}", trial=0)
    env.close()
    log(f"recorded 1 + {n_long} Lift episodes ({steps} steps each) in {time.perf_counter() - start:.0f} s")


def _open_episode(page: Any, init_state: str) -> None:
    box = page.get_by_label("Initial state id contains", exact=True)
    box.fill(init_state)
    box.press("Enter")


def time_rendered_playback(scratch: Path, reps: int, log: Callable[[str], Any] = print) -> dict[str, list[float]]:
    """{figure: [seconds, ...]} of first frame, first playback and full clip for 400-step episodes."""

    import sime_data

    location = scratch / "render_store"
    build_render_store(location, reps, log=log)
    ids = sime_data.open_store(location).episodes().set_index("init_state_id")["episode_id"]
    caption = "agentview · frame 0 · rendered from state"
    out: dict[str, list[float]] = {}
    with app_in_browser(location, width=1280, height=2000, timeout_ms=300_000, render=True) as (url, _, page):
        start = time.perf_counter()
        page.goto(f"{url}/?page=browser")
        _open_episode(page, "render-warmup")
        page.get_by_text(caption).wait_for()
        out["rendered: first frame on a fresh server (render worker starting)"] = [time.perf_counter() - start]
        page.locator('.sime-player[data-frames="30"] video').wait_for()
        shown = "() => { const f = [...document.querySelectorAll('[data-testid=\"stImage\"]')].find(e => " \
                f"e.innerText.includes('{caption}')); return f ? f.querySelector('img').src : null; }}"
        for i in range(reps):
            before = page.evaluate(shown)
            start = time.perf_counter()
            _open_episode(page, f"render-long{i}")
            page.wait_for_function(f"(old) => {{ const s = ({shown})(); return s !== null && s !== old; }}",
                                   arg=before, polling=20)
            first_frame = time.perf_counter() - start
            player = f'.sime-player[data-key="br_player_{ids[f"render-long{i}"]}"]'
            page.wait_for_function(
                "(sel) => [...document.querySelectorAll('*')].some(el => el.shadowRoot && [...el.shadowRoot"
                ".querySelectorAll(sel + ' video')].some(v => v.readyState >= 2 && v.duration > 0))",
                arg=player, polling=100)
            first_video = time.perf_counter() - start
            page.locator(f'{player}[data-frames="{RENDER_STEPS}"] video').wait_for()
            full = time.perf_counter() - start
            out.setdefault("rendered: first frame", []).append(first_frame)
            out.setdefault("rendered: first video playback", []).append(first_video)
            out.setdefault(f"rendered: whole {RENDER_STEPS}-frame clip ready", []).append(full)
            log(f"long{i}: first frame {first_frame:.2f} s, video playable {first_video:.2f} s, "
                f"whole clip {full:.1f} s")
    return out


def render_available() -> bool:
    """True when the simulator, Chromium and playwright are installed."""
    from curation_app.render_worker import simulator_installed

    return simulator_installed() and browser_available()


def render_rows(timings: dict[str, list[float]]) -> list[Row]:
    """Rows of the rendered-playback figures, with their targets where the issue sets one."""
    targets = {"rendered: first frame": TARGET_FIRST_FRAME_S, "rendered: first video playback": TARGET_FIRST_VIDEO_S}
    whole = f"rendered: whole {RENDER_STEPS}-frame clip ready"
    rate = RENDER_STEPS / max(median(timings.get(whole, [1.0])), 1e-3)
    notes = {"rendered: first frame on a fresh server (render worker starting)":
             "one sample: the render worker imports robosuite and builds the scene once per server",
             whole: f"playback starts long before: the clip grows while the worker renders (about {rate:.0f} "
                    "frames/s here, one camera)"}
    return [Row(f"{figure} ({RENDER_STEPS}-step Lift episode from states)" if "fresh" not in figure else figure,
                median(samples), "s", target=targets.get(figure), samples=list(samples), note=notes.get(figure, ""))
            for figure, samples in timings.items()]


def make_rows(timings: dict[str, dict[str, list[float]]], n_episodes: int) -> list[Row]:
    """One row per page and situation, against the 2 s target."""
    rows = []
    for page, situations in timings.items():
        for situation, samples in situations.items():
            rows.append(Row(f"{page}: {situation} ({n_episodes:,} episodes)", median(samples), "s", target=TARGET_S,
                            samples=list(samples)))
    return rows


def run(sizes: Sizes, scratch: Path, profile_dir: Path | None = None, log: Callable[[str], Any] = print,
        store: Path | None = None, browser: bool = False, render: bool = False) -> list[Row]:
    """Build the store (or reuse `store` when it exists), time every page, return the rows."""
    import streamlit.logger

    streamlit.logger.set_log_level("error")
    location = store or scratch / "store"
    if store is not None and (store / "sime_store.json").exists():
        import sime_data

        n_episodes = len(sime_data.open_store(store).episodes(columns=["episode_id"]))
        log(f"reusing the store at {store} ({n_episodes:,} episodes)")
    else:
        n_episodes = build_store(location, sizes, log)["episodes"]
    rows = make_rows(time_pages(location, sizes, profile_dir, log), n_episodes)
    if browser:
        if browser_available():
            bare = median(bare_streamlit_load(scratch, sizes.reps))
            log(f"bare Streamlit app (one table, one chart): first load {bare:.2f} s")
            for figure, samples in time_in_browser(location, sizes, log).items():
                first_load = "first load" in figure
                note = ("one sample; one-off server start: Python imports, catalog load and the browser fetching "
                        "Streamlit's JavaScript" if "fresh server" in figure else "")
                rows.append(Row(f"{figure} ({n_episodes:,} episodes)", median(samples), "s", target=TARGET_S,
                                samples=samples, note=note, baseline=bare if first_load else None,
                                baseline_label="bare Streamlit app (1 table + 1 chart)" if first_load else ""))
        else:
            log(f"no Chromium at {CHROMIUM} or no playwright: browser timings skipped")
    if render:
        if render_available():
            rows.extend(render_rows(time_rendered_playback(scratch, max(1, min(sizes.reps, 3)), log)))
        else:
            log("no simulator, Chromium or playwright: rendered-playback timings skipped")
    return rows


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: build, time, print the table, write CSV and PNG."""
    parser = bench_arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--store", default=None, help="build the store here and keep it, or reuse it if it exists")
    parser.add_argument("--no-browser", action="store_true", help="skip the timings in headless Chromium")
    parser.add_argument("--no-render", action="store_true",
                        help="skip first frame / first playback of 400-step episodes rendered from states")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    out = output_dir(args.out, "sime-bench-app-")
    scratch = Path(tempfile.mkdtemp(prefix="sime-bench-app-store-"))
    try:
        rows = run(sizes, scratch, out / "profile" if args.profile else None,
                   store=Path(args.store) if args.store else None, browser=not args.no_browser,
                   render=not args.no_browser and not args.no_render)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    paths = report(rows, out, "bench_app", f"Curation app: page render time (target < {TARGET_S:g} s) and rendered "
                   f"playback (first frame < {TARGET_FIRST_FRAME_S:g} s, first video < {TARGET_FIRST_VIDEO_S:g} s); "
                   "medians")
    figure = new_figure(1, width_per_panel=9.0)
    if figure is not None:
        fig, axes = figure
        plot_ratios(axes[0], rows, title="page render time / 2 s target (< 1 passes)")
        paths["png"] = save_figure(fig, out / "bench_app.png")
    print(f"results in {out}")
    return 0


# ============================================================================ pytest: small store, correctness only
def test_pages_render_small(tmp_path: Path) -> None:
    """Every page renders on a small store in all three situations; the table has finite times and a target."""
    import io

    from rich.console import Console

    rows = run(TINY, tmp_path, log=lambda *_: None)
    assert len(rows) == len(PAGES) * 3
    assert all(np.isfinite(r.measured) and r.measured > 0 and r.target == TARGET_S for r in rows)
    console = Console(file=io.StringIO(), width=200)
    report(rows, tmp_path / "out", "bench_app", "app", console)
    assert "ratio" in console.file.getvalue() and (tmp_path / "out" / "bench_app.csv").exists()


if __name__ == "__main__":
    sys.exit(main())
