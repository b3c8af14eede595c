"""Gymnasium interface to SimEnv: `SimeGymEnv`, registered ids ``sime/<Task>-v0``, `make_env`, and a vector adapter.

Spaces (built from the task's conventions in ``tasks.py`` and ``wrapper.py``):

- ``observation_space``: a ``spaces.Dict`` with one ``Box`` per observation key SimEnv returns, float64
  (as SimEnv returns them) with infinite bounds for the low-dimensional keys (positions, quaternions and
  object states have no fixed range), and ``uint8`` ``[0, 255]`` images ``(size, size, 3)`` per camera when
  ``cameras=True``.
- ``action_space``: the absolute 10-D-per-arm action of ``SimEnv.to_robosuite_action``, float64:
  ``[x, y, z]`` in the world frame, bounded by a box of half-width ``REACH_M`` around the arm's base (the
  absolute OSC_POSE controller clips nothing, but a Panda reaches 0.855 m to its flange and about 0.96 m to
  the grip site it controls, so targets outside the box are unreachable); the 6-D rotation (the first two
  columns of a rotation matrix: each entry in ``[-1, 1]``; any non-degenerate input is Gram-Schmidt
  orthonormalised); the gripper command in ``[-1, 1]`` (-1 open, +1 closed; SimEnv clips it there).

Seeding: ``reset(seed=s)`` seeds ``self.np_random`` (``super().reset``), and every reset without an explicit
initial state draws it from that generator through robosuite's placement sampler, so ``reset(seed=s)``
followed by ``K - 1`` plain resets visits exactly the states ``SimEnv.sample_init_states(K, s)`` returns
(the states a ``collect_rollouts(init_states=K, seed=s)`` collection uses). ``reset(options={"init_state":
state})`` (optionally ``"model_xml"``) restores a recorded state exactly instead.

``step`` returns ``terminated`` = task success and ``truncated`` = ``horizon`` steps taken (both True when
the task succeeds on the last step, as gymnasium's ``TimeLimit`` reports it); ``info`` carries ``success``,
``timeout`` and ``init_state_id``.

`VectorSimAdapter` runs per-env operations (restore a state, step with one action) on the SimeGymEnvs
inside a ``gymnasium.vector`` env (``SyncVectorEnv`` or ``AsyncVectorEnv``) through one ``set_attr`` and one
``call`` for all sub-environments at once; ``sime_policy.collect.batched.run_batched`` uses it.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import gymnasium
import numpy as np
from gymnasium import logger, spaces

from .tasks import TASKS, get_task
from .wrapper import Obs, SimEnv, init_state_id

#: Half-width (metres) of the position box around each arm's base in `action_space`.
REACH_M = 1.0
#: Registered gymnasium id per SIME task name.
GYM_NAMES = {"lift": "Lift", "can": "Can", "square": "Square", "transport": "Transport", "toolhang": "ToolHang"}
#: SimEnv's control frequency (robosuite control_freq), used as the render fps.
CONTROL_FREQ = 20


def env_id(task: str) -> str:
    """Registered gymnasium id of a SIME task ('lift' -> 'sime/Lift-v0')."""
    name = get_task(task).name
    return f"sime/{GYM_NAMES.get(name, name.title())}-v0"


class SimeGymEnv(gymnasium.Env):
    """A `gymnasium.Env` around `SimEnv`: Dict observations, absolute 10-D-per-arm actions, seeded initial states.

    Build it with `make_env(task, ...)` or ``gymnasium.make("sime/Lift-v0", ...)``; the SimEnv stays reachable
    as ``env.unwrapped.sim_env`` (and `get_state`, `reset_to`, `model_xml`, `init_state_id` are forwarded)
    so store-recording code can use either. ``render_mode='rgb_array'`` needs ``cameras=True`` and returns
    the first camera's latest image. ``sim_env=`` wraps an existing SimEnv (its task, cameras, image size and
    horizon then apply; it is reset once to read the observation shapes).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": CONTROL_FREQ}
    #: Per-env request slot written by `VectorSimAdapter` through ``VectorEnv.set_attr`` (None: nothing to do).
    sime_request: tuple[Any, ...] | None = None

    def __init__(self, task: str = "lift", *, cameras: bool = False, image_size: int = 84, horizon: int | None = None,
                 render_mode: str | None = None, sim_env: SimEnv | None = None) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if render_mode == "rgb_array" and not (sim_env.cameras if sim_env is not None else cameras):
            raise ValueError("render_mode='rgb_array' returns camera images: create the env with cameras=True")
        self.sim_env = sim_env if sim_env is not None else SimEnv(task, cameras=cameras, image_size=image_size,
                                                                   horizon=horizon)
        sim = self.sim_env
        self.render_mode = render_mode
        # the render modes this instance supports (check_env tries each of them)
        self.metadata = {"render_modes": ["rgb_array"] if sim.cameras else [], "render_fps": CONTROL_FREQ}
        self.task = sim.task
        self.action_space = action_space(sim)
        self.observation_space = observation_space(sim.reset())
        self._obs: Obs | None = None
        self._state_id: str | None = None
        self._closed = False

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None) -> tuple[Obs, dict[str, Any]]:
        """Start an episode from a state drawn with the env's RNG, or from ``options['init_state']``."""
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = sorted(set(options) - {"init_state", "model_xml"})
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; known: 'init_state', 'model_xml'")
        sim = self.sim_env
        state = options.get("init_state")
        if state is None:
            state = self._draw_state()
        else:
            state = np.array(state, dtype=np.float64).ravel()
        obs = sim.reset_to(state, model_xml=options.get("model_xml"))
        self._obs = obs
        self._state_id = init_state_id(state)
        return _copy_obs(obs), {"init_state_id": self._state_id, "init_state": state.copy()}

    def _draw_state(self) -> np.ndarray:
        """A fresh initial state from robosuite's sampler, driven by (and advancing) ``self.np_random``."""
        rng = self.np_random
        sim_rng = self.sim_env.env.rng  # robosuite's generator, shared by its placement samplers: set in place
        sim_rng.bit_generator.state = rng.bit_generator.state
        self.sim_env.env.reset()
        rng.bit_generator.state = sim_rng.bit_generator.state
        return self.sim_env.get_state()

    def step(self, action: np.ndarray) -> tuple[Obs, float, bool, bool, dict[str, Any]]:
        """Apply one absolute action: (obs, reward, terminated=success, truncated=horizon reached, info)."""
        if self._obs is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        obs, reward, _done, info = self.sim_env.step(np.asarray(action, dtype=np.float64))
        self._obs = obs
        info = dict(info)
        info["init_state_id"] = self._state_id
        return _copy_obs(obs), float(reward), bool(info["success"]), bool(info["timeout"]), info

    def render(self) -> np.ndarray | None:
        """The first camera's latest image (HxWx3 uint8) in 'rgb_array' mode; None without a render mode."""
        if self.render_mode is None:
            logger.warn("render() was called without a render_mode; create the env with render_mode='rgb_array' "
                        "(and cameras=True)")
            return None
        if self._obs is None:
            raise gymnasium.error.ResetNeeded("call reset() before render()")
        return self._obs[self.sim_env.spec.image_keys[0]].copy()

    def close(self) -> None:
        """Release the simulator and renderer (calling it again does nothing)."""
        if not self._closed:
            self._closed = True
            self.sim_env.close()

    # ------------------------------------------------------------------ SimEnv accessors
    @property
    def horizon(self) -> int:
        """Steps after which an episode is truncated."""
        return self.sim_env.horizon

    def get_state(self) -> np.ndarray:
        """Flattened simulator state (see `SimEnv.get_state`)."""
        return self.sim_env.get_state()

    def model_xml(self) -> str:
        """MJCF XML of the current model (see `SimEnv.model_xml`)."""
        return self.sim_env.model_xml()

    def reset_to(self, state: np.ndarray, model_xml: str | None = None) -> Obs:
        """Restore a recorded state exactly and return its observation (like `SimEnv.reset_to`)."""
        return self.reset(options={"init_state": state, "model_xml": model_xml})[0]

    @staticmethod
    def init_state_id(state: np.ndarray) -> str:
        """Stable id of a simulator state (see `sime_policy.envs.init_state_id`)."""
        return init_state_id(state)

    # ------------------------------------------------------------------ vector adapter endpoint
    def sime_serve(self) -> Any:
        """Run the request `VectorSimAdapter` left in `sime_request` (and clear it); None when there is none."""
        request, self.sime_request = self.sime_request, None
        if request is None:
            return None
        kind = request[0]
        if kind == "reset_to":
            return self.reset_to(request[1])
        if kind == "step":
            _, action, record = request
            state = self.get_state() if record else None
            obs, reward, terminated, truncated, info = self.step(action)
            return state, obs, reward, terminated or truncated, info
        raise ValueError(f"unknown SimeGymEnv request {kind!r}")

    def __repr__(self) -> str:
        return f"SimeGymEnv({self.task!r}, cameras={self.sim_env.cameras}, horizon={self.horizon})"


def _copy_obs(obs: Obs) -> Obs:
    """A copy of an observation dict the caller may keep (the env keeps its own for render)."""
    return {key: np.array(value) for key, value in obs.items()}


def action_space(sim: SimEnv) -> spaces.Box:
    """Box of absolute actions per arm: position around the arm's base, 6-D rotation and gripper in [-1, 1]."""
    low, high = [], []
    for robot in sim.env.robots:
        base = np.asarray(robot.base_pos, dtype=np.float64)
        low.append(np.concatenate([base - REACH_M, -np.ones(7)]))
        high.append(np.concatenate([base + REACH_M, np.ones(7)]))
    return spaces.Box(np.concatenate(low), np.concatenate(high), dtype=np.float64)


def observation_space(obs: Obs) -> spaces.Dict:
    """Dict of Boxes matching one SimEnv observation: unbounded floats, uint8 images in [0, 255]."""
    boxes = {}
    for key, value in obs.items():
        value = np.asarray(value)
        if value.dtype == np.uint8:
            boxes[key] = spaces.Box(0, 255, shape=value.shape, dtype=np.uint8)
        else:
            boxes[key] = spaces.Box(-np.inf, np.inf, shape=value.shape, dtype=value.dtype)
    return spaces.Dict(boxes)


def register_envs() -> list[str]:
    """Register ``sime/<Task>-v0`` for every SIME task (max_episode_steps = the task horizon); returns the ids."""
    ids = []
    for name, spec in TASKS.items():
        gym_id = env_id(name)
        if gym_id not in gymnasium.registry:
            gymnasium.register(gym_id, entry_point=f"{__name__}:SimeGymEnv", kwargs={"task": name},
                               max_episode_steps=spec.horizon)
        ids.append(gym_id)
    return ids


def make_env(task: str, *, cameras: bool = False, image_size: int = 84, horizon: int | None = None,
             render_mode: str | None = None, **kwargs: Any) -> gymnasium.Env:
    """``gymnasium.make`` of a SIME task, its spec's max_episode_steps set to `horizon` (default: the task's)."""
    register_envs()
    steps = int(horizon) if horizon is not None else get_task(task).horizon
    return gymnasium.make(env_id(task), cameras=cameras, image_size=image_size, horizon=steps,
                          render_mode=render_mode, max_episode_steps=steps, **kwargs)


# ---------------------------------------------------------------------- vector envs
StepResult = tuple[np.ndarray | None, Obs, float, bool, dict[str, Any]]


class VectorSimAdapter:
    """Per-env operations on the SimeGymEnvs of a ``gymnasium.vector.VectorEnv``, for the batched rollout runner.

    Each call writes one request per sub-environment with ``set_attr('sime_request', ...)`` and runs them all
    with one ``call('sime_serve')`` (in parallel for an AsyncVectorEnv); sub-environments without a request
    do nothing. The vector env's own ``step``/autoreset is not used.
    """

    def __init__(self, vector_env: gymnasium.vector.VectorEnv) -> None:
        self.vector_env = vector_env
        self.num_envs = int(vector_env.num_envs)
        try:
            self._serve([None] * self.num_envs)
        except AttributeError as exc:
            raise TypeError(f"the vector env's sub-environments must be SimeGymEnv ({__name__}): {exc}") from None

    def _serve(self, requests: Sequence[tuple[Any, ...] | None]) -> tuple[Any, ...]:
        self.vector_env.set_attr("sime_request", list(requests))
        return self.vector_env.call("sime_serve")

    def reset_to(self, states: Mapping[int, np.ndarray]) -> dict[int, Obs]:
        """Restore sub-environment i to ``states[i]`` for each i given; their first observations."""
        if not states:
            return {}
        results = self._serve([("reset_to", np.asarray(states[i])) if i in states else None
                               for i in range(self.num_envs)])
        return {i: results[i] for i in states}

    def step(self, actions: Mapping[int, np.ndarray], record: bool = True) -> dict[int, StepResult]:
        """Step sub-environment i with ``actions[i]`` for each i given: (state before if record, obs, reward, done, info)."""
        if not actions:
            return {}
        results = self._serve([("step", np.asarray(actions[i]), record) if i in actions else None
                               for i in range(self.num_envs)])
        return {i: results[i] for i in actions}


register_envs()
