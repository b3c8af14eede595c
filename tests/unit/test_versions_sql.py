"""Versions (immutable manifests, lineage, trims, diff) and the read-only SQL catalog."""

from __future__ import annotations

import os

import pandas as pd
import pytest

import sime_data
from conftest import write_episodes


def test_version_from_ids_records_stats_and_copies_no_data(filled_store):
    store = filled_store
    size_before = store.sfs.size("data")
    ids = store.episodes()["episode_id"].tolist()
    version = store.create_version("lift/core_4", ids[:4], message="first four")
    assert store.sfs.size("data") == size_before
    assert version.stats["n_episodes"] == 4 and version.stats["n_frames"] == 40
    assert version.stats["success_rate"] == 0.5 and version.stats["sources"] == {"rollout": 4}
    loaded = store.version("lift/core_4")
    assert loaded.episode_ids == ids[:4] and loaded.message == "first four" and loaded.parents == []
    listed = store.versions()
    assert listed["name"].tolist() == ["lift/core_4"]


def test_version_names_are_immutable(filled_store):
    ids = filled_store.episodes()["episode_id"].tolist()
    filled_store.create_version("v1", ids[:2])
    with pytest.raises(sime_data.VersionExistsError, match="immutable"):
        filled_store.create_version("v1", ids[2:])
    assert filled_store.version("v1").episode_ids == ids[:2]


def test_unknown_version_error_lists_known(filled_store):
    filled_store.create_version("lift/demos", filled_store.episodes()["episode_id"].tolist())
    with pytest.raises(sime_data.VersionNotFoundError, match="unknown version 'lift/demo'.*lift/demos"):
        filled_store.version("lift/demo")


@pytest.mark.parametrize("name", ["", "a//b", "../x", "/abs", "bad name", "x/", "ü"])
def test_invalid_version_names(filled_store, name):
    with pytest.raises(sime_data.InvalidNameError):
        filled_store.create_version(name, filled_store.episodes()["episode_id"].tolist()[:1])


def test_manifest_validation(filled_store):
    ids = filled_store.episodes()["episode_id"].tolist()
    with pytest.raises(sime_data.InvalidManifestError, match="not in the store"):
        filled_store.create_version("x", ["ghost"])
    with pytest.raises(sime_data.InvalidManifestError, match="does not fit"):
        filled_store.create_version("x", [(ids[0], 5, 11)])
    with pytest.raises(sime_data.InvalidManifestError, match="does not fit"):
        filled_store.create_version("x", [(ids[0], 5, 5)])
    with pytest.raises(sime_data.InvalidManifestError, match="overlap"):
        filled_store.create_version("x", [(ids[0], 0, 6), (ids[0], 4, 8)])
    with pytest.raises(sime_data.InvalidManifestError, match="at least one"):
        filled_store.create_version("x", [])
    assert filled_store.versions().empty


def test_version_from_query(filled_store):
    version = filled_store.create_version_from_query(
        "successes", "SELECT episode_id FROM episodes WHERE success ORDER BY episode_id", message="all successes")
    assert version.stats["success_rate"] == 1.0 and version.stats["n_episodes"] == 3
    assert filled_store.version("successes").query.startswith("SELECT episode_id")
    ranged = filled_store.create_version_from_query(
        "first_half", "SELECT episode_id, 0 AS frame_start, length // 2 AS frame_stop FROM episodes")
    assert ranged.n_frames == 30
    with pytest.raises(sime_data.InvalidManifestError, match="episode_id"):
        filled_store.create_version_from_query("bad", "SELECT length FROM episodes")


def test_trims_drop_and_lineage(filled_store):
    store = filled_store
    ids = store.episodes()["episode_id"].tolist()
    store.create_version("base", ids)
    trimmed = store.create_version_from_trims("base/trim1", "base", {ids[0]: [(2, 5), (7, 10)], ids[1]: [(0, 4)]},
                                              drop=[ids[5]], message="cut idle frames")
    assert trimmed.parents == ["base"]
    assert trimmed.ranges()[ids[0]] == [(2, 5), (7, 10)]
    assert trimmed.ranges()[ids[1]] == [(0, 4)]
    assert ids[5] not in trimmed.ranges()
    assert trimmed.n_frames == 6 + 4 + 3 * 10
    # trimming a trimmed version intersects with what the base kept
    again = store.create_version_from_trims("base/trim2", "base/trim1", {ids[0]: [(0, 8)]})
    assert again.ranges()[ids[0]] == [(2, 5), (7, 8)]
    with pytest.raises(sime_data.InvalidManifestError, match="keep none"):
        store.create_version_from_trims("bad", "base/trim1", {ids[1]: [(6, 9)]})
    with pytest.raises(sime_data.InvalidManifestError, match="not in base"):
        store.create_version_from_trims("bad", "base/trim1", drop=[ids[5]])
    lineage = store.sql("SELECT name, parents FROM versions ORDER BY name")
    assert lineage["parents"].map(list).tolist() == [[], ["base"], ["base/trim1"]]


def test_union_and_diff(filled_store):
    store = filled_store
    ids = store.episodes()["episode_id"].tolist()
    store.create_version("demos", ids[:2])
    store.create_version("selected", ids[1:4])
    union = store.create_version_union("round1/train", ["demos", "selected"], message="demos + selection")
    assert union.episode_ids == ids[:4] and union.parents == ["demos", "selected"]
    trimmed = store.create_version_from_trims("round1/trimmed", "round1/train", {ids[0]: [(0, 5)]}, drop=[ids[3]])
    diff = store.diff_versions("round1/train", "round1/trimmed")
    assert diff.removed == [ids[3]] and diff.added == []
    assert diff.changed["episode_id"].tolist() == [ids[0]]
    assert diff.frames_removed == 10 + 5 and diff.frames_added == 0
    reverse = store.diff_versions("round1/trimmed", "round1/train")
    assert reverse.added == [ids[3]] and reverse.frames_added == 15
    assert "1 re-trimmed" in diff.summary()
    assert trimmed.stats["n_episodes"] == 3


def test_sql_group_by_and_views(filled_store):
    store = filled_store
    store.create_version("all", store.episodes()["episode_id"].tolist())
    result = store.sql(
        "SELECT init_state_id, avg(success::INT) AS sr, count(*) AS n FROM episodes GROUP BY 1 ORDER BY 1")
    assert result["sr"].tolist() == [0.5, 0.5, 0.5] and result["n"].tolist() == [2, 2, 2]
    joined = store.sql("SELECT count(*) AS n FROM version_episodes JOIN episodes USING (episode_id) WHERE version='all'")
    assert joined["n"].iloc[0] == 6
    filtered = store.episodes("success AND trial = 0", version="all")
    assert len(filtered) == 3


def test_sql_sees_new_commits_without_reopening(filled_store):
    assert len(filled_store.sql("SELECT * FROM episodes")) == 6
    write_episodes(filled_store, 2, start_index=6)
    assert len(filled_store.sql("SELECT * FROM episodes")) == 8


@pytest.mark.parametrize("statement", [
    "DROP VIEW episodes",
    "DELETE FROM episodes",
    "INSERT INTO episodes (episode_id) VALUES ('x')",
    "CREATE TABLE t AS SELECT 1",
    "UPDATE episodes SET success = true",
    "COPY episodes TO 'out.parquet'",
    "ATTACH 'x.db'",
    "SET enable_external_access = true",
    "SELECT 1; DROP VIEW episodes",
])
def test_sql_refuses_writes(filled_store, statement, tmp_path):
    files_before = sorted(filled_store.sfs.list_files(""))
    with pytest.raises(sime_data.ReadOnlySQLError, match="read-only"):
        filled_store.sql(statement)
    assert sorted(filled_store.sfs.list_files("")) == files_before
    assert len(filled_store.sql("SELECT * FROM episodes")) == 6


def test_sql_cannot_read_or_write_files(filled_store, tmp_path):
    target = tmp_path / "leak.csv"
    with pytest.raises(sime_data.ReadOnlySQLError, match="cannot read or write files"):
        filled_store.sql(f"SELECT * FROM read_csv('{os.devnull}')")
    assert not target.exists()


@pytest.mark.parametrize("query, message", [
    ("SELEC * FROM episodes", "syntax"),
    ("SELECT nosuchcolumn FROM episodes", "nosuchcolumn"),
    ("", "empty"),
])
def test_sql_errors_are_clear(filled_store, query, message):
    with pytest.raises(sime_data.SQLError, match=message):
        filled_store.sql(query)


def test_versions_survive_reopen(filled_store):
    ids = filled_store.episodes()["episode_id"].tolist()
    filled_store.create_version("v", [(ids[0], 1, 4)], message="m", rule={"kind": "manual"})
    reopened = sime_data.open_store(filled_store.location)
    version = reopened.version("v")
    assert version.manifest.equals(pd.DataFrame({"episode_id": [ids[0]], "frame_start": [1], "frame_stop": [4]}))
    assert version.rule == {"kind": "manual"}
