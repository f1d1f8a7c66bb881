"""New ledger records, built from what the file says and what the plan decided. Pure."""

from __future__ import annotations

from typing import Any

from ci_runner.core.durations import spec_duration
from ci_runner.core.hub import hub_url, trackio_url
from ci_runner.flow.pins import Pins
from ci_runner.ledger.model import Attempt, Ledger, Run
from ci_runner.plan.estimate import Plan
from ci_runner.plan.resolve import ResolvedRun
from ci_runner.runconfig import Tracking
from ci_runner.spec.expand import RunSpec
from ci_runner.spec.model import Experiment


def methods_of(runs: list[RunSpec]) -> list[str]:
    """The methods a file's runs use, in order, once each."""
    return list(dict.fromkeys(str(spec.experiment.method) for spec in runs))


def method_label(experiment: Experiment, runs: list[RunSpec]) -> str:
    """``sft``; for a file with stages ``sft → dpo``, for a matrix of methods ``sft / dpo``."""
    return (" → " if experiment.stages else " / ").join(methods_of(runs))


def eval_split(experiment: Experiment) -> str | None:
    """Where the run's eval loss comes from, as the report says it."""
    ds = experiment.dataset
    assert ds is not None  # the loader requires a dataset of every run
    if ds.eval_split:
        return f"split {ds.eval_split}"
    return f"{ds.eval_fraction * 100:g}% of {ds.split}" if ds.eval_fraction else None


def run_timeout(experiment: Experiment, plan: Plan) -> int | None:
    """The file's timeout, else the plan's recommendation (HF's own default kills most runs)."""
    if experiment.timeout or experiment.backend == "local":
        return experiment.timeout
    return plan.recommended_timeout_s


def _mlflow_fields(tracking: Tracking) -> dict[str, str | None]:
    """An MLflow run's store; its run id arrives with the job's summary."""
    if tracking.backend != "mlflow":
        return {}
    return {"tracking_backend": "mlflow", "tracking_uri": tracking.uri}


def new_ledger(
    experiment: Experiment, runs: list[RunSpec], *, spec_path: str, report_path: str
) -> Ledger:
    assert runs[0].experiment.dataset is not None  # the loader requires one of every run
    dataset = runs[0].experiment.dataset.path
    return Ledger(
        experiment=experiment.name,
        spec_path=spec_path,
        report_path=report_path,
        base_model=experiment.base_model,
        base_model_url=hub_url(experiment.base_model),
        dataset=dataset,
        dataset_url=hub_url(dataset, "dataset"),
        method=method_label(experiment, runs),
        description=experiment.description,
    )


def phase_hardware(plan: Plan) -> dict[str, dict[str, Any]]:
    """What the plan sized each evaluation and export job on, by job key."""
    return {
        job.key: {
            "flavor": job.flavor,
            "quantize": job.quantize,
            "device_map": job.device_map,
            "timeout_s": job.timeout_s,
        }
        for job in plan.jobs
        if job.kind != "train" and job.flavor
    }


def new_run(
    spec: RunSpec,
    resolved: ResolvedRun,
    *,
    now: str,
    experiment: Experiment | None = None,
    limit: int | None = None,
    waiting: bool = False,
    pins: Pins | None = None,
) -> Run:
    """The run's record. A run of a multi-run file (``limit`` set) waits for its turn with no
    attempt yet, naming, until it starts, the run whose model it will train from.

    ``experiment`` is the run as it starts (a later stage's real base model), when known.
    """
    experiment = experiment or spec.experiment
    config = resolved.run_config
    assert experiment.dataset is not None  # the loader requires a dataset of every run
    split = experiment.dataset.split
    if experiment.dataset.max_samples:
        split += f"[:{experiment.dataset.max_samples}]"
    run = Run(
        run_id=resolved.run_id,
        experiment=experiment.name,
        title=resolved.run_id,
        method=experiment.method,
        spec_hash=experiment.spec_hash,
        created_at=now,
        backend=experiment.backend,
        hardware=resolved.plan.flavor or experiment.hardware,
        usd_per_hour=resolved.plan.flavor_usd_per_hour or None,
        max_attempts=experiment.retry.max_attempts,
        retry_on=list(experiment.retry.on),
        evaluation=experiment.evaluation.model_dump() if experiment.evaluation else None,
        export=experiment.export.model_dump() if experiment.export else None,
        timeout=spec_duration(run_timeout(experiment, resolved.plan)),
        base_model=experiment.base_model,
        base_model_revision=pins.base_model if pins else None,
        dataset=experiment.dataset.path,
        dataset_revision=pins.dataset if pins else None,
        dataset_split=split,
        eval_split=eval_split(experiment),
        dataset_columns=dict(config.dataset.columns),
        rewards=list(config.rewards),
        hyperparameters=dict(sorted(config.hyperparameters.items())),
        lora=config.lora.model_dump() if config.lora else None,
        output_dir=config.output_dir,
        hub_model_id=config.hub_model_id,
        hub_model_url=hub_url(config.hub_model_id),
        tracking_project=config.tracking.project,
        tracking_run=config.tracking.run_name,
        tracking_url=trackio_url(
            config.tracking.space_id, config.tracking.project, resolved.run_id
        ),
        tracking_space=config.tracking.space_id,
        **_mlflow_fields(config.tracking),
        attempts=[Attempt(number=1, backend=experiment.backend, submitted_at=now)],
        phase_hardware=phase_hardware(resolved.plan),
    )
    if spec.replicate_of:  # a rerun: another seed of a recorded run, in the same report
        run = run.model_copy(
            update={"title": spec.title, "matrix": spec.matrix, "replicate_of": spec.replicate_of}
        )
    if limit is None:  # a single-run file: starts now, and its JSON stays as it always was
        return run
    update: dict[str, object] = {
        "title": spec.title,
        "stage_index": spec.stage_index,
        "stage_name": spec.stage_name,
        "depends_on": spec.depends_on,
        "base_from": spec.base_from,
        "matrix": spec.matrix,
        "max_parallel": limit,
    }
    if waiting:
        update["attempts"] = []
        if spec.base_from:
            update["base_model"] = f"output of {spec.base_from}"  # known once it completed
    return run.model_copy(update=update)
