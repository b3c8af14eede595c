"""Paired statistics of evaluations: exact McNemar p-values, paired-difference CIs, Wilson intervals."""

from __future__ import annotations

import math

import pytest

from sime_policy.pipeline.paired_stats import (binomial_interval, compare_outcomes, compare_paired, format_p,
                                      mcnemar_exact_p)


def test_mcnemar_exact_matches_hand_computed_binomial_tails() -> None:
    # 14 vs 1 discordant: 2 * P(X <= 1 | n=15, p=1/2) = 2 * (1 + 15) / 2**15
    assert mcnemar_exact_p(14, 1) == pytest.approx(32 / 32768)
    assert mcnemar_exact_p(1, 14) == pytest.approx(32 / 32768)          # symmetric
    assert mcnemar_exact_p(3, 0) == pytest.approx(2 / 8)                 # 2 * (1/2)^3
    assert mcnemar_exact_p(6, 2) == pytest.approx(2 * (1 + 8 + 28) / 256)
    assert mcnemar_exact_p(5, 5) == 1.0 and mcnemar_exact_p(0, 0) == 1.0
    with pytest.raises(ValueError, match="non-negative integers"):
        mcnemar_exact_p(-1, 2)
    with pytest.raises(ValueError, match="non-negative integers"):
        mcnemar_exact_p(1.5, 2)


def test_paired_difference_and_wald_interval() -> None:
    # 100 pairs: 81 both succeed, 14 only B, 1 only A, 4 both fail -> A 0.82, B 0.95
    a = [True] * 81 + [False] * 14 + [True] * 1 + [False] * 4
    b = [True] * 81 + [True] * 14 + [False] * 1 + [False] * 4
    result = compare_paired(a, b)
    assert (result.n, result.only_b, result.only_a) == (100, 14, 1)
    assert result.rate_a == pytest.approx(0.82) and result.rate_b == pytest.approx(0.95)
    assert result.diff == pytest.approx(0.13)
    se = math.sqrt(15 - 13 ** 2 / 100) / 100
    assert result.stderr == pytest.approx(se)
    assert (result.ci_low, result.ci_high) == pytest.approx((0.13 - 1.959964 * se, 0.13 + 1.959964 * se), abs=1e-6)
    assert result.p_value == pytest.approx(32 / 32768)
    assert "+0.130" in result.describe() and "14 vs 1" in result.describe()
    swapped = compare_paired(b, a)
    assert swapped.diff == pytest.approx(-0.13) and swapped.p_value == result.p_value


def test_identical_outcomes_have_zero_difference_and_p_one() -> None:
    same = [True, False, True, True]
    result = compare_paired(same, same)
    assert result.diff == 0.0 and result.stderr == 0.0 and result.p_value == 1.0
    assert (result.ci_low, result.ci_high) == (0.0, 0.0)


def test_compare_outcomes_pairs_by_key_and_ignores_unshared_pairs() -> None:
    a = {(233, "s1", 0): True, (233, "s1", 1): False, (233, "s2", 0): False, (2333, "s1", 0): True}
    b = {(233, "s1", 1): True, (233, "s2", 0): True, (233, "s1", 0): True, (9, "x", 0): False}
    result = compare_outcomes(a, b)
    assert result.n == 3 and (result.only_b, result.only_a) == (2, 0)
    assert compare_outcomes({}, b).n == 0 and math.isnan(compare_outcomes({}, b).diff)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="must align"):
        compare_paired([True], [True, False])
    with pytest.raises(ValueError, match="confidence"):
        compare_paired([True], [False], confidence=1.5)


def test_wilson_interval_and_p_formatting() -> None:
    assert binomial_interval(8, 10) == pytest.approx((0.49016, 0.94332), abs=1e-4)
    low, high = binomial_interval(0, 20)
    assert low == 0.0 and high == pytest.approx(0.16113, abs=1e-4)
    assert all(math.isnan(x) for x in binomial_interval(0, 0))
    assert format_p(0.0004) == "<0.001" and format_p(0.0312) == "0.0312" and format_p(float("nan")) == "-"


def test_p_clause_reads_as_prose() -> None:
    from sime_policy.pipeline.paired_stats import p_clause

    assert p_clause(0.6719) == "p = 0.672"
    assert p_clause(0.00001) == "p < 0.001"
    assert p_clause(0.0139, sep="") == "p=0.0139"
