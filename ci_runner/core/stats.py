"""Uncertainty for eval scores, deltas and seed replicates.

A score of 0.342 on 164 problems is not a fact about the model to three decimals: its
standard error is about 0.037. This module turns per-sample outcomes (pass@1 or
exact-match 0/1 values, or graded scores) into intervals a reviewer can trust:

- ``score_interval``: a bootstrap percentile interval of the mean.
- ``paired_delta``: the change between two models on the *same* samples, bootstrapped
  over samples, so per-problem correlation narrows the interval when it is there.
- ``pick_best``: names a best model only when its paired interval against the
  runner-up excludes 0.
- ``replicate_summary``: mean and spread over seed replicates.

Everything is a pure function of its arguments (stdlib only, no I/O, no clock), so the
report rendered from the same ledger is byte-identical. Randomness comes from
``random.Random(seed)`` with a fixed default seed (``DEFAULT_SEED``) rather than one
derived from the data: the same input then gives the same bytes on every run and
machine, and every model of a report draws from the same stream.

How the bootstrap is drawn: a resample of n outcomes is n draws with replacement. When
the outcomes take few distinct values (pass/fail, exact match, the -1/0/+1 differences
of a paired pass/fail comparison, pass@1 averaged over a few generations), only how
many times each value is drawn matters, and those counts are multinomial: they are
drawn directly, one binomial draw per distinct value, instead of n index draws. This is
the same bootstrap distribution at a cost that hardly grows with n (pass/fail on 5000
samples costs about 3x what 164 do, not 30x). It is used when there are at most
max(3, √n) distinct values, where it is never slower; other outcomes (graded scores)
resample indices with ``Random.choices``, which costs about 0.1 s per interval per
1000 samples.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from numbers import Real
from statistics import stdev
from typing import Generic, TypeVar

DEFAULT_CONFIDENCE = 0.95
# 2000 resamples leave 50 draws beyond each end of a 95% percentile interval (1000 or
# more is the usual advice). Pass/fail outcomes for 3 models, with 2 deltas and a verdict,
# take ~20-30 ms at 164 samples and ~0.1 s at 5000 (tests/test_stats.py::test_timing).
DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 17  # fixed, not derived from the data: see the module docstring

L = TypeVar("L", bound=Hashable)  # what ``pick_best`` names models by


# --- results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A score with its interval: what a report cell shows, plus how it was computed."""

    estimate: float  # the mean of the outcomes
    low: float
    high: float
    n: int  # samples the mean is over; a reader needs it to judge the width
    confidence: float
    method: str  # "bootstrap", "wald", "wilson" or "normal"
    resamples: int | None = None  # bootstrap only: enough to redo it exactly
    seed: int | None = None

    @property
    def width(self) -> float:
        return self.high - self.low

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high


@dataclass(frozen=True)
class Delta:
    """``other`` minus ``base`` with its interval; ``significant`` when it excludes 0."""

    base: float  # the base model's mean
    other: float  # the compared model's mean
    estimate: float  # other - base
    low: float
    high: float
    n_base: int  # paired: equal, the aligned samples
    n_other: int
    confidence: float
    method: str  # "paired bootstrap", "wald" or "newcombe"
    resamples: int | None = None
    seed: int | None = None

    @property
    def significant(self) -> bool:
        return significant(self)


@dataclass(frozen=True)
class BestVerdict(Generic[L]):
    """Which model is best, if the data can say: ``best`` is None unless it is significant.

    ``leader`` has the highest mean (input order breaks ties), ``runner_up`` the next, and
    ``delta`` is leader minus runner-up, paired. Equal means are never a best.
    """

    best: L | None
    leader: L
    runner_up: L | None
    delta: Delta | None
    tie: bool = False

    @property
    def summary(self) -> str:
        """One sentence for the report, the PR body and the step summary."""
        if self.runner_up is None or self.delta is None:
            return f"only one model evaluated ({self.leader}): no comparison"
        versus = f"{self.leader} vs {self.runner_up}: {format_delta(self.delta)}"
        if self.best is not None:
            return f"best: {self.best} ({versus})"
        if self.tie:
            return f"no significant difference: {self.leader} and {self.runner_up} tie ({versus})"
        return f"no significant difference ({versus})"


@dataclass(frozen=True)
class Spread:
    """Mean and spread over seed replicates; ``std`` (sample, n-1) is None below 2 values."""

    mean: float
    std: float | None
    min: float
    max: float
    n: int


# --- bootstrap -------------------------------------------------------------------------


def score_interval(
    outcomes: Sequence[float],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Interval:
    """Bootstrap percentile interval of the mean of per-sample outcomes.

    All-equal outcomes (n=1 included) give a zero-width interval: the bootstrap cannot
    see spread that was never sampled, so read it with ``n``.
    """
    values = _values(outcomes, "outcomes")
    _check_settings(confidence, resamples)
    means = _bootstrap_means(values, resamples, random.Random(seed))
    low, high = _percentiles(means, confidence)
    return Interval(_mean(values), low, high, len(values), confidence, "bootstrap", resamples, seed)


def paired_delta(
    base: Sequence[float],
    other: Sequence[float],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Delta:
    """Paired bootstrap of ``mean(other) - mean(base)`` over the same samples.

    ``base[i]`` and ``other[i]`` must be the same sample (problem, document), aligned by
    doc id. Each resample draws sample indices once and applies them
    to both models; that is the same as resampling the per-sample differences
    ``other[i] - base[i]``, which is how it is computed.

    With very few samples the percentile bootstrap is optimistic: 5 problems all gained
    give a zero-width interval at +1.0, though a sign test puts p at 0.06.
    """
    b = _values(base, "base")
    o = _values(other, "other")
    if len(b) != len(o):
        raise ValueError(
            f"paired_delta needs the same samples for both models, got {len(b)} and {len(o)} "
            "outcomes: align them by doc id first"
        )
    _check_settings(confidence, resamples)
    diffs = [y - x for x, y in zip(b, o, strict=True)]
    means = _bootstrap_means(diffs, resamples, random.Random(seed))
    low, high = _percentiles(means, confidence)
    mb, mo = _mean(b), _mean(o)
    return Delta(
        mb, mo, mo - mb, low, high, len(b), len(o), confidence, "paired bootstrap", resamples, seed
    )


def significant(delta: Delta) -> bool:
    """True when the delta's interval excludes 0 (an endpoint exactly at 0 does not)."""
    return delta.low > 0.0 or delta.high < 0.0


def pick_best(
    scores: Mapping[L, Sequence[float]],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> BestVerdict[L]:
    """The best model by mean, named only if its paired interval vs the runner-up excludes 0.

    ``scores`` maps each model to its per-sample outcomes, aligned by doc id. Equal
    means are a tie and never a best, whatever the interval says.
    """
    if not scores:
        raise ValueError("pick_best needs at least one model's outcomes")
    means = {label: _mean(_values(v, f"outcomes of {label!r}")) for label, v in scores.items()}
    ranked = sorted(means, key=lambda label: -means[label])  # stable: input order breaks ties
    leader = ranked[0]
    if len(ranked) == 1:
        return BestVerdict(None, leader, None, None)
    runner_up = ranked[1]
    delta = paired_delta(
        scores[runner_up],
        scores[leader],
        confidence=confidence,
        resamples=resamples,
        seed=seed,
    )
    tie = means[leader] == means[runner_up]
    best = leader if significant(delta) and not tie else None
    return BestVerdict(best, leader, runner_up, delta, tie)


# --- replicates and formatting ---------------------------------------------------------


def replicate_summary(values: Sequence[float]) -> Spread:
    """Mean ± sample std, min and max over seed replicates (final loss, an eval score)."""
    xs = _values(values, "replicate values")
    return Spread(_mean(xs), stdev(xs) if len(xs) >= 2 else None, min(xs), max(xs), len(xs))


def format_delta(delta: Delta, digits: int = 3) -> str:
    """``+0.036 [-0.012, +0.085]``: every number signed, so a bound's side of 0 shows even
    when it rounds to 0 (``-0.000``); an exact 0 prints as ``±0.000``, as the report's Δ."""
    return (
        f"{_signed(delta.estimate, digits)} "
        f"[{_signed(delta.low, digits)}, {_signed(delta.high, digits)}]"
    )


def format_spread(spread: Spread, digits: int = 3) -> str:
    """``0.642 ± 0.012 (n=3)``; a single replicate has no spread: ``0.642 (n=1)``."""
    if spread.std is None:
        return f"{spread.mean:.{digits}f} (n={spread.n})"
    return f"{spread.mean:.{digits}f} ± {spread.std:.{digits}f} (n={spread.n})"


def _signed(x: float, digits: int) -> str:
    return f"±{0:.{digits}f}" if x == 0 else f"{x:+.{digits}f}"


# --- internals -------------------------------------------------------------------------


def _values(outcomes: Sequence[float], what: str) -> tuple[float, ...]:
    """Outcomes as floats; refuse what would make a silent wrong interval."""
    if isinstance(outcomes, (str, bytes)) or not isinstance(outcomes, Sequence):
        raise TypeError(f"{what} must be a sequence of numbers, got {type(outcomes).__name__}")
    if len(outcomes) == 0:
        raise ValueError(f"{what} is empty: no per-sample results, so no interval")
    values: list[float] = []
    for x in outcomes:
        if not isinstance(x, Real):
            raise TypeError(f"{what} must be numbers, got {x!r}")
        x = float(x)
        if not math.isfinite(x):
            raise ValueError(f"{what} must be finite, got {x!r}")
        values.append(x)
    return tuple(values)


def _check_settings(confidence: float, resamples: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence!r}")
    if not isinstance(resamples, int) or isinstance(resamples, bool) or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples!r}")


def _mean(values: Sequence[float]) -> float:
    """Exactly-rounded mean; all-equal values return that value, so the width is exactly 0."""
    first = values[0]
    if all(x == first for x in values):
        return first
    return math.fsum(values) / len(values)


def _bootstrap_means(values: Sequence[float], resamples: int, rng: random.Random) -> list[float]:
    """The means of ``resamples`` resamples (with replacement, size n) of ``values``."""
    n = len(values)
    counts = Counter(values)
    if len(counts) == 1:
        return [values[0]] * resamples
    if not _by_counts(len(counts), n):
        return [math.fsum(rng.choices(values, k=n)) / n for _ in range(resamples)]
    # Few distinct values: draw how often each is picked, Multinomial(n, counts / n), as a
    # chain of binomials over the values in sorted order (the last takes the rest).
    levels = sorted(counts)
    weights = [counts[v] for v in levels]
    means = []
    for _ in range(resamples):
        left_n, left_w, parts = n, n, []
        for level, w in zip(levels[:-1], weights[:-1], strict=True):
            c = _binomial(rng, left_n, w, left_w)
            parts.append(level * c)
            left_n -= c
            left_w -= w
        parts.append(levels[-1] * left_n)
        means.append(math.fsum(parts) / n)
    return means


def _by_counts(levels: int, n: int) -> bool:
    """Draw value counts rather than indices? One binomial per distinct value costs about
    as much as √n index draws or less, so up to √n values it is the cheaper way."""
    return levels <= max(3, math.isqrt(n))


def _binomial(rng: random.Random, n: int, w: int, total: int) -> int:
    """One Binomial(n, w/total) draw by inversion of the CDF, searching outward from the
    mode: one uniform per draw, exact up to float rounding, about one standard deviation of
    steps on average. (``Random.binomialvariate`` is Python 3.12+; we support 3.10.)"""
    if n == 0 or w == 0:
        return 0
    if w == total:
        return n
    p = w / total
    mode, pmf_mode = _mode_pmf(n, w, total)
    u = rng.random()
    if u < pmf_mode:
        return mode
    u -= pmf_mode
    odds = p / (1.0 - p)
    up_k = down_k = mode
    up_pmf = down_pmf = pmf_mode
    while up_k < n or down_k > 0:
        if up_k < n:
            up_pmf *= (n - up_k) / (up_k + 1) * odds
            up_k += 1
            if u < up_pmf:
                return up_k
            u -= up_pmf
        if down_k > 0:
            down_pmf *= down_k / (n - down_k + 1) / odds
            down_k -= 1
            if u < down_pmf:
                return down_k
            u -= down_pmf
    return mode  # float rounding left a sliver of probability unassigned: give it the mode


@lru_cache(maxsize=4096)
def _mode_pmf(n: int, w: int, total: int) -> tuple[int, float]:
    """The mode of Binomial(n, w/total) and its probability (from log-gamma, no overflow)."""
    p = w / total
    mode = min(n, (n + 1) * w // total)
    log_pmf = (
        math.lgamma(n + 1)
        - math.lgamma(mode + 1)
        - math.lgamma(n - mode + 1)
        + mode * math.log(p)
        + (n - mode) * math.log1p(-p)
    )
    return mode, math.exp(log_pmf)


def _percentiles(means: list[float], confidence: float) -> tuple[float, float]:
    """The two-sided percentile interval: linear interpolation between order statistics,
    numpy's default and ``statistics.quantiles(method="inclusive")``."""
    xs = sorted(means)
    tail = (1.0 - confidence) / 2.0
    return _quantile(xs, tail), _quantile(xs, 1.0 - tail)


def _quantile(xs: list[float], q: float) -> float:
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    frac = pos - lo
    if lo + 1 >= len(xs) or frac == 0.0 or xs[lo] == xs[lo + 1]:
        return xs[lo]
    return xs[lo] + (xs[lo + 1] - xs[lo]) * frac
