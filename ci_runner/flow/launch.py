"""Launching: putting one job on a backend, for a run's training attempt or one of its
evaluation and export jobs.

Each job is labelled with its run (and phase), and every launch first looks for a job
with those labels: one launched before a crash, never recorded, is adopted, not doubled.
Only then does the backend launch a new one (``Backend.launch``). Which runs get a job
now is ``flow.start``'s choice; ``flow.submit`` is the command that records a file's runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ci_runner.core.hub import is_hub_commit, is_local_path, label_value
from ci_runner.core.jobs import Backend, BackendName, JobHandle, JobKind, JobRequest, Phase
from ci_runner.flow.pins import Pins
from ci_runner.flow.records import run_timeout
from ci_runner.flow.workspace import Workspace
from ci_runner.ledger.model import Ledger, PhaseJob, Run
from ci_runner.ledger.phases import BASE, job_groups
from ci_runner.ledger.retry import next_attempt
from ci_runner.plan.estimate import Plan
from ci_runner.plan.resolve import ResolvedRun, resolve_run
from ci_runner.runconfig import (
    MLFLOW_JOB_REQUIREMENTS,
    MLFLOW_SECRET_ENV,
    BenchmarkSpec,
    EvalBatchConfig,
    EvalConfig,
    ExportConfig,
    packages_for,
)
from ci_runner.spec.expand import RunSpec
from ci_runner.spec.model import Experiment

TRAIN_SCRIPT = "train.py"
EVAL_SCRIPT = "evaluate.py"
EVAL_MANY_SCRIPT = "evaluate_many.py"  # several models in one process (local only)
EXPORT_SCRIPT = "export_gguf.py"
JOB_OUTPUT_ROOT = Path("/tmp/ci-runner")  # inside an HF Jobs container; the Hub keeps results
# The label naming a phase job (``eval-final``, ``export-gguf``). Its key is part of every
# job already started on a backend, which a later poll must still find: it stays as is.
PHASE_LABEL = "ci-runner.stage"


def run_labels(run_id: str, experiment: str, attempt: int) -> dict[str, str]:
    return {
        "ci-runner.experiment": experiment,
        "ci-runner.run": run_id,
        "ci-runner.attempt": str(attempt),
    }


def resolve(
    ws: Workspace, experiment: Experiment, plan: Plan, *, run_id: str, pins: Pins | None = None
) -> ResolvedRun:
    """The run config the job receives: output locally in the state folder, else in the job;
    the model and dataset at the commits they were pinned to."""
    if experiment.backend == BackendName.LOCAL.value:
        output_dir = ws.project.relative(ws.project.runs_dir / run_id / "output")
    else:
        output_dir = str(JOB_OUTPUT_ROOT / run_id / "output")
    return resolve_run(
        experiment,
        output_dir=output_dir,
        plan=plan,
        run_id=run_id,
        **(pins or Pins()).for_job(),
    )


def trained_model(run: Run) -> str:
    """What a later stage trains from: the run's model on disk, or its Hub repo.

    A LoRA stage followed by another saves its adapter merged into its base
    (``output.merge``, implied), so the next stage loads a full model.
    """
    if run.backend != BackendName.LOCAL:
        return run.hub_model_id or run.output_dir
    path = run.output_dir if is_local_path(run.output_dir) else f"./{run.output_dir}"
    return f"{path}/merged" if run.lora else path


def with_base(ledger: Ledger, spec: RunSpec) -> Experiment:
    """A later stage trains from the previous stage's model, known once it completed."""
    if not spec.base_from:
        return spec.experiment
    previous = ledger.run(spec.base_from)
    if previous is None:
        return spec.experiment
    return spec.experiment.model_copy(update={"base_model": trained_model(previous)})


def launch_training(
    ws: Workspace, experiment: Experiment, resolved: ResolvedRun, run: Run
) -> JobHandle:
    """The run's current attempt as a job: adopted if one with its labels exists."""
    backend = ws.backend(run.backend)
    attempt = run.last_attempt.number if run.last_attempt else 1
    labels = run_labels(run.run_id, run.experiment, attempt)
    existing = backend.find(labels)
    if existing:
        return existing[-1]  # started before a crash, never recorded: adopt it
    resume_from = run.last_attempt.resume_from if run.last_attempt else None
    mlflow = resolved.run_config.tracking.backend == "mlflow"
    # beyond train.py's header: an MLflow client, then bitsandbytes for a 4-bit base
    mlflow_packages = MLFLOW_JOB_REQUIREMENTS if mlflow else ()
    packages = (*mlflow_packages, *packages_for(resolved.run_config))
    request = JobRequest(
        script=ws.project.job_script(TRAIN_SCRIPT).path,
        run_config=resolved.run_config.model_copy(update={"resume_from_checkpoint": resume_from}),
        labels=labels,
        flavor=run.hardware,
        timeout_s=run_timeout(experiment, resolved.plan),
        requirements=tuple(dict.fromkeys(packages)),
        secret_env=MLFLOW_SECRET_ENV if mlflow else (),
    )
    return backend.launch(request)


def with_job(run: Run, handle: JobHandle) -> Run:
    attempt = run.last_attempt
    assert attempt is not None, "a run gets a job for its current attempt"
    attempt = attempt.model_copy(update={"job_id": handle.job_id, "job_url": handle.url})
    return run.model_copy(update={"attempts": [*run.attempts[:-1], attempt]})


# --- resuming -------------------------------------------------------------------------


def new_attempt(ws: Workspace, run: Run) -> Run:
    return next_attempt(run, backend=run.backend, now=ws.now(), resume_from=resume_target(ws, run))


def resume_target(ws: Workspace, run: Run) -> str | None:
    """The newest checkpoint: on disk for local runs, the Hub's copy for HF Jobs."""
    if run.backend != BackendName.LOCAL:
        return "last-checkpoint" if run.hub_model_id else None
    # A kill can land mid-save: only a checkpoint whose trainer state was written counts.
    checkpoints = [
        p for p in local_checkpoints(ws, run) if (ws.root / p / "trainer_state.json").exists()
    ]
    return checkpoints[-1] if checkpoints else None


def local_checkpoints(ws: Workspace, run: Run) -> list[str]:
    """A local run's ``checkpoint-<step>`` folders, oldest first, relative to the project."""
    if run.backend != BackendName.LOCAL:
        return []  # only the final model and `last-checkpoint` survive on the Hub
    found = [
        p
        for p in (ws.root / run.output_dir).glob("checkpoint-*")
        if p.name.removeprefix("checkpoint-").isdigit()
    ]
    found.sort(key=lambda p: int(p.name.removeprefix("checkpoint-")))
    return [ws.project.relative(p) for p in found]


# --- phase jobs -------------------------------------------------------------------------


def launch_phase_jobs(ws: Workspace, run: Run) -> Run:
    """Start the current phase's jobs that have none yet; adopt any already started.

    Locally a run's evaluations share one job (``job_groups``): each of their phase jobs
    records that job.
    """
    pending = [j for j in run.current_phase_jobs if j.job_id is None]
    if not pending or not run.active:
        return run
    return launch_jobs(ws, run, pending)


def launch_jobs(ws: Workspace, run: Run, pending: list[PhaseJob]) -> Run:
    """Start these phase jobs of the run (grouped as ``job_groups`` says), or adopt the
    jobs their labels find; each records its job."""
    backend: Backend = ws.backend(run.backend)
    jobs = list(run.phase_jobs)
    for group in job_groups(pending, share_evals=shares_evals(ws, run)):
        keys = ".".join(j.key for j in group)
        labels = {
            "ci-runner.experiment": run.experiment,
            "ci-runner.run": run.run_id,
            PHASE_LABEL: label_value(f"{group[0].kind}-{keys}"),
        }
        # A run id is unique across experiments: the run and job labels find its job, and
        # the experiment label is for a person filtering the backend's job list.
        existing = backend.find({k: v for k, v in labels.items() if k != "ci-runner.experiment"})
        handle = existing[-1] if existing else backend.launch(phase_request(ws, run, group, labels))
        for job in group:
            jobs[jobs.index(job)] = job.model_copy(
                update={"job_id": handle.job_id, "job_url": handle.url}
            )
    return run.model_copy(update={"phase_jobs": jobs})


def pinned(model: str, revision: str | None) -> str:
    """``org/name@sha`` when the model was pinned to a Hub commit, as the job scripts read."""
    return f"{model}@{revision}" if is_hub_commit(revision) and not is_local_path(model) else model


def shares_evals(ws: Workspace, run: Run) -> bool:
    """One process for a run's evaluations: on this machine, with ci-runner's evaluate.py
    (``evaluate_many.py`` runs the packaged one, not a project's own)."""
    return run.backend == BackendName.LOCAL and not ws.project.job_script(EVAL_SCRIPT).overridden


def phase_request(
    ws: Workspace, run: Run, group: list[PhaseJob], labels: dict[str, str]
) -> JobRequest:
    """One job for a phase job, or for a group of evaluations that share a process."""
    config: EvalConfig | ExportConfig | EvalBatchConfig
    if len(group) == 1:
        script, config = phase_config(ws, run, group[0])
    else:
        evaluations = [phase_config(ws, run, job)[1] for job in group]
        script, config = EVAL_MANY_SCRIPT, EvalBatchConfig(evaluations=evaluations)
    sized = phase_sizing(run, group[0])
    return JobRequest(
        script=ws.project.job_script(script).path,
        run_config=config,
        labels=labels,
        flavor=sized.get("flavor") or run.hardware,
        timeout_s=sized.get("timeout_s"),
        requirements=packages_for(config),
    )


def phase_sizing(run: Run, job: PhaseJob) -> dict[str, Any]:
    """How the plan sized this job (``Run.phase_hardware``): a checkpoint's evaluation is
    sized as the final model's. Empty for runs planned before jobs were sized."""
    key = job.key if job.key in run.phase_hardware else "final"
    if job.kind == JobKind.EXPORT:
        key = job.key
    return run.phase_hardware.get(key) or {}


def phase_config(ws: Workspace, run: Run, job: PhaseJob) -> tuple[str, EvalConfig | ExportConfig]:
    """The entry script a phase job runs, and its config."""
    local = run.backend == BackendName.LOCAL
    scratch = ws.project.runs_dir / run.run_id if local else JOB_OUTPUT_ROOT / run.run_id
    out = ws.project.relative(scratch / f"{job.kind}-{job.key}") if local else str(scratch)
    # A LoRA run's output is an adapter: evaluation and export load the base under it, at
    # the commit the run trained from.
    base = pinned(run.base_model, run.base_model_revision)
    adapter_base = base if run.lora and job.model != run.base_model else None
    if job.kind == JobKind.EVAL:
        settings = run.evaluation or {}
        default_n = settings.get("max_samples")
        return EVAL_SCRIPT, EvalConfig(
            experiment=run.experiment,
            run_id=run.run_id,
            eval_id=f"{run.run_id}-{job.key}",
            model=base if job.model == run.base_model else job.model,
            model_label=job.key,
            after_job=training_job_dir(ws, run) if job.key != BASE else None,
            base_model=adapter_base,
            benchmarks=[
                BenchmarkSpec(**{**b, "max_samples": b.get("max_samples") or default_n})
                for b in settings.get("benchmarks", [])
            ],
            output_dir=out,
            allow_unisolated_code=settings.get("allow_unisolated_code") is True,
            quantize=phase_sizing(run, job).get("quantize"),
            device_map=phase_sizing(run, job).get("device_map"),
        )
    gguf = (run.export or {}).get("gguf") or {}
    return EXPORT_SCRIPT, ExportConfig(
        experiment=run.experiment,
        run_id=run.run_id,
        model=job.model,
        base_model=adapter_base,
        quantizations=gguf.get("quantizations", ["Q4_K_M"]),
        output_dir=out,
        hub_repo=gguf.get("hub_repo"),
    )


def training_job_dir(ws: Workspace, run: Run) -> str | None:
    """A local run still training: the folder of the job a trained model's evaluation,
    started with it, waits for (``EvalConfig.after_job``)."""
    attempt = run.last_attempt
    if run.phase != Phase.TRAIN or run.backend != BackendName.LOCAL or not attempt:
        return None
    return str(ws.project.jobs_dir / attempt.job_id) if attempt.job_id else None


def enter_phase_jobs(ws: Workspace, run: Run) -> Run:
    """The jobs a run's new phase needs, recorded before any is started."""
    from ci_runner.ledger.phases import eval_jobs, export_job, missing_eval_jobs

    entered = not any(j.kind == JobKind.EVAL and j.key != BASE for j in run.phase_jobs)
    if run.phase == Phase.EVAL and entered:  # the base's may have started with training
        final = run.hub_model_id if run.backend != BackendName.LOCAL else run.output_dir
        jobs = eval_jobs(
            run,
            final_model=final or run.output_dir,
            checkpoints=local_checkpoints(ws, run),
            now=ws.now(),
        )
        jobs = missing_eval_jobs(run, jobs)
        run = run.model_copy(update={"phase_jobs": [*run.phase_jobs, *jobs]})
    if run.phase == Phase.EXPORT and not any(j.kind == JobKind.EXPORT for j in run.phase_jobs):
        run = run.model_copy(
            update={"phase_jobs": [*run.phase_jobs, export_job(run, now=ws.now())]}
        )
    return run
