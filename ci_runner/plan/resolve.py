"""Experiment → the concrete run: id, LoRA decision, run config for the job script."""

from __future__ import annotations

from dataclasses import dataclass

from ci_runner.runconfig import DatasetSource, LoraSettings, RunConfig, Tracking
from ci_runner.spec.model import Experiment, LoraSpec

LORA_AUTO_THRESHOLD = 3_000_000_000


@dataclass(frozen=True)
class ResolvedRun:
    run_id: str
    run_config: RunConfig
    lora_note: str


def run_id_for(experiment: Experiment) -> str:
    """Stable for an unchanged file, new when what would be trained changes."""
    return f"{experiment.name}-{experiment.spec_hash[:8]}"


def decide_lora(experiment: Experiment, param_count: int | None) -> tuple[LoraSettings | None, str]:
    lora = experiment.lora
    if isinstance(lora, LoraSpec):
        return LoraSettings(**lora.model_dump()), "LoRA on (set in the experiment file)"
    if lora == "off":
        return None, "LoRA off (set in the experiment file)"
    if param_count is None:
        return None, "LoRA off (auto: model size unknown; set `lora:` to choose)"
    size = f"{param_count / 1e9:.2f}B parameters"
    if param_count > LORA_AUTO_THRESHOLD:
        return LoraSettings(), f"LoRA on (auto: {size} > 3B)"
    return None, f"LoRA off (auto: {size} ≤ 3B)"


def resolve_run(experiment: Experiment, *, output_dir: str, param_count: int | None) -> ResolvedRun:
    run_id = run_id_for(experiment)
    lora, note = decide_lora(experiment, param_count)
    ds = experiment.dataset
    config = RunConfig(
        experiment=experiment.name,
        run_id=run_id,
        method=experiment.method,
        base_model=experiment.base_model,
        dataset=DatasetSource(**ds.model_dump()),
        hyperparameters=experiment.hyperparameters,
        lora=lora,
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
    )
    return ResolvedRun(run_id, config, note)
