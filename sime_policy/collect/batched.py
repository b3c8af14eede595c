"""Batched receding-horizon episodes: several simulators, one policy call per chunk for all running episodes."""

from __future__ import annotations

import sys
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ..envs import SimEnv, init_state_id
from ..policy.diffusion import DiffusionPolicy
from ..policy.exploration import Exploration
from .episode import Episode, EpisodeSteps
from .seeding import chunk_seed

if TYPE_CHECKING:  # pragma: no cover
    import gymnasium

DEFAULT_LANES = 16  # policy rows per forward pass (padded): fixes the float results whatever the env count


def env_key(policy_key: str) -> str:
    """SimEnv observation key of a policy/store key ('obs/object' -> 'object')."""
    return policy_key[4:] if policy_key.startswith("obs/") else policy_key


@dataclass(frozen=True)
class Item:
    """One episode to run: initial state (and its id), trial number and episode seed."""

    state_id: str
    state: np.ndarray
    trial: int
    seed: int


class _Slot:
    """One simulator instance of a batched rollout and the episode it is running (recorded in memory)."""

    def __init__(self, env: SimEnv | None, keys: Sequence[tuple[str, str]], n_obs_steps: int, record: bool) -> None:
        self.env, self.keys, self.n_obs_steps, self.record = env, list(keys), n_obs_steps, record
        self.item: Item | None = None

    def start(self, item: "Item") -> None:
        """Reset to the item's initial state and start recording its episode."""
        self.begin(item, self.env.reset_to(item.state))

    def begin(self, item: "Item", obs: dict[str, np.ndarray]) -> None:
        """Start recording the item's episode from `obs`, the observation of its restored initial state."""
        self.item = item
        self.steps = EpisodeSteps()
        self.episode = Episode(obs, self.steps if self.record else None)
        self.history: deque[dict[str, np.ndarray]] = deque([obs] * self.n_obs_steps, maxlen=self.n_obs_steps)
        self.chunk = 0

    @property
    def obs(self) -> dict[str, np.ndarray]:
        """The episode's current observation."""
        return self.episode.obs

    @property
    def t(self) -> int:
        """Steps the episode has taken."""
        return self.episode.t

    @property
    def success(self) -> bool:
        """Whether the episode ended in success (False while it runs)."""
        return self.episode.success

    def observation(self) -> dict[str, np.ndarray]:
        """The policy input: the last n_obs_steps observations, per policy key."""
        return {key: np.stack([h[env_key] for h in self.history]) for key, env_key in self.keys}

    def next_seed(self) -> int:
        """Seed of this episode's next policy call."""
        seed = chunk_seed(self.item.seed, self.chunk)
        self.chunk += 1
        return seed

    def step(self, action: np.ndarray) -> bool:
        """Execute one action (recording the step); True when the episode has ended."""
        done = self.episode.step(self.env, action, record_state=self.record)
        self.history.append(self.episode.obs)
        return done

    def record_step(self, state: np.ndarray | None, action: np.ndarray, next_obs: dict[str, np.ndarray],
                    reward: float, done: bool, info: dict[str, Any]) -> bool:
        """Take in one executed step (recording it); True when the episode has ended."""
        self.history.append(next_obs)
        return self.episode.record_step(state, action, next_obs, reward, done, info)

    def episode_arrays(self) -> dict[str, np.ndarray]:
        """The recorded episode as store arrays ('obs/<k>', 'actions', 'rewards', 'dones', 'states')."""
        return self.steps.arrays()


EpisodeDone = Callable[["Item", bool, int, "_Slot"], None]


def run_batched(envs: "Sequence[SimEnv] | gymnasium.vector.VectorEnv", policy: DiffusionPolicy,
                items: Sequence["Item"], exploration: Exploration, on_done: EpisodeDone, *,
                lanes: int | None = DEFAULT_LANES, record: bool = True) -> None:
    """Run `items` on several simulators at once, one batched policy call per chunk for all running episodes.

    Every running episode asks for its next chunk at the same tick (an env whose episode ended mid-chunk
    waits for the next chunk boundary to start its next item), so a tick makes one ``predict`` call of
    up to ``len(envs)`` rows. Rows are evaluated in groups of ``lanes`` with their own seeds, so an
    episode's actions do not depend on which others ran beside it: the same (state, trial, seed) gives
    the same episode for any number of envs or workers. ``on_done(item, success, steps, slot)`` is
    called as each episode ends (``slot.episode_arrays()`` holds it when `record`).

    `envs` may also be a ``gymnasium.vector.VectorEnv`` (Sync or Async) of ``SimeGymEnv``
    (``sime_policy.envs.gym_env``): see `run_batched_vector`.
    """
    if _is_vector_env(envs):
        return run_batched_vector(envs, policy, items, exploration, on_done, lanes=lanes, record=record)
    if not envs:
        raise ValueError("run_batched needs at least one env")
    config = policy.config
    keys = [(k, env_key(k)) for k in config.obs_keys]
    slots = [_Slot(env, keys, config.n_obs_steps, record) for env in envs]
    queue = deque(items)
    while True:
        for slot in slots:
            if slot.item is None and queue:
                slot.start(queue.popleft())
        running = [slot for slot in slots if slot.item is not None]
        if not running:
            return
        observations = [slot.observation() for slot in running]
        stacked = {key: np.stack([o[key] for o in observations]) for key, _ in keys}
        chunks = np.asarray(policy.predict(stacked, exploration, seeds=[slot.next_seed() for slot in running],
                                           lanes=lanes), dtype=np.float64)
        for slot, chunk in zip(running, chunks):
            for action in chunk:
                if slot.step(action):
                    item, slot.item = slot.item, None
                    on_done(item, slot.success, slot.env.t, slot)
                    break


def _is_vector_env(envs: Any) -> bool:
    """True for a gymnasium VectorEnv (gymnasium is imported only by whoever built one)."""
    gymnasium = sys.modules.get("gymnasium")
    return gymnasium is not None and isinstance(envs, gymnasium.vector.VectorEnv)


def run_batched_vector(vector_env: Any, policy: DiffusionPolicy, items: Sequence["Item"], exploration: Exploration,
                       on_done: EpisodeDone, *, lanes: int | None = DEFAULT_LANES, record: bool = True) -> None:
    """`run_batched` on the SimeGymEnvs of a gymnasium VectorEnv (or a `VectorSimAdapter` of one).

    The same schedule, seeds and policy calls as `run_batched` on a list of SimEnvs, so the same items give
    the same episodes; each action index of a chunk steps every running sub-environment with one vector
    call (in parallel for an AsyncVectorEnv), and ``on_done`` is called in env order at the end of the chunk
    (the order `run_batched` calls it in). ``slot.env`` is None here; ``steps`` counts the episode's steps.
    """
    from ..envs.gym_env import VectorSimAdapter

    adapter = vector_env if isinstance(vector_env, VectorSimAdapter) else VectorSimAdapter(vector_env)
    config = policy.config
    keys = [(k, env_key(k)) for k in config.obs_keys]
    slots = [_Slot(None, keys, config.n_obs_steps, record) for _ in range(adapter.num_envs)]
    queue = deque(items)
    while True:
        starting = {i: queue.popleft() for i, slot in enumerate(slots) if slot.item is None and queue}
        for i, obs in adapter.reset_to({i: item.state for i, item in starting.items()}).items():
            slots[i].begin(starting[i], obs)
        running = [i for i, slot in enumerate(slots) if slot.item is not None]
        if not running:
            return
        observations = [slots[i].observation() for i in running]
        stacked = {key: np.stack([o[key] for o in observations]) for key, _ in keys}
        chunks = np.asarray(policy.predict(stacked, exploration, seeds=[slots[i].next_seed() for i in running],
                                           lanes=lanes), dtype=np.float64)
        ended: set[int] = set()
        for t in range(chunks.shape[1]):
            actions = {i: chunk[t] for i, chunk in zip(running, chunks) if i not in ended}
            if not actions:
                break
            for i, (state, next_obs, reward, done, info) in adapter.step(actions, record=record).items():
                if slots[i].record_step(state, actions[i], next_obs, reward, done, info):
                    ended.add(i)
        for i in running:
            if i in ended:
                slot = slots[i]
                item, slot.item = slot.item, None
                on_done(item, slot.success, slot.t, slot)


def run_episode(env: SimEnv, policy: DiffusionPolicy, state: np.ndarray, exploration: Exploration, ep_seed: int,
                lanes: int | None = DEFAULT_LANES) -> tuple[bool, int]:
    """One receding-horizon rollout from `state` until success or the horizon; returns (success, steps).

    The same episode as the batched runner gives for this (state, seed) with the same `lanes`.
    """
    outcome: list[tuple[bool, int]] = []
    item = Item(init_state_id(state), np.asarray(state, dtype=np.float64), 0, int(ep_seed))
    run_batched([env], policy, [item], exploration, lambda _item, ok, steps, _slot: outcome.append((ok, steps)),
                lanes=lanes, record=False)
    return outcome[0]
