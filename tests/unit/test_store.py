"""Writing and reading episodes: contents, metadata, atomicity and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import sime_data
from conftest import step_values, write_episodes


def test_episode_arrays_round_trip(store):
    ids = write_episodes(store, 3, length=25)
    data = store.read_episode(ids[1])
    assert set(data) == {"obs/eef_pos", "obs/gripper", "actions", "rewards", "dones", "states"}
    assert data["actions"].shape == (25, 7) and data["actions"].dtype == np.float64
    assert data["obs/eef_pos"].dtype == np.float32
    for t in (0, 7, 24):
        expected = step_values(1, t)
        np.testing.assert_array_equal(data["obs/eef_pos"][t], expected["obs"]["eef_pos"])
        np.testing.assert_array_equal(data["actions"][t], expected["action"])
        np.testing.assert_array_equal(data["states"][t], expected["state"])


def test_read_subset_of_keys_and_frame_range(filled_store):
    eid = filled_store.episodes()["episode_id"].iloc[2]
    part = filled_store.read_episode(eid, keys=["actions"], start=3, stop=8)
    assert list(part) == ["actions"]
    np.testing.assert_array_equal(part["actions"][:, 0], 2 + np.arange(3, 8) / 1000.0)
    tail = filled_store.read_episode(eid, keys=["obs/eef_pos"], start=-2)
    np.testing.assert_array_equal(tail["obs/eef_pos"][:, 0], [2008, 2009])
    with pytest.raises(KeyError, match="no array"):
        filled_store.read_episode(eid, keys=["obs/nope"])


def test_metadata_columns_and_return(filled_store):
    frame = filled_store.episodes()
    assert len(frame) == 6
    assert frame["length"].tolist() == [10] * 6
    assert frame["success"].tolist() == [True, False] * 3
    assert frame["init_state_id"].tolist() == ["s0", "s0", "s1", "s1", "s2", "s2"]
    assert frame["episode_return"].tolist() == [1.0] * 6  # reward 1 at t == 9
    assert (frame["source"] == "rollout").all() and (frame["task"] == "lift").all()
    assert frame["episode_id"].is_unique


def test_free_metadata_goes_to_meta_json(store):
    with store.writer(source="rollout", task="can", round=1, checkpoint="ckpt-7", explore_mode="sime",
                      noise_scale=0.01, tau1=0.0, tau2=1.0, seed=233) as w:
        w.add_step(obs={"x": np.zeros(2)}, action=np.zeros(2))
        eid = w.finish(success=True, trial=3, tags=["good"], operator="ana", camera_fps=30)
    row = store.episode(eid)
    assert row["round"] == 1 and row["checkpoint"] == "ckpt-7" and row["explore_mode"] == "sime"
    assert row["noise_scale"] == 0.01 and row["seed"] == 233 and row["trial"] == 3 and row["tags"] == ["good"]
    assert json.loads(row["meta"]) == {"camera_fps": 30, "operator": "ana"}
    got = store.sql("SELECT meta->>'operator' AS op FROM episodes")
    assert got["op"].tolist() == ["ana"]


def test_add_episode_whole(store):
    actions = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    with store.writer(source="import", task="lift") as w:
        eid = w.add_episode({"actions": actions, "obs": {"pos": actions[:, :3]}}, success=True)
    np.testing.assert_array_equal(store.read_episode(eid)["actions"], actions)
    np.testing.assert_array_equal(store.read_episode(eid, ["obs/pos"])["obs/pos"], actions[:, :3])


def test_long_image_episode_spans_several_blocks(store):
    # longer than one low-dim chunk (512 frames) and several image shards (64 frames)
    length = 700
    with store.writer(source="teleop", task="lift") as w:
        for t in range(length):
            img = np.full((32, 48, 3), t % 251, dtype=np.uint8)
            w.add_step(obs={"cam": img, "t": np.array([t], np.int64)}, action=np.array([t, -t], np.float32))
        eid = w.finish()
        for t in range(5):  # a second episode after the long one
            w.add_step(obs={"cam": np.zeros((32, 48, 3), np.uint8), "t": np.array([t])}, action=np.zeros(2, np.float32))
        second = w.finish()
    data = store.read_episode(eid)
    np.testing.assert_array_equal(data["obs/t"][:, 0], np.arange(length))
    np.testing.assert_array_equal(data["obs/cam"][:, 0, 0, 0], np.arange(length) % 251)
    assert store.episode(second)["seg_start"] % store.root_meta.align_frames == 0
    assert store.episode(second)["seg_start"] >= length
    np.testing.assert_array_equal(store.read_episode(second)["obs/t"][:, 0], np.arange(5))


def test_model_xml_is_stored_once_and_read_back(store):
    xml = "<mujoco model='lift'>" + "x" * 5000 + "</mujoco>"
    with store.writer(source="demo", task="lift", model_xml=xml) as w:
        for _ in range(2):
            w.add_step(obs={"x": np.zeros(1)}, action=np.zeros(1))
            w.finish()
    ids = store.episodes()["episode_id"].tolist()
    assert [store.model_xml(i) for i in ids] == [xml, xml]
    assert len(store.sfs.list_files("blobs")) == 1


def test_episode_invisible_until_finish(store):
    with store.writer(source="rollout", task="lift") as w:
        for t in range(5):
            w.add_step(obs={"x": np.zeros(2)}, action=np.zeros(2))
        assert len(store.episodes()) == 0
        w.finish()
        assert len(store.episodes()) == 1


def test_unfinished_episode_discarded_on_close_and_on_error(store):
    with store.writer(source="rollout", task="lift") as w:
        w.add_step(obs={"x": np.zeros(2)}, action=np.zeros(2))
        w.finish()
        w.add_step(obs={"x": np.zeros(2)}, action=np.zeros(2))  # never finished
    assert len(store.episodes()) == 1
    with pytest.raises(RuntimeError):
        with store.writer(source="rollout", task="lift") as w:
            w.add_step(obs={"x": np.zeros(2)}, action=np.zeros(2))
            raise RuntimeError("simulator crashed")
    assert len(store.episodes()) == 1


def test_atomic_writer_all_or_nothing(store):
    with pytest.raises(ValueError):
        with store.writer(source="import", task="lift", atomic=True) as w:
            for _ in range(3):
                w.add_step(obs={"x": np.zeros(2)}, action=np.zeros(2))
                w.finish()
            assert len(store.episodes()) == 0  # nothing visible before close
            raise ValueError("bad file")
    assert len(store.episodes()) == 0
    with store.writer(source="import", task="lift", atomic=True) as w:
        for _ in range(3):
            w.add_step(obs={"x": np.zeros(2)}, action=np.zeros(2))
            w.finish()
    assert len(store.episodes()) == 3


def test_mismatched_step_shape_dtype_and_keys_rejected(store):
    with store.writer(source="rollout", task="lift") as w:
        w.add_step(obs={"x": np.zeros(2, np.float32)}, action=np.zeros(3))
        with pytest.raises(sime_data.StepMismatchError, match="shape"):
            w.add_step(obs={"x": np.zeros(3, np.float32)}, action=np.zeros(3))
        with pytest.raises(sime_data.StepMismatchError, match="dtype"):
            w.add_step(obs={"x": np.zeros(2, np.float64)}, action=np.zeros(3))
        with pytest.raises(sime_data.StepMismatchError, match="missing"):
            w.add_step(obs={"y": np.zeros(2, np.float32)}, action=np.zeros(3))
        w.add_step(obs={"x": np.ones(2, np.float32)}, action=np.ones(3))
        eid = w.finish()
        # a later episode of the same writer must keep the layout
        with pytest.raises(sime_data.StepMismatchError, match="differ"):
            w.add_step(obs={"x": np.zeros(5, np.float32)}, action=np.zeros(3))
    data = store.read_episode(eid)
    assert len(data["actions"]) == 2  # the rejected steps were not recorded
    np.testing.assert_array_equal(data["obs/x"][1], [1, 1])


def test_writer_misuse_errors(store):
    w = store.writer(source="rollout", task="lift")
    with pytest.raises(sime_data.WriterStateError, match="no steps"):
        w.finish()
    with pytest.raises(sime_data.InvalidNameError):
        w.add_step(obs={"bad key!": np.zeros(1)})
    w.close()
    with pytest.raises(sime_data.WriterStateError, match="closed"):
        w.add_step(obs={"x": np.zeros(1)})
    with pytest.raises(ValueError, match="fills these columns"):
        store.writer(source="rollout", episode_id="mine")


def test_unknown_episode_error(filled_store):
    with pytest.raises(sime_data.EpisodeNotFoundError, match="no episode 'nope'"):
        filled_store.read_episode("nope")


def test_open_missing_and_foreign_locations(tmp_path):
    with pytest.raises(sime_data.StoreNotFoundError, match="sime-data init"):
        sime_data.open_store(tmp_path / "missing")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "sime_store.json").write_text('{"format": "something-else", "schema_version": 1, '
                                                         '"store_id": "x", "created_at": "now"}')
    with pytest.raises(sime_data.StoreError, match="not a SIME store"):
        sime_data.open_store(tmp_path / "other")
    sime_data.init_store(tmp_path / "s")
    with pytest.raises(sime_data.StoreExistsError):
        sime_data.init_store(tmp_path / "s")


def test_compaction_keeps_every_row(store):
    first = write_episodes(store, 4)
    second = write_episodes(store, 3, start_index=4)
    before = store.episodes().sort_values("episode_id").reset_index(drop=True)
    assert store.compact() == 7
    files = store.catalog.active_episode_files()
    assert len(files) == 1
    reopened = sime_data.open_store(store.location)
    after = reopened.episodes().sort_values("episode_id").reset_index(drop=True)
    assert after["episode_id"].tolist() == sorted(first + second)
    assert after.drop(columns=["init_state", "tags", "keys"]).equals(before.drop(columns=["init_state", "tags", "keys"]))


def test_store_usable_without_torch(store, tmp_path):
    code = (
        "import sys, numpy as np, sime_data\n"
        f"s = sime_data.open_store({str(store.location)!r})\n"
        "w = s.writer(source='demo', task='lift'); w.add_step(obs={'x': np.zeros(1)}); w.finish(); w.close()\n"
        "s.create_version('v', s.episodes()['episode_id'].tolist())\n"
        "import sime_data.cli, sime_data.summary\n"
        "assert 'torch' not in sys.modules, 'sime_data imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_memory_filesystem_store():
    url = "memory://sime-test-store"
    store = sime_data.init_store(url)
    ids = write_episodes(store, 3, length=12)
    with store.writer(source="demo", task="lift") as w:
        w.add_step(obs={"cam": np.full((40, 40, 3), 7, np.uint8)}, action=np.zeros(2))
        cam_id = w.finish()
    again = sime_data.open_store(url)
    assert sorted(again.episodes()["episode_id"]) == sorted(ids + [cam_id])
    np.testing.assert_array_equal(again.read_episode(ids[2])["obs/eef_pos"][:, 0], 2000 + np.arange(12))
    assert again.read_episode(cam_id)["obs/cam"].max() == 7
    version = again.create_version("all", ids)
    assert again.version("all").episode_ids == ids == version.episode_ids
    assert again.sql("SELECT count(*) AS n FROM episodes")["n"].iloc[0] == 4


def test_a_store_being_created_is_never_seen_at_an_older_format(tmp_path):
    # a second process polling the location while `sime run` creates the store sees nothing or the current format
    import threading

    from sime_data.errors import StoreNotFoundError

    seen, errors, stop = [], [], threading.Event()

    def poll(location):
        while not stop.is_set():
            try:
                seen.append(sime_data.open_store(location).root_meta.schema_version)
            except StoreNotFoundError:
                pass
            except Exception as exc:  # noqa: BLE001 - e.g. OutdatedStoreError of a half-created store
                errors.append(exc)

    for i in range(5):
        location = tmp_path / f"s{i}"
        stop.clear()
        watcher = threading.Thread(target=poll, args=(location,))
        watcher.start()
        sime_data.init_store(location)
        stop.set()
        watcher.join()
    assert not errors, errors[:3]
    assert set(seen) <= {sime_data.open_store(tmp_path / "s0").root_meta.schema_version}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging directory left behind
