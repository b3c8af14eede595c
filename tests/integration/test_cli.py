"""The `sime-data` command line, run as a real subprocess and through its entry function."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys


import pytest

import sime_data
from conftest import write_episodes
from sime_data.cli import main


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `sime-data` in a subprocess (the installed console script's module)."""
    return subprocess.run([sys.executable, "-m", "sime_data.cli", *args], capture_output=True, text=True, env=env)


def test_init_info_sql_end_to_end(tmp_path):
    location = str(tmp_path / "s")
    assert run_cli("init", "--store", location).returncode == 0
    store = sime_data.open_store(location)
    write_episodes(store, 4)
    info = run_cli("info", "--store", location, "--json")
    assert info.returncode == 0, info.stderr
    summary = json.loads(info.stdout)
    assert summary["n_episodes"] == 4 and summary["n_frames"] == 40
    assert {k["key"] for k in summary["keys"]} >= {"actions", "obs/eef_pos"}
    assert summary["by_group"][0]["success_rate"] == 0.5
    table = run_cli("info", "--store", location)
    assert "episodes 4" in table.stdout and "obs/eef_pos" in table.stdout
    csv = run_cli("sql", "--store", location, "SELECT trial, count(*) AS n FROM episodes GROUP BY 1 ORDER BY 1", "--csv")
    assert csv.stdout.splitlines() == ["trial,n", "0,2", "1,2"]
    as_json = run_cli("sql", "--store", location, "SELECT count(*) AS n FROM episodes", "--json")
    assert json.loads(as_json.stdout) == [{"n": 4}]


def test_bad_sql_and_missing_store_exit_2_with_message(tmp_path, filled_store):
    refused = run_cli("sql", "--store", filled_store.location, "DROP VIEW episodes")
    assert refused.returncode == 2 and "read-only" in refused.stderr
    broken = run_cli("sql", "--store", filled_store.location, "SELEC 1")
    assert broken.returncode == 2 and "syntax" in broken.stderr
    missing = run_cli("info", "--store", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "sime-data init" in missing.stderr
    assert "Traceback" not in refused.stderr + broken.stderr + missing.stderr


def test_versions_commands(filled_store, capsys):
    loc = filled_store.location
    assert main(["versions", "--store", loc, "create", "wins", "--from-query",
                 "SELECT episode_id FROM episodes WHERE success", "-m", "successes"]) == 0
    ids = filled_store.episodes()["episode_id"].tolist()
    assert main(["versions", "--store", loc, "create", "two", "--episodes", ids[0], ids[1]]) == 0
    capsys.readouterr()
    assert main(["versions", "--store", loc, "list"]) == 0
    listing = capsys.readouterr().out
    assert "wins" in listing and "two" in listing
    assert main(["versions", "--store", loc, "show", "wins"]) == 0
    assert "successes" in capsys.readouterr().out
    assert main(["versions", "--store", loc, "diff", "two", "wins"]) == 0
    assert "+2 episodes, -1 episodes" in capsys.readouterr().out
    assert main(["versions", "--store", loc, "create", "wins", "--episodes", ids[0]]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["versions", "--store", loc, "show", "nope"]) == 2
    assert "unknown version" in capsys.readouterr().err


def test_store_from_environment_and_compact(filled_store, monkeypatch, capsys):
    write_episodes(filled_store, 2, start_index=6)
    env_result = run_cli("compact", env={"SIME_STORE": filled_store.location, "PATH": ""})
    assert env_result.returncode == 0, env_result.stderr
    assert "compacted 8" in env_result.stdout
    assert len(sime_data.open_store(filled_store.location).episodes()) == 8


def test_quickstart_builds_versions(tmp_path):
    location = str(tmp_path / "example")
    result = run_cli("quickstart", "--store", location)
    assert result.returncode == 0, result.stderr
    store = sime_data.open_store(location)
    names = set(store.versions()["name"])
    assert {"toy/demos", "toy/round0_rollouts"} <= names
    rollouts = store.episodes(version="toy/round0_rollouts")
    assert len(rollouts) == 100 and 0 < rollouts["success"].mean() < 1
    if "toy/round0_selected" in names:
        selected = store.episodes(version="toy/round0_selected")
        rates = rollouts.groupby("init_state_id")["success"].mean()
        assert selected["success"].all()
        assert (rates.loc[selected["init_state_id"]] < 0.5).all()
        train = store.version("toy/round1_train")
        assert set(train.episode_ids) == set(store.version("toy/demos").episode_ids) | set(selected["episode_id"])
    again = run_cli("quickstart", "--store", location)  # rerun reuses the store
    assert again.returncode == 0 and len(sime_data.open_store(location).episodes()) == 110


def test_robomimic_import_export_commands(store, tmp_path):
    from test_robomimic import assert_same_file, make_robomimic_file

    source = tmp_path / "lift_ph.hdf5"
    make_robomimic_file(source)
    imported = run_cli("import-robomimic", "--store", store.location, str(source), "-q")
    assert imported.returncode == 0, imported.stderr
    assert "versions: lift_ph" in imported.stdout
    out = tmp_path / "export.hdf5"
    exported = run_cli("export-robomimic", "--store", store.location, "lift_ph", str(out), "-q")
    assert exported.returncode == 0, exported.stderr
    assert_same_file(source, out)
    again = run_cli("export-robomimic", "--store", store.location, "lift_ph", str(out), "-q")
    assert again.returncode == 2 and "exists" in again.stderr
    bad = tmp_path / "bad.hdf5"
    bad.write_bytes(b"not an hdf5 file at all")
    refused = run_cli("import-robomimic", "--store", store.location, str(bad), "-q")
    assert refused.returncode == 2 and "bad.hdf5" in refused.stderr and "Traceback" not in refused.stderr


def test_verify_and_gc_commands(filled_store):
    loc = filled_store.location
    ok = run_cli("verify", "--store", loc, "-q")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # a crashed writer: frames written, episode never finished, lock of a dead process
    crashed = run_cli_python(
        "import os, numpy as np, sime_data\n"
        f"s = sime_data.open_store({loc!r})\n"
        "w = s.writer(source='rollout', task='lift')\n"
        "[w.add_step(obs={'x': np.zeros(600)}, action=np.zeros(2)) for _ in range(100)]\n"
        "w._flush(final=True)\n"
        "os._exit(0)\n")
    assert crashed.returncode == 0, crashed.stderr
    dry = run_cli("gc", "--store", loc, "--dry-run")
    assert dry.returncode == 0
    reclaimed = run_cli("gc", "--store", loc)
    assert reclaimed.returncode == 0 and "1 uncommitted segment" in reclaimed.stdout, reclaimed.stdout
    assert "1 stale lock" in reclaimed.stdout
    assert len(sime_data.open_store(loc).episodes()) == 6
    # damage one committed chunk: verify names it and exits 1
    chunks = glob.glob(f"{filled_store.sfs.path('data')}/*/actions/c/**/*", recursive=True)
    chunk = next(p for p in sorted(chunks) if os.path.isfile(p))
    with open(chunk, "wb") as handle:
        handle.write(b"garbage")
    damaged = run_cli("verify", "--store", loc, "-q")
    assert damaged.returncode == 1
    assert "actions" in damaged.stderr + damaged.stdout


def run_cli_python(code: str) -> subprocess.CompletedProcess:
    """Run a Python snippet in a subprocess."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_missing_values_print_one_way(filled_store, capsys):
    # SQL NULL, a NaN float and a null in a number column all print as the same mark, never 'nan' or 'None'
    assert main(["sql", "--store", filled_store.location,
                 "SELECT NULL AS a, 'nan'::DOUBLE AS b, CAST(NULL AS BIGINT) AS c, 1.5 AS d"]) == 0
    out = capsys.readouterr().out
    assert out.count("—") == 3 and "1.5" in out
    assert "nan" not in out.lower() and "None" not in out
    assert main(["info", "--store", filled_store.location]) == 0
    assert " nan " not in capsys.readouterr().out


def test_interop_commands_round_trip_through_the_cli(filled_store, tmp_path):
    pytest.importorskip("av")
    loc = filled_store.location
    filled_store.create_version("all", filled_store.episodes()["episode_id"].tolist())
    lerobot_dir = tmp_path / "lerobot_all"
    exported = run_cli("--store", loc, "export-lerobot", "all", str(lerobot_dir), "--fps", "10", "-q")
    assert exported.returncode == 0, exported.stderr
    assert json.loads((lerobot_dir / "meta" / "info.json").read_text())["total_episodes"] == 6
    new_store = tmp_path / "from_lerobot"
    imported = run_cli("import-lerobot", str(lerobot_dir), "--store", str(new_store), "--version", "back", "-q")
    assert imported.returncode == 0, imported.stderr
    assert "created a new store" in imported.stdout
    assert len(sime_data.open_store(new_store).episodes(version="back")) == 6
    buffer = tmp_path / "all.zarr"
    exported = run_cli("export-replay-buffer", "--store", loc, "all", str(buffer), "-q")
    assert exported.returncode == 0 and "actions -> action" in exported.stdout, exported.stderr
    imported = run_cli("import-replay-buffer", str(buffer), "--store", str(new_store), "--task", "lift", "-q")
    assert imported.returncode == 0 and "as version all" in imported.stdout, imported.stderr
    again = run_cli("import-replay-buffer", str(buffer), "--store", str(new_store), "-q")
    assert again.returncode == 0 and "imported before" in again.stdout
    refused = run_cli("import-lerobot", str(tmp_path), "--store", str(new_store), "-q")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr and "info.json" in refused.stderr
