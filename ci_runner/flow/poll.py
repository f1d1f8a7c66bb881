"""``poll``, the heartbeat: ask the backends about every active job, advance each run.

One bulk status call per backend for all active runs of all experiments; then each
experiment is advanced under its lock from the ledger as it is on disk at that moment, so
two polls at once (a schedule and a person) never start the same job twice. Running twice
with no news changes nothing the second time.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ci_runner.core.jobs import BackendName, JobKind, JobStatus, Phase
from ci_runner.errors import CiRunnerError
from ci_runner.flow.launch import enter_phase_jobs, launch_phase_jobs, new_attempt
from ci_runner.flow.start import start_runs
from ci_runner.flow.workspace import Workspace
from ci_runner.job_scripts.protocol import (
    SUMMARY_PREFIX,
    EvalSummary,
    ExportSummary,
    TrainSummary,
    parse_summary,
)
from ci_runner.ledger.advance import apply_job_status, mark_stale
from ci_runner.ledger.model import Ledger, PhaseJob, Run, RunStatus
from ci_runner.ledger.phases import (
    apply_phase_status,
    close_phase,
    enter_next_phase,
    own_status,
    phase_finished,
    shares_job,
)
from ci_runner.ledger.repository import replace_run, stem_of
from ci_runner.ledger.retry import should_resume
from ci_runner.ledger.store import CorruptLedgerError, load_ledger, save_ledger, scan
from ci_runner.report.files import write_index, write_report
from ci_runner.track import mlflow_progress, trackio_progress
from ci_runner.track.log_progress import Progress, parse_progress
from ci_runner.track.mlflow_progress import MlflowProgress
from ci_runner.track.trackio_progress import TrackioProgress

LOG_FETCH_WORKERS = 8
LOG_BUDGET = 8  # running runs per poll whose log tail may stand in for a metrics-store read
LOG_TAIL = 200
Facts = dict[str, tuple[JobStatus, list[str]]]


@dataclass
class PollOutcome:
    runs: list[Run] = field(default_factory=list)  # the runs looked at, as they are now
    changed: list[Path] = field(default_factory=list)  # files written
    corrupt: list[CorruptLedgerError] = field(default_factory=list)  # ledgers skipped


def poll(ws: Workspace) -> PollOutcome:
    found = scan(ws.project.ledger_paths())
    outcome = PollOutcome(corrupt=found.corrupt)
    active: dict[Path, Ledger] = {}
    for path, ledger in found.found:
        if not ledger.active_runs:
            continue
        with ws.lock(stem_of(path)):  # a crash before recording a job: adopt or launch it
            ledger = start_runs(ws, load_ledger(path) or ledger)
            save_ledger(path, ledger)
        active[path] = ledger
    runs = [run for ledger in active.values() for run in ledger.active_runs]
    facts = job_facts(ws, runs)
    readings = read_progress(ws, runs, facts)
    for path in active:
        with ws.lock(stem_of(path)):
            ledger = load_ledger(path) or active[path]
            for run in ledger.active_runs:
                ledger = replace_run(ledger, advance_run(ws, ledger, run, facts, readings))
            ledger = _resume_transient_failures(ws, ledger)
            ledger = start_runs(ws, ledger)
            outcome.runs.extend(ledger.runs)
            if save_ledger(path, ledger):
                outcome.changed.append(path)
            outcome.changed.extend(write_report(ws.project, stem_of(path), ledger))
    if active:
        outcome.changed.extend(write_index(ws.project))
    return outcome


def live_job_ids(run: Run) -> list[str]:
    """The jobs a poll must ask about: training's current attempt, or the phase's jobs."""
    if run.phase == Phase.TRAIN:
        attempt = run.last_attempt
        training = [attempt.job_id] if attempt and attempt.job_id else []
        jobs = [*training, *(j.job_id for j in _early_jobs(run) if j.job_id and not j.done)]
    else:
        jobs = [j.job_id for j in run.current_phase_jobs if j.job_id and not j.done]
    return list(dict.fromkeys(jobs))  # evaluations sharing one job ask once


def _early_jobs(run: Run) -> list[PhaseJob]:
    """Evaluation jobs started before the phase (the base's, beside training)."""
    return [j for j in run.phase_jobs if j.kind == JobKind.EVAL]


def job_facts(ws: Workspace, runs: list[Run], *, logs: bool = True) -> Facts:
    """Every current job's status, one bulk call per backend; logs only for jobs that ended.

    A job's log is read once, when it reaches a terminal state, for its summary and
    diagnosis. While it runs, progress comes from the metrics store (``read_progress``).
    """
    by_backend: dict[str, list[str]] = {}
    for run in runs:
        by_backend.setdefault(run.backend, []).extend(live_job_ids(run))
    facts: Facts = {}
    for name, job_ids in by_backend.items():
        backend = ws.backend(name)
        statuses = backend.statuses(job_ids)
        ended = [j for j in job_ids if logs and statuses[j].state.terminal]
        with ThreadPoolExecutor(max_workers=LOG_FETCH_WORKERS) as pool:
            tails = dict(zip(ended, pool.map(backend.logs, ended), strict=True))
        for job_id in job_ids:
            facts[job_id] = (statuses[job_id], tails.get(job_id, []))
    return facts


@dataclass(frozen=True)
class Reading:
    """A running run's latest progress, and where it came from."""

    progress: Progress
    source: str  # "trackio", "mlflow" (latest point only: merged like a log tail) or "logs"


def read_progress(ws: Workspace, runs: list[Run], facts: Facts) -> dict[str, Reading]:
    """Training progress of the running runs: one metrics-store read per trackio project
    or MLflow experiment.

    Locally the project's SQLite store; on HF Jobs with ``tracking.space`` the Space (one
    request). Runs it cannot answer for (no Space, not logged yet, Space down) fall back to
    their log tail, at most ``LOG_BUDGET`` per poll; the rest keep their numbers, marked stale.
    """
    running = [
        r
        for r in runs
        if r.phase == Phase.TRAIN
        and r.last_attempt
        and r.last_attempt.job_id in facts
        and not facts[r.last_attempt.job_id][0].state.terminal
    ]
    readings: dict[str, Reading] = {}
    for (backend, tracker, where, project), group in _by_store(running).items():
        if tracker == "mlflow":
            found: MlflowProgress | TrackioProgress = mlflow_progress.read_progress(
                project, {r.run_id for r in group}, tracking_uri=where, root=ws.project.root
            )
            keys = {r.run_id: r.run_id for r in group}  # MLflow runs carry the run id as a tag
        elif backend != BackendName.LOCAL and not where:
            continue  # the job's trackio store dies with its container: logs only
        else:
            found = trackio_progress.read_progress(
                project,
                {r.tracking_run for r in group},
                space=where,
                trackio_dir=ws.project.trackio_dir,
                token=ws.hf_token(),
            )
            keys = {r.run_id: r.tracking_run for r in group}
        for run in group:
            progress = (found.runs or {}).get(keys[run.run_id])
            if progress is not None and progress.step is not None:
                readings[run.run_id] = Reading(_with_eta(progress, run), tracker)
    missing = [r for r in running if r.run_id not in readings][:LOG_BUDGET]
    if missing:
        with ThreadPoolExecutor(max_workers=LOG_FETCH_WORKERS) as pool:
            tails = pool.map(
                lambda r: ws.backend(r.backend).logs(r.last_attempt.job_id, tail=LOG_TAIL), missing
            )
            for run, lines in zip(missing, tails, strict=True):
                parsed = parse_progress(lines)
                if parsed.step is not None:
                    readings[run.run_id] = Reading(parsed, "logs")
    return readings


def _by_store(runs: list[Run]) -> dict[tuple[str, str, str | None, str], list[Run]]:
    """Runs grouped by the store that holds their metrics: one read per group."""
    groups: dict[tuple[str, str, str | None, str], list[Run]] = {}
    for run in runs:
        tracker = run.tracking_backend or "trackio"
        where = run.tracking_uri if tracker == "mlflow" else run.tracking_space
        groups.setdefault((run.backend, tracker, where, run.tracking_project), []).append(run)
    return groups


def _with_eta(progress: trackio_progress.RunProgress, run: Run) -> Progress:
    """trackio knows the pace; ``max_steps`` may only be known from the job's own log lines."""
    reading = progress.to_progress()
    max_steps = reading.max_steps or (run.metrics.max_steps if run.metrics else None)
    if max_steps is None:
        value = run.hyperparameters.get("max_steps")
        max_steps = value if isinstance(value, int) and value > 0 else None
    eta = reading.eta_s if reading.eta_s is not None else progress.eta_for(max_steps)
    return Progress(
        reading.step, max_steps, reading.loss, reading.learning_rate, eta, reading.loss_curve
    )


def fold_facts(run: Run, facts: Facts, readings: dict[str, Reading]) -> Run:
    """What the backends said about the run's current jobs, folded in. Starts nothing."""
    if run.phase == Phase.TRAIN:
        return _fold_phase_jobs(_fold_training(run, facts, readings), facts, JobKind.EVAL)
    if run.phase in (Phase.EVAL, Phase.EXPORT):
        return _fold_phase_jobs(run, facts, JobKind(run.phase.value))
    return run


def _fold_training(run: Run, facts: Facts, readings: dict[str, Reading]) -> Run:
    """The training job's answer: progress while it runs, its summary once it ended."""
    job_id = run.last_attempt.job_id if run.last_attempt else None
    if job_id not in facts:
        return run
    status, lines = facts[job_id]
    raw = parse_summary(lines) if status.state.terminal else None
    reading = readings.get(run.run_id)
    folded = apply_job_status(
        run,
        status,
        progress=reading.progress if reading else None,
        summary=TrainSummary.from_dict(raw) if raw is not None else None,
        source=reading.source if reading else "logs",
    )
    if reading is None and not status.state.terminal:
        folded = mark_stale(folded)
    return folded


def _fold_phase_jobs(run: Run, facts: Facts, kind: JobKind) -> Run:
    typed = EvalSummary if kind == JobKind.EVAL else ExportSummary
    for job in [j for j in run.phase_jobs if j.kind == kind and j.job_id in facts and not j.done]:
        assert job.job_id is not None  # it is in facts
        status, lines = facts[job.job_id]
        if status.state.terminal:
            # a model's part of a job that evaluated several (now, or before a resumed
            # attempt recorded the final model's evaluation again): its own summary
            own = own_summaries(lines, job.key) if kind == JobKind.EVAL else []
            per_model = shares_job(run, job) or bool(own)
            raw = parse_summary(own if per_model else lines)
            summary = typed.from_dict(raw) if raw is not None else None
            run = apply_phase_status(
                run, job, own_status(status, summary) if per_model else status, summary
            )
    return run


def own_summaries(lines: list[str], key: str) -> list[str]:
    """A job that evaluated several models printed a summary for each: this model's."""
    return [
        line
        for line in lines
        if line.lstrip().startswith(SUMMARY_PREFIX)
        and (parse_summary([line]) or {}).get("model_label") == key
    ]


def advance_run(
    ws: Workspace,
    ledger: Ledger,
    run: Run,
    facts: Facts,
    readings: dict[str, Reading] | None = None,
) -> Run:
    """Fold the backend's answers into one run, then start what its phase needs next."""
    run = fold_facts(run, facts, readings or {})
    if run.phase == Phase.TRAIN and run.status == RunStatus.COMPLETED:
        run = enter_phase_jobs(ws, enter_next_phase(run, after=Phase.TRAIN))
    elif run.phase in (Phase.EVAL, Phase.EXPORT):
        kind = JobKind(run.phase.value)
        if phase_finished(run, kind):
            run = enter_phase_jobs(ws, close_phase(run, kind))
            if kind == JobKind.EVAL and ws.on_evaluated is not None:
                run = ws.on_evaluated(ledger, run)
    return launch_phase_jobs(ws, run)


def peek(ws: Workspace, ledgers: list[Ledger], warnings: list[str] | None = None) -> list[Ledger]:
    """The ledgers as the backends see them right now: one bulk status call per backend and
    one progress read per project, folded in memory. Writes nothing, starts nothing
    (``status`` shows this; ``poll`` is what acts). A backend that cannot be asked leaves
    its runs as the ledger has them, with a warning."""
    runs = [run for ledger in ledgers for run in ledger.active_runs if run.started]
    reachable = []
    for backend in dict.fromkeys(run.backend for run in runs):
        try:
            ws.backend(backend)
            reachable.append(backend)
        except CiRunnerError as exc:
            if warnings is not None:
                warnings.append(f"{backend}: live state not read ({exc}); showing the ledger")
    runs = [run for run in runs if run.backend in reachable]
    if not runs:
        return ledgers
    facts = job_facts(ws, runs, logs=False)
    readings = read_progress(ws, runs, facts)
    return [
        ledger.model_copy(
            update={
                "runs": [fold_facts(r, facts, readings) if r.active else r for r in ledger.runs]
            }
        )
        for ledger in ledgers
    ]


def _resume_transient_failures(ws: Workspace, ledger: Ledger) -> Ledger:
    """Timeouts, preemptions and infra failures resume from the last checkpoint."""
    for run in ledger.runs:
        if should_resume(run):
            ledger = replace_run(ledger, new_attempt(ws, run))
    return ledger
