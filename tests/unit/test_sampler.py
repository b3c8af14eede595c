"""Window sampler, version loader, version stats and the torch dataset, on a real store on disk."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

import sime_data
from sime_data.sampler import (
    EmptyVersionError,
    SequenceSampler,
    UnknownKeyError,
    load_version_arrays,
    split_episodes,
)
from sime_data.stats import version_stats

IMG_SHAPE = (40, 40, 3)  # 4800 bytes per frame: an image key (KeySpec.is_image)


def action_of(ep: int, t: np.ndarray) -> np.ndarray:
    """actions[t, d] = ep*1000 + t + d/4 (exact in float32)."""
    t = np.asarray(t)
    return (ep * 1000 + t[..., None] + np.arange(4) / 4).astype(np.float32)


def pos_of(ep: int, t: np.ndarray) -> np.ndarray:
    """obs/pos[t, d] = -(ep*1000 + t) - 10*d."""
    t = np.asarray(t)
    return (-(ep * 1000 + t[..., None]) - 10 * np.arange(3)).astype(np.float32)


def image_of(ep: int, t: np.ndarray) -> np.ndarray:
    """A (40, 40, 3) uint8 frame identifying (episode, step)."""
    t = np.asarray(t)
    base = (ep * 37 + t * 5) % 200
    img = np.zeros((*t.shape, *IMG_SHAPE), dtype=np.uint8)
    img[...] = base[..., None, None, None]
    img[..., 1] += 20
    img[..., 2] += np.arange(IMG_SHAPE[1], dtype=np.uint8)[None, :]
    return img


def episode_arrays(ep: int, length: int) -> dict[str, np.ndarray]:
    """Every array of test episode `ep`."""
    t = np.arange(length)
    return {
        "obs/pos": pos_of(ep, t),
        "obs/flag": (t % 3 == 0)[:, None],
        "obs/img": image_of(ep, t),
        "actions": action_of(ep, t),
        "rewards": (t == length - 1).astype(np.float64),
    }


#: episode index -> length; written by two writers (two segments)
LENGTHS = {0: 12, 1: 30, 2: 7, 3: 25, 4: 40}


@pytest.fixture(scope="module")
def store_info(tmp_path_factory):
    """Store with 5 episodes in 2 segments; versions 'all', 'trimmed' (cuts, a drop) and 'one'."""
    store = sime_data.init_store(tmp_path_factory.mktemp("sampler") / "s")
    ids: dict[int, str] = {}
    with store.writer("demo", "lift") as w:
        for ep in (0, 1, 2):
            ids[ep] = w.add_episode(episode_arrays(ep, LENGTHS[ep]), success=True)
    with store.writer("rollout", "lift") as w:
        for ep in (3, 4):
            ids[ep] = w.add_episode(episode_arrays(ep, LENGTHS[ep]), success=ep == 4)
    store.create_version("all", [ids[e] for e in sorted(ids)])
    store.create_version_from_trims("trimmed", "all", {ids[1]: [(0, 10), (18, 30)], ids[4]: [(5, 35)]},
                                    drop=[ids[2]])
    store.create_version("one", [ids[0]])
    return store, ids


def ep_of(ids: dict[int, str], eid: str) -> int:
    """Test episode index of an episode id."""
    return {v: k for k, v in ids.items()}[eid]


# ------------------------------------------------------------------------------------------ loader
def test_load_version_arrays_concatenates_kept_ranges(store_info):
    store, ids = store_info
    data = load_version_arrays(store, "trimmed", ["actions", "pos", "obs/img"])
    assert data.keys == ["actions", "obs/pos", "obs/img"]
    assert data.lazy_keys == ["obs/img"]
    assert "obs/img" not in data.data
    expected = [(0, 0, 12), (1, 0, 10), (1, 18, 30), (3, 0, 25), (4, 5, 35)]
    got = [(ep_of(ids, e), int(s), int(t)) for e, s, t in zip(data.range_episode_ids, data.range_frame_start,
                                                               data.range_frame_stop)]
    assert got == expected
    assert data.range_ends.tolist() == np.cumsum([12, 10, 12, 25, 30]).tolist()
    want = np.concatenate([action_of(ep, np.arange(s, t)) for ep, s, t in expected])
    np.testing.assert_array_equal(data.data["actions"], want)
    np.testing.assert_array_equal(data.data["obs/pos"], np.concatenate([pos_of(ep, np.arange(s, t)) for ep, s, t in expected]))
    frames = np.array([[0, 11], [12, 22], [40, 60]])
    np.testing.assert_array_equal(data.episode_frames(frames), [[0, 11], [0, 18], [6, 6]])


def test_load_lowdim_only_and_images_in_memory(store_info):
    store, _ = store_info
    with pytest.raises(ValueError, match="lowdim_only"):
        load_version_arrays(store, "all", ["obs/img"], lowdim_only=True)
    eager = load_version_arrays(store, "trimmed", ["obs/img"], lowdim_only=False)
    lazy = load_version_arrays(store, "trimmed", ["obs/img"])
    assert "obs/img" in eager.data
    idx = np.arange(eager.n_frames)
    np.testing.assert_array_equal(lazy.read_frames("obs/img", idx), eager.data["obs/img"])


def test_unknown_key_lists_available(store_info):
    store, _ = store_info
    with pytest.raises(KeyError) as info:
        load_version_arrays(store, "all", ["obs/nope"])
    assert isinstance(info.value, UnknownKeyError)
    assert "obs/nope" in str(info.value) and "obs/pos" in str(info.value) and "actions" in str(info.value)
    with pytest.raises(KeyError, match="available|all have"):
        SequenceSampler(store, "all", obs_keys=["pos"], action_key="act")


def test_empty_selection_and_no_window_errors(store_info):
    store, ids = store_info
    with pytest.raises(EmptyVersionError, match="no frames"):
        load_version_arrays(store, "all", ["actions"], episodes=[])
    with pytest.raises(EmptyVersionError, match="none of its"):
        SequenceSampler(store, "one", obs_keys=["pos"], horizon=16, pad_before=0, pad_after=0)
    with pytest.raises(KeyError, match="not in version"):
        load_version_arrays(store, "one", ["actions"], episodes=[ids[3]])


def test_parameter_validation(store_info):
    store, _ = store_info
    with pytest.raises(ValueError, match="horizon"):
        SequenceSampler(store, "all", obs_keys=["pos"], n_obs_steps=4, horizon=3, n_action_steps=2)
    with pytest.raises(ValueError, match="pad_before"):
        SequenceSampler(store, "all", obs_keys=["pos"], horizon=4, n_action_steps=2, pad_before=4)
    with pytest.raises(ValueError, match="n_action_steps"):
        SequenceSampler(store, "all", obs_keys=["pos"], horizon=4, n_action_steps=5)
    with pytest.raises(ValueError, match="low-dim"):
        SequenceSampler(store, "all", obs_keys=["pos"], action_key="obs/img", horizon=4, n_action_steps=2)


# ------------------------------------------------------------------------------------------ windows
def test_windows_and_edge_padding_hand_computed(store_info):
    store, ids = store_info
    # episode 0 has 12 frames; n_obs 2, horizon 5, n_action_steps 3 -> pad_before 1, pad_after 2
    s = SequenceSampler(store, "one", obs_keys=["pos", "flag"], n_obs_steps=2, horizon=5, n_action_steps=3,
                        return_pad_mask=True)
    assert (s.pad_before, s.pad_after) == (1, 2)
    assert len(s) == 12 - 5 + 1 + 2 + 1  # starts -1 .. 9
    expected_frames = {
        0: [0, 0, 1, 2, 3],  # starts at -1: first frame repeated
        1: [0, 1, 2, 3, 4],
        5: [4, 5, 6, 7, 8],
        9: [8, 9, 10, 11, 11],
        10: [9, 10, 11, 11, 11],  # starts at 9: last frame repeated twice
    }
    for i, frames in expected_frames.items():
        sample = s[i]
        np.testing.assert_array_equal(sample["action"], action_of(0, np.array(frames)))
        np.testing.assert_array_equal(sample["obs/pos"], pos_of(0, np.array(frames[:2])))
        np.testing.assert_array_equal(sample["obs/flag"], (np.array(frames[:2]) % 3 == 0)[:, None])
        assert sample["action"].shape == (5, 4) and sample["obs/pos"].shape == (2, 3)
        assert sample["weight"].dtype == np.float32 and sample["weight"].shape == (5,)
        info = s.window_info(i)
        assert info["episode_id"] == ids[0] and info["range_index"] == 0
        assert info["frames"].tolist() == frames
        assert info["frame_start"] == i - 1 and info["frame_stop"] == i - 1 + 5
    np.testing.assert_array_equal(s[0]["is_pad"], [True, False, False, False, False])
    np.testing.assert_array_equal(s[10]["is_pad"], [False, False, False, True, True])
    np.testing.assert_array_equal(s[5]["is_pad"], np.zeros(5, bool))
    assert s.shapes() == {"obs/pos": (2, 3), "obs/flag": (2, 1), "action": (5, 4), "weight": (5,), "is_pad": (5,)}
    table = s.windows()
    assert table["frame_start"].tolist() == list(range(-1, 10))


def test_no_pad_defaults_like_zero_padding(store_info):
    store, _ = store_info
    s = SequenceSampler(store, "one", obs_keys=["pos"], n_obs_steps=1, horizon=4, n_action_steps=1)
    assert (s.pad_before, s.pad_after) == (0, 0)
    assert len(s) == 12 - 4 + 1
    np.testing.assert_array_equal(s[0]["action"], action_of(0, np.arange(0, 4)))
    np.testing.assert_array_equal(s[-1]["action"], action_of(0, np.arange(8, 12)))


def test_trimmed_ranges_never_cross_the_cut(store_info):
    store, ids = store_info
    s = SequenceSampler(store, "trimmed", obs_keys=["pos"], n_obs_steps=2, horizon=6, n_action_steps=4)
    meta = s.window_meta(np.arange(len(s)))
    batch = s.sample_batch(np.arange(len(s)))
    ranges = {ids[1]: [(0, 10), (18, 30)], ids[4]: [(5, 35)]}
    n_cut_windows = 0
    for i in range(len(s)):
        eid = meta["episode_id"][i]
        frames = meta["frame_index"][i]
        ep = ep_of(ids, eid)
        np.testing.assert_array_equal(batch["action"][i], action_of(ep, frames))
        kept = ranges.get(eid, [(0, LENGTHS[ep])])
        inside = [(lo <= frames.min()) and (frames.max() < hi) for lo, hi in kept]
        assert sum(inside) == 1, (eid, frames)  # every frame of a window lies in one kept range
        if eid == ids[1]:
            n_cut_windows += 1
            assert not ((frames < 10).any() and (frames >= 18).any())
    assert n_cut_windows == (10 + 1 + 3 - 6 + 1) + (12 + 1 + 3 - 6 + 1)
    # padding at the cut: the window ending the first piece repeats frame 9, the one starting the second frame 18
    first_piece = [i for i in range(len(s)) if meta["range_index"][i] == 1]
    second_piece = [i for i in range(len(s)) if meta["range_index"][i] == 2]
    assert meta["frame_index"][first_piece[-1]].tolist() == [7, 8, 9, 9, 9, 9]
    assert meta["frame_index"][second_piece[0]].tolist() == [18, 18, 19, 20, 21, 22]
    # trimmed episode 4 keeps [5, 35): padding repeats frames 5 and 34, never 4 or 35
    ep4 = [i for i in range(len(s)) if meta["episode_id"][i] == ids[4]]
    assert meta["frame_index"][ep4[0]].tolist() == [5, 5, 6, 7, 8, 9]
    assert meta["frame_index"][ep4[-1]].tolist() == [32, 33, 34, 34, 34, 34]
    assert ids[2] not in set(meta["episode_id"])


def test_sample_batch_equals_getitem(store_info):
    store, _ = store_info
    s = SequenceSampler(store, "trimmed", obs_keys=["pos", "flag", "img"], n_obs_steps=3, horizon=7,
                        n_action_steps=5, extra_keys=["rewards"], return_pad_mask=True)
    idx = np.random.default_rng(0).integers(-len(s), len(s), size=64)
    batch = s.sample_batch(idx)
    assert set(batch) == set(s.keys)
    for b, i in enumerate(idx):
        one = s[int(i)]
        for key in s.keys:
            np.testing.assert_array_equal(batch[key][b], one[key], err_msg=key)
            assert batch[key].dtype == one[key].dtype
    assert batch["obs/img"].shape == (64, 3, *IMG_SHAPE)
    np.testing.assert_array_equal(s.data.episode_frames(s.window_frames(idx)), s.window_meta(idx)["frame_index"])
    assert batch["rewards"].shape == (64, 7)
    with pytest.raises(IndexError):
        s.sample_batch([len(s)])
    with pytest.raises(IndexError):
        s[-len(s) - 1]


@pytest.mark.parametrize("cache_mb, read_frames", [(0.05, None), (0.05, 4), (64, None), (64, 1), (64, 8)])
def test_image_key_read_on_demand(store_info, cache_mb, read_frames):
    store, ids = store_info
    # 0.05 MB holds ~10 frames (exercises eviction); 64 MB holds all (default then reads whole shards ahead)
    s = SequenceSampler(store, "trimmed", obs_keys=["img"], n_obs_steps=2, horizon=4, n_action_steps=2,
                        image_cache_mb=cache_mb, image_read_frames=read_frames)
    meta = s.window_meta(np.arange(len(s)))
    for i in list(range(0, len(s), 3)) + [len(s) - 1]:
        ep = ep_of(ids, meta["episode_id"][i])
        np.testing.assert_array_equal(s[i]["obs/img"], image_of(ep, meta["frame_index"][i][:2]))
    idx = np.arange(len(s))[::-1]  # second pass: mostly cache hits, filled by read-ahead
    batch = s.sample_batch(idx)
    for b, i in enumerate(idx):
        ep = ep_of(ids, meta["episode_id"][i])
        np.testing.assert_array_equal(batch["obs/img"][b], image_of(ep, meta["frame_index"][i][:2]))
    info = s.data.cache_info()["obs/img"]
    assert 0 < info["frames"] <= info["capacity"] and info["hits"] > 0
    if cache_mb == 64 and read_frames is None:  # whole shards read ahead, clipped to the kept ranges
        assert info["frames"] == s.data.n_frames


def test_frame_weights(store_info):
    store, ids = store_info
    w1 = np.arange(LENGTHS[1], dtype=np.float32) / 100
    s = SequenceSampler(store, "trimmed", obs_keys=["pos"], n_obs_steps=2, horizon=6, n_action_steps=4,
                        frame_weights={ids[1]: w1, ids[3]: 0.5})
    meta = s.window_meta(np.arange(len(s)))
    batch = s.sample_batch(np.arange(len(s)))
    for i in range(len(s)):
        eid = meta["episode_id"][i]
        if eid == ids[1]:
            want = w1[meta["frame_index"][i]]
        elif eid == ids[3]:
            want = np.full(6, 0.5, np.float32)
        else:
            want = np.ones(6, np.float32)
        np.testing.assert_array_equal(batch["weight"][i], want)
        np.testing.assert_array_equal(s[i]["weight"], want)
    with pytest.raises(ValueError, match="frame_weights"):
        SequenceSampler(store, "trimmed", obs_keys=["pos"], horizon=6, frame_weights={ids[1]: np.ones(3)})


def test_sampler_from_shared_data_and_split(store_info):
    store, ids = store_info
    train_ids, val_ids = split_episodes(store.version("all").episode_ids, 0.4, seed=1)
    assert len(val_ids) == 2 and len(train_ids) == 3 and not set(train_ids) & set(val_ids)
    assert split_episodes(store.version("all").episode_ids, 0.4, seed=1) == (train_ids, val_ids)
    data = load_version_arrays(store, "all", ["pos", "actions"], episodes=train_ids)
    assert set(data.range_episode_ids) == set(train_ids)
    s = SequenceSampler(None, data, obs_keys=["pos"], horizon=4, n_action_steps=2)
    assert set(s.windows()["episode_id"]) <= set(train_ids)
    batches = list(s.iter_batches(8, seed=0))
    assert sum(len(b["action"]) for b in batches) == len(s)
    assert s.sample(5, np.random.default_rng(0))["action"].shape == (5, 4, 4)


def test_sampler_pickles_and_reopens_store(store_info):
    store, ids = store_info
    s = SequenceSampler(store, "trimmed", obs_keys=["img", "pos"], horizon=4, n_action_steps=2)
    clone = pickle.loads(pickle.dumps(s))
    assert clone.data.store is None
    for i in (0, len(s) // 2, len(s) - 1):
        a, b = s[i], clone[i]
        for key in s.keys:
            np.testing.assert_array_equal(a[key], b[key])


def test_loading_is_fast_enough(tmp_path):
    store = sime_data.init_store(tmp_path / "s")
    rng = np.random.default_rng(0)
    with store.writer("demo", "lift") as w:
        ids = [w.add_episode({"obs/a": rng.random((150, 9), np.float32), "obs/b": rng.random((150, 10), np.float32),
                              "actions": rng.random((150, 10), np.float32)}) for _ in range(60)]
    store.create_version("v", ids)
    import time

    t0 = time.perf_counter()
    s = SequenceSampler(store, "v", obs_keys=["a", "b"], horizon=16, n_obs_steps=2)
    assert time.perf_counter() - t0 < 5.0  # generous: a sanity bound, the benchmark measures properly
    assert len(s) == 60 * (150 + 1 + 7 - 16 + 1)


# ------------------------------------------------------------------------------------------ stats
def test_version_stats_match_numpy(store_info):
    store, ids = store_info
    stats = version_stats(store, "trimmed", block_frames=7)
    kept = [(0, 0, 12), (1, 0, 10), (1, 18, 30), (3, 0, 25), (4, 5, 35)]
    arrays = {k: np.concatenate([episode_arrays(ep, LENGTHS[ep])[k][s:t] for ep, s, t in kept])
              for k in ("obs/pos", "actions", "obs/img", "obs/flag", "rewards")}
    assert set(stats) == set(arrays)
    for key in ("obs/pos", "actions", "obs/flag", "rewards"):
        x = arrays[key].astype(np.float64)
        for name, fn in (("min", np.min), ("max", np.max), ("mean", np.mean), ("std", np.std)):
            np.testing.assert_allclose(stats[key][name], fn(x, axis=0), rtol=1e-12, atol=1e-12, err_msg=f"{key} {name}")
    img = arrays["obs/img"].astype(np.float64).reshape(-1, 3)
    for name, fn in (("min", np.min), ("max", np.max), ("mean", np.mean), ("std", np.std)):
        assert stats["obs/img"][name].shape == (3,)
        np.testing.assert_allclose(stats["obs/img"][name], fn(img, axis=0), rtol=1e-10, err_msg=f"img {name}")
    only = version_stats(store, "trimmed", ["img"], block_frames=5)
    np.testing.assert_allclose(only["obs/img"]["std"], stats["obs/img"]["std"], rtol=1e-10)


# ------------------------------------------------------------------------------------------ torch
def test_modules_import_without_torch():
    code = ("import sys; import sime_data, sime_data.sampler, sime_data.stats; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_torch_dataset_tensors(store_info):
    torch = pytest.importorskip("torch")
    from sime_data.torch_dataset import TorchWindowDataset, make_dataloader

    store, _ = store_info
    s = SequenceSampler(store, "trimmed", obs_keys=["pos", "flag", "img"], n_obs_steps=2, horizon=6,
                        n_action_steps=4, extra_keys=["rewards"])
    ds = TorchWindowDataset(s)
    assert len(ds) == len(s)
    item = ds[3]
    assert item["action"].shape == (6, 4) and item["action"].dtype == torch.float32
    assert item["obs/pos"].shape == (2, 3) and item["obs/pos"].dtype == torch.float32
    assert item["obs/img"].shape == (2, *IMG_SHAPE) and item["obs/img"].dtype == torch.uint8
    assert item["obs/flag"].dtype == torch.bool
    assert item["rewards"].dtype == torch.float32  # stored float64, cast to float32
    assert item["weight"].shape == (6,) and item["weight"].dtype == torch.float32
    np.testing.assert_array_equal(item["action"].numpy(), s[3]["action"])
    loader = make_dataloader(s, batch_size=16, shuffle=True, seed=0, drop_last=True)
    n = 0
    for batch in loader:
        assert batch["action"].shape == (16, 6, 4) and batch["action"].dtype == torch.float32
        assert batch["obs/img"].shape == (16, 2, *IMG_SHAPE)
        n += 1
    assert n == len(s) // 16
    # standard DataLoader with default collate also works (per-sample path)
    std = torch.utils.data.DataLoader(ds, batch_size=8)
    first = next(iter(std))
    assert first["action"].shape == (8, 6, 4)
    np.testing.assert_array_equal(first["action"].numpy(), s.sample_batch(np.arange(8))["action"])


def test_torch_dataloader_with_worker_processes(store_info):
    torch = pytest.importorskip("torch")
    from sime_data.torch_dataset import make_dataloader

    store, _ = store_info
    s = SequenceSampler(store, "trimmed", obs_keys=["pos", "img"], horizon=6, n_action_steps=4)
    loader = make_dataloader(s, batch_size=32, shuffle=False, num_workers=2)
    got = torch.cat([b["action"] for b in loader])
    np.testing.assert_array_equal(got.numpy(), s.sample_batch(np.arange(len(s)))["action"])
