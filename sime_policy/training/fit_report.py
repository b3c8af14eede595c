"""Open-loop fit of a trained policy on its own training episodes: position, rotation, gripper error and jitter.

A policy that cannot reproduce the actions of the data it was trained on will not roll out well, and
its rollouts (jittery, slow, with a chattering gripper) poison the next round's training data. The
report predicts action chunks from recorded observation histories, the way the policy runs in
receding horizon (windows every ``n_action_steps`` frames), and compares the executed part of each
chunk with the recorded actions:

- ``position_error_mm``: mean distance between predicted and recorded end-effector positions;
- ``rotation_error_deg``: mean geodesic angle between predicted and recorded orientations (6-D);
- ``gripper_error``: fraction of steps whose gripper command has the other sign;
- ``jitter_mm``: mean norm of the second difference of predicted positions inside a chunk (a smooth
  motion has almost none; ``reference_jitter_mm`` is the same on the recorded actions);
- ``gripper_flips``: mean gripper sign changes per predicted chunk (``reference_gripper_flips``: recorded).

Padded steps (past an episode's end) are left out. Actions are the toolkit's absolute 10-D-per-arm
layout ``[xyz, rot6d, gripper]``; other action layouts get only the normalised mean squared error.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from sime_data.sampler import SequenceSampler

    from ..policy.diffusion import DiffusionPolicy

log = logging.getLogger(__name__)

FIT_FILE = "fit.json"
ARM_WIDTH = 10  # [x, y, z, r6, gripper] per arm


@dataclass(frozen=True)
class FitThresholds:
    """Limits beyond which a policy's fit is flagged as poor before its rollouts are collected."""

    position_error_mm: float = 10.0
    rotation_error_deg: float = 10.0
    gripper_error: float = 0.05
    jitter_mm: float = 15.0          # flagged above max(this, 3 x the recorded actions' jitter)
    normalized_mse: float = 0.1      # for action layouts without arm figures


@dataclass(frozen=True)
class FitReport:
    """How well a policy reproduces the actions of its training episodes (open loop)."""

    version: str
    episodes: int
    windows: int
    steps: int
    normalized_mse: float
    position_error_mm: float = math.nan
    rotation_error_deg: float = math.nan
    gripper_error: float = math.nan
    jitter_mm: float = math.nan
    reference_jitter_mm: float = math.nan
    gripper_flips: float = math.nan
    reference_gripper_flips: float = math.nan
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """True when no measure is beyond its threshold."""
        return not self.problems

    def summary(self) -> str:
        """One line: the figures and the verdict."""
        if math.isnan(self.position_error_mm):
            figures = f"normalised action MSE {self.normalized_mse:.4f}"
        else:
            figures = (f"position error {self.position_error_mm:.1f} mm, rotation {self.rotation_error_deg:.1f} deg, "
                       f"gripper {self.gripper_error:.1%}, jitter {self.jitter_mm:.1f} mm (data "
                       f"{self.reference_jitter_mm:.1f} mm), gripper flips/chunk {self.gripper_flips:.2f} (data "
                       f"{self.reference_gripper_flips:.2f})")
        verdict = "fit OK" if self.ok else "POOR FIT: " + "; ".join(self.problems)
        return f"open-loop fit on {self.episodes} training episodes ({self.windows} chunks): {figures} -> {verdict}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (NaN as null)."""
        data = asdict(self)
        data["problems"] = list(self.problems)
        data["ok"] = self.ok
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in data.items()}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "FitReport":
        """Inverse of `to_dict`."""
        values = {k: (math.nan if v is None else v) for k, v in raw.items() if k in cls.__dataclass_fields__}
        values["problems"] = tuple(raw.get("problems") or ())
        return cls(**values)

    def write(self, run_dir: str | Path) -> Path:
        """Write fit.json into a training run directory."""
        path = Path(run_dir) / FIT_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path


def read_fit_report(run_dir: str | Path) -> FitReport | None:
    """The fit report saved in a training run directory (None when absent)."""
    path = Path(run_dir) / FIT_FILE
    if not path.is_file():
        return None
    return FitReport.from_dict(json.loads(path.read_text()))


def chunk_windows(sampler: "SequenceSampler", stride: int, max_windows: int) -> np.ndarray:
    """Window indices whose first executed action falls on every `stride`-th frame of each range (evenly capped)."""
    windows = sampler.windows()
    executed_first = windows["frame_start"].to_numpy() + sampler.n_obs_steps - 1
    range_first = sampler.data.range_frame_start[windows["range_index"].to_numpy()]
    offset = executed_first - range_first
    chosen = np.flatnonzero((offset >= 0) & (offset % max(1, stride) == 0))
    if len(chosen) > max_windows:
        chosen = chosen[np.linspace(0, len(chosen) - 1, max_windows).round().astype(np.int64)]
    return chosen


def _gripper_flips(gripper: np.ndarray) -> np.ndarray:
    """Sign changes along axis 1 of (B, T) gripper commands."""
    signs = np.sign(gripper)
    return (np.diff(signs, axis=1) != 0).sum(axis=1)


def arm_errors(predicted: np.ndarray, recorded: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    """Position/rotation/gripper error and jitter of (B, T, 10 * arms) absolute action chunks (valid: (B, T))."""
    from ..envs.rotations import rot6d_to_matrix

    arms = predicted.shape[-1] // ARM_WIDTH
    pos_err, rot_err, grip_err, jitter, ref_jitter, flips, ref_flips = [], [], [], [], [], [], []
    for arm in range(arms):
        p = predicted[..., arm * ARM_WIDTH: (arm + 1) * ARM_WIDTH]
        r = recorded[..., arm * ARM_WIDTH: (arm + 1) * ARM_WIDTH]
        pos_err.append(np.linalg.norm(p[..., 0:3] - r[..., 0:3], axis=-1)[valid])
        rp, rr = rot6d_to_matrix(p[..., 3:9]), rot6d_to_matrix(r[..., 3:9])
        relative = np.einsum("...ji,...jk->...ik", rp, rr)
        cos = np.clip((np.trace(relative, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0)
        rot_err.append(np.degrees(np.arccos(cos))[valid])
        grip_err.append((np.sign(p[..., 9]) != np.sign(r[..., 9]))[valid])
        # second differences inside a chunk, only where all three steps are real (not padding)
        triple = valid[:, 2:] & valid[:, 1:-1] & valid[:, :-2]
        jitter.append(np.linalg.norm(np.diff(p[..., 0:3], n=2, axis=1), axis=-1)[triple])
        ref_jitter.append(np.linalg.norm(np.diff(r[..., 0:3], n=2, axis=1), axis=-1)[triple])
        full = valid.all(axis=1)
        flips.append(_gripper_flips(p[full, :, 9]))
        ref_flips.append(_gripper_flips(r[full, :, 9]))

    def mean(parts: list[np.ndarray], scale: float = 1.0) -> float:
        values = np.concatenate(parts) if parts else np.array([])
        return float(values.mean() * scale) if values.size else math.nan

    return {"position_error_mm": mean(pos_err, 1000.0), "rotation_error_deg": mean(rot_err),
            "gripper_error": mean([g.astype(np.float64) for g in grip_err]), "jitter_mm": mean(jitter, 1000.0),
            "reference_jitter_mm": mean(ref_jitter, 1000.0), "gripper_flips": mean(flips),
            "reference_gripper_flips": mean(ref_flips)}


def judge(figures: dict[str, float], thresholds: FitThresholds, normalized_mse: float = math.nan) -> tuple[str, ...]:
    """The measures beyond their thresholds, in words (the normalised MSE only counts without arm figures)."""
    problems = []
    if math.isnan(figures.get("position_error_mm", math.nan)) and normalized_mse > thresholds.normalized_mse:
        problems.append(f"normalised action MSE {normalized_mse:.3f} > {thresholds.normalized_mse:g}")
    checks = (("position_error_mm", "position error", "mm", thresholds.position_error_mm),
              ("rotation_error_deg", "rotation error", "deg", thresholds.rotation_error_deg))
    for key, label, unit, limit in checks:
        value = figures.get(key, math.nan)
        if not math.isnan(value) and value > limit:
            problems.append(f"{label} {value:.1f} {unit} > {limit:g} {unit}")
    gripper = figures.get("gripper_error", math.nan)
    if not math.isnan(gripper) and gripper > thresholds.gripper_error:
        problems.append(f"gripper wrong on {gripper:.1%} of steps > {thresholds.gripper_error:.0%}")
    jitter, reference = figures.get("jitter_mm", math.nan), figures.get("reference_jitter_mm", math.nan)
    if not math.isnan(jitter):
        limit = max(thresholds.jitter_mm, 3.0 * (0.0 if math.isnan(reference) else reference))
        if jitter > limit:
            problems.append(f"jitter {jitter:.1f} mm > {limit:.1f} mm")
    return tuple(problems)


def fit_report(policy: "DiffusionPolicy", sampler: "SequenceSampler", *, max_windows: int = 256,
               batch_size: int = 64, seed: int = 0, thresholds: FitThresholds | None = None) -> FitReport:
    """Open-loop fit of `policy` on the windows of `sampler` (its training data), without exploration."""
    import torch

    thresholds = thresholds or FitThresholds()
    config = policy.config
    if sampler.horizon != config.horizon or sampler.n_obs_steps != config.n_obs_steps:
        raise ValueError(f"the sampler's windows (horizon {sampler.horizon}, {sampler.n_obs_steps} observation steps) "
                         f"do not match the policy's ({config.horizon}, {config.n_obs_steps})")
    indices = chunk_windows(sampler, config.n_action_steps, max_windows)
    start, stop = config.n_obs_steps - 1, config.n_obs_steps - 1 + config.n_action_steps
    predicted, recorded, valid = [], [], []
    for lo in range(0, len(indices), batch_size):
        batch_idx = indices[lo: lo + batch_size]
        batch = sampler.sample_batch(batch_idx)
        obs = {k: batch[k] for k in config.obs_keys}
        chunk = policy.predict(obs, seed=seed + lo, full_horizon=True)
        predicted.append(np.asarray(chunk)[:, start:stop])
        recorded.append(batch["action"][:, start:stop])
        valid.append(~sampler.window_meta(batch_idx)["is_pad"][:, start:stop])
    pred = np.concatenate(predicted).astype(np.float64)
    rec = np.concatenate(recorded).astype(np.float64)
    mask = np.concatenate(valid)
    key = config.action_key
    with torch.no_grad():
        diff = policy.normalizer.normalize(key, torch.as_tensor(pred, dtype=torch.float32)) - \
            policy.normalizer.normalize(key, torch.as_tensor(rec, dtype=torch.float32))
    mse = float((diff.numpy() ** 2).mean(axis=-1)[mask].mean()) if mask.any() else math.nan
    figures: dict[str, float] = {}
    if pred.shape[-1] % ARM_WIDTH == 0:
        figures = arm_errors(pred, rec, mask)
    episodes = len(set(sampler.window_meta(indices)["episode_id"].tolist())) if len(indices) else 0
    return FitReport(version=sampler.data.version, episodes=episodes, windows=int(len(indices)),
                     steps=int(mask.sum()), normalized_mse=mse, problems=judge(figures, thresholds, mse), **figures)


def fit_report_of_episodes(policy: "DiffusionPolicy", store: Any, version: str, episodes: Sequence[str] | None = None,
                           **kwargs: Any) -> FitReport:
    """Open-loop fit of `policy` on a store version's episodes (all, or the given ids)."""
    from sime_data.sampler import SequenceSampler

    config = policy.config
    sampler = SequenceSampler(store, version, obs_keys=config.obs_keys, action_key=config.action_key,
                              n_obs_steps=config.n_obs_steps, horizon=config.horizon,
                              n_action_steps=config.n_action_steps, episodes=episodes)
    return fit_report(policy, sampler, **kwargs)
