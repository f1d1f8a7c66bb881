"""Why a job died, and whether its run should resume: pure decisions.

Transient deaths (timeout, preemption, infrastructure) resume from the last
checkpoint; errors that would only repeat (OOM, bad data, auth) never retry:
they get a diagnosis instead. What the attempts took (``wall_time``) and cost
(``attempt_cost``) is measured here too, from the same submit → finish span.
"""

from __future__ import annotations

import re

from ci_runner.core.jobs import FailureKind, JobStatus
from ci_runner.job_scripts.protocol import TrainSummary
from ci_runner.ledger.model import Attempt, Run, RunStatus

# Known failure signatures (case-insensitive, anywhere in the text), in the order they
# are tried: the first that matches names how the job died. ``ledger.advance`` attaches
# its remedies for OOM, timeout and auth to these same signatures.
SIGNATURES: dict[FailureKind, str] = {
    FailureKind.OOM: r"out of memory|OutOfMemoryError|CUDA OOM",
    FailureKind.TIMEOUT: r"\btime(d)?[ _-]?out\b|timeout",
    FailureKind.PREEMPTED: r"preempt|evict|spot instance|killed by SIG(KILL|TERM)",
    FailureKind.INFRA: (
        r"process is gone|node (failure|lost)|infrastructure|internal (server )?error|"
        r"hardware failure|scheduling failed"
    ),
    FailureKind.AUTH: r"\b401\b|\b403\b|Unauthorized|Invalid (user )?token",
    FailureKind.DATA: r"ConfigError|KeyError|column|DatasetGenerationError|dataset",
}
_KINDS: tuple[tuple[FailureKind, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(signature, re.I)) for kind, signature in SIGNATURES.items()
)


def classify_failure(status: JobStatus, summary: TrainSummary | None) -> FailureKind:
    """One word for how the job died, from the script's own summary first."""
    texts = []
    if summary and not summary.completed:
        texts.append(f"{summary.error_type or ''}: {summary.error or ''}")
    texts.append(status.message or "")
    for text in texts:
        for kind, pattern in _KINDS:
            if pattern.search(text):
                return kind
    return FailureKind.ERROR


def should_resume(run: Run) -> bool:
    attempt = run.last_attempt
    return (
        run.status == RunStatus.FAILED
        and attempt is not None
        and attempt.failure_kind in run.retry_on
        and len(run.attempts) < run.max_attempts
    )


def attempt_cost(attempt: Attempt, usd_per_hour: float | None) -> float | None:
    """The attempt's wall time at the flavor's price, once it has finished."""
    if not usd_per_hour:
        return None
    seconds = attempt.wall_s
    return None if seconds is None else round(seconds / 3600 * usd_per_hour, 4)


def wall_time(run: Run) -> tuple[float, int] | None:
    """Seconds from submit to finish, summed over the run's finished attempts, and how many.

    The one runtime the report shows, everywhere: it is what the job was billed for
    (``attempt_cost`` prices the same span, ``Attempt.wall_s``). The trainer's own
    ``train_runtime`` leaves out start-up, model loading and saving.
    """
    total, count = 0.0, 0
    for attempt in run.attempts:
        seconds = attempt.wall_s
        if seconds is not None:
            total += seconds
            count += 1
    return (total, count) if count else None


def next_attempt(run: Run, *, backend: str, now: str, resume_from: str | None) -> Run:
    """A new attempt, queued: the runner launches it and records its job."""
    attempt = Attempt(
        number=len(run.attempts) + 1, backend=backend, submitted_at=now, resume_from=resume_from
    )
    return run.model_copy(
        update={"attempts": [*run.attempts, attempt], "status": RunStatus.QUEUED, "error": None}
    )
