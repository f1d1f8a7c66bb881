"""Which training metrics a run keeps, and how a long curve is cut to a few hundred points.

Shared by ``train.py`` (inside the job, for its summary line) and by the runner (for
the ledger), so both keep the same series and thin them the same way. Pure Python,
no imports beyond the standard library: the job ships this file beside its script.

Thinning is deterministic and idempotent: the step range is cut into at most
``MAX_POINTS - 1`` equal buckets and each bucket keeps its last point, plus the very
first point of the run. The buckets depend only on the run's length, so thinning a
curve again, or merging back points it already had, changes nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

MAX_POINTS = 200

# The metrics each method is judged by (TRL's log names), besides the training loss.
METHOD_KEYS: dict[str, tuple[str, ...]] = {
    "sft": ("eval_loss", "mean_token_accuracy", "eval_mean_token_accuracy"),
    "dpo": (
        "eval_loss",
        "rewards/accuracies",
        "rewards/margins",
        "rewards/chosen",
        "rewards/rejected",
    ),
    "grpo": (
        "reward",
        "reward_std",
        "frac_reward_zero_std",
        "completions/mean_length",
        "completions/clipped_ratio",
        "kl",
    ),
}
COMMON_KEYS = ("grad_norm",)
# GRPO logs each reward function's mean as rewards/<function name>/mean.
REWARD_FUNCTION = re.compile(r"^rewards/([^/]+)/mean\Z")


def tracked(method: str, key: str) -> bool:
    """Whether ``key`` is one of the series kept for ``method`` (training loss aside)."""
    if key in COMMON_KEYS or key in METHOD_KEYS.get(method, ()):
        return True
    return method == "grpo" and bool(REWARD_FUNCTION.match(key))


def downsample(
    points: Iterable[tuple[int, float]] | Iterable[list], max_steps: int | None = None
) -> list[tuple[int, float]]:
    """At most ``MAX_POINTS`` points, one per step (the last logged value wins)."""
    by_step = {int(step): float(value) for step, value in points}
    ordered = sorted(by_step.items())
    if not ordered:
        return []
    span = max(max_steps or 0, ordered[-1][0])
    width = max(1, math.ceil(span / (MAX_POINTS - 2)))
    last_in_bucket = {step // width: (step, value) for step, value in ordered}
    return sorted({ordered[0], *last_in_bucket.values()})


def collect(
    method: str, log_history: Iterable[Mapping[str, Any]], max_steps: int | None = None
) -> tuple[dict[str, list[tuple[int, float]]], dict[str, int]]:
    """The tracked series from a trainer's ``state.log_history``, thinned, finite values only;
    and for each metric that went NaN or infinite (the loss included), the first such step."""
    series: dict[str, list[tuple[int, float]]] = {}
    nonfinite: dict[str, int] = {}
    for entry in log_history:
        step = entry.get("step")
        if step is None:
            continue
        for key, value in entry.items():
            if key != "loss" and not tracked(method, key):
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if not math.isfinite(value):
                nonfinite.setdefault(key, int(step))
            elif key != "loss":  # the loss has its own curve
                series.setdefault(key, []).append((int(step), float(value)))
    thinned = {key: downsample(points, max_steps) for key, points in sorted(series.items())}
    return thinned, nonfinite
