"""Which model or run is best: the one place that decides.

Today's rule: a candidate is best only when its score is strictly higher than every
other candidate's. A tie at the top, or a single candidate, has no best. Issue 17
replaces this with a significance test (``ci_runner/core/stats.py``): swap
``best_of``'s body and every "best" in the ledger and the report follows.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def best_of(scores: Sequence[tuple[K, float]]) -> K | None:
    """The key whose score strictly beats every other; None on a tie or with < 2 candidates."""
    if len(scores) < 2:
        return None
    ranked = sorted(scores, key=lambda item: item[1], reverse=True)
    (top, top_score), (_, runner_up) = ranked[0], ranked[1]
    return top if top_score > runner_up else None
