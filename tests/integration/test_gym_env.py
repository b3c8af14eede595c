"""Gymnasium wrapper around the real Lift simulator: check_env, seeding, episode ends, rendering, vector rollouts."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("robosuite")
pytest.importorskip("diffusers")
gymnasium = pytest.importorskip("gymnasium")

import torch  # noqa: E402
from gymnasium.utils.env_checker import check_env  # noqa: E402

from sime_policy.policy.config import get_preset  # noqa: E402
from sime_policy.envs import SimEnv, init_state_id  # noqa: E402
from sime_policy.envs.gym_env import SimeGymEnv, env_id, make_env  # noqa: E402
from sime_policy.experts import make_expert  # noqa: E402
from sime_policy.policy.exploration import Exploration  # noqa: E402
from sime_policy.policy.normalizer import Normalizer  # noqa: E402
from sime_policy.policy.diffusion import DiffusionPolicy, ObsSpec  # noqa: E402
from sime_policy.collect.batched import Item, run_batched  # noqa: E402
from sime_policy.collect.seeding import episode_seed  # noqa: E402

HORIZON = 50  # the scripted expert lifts the cube in about 37 steps
LOWDIM = {"robot0_eef_pos": (3,), "robot0_eef_quat": (4,), "robot0_gripper_qpos": (2,), "object": (10,)}
#: the only warnings check_env may give: infinite observation bounds (positions, quaternions and object poses
#: have no fixed range) and positions in world coordinates rather than a normalised [-1, 1] action space
ACCEPTED_WARNINGS = ("A Box observation space minimum value is -infinity",
                     "A Box observation space maximum value is infinity",
                     "For Box action spaces, we recommend using a symmetric and normalized space")


@pytest.fixture(scope="module")
def env():
    """A registered Lift env (gymnasium.make wrappers included), horizon HORIZON."""
    torch.set_num_threads(1)
    made = make_env("lift", horizon=HORIZON)
    yield made
    made.close()


def _checker_warnings(target, allowed: tuple[str, ...]) -> list[str]:
    """Run check_env, returning the warnings it gave that are not in `allowed`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(target)
    messages = [str(w.message) for w in caught if not issubclass(w.category, ResourceWarning)]
    return [m for m in messages if not any(a in m for a in allowed)]


def test_check_env_passes_with_only_the_documented_warnings(env):
    assert env_id("lift") == "sime/Lift-v0" and env.spec.id == "sime/Lift-v0"
    assert env.spec.max_episode_steps == HORIZON and env.unwrapped.horizon == HORIZON
    assert _checker_warnings(env.unwrapped, ACCEPTED_WARNINGS) == []


def test_spaces_follow_the_task_conventions(env):
    obs_space = env.observation_space
    assert {k: v.shape for k, v in obs_space.spaces.items()} == LOWDIM
    assert all(v.dtype == np.float64 for v in obs_space.spaces.values())
    space = env.action_space
    assert space.shape == (10,) and space.dtype == np.float64
    np.testing.assert_array_equal(space.low[3:], -np.ones(7))
    np.testing.assert_array_equal(space.high[3:], np.ones(7))
    base = np.asarray(env.unwrapped.sim_env.env.robots[0].base_pos)
    np.testing.assert_allclose((space.low[:3] + space.high[:3]) / 2, base)
    obs, _ = env.reset(seed=1)
    assert obs in obs_space
    hold = env.unwrapped.sim_env.eef_action(gripper=-1.0)  # what the scripted expert and the policies output
    assert hold in space


def test_seeded_resets_reproduce_initial_states(env):
    obs_a, info_a = env.reset(seed=7)
    second = env.reset()[1]["init_state"]
    obs_b, info_b = env.reset(seed=7)
    assert info_a["init_state_id"] == info_b["init_state_id"] == init_state_id(info_a["init_state"])
    assert all(np.array_equal(obs_a[k], obs_b[k]) for k in obs_a)
    assert env.reset(seed=8)[1]["init_state_id"] != info_a["init_state_id"]
    # the same states, in the same order, as the rollout runner's sample_init_states(K, seed)
    expected = env.unwrapped.sim_env.sample_init_states(2, 7)
    assert np.array_equal(info_a["init_state"], expected[0]) and np.array_equal(second, expected[1])
    # an explicit initial state is restored exactly, whatever the seed
    obs_c, info_c = env.reset(seed=99, options={"init_state": info_a["init_state"]})
    assert info_c["init_state_id"] == info_a["init_state_id"]
    assert all(np.array_equal(obs_a[k], obs_c[k]) for k in obs_a)
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"state": info_a["init_state"]})


def test_terminated_on_success_and_truncated_at_the_horizon(env):
    obs, info = env.reset(seed=0)
    expert = make_expert(env.unwrapped.sim_env)
    expert.reset()
    for t in range(HORIZON):
        obs, reward, terminated, truncated, step_info = env.step(expert.act(obs))
        if terminated or truncated:
            break
    assert terminated and not truncated and step_info["success"] and t + 1 < HORIZON
    assert step_info["init_state_id"] == info["init_state_id"]

    env.reset(seed=0)
    hold = env.unwrapped.sim_env.eef_action(gripper=-1.0)
    flags = [env.step(hold)[2:4] for _ in range(HORIZON)]
    assert flags[:-1] == [(False, False)] * (HORIZON - 1) and flags[-1] == (False, True)


def test_camera_env_has_image_spaces_and_renders():
    """Camera observations are uint8 Boxes and render() returns the first camera's frame.

    (check_env on a camera env passes with the same warnings plus "no spec"; it is not run here because
    offscreen rendering makes each reset take about a second on a loaded CPU.)
    """
    cam = SimeGymEnv("lift", cameras=True, image_size=32, horizon=HORIZON, render_mode="rgb_array")
    try:
        assert cam.metadata["render_modes"] == ["rgb_array"]
        for key in ("agentview_image", "robot0_eye_in_hand_image"):
            space = cam.observation_space[key]
            assert space.dtype == np.uint8 and space.shape == (32, 32, 3) and space.low.min() == 0
        obs, _ = cam.reset(seed=3)
        assert obs in cam.observation_space
        frame = cam.render()
        assert frame.dtype == np.uint8 and frame.shape == (32, 32, 3) and np.array_equal(frame, obs["agentview_image"])
        assert frame.std() > 0  # a real image, not a blank buffer
        frame[:] = 0  # the caller's copy: the env's own observation is untouched
        assert cam.render().std() > 0
    finally:
        cam.close()
        cam.close()  # closing twice is allowed
    with pytest.raises(ValueError, match="cameras=True"):
        SimeGymEnv("lift", render_mode="rgb_array")  # refused before a simulator is built


# ---------------------------------------------------------------------------- gymnasium.vector in the batched runner
def _random_policy(sim: SimEnv) -> DiffusionPolicy:
    """A tiny randomly initialised policy whose outputs stay within 5 cm of the current pose (as in bench_rollout)."""
    config = get_preset("lift_lowdim_cpu").with_overrides(down_dims=(16, 32), diffusion_step_embed_dim=16).policy
    obs = sim.reset()
    specs, stats = {}, {}
    for key in config.obs_keys:
        value = obs[key[4:]]
        specs[key] = ObsSpec(tuple(value.shape), value.dtype.str)
        stats[key] = {"min": value - 0.5, "max": value + 0.5}
    hold = sim.eef_action(gripper=-1.0)
    low, high = hold - 0.05, hold + 0.05
    low[9], high[9] = -1.0, 1.0
    stats["actions"] = {"min": low, "max": high}
    torch.manual_seed(0)
    return DiffusionPolicy(config, sim.action_dim, specs, Normalizer(stats)).eval()


def test_sync_vector_env_gives_the_same_episodes_as_a_list_of_sim_envs():
    vector = gymnasium.vector.SyncVectorEnv([lambda: make_env("lift", horizon=12) for _ in range(2)])
    try:
        sims = [sub.unwrapped.sim_env for sub in vector.envs]
        policy = _random_policy(sims[0])
        states = sims[0].sample_init_states(3, 11)
        items = [Item(init_state_id(s), s, t, episode_seed(11, init_state_id(s), t)) for s, t in zip(states, [0, 1, 0])]
        explore = Exploration("sime", noise_scale=0.1, tau1=0.0, tau2=1.0)

        def run(envs) -> list[tuple]:
            out = []
            run_batched(envs, policy, items, explore,
                        lambda item, ok, steps, slot: out.append((item.state_id, item.trial, ok, steps,
                                                                  slot.episode_arrays())))
            return out

        listed, vectored = run(sims), run(vector)
        assert [x[:4] for x in vectored] == [x[:4] for x in listed]  # same order, success and length
        assert [x[3] for x in listed] == [12, 12, 12]
        for a, b in zip(listed, vectored):
            assert a[4].keys() == b[4].keys()
            for key in a[4]:
                assert a[4][key].tobytes() == b[4][key].tobytes(), key
        assert not np.array_equal(listed[0][4]["actions"], listed[2][4]["actions"])  # different states, different runs
    finally:
        vector.close()
