"""Files the catalog finds on disk that it did not write: foreign or copied row files, damaged version files.

Behaviour (README "Reliability"): a foreign or duplicated episode row file under meta/episodes is refused
the same way by SQL and by episodes() (CorruptStoreError naming the file, nothing counted), until it is
moved away (copies of a compacted file, which name the same merged sources, are read once, as after two
raced compactions); an unreadable version file is left out with a StoreWarning naming it, the rest of the store
(and SQL) keeps working, and `verify` reports it.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import sime_data
from sime_data.errors import StoreWarning
from sime_data.verify import verify


def _both_refuse(location: str, needle: str) -> None:
    """A freshly opened store refuses SQL, episodes() and episode_columns() alike, naming `needle`."""
    store = sime_data.open_store(location)
    for read in (lambda: store.sql("SELECT count(*) AS n FROM episodes"), store.episodes,
                 lambda: store.episodes("success"), lambda: store.catalog.episode_columns(["episode_id"])):
        with pytest.raises(sime_data.CorruptStoreError, match=needle):
            read()


def test_a_foreign_parquet_file_in_meta_is_refused_by_sql_and_episodes_alike(filled_store):
    root = Path(filled_store.location)
    assert filled_store.sql("SELECT count(*) AS n FROM episodes")["n"][0] == 6
    foreign = root / "meta" / "episodes" / "foreign.parquet"
    pq.write_table(pa.table({"episode_id": ["junk1", "junk2"], "length": [5, 6]}), foreign)
    _both_refuse(filled_store.location, "meta/episodes/foreign.parquet.*not an episode row file")
    _both_refuse(filled_store.location, "move")  # the message says what to do
    # the same Store object that had already read the store refuses too (no stale, junk-free cache)
    with pytest.raises(sime_data.CorruptStoreError, match="foreign.parquet"):
        filled_store.sql("SELECT count(*) AS n FROM episodes")
    assert any("foreign.parquet" in p for p in verify(filled_store, check_chunks=False).problems)
    foreign.unlink()
    assert filled_store.sql("SELECT count(*) AS n FROM episodes")["n"][0] == 6 and len(filled_store.episodes()) == 6


def test_a_damaged_parquet_file_in_meta_is_refused_by_name(filled_store):
    junk = Path(filled_store.location) / "meta" / "episodes" / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    _both_refuse(filled_store.location, "meta/episodes/junk.parquet is unreadable")


def test_a_copied_row_file_is_refused_instead_of_counting_episodes_twice(filled_store):
    root = Path(filled_store.location)
    original = sorted((root / "meta" / "episodes").rglob("*.parquet"))[0]
    table = pq.read_table(original).replace_schema_metadata(None)  # a copy made by an export or a sync tool
    pq.write_table(table, root / "meta" / "episodes" / "exported.parquet")
    _both_refuse(filled_store.location, "has rows in two episode row files.*exported.parquet")
    assert any("exported.parquet" in p for p in verify(filled_store, check_chunks=False).problems)
    (root / "meta" / "episodes" / "exported.parquet").unlink()
    # a copy of just one episode's row, under another name in the same segment
    single = original.with_name(f"{table['episode_id'][2]} (copy).parquet")
    pq.write_table(table.slice(2, 1), single)
    _both_refuse(filled_store.location, f"episode {table['episode_id'][2]} has rows in two")
    single.unlink()
    # a byte-for-byte copy of a compacted file names the same merged sources, as two raced compactions do:
    # its rows are the same rows, so both paths read each episode once
    shutil.copy(original, original.with_name("copy (1).parquet"))
    again = sime_data.open_store(filled_store.location)
    assert again.sql("SELECT count(*) AS n FROM episodes")["n"][0] == 6 and len(again.episodes()) == 6


def test_one_unreadable_version_file_is_left_out_with_a_warning(filled_store):
    ids = filled_store.episodes()["episode_id"].tolist()
    filled_store.create_version("good", ids[:3])
    filled_store.create_version("round1/bad", ids[3:])
    bad = Path(filled_store.location) / "versions" / "round1" / "bad.version.parquet"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated (a half-copied store)
    store = sime_data.open_store(filled_store.location)
    with pytest.warns(StoreWarning, match="versions/round1/bad.version.parquet"):
        listed = store.versions()
    assert listed["name"].tolist() == ["good"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, not on every query
        assert store.sql("SELECT count(*) AS n FROM version_episodes")["n"][0] == 3
        assert store.sql("SELECT count(*) AS n FROM episodes")["n"][0] == 6
        assert len(store.episodes(version="good")) == 3
    assert list(store.catalog.unreadable_versions()) == ["versions/round1/bad.version.parquet"]
    with pytest.raises(sime_data.CorruptStoreError, match="bad.version.parquet"):
        store.version("round1/bad")  # asked for by name: a clear error, not "unknown version"
    assert any("versions/round1/bad.version.parquet" in p for p in verify(store, check_chunks=False).problems)
    # a foreign file with the version suffix is treated the same way
    pq.write_table(pa.table({"x": [1]}), Path(store.location) / "versions" / "notes.version.parquet")
    with pytest.warns(StoreWarning, match="notes.version.parquet"):
        assert store.sql("SELECT name FROM versions")["name"].tolist() == ["good"]
