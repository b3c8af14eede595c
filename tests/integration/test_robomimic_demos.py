"""robomimic delta-action demos converted to absolute actions, checked by open-loop replay in the real simulator."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

pytest.importorskip("robosuite")

import sime_data
from sime_data.errors import ImportFormatError, VersionExistsError
from sime_policy.envs import SimEnv, rotations
from sime_policy.envs.wrapper import _quiet_robosuite
from sime_policy.collect.robomimic_demos import DELTA_KEY, delta_scaling, import_robomimic_demos

N_DEMOS = 3
STEPS = 40
OBS_KEYS = {"robot0_eef_pos": "robot0_eef_pos", "robot0_eef_quat": "robot0_eef_quat",
            "robot0_gripper_qpos": "robot0_gripper_qpos", "object": "object-state"}


def _scripted_delta(obs: dict, t: int, rng: np.random.Generator) -> np.ndarray:
    """Reach above the cube, descend, grasp and lift, with a small wobbling rotation: a 7-D delta action."""
    eef, cube = obs["robot0_eef_pos"], obs["cube_pos"]
    if t < 15:
        target, grip = cube + np.array([0.0, 0.0, 0.08]), -1.0
    elif t < 25:
        target, grip = cube + np.array([0.0, 0.0, 0.0]), -1.0
    elif t < 30:
        target, grip = eef, 1.0
    else:
        target, grip = eef + np.array([0.0, 0.0, 0.05]), 1.0
    dpos = np.clip((target - eef) / 0.05, -1.0, 1.0)
    drot = np.array([0.0, 0.0, 0.3 * np.sin(t / 4.0)]) + rng.normal(0.0, 0.05, 3)
    return np.concatenate([dpos, drot, [grip]])


def _write_delta_file(path: Path) -> None:
    """Record robomimic-layout demos with robosuite's default delta OSC_POSE controller."""
    _quiet_robosuite()
    import robosuite as suite
    from robosuite.controllers import load_composite_controller_config

    controller = load_composite_controller_config(controller="BASIC")  # default: delta OSC_POSE, base frame
    controller["body_parts"] = {"right": controller["body_parts"]["right"]}  # Panda has one arm
    env = suite.make("Lift", robots="Panda", controller_configs=controller, has_renderer=False,
                     has_offscreen_renderer=False, use_camera_obs=False, hard_reset=False, control_freq=20)
    rng = np.random.default_rng(0)
    total = 0
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        for i in range(N_DEMOS):
            obs = env.reset()
            model_xml = env.sim.model.get_xml()
            states, actions, rewards, dones = [], [], [], []
            obs_rec: dict[str, list] = {k: [] for k in OBS_KEYS}
            for t in range(STEPS):
                states.append(np.array(env.sim.get_state().flatten()))
                for key, src in OBS_KEYS.items():
                    obs_rec[key].append(np.array(obs[src]))
                action = _scripted_delta(obs, t, rng)
                obs, reward, _, _ = env.step(action)
                actions.append(action)
                rewards.append(reward)
                dones.append(t == STEPS - 1)
            grp = data.create_group(f"demo_{i}")
            grp.attrs["num_samples"] = STEPS
            grp.attrs["model_file"] = model_xml
            grp.create_dataset("states", data=np.array(states))
            grp.create_dataset("actions", data=np.array(actions))
            grp.create_dataset("rewards", data=np.array(rewards))
            grp.create_dataset("dones", data=np.array(dones, dtype=np.int64))
            for key, values in obs_rec.items():
                grp.create_dataset(f"obs/{key}", data=np.array(values))
            total += STEPS
        data.attrs["total"] = total
        data.attrs["env_args"] = json.dumps({"env_name": "Lift", "type": 1, "env_kwargs": {
            "robots": ["Panda"], "controller_configs": controller, "control_freq": 20}})
    env.close()


@pytest.fixture(scope="module")
def delta_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("robomimic") / "lift_delta.hdf5"
    _write_delta_file(path)
    return path


@pytest.fixture(scope="module")
def imported(delta_file: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[sime_data.Store, list[str]]:
    store = sime_data.init_store(tmp_path_factory.mktemp("rm_store") / "store")
    ids = import_robomimic_demos(store, delta_file, task="lift", progress=False)
    return store, ids


def test_layout_and_versions(imported: tuple[sime_data.Store, list[str]], delta_file: Path) -> None:
    store, ids = imported
    assert len(ids) == N_DEMOS
    assert store.version("lift/demos").episode_ids == ids
    assert not store.has_version("lift/core_5")
    rows = store.episodes(version="lift/demos").set_index("episode_id").loc[ids]
    assert set(rows["source"]) == {"demo"} and set(rows["task"]) == {"lift"}
    with h5py.File(delta_file, "r") as f:
        for i, episode_id in enumerate(ids):
            demo = f[f"data/demo_{i}"]
            data = store.read_episode(episode_id)
            assert data["actions"].shape == (STEPS, 10)
            np.testing.assert_array_equal(data[DELTA_KEY], demo["actions"][()])
            np.testing.assert_array_equal(data["states"], demo["states"][()])
            for key in OBS_KEYS:
                np.testing.assert_array_equal(data[f"obs/{key}"], demo[f"obs/{key}"][()])
            np.testing.assert_array_equal(data["actions"][:, 9], demo["actions"][:, 6])
            np.testing.assert_allclose(np.linalg.norm(data["actions"][:, 3:6], axis=1), 1.0, atol=1e-9)
            assert store.model_xml(episode_id) is not None


def test_first_goal_matches_the_delta_controller(imported: tuple[sime_data.Store, list[str]], delta_file: Path) -> None:
    """The converted first action is exactly the goal robosuite's delta controller set from the first state."""
    store, ids = imported
    data = store.read_episode(ids[0])
    with h5py.File(delta_file, "r") as f:
        xml = f["data/demo_0"].attrs["model_file"]
    with SimEnv("lift") as env:
        env.reset_to(data["states"][0], model_xml=xml)
        pos, rot = env.eef_pose()
        scale = delta_scaling({})
        expected = pos + scale.scale(data[DELTA_KEY][0, :6])[:3]
        np.testing.assert_allclose(data["actions"][0, :3], expected, atol=1e-12)
        goal_rot = rotations.rotvec_to_matrix(scale.scale(data[DELTA_KEY][0, :6])[3:]) @ rot  # Lift's base is unrotated
        np.testing.assert_allclose(data["actions"][0, 3:9], rotations.matrix_to_rot6d(goal_rot), atol=1e-9)


def test_open_loop_absolute_replay_tracks_the_demo(imported: tuple[sime_data.Store, list[str]],
                                                   delta_file: Path) -> None:
    """Executing the converted absolute actions open loop reproduces the recorded end-effector path."""
    store, ids = imported
    pos_err, rot_err = [], []
    with SimEnv("lift") as env, h5py.File(delta_file, "r") as f:
        for i, episode_id in enumerate(ids):
            data = store.read_episode(episode_id)
            xml = f[f"data/demo_{i}"].attrs["model_file"]
            env.reset_to(data["states"][0], model_xml=xml)
            for t in range(STEPS - 1):
                obs, _, _, _ = env.step(data["actions"][t])
                pos_err.append(np.linalg.norm(obs["robot0_eef_pos"] - data["obs/robot0_eef_pos"][t + 1]))
                r_sim = rotations.quat_to_matrix(obs["robot0_eef_quat"])
                r_rec = rotations.quat_to_matrix(data["obs/robot0_eef_quat"][t + 1])
                rot_err.append(np.linalg.norm(rotations.matrix_to_rotvec(r_sim.T @ r_rec)))
    mean_pos, mean_rot = float(np.mean(pos_err)), float(np.mean(rot_err))
    print(f"open-loop tracking: mean pos error {mean_pos * 1000:.2f} mm (max {max(pos_err) * 1000:.2f} mm), "
          f"mean rot error {np.degrees(mean_rot):.2f} deg")
    assert mean_pos < 0.005  # measured ~0.8 mm; composing the rotation in the wrong order gives ~8 mm / 8 deg
    assert mean_rot < 0.02


def test_wrong_action_width_is_refused(imported: tuple[sime_data.Store, list[str]], delta_file: Path,
                                       tmp_path: Path) -> None:
    store, _ = imported
    bad = tmp_path / "abs.hdf5"
    with h5py.File(delta_file, "r") as src, h5py.File(bad, "w") as dst:
        src.copy("data", dst)
        del dst["data/demo_1/actions"]
        dst["data/demo_1"].create_dataset("actions", data=np.zeros((STEPS, 10)))
    before = set(store.episodes()["episode_id"]), store.versions()["name"].tolist()
    with pytest.raises(ImportFormatError, match=r"demo_1/actions has shape \(40, 10\), expected \(N, 7\)"):
        import_robomimic_demos(store, bad, task="lift", version="bad", progress=False)
    assert (set(store.episodes()["episode_id"]), store.versions()["name"].tolist()) == before


def test_bad_files_leave_the_store_unchanged(imported: tuple[sime_data.Store, list[str]], delta_file: Path,
                                             tmp_path: Path) -> None:
    store, _ = imported
    before = set(store.episodes()["episode_id"]), store.versions()["name"].tolist()
    garbage = tmp_path / "garbage.hdf5"
    garbage.write_bytes(b"not an hdf5 file")
    with pytest.raises(ImportFormatError, match="cannot be opened as HDF5"):
        import_robomimic_demos(store, garbage, task="lift", version="g", progress=False)
    no_states = tmp_path / "no_states.hdf5"
    with h5py.File(delta_file, "r") as src, h5py.File(no_states, "w") as dst:
        src.copy("data", dst)
        del dst["data/demo_2/states"]
    with pytest.raises(ImportFormatError, match="no 2-D 'states'"):
        import_robomimic_demos(store, no_states, task="lift", version="ns", progress=False)
    with pytest.raises(ImportFormatError, match="'Lift', but task 'can'"):
        import_robomimic_demos(store, delta_file, task="can", progress=False)
    with pytest.raises(VersionExistsError, match="lift/demos"):
        import_robomimic_demos(store, delta_file, task="lift", progress=False)
    assert (set(store.episodes()["episode_id"]), store.versions()["name"].tolist()) == before


def test_absolute_controller_files_are_refused() -> None:
    with pytest.raises(ImportFormatError, match="already absolute"):
        delta_scaling({"env_kwargs": {"controller_configs": {"type": "OSC_POSE", "control_delta": False}}})
    scaling = delta_scaling({"env_kwargs": {"controller_configs": {"type": "OSC_POSE", "control_delta": True}}})
    assert scaling.ref_frame == "world"
    np.testing.assert_allclose(scaling.scale(np.array([1, -1, 2, 1, 0, -3.0])), [0.05, -0.05, 0.05, 0.5, 0, -0.5])


def test_sime_demos_import_robomimic_command(delta_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from sime_policy.cli import main

    location = str(tmp_path / "cli_store")
    assert main(["demos", "--task", "lift", "--store", location, "--import-robomimic", str(delta_file),
                 "--no-progress"]) == 0
    assert "imported 3 lift demos" in capsys.readouterr().out
    store = sime_data.open_store(location)
    assert store.has_version("lift/demos")
    assert store.episodes(version="lift/demos")["source"].eq("demo").all()
    assert main(["demos", "--task", "lift", "--store", location, "--import-robomimic", str(delta_file),
                 "--no-progress"]) == 2
    assert "already exist" in capsys.readouterr().err
