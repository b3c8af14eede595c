"""`sime-data sql`: hostile statements refused, timeout, row cap, Ctrl-C (a real SIGINT to a real process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sime_data
from conftest import write_episodes
from sime_data.cli import main
from sql_attacks import HOSTILE_SQL, SECRET_TEXT, files_below, plant_tmp_secret

RUNAWAY = "SELECT count(*) FROM range(100000000) a, range(100000000) b WHERE a.range + b.range = -1"


@pytest.fixture(scope="module")
def cli_store(tmp_path_factory: pytest.TempPathFactory) -> sime_data.Store:
    """6 episodes; shared by the tests here, which never change it."""
    store = sime_data.init_store(tmp_path_factory.mktemp("cli_sql") / "store")
    write_episodes(store, 6)
    return store


def _default_sigint() -> None:
    """In the child: Ctrl-C as in a terminal, even when the test run itself was started in the background
    (a non-interactive shell starts background jobs with SIGINT ignored, and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _sql_process(store: sime_data.Store, *args: str, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sime_data.cli", "-v", "sql", "--store", store.location, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                            env=dict(os.environ, PYTHONPATH=str(Path(sime_data.__file__).parents[1])),
                            preexec_fn=_default_sigint if os.name == "posix" else None)


def test_every_hostile_statement_is_refused_by_the_cli(cli_store, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    plant_tmp_secret(tmp_path)
    before, store_before = files_below(tmp_path), files_below(Path(cli_store.location))
    for statement in HOSTILE_SQL:
        assert main(["sql", "--store", cli_store.location, statement]) == 2, statement
        captured = capsys.readouterr()
        assert "read-only" in captured.err, (statement, captured.err)
        assert SECRET_TEXT.split()[1] not in captured.out + captured.err
    assert files_below(tmp_path) == before and files_below(Path(cli_store.location)) == store_before
    assert main(["sql", "--store", cli_store.location, "SELECT count(*) AS n FROM episodes", "--csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["n", "6"]


def test_cli_refuses_explain_analyze_in_a_real_process(cli_store, tmp_path):
    proc = _sql_process(cli_store, "EXPLAIN ANALYZE DROP VIEW episodes", cwd=tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "read-only" in err and "EXPLAIN ANALYZE" in err and "Traceback" not in err


def test_cli_timeout_and_row_cap_have_clear_messages(cli_store, capsys):
    start = time.monotonic()
    assert main(["sql", "--store", cli_store.location, "--timeout", "0.5", RUNAWAY]) == 2
    assert time.monotonic() - start < 15
    assert "longer than 0.5 s" in capsys.readouterr().err
    assert main(["sql", "--store", cli_store.location, "--max-result-rows", "100", "SELECT * FROM range(1000000000)"]) == 2
    err = capsys.readouterr().err
    assert "more than 100 rows" in err and "--max-result-rows" in err
    assert main(["sql", "--store", cli_store.location, "--max-result-rows", "100", "SELECT * FROM range(100)",
                 "--csv"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 101


@pytest.mark.skipif(os.name != "posix", reason="SIGINT delivery to a child process needs POSIX signals")
def test_ctrl_c_interrupts_a_running_query(cli_store, tmp_path):
    proc = _sql_process(cli_store, "--timeout", "600", RUNAWAY, cwd=tmp_path)
    try:
        first = []
        for line in proc.stderr:  # -v logs when the query starts running
            first.append(line)
            if "query running" in line:
                break
        assert proc.poll() is None, "".join(first)
        time.sleep(1.0)  # the cross join is well under way
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted (Ctrl-C)" in err and "Traceback" not in err
    assert took < 5, f"Ctrl-C took {took:.1f} s to stop the query"
