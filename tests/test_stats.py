"""Intervals, paired deltas and the best-model verdict, with golden numbers.

The bootstrap is seeded, so its output is pinned exactly: a change to any golden number
means reports would change bytes, and must be deliberate.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter

import pytest

from ci_runner.core import stats
from ci_runner.core.stats import (
    Delta,
    Interval,
    format_delta,
    format_spread,
    paired_delta,
    pick_best,
    replicate_summary,
    score_interval,
    significant,
)

N = 164  # HumanEval problems
Z95 = statistics.NormalDist().inv_cdf(0.975)


# Textbook normal approximations: the oracles the bootstrap is checked against, and the
# README's worked example, which knows only the two scores.
def wald(p: float, n: int) -> Interval:
    half = Z95 * math.sqrt(p * (1 - p) / n)
    return Interval(p, p - half, p + half, n, 0.95, "wald")


def wilson(p: float, n: int) -> tuple[float, float]:
    z2n = Z95 * Z95 / n
    center = (p + z2n / 2) / (1 + z2n)
    half = Z95 / (1 + z2n) * math.sqrt(p * (1 - p) / n + z2n / (4 * n))
    return max(0.0, center - half), min(1.0, center + half)


def normal_mean(outcomes: list[float]) -> Interval:
    mean = statistics.fmean(outcomes)
    half = Z95 * statistics.stdev(outcomes) / math.sqrt(len(outcomes))
    return Interval(mean, mean - half, mean + half, len(outcomes), 0.95, "normal")


def unpaired_delta(p1: float, n1: int, p2: float, n2: int, method: str = "wald") -> Delta:
    """``p2 - p1`` for independent outcomes: Wald, or Newcombe's hybrid score interval."""
    d = p2 - p1
    if method == "wald":
        half = Z95 * math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
        low, high = d - half, d + half
    else:
        (l1, u1), (l2, u2) = wilson(p1, n1), wilson(p2, n2)
        low = d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
        high = d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    return Delta(p1, p2, d, low, high, n1, n2, 0.95, method)


def paired(both: int, base_only: int, other_only: int, neither: int):
    """Aligned pass/fail vectors for two models from the four cells of their 2x2 table."""
    base = [1.0] * both + [1.0] * base_only + [0.0] * other_only + [0.0] * neither
    other = [1.0] * both + [0.0] * base_only + [1.0] * other_only + [0.0] * neither
    return base, other


BINARY = [float(i % 3 == 0) for i in range(N)]  # 55/164 pass
GRADED = [((i * 37) % 101) / 100 for i in range(50)]  # 50 distinct values: index resampling
THREE_LEVELS = [(0.0, 0.5, 1.0)[(i * i) % 3] for i in range(40)]  # value-count resampling


# --- golden numbers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcomes", "estimate", "low", "high", "text"),
    [
        (
            BINARY,
            0.3353658536585366,
            0.2621951219512195,
            0.40853658536585363,
            "0.335 [0.262, 0.409]",
        ),
        (GRADED, 0.5002, 0.41959500000000005, 0.5816049999999999, "0.500 [0.420, 0.582]"),
        (THREE_LEVELS, 0.325, 0.25, 0.4, "0.325 [0.250, 0.400]"),
    ],
    ids=["pass-fail", "graded", "three-levels"],
)
def test_score_interval_golden(outcomes, estimate, low, high, text):
    iv = score_interval(outcomes)
    assert (iv.estimate, iv.low, iv.high) == (estimate, low, high)
    assert (iv.n, iv.confidence, iv.method) == (len(outcomes), 0.95, "bootstrap")
    assert (iv.resamples, iv.seed) == (stats.DEFAULT_RESAMPLES, stats.DEFAULT_SEED)
    assert f"{iv.estimate:.3f} [{iv.low:.3f}, {iv.high:.3f}]" == text  # the report's digits


def test_rerun_gives_identical_output():
    for outcomes in (BINARY, GRADED, THREE_LEVELS):
        assert repr(score_interval(outcomes)) == repr(score_interval(list(outcomes)))
    base, other = paired(17, 33, 39, 75)
    assert repr(paired_delta(base, other)) == repr(paired_delta(base, other))
    assert repr(pick_best({"base": base, "final": other})) == repr(
        pick_best({"base": base, "final": other})
    )


def test_the_seed_is_what_makes_it_deterministic():
    other_seed = score_interval(GRADED, seed=1)
    assert other_seed != score_interval(GRADED)
    assert other_seed.seed == 1
    assert abs(other_seed.low - score_interval(GRADED).low) < 0.03  # same interval, other draws


def test_lower_confidence_gives_a_narrower_interval():
    assert score_interval(BINARY, confidence=0.8).width < score_interval(BINARY).width


# --- the worked example: HumanEval 0.306 -> 0.342 on 164 problems ------------------------


def test_worked_example_unpaired_normal_interval_includes_zero():
    """The closing note's numbers: +0.036 on 164 problems is within noise when the
    per-sample outcomes are independent."""
    se_score = math.sqrt(0.306 * (1 - 0.306) / N)
    assert se_score == pytest.approx(0.0360, abs=5e-4)  # "about 0.036"

    wald = unpaired_delta(0.306, N, 0.342, N)
    assert wald.estimate == pytest.approx(0.036)
    se_delta = math.sqrt(0.306 * 0.694 / N + 0.342 * 0.658 / N)
    assert se_delta == pytest.approx(0.05165, abs=1e-5)
    assert wald.low == pytest.approx(0.036 - 1.959964 * se_delta, abs=1e-6)
    assert (wald.low, wald.high) == pytest.approx((-0.065220, 0.137220), abs=1e-6)
    assert format_delta(wald) == "+0.036 [-0.065, +0.137]"
    assert not significant(wald)

    newcombe = unpaired_delta(0.306, N, 0.342, N, method="newcombe")
    assert (newcombe.low, newcombe.high) == pytest.approx((-0.064882, 0.135879), abs=1e-6)
    assert format_delta(newcombe) == "+0.036 [-0.065, +0.136]"
    assert not significant(newcombe)


def test_worked_example_as_aligned_vectors():
    """50/164 -> 56/164 (0.305 -> 0.341, the nearest counts) as per-sample outcomes.

    Independent outcomes overlap on about 0.305 * 0.341 * 164 = 17 problems; the paired
    bootstrap then agrees with the unpaired normal interval and includes 0.
    """
    base, other = paired(both=17, base_only=33, other_only=39, neither=75)
    assert (sum(base), sum(other)) == (50, 56)
    delta = paired_delta(base, other)
    assert (delta.estimate, delta.low, delta.high) == (
        0.03658536585365857,
        -0.06707317073170732,
        0.13414634146341464,
    )
    assert format_delta(delta) == "+0.037 [-0.067, +0.134]"
    assert not significant(delta)
    normal = unpaired_delta(50 / N, N, 56 / N, N)
    assert delta.low == pytest.approx(normal.low, abs=0.01)
    assert delta.high == pytest.approx(normal.high, abs=0.01)


def test_same_scores_correlated_outcomes_still_not_significant():
    """Pairing narrows the interval when the models agree on most problems (40 solved by
    both, 10 lost, 16 gained), but +0.037 is still not distinguishable from 0."""
    base, other = paired(both=40, base_only=10, other_only=16, neither=98)
    delta = paired_delta(base, other)
    assert format_delta(delta) == "+0.037 [-0.024, +0.098]"
    assert delta.high - delta.low < paired_delta(*paired(17, 33, 39, 75)).high - (
        paired_delta(*paired(17, 33, 39, 75)).low
    )
    assert not significant(delta)


def test_same_scores_one_sided_change_is_significant_when_paired():
    """What per-sample results buy: the same 0.305 -> 0.341, if the fine-tuned model keeps
    all 50 and gains 6 (no losses), is a real gain (a sign test gives p = 2/2**6 = 0.03)."""
    base, other = paired(both=50, base_only=0, other_only=6, neither=108)
    delta = paired_delta(base, other)
    assert format_delta(delta) == "+0.037 [+0.012, +0.067]"
    assert significant(delta)


def test_synthetic_significant_delta():
    """20/164 -> 60/164 on the same problems: a real gain."""
    base, other = paired(both=15, base_only=5, other_only=45, neither=99)
    delta = paired_delta(base, other)
    assert (delta.base, delta.other) == (20 / N, 60 / N)
    assert (delta.estimate, delta.low, delta.high) == (
        0.24390243902439024,
        0.17073170731707318,
        0.3231707317073171,
    )
    assert format_delta(delta) == "+0.244 [+0.171, +0.323]"
    assert significant(delta)
    assert delta.significant
    assert (delta.n_base, delta.n_other, delta.method) == (N, N, "paired bootstrap")
    # Swapping the models mirrors the delta.
    assert significant(paired_delta(other, base))
    assert paired_delta(other, base).estimate == -delta.estimate


# --- best model ----------------------------------------------------------------------------


def test_best_only_when_significant():
    base, other = paired(15, 5, 45, 99)
    verdict = pick_best({"base": base, "final": other})
    assert (verdict.best, verdict.leader, verdict.runner_up) == ("final", "final", "base")
    assert verdict.delta == paired_delta(base, other)
    assert verdict.summary == "best: final (final vs base: +0.244 [+0.171, +0.323])"


def test_no_best_on_overlap():
    base, other = paired(17, 33, 39, 75)
    verdict = pick_best({"base": base, "final": other})
    assert verdict.best is None
    assert (verdict.leader, verdict.runner_up, verdict.tie) == ("final", "base", False)
    assert verdict.summary == "no significant difference (final vs base: +0.037 [-0.067, +0.134])"


def test_no_best_on_a_zero_tie():
    """0.000 vs 0.000 is a tie, not a best model."""
    zeros = [0.0] * N
    verdict = pick_best({"base": zeros, "final": list(zeros)})
    assert verdict.best is None
    assert verdict.tie
    assert (verdict.leader, verdict.runner_up) == ("base", "final")  # input order breaks ties
    assert format_delta(verdict.delta) == "±0.000 [±0.000, ±0.000]"
    assert verdict.summary == (
        "no significant difference: base and final tie (base vs final: ±0.000 [±0.000, ±0.000])"
    )


def test_no_best_on_an_equal_nonzero_tie():
    """Same mean, different problems solved: never a best."""
    base, other = paired(both=0, base_only=30, other_only=30, neither=104)
    verdict = pick_best({"final": other, "base": base})
    assert verdict.best is None
    assert verdict.tie
    assert verdict.leader == "final"


def test_best_compares_leader_with_runner_up_only():
    """Three models: the last one is far behind, but the top two overlap: no best."""
    weak, _ = paired(10, 0, 0, 154)
    _, a = paired(17, 33, 39, 75)
    b = [1.0] * 50 + [0.0] * 114
    verdict = pick_best({"base": weak, "checkpoint-100": b, "final": a})
    assert (verdict.leader, verdict.runner_up, verdict.best) == ("final", "checkpoint-100", None)


def test_a_single_model_is_never_best():
    verdict = pick_best({"final": BINARY})
    assert (verdict.best, verdict.leader, verdict.runner_up, verdict.delta) == (
        None,
        "final",
        None,
        None,
    )
    assert "no comparison" in verdict.summary


def test_pick_best_refuses_nothing_and_misaligned():
    with pytest.raises(ValueError, match="at least one"):
        pick_best({})
    with pytest.raises(ValueError, match="align"):
        pick_best({"base": [0.0, 1.0], "final": [1.0, 1.0, 1.0]})


# --- the bootstrap against the normal approximation -------------------------------------


def test_bootstrap_agrees_with_wald_on_a_big_sample():
    rng = random.Random(5)
    outcomes = [float(rng.random() < 0.3) for _ in range(5000)]
    boot = score_interval(outcomes)
    normal = wald(boot.estimate, len(outcomes))
    assert boot.low == pytest.approx(normal.low, abs=0.003)
    assert boot.high == pytest.approx(normal.high, abs=0.003)


def test_bootstrap_agrees_with_normal_on_big_graded_sample():
    rng = random.Random(6)
    outcomes = [rng.betavariate(2, 5) for _ in range(2000)]  # distinct values: index path
    boot = score_interval(outcomes)
    normal = normal_mean(outcomes)
    assert boot.low == pytest.approx(normal.low, abs=0.003)
    assert boot.high == pytest.approx(normal.high, abs=0.003)


def test_paired_bootstrap_of_independent_outcomes_agrees_with_unpaired_wald():
    rng = random.Random(7)
    base = [float(rng.random() < 0.30) for _ in range(5000)]
    other = [float(rng.random() < 0.34) for _ in range(5000)]
    boot = paired_delta(base, other)
    normal = unpaired_delta(boot.base, 5000, boot.other, 5000)
    assert boot.estimate == pytest.approx(normal.estimate, abs=1e-12)
    assert boot.low == pytest.approx(normal.low, abs=0.004)
    assert boot.high == pytest.approx(normal.high, abs=0.004)
    assert significant(boot) == significant(normal)


def test_value_counts_and_index_resampling_agree(monkeypatch):
    """The fast path (multinomial value counts) is the same bootstrap as index draws."""
    base, other = paired(40, 10, 16, 98)
    fast = (score_interval(other), paired_delta(base, other))
    monkeypatch.setattr(stats, "_by_counts", lambda levels, n: False)
    slow = (score_interval(other), paired_delta(base, other))
    assert fast[0].low == pytest.approx(slow[0].low, abs=0.01)
    assert fast[0].high == pytest.approx(slow[0].high, abs=0.01)
    assert fast[1].low == pytest.approx(slow[1].low, abs=0.01)
    assert fast[1].high == pytest.approx(slow[1].high, abs=0.01)


def test_value_counts_with_many_levels_agree_with_index_resampling(monkeypatch):
    """pass@1 averaged over 16 generations: 17 values, drawn as counts on 1319 samples."""
    rng = random.Random(8)
    outcomes = [sum(rng.random() < 0.4 for _ in range(16)) / 16 for _ in range(1319)]
    assert stats._by_counts(len(set(outcomes)), len(outcomes))
    fast = score_interval(outcomes)
    monkeypatch.setattr(stats, "_by_counts", lambda levels, n: False)
    slow = score_interval(outcomes)
    assert fast.low == pytest.approx(slow.low, abs=0.002)
    assert fast.high == pytest.approx(slow.high, abs=0.002)


def test_value_counts_are_used_where_they_are_cheaper():
    assert stats._by_counts(2, 2)  # pass/fail: always
    assert stats._by_counts(3, 5)  # paired pass/fail differences: always
    assert not stats._by_counts(17, 164)  # 17 binomial draws cost more than 164 index draws
    assert stats._by_counts(33, 5000)
    assert not stats._by_counts(5000, 5000)  # graded scores


@pytest.mark.parametrize(("n", "w", "total"), [(10, 3, 10), (40, 1, 164), (164, 50, 164)])
def test_binomial_draws_follow_the_binomial(n, w, total):
    rng = random.Random(11)
    draws = 40_000
    counts = Counter(stats._binomial(rng, n, w, total) for _ in range(draws))
    p = w / total
    tv = 0.5 * sum(
        abs(counts[k] / draws - math.comb(n, k) * p**k * (1 - p) ** (n - k)) for k in range(n + 1)
    )
    assert tv < 0.02
    mean = sum(k * c for k, c in counts.items()) / draws
    assert mean == pytest.approx(n * p, abs=4 * math.sqrt(n * p * (1 - p) / draws))
    assert stats._binomial(rng, 0, 1, 2) == 0
    assert stats._binomial(rng, 5, 2, 2) == 5


def test_percentiles_are_numpy_default_linear_interpolation():
    xs = [random.Random(3).random() for _ in range(1)] + [i / 7 for i in range(2000)]
    cuts = statistics.quantiles(xs, n=40, method="inclusive")
    assert stats._percentiles(xs, 0.95) == pytest.approx((cuts[0], cuts[-1]), abs=1e-12)


# --- edge cases ------------------------------------------------------------------------


def test_empty_outcomes_are_a_clear_error():
    with pytest.raises(ValueError, match="empty: no per-sample results"):
        score_interval([])
    with pytest.raises(ValueError, match="empty"):
        paired_delta([], [])
    with pytest.raises(ValueError, match="empty"):
        replicate_summary([])


@pytest.mark.parametrize("outcomes", [[0.0] * N, [1.0] * N, [0.7] * 5, [0.1] * 3, [0.5]])
def test_all_equal_values_give_a_zero_width_interval(outcomes):
    iv = score_interval(outcomes)
    assert iv.low == iv.estimate == iv.high == outcomes[0]
    assert iv.width == 0.0
    assert iv.n == len(outcomes)


def test_n_equals_one():
    iv = score_interval([1])
    assert (iv.estimate, iv.low, iv.high, iv.n) == (1.0, 1.0, 1.0, 1)
    delta = paired_delta([0], [1])
    assert (delta.estimate, delta.low, delta.high) == (1.0, 1.0, 1.0)
    spread = replicate_summary([0.61])
    assert (spread.mean, spread.std, spread.n) == (0.61, None, 1)
    assert format_spread(spread) == "0.610 (n=1)"


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="finite"):
        score_interval([0.0, float("nan")])
    with pytest.raises(TypeError, match="numbers"):
        score_interval(["1", "0"])
    with pytest.raises(TypeError, match="sequence"):
        score_interval("1010")
    with pytest.raises(ValueError, match="align"):
        paired_delta([0.0, 1.0], [1.0])
    with pytest.raises(ValueError, match="confidence"):
        score_interval(BINARY, confidence=95)
    with pytest.raises(ValueError, match="resamples"):
        score_interval(BINARY, resamples=0)
    assert score_interval([True, False]) == score_interval([1.0, 0.0])  # bools are 0/1


# --- replicates, formatting ----------------------------------------


def test_replicate_summary():
    spread = replicate_summary([0.6412, 0.6533, 0.6298])
    assert spread.mean == pytest.approx(0.64143333)
    assert spread.std == pytest.approx(statistics.stdev([0.6412, 0.6533, 0.6298]))
    assert (spread.min, spread.max, spread.n) == (0.6298, 0.6533, 3)
    assert format_spread(spread) == "0.641 ± 0.012 (n=3)"
    assert format_spread(spread, digits=4) == "0.6414 ± 0.0118 (n=3)"
    assert replicate_summary([0.5, 0.5]).std == 0.0


def test_formatting():
    d = Delta(0.3, 0.3002, 0.0002, -0.0003, 0.05, N, N, 0.95, "paired bootstrap")
    assert format_delta(d) == "+0.000 [-0.000, +0.050]"  # the side of 0 survives rounding
    assert not significant(d)
    assert not significant(Delta(0.3, 0.4, 0.1, 0.0, 0.2, N, N, 0.95, "wald"))  # touches 0


MODELS = {"base": 0.30, "checkpoint": 0.32, "final": 0.34}
