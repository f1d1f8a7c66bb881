"""A plan for people (a markdown table: terminal and PR comment alike) and for machines (JSON)."""

from __future__ import annotations

from typing import Any

from ci_runner.core.durations import rounded_minutes as format_duration
from ci_runner.core.inert import prose
from ci_runner.plan.estimate import Plan
from ci_runner.plan.jobs import JobPlan
from ci_runner.plan.savers import rows_text


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """Plain JSON types; ``plan_from_json`` gives back an equal ``Plan``."""
    return plan.model_dump(mode="json")


def plan_from_json(data: dict[str, Any]) -> Plan:
    return Plan.model_validate(data)


def _billions(count: int) -> str:
    return f"{count / 1e9:.2f}B" if count >= 1e8 else f"{count / 1e6:.1f}M"


def _model(plan: Plan) -> str:
    if plan.params is None:
        return f"{prose(plan.base_model)}: size unknown"
    return f"{prose(plan.base_model)}: {_billions(plan.params)} parameters ({plan.params_source})"


def _lora(plan: Plan) -> str:
    if plan.trainable_params is None:
        return plan.lora_note
    return f"{plan.lora_note}; {_billions(plan.trainable_params)} trainable"


def _memory(plan: Plan) -> str:
    if plan.memory_gb is None:
        return "not estimated"
    text = f"~{plan.memory_gb:.1f} GB"
    if plan.flavor_vram_gb and plan.sharded and plan.memory_per_gpu_gb is not None:
        per_gpu = plan.flavor_vram_gb // max(plan.gpus, 1)
        text += (
            f", sharded over {plan.gpus} GPUs: ~{plan.memory_per_gpu_gb:.1f} GB "
            f"of {per_gpu} GB each"
        )
    elif plan.flavor_vram_gb and plan.gpus > 1:
        text += f" per GPU, of {plan.flavor_vram_gb // plan.gpus} GB each"
    elif plan.flavor_vram_gb:
        text += f" of {plan.flavor_vram_gb} GB"
    if plan.fits is False:
        text += " — does not fit"
    return text


def _precision(plan: Plan) -> str:
    if plan.dtype is None:
        return "not decided (model size unknown)"
    if plan.quantization:
        text = f"4-bit NF4 base (QLoRA, bitsandbytes, double quant), {plan.dtype} compute"
    else:
        text = plan.dtype
    source = {
        "ci-runner": "sent as model_init_kwargs.dtype",
        "experiment file": "model_init_kwargs.dtype in the file",
        "TRL default": "TRL's default",
    }.get(plan.dtype_source or "")
    return f"{text} ({source})" if source else text


def _savers(plan: Plan) -> str:
    """The savers that are on, each with the memory it takes off a GPU."""
    if not plan.savers:
        return "not decided (model size unknown)"
    return rows_text(plan.savers)


def _saver_notes(plan: Plan) -> tuple[str, ...]:
    return tuple(
        f"{s.name}: {'on' if s.on else 'off'}"
        + (f" (−{s.saves_gb:.1f} GB)" if s.on and s.saves_gb and s.saves_gb >= 0.05 else "")
        + (f": {s.note}" if s.note else "")
        for s in plan.savers
    )


def _launch(plan: Plan) -> str:
    if plan.launcher == "single" or plan.processes <= 1:
        return "one process"
    how = "FSDP2, sharded" if plan.launcher == "fsdp" else "DDP, a replica per GPU"
    return f"`accelerate launch`, {plan.processes} processes ({how})"


def _compute(plan: Plan) -> str:
    if plan.flops_formula is None:
        return "not estimated"
    return plan.flops_formula


def _hardware(plan: Plan) -> str:
    if plan.flavor is None:
        return "not chosen"
    if plan.flavor == "local":
        return "local (this machine)"
    text = plan.flavor
    if plan.flavor_usd_per_hour is not None:
        text += f" at ${plan.flavor_usd_per_hour:.2f}/h"
    return text if plan.processes <= 1 else f"{text}; {_launch(plan)}"


def _workload(plan: Plan) -> str:
    if plan.examples is None:
        return "unknown (dataset size not known)"
    unit = {"grpo": "completions", "dpo": "pairs"}.get(plan.method, "examples")
    tokens = f"{plan.tokens / 1e6:.2f}M" if plan.tokens and plan.tokens >= 1e5 else plan.tokens
    length = "mean prompt" if plan.method == "grpo" else "mean length"
    return (
        f"{plan.examples:,} {unit}, {plan.steps:,} steps, ~{tokens} tokens "
        f"({length} {plan.mean_seq_len:g})"
    )


def _time(plan: Plan) -> str:
    if plan.est_seconds is None:
        return "not estimated"
    return f"~{format_duration(plan.est_seconds)}"


def _timeout(plan: Plan) -> str:
    unset = "none" if plan.backend == "local" else "not set (HF Jobs' default: 30m)"
    given = format_duration(plan.timeout_s) if plan.timeout_s else unset
    if plan.recommended_timeout_s is None:
        return given
    return f"{given}; recommended {format_duration(plan.recommended_timeout_s)}"


def _cost(plan: Plan) -> str:
    text = "not estimated" if plan.est_cost_usd is None else f"~${plan.est_cost_usd:.2f}"
    if plan.total_cost_usd is not None:
        text += f" training, ~${plan.total_cost_usd:.2f} with every job (below)"
    if plan.budget_usd is not None:
        verdict = "over budget" if plan.over_budget else "budget"
        text += f" ({verdict} ${plan.budget_usd:.2f})"
    return text


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _bullets(title: str, items: tuple[str, ...]) -> list[str]:
    return ["", f"**{title}**", "", *(f"- {prose(item)}" for item in items)] if items else []


def _job_memory(job: JobPlan) -> str:
    if job.memory_gb is None:
        return "—"
    return (
        f"~{job.memory_gb:.0f} GB RAM" if job.kind == "export" else f"~{job.memory_gb:.1f} GB/GPU"
    )


def _job_rows(plan: Plan) -> list[str]:
    """Every job of the run with its flavor and cost, and the total the budget applies to."""
    if not plan.jobs:
        return []
    lines = [
        "",
        "**Jobs**",
        "",
        "| Job | Flavor | Memory | How | Time | Cost |",
        "|---|---|---|---|---|---|",
    ]
    for job in plan.jobs:
        name = "train" if job.kind == "train" else f"{job.kind} {job.key}"
        flavor = job.flavor or "not planned"
        if job.flavor and job.usd_per_hour is not None:
            flavor += f" at ${job.usd_per_hour:.2f}/h"
        time = f"~{format_duration(job.est_seconds)}" if job.est_seconds else "—"
        cost = f"~${job.est_cost_usd:.2f}" if job.est_cost_usd is not None else "—"
        how = job.load + (f"; {job.note}" if job.note else "")
        cells = (name, flavor, _job_memory(job), how, time, cost)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    total = "not estimated" if plan.total_cost_usd is None else f"~${plan.total_cost_usd:.2f}"
    lines.append(f"| **Total** | | | | | {total} |")
    return lines


def render_plan(plan: Plan) -> str:
    """A two-column markdown table, then warnings and assumptions as lists."""
    rows = [
        ("Experiment", f"{plan.experiment} ({plan.method}, {plan.backend})"),
        ("Model", _model(plan)),
        ("LoRA", _lora(plan)),
        ("Precision", _precision(plan)),
        ("Memory", _memory(plan)),
        ("Savers", _savers(plan)),
        ("Hardware", _hardware(plan)),
        ("Workload", _workload(plan)),
        ("Compute", _compute(plan)),
        ("Time", _time(plan)),
        ("Timeout", _timeout(plan)),
        ("Cost", _cost(plan)),
    ]
    lines = ["| Plan | |", "|---|---|", *(f"| {key} | {_cell(value)} |" for key, value in rows)]
    lines += _job_rows(plan)
    lines += _bullets("Warnings", plan.warnings)
    lines += _bullets("Savers", _saver_notes(plan))
    lines += _bullets("Assumptions", plan.assumptions)
    return "\n".join(lines) + "\n"
