"""Record scripted-expert demonstrations into the trajectory store, with demo and core-subset versions."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from sime_data.errors import VersionExistsError

from ..envs import SimEnv, get_task, init_state_id
from ..experts import EXPERT_CONFIGS, make_expert
from .episode import run_controlled_episode

if TYPE_CHECKING:  # pragma: no cover
    from sime_data import EpisodeWriter, Store

    from ..experts import PickPlaceExpert

log = logging.getLogger(__name__)

#: Sizes of the evenly spaced "core" subsets created beside the full demo version.
CORE_SIZES = (5, 10, 20, 40, 50, 100, 200)


def demo_version_names(task: str, n: int) -> tuple[str, dict[int, str]]:
    """Names record_demos creates for n demos: the full version and {N: core version} for N <= n."""
    return f"{task}/demos", {size: f"{task}/core_{size}" for size in CORE_SIZES if size <= n}


def core_indices(n: int, size: int) -> np.ndarray:
    """`size` evenly spaced, distinct indices into n demos (first and last included)."""
    if not 0 < size <= n:
        raise ValueError(f"a core subset needs 0 < size <= n, got size={size}, n={n}")
    return np.round(np.linspace(0, n - 1, size)).astype(int)


def _init_states(env: SimEnv, seed: int, first: int) -> Iterator[np.ndarray]:
    """Endless reproducible stream of initial states (a prefix of the same stream for any length)."""
    pool: list[np.ndarray] = []
    size = max(first, 1)
    i = 0
    while True:
        if i == len(pool):
            size = max(size, 2 * len(pool))
            pool = env.sample_init_states(size, seed)
        yield pool[i]
        i += 1


def record_demos(store: Store, task: str, n: int, *, seed: int = 0, noise_std: float = 0.0, cameras: bool = False,
                 progress: bool = True, max_attempts: int | None = None) -> list[str]:
    """Record n successful scripted demos of `task`; creates versions '<task>/demos' and '<task>/core_<N>'."""
    get_task(task)
    if task not in EXPERT_CONFIGS:
        raise ValueError(f"no scripted expert for task {task!r}; tasks with one: {sorted(EXPERT_CONFIGS)}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    full_name, core_names = demo_version_names(task, n)
    taken = [name for name in (full_name, *core_names.values()) if store.has_version(name)]
    if taken:
        raise VersionExistsError(
            f"version(s) {taken} already exist in {store.location} and versions are immutable; "
            "use them as they are, or record into another store"
        )
    max_attempts = max_attempts if max_attempts is not None else 3 * n + 10

    from tqdm.auto import tqdm

    ids: list[str] = []
    attempts = failures = 0
    with SimEnv(task, cameras=cameras) as env:
        states = _init_states(env, seed, n)
        with store.writer(source="demo", task=task, model_xml=env.model_xml(), expert="scripted",
                          noise_std=float(noise_std), seed=int(seed)) as writer, \
                tqdm(total=n, desc=f"{task} demos", disable=not progress, unit="demo") as bar:
            while len(ids) < n:
                if attempts >= max_attempts:
                    raise RuntimeError(
                        f"the {task} expert succeeded only {len(ids)} times in {attempts} attempts "
                        f"(noise_std={noise_std}); {len(ids)} demos were committed, no versions were created"
                    )
                state = next(states)
                expert = make_expert(env, noise_std=noise_std, seed=(seed, attempts))
                success, length = _run_episode(env, expert, state, writer)
                attempts += 1
                if success:
                    ids.append(writer.finish(success=True, init_state_id=init_state_id(state), trial=0,
                                             init_state=state, attempt=attempts - 1))
                    bar.update(1)
                else:
                    writer.discard()
                    failures += 1
                    log.info("%s demo attempt %d failed after %d steps (state %s)", task, attempts - 1, length,
                             init_state_id(state))
                bar.set_postfix(success=f"{len(ids) / attempts:.0%}", failed=failures)
    if failures:
        log.warning("%s: %d of %d expert attempts failed and were discarded", task, failures, attempts)
    rule = {"kind": "scripted_demos", "task": task, "n": n, "seed": seed, "noise_std": noise_std,
            "attempts": attempts, "failures": failures}
    store.create_version(full_name, ids, message=f"{n} scripted {task} demos", rule=rule)
    for size, name in core_names.items():
        picked = [ids[i] for i in core_indices(n, size)]
        store.create_version(name, picked, parents=[full_name], message=f"{size} evenly spaced demos of {full_name}",
                             rule={"kind": "core_subset", "size": size, "of": full_name, "spacing": "linspace"})
    return ids


def _run_episode(env: SimEnv, expert: PickPlaceExpert, state: np.ndarray, writer: EpisodeWriter) -> tuple[bool, int]:
    """Run the expert from `state`, adding every step to the writer; returns (success, steps)."""

    def add(obs: dict[str, np.ndarray], action: np.ndarray, reward: float, done: bool, sim_state: np.ndarray | None) -> None:
        writer.add_step(obs=obs, action=action, reward=reward, done=done, state=sim_state)

    return run_controlled_episode(env, state, expert, add)
