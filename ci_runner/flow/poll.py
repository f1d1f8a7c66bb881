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

from ci_runner.core.jobs import JobKind, JobStatus, Stage
from ci_runner.flow.launch import enter_stage_jobs, launch_stage_jobs, new_attempt
from ci_runner.flow.start import start_runs
from ci_runner.flow.workspace import Workspace
from ci_runner.job_scripts.protocol import (
    EvalSummary,
    ExportSummary,
    TrainSummary,
    parse_summary,
)
from ci_runner.ledger.advance import apply_job_status
from ci_runner.ledger.model import Ledger, Run, RunStatus
from ci_runner.ledger.repository import replace_run, stem_of
from ci_runner.ledger.retry import should_resume
from ci_runner.ledger.stages import (
    apply_stage_status,
    close_stage,
    enter_next_stage,
    stage_finished,
)
from ci_runner.ledger.store import load_ledger, save_ledger
from ci_runner.progress import parse_progress
from ci_runner.report.files import write_report

LOG_FETCH_WORKERS = 8
Facts = dict[str, tuple[JobStatus, list[str]]]


@dataclass
class PollOutcome:
    runs: list[Run] = field(default_factory=list)  # the runs looked at, as they are now
    changed: list[Path] = field(default_factory=list)  # files written


def poll(ws: Workspace) -> PollOutcome:
    outcome = PollOutcome()
    active: dict[Path, Ledger] = {}
    for path in ws.project.ledger_paths():
        ledger = load_ledger(path)
        if ledger is None or not ledger.active_runs:
            continue
        with ws.lock(stem_of(path)):  # a crash before recording a job: adopt or launch it
            ledger = start_runs(ws, load_ledger(path) or ledger)
            save_ledger(path, ledger)
        active[path] = ledger
    facts = job_facts(ws, [run for ledger in active.values() for run in ledger.active_runs])
    for path in active:
        with ws.lock(stem_of(path)):
            ledger = load_ledger(path) or active[path]
            for run in ledger.active_runs:
                ledger = replace_run(ledger, advance_run(ws, ledger, run, facts))
            ledger = _resume_transient_failures(ws, ledger)
            ledger = start_runs(ws, ledger)
            outcome.runs.extend(ledger.runs)
            if save_ledger(path, ledger):
                outcome.changed.append(path)
            outcome.changed.extend(write_report(ws.project, stem_of(path), ledger))
    return outcome


def live_job_ids(run: Run) -> list[str]:
    """The jobs a poll must ask about: training's current attempt, or the stage's jobs."""
    if run.stage == Stage.TRAIN:
        attempt = run.last_attempt
        return [attempt.job_id] if attempt and attempt.job_id else []
    return [j.job_id for j in run.stage_jobs if j.kind == run.stage and j.job_id and not j.done]


def job_facts(ws: Workspace, runs: list[Run]) -> Facts:
    """Status and log lines of every run's current jobs, grouped by backend."""
    by_backend: dict[str, list[str]] = {}
    for run in runs:
        by_backend.setdefault(run.backend, []).extend(live_job_ids(run))
    facts: Facts = {}
    for name, job_ids in by_backend.items():
        backend = ws.backend(name)
        statuses = backend.statuses(job_ids)
        # HF's log endpoint holds a running job's stream open for seconds: fetch in parallel.
        with ThreadPoolExecutor(max_workers=LOG_FETCH_WORKERS) as pool:
            logs = pool.map(backend.logs, job_ids)
            for job_id, lines in zip(job_ids, logs, strict=True):
                facts[job_id] = (statuses[job_id], lines)
    return facts


def advance_run(ws: Workspace, ledger: Ledger, run: Run, facts: Facts) -> Run:
    """Fold the backend's answers into one run, then start what its stage needs next."""
    if run.stage == Stage.TRAIN:
        job_id = run.last_attempt.job_id if run.last_attempt else None
        if job_id in facts:
            status, lines = facts[job_id]
            raw = parse_summary(lines) if status.state.terminal else None
            summary = TrainSummary.from_dict(raw) if raw is not None else None
            run = apply_job_status(run, status, progress=parse_progress(lines), summary=summary)
        if run.status == RunStatus.COMPLETED:
            run = enter_stage_jobs(ws, enter_next_stage(run, after=Stage.TRAIN))
    elif run.stage in (Stage.EVAL, Stage.EXPORT):
        kind = JobKind(run.stage.value)
        for job in [j for j in run.stage_jobs if j.kind == kind and j.job_id in facts]:
            status, lines = facts[job.job_id]
            if status.state.terminal:
                raw = parse_summary(lines)
                typed = EvalSummary if kind == JobKind.EVAL else ExportSummary
                run = apply_stage_status(
                    run, job, status, typed.from_dict(raw) if raw is not None else None
                )
        if stage_finished(run, kind):
            run = enter_stage_jobs(ws, close_stage(run, kind))
            if kind == JobKind.EVAL and ws.on_evaluated is not None:
                run = ws.on_evaluated(ledger, run)
    return launch_stage_jobs(ws, run)


def _resume_transient_failures(ws: Workspace, ledger: Ledger) -> Ledger:
    """Timeouts, preemptions and infra failures resume from the last checkpoint."""
    for run in ledger.runs:
        if should_resume(run):
            ledger = replace_run(ledger, new_attempt(ws, run))
    return ledger
