"""`--store` before, between or after the subcommands, in every CLI; imports create a missing store."""

from __future__ import annotations

import pytest

import sime_data
from conftest import write_episodes
from sime_data.cli import main as sime_data_main


@pytest.mark.parametrize("where", ["first", "between", "last"])
def test_sime_data_versions_list_accepts_store_anywhere(filled_store, capsys, monkeypatch, where):
    monkeypatch.delenv("SIME_STORE", raising=False)
    filled_store.create_version("all_of_them", filled_store.episodes()["episode_id"].tolist())
    loc = filled_store.location
    argv = {"first": ["--store", loc, "versions", "list"],
            "between": ["versions", "--store", loc, "list"],
            "last": ["versions", "list", "--store", loc]}[where]
    assert sime_data_main(argv) == 0
    assert "all_of_them" in capsys.readouterr().out


def test_sime_data_short_flag_equals_form_and_last_one_wins(filled_store, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SIME_STORE", raising=False)
    other = sime_data.init_store(tmp_path / "other")
    write_episodes(other, 1)
    assert sime_data_main(["-s", filled_store.location, "info", f"--store={other.location}"]) == 0
    out = capsys.readouterr().out
    assert "episodes 1 " in out and str(other.location) in out


def test_sime_data_store_from_environment_and_missing_store(filled_store, capsys, monkeypatch):
    monkeypatch.setenv("SIME_STORE", filled_store.location)
    assert sime_data_main(["info"]) == 0
    assert "episodes 6 " in capsys.readouterr().out
    monkeypatch.setenv("SIME_STORE", "")  # an empty variable is no store, not the current directory
    with pytest.raises(SystemExit) as stopped:
        sime_data_main(["versions", "list"])
    assert stopped.value.code == 2
    assert "--store" in capsys.readouterr().err


def test_quickstart_keeps_its_own_default(tmp_path, monkeypatch):
    from sime_data.cli import build_parser
    from sime_data.cli_store import resolve_store

    monkeypatch.delenv("SIME_STORE", raising=False)
    parser = build_parser()
    args = parser.parse_args(["quickstart"])
    resolve_store(parser, args)
    assert args.store == "sime_store"
    args = parser.parse_args(["--store", str(tmp_path / "x"), "quickstart"])
    resolve_store(parser, args)
    assert args.store == str(tmp_path / "x")


@pytest.mark.parametrize("argv", [
    ["--store", "S", "clean", "--version", "v", "--name", "n"],
    ["clean", "--store", "S", "--version", "v", "--name", "n"],
    ["clean", "--version", "v", "--name", "n", "--store", "S"],
])
def test_sime_hw_accepts_store_anywhere(argv):
    from hardware.cli import build_parser
    from sime_data.cli_store import resolve_store

    parser = build_parser()
    args = parser.parse_args(argv)
    resolve_store(parser, args)
    assert args.store == "S" and args.version == "v"


@pytest.mark.parametrize("argv", [
    ["--store", "S", "report"],
    ["report", "--store", "S"],
    ["--store", "S", "train", "--version", "core_5", "--out", "o"],
    ["train", "--version", "core_5", "--out", "o", "--store", "S"],
])
def test_sime_accepts_store_anywhere(argv):
    from sime_data.cli_store import resolve_store
    from sime_policy.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(argv)
    resolve_store(parser, args)
    assert args.store == "S"


def test_sime_app_accepts_store_anywhere_among_its_options(filled_store):
    from curation_app.cli import build_command

    # sime-app has one level: --store may come anywhere among its options, and reaches streamlit last
    command = build_command(filled_store.location, 8600)
    assert command[-2:] == ["--store", filled_store.location]


def test_import_creates_a_missing_store_and_says_so(tmp_path, capsys, monkeypatch):
    from test_robomimic import make_robomimic_file

    monkeypatch.delenv("SIME_STORE", raising=False)
    source = tmp_path / "lift_ph.hdf5"
    make_robomimic_file(source)
    target = tmp_path / "new_store"
    assert sime_data_main(["import-robomimic", str(source), "--store", str(target), "-q"]) == 0
    out = capsys.readouterr().out
    assert "created a new store" in out and "versions: lift_ph" in out
    assert len(sime_data.open_store(target).episodes()) > 0
    # into an existing store it says nothing about creating one
    assert sime_data_main(["import-robomimic", str(source), "--store", str(target), "-q"]) == 0
    assert "created a new store" not in capsys.readouterr().out


def test_import_refuses_to_create_a_store_inside_a_foreign_directory(tmp_path, capsys):
    from test_robomimic import make_robomimic_file

    source = tmp_path / "lift_ph.hdf5"
    make_robomimic_file(source)
    foreign = tmp_path / "my_documents"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    assert sime_data_main(["import-robomimic", str(source), "--store", str(foreign), "-q"]) == 2
    assert "no SIME store" in capsys.readouterr().err
    assert sorted(p.name for p in foreign.iterdir()) == ["thesis.tex"]
