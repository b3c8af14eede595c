"""Paired comparison of two policies evaluated on the same (seed, initial state, trial) pairs.

Success is binary, so on n shared pairs the two policies differ only on the discordant ones:
``b`` pairs where only the second policy succeeded and ``c`` where only the first did. The paired
difference of success rates is ``(b - c) / n``; its standard error is the standard deviation of the
per-pair differences over sqrt(n) (``sqrt(b + c - (b - c)^2 / n) / n``), and the 95% interval is the
Wald interval around it (Agresti, *Categorical Data Analysis*, 10.1). The p-value is McNemar's exact
test: two-sided binomial test of ``b`` successes in ``b + c`` trials with p = 1/2 (scipy's binomtest).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Hashable, Mapping, Sequence

NAN = float("nan")


@dataclass(frozen=True)
class PairedComparison:
    """Policy B against policy A on n shared evaluation pairs (difference = B - A)."""

    n: int
    rate_a: float
    rate_b: float
    only_b: int          # discordant pairs B won
    only_a: int          # discordant pairs A won
    diff: float
    stderr: float
    ci_low: float
    ci_high: float
    p_value: float
    confidence: float = 0.95

    def describe(self) -> str:
        """'+0.130 [+0.042, +0.218], p = 0.001 (14 vs 1 discordant of 100 pairs)'."""
        if self.n == 0:
            return "no shared evaluation pairs"
        return (f"{self.diff:+.3f} [{self.ci_low:+.3f}, {self.ci_high:+.3f}], {p_clause(self.p_value)} "
                f"({self.only_b} vs {self.only_a} discordant of {self.n} pairs)")

    def to_dict(self) -> dict[str, float | int]:
        """Plain-data form."""
        return asdict(self)


def format_p(p: float) -> str:
    """A p-value for tables: 3 significant digits, '<0.001' below a thousandth."""
    if math.isnan(p):
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3g}"


def p_clause(p: float, sep: str = " ") -> str:
    """'p = 0.672' or 'p < 0.001' for prose and plot labels (`sep` between the parts)."""
    text = format_p(p)
    return f"p{sep}<{sep}{text[1:]}" if text.startswith("<") else f"p{sep}={sep}{text}"


def mcnemar_exact_p(only_b: int, only_a: int) -> float:
    """Two-sided exact McNemar p-value from the two discordant counts (1.0 when there are none)."""
    from scipy.stats import binomtest

    for value in (only_b, only_a):
        if isinstance(value, bool) or int(value) != value or value < 0:
            raise ValueError(f"discordant counts must be non-negative integers, got {only_b!r}, {only_a!r}")
    total = int(only_b) + int(only_a)
    if total == 0:
        return 1.0
    return float(binomtest(int(only_b), total, 0.5, alternative="two-sided").pvalue)


def compare_paired(a: Sequence[bool], b: Sequence[bool], confidence: float = 0.95) -> PairedComparison:
    """B minus A on aligned per-pair outcomes (a[i] and b[i] are the same evaluation pair)."""
    from scipy.stats import norm

    if len(a) != len(b):
        raise ValueError(f"paired outcomes must align: {len(a)} vs {len(b)}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n = len(a)
    if n == 0:
        return PairedComparison(0, NAN, NAN, 0, 0, NAN, NAN, NAN, NAN, NAN, confidence)
    wins_a = sum(bool(x) for x in a)
    wins_b = sum(bool(x) for x in b)
    only_b = sum(bool(y) and not bool(x) for x, y in zip(a, b))
    only_a = sum(bool(x) and not bool(y) for x, y in zip(a, b))
    diff = (only_b - only_a) / n
    stderr = math.sqrt(max(0.0, only_b + only_a - (only_b - only_a) ** 2 / n)) / n
    z = float(norm.ppf(0.5 + confidence / 2.0))
    return PairedComparison(n, wins_a / n, wins_b / n, only_b, only_a, diff, stderr, diff - z * stderr,
                            diff + z * stderr, mcnemar_exact_p(only_b, only_a), confidence)


def compare_outcomes(a: Mapping[Hashable, bool], b: Mapping[Hashable, bool],
                     confidence: float = 0.95) -> PairedComparison:
    """B minus A on the evaluation pairs both have (keys such as (seed, init_state_id, trial))."""
    shared = [key for key in a if key in b]
    return compare_paired([a[k] for k in shared], [b[k] for k in shared], confidence)


def binomial_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a success rate (nan, nan for n = 0)."""
    from scipy.stats import norm

    if n <= 0:
        return NAN, NAN
    z = float(norm.ppf(0.5 + confidence / 2.0))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
