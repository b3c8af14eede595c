"""Page logic through streamlit's AppTest on a real on-disk store (no mocks)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import sime_data

from app_testlib import APP_FILE, LENGTH, TRIALS, _template_store, app_store, open_page  # noqa: F401 (fixtures)




def button(at: AppTest, label: str):
    """The button (incl. form submit buttons) with this label."""
    found = [b for b in at.button if b.label == label]
    assert found, f"no button {label!r}; have {[b.label for b in at.button]}"
    return found[0]


def episode_picker(at: AppTest):
    """The trimming page's episode picker (its widget key changes whenever N/P/K/D move on)."""
    return next(s for s in at.selectbox if s.label.startswith("Episode ("))


def texts(at: AppTest) -> str:
    """All markdown, captions, errors and successes of the page as one string."""
    parts = [e.value for e in [*at.markdown, *at.caption, *at.error, *at.success, *at.info, *at.warning]]
    return "\n".join(str(p) for p in parts)


@pytest.mark.parametrize("page", ["overview", "browser", "trimming", "selection", "versions"])
def test_every_page_renders(app_store: Path, page: str) -> None:
    at = open_page(page)
    assert not at.error, [e.value for e in at.error]


def test_no_store_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SIME_STORE", raising=False)
    at = AppTest.from_file(APP_FILE, default_timeout=60).run()
    assert "No store given" in at.error[0].value
    monkeypatch.setenv("SIME_STORE", str(tmp_path / "missing"))
    at = AppTest.from_file(APP_FILE, default_timeout=60).run()
    assert "no SIME store" in at.error[0].value


def test_overview_counts_and_sql(app_store: Path) -> None:
    at = open_page("overview")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Episodes"] == "28" and metrics["Frames"] == f"{28 * LENGTH:,}" and metrics["Versions"] == "2"
    counts = at.dataframe[0].value
    assert set(counts["source"]) == {"demo", "rollout"} and counts["episodes"].sum() == 28
    # good query -> table + CSV download
    at.text_area(key="ov_sql").set_value("SELECT source, count(*) AS n FROM episodes GROUP BY 1 ORDER BY 1")
    button(at, "Run query").click().run()
    result = at.dataframe[-1].value
    assert result.to_dict("records") == [{"source": "demo", "n": 4}, {"source": "rollout", "n": 24}]
    assert any(getattr(b, "label", "") == "Download CSV" for b in at.get("download_button"))
    # bad SQL and write attempts -> clear messages, nothing crashes
    at.text_area(key="ov_sql").set_value("SELECT nope FROM episodes")
    button(at, "Run query").click().run()
    assert not at.exception and "query failed" in at.error[0].value and "nope" in at.error[0].value
    at.text_area(key="ov_sql").set_value("DROP VIEW episodes")
    button(at, "Run query").click().run()
    assert "Refused" in at.error[0].value
    assert len(sime_data.open_store(app_store).episodes()) == 28


def test_browser_filters_and_frames(app_store: Path) -> None:
    at = open_page("browser")
    assert "28 of 28 episodes" in texts(at)
    at.selectbox(key="br_version").set_value("round0/rollouts").run()
    at.selectbox(key="br_outcome").set_value("success").run()
    assert f"{sum((0, 1, 2, 3, 4, 4))} of 28 episodes" in texts(at)
    at.text_input(key="br_init_state").set_value("state1").run()
    assert "1 of 28 episodes" in texts(at)
    eid = at.selectbox(key="br_episode").value
    row = sime_data.open_store(app_store).episode(eid)
    assert row["init_state_id"] == "state1" and row["success"]
    assert "exploration **sime**" in texts(at) and "τ2 1" in texts(at)
    at.slider(key=f"br_frame_{eid}").set_value(5).run()
    captions = [c for image in at.image for c in image.captions]
    assert "agentview · frame 5" in captions and any(c.startswith("Filmstrip (agentview_image)") for c in captions)
    assert len(at.get("vega_lite_chart")) >= 2  # actions + observations, current frame marked
    label = at.selectbox(key="br_episode").format_func(eid)
    assert label == f"{eid} · success · {LENGTH} frames · round 0/sime"


def test_missing_values_read_one_way(app_store: Path) -> None:
    """Issue 13: nulls showed as nan / None / - ; the app writes them as — everywhere."""
    at = open_page("overview")
    counts = at.dataframe[0].value
    assert counts.loc[counts["source"] == "demo", "round"].tolist() == ["—"]
    at.text_area(key="ov_sql").set_value("SELECT NULL::DOUBLE AS x, NULL AS y, 1.5 AS z")
    button(at, "Run query").click().run()
    assert at.dataframe[-1].value.to_dict("records") == [{"x": "—", "y": "—", "z": 1.5}]
    browser = open_page("browser")
    table = browser.dataframe[0].value
    assert set(table.loc[table["source"] == "demo", "branch"]) == {"—"}
    assert "None" not in texts(browser) and "nan" not in texts(browser).split()


def test_sql_errors_in_monospace(app_store: Path) -> None:
    at = open_page("overview")
    at.text_area(key="ov_sql").set_value("SELECT episode_id,, success FROM episodes")
    button(at, "Run query").click().run()
    error = at.error[0].value
    block = error.split("```text\n", 1)[1].split("\n```", 1)[0].splitlines()  # rendered as a <pre> block
    line = next(b for b in block if b.startswith("LINE 1: "))
    marker = block[block.index(line) + 1]
    assert line[marker.index("^")] == ","  # the ^ sits under the stray comma in a monospace font


def test_browser_without_images_says_why(app_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = sime_data.init_store(tmp_path / "plain")
    with store.writer(source="rollout", task="toy_task") as w:
        for t in range(5):
            w.add_step(obs={"pos": [float(t)]}, action=[0.0], reward=0.0, done=False, state=[float(t)])
        w.finish(success=False, init_state_id="s", trial=0)
    monkeypatch.setenv("SIME_STORE", str(tmp_path / "plain"))
    at = open_page("browser")
    assert "rendering is off" in texts(at)
    monkeypatch.setenv("SIME_APP_RENDER", "1")
    at = open_page("browser")
    assert "no simulator" in texts(at) or "rendering from states failed" in texts(at)


def test_trim_queue_and_save(app_store: Path) -> None:
    store = sime_data.open_store(app_store)
    at = open_page("trimming")
    at.selectbox(key="tr_base").set_value("round0/rollouts").run()
    first = episode_picker(at).value
    ids = store.version("round0/rollouts").episode_ids
    assert first == ids[0]
    at.slider(key=f"tr_window::round0/rollouts::{first}").set_value((2, 12)).run()  # keep frames 2..12
    at.slider(key=f"tr_cut::round0/rollouts::{first}::2-13").set_value((5, 6)).run()  # inclusive: frames 5 and 6
    at.button(key="tr_remove").click().run()
    assert "keeps 9 of 16 frames" in texts(at)
    at.button(key="tr_next").click().run()
    assert episode_picker(at).value == ids[1]
    at.button(key="tr_drop").click().run()  # drop ids[1], moves on to ids[2]
    assert episode_picker(at).value == ids[2]
    at.button(key="tr_prev").click().run()
    assert "dropped" in texts(at)
    at.button(key="tr_keep").click().run()  # keep it after all
    at.button(key="tr_prev").click().run()
    at.button(key="tr_drop").click().run()
    queued = at.dataframe[-1].value
    assert queued["action"].tolist() == ["trim", "drop"]
    at.text_input(key="tr_name").set_value("round0/rollouts_clean")
    at.text_input(key="tr_message").set_value("cut idle frames")
    button(at, "Save version").click().run()
    assert "Saved version 'round0/rollouts_clean'" in at.success[0].value
    version = store.version("round0/rollouts_clean")
    assert version.parents == ["round0/rollouts"] and version.message == "cut idle frames"
    ranges = version.ranges()
    assert ranges[first] == [(2, 5), (7, 13)] and ids[1] not in ranges and len(ranges) == TRIALS * 6 - 1
    assert store.version("round0/rollouts").n_frames == 24 * LENGTH  # the base is untouched
    assert at.selectbox(key="tr_base").options.count("round0/rollouts_clean") == 1  # appears at once
    assert "Nothing queued yet" in texts(at)


def test_two_sessions_same_name(app_store: Path) -> None:
    """Two sessions save under one name: the second gets a clear name-taken message and keeps its work."""
    sessions = []
    for lo in (1, 3):
        at = open_page("trimming")
        at.selectbox(key="tr_base").set_value("demos").run()
        eid = episode_picker(at).value
        at.slider(key=f"tr_window::demos::{eid}").set_value((lo, 10)).run()
        at.text_input(key="tr_name").set_value("demos/trimmed")
        sessions.append((at, eid))
    (a, eid), (b, _) = sessions
    button(a, "Save version").click().run()
    button(b, "Save version").click().run()
    assert "Saved version" in a.success[0].value
    assert "is taken" in b.error[0].value and "demos/trimmed-2" in b.error[0].value
    assert b.dataframe[-1].value["action"].tolist() == ["trim"]  # nothing lost
    b.text_input(key="tr_name").set_value("demos/trimmed-2")
    button(b, "Save version").click().run()
    store = sime_data.open_store(app_store)
    assert store.version("demos/trimmed").ranges()[eid] == [(1, 11)]
    assert store.version("demos/trimmed-2").ranges()[eid] == [(3, 11)]


def test_selection_preview_and_create(app_store: Path) -> None:
    at = open_page("selection")
    assert at.selectbox(key="se_source").value == "round0/rollouts"
    preview = at.dataframe[0].value.set_index("rule")
    # success rates per state: 0, .25, .5, .75, 1, 1 -> successes kept below each threshold
    assert preview.loc["sr_lss_0.3", "episodes"] == 1 and preview.loc["sr_lss_0.5", "episodes"] == 1
    assert preview.loc["sr_lss_0.9", "episodes"] == 1 + 2 + 3 and preview.loc["success", "episodes"] == 14
    assert preview.loc["sr_lss_0.9", "frames"] == 6 * LENGTH and preview.loc["sr_lss_0.5", "chosen"]
    at.slider(key="se_threshold").set_value(0.6).run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Episodes kept"] == "3" and metrics["States kept"] == "2"
    assert "sr_lss_0.6" in at.dataframe[0].value["rule"].tolist()
    at.selectbox(key="se_base").set_value("demos").run()
    assert at.text_input(key="se_name").value == "round0/rollouts_sr_lss_0.6_train"
    button(at, "Create selection version").click().run()
    assert "Saved version 'round0/rollouts_sr_lss_0.6_train'" in at.success[0].value
    version = sime_data.open_store(app_store).version("round0/rollouts_sr_lss_0.6_train")
    assert version.parents == ["demos", "round0/rollouts"] and len(version.episode_ids) == 4 + 3
    assert version.rule["threshold"] == 0.6 and version.rule["base"] == "demos"
    # same name again from this session: clear message, nothing written
    at.text_input(key="se_name").set_value("round0/rollouts_sr_lss_0.6_train")
    button(at, "Create selection version").click().run()
    assert "is taken" in at.error[0].value


def test_versions_page_lineage_and_diff(app_store: Path) -> None:
    store = sime_data.open_store(app_store)
    ids = store.version("demos").episode_ids
    store.create_version_from_trims("demos/cut", "demos", {ids[0]: [(0, 8)]}, drop=[ids[1]], message="by hand")
    at = open_page("versions")  # a version made outside the app shows up
    listed = at.dataframe[0].value
    assert listed["name"].tolist()[0] == "demos/cut" and listed["kind"].tolist()[0] == "trim"
    assert at.get("graphviz_chart") and '"demos" -> "demos/cut"' in at.get("graphviz_chart")[0].proto.spec
    # by default the newest version is compared with its parent (issue 13: it was the two newest)
    assert at.selectbox(key="vs_b").value == "demos/cut" and at.selectbox(key="vs_a::demos/cut").value == "demos"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Episodes removed"] == "1" and metrics["Episodes re-trimmed"] == "1"
    assert metrics["Frames added"] == "0" and metrics["Frames removed"] == f"-{LENGTH + LENGTH - 8}"
    at.selectbox(key="vs_b").set_value("round0/rollouts").run()
    assert at.selectbox(key="vs_a::round0/rollouts").value == "demos"
    at.selectbox(key="vs_b").set_value("demos").run()  # a root: no parent, nothing compared until one is picked
    assert at.selectbox(key="vs_a::demos").value is None and "has no parent" in texts(at)
    at.selectbox(key="vs_focus").set_value("demos/cut").run()
    assert "by hand" in at.code[0].value


def test_round0_eval_collect_explore_shown_apart(app_store: Path) -> None:
    """Issue 13: round 0 was one bar 'main' mixing rollouts with and without exploration."""
    store = sime_data.open_store(app_store)
    rows = store.episodes(version="round0/rollouts")
    by_state = {s: rows[rows["init_state_id"] == s]["episode_id"].tolist() for s in sorted(set(rows["init_state_id"]))}
    prefix = "lift/sime/t/seed1/round0"
    store.create_version(f"{prefix}/eval", by_state["state0"] + by_state["state1"])  # 1 of 8 succeed
    store.create_version(f"{prefix}/explore", by_state["state4"])  # 4 of 4 succeed
    at = open_page("overview")
    rates = next(d.value for d in at.dataframe if "rollouts" in d.value.columns).set_index("rollouts")
    assert rates.loc["eval", "episodes"] == 8 and rates.loc["eval", "success rate"] == 1 / 8
    assert rates.loc["explore", "episodes"] == 4 and rates.loc["explore", "success rate"] == 1.0
    assert rates.loc["sime", "episodes"] == 24 - 12  # the rest: in no run version, shown by branch
    assert "main" not in rates.index and "held-out evaluation states" in texts(at)
