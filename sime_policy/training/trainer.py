"""Train a diffusion policy on a store version: AdamW + warm-up/cosine LR, gradient clipping, EMA,
validation on held-out episodes, atomic self-contained checkpoints, exact resume and DistributedDataParallel.

Randomness is fully determined by ``config.train.seed``: the model is initialised after
``torch.manual_seed(seed)``; batch indices come from one numpy generator shared by every rank (each step
draws ``batch_size * world_size`` distinct windows, rank ``r`` takes the ``r``-th slice); the diffusion
noise of step ``s`` on rank ``r`` is drawn from torch's generator seeded from ``(seed, rank, s)``.
Validation uses fixed windows and a fixed generator so its losses are comparable across steps.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ..policy.config import ExperimentConfig
from ..policy.diffusion import DiffusionPolicy, make_policy
from .budget import BudgetDecision, resolve_steps
from .checkpoint import (FINAL, LATEST, IncompatibleCheckpointError, TrainingLineage, absolute_location,
                         check_compatible, checkpoint_id, config_differences, load_checkpoint, load_weights,
                         save_checkpoint, signature_differences, training_checkpoint)
from .data import load_training_data
from .devices import resolve_device
from .distributed import DistContext, init_distributed, reduce_mean
from .ema import EMAModel
from .fit_report import FitReport, FitThresholds, fit_report
from .lr_schedule import make_lr_scheduler
from .rng_state import capture_rng_state, restore_rng_state
from .tracking import NullTracker, Tracker
from .train_log import CSV_NAME, JSON_NAME, PLOT_NAME, LossHistory

if TYPE_CHECKING:  # pragma: no cover
    from sime_data.store import Store

log = logging.getLogger(__name__)

LOG_NAME = "train.log"
VAL_SEED_OFFSET = 7_777
#: a tracker receives the training loss, lr and grad norm of every TRACK_EVERY-th step (and of the last one)
TRACK_EVERY = 10


# ---------------------------------------------------------------------- public types
@dataclass(frozen=True)
class StepInfo:
    """What `train`'s ``on_step`` callback receives after every optimisation step."""

    step: int
    loss: float
    lr: float
    grad_norm: float
    indices: np.ndarray
    rank: int
    world_size: int


@dataclass
class TrainResult:
    """Outcome of `train`: where the checkpoints are, the loss history and the trained modules."""

    out_dir: Path
    latest_checkpoint: Path
    final_checkpoint: Path | None
    checkpoint_id: str
    step: int
    history: LossHistory
    policy: DiffusionPolicy
    ema_policy: DiffusionPolicy | None
    rank: int = 0
    world_size: int = 1
    wall_time_s: float = 0.0
    files: dict[str, Path] = field(default_factory=dict)
    fit: FitReport | None = None
    budget: BudgetDecision | None = None
    tracking_s: float = 0.0  # time spent handing figures to the tracker

    @property
    def final_train_loss(self) -> float:
        """Mean training loss over the last 10 steps."""
        return self.history.mean_train(10)

    @property
    def final_val_loss(self) -> float | None:
        """Last validation loss (None without validation)."""
        return self.history.val_loss[-1] if self.history.val_loss else None

    @property
    def eval_policy(self) -> DiffusionPolicy:
        """The EMA policy when EMA is on, else the trained one."""
        return self.ema_policy if self.ema_policy is not None else self.policy


# ---------------------------------------------------------------------- batches and step seeds
def draw_batch_indices(rng: np.random.Generator, n_windows: int, batch_size: int, world_size: int = 1) -> np.ndarray:
    """(world_size, batch_size) window indices; rows are disjoint whenever n_windows >= batch_size * world_size."""
    total = batch_size * world_size
    if n_windows >= total:
        flat = rng.choice(n_windows, size=total, replace=False)
    else:  # fewer windows than one global batch: whole permutations, repeated
        reps = -(-total // n_windows)
        flat = np.concatenate([rng.permutation(n_windows) for _ in range(reps)])[:total]
    return flat.reshape(world_size, batch_size).astype(np.int64)


def _step_seed(seed: int, rank: int, step: int) -> int:
    """Seed of torch's generator for one step on one rank."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, rank, step, 0x5EED]).generate_state(1, np.uint64)
    return int(state[0]) >> 1


def _to_device(batch: Mapping[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    from sime_data.torch_dataset import to_tensors

    return {k: v.to(device, non_blocking=True) for k, v in to_tensors(batch).items()}


# ---------------------------------------------------------------------- the run
class _Run:
    """State of one training run; `train` builds it and calls `execute`."""

    def __init__(self, store: Any, version: str, config: ExperimentConfig, out_dir: Path, *, ctx: DistContext,
                 device: torch.device, frame_weights: Mapping[str, Any] | None) -> None:
        self.store, self.config, self.out_dir, self.ctx, self.device = store, config, out_dir, ctx, device
        self.tc = config.train
        self.ver = store.version(version)
        if self.tc.steps < 1 or self.tc.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {self.tc.steps}, {self.tc.batch_size}")
        if self.tc.epochs is not None and self.tc.epochs <= 0:
            raise ValueError(f"epochs must be positive (or None for the fixed step count), got {self.tc.epochs}")
        data = load_training_data(store, self.ver, config.policy, self.tc.val_ratio, self.tc.seed)
        normalizer = data.normalizer(config.policy)
        torch.manual_seed(self.tc.seed)
        self.policy = make_policy(config.policy, normalizer, data.shapes).to(device)
        self.train_ids, self.val_ids = data.train_ids, data.val_ids
        self.train_sampler, self.val_sampler = data.samplers(config.policy, frame_weights, self.tc.val_ratio)
        self.budget = resolve_steps(steps=self.tc.steps, epochs=self.tc.epochs, min_steps=self.tc.min_steps,
                                    max_steps=self.tc.step_cap, windows=len(self.train_sampler),
                                    batch_size=self.tc.batch_size * ctx.world_size)
        if self.budget.steps != self.tc.steps:  # the resolved count is what the schedule, checkpoints and resume use
            self.tc = replace(self.tc, steps=self.budget.steps)
            self.config = replace(config, train=self.tc)
        self.frame_weights = frame_weights is not None
        self.optimizer = torch.optim.AdamW(self.policy.parameters(), lr=self.tc.lr, betas=tuple(self.tc.betas),
                                           weight_decay=self.tc.weight_decay)
        self.scheduler = make_lr_scheduler(self.optimizer, self.tc.warmup_steps, self.tc.steps)
        self.ema = (EMAModel(self.policy, power=self.tc.ema_power, max_decay=self.tc.ema_max_decay)
                    if self.tc.use_ema else None)
        self.batch_rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.tc.seed, 1])))
        self.val_batches = self._val_batches()
        self.history = LossHistory()
        self.step = 0
        self.init_checkpoint: str | None = None  # id of the checkpoint a fine-tuning run started from
        self.tracker: Tracker = NullTracker()
        self.track_every = TRACK_EVERY
        self.tracking_s = 0.0
        self._tracked_step = 0   # last training step handed to the tracker
        self._tracked_val = 0    # validation losses handed to the tracker

    # -------------------------------------------------------------- data
    def _val_batches(self) -> list[dict[str, torch.Tensor]]:
        """Fixed validation batches (the same windows at every evaluation)."""
        if self.val_sampler is None or self.tc.val_batches < 1:
            return []
        n, bs = len(self.val_sampler), self.tc.batch_size
        total = bs * self.tc.val_batches
        rng = np.random.default_rng([self.tc.seed, 2])
        idx = np.arange(n) if n <= total else np.sort(rng.choice(n, size=total, replace=False))
        return [_to_device(self.val_sampler.sample_batch(idx[i: i + bs]), self.device) for i in range(0, len(idx), bs)]

    # -------------------------------------------------------------- resume
    def restore(self, path: str | os.PathLike) -> None:
        """Continue from a checkpoint: weights, EMA, optimiser, schedule, RNGs, step and losses."""
        ckpt = load_checkpoint(path, map_location=self.device)
        check_compatible(ckpt, self.config.policy, self.policy.signature())
        changed = config_differences(ckpt["config"]["train"], asdict(self.tc))
        if changed:
            log.warning("resuming with changed training settings (the run will not replay the original exactly): %s",
                        "; ".join(changed))
        data = ckpt["data"]
        if (data.get("version"), data.get("version_created_at")) != (self.ver.name, self.ver.created_at):
            log.warning("checkpoint was trained on version %r (created %s); continuing on %r (created %s) with the "
                        "checkpoint's normaliser", data.get("version"), data.get("version_created_at"), self.ver.name,
                        self.ver.created_at)
        load_weights(self.policy, ckpt["model"], "model")
        if self.ema is not None:
            if ckpt.get("ema") is not None:
                load_weights(self.ema.averaged, ckpt["ema"]["averaged"], "EMA")
                self.ema.optimization_step = int(ckpt["ema"]["optimization_step"])
                self.ema.decay = float(ckpt["ema"].get("decay", 0.0))
            else:
                log.warning("checkpoint has no EMA weights; the EMA starts from the current weights")
                self.ema = EMAModel(self.policy, power=self.tc.ema_power, max_decay=self.tc.ema_max_decay)
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except ValueError as exc:
            raise IncompatibleCheckpointError(f"optimiser state of {ckpt['path']} does not fit: {exc}") from exc
        self.scheduler.load_state_dict(ckpt["lr_scheduler"])
        self.scheduler.base_lrs = [self.tc.lr for _ in self.scheduler.base_lrs]
        for group in self.optimizer.param_groups:
            group["initial_lr"] = self.tc.lr
        restore_rng_state(ckpt["rng"], self.batch_rng)
        self.history = LossHistory.from_dict(ckpt["losses"])
        self.step = int(ckpt["step"])
        self.init_checkpoint = data.get("init_from")
        self._line(f"resumed from {ckpt['path']} (checkpoint {ckpt.get('checkpoint_id')}) at step {self.step}")

    def init_weights(self, path: str | os.PathLike) -> None:
        """Start from another checkpoint's weights (EMA ones when present): fine-tuning, not resuming."""
        ckpt = load_checkpoint(path, map_location=self.device)
        problems = signature_differences(ckpt["signature"], self.policy.signature())
        problems += config_differences(ckpt["config"]["policy"], asdict(self.config.policy))
        if problems:
            raise IncompatibleCheckpointError(f"cannot initialise from {ckpt['path']}: " + "; ".join(problems))
        weights = ckpt["ema"]["averaged"] if ckpt.get("ema") is not None else ckpt["model"]
        own = self.policy.state_dict()
        load_weights(self.policy, {k: (own[k] if k.startswith("normalizer.") else v) for k, v in weights.items()},
                     "initial")
        if self.ema is not None:
            self.ema = EMAModel(self.policy, power=self.tc.ema_power, max_decay=self.tc.ema_max_decay)
        self.init_checkpoint = str(ckpt.get("checkpoint_id"))
        self._line(f"initialised from the weights of {ckpt['path']} (checkpoint {ckpt.get('checkpoint_id')}, trained "
                   f"on {ckpt['data'].get('version')!r}); normaliser fitted on {self.ver.name!r}")

    def fit(self, thresholds: FitThresholds | None) -> FitReport:
        """Open-loop fit of the evaluated weights on the training windows; written to fit.json and logged."""
        model = self.ema.averaged if self.ema is not None else self.policy
        was_training = model.training
        model.eval()
        try:
            report = fit_report(model, self.train_sampler, max_windows=self.tc.fit_windows, seed=self.tc.seed,
                                thresholds=thresholds)
        finally:
            model.train(was_training)
        report.write(self.out_dir)
        self._line(report.summary())
        return report

    # -------------------------------------------------------------- steps
    def validate(self) -> float | None:
        """Mean validation loss on the fixed windows with a fixed generator (EMA weights when enabled)."""
        if not self.val_batches:
            return None
        model = self.ema.averaged if self.ema is not None else self.policy
        was_training = model.training
        model.eval()
        generator = torch.Generator(device=self.device).manual_seed(self.tc.seed + VAL_SEED_OFFSET)
        total, count = 0.0, 0
        with torch.no_grad():
            for batch in self.val_batches:
                n = int(batch["action"].shape[0])
                total += float(model.compute_loss(batch, generator=generator)) * n
                count += n
        model.train(was_training)
        return total / max(1, count)

    def execute(self, *, progress: bool, stop_after: int | None, on_step: Callable[[StepInfo], None] | None) -> None:
        """Run optimisation steps until the configured total (or ``stop_after``), validating and saving on schedule."""
        from tqdm.auto import tqdm

        total = self.tc.steps
        end = total if stop_after is None else max(self.step, min(total, int(stop_after)))
        model: torch.nn.Module = self.policy
        if self.ctx.world_size > 1:
            model = DistributedDataParallel(self.policy, device_ids=[self.device.index] if self.device.type == "cuda"
                                            else None, broadcast_buffers=False)
        self._line(f"budget: {self.budget.describe()}")
        self._line(f"training {self.config.name} on {self.ver.name!r}: {len(self.train_sampler)} train windows from "
                   f"{len(self.train_ids)} episodes, {len(self.val_ids)} validation episodes, steps {self.step}->{end} "
                   f"of {total}, batch {self.tc.batch_size} x {self.ctx.world_size} rank(s) on {self.device}")
        bar = tqdm(total=total, initial=self.step, disable=not (progress and self.ctx.is_main), desc="train",
                   dynamic_ncols=True, smoothing=0.05)
        max_norm = self.tc.grad_clip if self.tc.grad_clip and self.tc.grad_clip > 0 else float("inf")
        self.policy.train()
        self._tracked_step, self._tracked_val = self.step, len(self.history.val_step)  # resumed: only new steps
        first = self.step
        if self.tracker.active:
            opened = time.perf_counter()
            self.tracker.start()
            self.tracker.log_text("config", json.dumps(self.config.to_dict(), sort_keys=True), self.step)
            self._line(f"tracking started in {time.perf_counter() - opened:.2f} s")
        try:
            while self.step < end:
                indices = draw_batch_indices(self.batch_rng, len(self.train_sampler), self.tc.batch_size,
                                             self.ctx.world_size)[self.ctx.rank]
                batch = _to_device(self.train_sampler.sample_batch(indices), self.device)
                torch.manual_seed(_step_seed(self.tc.seed, self.ctx.rank, self.step))
                loss = model(batch)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), max_norm)
                lr = self.scheduler.get_last_lr()[0]
                self.optimizer.step()
                self.scheduler.step()
                if self.ema is not None:
                    self.ema.step(self.policy)
                self.step += 1
                loss_value = reduce_mean(loss.detach(), self.ctx)
                if not math.isfinite(loss_value):
                    raise FloatingPointError(f"training loss became {loss_value} at step {self.step}; lower the "
                                             "learning rate or check the data for NaN/inf values")
                self.history.add_train(self.step, loss_value, lr, float(grad_norm))
                if on_step is not None:
                    on_step(StepInfo(self.step, loss_value, lr, float(grad_norm), indices, self.ctx.rank,
                                     self.ctx.world_size))
                self._after_step(bar, end)
        finally:
            bar.close()
        if self.tracker.active and self.step > first:
            self._line(f"tracking: {1000.0 * self.tracking_s / (self.step - first):.3f} ms per step")

    def _after_step(self, bar: Any, end: int) -> None:
        step, tc = self.step, self.tc
        val_due = bool(self.val_batches) and ((tc.val_every > 0 and step % tc.val_every == 0) or step == tc.steps)
        if val_due:
            val = self.validate()
            self.history.add_val(step, val)
            self._line(f"step {step}: validation loss {val:.5f}")
        if self.tracker.active and (step % self.track_every == 0 or step == end):
            self._track()
        if tc.log_every > 0 and step % tc.log_every == 0:
            self._line(f"step {step}: train loss {self.history.mean_train(tc.log_every):.5f} "
                       f"lr {self.history.lr[-1]:.3g} grad norm {self.history.grad_norm[-1]:.3g}")
        bar.update(1)
        postfix = {"loss": f"{self.history.mean_train(20):.4f}", "lr": f"{self.history.lr[-1]:.2e}"}
        if self.history.val_loss:
            postfix["val"] = f"{self.history.val_loss[-1]:.4f}"
        bar.set_postfix(postfix, refresh=False)
        periodic = tc.checkpoint_every > 0 and step % tc.checkpoint_every == 0
        if periodic or step == tc.steps or step == end:
            self.save(periodic=periodic, final=step == tc.steps)

    # -------------------------------------------------------------- tracking
    def _track(self) -> None:
        """Hand the newest step's loss, lr and grad norm and every new validation loss to the tracker (timed)."""
        started = time.perf_counter()
        history, rows = self.history, {}
        for step, loss in zip(history.val_step[self._tracked_val:], history.val_loss[self._tracked_val:]):
            rows.setdefault(step, {})["val/loss"] = loss
        self._tracked_val = len(history.val_step)
        if history.step and history.step[-1] > self._tracked_step:
            rows.setdefault(history.step[-1], {}).update({"train/loss": history.train_loss[-1],
                                                          "train/lr": history.lr[-1],
                                                          "train/grad_norm": history.grad_norm[-1]})
            self._tracked_step = history.step[-1]
        for step in sorted(rows):  # wandb needs steps in order
            self.tracker.log_scalars(step, rows[step])
        self.tracking_s += time.perf_counter() - started

    def track_end(self, fit: FitReport | None, wall_time_s: float) -> None:
        """Hand the fit report and the run's final figures to the tracker."""
        if not self.tracker.active:
            return
        started = time.perf_counter()
        if fit is not None:
            self.tracker.log_scalars(self.step, fit.to_dict(), prefix="fit")
            self.tracker.log_text("fit/summary", fit.summary(), self.step)
        val = self.history.val_loss[-1] if self.history.val_loss else None
        self.tracker.log_summary({"steps": self.step, "final_train_loss": self.history.mean_train(10),
                                  "final_val_loss": val, "checkpoint_id": self.checkpoint_id,
                                  "version": self.ver.name, "wall_time_s": round(wall_time_s, 1),
                                  "fit_ok": fit.ok if fit is not None else None,
                                  "fit_summary": fit.summary() if fit is not None else None})
        self.tracking_s += time.perf_counter() - started

    # -------------------------------------------------------------- output
    @property
    def checkpoint_id(self) -> str:
        """Stable id of the checkpoint at the current step."""
        return checkpoint_id(self.config.to_dict(), self.ver.name, self.ver.created_at, self.step,
                             init_from=self.init_checkpoint)

    def payload(self) -> dict[str, Any]:
        """The checkpoint dict of the current state."""
        ver = self.ver
        lineage = TrainingLineage(
            store=absolute_location(self.store.location), version=ver.name, version_created_at=ver.created_at,
            n_episodes=int(ver.stats.get("n_episodes", len(ver.episode_ids))), n_frames=ver.n_frames,
            parents=list(ver.parents), train_episodes=list(self.train_ids), val_episodes=list(self.val_ids),
            frame_weights=self.frame_weights, init_from=self.init_checkpoint,
            budget={"steps": self.budget.steps, "windows": self.budget.windows, "epochs": self.budget.epochs,
                    "rule": self.budget.rule})
        return training_checkpoint(
            checkpoint_id=self.checkpoint_id, step=self.step, total_steps=self.tc.steps,
            world_size=self.ctx.world_size, policy=self.policy, ema=self.ema.state_dict() if self.ema is not None
            else None, optimizer=self.optimizer.state_dict(), lr_scheduler=self.scheduler.state_dict(),
            rng=capture_rng_state(self.batch_rng), config=self.config.to_dict(), lineage=lineage,
            losses=self.history.to_dict())

    def save(self, *, periodic: bool, final: bool) -> None:
        """Write latest.ckpt (+ the step and final checkpoints), the loss CSV/JSON and the plot (rank 0 only)."""
        if not self.ctx.is_main:
            return
        paths = [self.out_dir / LATEST]
        if periodic:
            paths.append(self.out_dir / f"step_{self.step:07d}.ckpt")
        if final:
            paths.append(self.out_dir / FINAL)
        save_checkpoint(self.payload(), paths)
        self.write_logs()
        self._line(f"step {self.step}: saved {', '.join(p.name for p in paths)} (id {self.checkpoint_id})")

    def write_logs(self) -> None:
        """Loss CSV/JSON and the loss-curve PNG next to the checkpoints."""
        extra = {"checkpoint_id": self.checkpoint_id, "step": self.step, "config": self.config.to_dict(),
                 "store": absolute_location(self.store.location), "version": self.ver.name}
        self.history.write_csv(self.out_dir / CSV_NAME)
        self.history.write_json(self.out_dir / JSON_NAME, extra)
        title = f"{self.config.name} on {self.ver.name} (seed {self.tc.seed})"
        try:
            self.history.plot(self.out_dir / PLOT_NAME, title=title)
        except ImportError:
            log.warning("matplotlib is not installed: no %s (pip install matplotlib)", PLOT_NAME)

    def _line(self, message: str) -> None:
        """Log a message and append it to train.log (rank 0)."""
        log.info(message)
        if self.ctx.is_main:
            stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
            with open(self.out_dir / LOG_NAME, "a", encoding="utf-8") as handle:
                handle.write(f"{stamp} {message}\n")


# ---------------------------------------------------------------------- entry point
def train(store: "Store | str | os.PathLike", version: str, config: ExperimentConfig, out_dir: str | os.PathLike, *,
          resume: str | os.PathLike | None = None, progress: bool = True, device: str | torch.device | None = None,
          frame_weights: Mapping[str, Any] | None = None, stop_after: int | None = None,
          on_step: Callable[[StepInfo], None] | None = None, init_from: str | os.PathLike | None = None,
          fit_thresholds: FitThresholds | None = None, tracker: Tracker | None = None,
          track_every: int = TRACK_EVERY) -> TrainResult:
    """Train (or resume) a policy on a store version and write checkpoints, logs and plots to ``out_dir``.

    ``store`` is a `Store` or its location. ``resume`` is a checkpoint file or run directory to continue
    from (exactly: same losses and weights as an uninterrupted run). ``device`` defaults to cuda when
    available. ``frame_weights`` maps episode ids to a scalar or per-frame loss weights. ``stop_after``
    ends the run early after that many steps (latest.ckpt is written, the LR schedule still spans
    ``config.train.steps``). ``on_step`` is called with a `StepInfo` after every step. Under torchrun every
    rank calls this (``batch_size`` is per rank); only rank 0 writes files. ``init_from`` starts a new run from
    another checkpoint's weights (EMA ones when it has them): fine-tuning, so optimiser, schedule and step start
    afresh and the normaliser is fitted on this version. When the run completes, the open-loop fit on the training
    episodes is written to ``fit.json`` (``config.train.fit_report``), logged and returned as ``TrainResult.fit``.
    The step count is ``config.train.steps``, or the data-scaled budget when ``config.train.epochs`` is set.
    ``tracker`` (rank 0 only; default none) receives ``train/loss``, ``train/lr`` and ``train/grad_norm`` of every
    ``track_every``-th step and of the last one, every ``val/loss``, the fit report (``fit/...``) and a summary;
    the time this takes is in train.log ("tracking: ... ms per step") and ``TrainResult.tracking_s``.
    """
    from sime_data.store import Store, open_store

    started = time.time()
    if not isinstance(store, Store):
        store = open_store(store)
    ctx = DistContext.from_env()
    dev = resolve_device(device, ctx.local_rank)
    out = Path(out_dir)
    if isinstance(track_every, bool) or not isinstance(track_every, int) or track_every < 1:
        raise ValueError(f"track_every must be a positive integer, got {track_every!r}")
    if resume is None and (out / LATEST).exists():
        raise ValueError(f"{out} already holds a training run ({LATEST}); resume it with --resume {out / LATEST} or "
                         "choose another --out directory")
    threads, created = torch.get_num_threads(), False
    try:
        if config.train.num_threads:
            torch.set_num_threads(int(config.train.num_threads))
        created = init_distributed(ctx, dev)
        run = _Run(store, version, config, out, ctx=ctx, device=dev, frame_weights=frame_weights)
        if tracker is not None and ctx.is_main:
            run.tracker, run.track_every = tracker, track_every
        if ctx.is_main:
            out.mkdir(parents=True, exist_ok=True)
        if resume is not None:
            run.restore(resume)
        elif init_from is not None:
            run.init_weights(init_from)
        if run.step >= run.tc.steps:
            log.warning("checkpoint is already at step %d of %d; nothing to train", run.step, run.tc.steps)
            if not (out / FINAL).exists():
                run.save(periodic=False, final=True)
        else:
            run.execute(progress=progress, stop_after=stop_after, on_step=on_step)
        done = run.step >= run.tc.steps
        fit = run.fit(fit_thresholds) if done and ctx.is_main and run.tc.fit_report else None
        run.track_end(fit, time.time() - started)
    finally:
        torch.set_num_threads(threads)
        if created:
            dist.destroy_process_group()
    run.policy.eval()
    files = {"log": out / LOG_NAME, "csv": out / CSV_NAME, "json": out / JSON_NAME, "plot": out / PLOT_NAME}
    return TrainResult(out_dir=out, latest_checkpoint=out / LATEST, final_checkpoint=out / FINAL if done else None,
                       checkpoint_id=run.checkpoint_id, step=run.step, history=run.history, policy=run.policy,
                       ema_policy=run.ema.averaged if run.ema is not None else None, rank=ctx.rank,
                       world_size=ctx.world_size, wall_time_s=time.time() - started, files=files, fit=fit,
                       budget=run.budget, tracking_s=run.tracking_s)
