"""Rollout runner: K initial states x N trials of a policy in simulation, every episode written to the store.

Each initial state is replayed exactly (``SimEnv.reset_to``) for each of its trials; the policy runs in
receding horizon (predict a chunk from the last ``n_obs_steps`` observations, execute its
``n_action_steps`` actions, repeat) until the task succeeds or the horizon is reached. A collection is
identified by a hash of what determines its episodes (checkpoint, task, exploration, seed, initial
states, trials, horizon) stored in each episode's ``meta`` JSON, so an interrupted run resumes where it
stopped: rerunning skips the (init_state_id, trial) pairs already committed, then creates the version.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import logging
import multiprocessing as mp
import os
import queue as queue_module
import signal
import sys
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from sime_data.errors import VersionExistsError
from sime_data.schema import check_version_name

from .checkpoint import CheckpointInfo, load_policy_and_info
from .devices import resolve_device
from .envs import SimEnv, TaskSpec, get_task, init_state_id
from .exploration import NO_EXPLORATION, Exploration
from .policy import DiffusionPolicy, PolicyInputError
from .rollout_report import RolloutSummary, print_report, summarize

if TYPE_CHECKING:  # pragma: no cover
    import gymnasium

    from sime_data import Store

log = logging.getLogger(__name__)

DEFAULT_SEED = 233
DEFAULT_ENVS = 16   # simulators stepped per process, one batched policy call per chunk for all of them
DEFAULT_LANES = 16  # policy rows per forward pass (padded): fixes the float results whatever the env count
_SEED_BITS = 62  # per-episode/chunk seeds stay well inside int64 (the store column) and torch's seed range


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


@dataclass(frozen=True)
class PolicyHandle:
    """A loaded policy plus what rollouts record about it (its checkpoint's lineage, when it has one)."""

    policy: DiffusionPolicy
    checkpoint_id: str
    info: CheckpointInfo | None = None

    @classmethod
    def of(cls, policy: DiffusionPolicy, info: CheckpointInfo | None = None) -> "PolicyHandle":
        """Handle of a policy loaded from a checkpoint (`info`), or of an in-memory one (content id)."""
        return cls(policy, info.checkpoint_id if info is not None else weights_id(policy), info)

    @property
    def path(self) -> str | None:
        """The checkpoint file the policy was loaded from (None: in memory)."""
        return self.info.path if self.info is not None else None

    @property
    def use_ema(self) -> bool:
        """True unless the checkpoint's non-EMA weights were loaded."""
        return self.info.use_ema if self.info is not None else True

    @property
    def task(self) -> str | None:
        """The task the checkpoint was trained for (None: unknown)."""
        return self.info.task if self.info is not None else None

    @property
    def trained_on(self) -> str | None:
        """The version the checkpoint was trained on."""
        return self.info.version if self.info is not None else None

    @property
    def trained_on_created_at(self) -> str | None:
        """Creation time of that version."""
        return self.info.version_created_at if self.info is not None else None


def derive_seed(*parts: Any) -> int:
    """Deterministic 62-bit seed from any printable parts (stable across processes and platforms)."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> (64 - _SEED_BITS)


def episode_seed(seed: int, state_id: str, trial: int) -> int:
    """Per-episode seed from (collection seed, init_state_id, trial)."""
    return derive_seed("episode", int(seed), state_id, int(trial))


def chunk_seed(ep_seed: int, chunk: int) -> int:
    """Seed of the `chunk`-th policy.predict call of an episode."""
    return derive_seed("chunk", int(ep_seed), int(chunk))


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


def weights_id(policy: DiffusionPolicy) -> str:
    """Content id of an in-memory policy without a checkpoint: 'mem-' + hash of config and weights."""
    digest = hashlib.sha256(json.dumps(dataclasses.asdict(policy.config), sort_keys=True, default=str).encode())
    for name, tensor in sorted(policy.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return "mem-" + digest.hexdigest()[:12]


# ---------------------------------------------------------------------- input checks
def load_policy_handle(path: str | os.PathLike) -> PolicyHandle:
    """A checkpoint (file or run directory) loaded once for rollouts: EMA weights, eval mode, with its lineage."""
    return PolicyHandle.of(*load_policy_and_info(path))


def resolve_policy(policy_or_checkpoint: PolicyHandle | DiffusionPolicy | str | os.PathLike) -> PolicyHandle:
    """A handle as given, a checkpoint (file or run directory) loaded, or an in-memory policy wrapped (content id)."""
    if isinstance(policy_or_checkpoint, PolicyHandle):
        return policy_or_checkpoint
    if isinstance(policy_or_checkpoint, DiffusionPolicy):
        return PolicyHandle.of(policy_or_checkpoint)
    if not isinstance(policy_or_checkpoint, (str, os.PathLike)):
        raise TypeError(f"expected a DiffusionPolicy or a checkpoint path, got {type(policy_or_checkpoint).__name__}")
    return load_policy_handle(policy_or_checkpoint)


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


def env_key(policy_key: str) -> str:
    """SimEnv observation key of a policy/store key ('obs/object' -> 'object')."""
    return policy_key[4:] if policy_key.startswith("obs/") else policy_key


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


# ---------------------------------------------------------------------- episodes, many at once
class _Slot:
    """One simulator instance of a batched rollout and the episode it is running (recorded in memory)."""

    def __init__(self, env: SimEnv, keys: Sequence[tuple[str, str]], n_obs_steps: int, record: bool) -> None:
        self.env, self.keys, self.n_obs_steps, self.record = env, list(keys), n_obs_steps, record
        self.item: Item | None = None

    def start(self, item: "Item") -> None:
        """Reset to the item's initial state and start recording its episode."""
        self.begin(item, self.env.reset_to(item.state))

    def begin(self, item: "Item", obs: dict[str, np.ndarray]) -> None:
        """Start recording the item's episode from `obs`, the observation of its restored initial state."""
        self.item = item
        self.obs = obs
        self.history: deque[dict[str, np.ndarray]] = deque([self.obs] * self.n_obs_steps, maxlen=self.n_obs_steps)
        self.chunk = 0
        self.t = 0
        self.success = False
        self.steps: dict[str, list[Any]] = {"obs": [], "actions": [], "rewards": [], "dones": [], "states": []}

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
        state = self.env.get_state() if self.record else None
        next_obs, reward, done, info = self.env.step(action)
        return self.record_step(state, action, next_obs, reward, done, info)

    def record_step(self, state: np.ndarray | None, action: np.ndarray, next_obs: dict[str, np.ndarray],
                    reward: float, done: bool, info: dict[str, Any]) -> bool:
        """Take in one executed step (recording it); True when the episode has ended."""
        self.t += 1
        if self.record:
            steps = self.steps
            steps["obs"].append(self.obs)
            steps["actions"].append(action)
            steps["rewards"].append(reward)
            steps["dones"].append(done)
            steps["states"].append(state)
        self.obs = next_obs
        self.history.append(next_obs)
        if done:
            self.success = bool(info["success"])
        return bool(done)

    def episode_arrays(self) -> dict[str, np.ndarray]:
        """The recorded episode as store arrays ('obs/<k>', 'actions', 'rewards', 'dones', 'states')."""
        steps = self.steps
        data = {f"obs/{key}": np.stack([o[key] for o in steps["obs"]]) for key in steps["obs"][0]}
        data["actions"] = np.stack(steps["actions"])
        data["rewards"] = np.asarray(steps["rewards"], dtype=np.float64)
        data["dones"] = np.asarray(steps["dones"], dtype=bool)
        data["states"] = np.stack(steps["states"])
        return data


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
    from .envs.gym_env import VectorSimAdapter

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


@dataclass(frozen=True)
class Item:
    """One episode to run: initial state (and its id), trial number and episode seed."""

    state_id: str
    state: np.ndarray
    trial: int
    seed: int


@dataclass
class Job:
    """Everything a process needs to run its share of a collection (picklable for spawn)."""

    task: str
    horizon: int
    cameras: bool
    image_size: int
    store_location: str
    writer_defaults: dict[str, Any]
    exploration: Exploration
    items: list[Item]
    threads: int | None = None
    policy: DiffusionPolicy | None = None  # the parent's loaded policy (on the cpu), sent to each worker
    envs: int = 1
    lanes: int | None = DEFAULT_LANES
    device: str = "cpu"

    def make_env(self) -> SimEnv:
        """A fresh SimEnv for this job's task, cameras and horizon."""
        return SimEnv(self.task, cameras=self.cameras, image_size=self.image_size, horizon=self.horizon)

    @contextlib.contextmanager
    def open_envs(self, first: SimEnv | None = None) -> Iterator[list[SimEnv]]:
        """min(envs, items) SimEnvs for this job (`first` reused when given), closed on exit (except `first`)."""
        wanted = max(1, min(self.envs, len(self.items)))
        with contextlib.ExitStack() as stack:
            envs = [first] if first is not None else []
            envs += [stack.enter_context(self.make_env()) for _ in range(wanted - len(envs))]
            yield envs


EpisodeCallback = Callable[[str, str, int, bool], None]


def run_items(store: "Store", envs: Sequence[SimEnv], policy: DiffusionPolicy, job: Job,
              on_episode: EpisodeCallback) -> None:
    """Run a job's episodes on its envs through one writer (one segment); each is committed as soon as it ends."""
    with store.writer("rollout", job.task, model_xml=envs[0].model_xml(), **job.writer_defaults) as writer:
        def commit(item: Item, success: bool, steps: int, slot: _Slot) -> None:
            episode_id = writer.add_episode(slot.episode_arrays(), success=success, init_state_id=item.state_id,
                                            init_state=item.state, trial=item.trial, seed=item.seed)
            on_episode(episode_id, item.state_id, item.trial, success)

        run_batched(envs, policy, job.items, job.exploration, commit, lanes=job.lanes)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def worker_main(index: int, job: Job, messages: Any) -> None:
    """Entry point of a spawned rollout worker: own env, own policy copy, own writer; reports through `messages`."""
    signal.signal(signal.SIGTERM, _raise_interrupt)  # terminate() closes the writer cleanly (in-flight episode lost)
    try:
        if job.threads:
            torch.set_num_threads(job.threads)
        from sime_data import open_store

        policy = job.policy
        store = open_store(job.store_location)
        parent = os.getppid()

        def report(episode_id: str, state_id: str, trial: int, success: bool) -> None:
            messages.put(("episode", index, episode_id, state_id, trial, success))
            if os.getppid() != parent:  # the parent was killed: stop after this committed episode
                raise KeyboardInterrupt("parent process gone")

        policy.to(job.device)
        with job.open_envs() as envs:
            run_items(store, envs, policy, job, report)
        messages.put(("finished", index))
    except KeyboardInterrupt:
        messages.put(("interrupted", index))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        messages.put(("error", index, traceback.format_exc()))


class WorkerError(RuntimeError):
    """A rollout worker process failed (its committed episodes are kept; rerun to resume)."""


def run_workers(jobs: list[Job], on_episode: EpisodeCallback, poll_s: float = 0.5) -> None:
    """Run jobs in spawned processes, forwarding each finished episode to `on_episode`; raise if one fails."""
    ctx = mp.get_context("spawn")
    messages = ctx.Queue()
    procs = [ctx.Process(target=worker_main, args=(i, job, messages), name=f"sime-rollout-{i}", daemon=True)
             for i, job in enumerate(jobs)]
    for proc in procs:
        proc.start()
    finished: set[int] = set()
    try:
        while len(finished) < len(procs):
            try:
                message = messages.get(timeout=poll_s)
            except queue_module.Empty:
                for i, proc in enumerate(procs):  # exited processes have flushed their messages already
                    if i not in finished and not proc.is_alive():
                        raise WorkerError(f"rollout worker {i} exited with code {proc.exitcode} before finishing; "
                                          "committed episodes are kept, rerun with the same arguments to resume")
                continue
            kind, index = message[0], message[1]
            if kind == "episode":
                on_episode(*message[2:])
            elif kind == "finished":
                finished.add(index)
            elif kind == "interrupted":
                raise KeyboardInterrupt(f"rollout worker {index} was interrupted")
            else:
                raise WorkerError(f"rollout worker {index} failed; committed episodes are kept, rerun to resume. "
                                  f"Worker traceback:\n{message[2]}")
    finally:
        _stop(procs)
        messages.close()


def _stop(procs: list[Any], grace_s: float = 10.0) -> None:
    """Let finished workers exit; terminate (SIGTERM: clean writer close) the ones still running."""
    for proc in procs:
        proc.join(timeout=0.1 if proc.is_alive() else grace_s)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=grace_s)
        if proc.is_alive():  # pragma: no cover - stuck in native code
            proc.kill()
            proc.join()


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
