"""After training: evaluate, pick the best model, export. Pure transitions.

A run moves train → eval → export → done. Each later phase is a set of
``PhaseJob``s the runner launches and polls like training jobs; these functions
decide which jobs a phase needs and fold their results into the run.
"""

from __future__ import annotations

import dataclasses

from ci_runner.core.hub import hub_url
from ci_runner.core.jobs import JobKind, JobState, JobStatus, Phase
from ci_runner.job_scripts.protocol import EvalSummary, ExportSummary
from ci_runner.ledger.model import Evaluation, ExportFile, PhaseJob, Run, RunStatus
from ci_runner.ledger.ranking import Candidate, Verdict, verdict

BASE, FINAL = "base", "final"


def _next_phase(run: Run, after: Phase) -> Phase:
    order = list(Phase)
    for phase in order[order.index(Phase(after)) + 1 :]:
        if phase == Phase.EVAL and run.evaluation:
            return phase
        if phase == Phase.EXPORT and run.export and run.export.get("gguf"):
            return phase
    return Phase.DONE


def enter_next_phase(run: Run, *, after: Phase | str) -> Run:
    """Training (or a phase) finished: the run stays in progress until the last phase."""
    phase = _next_phase(run, Phase(after))
    status = RunStatus.COMPLETED if phase == Phase.DONE else RunStatus.RUNNING
    return run.model_copy(update={"phase": phase, "status": status})


def eval_jobs(run: Run, *, final_model: str, checkpoints: list[str], now: str) -> list[PhaseJob]:
    """One evaluation job per model: the base, the final model, and checkpoints if asked."""
    settings = run.evaluation or {}
    models = list(settings.get("models", [BASE, FINAL]))
    jobs = []
    if BASE in models:
        jobs.append(PhaseJob(kind=JobKind.EVAL, key=BASE, model=run.base_model, submitted_at=now))
    if settings.get("checkpoints") == "all":
        for path in checkpoints:
            name = path.rstrip("/").rsplit("/", 1)[-1]
            jobs.append(PhaseJob(kind=JobKind.EVAL, key=name, model=path, submitted_at=now))
    if FINAL in models:
        jobs.append(PhaseJob(kind=JobKind.EVAL, key=FINAL, model=final_model, submitted_at=now))
    return jobs


def missing_eval_jobs(run: Run, jobs: list[PhaseJob]) -> list[PhaseJob]:
    """Of a phase's evaluation jobs, those the run has not recorded yet: the base's may
    have started with training (``base_eval_job``)."""
    have = {j.key for j in run.phase_jobs if j.kind == JobKind.EVAL}
    return [j for j in jobs if j.key not in have]


# --- the base model, evaluated once ----------------------------------------------------


def base_job(run: Run) -> PhaseJob | None:
    return next((j for j in run.phase_jobs if j.kind == JobKind.EVAL and j.key == BASE), None)


def base_eval_job(run: Run, *, now: str, fingerprint: str | None) -> PhaseJob | None:
    """The base model's evaluation, recorded as training starts: the base is known then,
    so its scores need not wait for training. None when the file does not evaluate the
    base, or the run has that job already."""
    settings = run.evaluation
    if not settings or BASE not in settings.get("models", [BASE, FINAL]) or base_job(run):
        return None
    return PhaseJob(
        kind=JobKind.EVAL,
        key=BASE,
        model=run.base_model,
        submitted_at=now,
        fingerprint=fingerprint,
    )


def reusable_base(runs: list[Run], fingerprint: str | None) -> tuple[Run, PhaseJob] | None:
    """Another run's evaluation of the same base under the same settings: one that finished
    with scores first, else one still under way (its job is then shared). Failed or
    canceled ones are not reused."""
    if fingerprint is None:
        return None
    finished = running = None
    for other in runs:
        job = base_job(other)
        if job is None or job.fingerprint != fingerprint or job.job_id is None:
            continue
        scored = any(e.model_label == BASE and e.score is not None for e in other.evaluations)
        if job.state == JobState.COMPLETED and scored:
            finished = finished or (other, job)
        elif not job.state.terminal:
            running = running or (other, job)
    return finished or running


def reuse_base(run: Run, source: Run, job: PhaseJob, *, now: str) -> Run:
    """Take ``source``'s base evaluation: its scores (per-sample values included) when it
    finished, else its job, which this run then polls as its own. The origin is named
    (``reused_from``): the run whose job evaluated the base."""
    origin = job.reused_from or source.run_id
    shared = job.model_copy(
        update={"model": run.base_model, "reused_from": origin, "submitted_at": now}
    )
    update: dict[str, object] = {"phase_jobs": [*run.phase_jobs, shared]}
    if job.done:
        shared = shared.model_copy(update={"submitted_at": job.submitted_at})
        scores = [
            e.model_copy(update={"model": run.base_model, "reused_from": origin})
            for e in source.evaluations
            if e.model_label == BASE
        ]
        keep = [e for e in run.evaluations if e.model_label != BASE]
        update = {
            "phase_jobs": [*run.phase_jobs, shared],
            "evaluations": sorted(keep + scores, key=_eval_order),
        }
    return run.model_copy(update=update)


def export_job(run: Run, *, now: str) -> PhaseJob:
    model = run.best_model or run.output_dir
    return PhaseJob(kind=JobKind.EXPORT, key="gguf", model=model, submitted_at=now)


def job_groups(pending: list[PhaseJob], *, share_evals: bool) -> list[list[PhaseJob]]:
    """The phase jobs to start, grouped by the process that runs them.

    With ``share_evals`` (the local backend) a run's evaluations run in one process, one
    model after another: the libraries load once, which is most of an evaluation's time
    on a small model, and one machine's cores are not split between two jobs. Elsewhere
    each job has its own machine, and they run in parallel.
    """
    evals = [j for j in pending if j.kind == JobKind.EVAL]
    if not share_evals or len(evals) < 2:
        return [[j] for j in pending]
    return [evals, *([j] for j in pending if j.kind != JobKind.EVAL)]


def shares_job(run: Run, job: PhaseJob) -> bool:
    """Does another of the run's phase jobs run in the same backend job (``job_groups``)?"""
    return job.job_id is not None and any(
        j.job_id == job.job_id and (j.kind, j.key) != (job.kind, job.key) for j in run.phase_jobs
    )


def own_status(status: JobStatus, summary: EvalSummary | ExportSummary | None) -> JobStatus:
    """A model's part of a job that evaluated several: done when its own summary says so,
    even if another model's evaluation failed the job."""
    if status.state == JobState.ERROR and summary is not None and summary.completed:
        return dataclasses.replace(status, state=JobState.COMPLETED, exit_code=0, message=None)
    return status


def _with_job(run: Run, job: PhaseJob) -> Run:
    jobs = [job if (j.kind, j.key) == (job.kind, job.key) else j for j in run.phase_jobs]
    return run.model_copy(update={"phase_jobs": jobs})


def apply_phase_status(
    run: Run, job: PhaseJob, status: JobStatus, summary: EvalSummary | ExportSummary | None
) -> Run:
    """Fold a phase job's status (and, once finished, its summary) into the run."""
    failed = status.state == JobState.COMPLETED and not (summary and summary.completed)
    message = status.message
    if status.state == JobState.ERROR or failed:
        message = (summary and summary.error) or message or "the job printed no summary"
    updated = job.model_copy(
        update={
            "state": JobState.ERROR if failed else status.state,
            "finished_at": status.finished_at,
            "message": message,
        }
    )
    run = _with_job(run, updated)
    if updated.state == JobState.COMPLETED and summary:
        run = _record_results(run, updated, summary)
    return run


def _record_results(run: Run, job: PhaseJob, summary: EvalSummary | ExportSummary) -> Run:
    if isinstance(summary, ExportSummary):
        files = [
            ExportFile(
                name=f["name"],
                quantization=f.get("quantization", ""),
                bytes=int(f["bytes"]),
                url=f.get("url"),
            )
            for f in summary.files
        ]
        return run.model_copy(update={"exports": files})
    keep = [e for e in run.evaluations if e.model_label != job.key]
    scores = [
        Evaluation(
            benchmark=s["benchmark"]
            if not s.get("fewshot")
            else f"{s['benchmark']} ({s['fewshot']}-shot)",
            model_label=job.key,
            model=job.model,
            model_url=hub_url(job.model),
            reused_from=job.reused_from,
            score=s.get("score"),
            metric=s.get("metric"),
            job_url=job.job_url,
            status=RunStatus.COMPLETED,
            samples=s.get("values") or [],
            unisolated=s.get("isolated") is False,
        )
        for s in summary.scores
    ]
    versions = {**summary.versions, **run.versions}  # the training job's own win; adds lighteval
    return run.model_copy(
        update={"evaluations": sorted(keep + scores, key=_eval_order), "versions": versions}
    )


def _eval_order(ev: Evaluation) -> tuple[int, int]:
    """Base first, then checkpoints by step, then the final model: the order they trained."""
    if ev.model_label == BASE:
        return (0, 0)
    if ev.model_label.startswith("checkpoint-"):
        return (1, int(ev.model_label.removeprefix("checkpoint-") or 0))
    return (2, 0)


def phase_finished(run: Run, kind: str) -> bool:
    jobs = [j for j in run.phase_jobs if j.kind == kind]
    return bool(jobs) and all(j.done for j in jobs)


def best_model(run: Run) -> str | None:
    return model_verdict(run).best


def model_verdict(run: Run) -> Verdict[str]:
    """Which trained model (final or a checkpoint) is best on the first benchmark: one
    only when it beats the runner-up significantly (``ranking``)."""
    if not run.evaluations:
        return Verdict(None, None, None)
    first = run.evaluations[0].benchmark
    return verdict(
        [
            Candidate(e.model, e.score, e.samples)
            for e in run.evaluations
            if e.model_label != BASE
            and e.model != run.base_model
            and e.score is not None
            and e.benchmark == first
        ]
    )


def close_phase(run: Run, kind: str) -> Run:
    """All of a phase's jobs ended: record failures, pick the best model, move on."""
    failures = [j for j in run.phase_jobs if j.kind == kind and j.state != JobState.COMPLETED]
    if failures:
        names = ", ".join(f"{j.kind} {j.key}: {j.message}" for j in failures)
        return run.model_copy(update={"status": RunStatus.FAILED, "error": names})
    if kind == "eval":
        run = run.model_copy(update={"best_model": best_model(run)})
    return enter_next_phase(run, after=kind)
