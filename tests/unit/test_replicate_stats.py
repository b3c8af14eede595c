"""Run-level statistics: hand-computed clustered and replicated differences, power, seeding, and calibration by
simulation (false-positive rate, coverage and power over many simulated studies)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest
from scipy.stats import t as student

from sime_policy.pipeline.replicate_stats import (StudyDesign, analyse_simulated, format_p, p_clause,
                                                  paired_difference, power_of_replicates, replicated_difference,
                                                  replicates_for_half_width, replicates_for_power, simulate_study)
from sime_policy.pipeline.study import replicate_seed


def _pairs(seed: int, rows: list[tuple[str, int, bool, bool]]) -> tuple[dict, dict]:
    """(A outcomes, B outcomes) from (state, trial, a, b) rows."""
    a = {(seed, s, t): x for s, t, x, _ in rows}
    b = {(seed, s, t): y for s, t, _, y in rows}
    return a, b


def test_state_clustered_difference_matches_a_hand_computation() -> None:
    # 3 states x 2 trials; d = b - a per pair: s1 (+1, +1), s2 (0, +1), s3 (-1, 0) -> mean 2/6
    a, b = _pairs(1, [("s1", 0, False, True), ("s1", 1, False, True), ("s2", 0, True, True), ("s2", 1, False, True),
                      ("s3", 0, True, False), ("s3", 1, False, False)])
    result = paired_difference(a, b)
    assert (result.n, result.states, result.only_b, result.only_a) == (6, 3, 3, 1)
    assert result.diff == pytest.approx(1 / 3)
    # residuals (d - 1/3) summed per state: s1 2 - 2/3 = 4/3, s2 1 - 2/3 = 1/3, s3 -1 - 2/3 = -5/3; CR1 factor 3/2
    variance = 3 / 2 * ((4 / 3) ** 2 + (1 / 3) ** 2 + (5 / 3) ** 2) / 36
    assert result.stderr == pytest.approx(math.sqrt(variance))
    half = student.ppf(0.975, 2) * math.sqrt(variance)
    assert (result.ci_low, result.ci_high) == pytest.approx((1 / 3 - half, 1 / 3 + half))
    assert result.p_value == pytest.approx(2 * student.sf((1 / 3) / math.sqrt(variance), 2))
    # the same pairs treated as independent: sum (d - mean)^2 / (n (n - 1))
    iid = (3 * (2 / 3) ** 2 + 2 * (1 / 3) ** 2 + (4 / 3) ** 2) / 30
    assert result.design_effect == pytest.approx(variance / iid)
    assert "+0.333" in result.describe() and "3 states" in result.describe()
    swapped = paired_difference(b, a)
    assert swapped.diff == pytest.approx(-1 / 3) and swapped.p_value == pytest.approx(result.p_value)


def test_identical_or_missing_pairs() -> None:
    same = {(1, "s1", 0): True, (1, "s2", 0): False}
    result = paired_difference(same, same)
    assert result.diff == 0.0 and result.stderr == 0.0 and result.p_value == 1.0
    assert paired_difference({}, same).n == 0 and "no shared" in paired_difference({}, same).describe()
    with pytest.raises(ValueError, match="confidence"):
        paired_difference(same, same, confidence=1.5)


def test_replicates_with_their_own_states_give_the_t_test_over_replicates() -> None:
    # three replicates, each on its own 2 states x 1 trial: differences 1/2, 0, 1
    data = {
        "r1": _pairs(1, [("a1", 0, False, True), ("a2", 0, True, True)]),
        "r2": _pairs(2, [("b1", 0, False, False), ("b2", 0, True, True)]),
        "r3": _pairs(3, [("c1", 0, False, True), ("c2", 0, False, True)]),
    }
    result = replicated_difference(data)
    diffs = [0.5, 0.0, 1.0]
    sd = float(np.std(diffs, ddof=1))
    assert result.replicates == 3 and result.df == 2 and not result.shared_states
    assert result.mean == pytest.approx(0.5) and result.between_sd == pytest.approx(sd)
    assert result.stderr == pytest.approx(sd / math.sqrt(3))                  # one-sample t over replicates
    half = student.ppf(0.975, 2) * sd / math.sqrt(3)
    assert (result.ci_low, result.ci_high) == pytest.approx((0.5 - half, 0.5 + half))
    assert result.half_width == pytest.approx(half)
    assert result.p_value == pytest.approx(2 * student.sf(0.5 / (sd / math.sqrt(3)), 2))
    assert "over 3 replicates" in result.describe()
    # within-replicate s.e.: r1 and r3 have states (1 - 0.5, 0 - 0.5) and (0, 0) residuals -> r1 CR1 2 * 0.5 / 4
    assert result.within_se == pytest.approx(math.sqrt((2 * 0.5 / 4 + 0 + 0) / 3))


def test_shared_states_add_their_variance_and_one_replicate_has_no_interval() -> None:
    # two replicates on the same two states: state s1 gains in both, s2 in neither -> the state effect is shared
    data = {1: _pairs(1, [("s1", 0, False, True), ("s2", 0, True, True)]),
            2: _pairs(2, [("s1", 0, False, True), ("s2", 0, False, False)])}
    result = replicated_difference(data)
    assert result.shared_states and result.mean == pytest.approx(0.5) and result.between_sd == 0.0
    # residuals (d - 1/2) / 4: by replicate sums 0 and 0; by state s1 +1/4, s2 -1/4 -> 2 * 2/16;
    # by cell (each one pair) 4 * (1/8)^2 * 4/3; V = 0 + 1/4 - 1/12 = 1/6
    assert result.stderr == pytest.approx(math.sqrt(2 * 2 / 16 - 4 / 3 * 4 / 64))
    single = replicated_difference({1: data[1]})
    assert single.replicates == 1 and math.isnan(single.ci_low) and "needs 2 or more" in single.describe()
    assert replicated_difference({}).replicates == 0


def test_power_and_replicate_counts() -> None:
    # large samples: the t test's power approaches the normal one, 1 - Phi(1.96 - 0.05 sqrt(n) / 0.1)
    assert power_of_replicates(0.05, 0.1, 400) == pytest.approx(0.9999, abs=1e-3)
    assert power_of_replicates(0.05, 0.1, 32) == pytest.approx(0.78, abs=0.02)   # ~ (1.96 + 0.84)^2 * 4 = 31.4
    needed = replicates_for_power(0.05, 0.1)
    assert power_of_replicates(0.05, 0.1, needed) >= 0.8 > power_of_replicates(0.05, 0.1, needed - 1)
    width = replicates_for_half_width(0.05, 0.09)
    assert student.ppf(0.975, width - 1) * 0.09 / math.sqrt(width) <= 0.05
    assert student.ppf(0.975, width - 2) * 0.09 / math.sqrt(width - 1) > 0.05
    assert replicates_for_power(0.05, float("nan")) is None and replicates_for_half_width(0.05, 0.0) is None


def test_replicate_seeds_are_distinct_and_reproducible() -> None:
    seeds = [replicate_seed(0, k) for k in range(1, 501)]
    assert len(set(seeds)) == 500 and all(0 < s < 2 ** 31 for s in seeds)
    assert seeds[:3] == [replicate_seed(0, k) for k in (1, 2, 3)]              # the same replicate, the same seed
    assert replicate_seed(1, 1) != replicate_seed(0, 1)                        # another study, other seeds
    with pytest.raises(ValueError, match="numbered from 1"):
        replicate_seed(0, 0)


# ---------------------------------------------------------------------- calibration
def _rejection_and_coverage(design: StudyDesign, studies: int, seed: int) -> tuple[float, float, float]:
    rng = np.random.default_rng(seed)
    rejected = covered = 0
    sds = []
    for _ in range(studies):
        result = analyse_simulated(simulate_study(design, rng))
        rejected += result.p_value < 0.05
        covered += result.ci_low <= design.effect <= result.ci_high
        sds.append(result.between_sd)
    return rejected / studies, covered / studies, float(np.sqrt(np.mean(np.square(sds))))


@pytest.mark.parametrize("design", [
    StudyDesign(replicates=10, states=100, trials=1, between_sd=0.09),                     # the study's design
    StudyDesign(replicates=4, states=150, trials=2, between_sd=0.09, shared_states=True),  # sime run --seeds
], ids=["own-states", "shared-states"])
def test_the_run_level_test_rejects_a_true_null_five_percent_of_the_time(design: StudyDesign) -> None:
    rejection, coverage, _ = _rejection_and_coverage(design, 1500, seed=1)
    assert 0.03 <= rejection <= 0.07
    assert 0.93 <= coverage <= 0.97


def test_pooling_replicates_into_one_mcnemar_test_rejects_a_true_null_far_too_often() -> None:
    # what the report did before: every replicate's pairs in one McNemar test
    rng = np.random.default_rng(2)
    design = StudyDesign(replicates=4, states=150, trials=2, between_sd=0.09, shared_states=True)
    rejected = 0
    for _ in range(300):
        study = simulate_study(design, rng)
        a, b = {}, {}
        for r, (x, y) in study.outcomes().items():
            a.update(x)
            b.update(y)
        rejected += _pooled_mcnemar_p(a, b) < 0.05
    assert rejected / 300 > 0.3


def _pooled_mcnemar_p(a: dict, b: dict) -> float:
    """The old report's test: exact McNemar over every shared pair as if each were independent."""
    shared = a.keys() & b.keys()
    only_b = sum(b[k] and not a[k] for k in shared)
    only_a = sum(a[k] and not b[k] for k in shared)
    return 1.0 if only_a + only_b == 0 else binomtest(only_b, only_a + only_b, 0.5).pvalue


def test_p_values_read_as_table_cells_and_prose() -> None:
    assert format_p(0.0004) == "<0.001" and format_p(0.0312) == "0.0312" and format_p(float("nan")) == "-"
    assert p_clause(0.6719) == "p = 0.672"
    assert p_clause(0.00001) == "p < 0.001"
    assert p_clause(0.0139, sep="") == "p=0.0139"


def test_one_run_clustered_test_is_calibrated_where_trials_are_near_copies() -> None:
    rng = np.random.default_rng(3)
    design = StudyDesign(replicates=1, states=150, trials=2, between_sd=0.0, trial_noise=0.05)
    rejected = 0
    for _ in range(1500):
        a, b = simulate_study(design, rng).outcomes()[0]
        rejected += paired_difference(a, b).p_value < 0.05
    assert 0.03 <= rejected / 1500 <= 0.07


def test_a_known_effect_is_covered_and_found_with_the_computed_power() -> None:
    design = StudyDesign(replicates=12, states=100, trials=1, between_sd=0.08, effect=0.07)
    rejection, coverage, sd = _rejection_and_coverage(design, 1500, seed=4)
    assert 0.93 <= coverage <= 0.97
    assert rejection == pytest.approx(power_of_replicates(0.07, sd, 12), abs=0.05)
