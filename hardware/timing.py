"""Fixed-rate loop timing and per-step latency bookkeeping."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np


class RateLimiter:
    """Sleeps so successive `wait()` calls are `period_s` apart (deadline-based: no drift; overruns are counted)."""

    def __init__(self, rate_hz: float) -> None:
        if rate_hz <= 0:
            raise ValueError(f"rate must be > 0 Hz, got {rate_hz}")
        self.period_s = 1.0 / rate_hz
        self.overruns = 0
        self._next: float | None = None

    def reset(self) -> None:
        """Start a new schedule at the next wait()."""
        self._next = None

    def wait(self) -> None:
        """Block until the next tick; when late by more than a period, re-anchor instead of bursting."""
        now = time.perf_counter()
        if self._next is None:
            self._next = now + self.period_s
            return
        delay = self._next - now
        if delay > 0:
            time.sleep(delay)
            self._next += self.period_s
        else:
            self.overruns += 1
            self._next = now + self.period_s if -delay > self.period_s else self._next + self.period_s


@dataclass
class StepTimes:
    """Seconds spent per named phase of each control step (device I/O, inference, store write, ...)."""

    phases: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def add(self, phase: str, seconds: float) -> None:
        """Record one duration."""
        self.phases[phase].append(float(seconds))

    def median_ms(self) -> dict[str, float]:
        """Median milliseconds per phase."""
        return {k: 1000.0 * float(np.median(v)) for k, v in self.phases.items() if v}

    def mean_ms(self) -> dict[str, float]:
        """Mean milliseconds per phase."""
        return {k: 1000.0 * float(np.mean(v)) for k, v in self.phases.items() if v}
