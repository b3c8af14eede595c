"""End to end on the simulated rig: teleop recording, discard/crash safety, cameras, evaluation, cleaning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is first imported: it picks its GL backend then
pytest.importorskip("robosuite")

import sime_data  # noqa: E402
from hardware.cleaning import StaticThresholds, clean_version, mask_to_ranges, moving_mask  # noqa: E402
from hardware.cli import main  # noqa: E402
from hardware.config import rig_config_from_dict  # noqa: E402
from hardware.errors import DeviceStateError  # noqa: E402
from hardware.recorder import record_teleop  # noqa: E402
from hardware.rig import Rig  # noqa: E402

RATE = 25.0
WORKSPACE = {"low": [-0.3, -0.3, 0.8], "high": [0.3, 0.3, 1.2]}


def rig_dict(episodes: list, on_success: str | None = None, cameras: list | None = None, rate: float = RATE,
             max_steps: int = 80) -> dict:
    keyboard = {"backend": "scripted", "episodes": episodes}
    if on_success:
        keyboard["on_success"] = on_success
    return {"name": "test-sim", "task": "lift_rig", "rate_hz": rate, "max_steps": max_steps, "workspace": WORKSPACE,
            "arm": {"backend": "sim", "max_gripper_width": 0.08}, "cameras": cameras or [],
            "teleop": {"backend": "scripted"}, "keyboard": keyboard, "sim": {"task": "lift", "seed": 0}}


def write_config(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> tuple[sime_data.Store, list[str], float]:
    """Two teleoperated demos recorded on the simulated rig (operator finishes when the cube is up)."""
    root = tmp_path_factory.mktemp("hw")
    store = sime_data.init_store(root / "store")
    config = rig_config_from_dict(rig_dict([[{"at": 1, "key": "start"}]], on_success="finish"))
    with Rig(config) as rig:
        result = record_teleop(rig, store, episodes=2)
    store.create_version("lift_rig/demos", result.episode_ids)
    return store, result.episode_ids, config.period_s


def test_teleop_demo_recorded_and_read_back(demos) -> None:
    store, ids, period = demos
    assert len(ids) == 2
    rows = store.episodes().set_index("episode_id").loc[ids]
    assert set(rows["source"]) == {"teleop"} and set(rows["task"]) == {"lift_rig"} and rows["success"].all()
    for episode_id in ids:
        data = store.read_episode(episode_id)
        n = len(data["actions"])
        assert 20 <= n < 80  # the expert lifts the cube in ~35 steps; the operator then pressed finish
        assert data["obs/tcp_pose"].shape == (n, 7) and data["obs/joints"].shape == (n, 7)
        assert data["obs/gripper_width"].shape == (n, 1) and data["actions"].shape == (n, 10)
        dt = np.diff(data["timestamps"])
        assert (dt > 0).all()  # monotonic
        assert np.median(dt) == pytest.approx(period, rel=0.3)  # at about the configured rate
        # commanded actions stay in the workspace, and the arm follows them (next-step TCP near the command)
        assert (data["actions"][:, :3] >= np.array(WORKSPACE["low"]) - 1e-9).all()
        assert (data["actions"][:, :3] <= np.array(WORKSPACE["high"]) + 1e-9).all()
        err = np.linalg.norm(data["obs/tcp_pose"][1:, :3] - data["actions"][:-1, :3], axis=1)
        assert np.median(err) < 0.05  # OSC lags a moving target by a few centimetres
        assert data["actions"][0, 9] == -1.0 and data["actions"][-1, 9] == 1.0  # opened, then closed on the cube
        assert data["obs/gripper_width"][-1, 0] < data["obs/gripper_width"][:, 0].max() - 0.005  # closed on it
        meta = json.loads(store.episode(episode_id)["meta"])
        assert meta["rig"] == "test-sim" and meta["rate_hz"] == RATE


def test_discard_and_crash_leave_no_episode(tmp_path: Path) -> None:
    store = sime_data.init_store(tmp_path / "store")
    script = [[{"at": 1, "key": "start"}, {"at": 6, "key": "discard"}],
              [{"at": 1, "key": "start"}, {"at": 4, "key": "quit"}]]
    config = rig_config_from_dict(rig_dict(script))
    with Rig(config) as rig:
        result = record_teleop(rig, store, episodes=3)
    assert result.episode_ids == [] and result.discarded == 2 and result.quit
    assert store.episodes().empty
    assert not [p for p in (tmp_path / "store" / "data").iterdir() if p.is_dir()]  # not even unreferenced frames

    config = rig_config_from_dict(rig_dict([[{"at": 1, "key": "start"}]]))
    with Rig(config) as rig:
        reads = {"n": 0}
        original = rig.teleoperator.read

        def failing_read():
            reads["n"] += 1
            if reads["n"] == 8:
                raise RuntimeError("haptic device unplugged")
            return original()

        rig.teleoperator.read = failing_read
        with pytest.raises(RuntimeError, match="unplugged"):
            record_teleop(rig, store, episodes=1)
    assert store.episodes().empty
    assert not [p for p in (tmp_path / "store" / "data").iterdir() if p.is_dir()]
    assert not rig.arm.connected
    with pytest.raises(DeviceStateError, match="not connected"):
        rig.arm.state()


def _rendering_works() -> tuple[bool, str]:
    code = ("import mujoco; m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size=\".1\"/></worldbody>"
            "</mujoco>'); r = mujoco.Renderer(m, 8, 8); r.update_scene(mujoco.MjData(m)); print(r.render().shape)")
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    try:
        done = subprocess.run([sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return False, "rendering probe timed out"
    if "(8, 8, 3)" not in done.stdout:
        return False, f"MuJoCo offscreen rendering (MUJOCO_GL={env['MUJOCO_GL']}) does not work here"
    return True, ""


def test_cameras_record_color_and_depth(tmp_path: Path) -> None:
    works, reason = _rendering_works()
    if not works:
        pytest.skip(reason + " (install libegl1 libegl-mesa0 libgl1-mesa-dri)")
    store = sime_data.init_store(tmp_path / "store")
    cams = [{"name": "side", "backend": "sim", "sim_camera": "agentview", "width": 32, "height": 24},
            {"name": "wrist", "backend": "sim", "sim_camera": "robot0_eye_in_hand", "width": 32, "height": 24,
             "depth": False, "resize": [16, 12]}]
    config = write_config(tmp_path / "rig.yaml", rig_dict([[{"at": 1, "key": "start"}, {"at": 7, "key": "finish"}]],
                                                          cameras=cams, rate=10.0))
    assert main(["check", "--config", str(config)]) == 0  # every simulated device connects and reads
    assert main(["teleop", "--config", str(config), "--store", str(tmp_path / "store"), "--version", "cam/demos"]) == 0
    (episode_id,) = store.version("cam/demos").episode_ids
    data = store.read_episode(episode_id)
    assert data["obs/side_color"].shape == (6, 24, 32, 3) and data["obs/side_color"].dtype == np.uint8
    assert data["obs/side_depth"].shape == (6, 24, 32) and data["obs/side_depth"].dtype == np.uint16
    assert "obs/wrist_depth" not in data and data["obs/wrist_color"].shape == (6, 12, 16, 3)  # resized
    assert data["obs/wrist_color"].std() > 1.0
    depth_m = data["obs/side_depth"].astype(float) / 1000.0
    assert 0.3 < np.median(depth_m) < 5.0  # the table seen from the side camera, in metres
    assert (np.diff(data["camera_timestamps/side"]) > 0).all()
    with Rig(rig_config_from_dict(rig_dict([[{"at": 1, "key": "start"}]], cameras=cams[:1]))) as rig:
        intr = rig.cameras[0].intrinsics()
        assert (intr.width, intr.height) == (32, 24) and intr.fx > 0 and intr.ppx == 16


@pytest.fixture(scope="module")
def checkpoint(demos, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A tiny policy trained for a few steps on the teleoperated demos (tcp pose + gripper width in)."""
    pytest.importorskip("diffusers")
    from sime_policy.policy.config import get_preset
    from sime_policy.training.trainer import train

    store, _, _ = demos
    config = get_preset("lift_lowdim_cpu").with_overrides(
        steps=4, down_dims=(16, 32), diffusion_step_embed_dim=16, batch_size=16, val_ratio=0.0, warmup_steps=1,
        obs_keys=("obs/tcp_pose", "obs/gripper_width"))
    result = train(store, "lift_rig/demos", config, tmp_path_factory.mktemp("run"), progress=False)
    return result.final_checkpoint, result.checkpoint_id


def test_evaluation_with_exploration_is_stored_with_its_settings(demos, checkpoint, tmp_path: Path) -> None:
    store, _, _ = demos
    ckpt, ckpt_id = checkpoint
    script = [[{"at": 1, "key": "start"}, {"at": 9, "key": "failure"}], [{"at": 0, "key": "start"}]]
    config = write_config(tmp_path / "rig.yaml", rig_dict(script, max_steps=12))
    args = ["eval", "--checkpoint", str(ckpt), "--config", str(config), "--store", str(store.location),
            "--episodes", "2", "--explore", "sime", "--noise-scale", "0.5", "--ensemble", "act", "--k", "0.1",
            "--replan", "2", "--max-rot-step", "0.2", "--scene", "table-A", "--round", "1", "--version", "real/eval"]
    assert main(args) == 0
    ids = store.version("real/eval").episode_ids
    rows = store.episodes(version="real/eval").set_index("episode_id").loc[ids]
    assert list(rows["success"]) == [False, False]  # marked failure; then ran out of steps unmarked
    assert set(rows["source"]) == {"rollout"} and set(rows["checkpoint"]) == {ckpt_id}
    assert set(rows["explore_mode"]) == {"sime"} and set(rows["noise_scale"]) == {0.5}
    assert set(rows["tau1"]) == {0.0} and set(rows["tau2"]) == {1.0} and set(rows["round"]) == {1}
    assert list(rows["init_state_id"]) == ["table-A", "table-A"] and list(rows["trial"]) == [0, 1]
    assert list(rows["length"]) == [7, 12]  # polls 2..8 are steps 0..6; poll 9 marks the failure
    assert rows["seed"].nunique() == 2
    metas = [json.loads(m) for m in rows["meta"]]
    assert {m["ensemble"] for m in metas} == {"act"} and {m["replan_every"] for m in metas} == {2}
    assert [m["timeout"] for m in metas] == [False, True] and metas[0]["chunks"] == 4
    data = store.read_episode(ids[1])
    assert set(np.unique(data["actions"][:, 9])) <= {-1.0, 1.0}  # hysteresis output
    assert (data["actions"][:, :3] >= np.array(WORKSPACE["low"]) - 1e-9).all()
    assert (data["actions"][:, :3] <= np.array(WORKSPACE["high"]) + 1e-9).all()
    assert data["policy_actions"].shape == (12, 10) and (np.diff(data["timestamps"]) > 0).all()
    # the same selection works as for simulated rollouts
    assert store.sql("SELECT count(*) AS n FROM episodes WHERE explore_mode = 'sime' AND NOT success")["n"][0] == 2


def test_cleaning_version_removes_exactly_the_static_frames(tmp_path: Path, capsys) -> None:
    store = sime_data.init_store(tmp_path / "store")
    r6 = [1, 0, 0, 0, 1, 0]

    def act(x: float, g: float = -1.0) -> np.ndarray:
        return np.array([x, 0, 1.0, *r6, g])

    # episode a: 2 idle frames at the start, motion, a 3-frame pause, motion, gripper closes, idle end
    xs_a = [0, 0, 0, .01, .02, .02, .02, .02, .03, .04, .04, .04]
    gs_a = [-1] * 10 + [1, 1]
    xs_b = [0, .01, .02, .03]  # moves every frame: untouched
    ids = []
    with store.writer("teleop", "lift_rig") as writer:
        for xs, gs, ok in ((xs_a, gs_a, True), (xs_b, [-1] * 4, True), (xs_b, [-1] * 4, False)):
            for x, g in zip(xs, gs):
                writer.add_step(obs={"tcp_pose": np.zeros(7)}, action=act(x, g), timestamp=0.0)
            ids.append(writer.finish(success=ok))
    store.create_version("raw", ids)
    expected_a = [(0, 1), (3, 5), (8, 11)]  # frames 1-2, 5-7 and 11 are static
    th = StaticThresholds(pos_eps=0.005, rot_eps=0.01, grip_eps=0.5)
    assert mask_to_ranges(moving_mask(np.stack([act(x, g) for x, g in zip(xs_a, gs_a)]), th)) == expected_a
    assert main(["clean", "--store", str(tmp_path / "store"), "--version", "raw", "--name", "clean",
                 "--pos-eps", "0.005", "--grip-eps", "0.5", "--drop-failed"]) == 0
    assert "created clean: 2 episode(s)" in capsys.readouterr().out
    version = store.version("clean")
    assert version.ranges() == {ids[0]: expected_a, ids[1]: [(0, 4)]}
    assert version.parents == ["raw"] and store.version("raw").n_frames == 12 + 4 + 4  # base untouched
    assert store.read_episode(ids[0])["actions"].shape == (12, 10)  # nothing deleted
    kept = clean_version(store, "raw", "clean-all", th)  # failed episodes kept without --drop-failed
    assert set(kept.episode_ids) == set(ids)


def test_async_inference_keeps_recording_every_step(demos, checkpoint, tmp_path: Path) -> None:
    store, _, _ = demos
    ckpt, _ = checkpoint
    config = write_config(tmp_path / "rig.yaml", rig_dict([[{"at": 0, "key": "start"}, {"at": 10, "key": "success"}]]))
    assert main(["eval", "--checkpoint", str(ckpt), "--config", str(config), "--store", str(store.location),
                 "--async-inference", "--ensemble", "hato", "--replan", "1", "--version", "real/async"]) == 0
    (episode_id,) = store.version("real/async").episode_ids
    row = store.episode(episode_id)
    meta = json.loads(row["meta"])
    assert row["success"] and row["length"] == 9 and meta["async_inference"] and meta["ensemble"] == "hato"
    assert 1 <= meta["chunks"] <= 9 and meta["held_steps"] <= 9
    assert row["explore_mode"] == "none" and row["init_state_id"] is None
