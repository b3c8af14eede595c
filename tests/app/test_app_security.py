"""App hardening through streamlit's AppTest and real `sime-app` processes: the SQL box refuses every hostile
statement, one session's SQL cannot change another session's selection, SQL limits, the access token, and
the server listens on loopback only unless told otherwise (with a warning)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import sime_data
from curation_app.auth import token_matches
from curation_app.cli import DEFAULT_HOST, build_command, exposure_warning, is_loopback
from sql_attacks import HOSTILE_SQL, REDEFINE_EPISODES, SECRET_TEXT, files_below, plant_tmp_secret

from app_testlib import (  # noqa: F401 (fixtures)
    APP_FILE,
    CHROMIUM,
    CHROMIUM_ARGS,
    SUCCESSES,
    TRIALS,
    _template_store,
    app_store,
    foreign_requests,
    free_port,
    need_browser,
    record_requests,
    open_page,
    serve_app,
)




def _run_sql(at: AppTest, query: str) -> None:
    at.text_area(key="ov_sql").set_value(query)
    next(b for b in at.button if b.label == "Run query").click().run()
    assert not at.exception, [e.value for e in at.exception]


@pytest.mark.slow  # 57 script reruns; still part of the default run
def test_sql_box_refuses_every_hostile_statement(app_store: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    plant_tmp_secret(tmp_path)
    before, store_before = files_below(tmp_path), files_below(app_store)
    at = open_page("overview")
    for statement in HOSTILE_SQL:
        _run_sql(at, statement)
        errors = [e.value for e in at.error]
        assert errors and errors[0].startswith("Refused:") and "read-only" in errors[0], (statement, errors)
        assert SECRET_TEXT.split()[1] not in "\n".join(errors)
    assert files_below(tmp_path) == before and files_below(app_store) == store_before
    _run_sql(at, "SELECT count(*) AS n, sum(success::INT) AS wins FROM episodes")
    assert at.dataframe[-1].value.to_dict("records") == [{"n": 28, "wins": 4 + sum(SUCCESSES)}]


def test_one_sessions_sql_cannot_corrupt_another_sessions_selection(app_store: Path) -> None:
    """Issue 12: session A redefined `episodes` (every success true) through the SQL box of the shared Store;
    session B then saved a "success" selection holding failed episodes."""
    a = open_page("overview")
    for attack in (f"EXPLAIN ANALYZE {REDEFINE_EPISODES}", REDEFINE_EPISODES):
        _run_sql(a, attack)
        assert a.error and a.error[0].value.startswith("Refused:")
    b = open_page("selection")
    b.radio(key="se_rule").set_value("success").run()
    name = b.text_input(key="se_name").value
    next(x for x in b.button if x.label == "Create selection version").click().run()
    assert b.success and f"Saved version '{name}'" in b.success[0].value
    rows = sime_data.open_store(app_store).episodes(version=name)
    assert len(rows) == sum(SUCCESSES) and rows["success"].all()
    assert len(rows) < len(SUCCESSES) * TRIALS  # the failures exist and were left out


@pytest.mark.filterwarnings("ignore::sime_data.errors.StoreWarning")  # expected: the sidebar names the file
def test_an_unreadable_version_file_is_named_and_the_rest_works(app_store: Path) -> None:
    bad = app_store / "versions" / "demos.version.parquet"
    bad.write_bytes(b"PAR1 half a file")
    at = open_page("versions")
    assert not at.exception
    assert any("versions/demos.version.parquet" in w.value for w in at.sidebar.warning)
    assert at.dataframe[0].value["name"].tolist() == ["round0/rollouts"]
    overview = open_page("overview")
    _run_sql(overview, "SELECT name FROM versions")
    assert overview.dataframe[-1].value["name"].tolist() == ["round0/rollouts"]


def test_sql_box_limits_have_clear_messages(app_store: Path, monkeypatch) -> None:
    monkeypatch.setenv("SIME_APP_SQL_MAX_ROWS", "5")
    monkeypatch.setenv("SIME_APP_SQL_TIMEOUT", "0.5")
    at = open_page("overview")
    assert any("at most 5 rows" in c.value and "0.5 s" in c.value for c in at.caption)
    _run_sql(at, "SELECT * FROM episodes")
    assert at.error and at.error[0].value.startswith("Stopped:") and "more than 5 rows" in at.error[0].value
    _run_sql(at, "SELECT count(*) FROM range(100000000) a, range(100000000) b WHERE a.range + b.range = -1")
    assert at.error and "longer than 0.5 s" in at.error[0].value
    _run_sql(at, "SELECT episode_id FROM episodes LIMIT 5")
    assert not at.error and len(at.dataframe[-1].value) == 5


def test_access_token_gates_every_page(app_store: Path, monkeypatch) -> None:
    monkeypatch.setenv("SIME_APP_TOKEN", "correct horse")
    at = open_page("overview")
    assert not at.metric and not at.dataframe and not at.radio  # nothing of the store is shown
    assert at.text_input(key="auth_token").proto.type == at.text_input(key="auth_token").proto.PASSWORD
    at.text_input(key="auth_token").set_value("wrong horse")
    next(b for b in at.button if b.label == "Sign in").click().run()
    assert "Wrong access token" in at.error[0].value and not at.metric
    at.text_input(key="auth_token").set_value("correct horse")
    next(b for b in at.button if b.label == "Sign in").click().run()
    assert not at.exception and {m.label: m.value for m in at.metric}["Episodes"] == "28"
    other = open_page("overview")  # another browser session must sign in itself
    assert not other.metric and other.text_input(key="auth_token")


def test_token_comparison() -> None:
    assert token_matches("s3cret", "s3cret") and token_matches(" s3cret\n", "s3cret")
    assert not token_matches("s3cre", "s3cret") and not token_matches("", "s3cret")
    assert not token_matches("s3crët", "s3cret")


def test_server_binds_loopback_by_default_and_warns_when_exposed() -> None:
    cmd = build_command("/data/s", port=8555)
    assert cmd[cmd.index("--server.address") + 1] == DEFAULT_HOST == "127.0.0.1"
    assert cmd[cmd.index("--browser.gatherUsageStats") + 1] == "false"
    assert cmd[cmd.index("--server.showEmailPrompt") + 1] == "false"
    assert all(is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "127.0.0.2"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.5", "example.org"))
    assert exposure_warning("127.0.0.1", 8501, has_token=False) is None
    assert "WITHOUT an access token" in exposure_warning("0.0.0.0", 8501, has_token=False)
    assert "access token" in exposure_warning("::", None, has_token=True)


def test_sime_app_prints_the_warning_when_told_to_listen_everywhere(app_store: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SIME_APP_TOKEN"}
    proc = subprocess.Popen([sys.executable, "-m", "curation_app.cli", "--store", str(app_store), "--host", "0.0.0.0",
                             "--port", str(free_port()), "--headless"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()  # printed before the server starts
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert "warning" in line and "0.0.0.0" in line and "WITHOUT an access token" in line and "--token" in line


#: What the browser test types into the SQL box, with a piece of each refusal (the whole list runs through
#: AppTest above).
BROWSER_ATTACKS = {
    f"EXPLAIN ANALYZE {REDEFINE_EPISODES}": "EXPLAIN ANALYZE (which runs the statement)",
    REDEFINE_EPISODES: "CREATE statements are refused",
    "SELECT * FROM '/etc/passwd'": "cannot read files or URLs ('/etc/passwd')",
    "SELECT * FROM read_text('.tmp/secret.csv')": ".tmp/secret.csv",
    "COPY episodes TO 'out.csv'": "COPY statements are refused",
    "SELECT 1; DROP VIEW episodes": "found 2 statements",
}


@pytest.mark.slow  # a real server and browser; still part of the default run
def test_browser_sign_in_sql_refusals_and_no_outside_requests(_template_store: Path, tmp_path: Path) -> None:
    """The real server behind a token, driven from Chromium: sign in, hostile SQL refused, nothing fetched
    from anywhere but the app server."""
    need_browser()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # a loaded CI machine redraws slowly
    store = tmp_path / "store"
    shutil.copytree(_template_store, store)
    plant_tmp_secret(tmp_path)
    env = dict(os.environ, SIME_APP_TOKEN="open sesame")
    with serve_app(store, tmp_path / "server.log", env=env, cwd=tmp_path) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.set_default_timeout(30_000)
            requests = record_requests(page)
            page.goto(f"{url}/?page=overview")
            field = page.get_by_label("Access token", exact=True)
            expect(field).to_be_visible()
            expect(page.get_by_text("Episodes by source, task and round")).to_have_count(0)
            field.fill("not it")
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_text("Wrong access token.")).to_be_visible()
            expect(page.get_by_text("Episodes by source, task and round")).to_have_count(0)
            page.get_by_label("Access token", exact=True).fill("open sesame")
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_text("Episodes by source, task and round")).to_be_visible()
            box = page.get_by_label("Query", exact=True)
            for attack, says in BROWSER_ATTACKS.items():
                box.fill(attack)
                page.get_by_role("button", name="Run query").click()
                refusal = page.get_by_text("Refused:", exact=False).filter(has_text=says)
                expect(refusal).to_be_visible()
                assert "read-only" in refusal.inner_text() and SECRET_TEXT.split()[1] not in page.content()
            box.fill("SELECT count(*) FILTER (WHERE success) AS wins_after_attacks FROM episodes")
            page.get_by_role("button", name="Run query").click()
            expect(page.get_by_text("Refused:", exact=False)).to_have_count(0)
            expect(page.get_by_text("1 rows")).to_be_visible()
            page.get_by_text("Selection", exact=True).click()
            expect(page.get_by_text("What each threshold keeps")).to_be_visible()
            page.wait_for_timeout(1500)
        finally:
            browser.close()
    assert foreign_requests(requests, url) == [], "the page contacted something other than the app server"
    assert not (tmp_path / "out.csv").exists() and not (store / "out.csv").exists()
    assert sime_data.open_store(store).sql("SELECT count(*) FILTER (WHERE success) AS n FROM episodes")["n"][0] \
        == 4 + sum(SUCCESSES)
