"""SimEnv against the real robosuite simulator: keys, absolute control, exact state replay, ids."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("robosuite")
pytest.importorskip("roma")

from sime_policy.envs import SimEnv, get_task, init_state_id, rotations

LIFT_KEYS = {"robot0_eef_pos": (3,), "robot0_eef_quat": (4,), "robot0_gripper_qpos": (2,), "object": (10,)}


@pytest.fixture(scope="module")
def lift() -> SimEnv:
    env = SimEnv("lift", seed=0)
    yield env
    env.close()


def _same_obs(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_reset_and_step_shapes_and_keys(lift: SimEnv) -> None:
    obs = lift.reset()
    assert {k: v.shape for k, v in obs.items()} == LIFT_KEYS
    assert all(v.dtype == np.float64 for v in obs.values())
    assert lift.action_dim == 10 and lift.horizon == get_task("lift").horizon
    obs, reward, done, info = lift.step(lift.eef_action(gripper=-1.0))
    assert {k: v.shape for k, v in obs.items()} == LIFT_KEYS
    assert isinstance(reward, float) and done is False and info["success"] is False
    assert lift.t == 1
    with pytest.raises(ValueError, match=r"shape \(10,\)"):
        lift.step(np.zeros(7))


def test_commanding_current_pose_keeps_arm_still(lift: SimEnv) -> None:
    lift.reset()
    pos0, rot0 = lift.eef_pose()
    hold = lift.eef_action(gripper=-1.0)
    for _ in range(20):
        lift.step(hold)
    pos1, rot1 = lift.eef_pose()
    assert np.linalg.norm(pos1 - pos0) < 2e-3
    assert np.abs(rot1 - rot0).max() < 1e-2


def test_absolute_target_moves_arm_there(lift: SimEnv) -> None:
    lift.reset()
    pos0, rot0 = lift.eef_pose()
    target = lift.eef_action(gripper=-1.0)
    target[2] += 0.05
    for _ in range(40):
        lift.step(target)
    pos1, rot1 = lift.eef_pose()
    assert np.linalg.norm(pos1 - (pos0 + [0.0, 0.0, 0.05])) < 5e-3
    assert np.abs(rot1 - rot0).max() < 2e-2


def test_reset_to_is_bit_identical_including_the_trajectory(lift: SimEnv) -> None:
    state = lift.sample_init_states(1, seed=3)[0]

    def run() -> list[dict]:
        obs = lift.reset_to(state)
        rng = np.random.default_rng(0)
        start = lift.eef_action(gripper=-1.0)
        traj = [obs]
        for _ in range(15):
            action = start.copy()
            action[:3] += rng.normal(0.0, 0.02, 3)
            traj.append(lift.step(action)[0])
        return traj

    first, second = run(), run()
    assert all(_same_obs(a, b) for a, b in zip(first, second))
    assert np.array_equal(lift.reset_to(state)["object"], first[0]["object"])


def test_reset_then_reset_to_of_that_state_match(lift: SimEnv) -> None:
    obs = lift.reset()
    state = lift.get_state()
    assert _same_obs(obs, lift.reset_to(state))


def test_init_states_and_ids_are_reproducible(lift: SimEnv) -> None:
    states = lift.sample_init_states(3, seed=7)
    again = lift.sample_init_states(3, seed=7)
    other = lift.sample_init_states(3, seed=8)
    ids = [init_state_id(s) for s in states]
    assert ids == [lift.init_state_id(s) for s in again]
    assert len(set(ids)) == 3 and not set(ids) & {init_state_id(s) for s in other}
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)
    assert init_state_id(states[0].copy()) == ids[0]
    assert init_state_id(states[0].astype(np.float32)) != ids[0]  # exact bytes: rounding is a different state
    assert lift.sample_init_states(5, seed=7)[:3][2].tobytes() == states[2].tobytes()  # a prefix of one stream


def test_model_and_init_states_are_the_same_in_every_env(lift: SimEnv) -> None:
    states = lift.sample_init_states(2, seed=11)
    other = SimEnv("lift", seed=123)  # the seed drives resets only; the model comes from the task's model_seed
    try:
        assert other.model_xml() == lift.model_xml()
        assert [s.tobytes() for s in other.sample_init_states(2, seed=11)] == [s.tobytes() for s in states]
        assert _same_obs(other.reset_to(states[1]), lift.reset_to(states[1]))
    finally:
        other.close()


def test_reset_to_loads_a_given_model_xml(lift: SimEnv) -> None:
    state = lift.sample_init_states(1, seed=12)[0]
    expected = lift.reset_to(state)
    xml = lift.model_xml()
    geom = lift.env.sim.model.geom_name2id("cube_g0")
    size = lift.env.sim.model.geom_size[geom].copy()
    old = 'name="cube_g0" size="'
    start = xml.index(old) + len(old)
    stop = xml.index('"', start)
    bigger = xml[:start] + "0.03 0.03 0.03" + xml[stop:]
    try:
        lift.reset_to(state, model_xml=bigger)
        assert lift.model_xml() == bigger
        np.testing.assert_allclose(lift.env.sim.model.geom_size[geom], [0.03, 0.03, 0.03])
    finally:
        restored = lift.reset_to(state, model_xml=xml)
    np.testing.assert_array_equal(lift.env.sim.model.geom_size[geom], size)
    assert _same_obs(restored, expected)


def test_unknown_task_lists_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown task 'stack'.*can.*lift.*square.*toolhang.*transport"):
        SimEnv("stack")


@pytest.mark.parametrize(
    "task, object_dim, arms",
    [("can", 14, 1), ("square", 14, 1), ("transport", 41, 2), ("toolhang", 44, 1)],
)
def test_other_tasks_build_with_robomimic_dims(task: str, object_dim: int, arms: int) -> None:
    with SimEnv(task, seed=0) as env:
        obs = env.reset()
        assert obs["object"].shape == (object_dim,)
        assert env.action_dim == 10 * arms
        assert set(obs) == set(get_task(task).lowdim_keys)
        obs, _, done, info = env.step(env.eef_action(gripper=-1.0))
        assert not done and info["success"] is False
        assert {k: v.shape for k, v in obs.items()} == {k: v.shape for k, v in env.reset().items()}


def test_rotation_6d_round_trips() -> None:
    rotvec = np.random.default_rng(0).normal(size=(8, 3))
    matrix = rotations.rotvec_to_matrix(rotvec)
    r6 = rotations.matrix_to_rot6d(matrix)
    assert r6.shape == (8, 6)
    np.testing.assert_allclose(r6[:, :3], matrix[:, :, 0])  # first column, then second
    np.testing.assert_allclose(rotations.rot6d_to_matrix(r6), matrix, atol=1e-12)
    np.testing.assert_allclose(rotations.rot6d_to_matrix(2.0 * r6), matrix, atol=1e-12)  # Gram-Schmidt
    np.testing.assert_allclose(rotations.rotvec_to_matrix(rotations.rot6d_to_rotvec(r6)), matrix, atol=1e-12)
    np.testing.assert_allclose(rotations.quat_to_matrix(rotations.matrix_to_quat(matrix)), matrix, atol=1e-12)


def _offscreen_rendering_works() -> tuple[bool, str]:
    """Probe MuJoCo offscreen rendering in a subprocess (a broken GL stack may crash the process)."""
    code = (
        "import mujoco; m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size=\".1\"/></worldbody></mujoco>');"
        "d = mujoco.MjData(m); r = mujoco.Renderer(m, 8, 8); r.update_scene(d); print(r.render().shape)"
    )
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    try:
        done = subprocess.run([sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return False, "offscreen rendering probe timed out"
    if done.returncode != 0 or "(8, 8, 3)" not in done.stdout:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return False, f"MuJoCo offscreen rendering (MUJOCO_GL={env['MUJOCO_GL']}) does not work here: {tail}"
    return True, ""


def test_camera_observations() -> None:
    works, reason = _offscreen_rendering_works()
    if not works:
        pytest.skip(reason + " (install libegl1 libegl-mesa0 libgl1-mesa-dri, or libosmesa6 with MUJOCO_GL=osmesa)")
    with SimEnv("lift", cameras=True, image_size=84, seed=0) as env:
        state = env.sample_init_states(1, seed=0)[0]
        obs = env.reset_to(state)
        for key in ("agentview_image", "robot0_eye_in_hand_image"):
            assert obs[key].shape == (84, 84, 3) and obs[key].dtype == np.uint8
            assert obs[key].std() > 1.0  # not a blank frame
        assert _same_obs(obs, env.reset_to(state))
        obs, *_ = env.step(env.eef_action())
        assert obs["agentview_image"].shape == (84, 84, 3)
        # upright: the table (bright, lower half) is below the robot; the eye-in-hand fingers are at the bottom
        view = obs["agentview_image"].astype(float).mean(axis=(1, 2))
        assert view[60:].mean() > view[:20].mean()
