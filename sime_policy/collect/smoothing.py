"""Replay-verified smoothing of kept rollouts: an automatic stand-in for the curator's trim of bad frames.

Rollouts collected with modal-level exploration succeed, but chatter: on the quick preset the kept ones
were 1.9x a demo's length with a median of 8 gripper sign flips (a demo has 1), and training on them
made round 1 worse than round 0 (README, "Measured results"). Each kept rollout is therefore turned into
a smoother one before it joins the training data:

1. per arm, the end-effector position and 6-D rotation targets get a centred moving average over
   ``window`` steps; the gripper command becomes its sign, with runs shorter than ``min_gripper_run``
   steps merged into the run before them;
2. the smoothed actions are executed again in the simulator from the episode's recorded initial state and
   model (held at the last action for up to ``extra_steps`` more steps), recording fresh observations;
3. only replays that succeed are kept, as new episodes (tag ``smoothed``, ``meta.smoothed_from`` = the
   original); the originals stay in the store untouched.

So every kept trajectory is one the simulator has verified, and observations match the actions. The
store is never asked to trust an action that was not executed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

if TYPE_CHECKING:  # pragma: no cover
    from sime_data import Store

log = logging.getLogger(__name__)

#: Tag of every episode this module writes.
SMOOTHED_TAG = "smoothed"
#: Source of the episodes this module writes (kept apart from the rollouts they came from).
SMOOTHED_SOURCE = "curated"
#: Per-arm action layout: xyz (3) + 6-D rotation (6) + gripper (1).
ARM_DIMS = 10


@dataclass(frozen=True)
class SmoothingSettings:
    """How kept rollouts are smoothed and replayed."""

    #: steps of the centred moving average over position and rotation targets (odd, >= 1)
    window: int = 5
    #: gripper runs shorter than this many steps are merged into the run before them
    min_gripper_run: int = 4
    #: steps the last smoothed action is held for when the replay has not succeeded yet
    extra_steps: int = 20

    def __post_init__(self) -> None:
        if self.window < 1 or self.window % 2 == 0:
            raise ValueError(f"smoothing window must be an odd number >= 1, got {self.window}")
        if self.min_gripper_run < 1 or self.extra_steps < 0:
            raise ValueError(f"min_gripper_run must be >= 1 and extra_steps >= 0, got {self.min_gripper_run}, "
                             f"{self.extra_steps}")

    def label(self) -> str:
        """Short text naming the settings (recorded with each smoothed episode)."""
        return f"window {self.window}, gripper runs >= {self.min_gripper_run}, +{self.extra_steps} steps"


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along time, edges padded with the first/last value."""
    if window == 1:
        return values.copy()
    half = window // 2
    padded = np.pad(values, ((half, half), (0, 0)), mode="edge")
    cumulative = np.cumsum(np.vstack([np.zeros((1, values.shape[1])), padded]), axis=0)
    return (cumulative[window:] - cumulative[:-window]) / window


def _merge_short_runs(signs: np.ndarray, min_run: int) -> np.ndarray:
    """Sign sequence with every run shorter than `min_run` (but the first) merged into the run before it."""
    out = signs.copy()
    t = 1
    while t < len(out):
        if out[t] != out[t - 1]:
            stop = t
            while stop < len(out) and out[stop] == out[t]:
                stop += 1
            if stop - t < min_run:
                out[t:stop] = out[t - 1]
                continue  # re-examine from here: the merged run may now join the next one
            t = stop
        else:
            t += 1
    return out


def smooth_actions(actions: np.ndarray, settings: SmoothingSettings = SmoothingSettings()) -> np.ndarray:
    """Smoothed copy of an absolute-pose action sequence (T, 10 * arms)."""
    actions = np.asarray(actions, dtype=np.float64)
    if actions.ndim != 2 or actions.shape[1] % ARM_DIMS:
        raise ValueError(f"actions must be (T, {ARM_DIMS} x arms), got shape {actions.shape}")
    out = actions.copy()
    for arm in range(actions.shape[1] // ARM_DIMS):
        pose = slice(arm * ARM_DIMS, arm * ARM_DIMS + 9)
        grip = arm * ARM_DIMS + 9
        out[:, pose] = _moving_average(actions[:, pose], settings.window)
        signs = np.where(actions[:, grip] >= 0, 1.0, -1.0)
        out[:, grip] = _merge_short_runs(signs, settings.min_gripper_run)
    return out


def gripper_flips(actions: np.ndarray) -> int:
    """Sign changes of the gripper command(s) over an episode, summed over arms."""
    actions = np.asarray(actions)
    grips = actions[:, ARM_DIMS - 1::ARM_DIMS]
    return int((np.diff(np.sign(grips), axis=0) != 0).sum())


@dataclass
class SmoothingResult:
    """Which kept rollout became which smoothed episode (None: its replay failed and it was dropped)."""

    replacements: dict[str, str | None] = field(default_factory=dict)
    settings: SmoothingSettings = SmoothingSettings()
    flips_before: float = float("nan")
    flips_after: float = float("nan")
    reused: int = 0

    @property
    def kept(self) -> list[str]:
        """Smoothed episode ids, in the order of the originals."""
        return [new for new in self.replacements.values() if new is not None]

    @property
    def n_dropped(self) -> int:
        """Kept rollouts whose smoothed replay failed."""
        return sum(new is None for new in self.replacements.values())

    def describe(self) -> str:
        """One line for logs."""
        after = f"{self.flips_after:.1f}" if self.kept else "none kept"
        return (f"smoothed {len(self.replacements)} kept rollouts ({self.settings.label()}): {len(self.kept)} replays "
                f"succeeded, {self.n_dropped} dropped; gripper flips per episode {self.flips_before:.1f} -> {after}")

    def as_rule(self) -> dict[str, Any]:
        """What a version's rule records about this step."""
        return {"smoothing": asdict(self.settings), "n_smoothed": len(self.kept), "n_smoothing_dropped": self.n_dropped,
                "flips_before": round(self.flips_before, 2) if self.replacements else None,
                "flips_after": round(self.flips_after, 2) if self.kept else None}  # no NaN in a rule's JSON


def _earlier_replays(store: "Store", settings: SmoothingSettings) -> dict[str, tuple[str, bool]]:
    """original id -> (smoothed id, replay succeeded) for replays with these settings already in the store."""
    rows = store.sql(f"SELECT episode_id, success, meta FROM episodes WHERE list_contains(tags, '{SMOOTHED_TAG}')")
    found: dict[str, tuple[str, bool]] = {}
    wanted = asdict(settings)
    for row in rows.itertuples():
        meta = json.loads(row.meta) if isinstance(row.meta, str) else {}
        if meta.get("smoothing") == wanted and meta.get("smoothed_from"):
            found[meta["smoothed_from"]] = (row.episode_id, bool(row.success))
    return found


def smooth_and_replay(store: "Store", task: str, episode_ids: Iterable[str],
                      settings: SmoothingSettings = SmoothingSettings(), *, progress: bool = True) -> SmoothingResult:
    """Smooth each episode's actions, replay them from its recorded start, store the successful replays.

    Rerunning with the same episodes and settings reuses the replays already stored (a failed replay is
    stored too, with success False, so that it is not retried).
    """
    from ..envs import SimEnv

    ids = list(episode_ids)
    result = SmoothingResult(settings=settings)
    if not ids:
        return result
    rows = store.episodes().set_index("episode_id")
    done = _earlier_replays(store, settings)
    result.reused = sum(e in done for e in ids)
    todo = [e for e in ids if e not in done]
    if todo:
        with SimEnv(task) as env, store.writer(SMOOTHED_SOURCE, task, atomic=True, model_xml=env.model_xml()) as writer:
            for episode_id in tqdm(todo, desc="smooth + replay", unit="ep", disable=not progress, leave=False):
                done[episode_id] = _replay_one(store, env, writer, episode_id, rows.loc[episode_id], settings)
    before, after = [], []
    for episode_id in ids:
        new_id, ok = done[episode_id]
        result.replacements[episode_id] = new_id if ok else None
        before.append(gripper_flips(store.read_episode(episode_id, keys=["actions"])["actions"]))
        if ok:
            after.append(gripper_flips(store.read_episode(new_id, keys=["actions"])["actions"]))
    result.flips_before = float(np.mean(before)) if before else float("nan")
    result.flips_after = float(np.mean(after)) if after else float("nan")
    log.info("%s", result.describe())
    return result


def _replay_one(store: "Store", env: Any, writer: Any, episode_id: str, row: Any,
                settings: SmoothingSettings) -> tuple[str, bool]:
    """Execute the smoothed actions of one episode from its recorded start; commit the replay; (id, success)."""
    actions = smooth_actions(store.read_episode(episode_id, keys=["actions"])["actions"], settings)
    model_xml = store.model_xml(episode_id)
    init_state = np.asarray(row["init_state"], dtype=np.float64)
    obs = env.reset_to(init_state, model_xml)
    success = False
    for t in range(len(actions) + settings.extra_steps):
        action = actions[min(t, len(actions) - 1)]
        state = env.get_state()
        next_obs, reward, done, info = env.step(action)
        success = bool(info["success"])
        writer.add_step(obs=obs, action=action, reward=reward, done=success or done, state=state)
        obs = next_obs
        if success or (done and t >= len(actions) - 1):
            break
    copied: dict[str, Any] = {}
    for key, kind in _COPIED_COLUMNS.items():
        value = row.get(key)
        if value is not None and not (np.isscalar(value) and pd.isna(value)):
            copied[key] = kind(value)
    new_id = writer.finish(success=success, init_state=init_state, tags=[SMOOTHED_TAG], smoothed_from=episode_id,
                           smoothing=asdict(settings), model_xml=model_xml, **copied)
    return new_id, success


#: Row columns a replay takes over from its original, with their types.
_COPIED_COLUMNS: dict[str, Any] = {"init_state_id": str, "trial": int, "seed": int, "round": int, "branch": str,
                                   "checkpoint": str, "explore_mode": str, "noise_scale": float, "tau1": float,
                                   "tau2": float}
