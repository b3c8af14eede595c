"""Experiment tracking of `sime run` (``--track``): each round's training run, and per round and branch the fit,
success rates, paired differences and one evaluation video.

Where it goes (wandb runs are offline unless $WANDB_MODE says otherwise, under ``$WANDB_DIR`` when set):

- each round's training: its own TensorBoard run in ``<out>/checkpoints/seed<S>/.../tensorboard`` and wandb run
  ``<name>/seed<S>/<branch>/round<R>`` in group ``<name>/round<R>`` (job type ``train``). The job that trains
  writes it (a spawned process or a Ray task writes only its own training directory).
- per branch, one step per round: ``<out>/tracking/<branch>/tensorboard`` and wandb run ``<name>/<branch>`` in
  group ``<name>/rounds`` (job type ``rounds``): ``eval/*`` (success rate, s.e., n, 95% interval),
  ``paired/vs_round0/*`` and ``paired/vs_other/*`` (difference, interval, p-value, from the run's report),
  ``data/collect/*`` and ``data/explore/*`` (success rates of the collections), ``data/train_*``, ``fit/*``
  (mean over seeds; ``seed<S>/...`` too with several seeds), a text line ``round`` and, on the SIME branch, the
  video ``eval/video`` of one evaluation episode. The pipeline's own process writes these after each round,
  from the store and the fit reports alone, so nothing is logged twice or from two processes.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from ..collect.rollout_report import binomial_stderr
from ..training.fit_report import read_fit_report
from ..training.tracking import MultiTracker, Tracker, make_tracker, scalar_items
from .config import BRANCHES, PipelineConfig
from .names import Chain
from .replicate_stats import p_clause

if TYPE_CHECKING:  # pragma: no cover
    from sime_data import Store

    from ..envs.wrapper import SimEnv
    from .report import RunReport

log = logging.getLogger(__name__)

TRACKING_DIR = "tracking"
VIDEO_TAG = "eval/video"
VIDEO_SIZE = 128         # pixels, square
VIDEO_MAX_FRAMES = 100   # longer episodes are shown every k-th step (at the same real-time speed)
_FIT_FIELDS = ("position_error_mm", "rotation_error_deg", "gripper_error", "jitter_mm", "reference_jitter_mm",
               "gripper_flips", "reference_gripper_flips", "normalized_mse", "ok")


# ---------------------------------------------------------------------- trackers
def training_tracker(config: PipelineConfig, chain: Chain, round_: int, run_dir: Path, version: str) -> Tracker:
    """The tracker of round r's training run of one chain (TensorBoard in its run directory)."""
    who = f"seed{chain.seed}" + ("" if round_ == 0 else f"/{chain.branch}") + f"/round{round_}"
    return make_tracker(config.track, run_dir, f"{config.name}/{who}", group=f"{config.name}/round{round_}",
                        job_type="train", config={"pipeline": config.to_dict(), "seed": chain.seed,
                                                  "branch": None if round_ == 0 else chain.branch, "round": round_,
                                                  "version": version})


def round_trackers(config: PipelineConfig, out: Path) -> dict[str, Tracker]:
    """One tracker per branch for the per-round figures (`<out>/tracking/<branch>`)."""
    return {branch: make_tracker(config.track, Path(out) / TRACKING_DIR / branch, f"{config.name}/{branch}",
                                 group=f"{config.name}/rounds", job_type="rounds",
                                 config={"pipeline": config.to_dict(), "branch": branch})
            for branch in BRANCHES}


def close_trackers(trackers: Mapping[str, Tracker]) -> None:
    """Close every tracker (the first failure is raised after all were tried)."""
    MultiTracker(list(trackers.values())).close()


# ---------------------------------------------------------------------- figures
def rollout_figures(store: "Store", versions: list[str]) -> dict[str, float]:
    """Success rate, s.e. and n pooled over the given rollout versions (those that exist)."""
    wins = n = 0
    for name in versions:
        if store.has_version(name):
            success = store.episodes(version=name, columns=["episode_id", "success"])["success"]
            wins += sum(_succeeded(value) for value in success)
            n += len(success)
    if n == 0:
        return {}
    return {"success_rate": wins / n, "stderr": binomial_stderr(wins, n), "n": n}


def _succeeded(value: Any) -> bool:
    """True only for a recorded success (a missing flag counts as failure, as in the report)."""
    return isinstance(value, (bool, np.bool_)) and bool(value)


def _chains(config: PipelineConfig, branch: str) -> list[Chain]:
    return [Chain(config.task, config.name, seed, branch) for seed in config.seeds]


def _summary_row(report: "RunReport", run: str, round_: int, branch: str) -> Mapping[str, Any] | None:
    table = report.summary
    hit = table[(table["run"] == run) & (table["round"] == round_) & (table["branch"] == branch)]
    return hit.iloc[0].to_dict() if len(hit) else None


def round_scalars(report: "RunReport", store: "Store", config: PipelineConfig, out: Path, round_: int,
                  branch: str) -> dict[str, float]:
    """Every scalar logged for one round and branch (empty when the round has no evaluation yet)."""
    row = _summary_row(report, config.name, round_, branch)
    if row is None:
        return {}
    values: dict[str, float] = {}
    values.update(scalar_items({"success_rate": row["success_rate"], "stderr": row["stderr"], "n": row["n"],
                                "ci_low": row["ci_rate_low"], "ci_high": row["ci_rate_high"]}, "eval"))
    values.update(scalar_items({"diff": row["diff_vs_round0"], "ci_low": row["ci_low"], "ci_high": row["ci_high"],
                                "p_value": row["p_value"]}, "paired/vs_round0"))
    values.update(scalar_items({"diff": row["diff_vs_other"], "ci_low": row["ci_low_vs_other"],
                                "ci_high": row["ci_high_vs_other"], "p_value": row["p_value_vs_other"]},
                               "paired/vs_other"))
    values.update(scalar_items({"train_episodes": row["train_episodes"], "train_frames": row["train_frames"]}, "data"))
    chains = _chains(config, branch)
    for kind, version_of in (("collect", Chain.collect_version), ("explore", Chain.explore_version)):
        values.update(scalar_items(rollout_figures(store, [version_of(c, round_) for c in chains]), f"data/{kind}"))
    fits = {c.seed: read_fit_report(c.checkpoint_dir(out, round_)) for c in chains}
    fits = {seed: fit.to_dict() for seed, fit in fits.items() if fit is not None}
    for field in _FIT_FIELDS:
        numbers = [float(fit[field]) for fit in fits.values() if fit.get(field) is not None]
        if numbers:
            values.update(scalar_items({field: float(np.mean(numbers))}, "fit"))
    if len(config.seeds) > 1:  # per seed as well
        rows = report.rows[(report.rows["run"] == config.name) & (report.rows["round"] == round_)
                           & (report.rows["branch"] == branch)]
        for seed_row in rows.itertuples():
            values.update(scalar_items({"success_rate": seed_row.success_rate}, f"seed{seed_row.seed}/eval"))
        for seed, fit in fits.items():
            values.update(scalar_items({k: fit.get(k) for k in _FIT_FIELDS}, f"seed{seed}/fit"))
    return values


def round_text(values: Mapping[str, float], config: PipelineConfig, out: Path, round_: int, branch: str) -> str:
    """One paragraph on a round and branch: score, paired differences, data and the fit verdicts."""
    def diff(prefix: str, label: str) -> str:
        if f"{prefix}/diff" not in values:
            return ""
        return (f"; {label} {values[prefix + '/diff']:+.3f} [{values[prefix + '/ci_low']:+.3f}, "
                f"{values[prefix + '/ci_high']:+.3f}] ({p_clause(values.get(prefix + '/p_value', math.nan))})")

    nan = math.nan
    text = (f"round {round_} {branch}: success rate {values.get('eval/success_rate', nan):.3f} ± "
            f"{values.get('eval/stderr', nan):.3f} (n = {values.get('eval/n', 0):.0f})"
            + diff("paired/vs_round0", "vs round 0")
            + diff("paired/vs_other", "vs the other branch"))
    for kind in ("collect", "explore"):
        if f"data/{kind}/success_rate" in values:
            text += f"; {kind} {values[f'data/{kind}/success_rate']:.3f} (n = {values[f'data/{kind}/n']:.0f})"
    for chain in _chains(config, branch):
        fit = read_fit_report(chain.checkpoint_dir(out, round_))
        if fit is not None:
            text += f"\n\nseed {chain.seed}: {fit.summary()}"
    return text


# ---------------------------------------------------------------------- video
def pick_video_episode(store: "Store", config: PipelineConfig, round_: int) -> dict[str, Any] | None:
    """The evaluation episode of round r shown as video: SIME branch, first seed, first success (else first)."""
    version = Chain(config.task, config.name, config.seeds[0], "sime").eval_version(round_)
    if not store.has_version(version):
        return None
    rows = store.episodes(version=version, columns=["episode_id", "init_state_id", "trial", "success", "length"])
    if rows.empty:
        return None
    rows = rows.assign(ok=[_succeeded(value) for value in rows["success"]]).sort_values(
        ["ok", "init_state_id", "trial"], ascending=[False, True, True], kind="stable")
    first = rows.iloc[0]
    return {"episode_id": str(first["episode_id"]), "version": version, "init_state_id": str(first["init_state_id"]),
            "trial": int(first["trial"]), "success": bool(first["ok"]), "length": int(first["length"])}


def _render_state(env: "SimEnv", state: np.ndarray, camera: str) -> np.ndarray:
    """One camera image of a simulator state (the image reset_to would observe, without resetting)."""
    from robosuite import macros

    sim = env.env.sim
    sim.set_state_from_flattened(np.asarray(state, dtype=np.float64))
    sim.forward()
    image = np.asarray(sim.render(camera_name=camera, width=env.image_size, height=env.image_size))
    return np.ascontiguousarray(image[::-1] if macros.IMAGE_CONVENTION == "opengl" else image, dtype=np.uint8)


def render_episode(store: "Store", episode_id: str, task: str, *, env: "SimEnv | None" = None,
                   camera: str | None = None, image_size: int = VIDEO_SIZE,
                   max_frames: int = VIDEO_MAX_FRAMES) -> tuple[np.ndarray, float]:
    """(T, H, W, 3) uint8 frames of a stored episode re-rendered from its recorded states, and their fps.

    Uses ``env`` (a ``SimEnv(task, cameras=True)`` made in this thread) or makes and closes one; the episode's
    model XML is loaded first. ``camera`` defaults to the task's first camera.
    """
    states = store.read_episode(episode_id, keys=["states"])["states"]
    if len(states) == 0:
        raise ValueError(f"episode {episode_id} has no recorded states to render")
    stride = max(1, math.ceil(len(states) / max_frames))
    picked = states[::stride]
    own = env is None
    if env is None:
        from ..envs.wrapper import SimEnv

        env = SimEnv(task, cameras=True, image_size=image_size)
    try:
        if not env.cameras:
            raise ValueError("render_episode needs a SimEnv made with cameras=True")
        name = camera or env.spec.camera_names[0]
        first = env.reset_to(picked[0], store.model_xml(episode_id))[f"{name}_image"]  # loads the episode's model
        frames = [first] + [_render_state(env, state, name) for state in picked[1:]]
        fps = float(getattr(env.env, "control_freq", 20)) / stride
    finally:
        if own:
            env.close()
    return np.stack(frames), fps


# ---------------------------------------------------------------------- one round
def log_round(trackers: Mapping[str, Tracker], store: "Store", config: PipelineConfig, out: str | Path, round_: int,
              *, report: "RunReport | None" = None, video: bool = True,
              video_env: "SimEnv | None" = None) -> dict[str, dict[str, float]]:
    """Log round r's figures to each branch's tracker (and its evaluation video to the SIME one); returns them.

    ``report`` defaults to the run's report rebuilt from the store. ``video_env`` is a camera SimEnv made in
    this thread to render with (default: one made and closed here). A video that cannot be rendered (no
    offscreen rendering, no recorded states) is left out with a warning.
    """
    if not any(tracker.active for tracker in trackers.values()):
        return {}
    from .report import build_report

    out = Path(out)
    report = report if report is not None else build_report(store, task=config.task, run=config.name)
    logged: dict[str, dict[str, float]] = {}
    for branch, tracker in trackers.items():
        values = round_scalars(report, store, config, out, round_, branch)
        if not values:
            continue
        tracker.log_scalars(round_, values)
        tracker.log_text("round", round_text(values, config, out, round_, branch), round_)
        logged[branch] = values
    if video and "sime" in logged:
        episode = pick_video_episode(store, config, round_)
        if episode is not None:
            try:
                frames, fps = render_episode(store, episode["episode_id"], config.task, env=video_env)
            except Exception as exc:  # a missing renderer must not stop the run
                log.warning("no evaluation video for round %d: %s", round_, exc)
            else:
                tracker = trackers["sime"]
                tracker.log_video(VIDEO_TAG, frames, fps, round_)
                tracker.log_text("eval/video_episode",
                                 f"{episode['version']}: episode {episode['episode_id']}, state "
                                 f"{episode['init_state_id']}, trial {episode['trial']}, "
                                 f"{'success' if episode['success'] else 'failure'}, {episode['length']} steps "
                                 f"({len(frames)} frames at {fps:g} fps)", round_)
    return logged
