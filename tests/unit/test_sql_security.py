"""Read-only SQL through the API (store.sql): hostile statements, isolation between callers, limits.

Real stores on disk, real DuckDB; the CLI and the app run the same list (tests/integration/test_sql_cli.py,
tests/app/test_app_security.py).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import sime_data
from conftest import write_episodes
from sime_data.errors import SQLResultTooLargeError, SQLTimeoutError
from sime_data.selection import create_selection_version
from sql_attacks import HOSTILE_SQL, REDEFINE_EPISODES, SECRET_TEXT, files_below, plant_tmp_secret

#: Runs for minutes unless stopped (a cross join the optimizer cannot shortcut).
RUNAWAY = "SELECT count(*) FROM range(100000000) a, range(100000000) b WHERE a.range + b.range = -1"


def _build_rollouts(location: Path) -> sime_data.Store:
    store = sime_data.init_store(location)
    store.create_version("rollouts", write_episodes(store, 10))
    return store


@pytest.fixture
def rollouts(tmp_path: Path) -> sime_data.Store:
    """10 rollouts (5 successes, 5 failures) saved as version `rollouts`."""
    return _build_rollouts(tmp_path / "store")


@pytest.fixture(scope="module")
def shared_rollouts(tmp_path_factory: pytest.TempPathFactory) -> sime_data.Store:
    """Like `rollouts`, one store for every hostile statement (each test checks nothing in it changed)."""
    return _build_rollouts(tmp_path_factory.mktemp("hostile") / "store")


@pytest.mark.parametrize("statement", HOSTILE_SQL)
def test_hostile_sql_is_refused_and_changes_nothing(shared_rollouts, statement, tmp_path, monkeypatch):
    store = shared_rollouts
    monkeypatch.chdir(tmp_path)
    plant_tmp_secret(tmp_path)
    before, store_before = files_below(tmp_path), files_below(Path(store.location))
    with pytest.raises(sime_data.ReadOnlySQLError, match="read-only") as refused:
        store.sql(statement)
    assert SECRET_TEXT.split()[1] not in str(refused.value)
    assert files_below(tmp_path) == before  # nothing written in the cwd or ./.tmp/
    assert files_below(Path(store.location)) == store_before
    assert store.sql("SELECT count(*) AS n, sum(success::INT) AS wins FROM episodes").iloc[0].tolist() == [10, 5]
    assert store.sql("SELECT count(*) AS n FROM version_episodes WHERE version = 'rollouts'")["n"][0] == 10


def test_plain_queries_and_explain_still_run(rollouts):
    assert len(rollouts.sql("EXPLAIN SELECT * FROM episodes WHERE success")) == 1
    assert set(rollouts.sql("DESCRIBE episodes")["column_name"]) >= {"episode_id", "success"}
    assert rollouts.sql("WITH w AS (FROM episodes WHERE success) SELECT count(*) AS n FROM w")["n"][0] == 5
    assert rollouts.sql("SELECT 1 AS a;")["a"][0] == 1


def test_one_callers_sql_cannot_change_what_another_selects(rollouts):
    """Issue 12: session A redefined `episodes` (all successes); session B's selection then kept failures."""
    shared = rollouts  # the app shares one Store per server between all sessions
    for attack in (f"EXPLAIN ANALYZE {REDEFINE_EPISODES}", REDEFINE_EPISODES,
                   "EXPLAIN ANALYZE CREATE MACRO count_star() AS 99"):
        with pytest.raises(sime_data.ReadOnlySQLError):
            shared.sql(attack)  # session A
    version = create_selection_version(shared, "wins", "rollouts", "success", None)  # session B
    rows = shared.episodes(version="wins")
    assert len(rows) == 5 and rows["success"].all()
    assert shared.sql("SELECT count(*) AS n FROM episodes WHERE success")["n"][0] == 5
    assert version.stats["success_rate"] == 1.0


def test_internal_queries_ignore_earlier_user_sql(rollouts):
    rollouts.sql("SELECT setseed(0.5)")  # per-query state dies with the query's sandbox
    rollouts.sql("SELECT * FROM episodes ORDER BY random() LIMIT 3")
    assert len(rollouts.episodes("success", version="rollouts")) == 5


def test_timeout_stops_a_runaway_query(rollouts):
    start = time.monotonic()
    with pytest.raises(SQLTimeoutError, match="longer than 0.5 s"):
        rollouts.sql(RUNAWAY, timeout_s=0.5)
    assert time.monotonic() - start < 10
    assert rollouts.sql("SELECT count(*) AS n FROM episodes")["n"][0] == 10


def test_row_cap_refuses_huge_results_without_building_them(rollouts):
    with pytest.raises(SQLResultTooLargeError, match="more than 1,000 rows"):
        rollouts.sql("SELECT * FROM range(1000000000000)", max_rows=1000)
    assert len(rollouts.sql("SELECT * FROM range(1000)", max_rows=1000)) == 1000  # exactly at the cap is fine
    assert len(rollouts.sql("SELECT * FROM range(20)", max_rows=None)) == 20
    with pytest.raises(ValueError, match="max_rows"):
        rollouts.sql("SELECT 1", max_rows=-1)


def test_a_runaway_query_does_not_block_other_readers(rollouts):
    slow_error: list[BaseException] = []
    slow_ended = threading.Event()

    def runaway() -> None:
        try:
            rollouts.sql(RUNAWAY, timeout_s=6)
        except BaseException as exc:  # noqa: BLE001 - checked below
            slow_error.append(exc)
        finally:
            slow_ended.set()

    thread = threading.Thread(target=runaway)
    thread.start()
    try:
        time.sleep(0.5)  # the runaway is running
        start = time.monotonic()
        assert rollouts.sql("SELECT count(*) AS n FROM episodes")["n"][0] == 10
        assert len(rollouts.episodes(version="rollouts")) == 10
        took = time.monotonic() - start
        assert not slow_ended.is_set(), "the runaway ended before the second reader was tested"
        assert took < 5, f"a second reader waited {took:.1f} s behind a runaway query"
    finally:
        thread.join(timeout=60)
    assert slow_error and isinstance(slow_error[0], SQLTimeoutError)


def test_ctrl_c_in_the_calling_thread_stops_the_query(rollouts):
    """A KeyboardInterrupt (what Ctrl-C raises) while waiting interrupts DuckDB and propagates at once."""
    import _thread
    import signal

    # as in a terminal, even when the test run was started in the background with SIGINT ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.5, _thread.interrupt_main)
    start = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            rollouts.sql(RUNAWAY, timeout_s=60)
    finally:
        timer.cancel()  # never let a late interrupt hit the test run itself
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - start < 10
    assert rollouts.sql("SELECT count(*) AS n FROM episodes")["n"][0] == 10
