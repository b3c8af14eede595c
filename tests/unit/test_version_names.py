"""Version names and array keys: whole-string validation, and no false collisions between names."""

from __future__ import annotations

import pytest

import sime_data
from sime_data.schema import check_array_key, check_version_name


@pytest.mark.parametrize("name", ["okname\n", "okname\r\n", "a/b\n", "\nokname", "ok name", "okname\x00"])
def test_names_with_line_breaks_or_control_characters_are_refused(filled_store, name):
    with pytest.raises(sime_data.InvalidNameError, match="invalid version name"):
        filled_store.create_version(name, filled_store.episodes()["episode_id"].tolist()[:1])
    assert filled_store.versions().empty and not filled_store.sfs.list_files("versions")


@pytest.mark.parametrize("key", ["obs/image\n", "actions\n", "obs\n/x"])
def test_array_keys_with_a_trailing_newline_are_refused(key):
    with pytest.raises(sime_data.InvalidNameError, match="invalid array key"):
        check_array_key(key)


def test_a_name_ending_like_a_version_file_is_refused_so_it_cannot_shadow_another(filled_store):
    """'a.version.parquet/b' made a directory where version 'a' keeps its file: 'a' then 'already existed'."""
    ids = filled_store.episodes()["episode_id"].tolist()
    for bad in ("a.version.parquet/b", "a.version.parquet", "x/A.Version.Parquet/y"):
        with pytest.raises(sime_data.InvalidNameError, match="version.parquet"):
            filled_store.create_version(bad, ids[:1])
    filled_store.create_version("a", ids[:1])
    assert filled_store.version("a").episode_ids == ids[:1]


def test_names_that_are_prefixes_of_each_other_coexist(filled_store):
    ids = filled_store.episodes()["episode_id"].tolist()
    for i, name in enumerate(["lift", "lift/core", "lift/core/v1", "lift.v2", "lift-core", "lift/core.x"]):
        filled_store.create_version(name, ids[i:i + 1])
    reopened = sime_data.open_store(filled_store.location)
    assert sorted(reopened.versions()["name"]) == sorted(
        ["lift", "lift/core", "lift/core/v1", "lift.v2", "lift-core", "lift/core.x"])
    assert reopened.version("lift/core").episode_ids == ids[1:2] and reopened.version("lift").episode_ids == ids[:1]


@pytest.mark.parametrize("name", ["lift/core_10", "round1/sime_sr0.5", "a", "A-b.c_d/e"])
def test_good_names_pass(name):
    assert check_version_name(name) == name
