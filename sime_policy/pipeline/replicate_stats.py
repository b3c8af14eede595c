"""Statistics where the run is the unit: paired differences clustered by initial state, and across replicates.

Two policies (round r and round 0, or SIME and baseline) evaluated on the same (seed, initial state, trial)
pairs differ pair by pair by ``d = b - a`` in {-1, 0, +1}. Two facts decide how uncertain the mean of ``d`` is:

1. **Trials of one initial state are near-copies** (design effect ~1.9 measured on the quick preset), so the
   pairs of one state are one cluster. `paired_difference` gives the mean difference of one run with a
   cluster-robust (CR1) standard error over states and a t interval with (states - 1) degrees of freedom.
2. **The run is the unit of replication.** The outcome of a round varies with the collected data and the
   training seed far beyond one evaluation's noise (between-run sd ~0.085 against ~0.03), so a claim about a
   method averages over runs (replicates). `replicated_difference` gives the mean of the replicates'
   differences with a two-way cluster-robust variance over replicates and initial states (Cameron, Gelbach and
   Miller 2011: ``V = V_replicate + V_state - V_replicate x state``) and a t interval with (replicates - 1)
   degrees of freedom. When every replicate has its own evaluation states this is exactly the one-sample t
   test over the replicates' differences; when replicates share evaluation states (`sime run --seeds`) it
   adds what the shared states contribute (a state that every replicate's round 1 solves and round 0 does not
   counts once, not once per replicate), which a t test over replicates would miss.

Pooling every replicate's pairs into one McNemar test (this project's report before 2026-12) ignores the
variance between runs; in simulation it rejected a true null in over half of the studies. These tests are
checked for calibration by simulation in ``tests/unit/test_replicate_stats.py`` (`simulate_study`).

Why not a mixed model (replicate and state random effects, logit link): for balanced designs the two-way
moment estimator above gives the same variance of the mean as the linear mixed model's, needs no iterative
fitting (no statsmodels dependency, no convergence failures with 3 replicates or all-zero differences), and
its calibration is shown by the simulation. A logit GLMM would estimate a different quantity (an odds ratio
for a typical state), while users ask for the difference in success rate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Hashable, Mapping, Sequence

import numpy as np

NAN = float("nan")
Key = tuple  # (seed, init_state_id, trial)
Outcomes = Mapping[Key, bool]


def format_p(p: float) -> str:
    """A p-value for tables: 3 significant digits, '<0.001' below a thousandth."""
    if math.isnan(p):
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3g}"


def p_clause(p: float, sep: str = " ") -> str:
    """'p = 0.672' or 'p < 0.001' for prose and plot labels (`sep` between the parts)."""
    text = format_p(p)
    return f"p{sep}<{sep}{text[1:]}" if text.startswith("<") else f"p{sep}={sep}{text}"


def _t_quantile(confidence: float, df: float) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + confidence / 2.0, df))


def _t_two_sided_p(estimate: float, stderr: float, df: float) -> float:
    from scipy.stats import t

    if math.isnan(estimate) or math.isnan(stderr) or df < 1:
        return NAN
    if stderr == 0.0:
        return 1.0 if estimate == 0.0 else 0.0
    return float(2.0 * t.sf(abs(estimate) / stderr, df))


def _codes(labels: Sequence[Hashable]) -> np.ndarray:
    """Integer code of each label (equal labels, equal codes)."""
    index: dict[Hashable, int] = {}
    return np.array([index.setdefault(label, len(index)) for label in labels], dtype=np.int64)


def _cluster_variance(residuals: np.ndarray, clusters: np.ndarray) -> tuple[float, int]:
    """CR1 variance sum_g (sum of residuals in g)^2 * G / (G - 1), and the number of clusters G."""
    _, index = np.unique(clusters, return_inverse=True)
    sums = np.bincount(index.ravel(), weights=residuals)
    groups = len(sums)
    if groups < 2:
        return NAN, groups
    return float((sums ** 2).sum() * groups / (groups - 1)), groups


@dataclass(frozen=True)
class Difference:
    """One run's paired difference B - A with a state-clustered interval (t with states - 1 df)."""

    n: int
    states: int
    rate_a: float
    rate_b: float
    only_b: int          # discordant pairs B won
    only_a: int          # discordant pairs A won
    diff: float
    stderr: float
    ci_low: float
    ci_high: float
    p_value: float
    design_effect: float  # clustered variance / the variance if every pair were independent
    confidence: float = 0.95

    def describe(self) -> str:
        """'+0.043 [-0.011, +0.097], p = 0.148 (21 vs 8 discordant of 300 pairs, 150 states)'."""
        if self.n == 0:
            return "no shared evaluation pairs"
        return (f"{self.diff:+.3f} [{self.ci_low:+.3f}, {self.ci_high:+.3f}], {p_clause(self.p_value)} "
                f"({self.only_b} vs {self.only_a} discordant of {self.n} pairs, {self.states} states)")

    def to_dict(self) -> dict[str, float | int]:
        """Plain-data form."""
        return asdict(self)


def _empty_difference(confidence: float) -> Difference:
    return Difference(0, 0, NAN, NAN, 0, 0, NAN, NAN, NAN, NAN, NAN, NAN, confidence)


def state_of(key: Key) -> Hashable:
    """The cluster of an evaluation pair (seed, init_state_id, trial): its (seed, state)."""
    return tuple(key[:-1])


def paired_difference(a: Outcomes, b: Outcomes, confidence: float = 0.95,
                      cluster: Callable[[Key], Hashable] = state_of) -> Difference:
    """B minus A on the pairs both have, with a cluster-robust s.e. over initial states."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    shared = [key for key in a if key in b]
    if not shared:
        return _empty_difference(confidence)
    x = np.array([bool(a[k]) for k in shared], dtype=np.float64)
    y = np.array([bool(b[k]) for k in shared], dtype=np.float64)
    d = y - x
    n = len(d)
    diff = float(d.mean())
    variance, states = _cluster_variance((d - diff) / n, _codes([cluster(k) for k in shared]))
    stderr = math.sqrt(variance) if not math.isnan(variance) else NAN
    iid = float(((d - diff) ** 2).sum() / (n * (n - 1))) if n > 1 else NAN
    design = variance / iid if iid and not math.isnan(variance) and iid > 0 else NAN
    half = _t_quantile(confidence, states - 1) * stderr if states > 1 else NAN
    return Difference(n, states, float(x.mean()), float(y.mean()), int((d > 0).sum()), int((d < 0).sum()), diff,
                      stderr, diff - half, diff + half, _t_two_sided_p(diff, stderr, states - 1), design,
                      confidence)


@dataclass(frozen=True)
class ReplicatedDifference:
    """The mean over replicates of their paired differences, with a run-level interval."""

    replicates: int
    mean: float
    stderr: float
    df: int
    ci_low: float
    ci_high: float
    p_value: float
    between_sd: float     # sd of the replicates' differences (each includes its own evaluation noise)
    within_se: float      # root mean square of the replicates' own (state-clustered) standard errors
    shared_states: bool   # True when replicates were evaluated on some of the same initial states
    confidence: float = 0.95

    @property
    def half_width(self) -> float:
        """Half the width of the interval."""
        return (self.ci_high - self.ci_low) / 2.0

    def describe(self) -> str:
        """'+0.021 [-0.030, +0.072], p = 0.40 over 16 replicates (between-replicate sd 0.090)'."""
        if self.replicates < 2:
            return f"{self.replicates} replicate(s): no run-level interval (needs 2 or more)"
        return (f"{self.mean:+.3f} [{self.ci_low:+.3f}, {self.ci_high:+.3f}], {p_clause(self.p_value)} over "
                f"{self.replicates} replicates (between-replicate sd {self.between_sd:.3f})")

    def replicates_needed(self, effect: float, power: float = 0.8, alpha: float = 0.05) -> int | None:
        """Replicates like these that detect `effect` with this power (None: sd unknown)."""
        return replicates_for_power(effect, self.between_sd, power, alpha)

    def to_dict(self) -> dict[str, float | int | bool]:
        """Plain-data form (with the half-width)."""
        return {**asdict(self), "half_width": self.half_width}


def replicated_difference(per_replicate: Mapping[Hashable, tuple[Outcomes, Outcomes]], confidence: float = 0.95,
                          state: Callable[[Key], Hashable] = lambda key: key[1]) -> ReplicatedDifference:
    """B - A averaged over replicates (each weighted equally), two-way clustered by replicate and initial state.

    `per_replicate` maps a replicate label to its (A outcomes, B outcomes) keyed by (seed, state, trial);
    `state(key)` names the initial state so that replicates sharing evaluation states cluster together.
    """
    differences, replicate, states = [], [], []
    for code, (a, b) in enumerate(per_replicate.values()):
        shared = [key for key in a if key in b]
        differences.extend(float(bool(b[k])) - float(bool(a[k])) for k in shared)
        replicate.extend([code] * len(shared))
        states.extend(state(k) for k in shared)
    return replicated_difference_of(np.asarray(differences, dtype=np.float64), np.asarray(replicate, dtype=np.int64),
                                    _codes(states), confidence)


def replicated_difference_of(d: np.ndarray, replicate: np.ndarray, state: np.ndarray,
                             confidence: float = 0.95) -> ReplicatedDifference:
    """`replicated_difference` on arrays: per-pair differences, replicate codes and initial-state codes."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if len(d) == 0:
        return ReplicatedDifference(0, NAN, NAN, 0, NAN, NAN, NAN, NAN, NAN, False, confidence)
    _, replicate = np.unique(replicate, return_inverse=True)
    _, state = np.unique(state, return_inverse=True)
    count = int(replicate.max()) + 1
    sizes = np.bincount(replicate, minlength=count).astype(np.float64)
    diffs = np.bincount(replicate, weights=d, minlength=count) / sizes
    cells = replicate * (int(state.max()) + 1) + state
    within = _within_stderr(d, replicate, cells, diffs, sizes)
    mean = float(diffs.mean())
    if count < 2:
        return ReplicatedDifference(1, mean, NAN, 0, NAN, NAN, NAN, NAN, within, False, confidence)
    residuals = (d - mean) / (count * sizes[replicate])
    v_replicate, _ = _cluster_variance(residuals, replicate)
    v_state, _ = _cluster_variance(residuals, state)
    v_cell, _ = _cluster_variance(residuals, cells)
    shared_states = len(np.unique(state)) < len(np.unique(cells))
    variance = v_replicate + v_state - v_cell
    if not variance > 0:  # the two-way estimate can come out negative; fall back as Cameron et al. advise
        variance = max(v_replicate, v_state)
    stderr = math.sqrt(variance)
    df = count - 1
    half = _t_quantile(confidence, df) * stderr
    return ReplicatedDifference(count, mean, stderr, df, mean - half, mean + half, _t_two_sided_p(mean, stderr, df),
                                float(np.std(diffs, ddof=1)), within, bool(shared_states), confidence)


def _within_stderr(d: np.ndarray, replicate: np.ndarray, cells: np.ndarray, diffs: np.ndarray,
                   sizes: np.ndarray) -> float:
    """Root mean square over replicates of each one's state-clustered (CR1) standard error."""
    _, cell = np.unique(cells, return_inverse=True)
    cell_sums = np.bincount(cell, weights=(d - diffs[replicate]) / sizes[replicate])
    cell_replicate = np.zeros(len(cell_sums), dtype=np.int64)
    cell_replicate[cell] = replicate
    groups = np.bincount(cell_replicate, minlength=len(diffs)).astype(np.float64)
    sums = np.bincount(cell_replicate, weights=cell_sums ** 2, minlength=len(diffs))
    valid = groups > 1
    if not valid.any():
        return NAN
    variances = sums[valid] * groups[valid] / (groups[valid] - 1)
    return math.sqrt(float(variances.mean()))


def power_of_replicates(effect: float, sd: float, replicates: int, alpha: float = 0.05) -> float:
    """Power of the two-sided t test over `replicates` independent differences with this sd to detect `effect`."""
    from scipy.stats import nct, t

    if replicates < 2 or not sd > 0:
        return NAN
    df = replicates - 1
    critical = float(t.ppf(1.0 - alpha / 2.0, df))
    shift = abs(effect) * math.sqrt(replicates) / sd
    upper = float(nct.sf(critical, df, shift))
    lower = float(nct.cdf(-critical, df, shift))   # the far tail; scipy gives nan where it underflows
    return upper + (lower if not math.isnan(lower) else 0.0)


def replicates_for_power(effect: float, sd: float, power: float = 0.8, alpha: float = 0.05,
                         limit: int = 10_000) -> int | None:
    """Fewest replicates whose t test reaches `power` for `effect` (None when sd is unknown)."""
    if math.isnan(sd) or sd <= 0 or effect == 0:
        return None
    for replicates in range(2, limit + 1):
        if power_of_replicates(effect, sd, replicates, alpha) >= power:
            return replicates
    return None


def replicates_for_half_width(half_width: float, sd: float, confidence: float = 0.95,
                              limit: int = 10_000) -> int | None:
    """Fewest replicates whose t interval over independent differences with this sd is at most ±half_width."""
    if math.isnan(sd) or sd <= 0 or half_width <= 0:
        return None
    for replicates in range(2, limit + 1):
        if _t_quantile(confidence, replicates - 1) * sd / math.sqrt(replicates) <= half_width:
            return replicates
    return None


# ---------------------------------------------------------------------- simulation (calibration)
@dataclass(frozen=True)
class StudyDesign:
    """A simulated study of binary outcomes: replicates x initial states x trials, with run-level variance.

    Each initial state has a difficulty u ~ U(0, 1); a policy of skill q succeeds on a trial when
    u + e < q, with e ~ U(-trial_noise, trial_noise) drawn per trial (small: trials are near-copies), so its
    success rate over states is q. Round 0 has skill `base` (one policy shared by every replicate); replicate r's
    round 1 has skill ``base + effect + a_r`` with ``a_r ~ N(0, between_sd)``: the true mean difference is
    `effect`. With `shared_states` every replicate is evaluated on the same states.
    """

    replicates: int = 10
    states: int = 100
    trials: int = 1
    base: float = 0.65
    effect: float = 0.0
    between_sd: float = 0.09
    trial_noise: float = 0.1
    shared_states: bool = False


@dataclass(frozen=True)
class SimulatedStudy:
    """Outcomes of a simulated study as flat arrays, one entry per (replicate, state, trial) pair."""

    round0: np.ndarray
    round1: np.ndarray
    replicate: np.ndarray
    state: np.ndarray
    trial: np.ndarray

    def outcomes(self) -> dict[int, tuple[dict[Key, bool], dict[Key, bool]]]:
        """replicate -> (round-0 outcomes, round-1 outcomes) keyed by (replicate, state name, trial)."""
        out: dict[int, tuple[dict[Key, bool], dict[Key, bool]]] = {}
        for r, s, t, a, b in zip(self.replicate.tolist(), self.state.tolist(), self.trial.tolist(),
                                 self.round0.tolist(), self.round1.tolist()):
            first, second = out.setdefault(r, ({}, {}))
            first[(r, f"s{s}", t)], second[(r, f"s{s}", t)] = bool(a), bool(b)
        return out


def simulate_study(design: StudyDesign, rng: np.random.Generator) -> SimulatedStudy:
    """One simulated study drawn from `design`."""
    shape = (design.replicates, design.states)
    difficulty = np.broadcast_to(rng.uniform(size=design.states), shape) if design.shared_states \
        else rng.uniform(size=shape)
    skill = design.base + design.effect + rng.normal(0.0, design.between_sd, size=design.replicates)
    full = (*shape, design.trials)
    round0 = difficulty[..., None] + rng.uniform(-design.trial_noise, design.trial_noise, size=full) < design.base
    round1 = difficulty[..., None] + rng.uniform(-design.trial_noise, design.trial_noise, size=full) < \
        skill[:, None, None]
    replicate, state, trial = np.indices(full)
    if not design.shared_states:
        state = replicate * design.states + state   # every replicate has its own states
    return SimulatedStudy(round0.ravel(), round1.ravel(), replicate.ravel(), state.ravel(), trial.ravel())


def analyse_simulated(study: SimulatedStudy, confidence: float = 0.95) -> ReplicatedDifference:
    """`replicated_difference` of a simulated study (round 1 - round 0)."""
    d = study.round1.astype(np.float64) - study.round0.astype(np.float64)
    return replicated_difference_of(d, study.replicate, study.state, confidence)


__all__ = ["Difference", "ReplicatedDifference", "SimulatedStudy", "StudyDesign", "analyse_simulated",
           "paired_difference", "power_of_replicates", "replicated_difference", "replicated_difference_of",
           "replicates_for_half_width", "replicates_for_power", "simulate_study", "state_of"]
