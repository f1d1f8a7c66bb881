"""Experiment + plan → the concrete run: id and the run config for the job script."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ci_runner.plan.estimate import Plan, decide_lora
from ci_runner.plan.settings import file_dtype, settings_from
from ci_runner.runconfig import (
    LOCAL_MLFLOW_URI,
    DatasetSource,
    Launch,
    LoraSettings,
    RunConfig,
    Tracking,
)
from ci_runner.spec.model import Experiment


@dataclass(frozen=True)
class ResolvedRun:
    run_id: str
    run_config: RunConfig
    plan: Plan


def run_id_for(experiment: Experiment) -> str:
    """The run id a single-run file gets (``Experiment.run_id``)."""
    return experiment.run_id


CHECKPOINTS_PER_RUN = 10


def checkpointing(hyperparameters: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """Save (and, with a Hub repo, push) about ten checkpoints per run unless told otherwise.

    A job killed at 90% then loses at most a tenth of its work; TRL's default of
    every 500 steps loses everything on runs shorter than that.
    """
    if "save_steps" in hyperparameters or "save_strategy" in hyperparameters or not plan.steps:
        return hyperparameters
    if plan.steps < 2 * CHECKPOINTS_PER_RUN:
        return hyperparameters
    return {**hyperparameters, "save_steps": -(-plan.steps // CHECKPOINTS_PER_RUN)}


def with_precision(hyperparameters: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """Send the dtype the plan sized the base in, when ci-runner chose it (LoRA on a flavor);
    the file's own ``model_init_kwargs`` stay, and a dtype it sets is never replaced."""
    if plan.dtype_source != "ci-runner" or not plan.dtype:
        return hyperparameters
    if file_dtype(hyperparameters) is not None:
        return hyperparameters
    kwargs = dict(hyperparameters.get("model_init_kwargs") or {})
    return {**hyperparameters, "model_init_kwargs": {**kwargs, "dtype": plan.dtype}}


def with_savers(hyperparameters: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """The TRL settings of the savers the plan sized the run with (``plan.savers``), each
    unless the file sets that field itself. The bf16-weights saver travels as the dtype
    (``with_precision``); checkpointing is sent on GPU flavors, where the plan knows the
    machine, and whenever the file turned it off."""
    on = {s.name: s.on for s in plan.savers}
    out = dict(hyperparameters)
    gpu = plan.flavor_vram_gb is not None
    if on.get("liger_kernel") and gpu:
        out.setdefault("use_liger_kernel", True)
    checkpointing = on.get("gradient_checkpointing")
    file_says = {"gradient_checkpointing", "activation_checkpointing"} & set(out)
    if checkpointing is not None and not file_says and (gpu or not checkpointing):
        out["activation_checkpointing"] = checkpointing
    if on.get("padding_free"):
        out.setdefault("packing" if plan.method == "sft" else "padding_free", True)
    if plan.vllm_gpu_memory_utilization and gpu:
        out.setdefault("use_vllm", True)
        out.setdefault("vllm_mode", "colocate")
        out.setdefault("vllm_gpu_memory_utilization", plan.vllm_gpu_memory_utilization)
        if plan.vllm_max_model_length:
            out.setdefault("vllm_max_model_length", plan.vllm_max_model_length)
    return out


def launch_for(experiment: Experiment, plan: Plan) -> Launch:
    """One process, or one per GPU under ``accelerate launch`` as the plan sized it, in the
    autocast the estimate assumed (``settings_from``: fp16 when set, else bf16 unless off)."""
    if plan.launcher == "single" or plan.processes <= 1:
        return Launch()
    s = settings_from(experiment)
    mixed = "fp16" if s.fp16 else "bf16" if s.bf16 else "no"
    if plan.flavor_vram_gb is None:  # CPU nodes: gloo, no autocast
        mixed = "no"
    nodes = max(plan.nodes, 1)
    return Launch(
        processes=plan.processes // nodes,
        strategy=plan.launcher,
        mixed_precision=mixed,
        nodes=nodes,
    )


TRL_LOGGING_STEPS = 10  # the Trainer logs every 10 steps unless told otherwise
LOG_POINTS_PER_RUN = 10


def logging(hyperparameters: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """Log at least ~ten points per run unless told otherwise.

    With TRL's default of every 10 steps, a run of fewer than 10 steps logs nothing
    at all: no loss curve, no reward, nothing for the report to judge it by.
    """
    if "logging_steps" in hyperparameters or "logging_strategy" in hyperparameters:
        return hyperparameters
    if not plan.steps or plan.steps >= TRL_LOGGING_STEPS * LOG_POINTS_PER_RUN:
        return hyperparameters
    return {**hyperparameters, "logging_steps": max(1, plan.steps // LOG_POINTS_PER_RUN)}


def tracking_for(experiment: Experiment, run_id: str) -> Tracking:
    """trackio's project and Space, or MLflow's experiment and tracking URI."""
    spec = experiment.tracking
    project = spec.project or experiment.name
    if spec.backend == "mlflow":
        return Tracking(
            project=spec.experiment or project,
            run_name=run_id,
            backend="mlflow",
            uri=spec.uri or LOCAL_MLFLOW_URI,
        )
    return Tracking(project=project, run_name=run_id, space_id=spec.space)


def resolve_run(
    experiment: Experiment,
    *,
    output_dir: str,
    plan: Plan,
    run_id: str | None = None,
    base_model_revision: str | None = None,
    dataset_revision: str | None = None,
) -> ResolvedRun:
    """``run_id``: a file's matrix or stage run has the id its expansion gave it. The
    revisions are the commits submit pinned; without them, what the file names (if any)."""
    run_id = run_id or run_id_for(experiment)
    assert experiment.dataset is not None  # the loader requires a dataset of every run
    lora, _ = decide_lora(experiment, plan.params)
    lora_settings = None
    if lora:
        fields = lora.model_dump(exclude={"quantize"})
        lora_settings = LoraSettings(**fields, quantize=plan.quantization and "4bit")
    hyperparameters = logging(checkpointing(experiment.hyperparameters, plan), plan)
    hyperparameters = with_savers(with_precision(hyperparameters, plan), plan)
    return ResolvedRun(
        run_id,
        RunConfig(
            experiment=experiment.name,
            run_id=run_id,
            method=experiment.method,
            base_model=experiment.base_model,
            base_model_revision=base_model_revision or experiment.base_model_revision,
            dataset=DatasetSource(
                **{
                    **experiment.dataset.model_dump(),
                    "revision": dataset_revision or experiment.dataset.revision,
                }
            ),
            hyperparameters=hyperparameters,
            lora=lora_settings,
            rewards=experiment.rewards,
            output_dir=output_dir,
            hub_model_id=experiment.output.hub_model_id,
            hub_private=experiment.output.private,
            # the plan found the training flavor's RAM too small for the 16-bit reload
            merge_lora=experiment.output.merge
            and lora is not None
            and plan.merge_in_training is not False,
            tracking=tracking_for(experiment, run_id),
            seed=experiment.seed,
            launch=launch_for(experiment, plan),
        ),
        plan,
    )
