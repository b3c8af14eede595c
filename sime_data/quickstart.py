"""A guided tour on a self-made store: demos, rollouts, SQL, selection and trimming versions."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from tqdm import tqdm

from .store import Store, open_store

log = logging.getLogger(__name__)


def _toy_episode(rng: np.random.Generator, goal: np.ndarray, skill: float, max_steps: int = 20) -> tuple[list[dict[str, Any]], bool]:
    """A point-mass reaching episode: move toward `goal` with noise; success if it gets within 0.05."""
    pos = np.zeros(2)
    steps = []
    success = False
    for _ in range(max_steps):
        action = np.clip(goal - pos, -0.1, 0.1) * skill + rng.normal(0, 0.04, 2)
        steps.append({"obs": {"pos": pos.astype(np.float32), "goal": goal.astype(np.float32)},
                      "action": action.astype(np.float32), "reward": 0.0, "done": False, "state": np.r_[pos, goal]})
        pos = pos + action
        if np.linalg.norm(goal - pos) < 0.05:
            steps[-1]["reward"], steps[-1]["done"], success = 1.0, True, True
            break
    return steps, success


def build_example_store(location: str, *, n_init_states: int = 20, trials: int = 5, seed: int = 0) -> Store:
    """Create (or extend) a store with toy demos and rollouts; returns the opened store."""
    store = open_store(location, create=True)
    if store.has_version("toy/demos"):
        log.info("example data already present in %s; reusing it", location)
        return store
    rng = np.random.default_rng(seed)
    goals = rng.uniform(-1, 1, size=(n_init_states, 2))
    with store.writer(source="demo", task="toy_reach", atomic=True) as writer:
        for k, goal in enumerate(goals[:10]):
            steps, _ = _toy_episode(rng, goal, skill=1.0)
            for step in steps:
                writer.add_step(**step)
            writer.finish(success=True, init_state_id=f"goal{k:03d}", trial=0)
        demo_ids = writer.episodes_committed
    store.create_version("toy/demos", demo_ids, message="10 scripted demonstrations")
    with store.writer(source="rollout", task="toy_reach", round=0, checkpoint="toy-policy", explore_mode="sime",
                      noise_scale=0.01, tau1=0.0, tau2=1.0, seed=seed) as writer:
        for k in tqdm(range(n_init_states), desc="toy rollouts", unit="state"):
            skill = 0.1 + 0.8 * rng.random()  # some initial states are hard for the policy
            for trial in range(trials):
                steps, success = _toy_episode(rng, goals[k], skill)
                for step in steps:
                    writer.add_step(**step)
                writer.finish(success=success, init_state_id=f"goal{k:03d}", trial=trial)
        rollout_ids = writer.episodes_committed
    store.create_version("toy/round0_rollouts", rollout_ids, message="round-0 rollouts with exploration")
    selection_sql = (
        "WITH rates AS (SELECT init_state_id, avg(success::INT) AS sr FROM episodes "
        "WHERE episode_id IN (SELECT episode_id FROM version_episodes WHERE version = 'toy/round0_rollouts') "
        "GROUP BY 1) "
        "SELECT e.episode_id FROM episodes e JOIN rates USING (init_state_id) "
        "WHERE e.source = 'rollout' AND e.success AND rates.sr < 0.5 ORDER BY e.episode_id"
    )
    selected = store.sql(selection_sql)
    if len(selected):
        store.create_version_from_query("toy/round0_selected", selection_sql, parents=["toy/round0_rollouts"],
                                        message="successes of initial states with success rate < 0.5",
                                        rule={"kind": "sr_below", "threshold": 0.5})
        store.create_version_union("toy/round1_train", ["toy/demos", "toy/round0_selected"],
                                   message="demos + selected rollouts (no data copied)")
        first = selected["episode_id"].iloc[0]
        length = store.episode(first)["length"]
        store.create_version_from_trims("toy/round1_train_trimmed", "toy/round1_train",
                                        {first: [(min(2, length - 1), length)]}, message="trim the first idle frames")
    return store


def run_quickstart(location: str) -> Store:
    """Build the example store and print what a user would look at first."""
    from rich.console import Console

    from .console import print_frame

    console = Console()
    store = build_example_store(location)
    console.rule(f"store {store.location}")
    summary = store.sql(
        "SELECT source, count(*) AS episodes, sum(length) AS frames, round(avg(success::INT), 3) AS success_rate "
        "FROM episodes GROUP BY 1 ORDER BY 1")
    print_frame(summary, title="episodes by source")
    per_state = store.sql(
        "SELECT init_state_id, count(*) AS trials, round(avg(success::INT), 2) AS success_rate FROM episodes "
        "WHERE source = 'rollout' GROUP BY 1 ORDER BY success_rate, init_state_id LIMIT 8")
    print_frame(per_state, title="hardest initial states (rollouts)")
    versions = store.versions()[["name", "n_episodes", "n_frames", "success_rate", "message"]]
    print_frame(versions, title="versions (immutable; no data copied)")
    console.print("next: sime-data sql --store", store.location, '"SELECT * FROM versions"')
    return store
