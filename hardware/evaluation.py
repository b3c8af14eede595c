"""Real-world evaluation: a policy drives the rig in receding horizon, the operator marks success or failure.

Every episode is stored like a simulated rollout (source 'rollout', checkpoint, exploration
columns, seed, init_state_id = the operator's scene label, trial), so the selection and
curation tools work on it unchanged.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import geometry as geo
from .ensemble import TemporalEnsembler
from .errors import HardwareError
from .keyboard import KeyEvent
from .recorder import SessionResult, drop_writer, step_extras
from .rig import Rig
from .safety import ActionFilter, GripperHysteresis
from .timing import RateLimiter

if TYPE_CHECKING:  # pragma: no cover
    from sime_data import Store

log = logging.getLogger(__name__)


class PolicyRigMismatchError(HardwareError, ValueError):
    """The policy needs observations the rig does not produce (or of another shape)."""


@dataclass(frozen=True)
class EvalSettings:
    """How the policy is run on the rig."""

    ensemble: str = "new"
    k: float = 0.01
    tau: float = 0.5
    replan_every: int | None = None  # steps between predictions (None: n_action_steps, half of it when async)
    async_inference: bool = False  # predict in a background thread (the loop keeps its rate; chunks land late)
    max_rot_step: float | None = None  # radians the commanded orientation may turn per step
    close_above: float = 0.5
    open_below: float = -0.5
    max_steps: int | None = None
    seed: int = 233
    scene: str | None = None  # operator's label of the initial scene -> init_state_id
    round: int | None = None
    branch: str | None = None


def policy_obs_keys(policy: Any) -> list[tuple[str, str]]:
    """(policy key, rig observation key) pairs ('obs/tcp_pose' -> 'tcp_pose')."""
    return [(k, k.removeprefix("obs/")) for k in policy.config.obs_keys]


def check_policy_fits_rig(policy: Any, obs: dict[str, np.ndarray]) -> None:
    """PolicyRigMismatchError naming missing keys or wrong shapes."""
    missing = [k for k, r in policy_obs_keys(policy) if r not in obs]
    if missing:
        raise PolicyRigMismatchError(f"the policy needs observation(s) {missing}; this rig produces {sorted(obs)} "
                                     "(train on data recorded with the same rig config)")
    for key, rig_key in policy_obs_keys(policy):
        want = tuple(policy.obs_specs[key].shape)
        if tuple(np.shape(obs[rig_key])) != want:
            raise PolicyRigMismatchError(f"the rig gives {rig_key!r} of shape {np.shape(obs[rig_key])}, the policy was "
                                         f"trained on {want} (same camera size as when recording?)")
    if policy.action_dim != 10:
        raise PolicyRigMismatchError(f"the rig takes 10-D absolute actions, the policy outputs {policy.action_dim}-D")


def next_trial(store: Store, checkpoint: str, scene: str | None) -> int:
    """First unused trial number for (checkpoint, scene) in the store."""
    if scene is None:
        return 0
    quoted_ckpt, quoted_scene = checkpoint.replace("'", "''"), scene.replace("'", "''")
    rows = store.sql(f"SELECT max(trial) AS t FROM episodes WHERE checkpoint = '{quoted_ckpt}' "
                     f"AND init_state_id = '{quoted_scene}'")
    value = rows["t"].iloc[0] if len(rows) else None
    import pandas as pd

    return 0 if value is None or pd.isna(value) else int(value) + 1


def evaluate_policy(rig: Rig, store: Store, policy: Any, *, exploration: Any = None, episodes: int = 1,
                    settings: EvalSettings = EvalSettings(), task: str | None = None,
                    on_event: Callable[[str], None] | None = None) -> SessionResult:
    """Run `episodes` evaluation episodes; each is stored with success, exploration settings and timing."""
    import torch

    from sime_policy.policy.exploration import NO_EXPLORATION
    from sime_policy.collect.loading import resolve_policy
    from sime_policy.collect.seeding import chunk_seed, derive_seed

    handle = resolve_policy(policy)
    policy = handle.policy
    exploration = exploration or NO_EXPLORATION
    config = rig.config
    task = task or config.task
    say = on_event or (lambda msg: log.info(msg))
    max_steps = settings.max_steps or config.max_steps
    n_act = policy.config.n_action_steps
    # in the background, chunks land a step or two late: replan at half a chunk so they overlap
    replan = settings.replan_every or (max(1, n_act // 2) if settings.async_inference else n_act)
    if not 1 <= replan <= policy.config.n_action_steps:
        raise ValueError(f"replan_every must be between 1 and the policy's n_action_steps "
                         f"({policy.config.n_action_steps}), got {replan}")
    n_obs = policy.config.n_obs_steps
    keys = policy_obs_keys(policy)
    result = SessionResult()
    limiter = RateLimiter(config.rate_hz)
    trial = next_trial(store, handle.checkpoint_id, settings.scene)
    defaults = dict(checkpoint=handle.checkpoint_id, **exploration.as_metadata(), rig=config.name,
                    ensemble=settings.ensemble, ensemble_k=settings.k, ensemble_tau=settings.tau, replan_every=replan,
                    max_rot_step=settings.max_rot_step, rate_hz=config.rate_hz,
                    async_inference=settings.async_inference)
    if settings.round is not None:
        defaults["round"] = settings.round
    if settings.branch is not None:
        defaults["branch"] = settings.branch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        while len(result.episode_ids) < episodes and not result.quit:
            rig.keyboard.new_episode()
            rig.home()
            say(f"evaluation episode {len(result.episode_ids) + 1}/{episodes}: press start")
            if not _wait_for_start(rig, limiter):
                result.quit = True
                break
            ep_seed = derive_seed("real-episode", settings.seed, settings.scene, trial)
            outcome = _run_episode(rig, store, policy, exploration, keys, n_obs, replan, max_steps, settings, task,
                                   defaults, ep_seed, trial, limiter, result, chunk_seed)
            if outcome is not None:
                trial += 1
                say(f"saved episode {result.episode_ids[-1]} (success={result.successes[-1]})")
            result.overruns += limiter.overruns
    finally:
        torch.set_num_threads(threads)
    return result


def _wait_for_start(rig: Rig, limiter: RateLimiter) -> bool:
    """Poll the keyboard (arm holding still) until start (True) or quit (False)."""
    limiter.reset()
    while True:
        limiter.wait()
        events = rig.keyboard.poll()
        if KeyEvent.QUIT in events:
            return False
        if KeyEvent.START in events:
            return True


@dataclass
class _Pending:
    """A background prediction and the step it was requested at."""

    future: Any
    t: int

    def done(self) -> bool:
        """True when the prediction has finished."""
        return self.future.done()


class ChunkPredictor:
    """Runs policy.predict for the loop: inline, or in one background thread so the loop keeps its rate.

    Each chunk is tagged with the step of the observation it was predicted from; the ensembler
    places it there, so actions whose time has passed while the policy was thinking are skipped.
    """

    def __init__(self, policy: Any, exploration: Any, ep_seed: int, chunk_seed: Callable[[int, int], int],
                 asynchronous: bool, result: SessionResult) -> None:
        self.policy, self.exploration, self.ep_seed, self.chunk_seed = policy, exploration, ep_seed, chunk_seed
        self.result = result
        self.requested = 0
        self._ready: list[tuple[np.ndarray, int]] = []
        self._pending: Any = None
        self._pool = None
        if asynchronous:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sime-hw-policy")

    @property
    def busy(self) -> bool:
        """True while a background prediction is running."""
        return self._pending is not None and not self._pending.done()

    def _predict(self, stacked: dict[str, np.ndarray], seed: int) -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        chunk = self.policy.predict(stacked, self.exploration, seed=seed)
        return chunk, time.perf_counter() - start

    def request(self, stacked: dict[str, np.ndarray], t: int) -> None:
        """Predict a chunk from the observation history of step t."""
        seed = self.chunk_seed(self.ep_seed, self.requested)
        self.requested += 1
        if self._pool is None:
            chunk, seconds = self._predict(stacked, seed)
            self.result.times.add("inference", seconds)
            self._ready.append((chunk, t))
        else:
            future = self._pool.submit(self._predict, stacked, seed)
            self._pending = _Pending(future, t)

    def collect(self) -> list[tuple[np.ndarray, int]]:
        """Chunks finished since the last call, with the step they were predicted at."""
        if self._pending is not None and self._pending.done():
            chunk, seconds = self._pending.future.result()
            self.result.times.add("inference", seconds)
            self._ready.append((chunk, self._pending.t))
            self._pending = None
        ready, self._ready = self._ready, []
        return ready

    def close(self) -> None:
        """Stop the background thread (waits for a running prediction and records its duration)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            if self._pending is not None and self._pending.future.exception() is None:
                self.result.times.add("inference", self._pending.future.result()[1])
            self._pending = None


def _run_episode(rig: Rig, store: Store, policy: Any, exploration: Any, keys: list[tuple[str, str]], n_obs: int,
                 replan: int, max_steps: int, settings: EvalSettings, task: str, defaults: dict[str, Any],
                 ep_seed: int, trial: int, limiter: RateLimiter, result: SessionResult,
                 chunk_seed: Callable[[int, int], int]) -> str | None:
    arm, keyboard = rig.arm, rig.keyboard
    ensembler = TemporalEnsembler(settings.ensemble, settings.k, settings.tau)
    action_filter = ActionFilter(rig.config.workspace, settings.max_rot_step,
                                 GripperHysteresis(settings.close_above, settings.open_below))
    state = arm.state()
    action_filter.reset(state.tcp_pose, gripper_closed=False)
    last_sent = geo.pose_to_action(state.tcp_pose, -1.0)  # held while no chunk covers the step
    history: deque[dict[str, np.ndarray]] = deque(maxlen=n_obs)
    predictor = ChunkPredictor(policy, exploration, ep_seed, chunk_seed, settings.async_inference, result)
    writer = store.writer("rollout", task, atomic=True, model_xml=rig.model_xml(), **defaults)
    last_request = None
    held = 0
    limiter.reset()
    limiter.overruns = 0
    try:
        for t in range(max_steps + 1):
            limiter.wait()
            events = keyboard.poll()
            if KeyEvent.QUIT in events:
                result.quit = True
            if KeyEvent.DISCARD in events or result.quit:
                drop_writer(writer)
                result.discarded += 1
                return None
            ended = (False if KeyEvent.FAILURE in events else True if KeyEvent.SUCCESS in events
                     else None if KeyEvent.FINISH in events else "running")
            if ended == "running" and t == max_steps:
                ended = False  # ran out of steps without the operator marking success
            if ended != "running" and writer.steps_in_flight > 0:
                episode_id = writer.finish(success=ended, init_state_id=settings.scene, trial=trial, seed=ep_seed,
                                           timeout=t == max_steps, chunks=predictor.requested, held_steps=held,
                                           overruns=limiter.overruns)
                writer.close()
                result.episode_ids.append(episode_id)
                result.successes.append(ended)
                return episode_id
            ob = rig.observe()
            result.times.add("device_read", ob.io_s)
            if not history:
                check_policy_fits_rig(policy, ob.obs)
                history.extend([ob.obs] * n_obs)
            else:
                history.append(ob.obs)
            if (last_request is None or t - last_request >= replan) and not predictor.busy:
                predictor.request({k: np.stack([h[r] for h in history]) for k, r in keys}, t)
                last_request = t
            for chunk, t0 in predictor.collect():
                ensembler.add(chunk, t0)
            raw = ensembler.get(t)
            if raw is None:
                held += 1
            action = action_filter(last_sent if raw is None else raw)
            start = time.perf_counter()
            pose, grip = geo.action_to_pose(action)
            arm.send_gripper_width(geo.command_to_width(grip, arm.max_gripper_width))
            sent = arm.send_tcp_pose(pose)
            result.times.add("device_write", time.perf_counter() - start)
            last_sent = geo.pose_to_action(sent, grip)
            start = time.perf_counter()
            writer.add_step(obs=ob.obs, action=last_sent, timestamp=np.float64(ob.timestamp),
                            extras={**step_extras(ob), "policy_actions": action if raw is None else raw})
            result.times.add("store_write", time.perf_counter() - start)
        raise AssertionError("unreachable")  # pragma: no cover
    except BaseException as exc:
        writer.close(exc)  # no-op when the episode was already committed
        arm.stop()
        raise
    finally:
        predictor.close()
