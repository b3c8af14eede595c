"""Training budget that scales with the data: passes over the training windows, with a floor and a cap.

A fixed step count spreads the same optimisation over more windows when a round adds rollouts to
its demos, so round r+1 ends less fitted than round r. With ``epochs`` set, the number of steps is
``ceil(epochs * windows / batch_size)``, clamped to ``[min_steps, max_steps]``; without it the fixed
``steps`` is used as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class BudgetDecision:
    """How many optimisation steps a run takes and why."""

    steps: int
    windows: int
    batch_size: int
    epochs: float | None
    rule: str

    @property
    def epochs_seen(self) -> float:
        """Passes over the training windows the steps amount to."""
        return self.steps * self.batch_size / max(1, self.windows)

    def describe(self) -> str:
        """One line for logs: steps, windows, epochs and the rule that decided."""
        return (f"{self.steps} steps x batch {self.batch_size} over {self.windows} windows "
                f"({self.epochs_seen:.0f} epochs; {self.rule})")


def resolve_steps(*, steps: int, epochs: float | None, min_steps: int, max_steps: int | None, windows: int,
                  batch_size: int) -> BudgetDecision:
    """The step budget for `windows` training windows: fixed `steps`, or `epochs` passes clamped to the bounds."""
    if windows < 1 or batch_size < 1:
        raise ValueError(f"need windows >= 1 and batch_size >= 1, got {windows} and {batch_size}")
    if epochs is None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        return BudgetDecision(int(steps), windows, batch_size, None, "fixed step count")
    if not (isinstance(epochs, (int, float)) and math.isfinite(epochs) and epochs > 0):
        raise ValueError(f"epochs must be a positive number, got {epochs!r}")
    if min_steps < 0 or (max_steps is not None and max_steps < max(1, min_steps)):
        raise ValueError(f"need 0 <= min_steps <= max_steps, got min_steps={min_steps}, max_steps={max_steps}")
    wanted = math.ceil(epochs * windows / batch_size)
    chosen = max(wanted, int(min_steps), 1)
    rule = f"{epochs:g} epochs"
    if chosen > wanted:
        rule += f", raised to the floor of {min_steps} steps"
    if max_steps is not None and chosen > max_steps:
        chosen = int(max_steps)
        rule += f", capped at {max_steps} steps"
    return BudgetDecision(chosen, windows, batch_size, float(epochs), rule)
