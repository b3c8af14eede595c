"""Loss history of a training run: kept in checkpoints, written as CSV/JSON and plotted as a PNG."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .checkpoint import atomic_write_bytes

CSV_NAME = "losses.csv"
JSON_NAME = "losses.json"
PLOT_NAME = "loss_curves.png"


@dataclass
class LossHistory:
    """Per-step training loss, learning rate and gradient norm, plus validation losses at some steps."""

    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    val_step: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)

    def add_train(self, step: int, loss: float, lr: float, grad_norm: float) -> None:
        """Record one optimisation step (``step`` counts completed steps, from 1)."""
        self.step.append(int(step))
        self.train_loss.append(float(loss))
        self.lr.append(float(lr))
        self.grad_norm.append(float(grad_norm))

    def add_val(self, step: int, loss: float) -> None:
        """Record a validation loss after ``step`` completed steps."""
        self.val_step.append(int(step))
        self.val_loss.append(float(loss))

    def to_dict(self) -> dict[str, list]:
        """Plain lists (stored in checkpoints)."""
        return {k: list(getattr(self, k)) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "LossHistory":
        """Inverse of `to_dict`."""
        return cls(**{k: list(raw.get(k, [])) for k in cls.__dataclass_fields__})

    def mean_train(self, last: int) -> float:
        """Mean training loss over the last ``last`` steps (nan if none)."""
        tail = self.train_loss[-last:]
        return sum(tail) / len(tail) if tail else math.nan

    # ------------------------------------------------------------------ files
    def write_csv(self, path: str | Path) -> None:
        """One row per step: step, train_loss, lr, grad_norm, val_loss (empty unless validated then)."""
        val = dict(zip(self.val_step, self.val_loss))
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["step", "train_loss", "lr", "grad_norm", "val_loss"])
        for s, loss, lr, gn in zip(self.step, self.train_loss, self.lr, self.grad_norm):
            writer.writerow([s, repr(loss), repr(lr), repr(gn), repr(val[s]) if s in val else ""])
        for s in sorted(set(val) - set(self.step)):  # validation before the first step (step 0)
            writer.writerow([s, "", "", "", repr(val[s])])
        atomic_write_bytes(path, out.getvalue().encode())

    def write_json(self, path: str | Path, extra: Mapping[str, Any] | None = None) -> None:
        """Whole history plus run metadata as JSON."""
        payload = {**(extra or {}), "losses": self.to_dict()}
        atomic_write_bytes(path, json.dumps(payload, indent=1, default=str).encode())

    def plot(self, path: str | Path, title: str = "") -> None:
        """PNG with training loss (raw and smoothed), validation loss and the learning rate."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure

        fig = Figure(figsize=(8, 6), dpi=100)
        ax, ax_lr = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        if self.step:
            ax.plot(self.step, self.train_loss, color="tab:blue", alpha=0.25, linewidth=0.8, label="train (per step)")
            window = max(1, len(self.step) // 50)
            if window > 1:
                smooth = _moving_average(self.train_loss, window)
                ax.plot(self.step[window - 1:], smooth, color="tab:blue", label=f"train (mean of {window})")
            ax_lr.plot(self.step, self.lr, color="tab:gray")
        if self.val_step:
            ax.plot(self.val_step, self.val_loss, "o-", color="tab:orange", markersize=3, label="validation")
        positive = [v for v in self.train_loss + self.val_loss if v > 0]
        if positive:
            ax.set_yscale("log")
        ax.set_ylabel("loss")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right")
        ax_lr.set_ylabel("lr")
        ax_lr.set_xlabel("step")
        ax_lr.grid(alpha=0.3)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        atomic_write_bytes(path, buffer.getvalue())


def _moving_average(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        if i >= window - 1:
            out.append(total / window)
    return out
