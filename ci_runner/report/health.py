"""Is the run learning? Checks on a run's logged metrics, each with what to do about it.

Pure: a run in, findings out. The report, ``ci-runner status``/``run``, the step summary
and the PR body all show the same findings, so a run that "Completed" while learning
nothing cannot look healthy anywhere.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ci_runner.core.inert import code, prose
from ci_runner.job_scripts.curves import REWARD_FUNCTION
from ci_runner.ledger.model import Run, RunStatus, TrainMetrics

Curve = list[tuple[int, float]]

TRL_LOGGING_STEPS = 10
MIN_POINTS_WHILE_RUNNING = 3  # a running GRPO run is judged "so far" after this many logs
DIVERGE_RATIO = 1.3  # end of the run vs its start, and ...
DIVERGE_FROM_MIN = 1.5  # ... vs its lowest point
EVAL_RISE = 0.02  # eval loss this much (relative) above its minimum counts as rising


@dataclass(frozen=True)
class Finding:
    check: str  # stable id: loss-nan, loss-diverging, no-learning-signal, no-curve, overfitting
    title: str  # what a reviewer scans for
    detail: str  # the numbers behind it
    remedy: str  # what to change

    @property
    def text(self) -> str:
        return f"{self.title}: {self.detail}. Remedy: {self.remedy}"

    def to_json(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def check_run(run: Run) -> list[Finding]:
    """Every finding for one run, the most serious first; [] for a healthy or new run."""
    m = run.metrics
    if m is None:
        return []
    found = [*_nonfinite(m), *_diverging(run, m), *_no_learning_signal(run, m)]
    found += [*_no_curve(run, m), *_overfitting(m)]
    return found


def fmt(v: float) -> str:
    """Four significant digits, no exponent for everyday magnitudes: 0.6931, 12.5, 3e-05."""
    if v == 0:
        return "0"
    return f"{v:.4g}"


# --- NaN and divergence --------------------------------------------------------------


def _nonfinite(m: TrainMetrics) -> list[Finding]:
    where = dict(m.nonfinite)
    if "loss" not in where and m.final_loss is not None and not math.isfinite(m.final_loss):
        where["loss"] = m.step or 0
    if not where:
        return []
    first = min(where.values())
    keys = sorted(where, key=lambda key: (key != "loss", key))
    title = "loss is NaN" if "loss" in where else f"{keys[0]} is NaN"
    detail = "; ".join(f"{key} NaN or infinite from step {where[key]}" for key in keys)
    return [
        Finding(
            "loss-nan",
            title,
            detail,
            "lower learning_rate (÷10), keep gradient clipping on (max_grad_norm: 1.0), "
            "train in bf16 rather than fp16, and look for empty or extremely long rows in the "
            f"data; checkpoints from before step {first} are the ones to keep",
        )
    ]


def _quarter_mean(values: list[float], head: bool) -> float:
    n = max(1, len(values) // 4)
    part = values[:n] if head else values[-n:]
    return sum(part) / len(part)


def _diverging(run: Run, m: TrainMetrics) -> list[Finding]:
    """The loss ends well above where it started and above its lowest point.

    Not for GRPO: its loss is a policy-gradient surrogate, not a measure of fit.
    """
    curve = [(s, v) for s, v in m.loss_curve if math.isfinite(v)]
    if run.method == "grpo" or len(curve) < 4:
        return []
    values = [v for _, v in curve]
    start, end = _quarter_mean(values, True), _quarter_mean(values, False)
    low_step, low = min(curve, key=lambda p: p[1])
    if start <= 0 or end <= start * DIVERGE_RATIO or end <= low * DIVERGE_FROM_MIN:
        return []
    return [
        Finding(
            "loss-diverging",
            "loss diverging",
            f"the training loss rose from {fmt(start)} (first steps) to {fmt(end)} (last steps); "
            f"its lowest was {fmt(low)} at step {low_step}",
            "lower learning_rate (÷2 to ÷10), add warmup (warmup_ratio: 0.05) and keep "
            f"max_grad_norm at 1.0; the checkpoint nearest step {low_step} is the one to keep",
        )
    ]


# --- GRPO: does the reward give the policy anything to learn from? ------------------------


def _constant(points: Curve) -> bool:
    return bool(points) and max(v for _, v in points) - min(v for _, v in points) < 1e-9


def _describe(name: str, points: Curve) -> str:
    values = [v for _, v in points]
    if _constant(points):
        return f"{prose(name)} always {fmt(values[0])}"
    return f"{prose(name)} {fmt(min(values))} to {fmt(max(values))}"


def _no_learning_signal(run: Run, m: TrainMetrics) -> list[Finding]:
    """Every group of completions scored the same, so every advantage (and gradient) is 0.

    Seen as reward_std 0 at every logged step, or, where that was not logged, a reward
    that never changed. Judged on the whole run once it ended, or on the run so far.
    """
    if run.method != "grpo":
        return []
    reward = m.series.get("reward", [])
    std = m.series.get("reward_std", [])
    logged = max(len(reward), len(std))
    if logged == 0 or (run.active and logged < MIN_POINTS_WHILE_RUNNING):
        return []
    no_variance = bool(std) and all(abs(v) < 1e-9 for _, v in std)
    if not (no_variance or (not std and len(reward) >= 2 and _constant(reward))):
        return []
    functions = {
        match[1]: points
        for key, points in sorted(m.series.items())
        if (match := REWARD_FUNCTION.match(key))
    }
    so_far = " so far" if run.active else ""
    if reward and _constant(reward):
        detail = f"the reward was {fmt(reward[0][1])} at each of the {logged} logged steps{so_far}"
    else:
        detail = (
            f"every group's completions got the same reward at each of the {logged} logged "
            f"steps{so_far}"
        )
    if functions:
        detail += " (" + ", ".join(_describe(n, p) for n, p in functions.items()) + ")"
    detail += ", so the policy got no gradient"
    max_len = run.hyperparameters.get("max_completion_length")
    clipped = m.series.get("completions/clipped_ratio", [])
    if clipped and all(v >= 0.999 for _, v in clipped):
        detail += "; every completion was cut off at max_completion_length" + (
            f" ({max_len})" if max_len else ""
        )
    names = (
        ", ".join(code(r) for r in run.rewards)
        or ", ".join(prose(f) for f in functions)
        or "the rewards"
    )
    remedy = (
        f"check that the reward functions ({names}) can score this model's completions: "
        "they may look for a format (such as `<answer>…</answer>`) the model does not produce "
        "yet, so teach it that format with SFT first or give partial credit; raise "
        f"max_completion_length{f' (now {max_len})' if max_len else ''} so answers are not "
        "cut off; try each reward on a few sampled completions; more num_generations or a "
        "higher temperature makes the completions of a group differ"
    )
    return [Finding("no-learning-signal", "no learning signal", detail, remedy)]


# --- logging and generalisation -------------------------------------------------------


def _no_curve(run: Run, m: TrainMetrics) -> list[Finding]:
    if run.status is not RunStatus.COMPLETED or m.loss_curve or not m.step:
        return []
    steps = m.max_steps or m.step
    logging_steps = run.hyperparameters.get("logging_steps")
    every = (
        f"logging_steps is {logging_steps}"
        if logging_steps is not None
        else f"logging_steps was TRL's default ({TRL_LOGGING_STEPS})"
    )
    detail = f"the trainer logged no loss in {steps} steps: {every}"
    return [
        Finding(
            "no-curve",
            "no loss curve",
            detail,
            f"set hyperparameters.logging_steps to {max(1, steps // 10)} (about ten points per "
            "run); ci-runner sets it by itself when it knows the number of steps",
        )
    ]


def _at_or_before(curve: Curve, step: int) -> float | None:
    before = [v for s, v in curve if s <= step]
    return before[-1] if before else None


def _overfitting(m: TrainMetrics) -> list[Finding]:
    """Eval loss rising from its minimum while the training loss keeps falling."""
    evals = m.series.get("eval_loss", [])
    train = [(s, v) for s, v in m.loss_curve if math.isfinite(v)]
    if len(evals) < 3 or len(train) < 2:
        return []
    best_step, best = min(evals, key=lambda p: p[1])
    last_step, last = evals[-1]
    if last_step == best_step or last - best <= max(1e-3, EVAL_RISE * abs(best)):
        return []
    train_then, train_now = _at_or_before(train, best_step), train[-1][1]
    if train_then is None or train_now >= train_then:
        return []
    return [
        Finding(
            "overfitting",
            "overfitting",
            f"eval loss rose from {fmt(best)} at step {best_step} to {fmt(last)} at step "
            f"{last_step} while the training loss fell from {fmt(train_then)} to {fmt(train_now)}",
            f"keep the checkpoint from around step {best_step} (load_best_model_at_end: true "
            "with metric_for_best_model: eval_loss), or train fewer steps or epochs, lower "
            "learning_rate, or add data",
        )
    ]
