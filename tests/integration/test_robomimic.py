"""robomimic HDF5 interop on real files: import, bit-exact export, trimmed export and bad input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

import sime_data
from sime_data.errors import ImportFormatError, VersionExistsError
from sime_data.robomimic_io import export_robomimic, import_robomimic

LENGTHS = [20, 35, 60, 27, 44, 51]
LOW_DIM = {"robot0_eef_pos": 3, "robot0_eef_quat": 4, "robot0_gripper_qpos": 2, "object": 10}
ENV_ARGS = {"env_name": "Lift", "type": 1, "env_kwargs": {"control_freq": 20, "controller_configs": {"type": "OSC_POSE"}}}


def make_robomimic_file(path: Path, *, lengths: list[int] = LENGTHS, image: bool = False, demo_offset: int = 0,
                        seed: int = 0, masks: dict[str, list[int]] | None = None) -> Path:
    """Write a synthetic robomimic-layout HDF5 file the way robomimic's scripts do."""
    rng = np.random.default_rng(seed)
    masks = {"train": [0, 2, 3, 5], "valid": [1, 4]} if masks is None else masks
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        total = 0
        for i, n in enumerate(lengths):
            grp = data.create_group(f"demo_{i + demo_offset}")
            grp.create_dataset("actions", data=rng.uniform(-1, 1, (n, 7)))
            grp.create_dataset("states", data=rng.normal(size=(n, 32)))
            rewards = np.zeros(n)
            rewards[-1] = 1.0
            grp.create_dataset("rewards", data=rewards)
            dones = np.zeros(n, dtype=np.int64)
            dones[-1] = 1
            grp.create_dataset("dones", data=dones)
            for prefix in ("obs", "next_obs"):
                for key, dim in LOW_DIM.items():
                    grp.create_dataset(f"{prefix}/{key}", data=rng.normal(size=(n, dim)))
                if image:
                    grp.create_dataset(f"{prefix}/agentview_image", data=rng.integers(0, 255, (n, 84, 84, 3), dtype=np.uint8),
                                       compression="gzip", compression_opts=4)
            grp.attrs["num_samples"] = n
            grp.attrs["model_file"] = f"<mujoco model='lift'><!-- demo {i} --><worldbody/></mujoco>"
            total += n
        data.attrs["total"] = total
        data.attrs["env_args"] = json.dumps(ENV_ARGS)
        for key, idx in masks.items():
            f.create_dataset(f"mask/{key}", data=np.array([f"demo_{j + demo_offset}" for j in idx], dtype="S"))
    return path


def h5_snapshot(path: Path) -> dict[str, tuple]:
    """Every group/dataset of a file with dtype, shape, values and attrs, for exact comparison."""
    out: dict[str, tuple] = {}

    def attrs_of(obj: h5py.HLObject) -> dict[str, tuple]:
        return {k: (obj.attrs.get_id(k).dtype.str, np.asarray(obj.attrs[k]).tolist()) for k in obj.attrs}

    with h5py.File(path, "r") as f:
        out["/"] = ("group", attrs_of(f))

        def visit(name: str, obj: h5py.HLObject) -> None:
            if isinstance(obj, h5py.Dataset):
                out[name] = ("dataset", obj.dtype.str, obj.shape, obj[()], attrs_of(obj))
            else:
                out[name] = ("group", attrs_of(obj))

        f.visititems(visit)
    return out


def assert_same_file(a: Path, b: Path, *, ignore: tuple[str, ...] = ()) -> None:
    sa, sb = h5_snapshot(a), h5_snapshot(b)
    for name in ignore:
        sa.pop(name, None), sb.pop(name, None)
    assert sorted(sa) == sorted(sb)
    for name, va in sa.items():
        vb = sb[name]
        if va[0] == "dataset":
            assert va[1] == vb[1] and va[2] == vb[2], name
            assert np.array_equal(va[3], vb[3]), name
            assert va[4] == vb[4], name
        else:
            assert va == vb, name


def store_state(store: sime_data.Store) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    files = sorted(str(p.relative_to(store.location)) for p in Path(store.location).rglob("*"))
    return store.episodes(), store.versions(), files


def assert_unchanged(store: sime_data.Store, before: tuple, *, files: bool = True) -> None:
    eps, vers, listing = store_state(store)
    pd.testing.assert_frame_equal(eps, before[0])
    pd.testing.assert_frame_equal(vers, before[1])
    if files:
        assert listing == before[2]


@pytest.fixture
def store(tmp_path: Path) -> sime_data.Store:
    return sime_data.init_store(tmp_path / "store")


@pytest.fixture
def lift_file(tmp_path: Path) -> Path:
    return make_robomimic_file(tmp_path / "lift_ph.hdf5")


# ---------------------------------------------------------------------------- import
def test_import_creates_episodes_and_versions(store, lift_file):
    result = import_robomimic(store, lift_file, progress=False)
    assert result.versions == ["lift_ph", "lift_ph/mask/train", "lift_ph/mask/valid"]
    assert len(result.episode_ids) == 6 and result.n_frames == sum(LENGTHS)
    eps = store.episodes().set_index("episode_id").loc[result.episode_ids]
    assert eps["length"].tolist() == LENGTHS
    assert set(eps["task"]) == {"Lift"} and set(eps["source"]) == {"import"}
    assert [json.loads(m)["source_name"] for m in eps["meta"]] == [f"demo_{i}" for i in range(6)]
    assert store.version("lift_ph").n_frames == sum(LENGTHS)
    train = store.version("lift_ph/mask/train")
    assert train.parents == ["lift_ph"]
    assert train.episode_ids == [result.episode_ids[i] for i in (0, 2, 3, 5)]
    assert store.version("lift_ph/mask/valid").episode_ids == [result.episode_ids[i] for i in (1, 4)]
    rule = store.version("lift_ph").rule
    assert rule["kind"] == "robomimic_import" and rule["env_args"] == ENV_ARGS and rule["masks"] == ["train", "valid"]

    with h5py.File(lift_file, "r") as f:
        for i, eid in enumerate(result.episode_ids):
            demo = f[f"data/demo_{i}"]
            data = store.read_episode(eid)
            expected_keys = {"actions", "states", "rewards", "dones"} | {f"{p}/{k}" for p in ("obs", "next_obs") for k in LOW_DIM}
            assert set(data) == expected_keys
            for key, arr in data.items():
                assert arr.dtype == demo[key].dtype and np.array_equal(arr, demo[key][()]), key
            assert store.model_xml(eid) == demo.attrs["model_file"]
            assert np.array_equal(store.episode(eid)["init_state"], demo["states"][0])


def test_import_orders_demos_numerically_and_handles_missing_datasets(store, tmp_path):
    path = tmp_path / "sparse.hdf5"
    with h5py.File(path, "w") as f:
        for number, n in ((10, 5), (2, 7), (1, 3)):
            grp = f.create_group(f"data/demo_{number}")
            grp.create_dataset("actions", data=np.full((n, 2), number, dtype=np.float32))
            grp.create_dataset("obs/x", data=np.arange(n, dtype=np.int16))
            grp.attrs["num_samples"] = n
    result = import_robomimic(store, path, task="toy", progress=False)
    assert result.versions == ["sparse"]
    eps = store.episodes().set_index("episode_id").loc[result.episode_ids]
    assert eps["length"].tolist() == [3, 7, 5]  # demo_1, demo_2, demo_10
    assert set(eps["task"]) == {"toy"} and eps["model_xml_sha"].isna().all()
    assert store.read_episode(result.episode_ids[2])["actions"].dtype == np.float32

    out = tmp_path / "sparse_out.hdf5"
    export_robomimic(store, "sparse", out, progress=False)
    assert_same_file(path, out, ignore=("data",))  # the source lacked data attrs; export adds the required ones
    with h5py.File(out, "r") as f:
        assert f["data"].attrs["total"] == 15
        assert json.loads(f["data"].attrs["env_args"])["env_name"] == "toy"


# ---------------------------------------------------------------------------- export
def test_export_round_trip_is_bit_exact(store, tmp_path):
    src = make_robomimic_file(tmp_path / "can_img.hdf5", lengths=[20, 33, 25], image=True, masks={"train": [0, 2], "valid": [1]})
    result = import_robomimic(store, src, progress=False)
    out = tmp_path / "out" / "can_img_export.hdf5"
    exported = export_robomimic(store, result.version, out, progress=False)
    assert exported.n_demos == 3 and exported.n_frames == 78 and exported.demo_names == ["demo_0", "demo_1", "demo_2"]
    assert_same_file(src, out)
    with h5py.File(out, "r") as f:
        assert f["data/demo_1/obs/agentview_image"].compression == "gzip"
        assert json.loads(f["data"].attrs["env_args"]) == ENV_ARGS
    assert not [p for p in out.parent.iterdir() if p.name != out.name]  # no temp files left


def test_export_round_trip_low_dim_with_offset_names(store, tmp_path):
    src = make_robomimic_file(tmp_path / "square.hdf5", demo_offset=1, seed=3)
    import_robomimic(store, src, progress=False)
    out = tmp_path / "square_out.hdf5"
    export_robomimic(store, "square", out, progress=False)
    assert_same_file(src, out)


def test_export_trimmed_version(store, lift_file, tmp_path):
    result = import_robomimic(store, lift_file, progress=False)
    ids = result.episode_ids
    trims = {ids[0]: [(2, 15)], ids[2]: [(0, 10), (30, 55)]}
    store.create_version_from_trims("lift_trim", "lift_ph", trims, drop=[ids[4]])
    out = tmp_path / "trim.hdf5"
    exported = export_robomimic(store, "lift_trim", out, masks={"train": "lift_ph/mask/train"}, progress=False)
    expected_ranges = [(0, 2, 15), (1, 0, 35), (2, 0, 10), (2, 30, 55), (3, 0, 27), (5, 0, 51)]
    assert exported.n_demos == len(expected_ranges)
    assert exported.n_frames == sum(t - s for _, s, t in expected_ranges)
    with h5py.File(lift_file, "r") as src, h5py.File(out, "r") as f:
        assert sorted(f["data"].keys(), key=lambda n: int(n[5:])) == [f"demo_{i}" for i in range(len(expected_ranges))]
        assert f["data"].attrs["total"] == exported.n_frames
        for i, (demo, s, t) in enumerate(expected_ranges):
            grp, orig = f[f"data/demo_{i}"], src[f"data/demo_{demo}"]
            assert grp.attrs["num_samples"] == t - s
            assert grp.attrs["model_file"] == orig.attrs["model_file"]
            for key in ("actions", "states", "rewards", "dones", "obs/object", "next_obs/robot0_eef_pos"):
                assert grp[key].dtype == orig[key].dtype
                assert np.array_equal(grp[key][()], orig[key][s:t]), (i, key)
        # train mask = demos 0, 2, 3, 5 of the source -> exported demos of those episodes
        assert [x.decode() for x in f["mask/train"][()]] == ["demo_0", "demo_2", "demo_3", "demo_4", "demo_5"]
        assert "valid" not in f["mask"]


def test_export_of_foreign_episodes_uses_minimal_env_args(store, tmp_path):
    with store.writer(source="rollout", task="PickPlaceCan") as w:
        for _ in range(2):
            for t in range(5):
                w.add_step(obs={"pos": np.full(3, t, np.float32)}, action=np.zeros(7), reward=0.0, done=False)
            w.finish(success=True)
    store.create_version_from_query("rollouts", "SELECT episode_id FROM episodes")
    out = tmp_path / "rollouts.hdf5"
    result = export_robomimic(store, "rollouts", out, progress=False)
    assert result.demo_names == ["demo_0", "demo_1"]
    with h5py.File(out, "r") as f:
        assert json.loads(f["data"].attrs["env_args"])["env_name"] == "PickPlaceCan"
        assert f["data/demo_1/obs/pos"].shape == (5, 3) and f["data/demo_1"].attrs["num_samples"] == 5
        assert "mask" not in f


def test_export_refuses_overwrite(store, lift_file, tmp_path):
    import_robomimic(store, lift_file, progress=False)
    out = tmp_path / "exists.hdf5"
    out.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_robomimic(store, "lift_ph", out, progress=False)
    assert out.read_bytes() == b"keep me"
    export_robomimic(store, "lift_ph", out, overwrite=True, progress=False)
    assert_same_file(lift_file, out)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".hdf5" or p.name.startswith(".")) == ["exists.hdf5", "lift_ph.hdf5"]


# ---------------------------------------------------------------------------- bad input leaves the store unchanged
@pytest.fixture
def populated(store, tmp_path):
    """A store that already holds one import, so 'unchanged' is checked against non-empty state."""
    import_robomimic(store, make_robomimic_file(tmp_path / "base.hdf5", lengths=[20, 21], masks={"train": [0], "valid": [1]}), progress=False)
    return store


def test_truncated_file(populated, lift_file, tmp_path):
    bad = tmp_path / "truncated.hdf5"
    shutil.copy(lift_file, bad)
    with open(bad, "r+b") as handle:
        handle.truncate(os.path.getsize(bad) // 2)
    before = store_state(populated)
    with pytest.raises(ImportFormatError, match=r"truncated\.hdf5.*cannot be opened as HDF5"):
        import_robomimic(populated, bad, progress=False)
    assert_unchanged(populated, before)


def test_random_bytes_file(populated, tmp_path):
    bad = tmp_path / "noise.hdf5"
    bad.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    before = store_state(populated)
    with pytest.raises(ImportFormatError, match="noise.hdf5"):
        import_robomimic(populated, bad, progress=False)
    assert_unchanged(populated, before)


def test_file_without_data_group(populated, tmp_path):
    bad = tmp_path / "nodata.hdf5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("something", data=np.zeros(3))
    before = store_state(populated)
    with pytest.raises(ImportFormatError, match="no 'data' group"):
        import_robomimic(populated, bad, progress=False)
    assert_unchanged(populated, before)


def test_mismatched_lengths(populated, tmp_path):
    bad = make_robomimic_file(tmp_path / "mismatch.hdf5", lengths=[30, 50, 40])
    with h5py.File(bad, "r+") as f:
        grp = f["data/demo_1"]
        del grp["obs/object"]
        grp.create_dataset("obs/object", data=np.zeros((49, 10)))
    before = store_state(populated)
    with pytest.raises(ImportFormatError, match=r"data/demo_1/obs/object has shape \(49, 10\).*50 rows"):
        import_robomimic(populated, bad, progress=False)
    assert_unchanged(populated, before)


def test_mask_naming_unknown_demo(populated, tmp_path):
    bad = make_robomimic_file(tmp_path / "badmask.hdf5", lengths=[20, 20], masks={"train": [0, 7]})
    before = store_state(populated)
    with pytest.raises(ImportFormatError, match=r"mask/train.*demo_7"):
        import_robomimic(populated, bad, progress=False)
    assert_unchanged(populated, before)


def test_corrupt_chunk_midway_rolls_back(populated, tmp_path):
    """A data error found while writing (after some demos went in) still leaves no episode or version."""
    bad = make_robomimic_file(tmp_path / "corrupt.hdf5", lengths=[20, 20, 20, 20], image=True, masks={})
    with h5py.File(bad, "r") as f:
        info = f["data/demo_2/obs/agentview_image"].id.get_chunk_info(0)
    with open(bad, "r+b") as handle:
        handle.seek(info.byte_offset)
        handle.write(b"\x00garbage!" * 64)
    before = store_state(populated)
    with pytest.raises(ImportFormatError, match=r"data/demo_2/obs/agentview_image"):
        import_robomimic(populated, bad, progress=False)
    # model XML blobs are content-addressed and may remain (gc reclaims them); rows, versions and arrays may not
    assert_unchanged(populated, before, files=False)
    after_files = store_state(populated)[2]
    assert [p for p in after_files if p not in before[2] and not p.startswith("blobs")] == []


def test_reimport_same_file_is_a_noop(populated, lift_file, tmp_path):
    """Importing a file again (same content, any version name) writes nothing; another file may not take its name."""
    first = import_robomimic(populated, lift_file, progress=False)
    before = store_state(populated)
    again = import_robomimic(populated, lift_file, progress=False)
    assert again.already_imported and not first.already_imported
    assert again.episode_ids == first.episode_ids and again.versions == first.versions
    assert_unchanged(populated, before)
    renamed = import_robomimic(populated, lift_file, version="lift_ph_2", progress=False)
    assert renamed.already_imported and renamed.version == "lift_ph"
    assert_unchanged(populated, before)
    (tmp_path / "other").mkdir()
    other = make_robomimic_file(tmp_path / "other" / "lift_ph.hdf5", seed=5)
    with pytest.raises(VersionExistsError, match="lift_ph"):
        import_robomimic(populated, other, progress=False)
    assert_unchanged(populated, before)
    third = import_robomimic(populated, other, version="lift_ph_2", progress=False)
    assert third.versions[0] == "lift_ph_2" and not set(third.episode_ids) & set(before[0]["episode_id"])