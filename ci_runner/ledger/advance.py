"""Pure state transitions: a run plus what the backend said → the next run.

No I/O and no clock: ``poll`` gathers the facts, this decides what they mean,
so the same facts always give the same ledger (and an unchanged report).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from ci_runner.core.hub import mlflow_run_url
from ci_runner.core.jobs import FailureKind, JobState, JobStatus
from ci_runner.job_scripts import curves
from ci_runner.job_scripts.protocol import TrainSummary
from ci_runner.ledger.model import Attempt, Run, RunStatus, TrainMetrics
from ci_runner.ledger.retry import SIGNATURES, attempt_cost, classify_failure
from ci_runner.track.log_progress import Progress

T = TypeVar("T")

# Known failure signatures (case-insensitive) → what the user should do about them, tried
# in this order. OOM, timeout and auth are the signatures ``classify_failure`` knows them by.
_REMEDIES = {
    SIGNATURES[FailureKind.OOM]: (
        "out of memory: halve per_device_train_batch_size and double gradient_accumulation_steps, "
        "lower max_length, enable gradient_checkpointing, or use LoRA / a larger flavor"
    ),
    SIGNATURES[FailureKind.TIMEOUT]: (
        "timed out: set a longer `timeout:` (the plan recommends one) or fewer max_steps; "
        "checkpoints pushed so far are kept"
    ),
    r"ModuleNotFoundError|No module named": (
        "a package is missing in the job: add it to the job script's PEP 723 dependencies"
    ),
    r"KeyError: '([^']+)'|column[s]? .* (not found|missing)|needs column": (
        "the dataset lacks a column the method needs: run `ci-runner check-data` and "
        "set `dataset.columns`"
    ),
    r"(push|upload|create_repo).*(403|Forbidden)|RepositoryNotFound": (
        "pushing the model failed: check output.hub_model_id's namespace and that HF_TOKEN "
        "has write access to it"
    ),
    SIGNATURES[FailureKind.AUTH]: (
        "authentication failed: check that HF_TOKEN is set and has write access"
    ),
}
DIAGNOSES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(signature, re.I), remedy) for signature, remedy in _REMEDIES.items()
)


def diagnose(text: str | None) -> str | None:
    if not text:
        return None
    for pattern, remedy in DIAGNOSES:
        if pattern.search(text):
            return remedy
    return None


def _method_series(
    method: str,
    series: Mapping[str, Sequence[tuple[int, float]] | Sequence[list[float]]],
    max_steps: int | None,
) -> dict[str, list[tuple[int, float]]]:
    """The series the method is judged by, each thinned to ~200 points."""
    return {
        key: curves.downsample(points, max_steps)
        for key, points in sorted(series.items())
        if curves.tracked(method, key) and points
    }


def metrics_from_progress(
    progress: Progress, previous: TrainMetrics | None, method: str, *, source: str = "logs"
) -> TrainMetrics:
    """Fold a progress reading in. trackio holds the whole (thinned) curve, so it replaces
    the curve so far; a log tail holds only recent steps, so it is merged in."""
    base = previous or TrainMetrics()
    max_steps = progress.max_steps or base.max_steps
    # The tail goes after the curve so far: ``curves.downsample`` keeps one point per step,
    # the last given, in step order, so a step the tail logged again takes its new value.
    if source == "trackio":
        curve = list(progress.loss_curve) or base.loss_curve
    else:
        curve = [*base.loss_curve, *progress.loss_curve]
    series = {
        key: [*base.series.get(key, []), *progress.series.get(key, [])]
        for key in {*base.series, *progress.series}
    }
    return base.model_copy(
        update={
            "step": progress.step if progress.step is not None else base.step,
            "max_steps": max_steps,
            "final_loss": progress.loss if progress.loss is not None else base.final_loss,
            "eta_s": progress.eta_s,
            "min_loss": min(
                (v for v in (progress.min_loss, base.min_loss) if v is not None), default=None
            ),
            "loss_curve": curves.downsample(curve, max_steps),
            "series": _method_series(method, series, max_steps),
            "nonfinite": {**progress.nonfinite, **base.nonfinite},  # the first step stays
            "progress_from": source,
            "stale": False,
        }
    )


def mark_stale(run: Run) -> Run:
    """A running run whose progress could not be read this time: say so, keep the numbers."""
    if run.metrics is None or run.metrics.stale:
        return run
    return run.model_copy(update={"metrics": run.metrics.model_copy(update={"stale": True})})


def _update_attempt(run: Run, attempt: Attempt, **update: Any) -> Attempt:
    """The run's attempt with what the backend (or a cancel) said, and what it cost so far
    (None until it has a finish time)."""
    updated = attempt.model_copy(update=update)
    return updated.model_copy(update={"cost_usd": attempt_cost(updated, run.usd_per_hour)})


def cancel_run(run: Run, *, now: str) -> Run:
    """Canceled by a person: recorded at once (the next poll only confirms it)."""
    update: dict[str, Any] = {"status": RunStatus.CANCELED, "error": None}
    attempt = run.last_attempt
    if attempt is not None and not attempt.state.terminal:
        ended = _update_attempt(run, attempt, state=JobState.CANCELED, finished_at=now)
        update["attempts"] = [*run.attempts[:-1], ended]
    update["phase_jobs"] = [
        j.model_copy(update={"state": JobState.CANCELED, "finished_at": now})
        if j.job_id and not j.done
        else j
        for j in run.phase_jobs
    ]
    if run.metrics is not None:
        update["metrics"] = run.metrics.model_copy(update={"eta_s": None, "stale": False})
    return run.model_copy(update=update)


def metrics_from_summary(
    summary: TrainSummary, previous: TrainMetrics | None, method: str
) -> TrainMetrics:
    base = previous or TrainMetrics()
    max_steps = _known(summary.max_steps, base.max_steps)
    history = [(int(step), float(value)) for step, value in summary.loss_history]
    curve = curves.downsample(history, max_steps)
    # A job script from before the summary carried series keeps what its log lines showed.
    series = summary.series or base.series
    return TrainMetrics(
        step=_known(summary.steps, base.step),
        max_steps=max_steps,
        final_loss=_known(summary.final_loss, base.final_loss),
        min_loss=_known(summary.min_loss, base.min_loss),
        runtime_s=summary.runtime_s,
        train_tokens_per_s=summary.train_tokens_per_s,
        loss_curve=curve or base.loss_curve,
        series=_method_series(method, series, max_steps),
        nonfinite={**summary.nonfinite, **base.nonfinite},
    )


def _known(value: T | None, fallback: T) -> T:
    return fallback if value is None else value


def data_warnings(summary: TrainSummary) -> list[str]:
    """What the job did to the data that a reviewer should know (``train.py``'s ``data``)."""
    notes = []
    for key, note in sorted(summary.data.items()):
        split = key.split("_", 1)[0]
        if key.endswith("_rows_without_content") and isinstance(note, dict):
            notes.append(
                f"{split} set: dropped {note['dropped']} of {note['total']} rows with no content "
                f"in {' or '.join(note.get('columns') or ['the text columns'])}"
            )
        elif key.endswith("_system_turn") and isinstance(note, dict):
            notes.append(
                f"{split} set: column '{note.get('column')}' was put first in each "
                "conversation as its system turn"
            )
    return notes


def tracker_run(run: Run, summary: TrainSummary) -> dict[str, str | None]:
    """The MLflow run the job logged to (its summary names it), and that run's page."""
    tracking = summary.tracking
    run_id = tracking.get("run_id")
    if run.tracking_backend != "mlflow" or tracking.get("backend") != "mlflow" or not run_id:
        return {}
    experiment_id = tracking.get("experiment_id")
    return {
        "tracking_run_id": str(run_id),
        "tracking_url": mlflow_run_url(run.tracking_uri, experiment_id, str(run_id)),
    }


def _failure_text(status: JobStatus, summary: TrainSummary | None) -> str:
    if summary and not summary.completed:
        kind = summary.error_type or "Error"
        text = f"{kind}: {summary.error or ''}".strip()
    else:
        text = status.message or f"job exited with code {status.exit_code}"
    remedy = diagnose(text)
    return f"{text} — {remedy}" if remedy else text


def apply_job_status(
    run: Run,
    status: JobStatus,
    *,
    progress: Progress | None,
    summary: TrainSummary | None,
    source: str = "logs",
) -> Run:
    """Fold one backend answer into the run's latest attempt and status."""
    attempt = run.last_attempt
    if attempt is None or attempt.job_id != status.job_id:
        return run
    metrics = run.metrics
    failure_kind = None
    if progress is not None and progress.step is not None:
        metrics = metrics_from_progress(progress, metrics, run.method, source=source)
    update: dict[str, Any] = {"metrics": metrics}
    if summary is not None:
        update |= tracker_run(run, summary)
        if summary.versions:
            update["versions"] = {**run.versions, **summary.versions}
    message = status.message
    if status.state == JobState.COMPLETED:
        if summary and summary.completed:
            update |= {"status": RunStatus.COMPLETED, "error": None}
            update["metrics"] = metrics_from_summary(summary, metrics, run.method)
            update["warnings"] = data_warnings(summary)
        else:
            message = "job exited cleanly but printed no completion summary"
            update |= {"status": RunStatus.FAILED, "error": message}
    elif status.state == JobState.ERROR:
        error = _failure_text(status, summary)
        update |= {"status": RunStatus.FAILED, "error": error}
        message = message or error
        failure_kind = classify_failure(status, summary)
    elif status.state == JobState.CANCELED:
        update |= {"status": RunStatus.CANCELED, "error": None}
    else:
        update["status"] = RunStatus.RUNNING
    if status.state.terminal and update["metrics"] is not None:  # an ended job has no ETA
        update["metrics"] = update["metrics"].model_copy(update={"eta_s": None, "stale": False})
    new_attempt = _update_attempt(
        run,
        attempt,
        state=status.state,
        exit_code=status.exit_code,
        finished_at=status.finished_at,
        message=message,
        failure_kind=failure_kind,
    )
    update["attempts"] = [*run.attempts[:-1], new_attempt]
    return run.model_copy(update=update)
