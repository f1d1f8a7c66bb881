"""Experiment + plan → the concrete run: id and the run config for the job script."""

from __future__ import annotations

from dataclasses import dataclass

from ci_runner.plan.estimate import Plan, decide_lora
from ci_runner.runconfig import DatasetSource, LoraSettings, RunConfig, Tracking
from ci_runner.spec.model import Experiment


@dataclass(frozen=True)
class ResolvedRun:
    run_id: str
    run_config: RunConfig
    plan: Plan


def run_id_for(experiment: Experiment) -> str:
    """Stable for an unchanged file, new when what would be trained changes."""
    return f"{experiment.name}-{experiment.spec_hash[:8]}"


def resolve_run(experiment: Experiment, *, output_dir: str, plan: Plan) -> ResolvedRun:
    run_id = run_id_for(experiment)
    lora, _ = decide_lora(experiment, plan.params)
    return ResolvedRun(
        run_id,
        RunConfig(
            experiment=experiment.name,
            run_id=run_id,
            method=experiment.method,
            base_model=experiment.base_model,
            dataset=DatasetSource(**experiment.dataset.model_dump()),
            hyperparameters=experiment.hyperparameters,
            lora=LoraSettings(**lora.model_dump()) if lora else None,
            rewards=experiment.rewards,
            output_dir=output_dir,
            hub_model_id=experiment.output.hub_model_id,
            hub_private=experiment.output.private,
            tracking=Tracking(
                project=experiment.tracking.project or experiment.name,
                run_name=run_id,
                space_id=experiment.tracking.space,
            ),
            seed=experiment.seed,
        ),
        plan,
    )
