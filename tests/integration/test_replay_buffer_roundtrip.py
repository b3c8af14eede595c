"""Diffusion Policy replay-buffer interop on real Zarr files: layout, bit-exact round trips, re-import, bad input."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numcodecs
import numpy as np
import pandas as pd
import pytest
import zarr

import sime_data
from sime_data.errors import ImportFormatError
from sime_data.replay_buffer_io import export_replay_buffer, import_replay_buffer

LENGTHS = [10, 7, 12, 5]
MODEL_XML = "<mujoco model='lift'><worldbody/></mujoco>"
#: store key -> Diffusion Policy key, as the module documents it
EXPECTED_NAMES = {"actions": "action", "obs/eef_pos": "eef_pos", "obs/agentview_image": "agentview_image",
                  "rewards": "rewards", "dones": "dones", "states": "states", "timestamps": "timestamp"}


def episode_arrays(i: int, n: int) -> dict[str, np.ndarray]:
    """Deterministic arrays of episode i: float32 / float64 low-dim, a small uint8 image, bools."""
    rng = np.random.default_rng(i)
    dones = np.zeros(n, dtype=bool)
    dones[-1] = True
    return {"obs/eef_pos": rng.normal(size=(n, 3)).astype(np.float32),
            "obs/agentview_image": rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8),
            "actions": rng.uniform(-1, 1, (n, 10)), "rewards": rng.normal(size=n), "dones": dones,
            "states": rng.normal(size=(n, 12)), "timestamps": np.arange(n, dtype=np.float64) / 20.0}


@pytest.fixture
def source(store: sime_data.Store) -> sime_data.Store:
    """4 episodes (with metadata and a model XML), version 'all', and 'trimmed' (one re-trimmed, one dropped)."""
    with store.writer("demo", "lift", model_xml=MODEL_XML) as writer:
        ids = [writer.add_episode(episode_arrays(i, n), success=i % 2 == 0, init_state_id=f"s{i}", trial=i)
               for i, n in enumerate(LENGTHS)]
    store.create_version("all", ids)
    store.create_version_from_trims("trimmed", "all", {ids[1]: [(2, 6)]}, drop=[ids[3]])
    return store


def kept_ranges(store: sime_data.Store, version: str) -> list[dict[str, np.ndarray]]:
    """The version's frame ranges read from the store, in manifest order."""
    manifest = store.version(version).manifest
    return [store.read_episode(eid, start=a, stop=b) for eid, a, b in manifest.itertuples(index=False)]


def store_state(store: sime_data.Store) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    files = sorted(str(p.relative_to(store.location)) for p in Path(store.location).rglob("*"))
    return store.episodes(), store.versions(), files


def assert_unchanged(store: sime_data.Store, before: tuple) -> None:
    eps, vers, listing = store_state(store)
    pd.testing.assert_frame_equal(eps, before[0])
    pd.testing.assert_frame_equal(vers, before[1])
    assert listing == before[2]


def write_dp_buffer(path: Path, episodes: list[dict[str, np.ndarray]], *, zarr_format: int = 2,
                    chunk_rows: int | None = None) -> Path:
    """A replay buffer written with plain zarr the way Diffusion Policy lays it out (not through our code)."""
    root = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    data, meta = root.create_group("data"), root.create_group("meta")
    lengths = [len(next(iter(ep.values()))) for ep in episodes]
    ends = np.cumsum(lengths).astype(np.int64)
    codec = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.NOSHUFFLE)
    for key in episodes[0]:
        values = np.concatenate([ep[key] for ep in episodes])
        chunks = (chunk_rows or len(values), *values.shape[1:])
        kwargs = {"compressors": codec} if zarr_format == 2 else {}
        array = data.create_array(key, shape=values.shape, chunks=chunks, dtype=values.dtype, **kwargs)
        array[:] = values
    meta.create_array("episode_ends", shape=ends.shape, dtype=np.int64, chunks=ends.shape,
                      **({"compressors": None} if zarr_format == 2 else {}))[:] = ends
    return path


def pusht_like(n_episodes: int = 3) -> list[dict[str, np.ndarray]]:
    """Episodes with Diffusion Policy's PushT key names (img, state, keypoint, action, n_contacts)."""
    out = []
    for i in range(n_episodes):
        rng = np.random.default_rng(100 + i)
        n = 6 + 3 * i
        out.append({"img": rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8),
                    "state": rng.normal(size=(n, 5)).astype(np.float32),
                    "keypoint": rng.normal(size=(n, 9, 2)).astype(np.float32),
                    "action": rng.normal(size=(n, 2)).astype(np.float32),
                    "n_contacts": rng.integers(0, 4, (n, 1)).astype(np.float32)})
    return out


# ---------------------------------------------------------------------------- export layout, read without our code
def test_export_has_diffusion_policy_layout(source, tmp_path):
    out = tmp_path / "lift.zarr"
    result = export_replay_buffer(source, "trimmed", out, progress=False)
    expected = kept_ranges(source, "trimmed")
    assert result.n_episodes == 3 and result.n_frames == 10 + 4 + 12
    assert result.keys == {dp: key for key, dp in EXPECTED_NAMES.items()}

    # Zarr format 2 on disk, as zarr 2.x (what Diffusion Policy uses) writes it
    assert json.loads((out / ".zgroup").read_text()) == {"zarr_format": 2}
    ends_meta = json.loads((out / "meta" / "episode_ends" / ".zarray").read_text())
    assert ends_meta["dtype"] == "<i8" and ends_meta["compressor"] is None
    action_meta = json.loads((out / "data" / "action" / ".zarray").read_text())
    assert action_meta["compressor"] == {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 0, "blocksize": 0}

    root = zarr.open_group(str(out), mode="r")
    assert root.metadata.zarr_format == 2
    assert sorted(root.group_keys()) == ["data", "meta"]
    ends = root["meta/episode_ends"][:]
    assert ends.dtype == np.int64 and ends.tolist() == [10, 14, 26]
    assert sorted(root["data"].array_keys()) == sorted(EXPECTED_NAMES.values())
    for key, name in EXPECTED_NAMES.items():
        array = root["data"][name]
        assert array.shape[0] == 26 and array.chunks[1:] == array.shape[1:]  # chunked in time only
        values = array[:]
        want = np.concatenate([ep[key] for ep in expected])
        assert values.dtype == want.dtype and np.array_equal(values, want), name
        starts = [0, *ends[:-1]]
        for ep, a, b in zip(expected, starts, ends):  # episode i is [ends[i-1], ends[i])
            assert np.array_equal(values[a:b], ep[key])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left behind


def test_export_refuses_an_existing_path_unless_overwrite(source, tmp_path):
    out = tmp_path / "lift.zarr"
    export_replay_buffer(source, "trimmed", out, progress=False)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_replay_buffer(source, "all", out, progress=False)
    assert zarr.open_group(str(out), mode="r")["meta/episode_ends"][:].tolist() == [10, 14, 26]
    export_replay_buffer(source, "all", out, overwrite=True, progress=False)
    assert zarr.open_group(str(out), mode="r")["meta/episode_ends"][:].tolist() == [10, 17, 29, 34]
    zipped = tmp_path / "lift.zarr.zip"
    export_replay_buffer(source, "all", zipped, progress=False)
    with pytest.raises(FileExistsError):
        export_replay_buffer(source, "trimmed", zipped, progress=False)
    names = zipfile.ZipFile(zipped).namelist()
    assert len(names) == len(set(names)) and "meta/episode_ends/.zarray" in names
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lift.zarr", "lift.zarr.zip", "store"]


def test_export_key_selection_and_errors(source, tmp_path):
    result = export_replay_buffer(source, "all", tmp_path / "low.zarr", keys=["actions", "obs/eef_pos"], progress=False)
    assert result.keys == {"action": "actions", "eef_pos": "obs/eef_pos"}
    assert sorted(zarr.open_group(str(tmp_path / "low.zarr"), mode="r")["data"].array_keys()) == ["action", "eef_pos"]
    with pytest.raises(ValueError, match="needs 'actions'"):
        export_replay_buffer(source, "all", tmp_path / "noact.zarr", keys=["obs/eef_pos"], progress=False)
    with pytest.raises(KeyError, match="obs/nope"):
        export_replay_buffer(source, "all", tmp_path / "nokey.zarr", keys=["actions", "obs/nope"], progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["low.zarr", "store"]


# ---------------------------------------------------------------------------- round trips
def test_store_to_buffer_to_store_is_bit_exact(source, tmp_path):
    out = tmp_path / "lift.zarr"
    export_replay_buffer(source, "trimmed", out, progress=False)
    target = sime_data.init_store(tmp_path / "target")
    result = import_replay_buffer(target, out, task="lift", progress=False)
    assert result.version == "lift" and result.n_frames == 26 and not result.already_imported
    assert target.version("lift").episode_ids == result.episode_ids
    for want, eid in zip(kept_ranges(source, "trimmed"), result.episode_ids):
        got = target.read_episode(eid)
        assert got.keys() == want.keys()
        for key in want:
            assert got[key].dtype == want[key].dtype and got[key].tobytes() == want[key].tobytes(), key
    rows = target.episodes().set_index("episode_id").loc[result.episode_ids]
    assert rows["success"].tolist() == [True, False, True]
    assert rows["init_state_id"].tolist() == ["s0", "s1", "s2"] and rows["trial"].tolist() == [0, 1, 2]
    assert set(rows["task"]) == {"lift"} and set(rows["source"]) == {"replay_buffer"}
    assert target.model_xml(result.episode_ids[0]) == MODEL_XML
    meta = json.loads(rows["meta"].iloc[1])["replay_buffer"]
    assert meta["episode"] == 1 and meta["exported_from"]["frame_start"] == 2
    np.testing.assert_array_equal(np.asarray(rows["init_state"].iloc[1]), kept_ranges(source, "trimmed")[1]["states"][0])


def test_buffer_to_store_to_buffer_is_identical(store, tmp_path):
    """A foreign (PushT-like) buffer: default key mapping in, the same arrays and episode_ends out."""
    original = write_dp_buffer(tmp_path / "pusht.zarr", pusht_like(), chunk_rows=4)
    result = import_replay_buffer(store, original, task="pusht", progress=False)
    assert result.keys == {"action": "actions", "img": "obs/img", "keypoint": "obs/keypoint",
                           "n_contacts": "obs/n_contacts", "state": "obs/state"}
    assert [store.episode(e)["length"] for e in result.episode_ids] == [6, 9, 12]
    again = export_replay_buffer(store, result.version, tmp_path / "again.zarr", progress=False)
    a, b = zarr.open_group(str(original), mode="r"), zarr.open_group(str(again.path), mode="r")
    assert a["meta/episode_ends"][:].tolist() == b["meta/episode_ends"][:].tolist() == [6, 15, 27]
    assert sorted(a["data"].array_keys()) == sorted(b["data"].array_keys())
    for name in a["data"].array_keys():
        x, y = a["data"][name][:], b["data"][name][:]
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), name


def test_zarr_v3_and_zip_of_the_same_content_are_the_same_import(store, tmp_path):
    """The content hash ignores the container: v2 dir, v3 dir and .zarr.zip of one buffer import once."""
    episodes = pusht_like(2)
    first = import_replay_buffer(store, write_dp_buffer(tmp_path / "v2.zarr", episodes), task="pusht", progress=False)
    before = store_state(store)
    v3 = write_dp_buffer(tmp_path / "v3.zarr", episodes, zarr_format=3, chunk_rows=5)
    assert json.loads((v3 / "zarr.json").read_text())["zarr_format"] == 3
    again = import_replay_buffer(store, v3, task="pusht", progress=False)
    assert again.already_imported and again.episode_ids == first.episode_ids and again.version == "v2"
    zipped = export_replay_buffer(store, "v2", tmp_path / "copy.zarr.zip", keys=["actions", "obs/img", "obs/keypoint",
                                                                                 "obs/n_contacts", "obs/state"],
                                  progress=False).path
    before = store_state(store)
    # the export carries our metadata attribute, so its content differs: a new import, bit-identical arrays
    from_zip = import_replay_buffer(store, zipped, task="pusht", progress=False)
    assert not from_zip.already_imported and from_zip.version == "copy"
    for x, y in zip(first.episode_ids, from_zip.episode_ids):
        left, right = store.read_episode(x), store.read_episode(y)
        assert all(left[k].tobytes() == right[k].tobytes() for k in left)
    before = store_state(store)
    assert import_replay_buffer(store, zipped, task="pusht", progress=False).already_imported
    assert import_replay_buffer(store, zipped, task="pusht", version="other", progress=False).already_imported
    assert_unchanged(store, before)


# ---------------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def populated(tmp_path_factory):
    """A store holding one import already, so 'unchanged' is checked against non-empty state (refusals keep it)."""
    root = tmp_path_factory.mktemp("populated")
    store = sime_data.init_store(root / "store")
    import_replay_buffer(store, write_dp_buffer(root / "base.zarr", pusht_like(2)), task="pusht", progress=False)
    return store


def _edit(path: Path, fn) -> Path:
    fn(zarr.open_group(str(path), mode="a"))
    return path


def _set_ends(values: list[int]):
    def edit(root):
        del root["meta"]["episode_ends"]
        root["meta"].create_array("episode_ends", shape=(len(values),), dtype=np.int64)[:] = values
    return edit


def _replace(name: str, values: np.ndarray):
    def edit(root):
        del root["data"][name]
        root["data"].create_array(name, shape=values.shape, dtype=values.dtype)[:] = values
    return edit


BAD_BUFFERS = {  # name -> (edit of a valid 3-episode buffer of 6 + 9 + 12 frames, expected message)
    "no_episode_ends": (lambda root: root["meta"].__delitem__("episode_ends"), r"no meta/episode_ends"),
    "no_meta": (lambda root: root.__delitem__("meta"), r"no 'meta' group"),
    "non_monotonic": (_set_ends([6, 20, 15, 27]), r"not strictly increasing: episode_ends\[2\] = 15"),
    "empty_episode": (_set_ends([6, 6, 27]), r"not strictly increasing: episode_ends\[1\] = 6"),
    "ends_past_data": (_set_ends([6, 15, 30]), r"episode_ends\[-1\] = 30 is past the end .*27 frames"),
    "ends_short": (_set_ends([6, 15]), r"episode_ends\[-1\] = 15 is short of the end .*27 frames"),
    "zero_first": (_set_ends([0, 15, 27]), r"episode_ends\[0\] = 0"),
    "float_ends": (lambda root: (root["meta"].__delitem__("episode_ends"), root["meta"].create_array(
        "episode_ends", shape=(3,), dtype=np.float64).__setitem__(slice(None), [6, 15, 27])),
        r"1-D integer array"),
    "lengths_differ": (_replace("state", np.zeros((26, 5), np.float32)), r"different lengths \(.*state 26"),
    "no_action": (lambda root: root["data"].__delitem__("action"), r"no data/action array"),
    "text_array": (_replace("keypoint", np.array(["abc"] * 27, dtype="<U3")), r"data/keypoint has dtype <U3"),
    "bad_key_name": (_replace("bad name", np.zeros(27)), r"data/bad name: invalid array key"),
}


@pytest.mark.parametrize("case", sorted(BAD_BUFFERS))
def test_bad_buffers_are_refused_naming_the_problem(populated, tmp_path, case):
    edit, message = BAD_BUFFERS[case]
    bad = _edit(write_dp_buffer(tmp_path / f"{case}.zarr", pusht_like(3)), edit)
    before = store_state(populated)
    with pytest.raises(ImportFormatError, match=message):
        import_replay_buffer(populated, bad, task="pusht", progress=False)
    assert_unchanged(populated, before)


def test_unreadable_inputs_are_refused(populated, tmp_path):
    before = store_state(populated)
    with pytest.raises(FileNotFoundError):
        import_replay_buffer(populated, tmp_path / "missing.zarr", task="pusht", progress=False)
    (tmp_path / "notzarr").mkdir()
    (tmp_path / "notzarr" / "readme.txt").write_text("hello")
    with pytest.raises(ImportFormatError, match="notzarr"):
        import_replay_buffer(populated, tmp_path / "notzarr", task="pusht", progress=False)
    (tmp_path / "noise.zarr.zip").write_bytes(os.urandom(256))
    with pytest.raises(ImportFormatError, match="not a zip archive"):
        import_replay_buffer(populated, tmp_path / "noise.zarr.zip", task="pusht", progress=False)
    # a damaged chunk in the last episode: refused before anything is written
    damaged = write_dp_buffer(tmp_path / "damaged.zarr", pusht_like(3), chunk_rows=4)
    (damaged / "data" / "img" / "6.0.0.0").write_bytes(b"\x00garbage!" * 16)
    with pytest.raises(ImportFormatError, match=r"data/img rows"):
        import_replay_buffer(populated, damaged, task="pusht", progress=False)
    assert_unchanged(populated, before)
