"""Which model or run is best: the one place that decides.

A candidate is best only when the data can tell it apart from the runner-up: with
per-sample results for every candidate (the same samples), its paired bootstrap interval
against the runner-up must exclude 0 (``core.stats.pick_best``). Equal scores are never
a best. Ledgers written before per-sample results were kept fall back to the old rule,
a score strictly higher than every other, and say so (``tested`` False).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from ci_runner.core import stats

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Candidate(Generic[K]):
    key: K
    score: float
    samples: Sequence[float] = ()


@dataclass(frozen=True)
class Verdict(Generic[K]):
    """``best`` is None unless it is significant; ``delta`` is leader minus runner-up."""

    best: K | None
    leader: K | None
    runner_up: K | None
    delta: stats.Delta | None = None
    tested: bool = False  # decided on per-sample results, not on the scores alone

    @property
    def summary(self) -> str:
        """One sentence for the report, the PR body and the step summary."""
        if self.leader is None or self.runner_up is None:
            return ""
        if self.delta is None:
            if self.best is not None:
                return f"best: {self.best} (higher score; no per-sample results to test it)"
            return f"no best: {self.leader} and {self.runner_up} tie"
        versus = f"{self.leader} vs {self.runner_up}: Δ {stats.format_delta(self.delta)}"
        if self.best is not None:
            return f"best: {self.best} ({versus}, 95% paired bootstrap)"
        return f"no significant difference ({versus}: the interval includes 0)"


def verdict(candidates: Sequence[Candidate[K]]) -> Verdict[K]:
    """The best candidate, if the data can say; fewer than two candidates have none."""
    if not candidates:
        return Verdict(None, None, None)
    if len(candidates) == 1:
        return Verdict(None, candidates[0].key, None)
    lengths = {len(c.samples) for c in candidates}
    if len(lengths) == 1 and lengths.pop() > 1:
        picked = stats.pick_best({c.key: c.samples for c in candidates})
        return Verdict(picked.best, picked.leader, picked.runner_up, picked.delta, tested=True)
    ranked = sorted(candidates, key=lambda c: c.score, reverse=True)
    top, runner_up = ranked[0], ranked[1]
    best = top.key if top.score > runner_up.score else None
    return Verdict(best, top.key, runner_up.key)
