"""Rollout collections: K initial states x N trials of a policy in simulation, every episode written to the store.

Each initial state is replayed exactly (``SimEnv.reset_to``) for each of its trials; the policy runs in
receding horizon (predict a chunk from the last ``n_obs_steps`` observations, execute its
``n_action_steps`` actions, repeat) until the task succeeds or the horizon is reached. A collection is
identified by a hash of what determines its episodes (checkpoint, task, exploration, seed, initial
states, trials, horizon) stored in each episode's ``meta`` JSON, so an interrupted run resumes where it
stopped: rerunning skips the (init_state_id, trial) pairs already committed, then creates the version.

The episodes themselves run in `batched` (on `episode`'s loop) as `jobs`, in this process or in `workers`;
their seeds come from `seeding` and the policy from `loading`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from sime_data.errors import VersionExistsError
from sime_data.schema import check_version_name

from ..envs import SimEnv, TaskSpec, get_task, init_state_id
from ..policy.diffusion import DiffusionPolicy, PolicyInputError
from ..policy.exploration import NO_EXPLORATION, Exploration
from ..training.devices import resolve_device
from .batched import DEFAULT_LANES, Item, env_key
from .jobs import Job, run_items
from .loading import PolicyHandle, resolve_policy
from .rollout_report import RolloutSummary, print_report, summarize
from .seeding import episode_seed
from .workers import run_workers

if TYPE_CHECKING:  # pragma: no cover
    from sime_data import Store

log = logging.getLogger(__name__)

DEFAULT_SEED = 233
DEFAULT_ENVS = 16   # simulators stepped per process, one batched policy call per chunk for all of them


# ---------------------------------------------------------------------- results and identity
@dataclass
class RolloutResult:
    """Outcome of `collect_rollouts`: the collection's episodes, success statistics and version."""

    episode_ids: list[str]
    success_rate: float
    stderr: float
    per_state: pd.DataFrame
    version: str
    collection: str = ""
    checkpoint: str = ""
    task: str = ""
    n_new: int = 0
    summary: RolloutSummary | None = field(default=None, repr=False)

    def print(self, console: Any | None = None, max_rows: int | None = None) -> None:
        """Print the success rate ± standard error and the per-initial-state table (rich)."""
        if self.summary is not None:
            print_report(self.summary, title=f"{self.version}", console=console, max_rows=max_rows)


def collection_id(checkpoint: str, task: str, exploration: Exploration, seed: int, state_ids: Sequence[str],
                  trials: int, horizon: int, lanes: int | None = DEFAULT_LANES) -> str:
    """Id of a rollout collection: hash of everything that determines its episodes (policy lanes included)."""
    blob = json.dumps({"checkpoint": checkpoint, "task": task, "exploration": exploration.as_metadata(),
                       "seed": int(seed), "init_states": list(state_ids), "trials": int(trials),
                       "horizon": int(horizon), "lanes": lanes}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_version_name(task: str, checkpoint: str, exploration: Exploration, seed: int) -> str:
    """Default version of a collection: '<task>/rollouts/<checkpoint>/<mode>/seed<seed>'."""
    return f"{task}/rollouts/{checkpoint}/{exploration.mode}/seed{seed}"


def _check_counts(init_states: Any, trials: Any, workers: Any, max_steps: Any) -> None:
    """ValueError for counts that cannot make a collection."""
    if isinstance(init_states, (bool, np.bool_)) or not isinstance(init_states, (int, np.integer, list, tuple)):
        raise ValueError(f"init_states must be a count K or a list (or (K, D) array) of simulator states, got "
                         f"{init_states!r}")
    if isinstance(init_states, (int, np.integer)) and init_states < 1:
        raise ValueError(f"init_states must be at least 1, got {init_states}")
    if isinstance(init_states, (list, tuple)) and not init_states:
        raise ValueError("init_states is an empty list: give at least one simulator state")
    for name, value in (("trials", trials), ("workers", workers)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer of at least 1, got {value!r}")
    if max_steps is not None and (not isinstance(max_steps, (int, np.integer)) or max_steps < 1):
        raise ValueError(f"max_steps must be a positive integer or None, got {max_steps!r}")


def resolve_task(task: str | None, handle: PolicyHandle) -> TaskSpec:
    """The task to roll out in: the given one (must match the checkpoint's) or the checkpoint's."""
    if task is not None:
        spec = get_task(task)
        if handle.task is not None and handle.task != spec.name:
            raise ValueError(f"checkpoint {handle.checkpoint_id} ({handle.path}) was trained for task {handle.task!r}, "
                             f"not {spec.name!r}; roll it out in {handle.task!r} or pick a checkpoint trained for "
                             f"{spec.name!r}")
        return spec
    if handle.task is None:
        raise ValueError("this policy has no checkpoint recording its task: pass task=...")
    return get_task(handle.task)


def check_policy_fits(policy: DiffusionPolicy, spec: TaskSpec) -> tuple[bool, int]:
    """PolicyInputError unless the task produces every observation the policy needs; returns (cameras, image size)."""
    produced = set(spec.lowdim_keys) | set(spec.image_keys)
    missing = [k for k in policy.config.obs_keys if env_key(k) not in produced]
    if missing:
        raise PolicyInputError(
            f"the policy needs observation(s) {missing} that task {spec.name!r} does not produce "
            f"(it produces {sorted(produced)}); was the policy trained for another task?")
    if policy.action_dim != spec.action_dim:
        raise PolicyInputError(f"the policy outputs {policy.action_dim}-D actions but task {spec.name!r} takes "
                               f"{spec.action_dim}-D absolute actions")
    sizes = {policy.obs_specs[k].shape[:2] for k in policy.image_keys}
    if len(sizes) > 1 or any(h != w for h, w in sizes):
        raise PolicyInputError(f"the policy's camera images must be square and of one size, got {sorted(sizes)}")
    cameras = bool(policy.image_keys)
    return cameras, int(next(iter(sizes))[0]) if cameras else 84


def check_first_obs(policy: DiffusionPolicy, obs: dict[str, np.ndarray]) -> None:
    """PolicyInputError when an observation's shape differs from what the policy was trained on."""
    for key, spec in policy.obs_specs.items():
        shape = tuple(np.shape(obs[env_key(key)]))
        if shape != tuple(spec.shape):
            raise PolicyInputError(f"the environment gives {key!r} of shape {shape}, the policy was trained on "
                                   f"{tuple(spec.shape)}")


def initial_states(env: SimEnv, init_states: int | Sequence[np.ndarray], seed: int) -> tuple[list[np.ndarray], list[str]]:
    """The collection's initial states (K sampled with `seed`, or the given ones) and their ids."""
    if isinstance(init_states, (int, np.integer)):
        states = env.sample_init_states(int(init_states), seed)
    else:
        states = [np.array(s, dtype=np.float64).ravel() for s in init_states]
    state_ids = [init_state_id(s) for s in states]
    if len(set(state_ids)) != len(state_ids):
        raise ValueError("init_states holds the same simulator state more than once")
    return states, state_ids


# ---------------------------------------------------------------------- progress
class _Progress:
    """tqdm bar of episodes done (resumed ones included) with the running success rate."""

    def __init__(self, total: int, done: pd.DataFrame, desc: str, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.episodes = int(len(done))
        self.successes = int(done["success"].fillna(False).astype(bool).sum()) if len(done) else 0
        self.bar = tqdm(total=total, initial=self.episodes, desc=desc, unit="ep", disable=not enabled)
        self._postfix()

    def _postfix(self) -> None:
        if self.episodes:
            self.bar.set_postfix(success=f"{self.successes / self.episodes:.1%}", refresh=False)

    def __call__(self, episode_id: str, state_id: str, trial: int, success: bool) -> None:
        self.episodes += 1
        self.successes += int(bool(success))
        self._postfix()
        self.bar.update(1)

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()


# ---------------------------------------------------------------------- store queries
def collection_episodes(store: "Store", collection: str) -> pd.DataFrame:
    """Committed rollout episodes of a collection, one per (init_state_id, trial) (the earliest)."""
    if not all(c in "0123456789abcdef" for c in collection):
        raise ValueError(f"not a collection id: {collection!r}")
    rows = store.sql(
        "SELECT episode_id, init_state_id, trial, success, length FROM episodes "
        f"WHERE source = 'rollout' AND meta->>'collection' = '{collection}' ORDER BY created_at, episode_id")
    return rows.drop_duplicates(["init_state_id", "trial"], keep="first").reset_index(drop=True)


def _ordered(rows: pd.DataFrame, state_ids: Sequence[str]) -> pd.DataFrame:
    """Rows sorted by initial-state order, then trial."""
    rank = {sid: i for i, sid in enumerate(state_ids)}
    return rows.assign(_rank=rows["init_state_id"].map(rank)).sort_values(["_rank", "trial"]).drop(columns="_rank")


def _existing_version(store: "Store", name: str, collection: str, n_pairs: int) -> list[str] | None:
    """Episode ids of an existing version made by this collection; None if absent; error if it is another's."""
    if not store.has_version(name):
        return None
    ids = store.version(name).episode_ids
    ours = set(store.sql(f"SELECT episode_id FROM episodes WHERE meta->>'collection' = '{collection}'")["episode_id"])
    if len(ids) == n_pairs and set(ids) <= ours:
        return ids
    raise VersionExistsError(
        f"version {name!r} already exists and holds other episodes than this rollout collection (different "
        "number of states or trials, noise scale, horizon...); choose another name with version=... (--version)")


def _parents(store: "Store", handle: PolicyHandle) -> list[str]:
    """[the version the checkpoint was trained on] when this store has it (same creation time), else []."""
    name = handle.trained_on
    if not name or not store.has_version(name):
        return []
    created = store.version(name).created_at
    if handle.trained_on_created_at and created != handle.trained_on_created_at:
        log.info("version %r here was created at %s, the checkpoint's at %s: not recorded as parent", name, created,
                 handle.trained_on_created_at)
        return []
    return [name]


# ---------------------------------------------------------------------- the collection
def collect_rollouts(store: "Store | str | os.PathLike",
                     policy_or_checkpoint: PolicyHandle | DiffusionPolicy | str | os.PathLike, *,
                     task: str | None = None, init_states: int | Sequence[np.ndarray], trials: int,
                     exploration: Exploration = NO_EXPLORATION, seed: int = DEFAULT_SEED, workers: int = 1,
                     round: int | None = None, branch: str | None = None, version: str | None = None,
                     progress: bool = True, max_steps: int | None = None,
                     torch_threads: int | None = 1, envs: int = DEFAULT_ENVS, lanes: int | None = DEFAULT_LANES,
                     device: str | None = None, extra_rule: dict[str, Any] | None = None) -> RolloutResult:
    """Roll a policy out from K initial states x `trials` each, write every episode to `store`, version them.

    `init_states` is K (states drawn with ``env.sample_init_states(K, seed)``) or explicit simulator
    states. `max_steps` overrides the task horizon. Each process steps `envs` simulators and calls the
    policy once per chunk for all of them; `workers` > 1 runs spawned processes, each with its own envs,
    policy copy and writer (segment). Policy rows are evaluated in groups of `lanes` (see
    `DiffusionPolicy.predict`), so the same (state, trial, seed) gives the same episode for any `envs`
    and `workers`; `lanes` is part of the collection's identity. `device` runs the policy there (e.g.
    'cuda'; default cpu). Rerunning with the same arguments resumes: pairs already committed are skipped;
    the version (default '<task>/rollouts/<checkpoint>/<mode>/seed<seed>') is created once every pair
    exists. `torch_threads` is the torch thread count of each rolling-out process during the run
    (default 1: OpenMP threads stall badly on a busy CPU); None leaves torch's setting (workers then use
    cpu_count // workers). `extra_rule` adds entries to the version's rule (e.g. the policy's fit report).
    """
    from sime_data import Store, open_store

    if isinstance(init_states, np.ndarray) and init_states.ndim == 2:
        init_states = list(init_states)  # (K, state_dim) array of states
    _check_counts(init_states, trials, workers, max_steps)
    for label, value in (("envs", envs), ("lanes", lanes)):
        if value is None and label == "lanes":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{label} must be an integer of at least 1, got {value!r}")
    device = resolve_device(device or "cpu")
    if torch_threads is not None and (isinstance(torch_threads, bool) or not isinstance(torch_threads, int)
                                      or torch_threads < 1):
        raise ValueError(f"torch_threads must be a positive integer or None, got {torch_threads!r}")
    if not isinstance(exploration, Exploration):
        raise TypeError(f"exploration must be an Exploration, got {type(exploration).__name__}")
    store = store if isinstance(store, Store) else open_store(store)
    handle = resolve_policy(policy_or_checkpoint)
    handle.policy.to(device)
    spec = resolve_task(task, handle)
    cameras, image_size = check_policy_fits(handle.policy, spec)
    horizon = int(max_steps) if max_steps is not None else spec.horizon
    name = check_version_name(version or default_version_name(spec.name, handle.checkpoint_id, exploration, seed))
    job = Job(spec.name, horizon, cameras, image_size, store.location, {}, exploration, [], threads=torch_threads,
              envs=int(envs), lanes=lanes, device=str(device))

    local = workers == 1
    bar: _Progress | None = None
    try:
        with job.make_env() as env:
            states, state_ids = initial_states(env, init_states, seed)
            check_first_obs(handle.policy, env.reset_to(states[0]))
            collection = collection_id(handle.checkpoint_id, spec.name, exploration, seed, state_ids, trials, horizon,
                                       lanes)
            n_pairs = len(states) * trials
            done = collection_episodes(store, collection)
            existing = _existing_version(store, name, collection, n_pairs)
            if existing is not None:
                return _result(done[done["episode_id"].isin(existing)], state_ids, name, collection, handle,
                               spec.name, 0)
            job.writer_defaults = dict(checkpoint=handle.checkpoint_id, round=round, branch=branch,
                                       **exploration.as_metadata(), collection=collection, collection_seed=int(seed),
                                       horizon=horizon, lanes=lanes)
            taken = set(zip(done["init_state_id"], done["trial"].astype(int)))
            job.items = [Item(sid, state, t, episode_seed(seed, sid, t)) for sid, state in zip(state_ids, states)
                         for t in range(trials) if (sid, t) not in taken]
            if taken:
                log.info("resuming collection %s: %d of %d episodes already committed", collection, len(taken),
                         n_pairs)
            bar = _Progress(n_pairs, done, f"{spec.name} rollouts", progress)
            local = workers == 1 or len(job.items) <= 1
            if job.items and local:
                with _torch_threads(torch_threads), job.open_envs(first=env) as sims:
                    run_items(store, sims, handle.policy, job, bar)
        if job.items and not local:
            run_workers(_split(job, handle, workers), bar)
    finally:
        if bar is not None:
            bar.close()

    rows = collection_episodes(store, collection)
    missing = n_pairs - len(rows)
    if missing:
        raise RuntimeError(f"{missing} of {n_pairs} rollout episodes of collection {collection} are missing after the "
                           "run; rerun with the same arguments to complete it")
    rule = {"kind": "rollouts", "task": spec.name, "checkpoint": handle.checkpoint_id, "checkpoint_path": handle.path,
            "trained_on": handle.trained_on, "exploration": exploration.as_metadata(), "seed": int(seed),
            "init_states": len(states), "init_states_given": not isinstance(init_states, (int, np.integer)),
            "init_state_ids": state_ids, "trials": int(trials), "horizon": horizon, "round": round, "branch": branch,
            "collection": collection, "workers": int(workers), "envs": int(envs), "lanes": lanes,
            "device": str(device), **(extra_rule or {})}
    result = _result(rows, state_ids, name, collection, handle, spec.name, len(job.items))
    message = (f"{n_pairs} rollouts of checkpoint {handle.checkpoint_id} on {spec.name} ({len(states)} initial states "
               f"x {trials} trials, exploration {exploration.mode}): success rate {result.success_rate:.3f} "
               f"± {result.stderr:.3f}")
    try:
        store.create_version(name, result.episode_ids, parents=_parents(store, handle), message=message, rule=rule)
    except VersionExistsError:  # a concurrent run of the same collection finished first
        _existing_version(store, name, collection, n_pairs)
    return result


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Use `threads` torch threads inside the block (None: unchanged), then restore the previous count."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        if threads:
            torch.set_num_threads(previous)


def _split(job: Job, handle: PolicyHandle, workers: int) -> list[Job]:
    """The job's items dealt round-robin to `workers` jobs, each sent the parent's policy (a cpu copy)."""
    count = min(workers, len(job.items))
    threads = job.threads or max(1, (os.cpu_count() or 1) // count)
    policy = handle.policy if handle.policy.device.type == "cpu" else copy.deepcopy(handle.policy).to("cpu")
    return [dataclasses.replace(job, items=job.items[i::count], threads=threads, policy=policy) for i in range(count)]


def _result(rows: pd.DataFrame, state_ids: Sequence[str], name: str, collection: str, handle: PolicyHandle,
            task: str, n_new: int) -> RolloutResult:
    """RolloutResult of a collection's rows (ordered by initial state, then trial)."""
    rows = _ordered(rows, state_ids)
    summary = summarize(rows, state_order=state_ids)
    return RolloutResult(rows["episode_id"].tolist(), summary.success_rate, summary.stderr, summary.per_state, name,
                         collection, handle.checkpoint_id, task, n_new, summary)
