"""The episode loop shared by rollouts and demo recording: step a simulator, hand each step to a sink."""

from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np

#: receives every executed step: (observation it was taken from, action, reward, done, simulator state before it)
StepSink = Callable[[dict[str, np.ndarray], np.ndarray, float, bool, "np.ndarray | None"], None]


class Controller(Protocol):
    """Something that acts step by step, like a scripted expert."""

    def reset(self) -> None:
        """Plan the episode from the simulator's current (just restored) state."""

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Next action for an observation."""


class Episode:
    """One running episode: its current observation, the steps taken and the outcome once it ends."""

    def __init__(self, obs: dict[str, np.ndarray], sink: StepSink | None = None) -> None:
        self.obs = obs
        self.sink = sink
        self.t = 0
        self.success = False

    def step(self, env: Any, action: np.ndarray, record_state: bool = True) -> bool:
        """Execute one action in `env` (its state captured first when recorded); True when the episode has ended."""
        state = env.get_state() if record_state else None
        next_obs, reward, done, info = env.step(action)
        return self.record_step(state, action, next_obs, reward, done, info)

    def record_step(self, state: np.ndarray | None, action: np.ndarray, next_obs: dict[str, np.ndarray],
                    reward: float, done: bool, info: dict[str, Any]) -> bool:
        """Take in one executed step (handing it to the sink); True when the episode has ended."""
        self.t += 1
        if self.sink is not None:
            self.sink(self.obs, action, reward, done, state)
        self.obs = next_obs
        if done:
            self.success = bool(info["success"])
        return bool(done)


class EpisodeSteps:
    """A step sink that keeps the episode in memory and gives it back as store arrays."""

    def __init__(self) -> None:
        self.obs: list[dict[str, np.ndarray]] = []
        self.actions: list[np.ndarray] = []
        self.rewards: list[float] = []
        self.dones: list[bool] = []
        self.states: list[np.ndarray | None] = []

    def __call__(self, obs: dict[str, np.ndarray], action: np.ndarray, reward: float, done: bool,
                 state: np.ndarray | None) -> None:
        """Keep one executed step."""
        self.obs.append(obs)
        self.actions.append(action)
        self.rewards.append(reward)
        self.dones.append(done)
        self.states.append(state)

    def arrays(self) -> dict[str, np.ndarray]:
        """The recorded episode as store arrays ('obs/<k>', 'actions', 'rewards', 'dones', 'states')."""
        data = {f"obs/{key}": np.stack([o[key] for o in self.obs]) for key in self.obs[0]}
        data["actions"] = np.stack(self.actions)
        data["rewards"] = np.asarray(self.rewards, dtype=np.float64)
        data["dones"] = np.asarray(self.dones, dtype=bool)
        data["states"] = np.stack(self.states)
        return data


def run_controlled_episode(env: Any, state: np.ndarray, controller: Controller,
                           sink: StepSink | None = None) -> tuple[bool, int]:
    """Run a controller from a restored simulator state until the episode ends; returns (success, steps)."""
    episode = Episode(env.reset_to(state), sink)
    controller.reset()
    for _ in range(env.horizon):  # SimEnv ends every episode at its horizon at the latest
        sim_state = env.get_state()
        action = controller.act(episode.obs)
        next_obs, reward, done, info = env.step(action)
        if episode.record_step(sim_state, action, next_obs, reward, done, info):
            break
    return episode.success, episode.t
