"""A plan for people (a markdown table: terminal and PR comment alike) and for machines (JSON)."""

from __future__ import annotations

from typing import Any

from ci_runner.core.durations import rounded_minutes as format_duration
from ci_runner.plan.estimate import Plan


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """Plain JSON types; ``plan_from_json`` gives back an equal ``Plan``."""
    return plan.model_dump(mode="json")


def plan_from_json(data: dict[str, Any]) -> Plan:
    return Plan.model_validate(data)


def _billions(count: int) -> str:
    return f"{count / 1e9:.2f}B" if count >= 1e8 else f"{count / 1e6:.1f}M"


def _model(plan: Plan) -> str:
    if plan.params is None:
        return f"{plan.base_model}: size unknown"
    return f"{plan.base_model}: {_billions(plan.params)} parameters ({plan.params_source})"


def _lora(plan: Plan) -> str:
    if plan.trainable_params is None:
        return plan.lora_note
    return f"{plan.lora_note}; {_billions(plan.trainable_params)} trainable"


def _memory(plan: Plan) -> str:
    if plan.memory_gb is None:
        return "not estimated"
    text = f"~{plan.memory_gb:.1f} GB"
    if plan.flavor_vram_gb:
        text += f" of {plan.flavor_vram_gb} GB"
        if plan.sharded:
            text += f" (sharded over {plan.gpus} GPUs)"
    if plan.fits is False:
        text += " — does not fit"
    return text


def _hardware(plan: Plan) -> str:
    if plan.flavor is None:
        return "not chosen"
    if plan.flavor == "local":
        return "local (this machine)"
    if plan.flavor_usd_per_hour is None:
        return plan.flavor
    return f"{plan.flavor} at ${plan.flavor_usd_per_hour:.2f}/h"


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
    if plan.budget_usd is not None:
        verdict = "over budget" if plan.over_budget else "budget"
        text += f" ({verdict} ${plan.budget_usd:.2f})"
    return text


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _bullets(title: str, items: tuple[str, ...]) -> list[str]:
    return ["", f"**{title}**", "", *(f"- {_cell(item)}" for item in items)] if items else []


def render_plan(plan: Plan) -> str:
    """A two-column markdown table, then warnings and assumptions as lists."""
    rows = [
        ("Experiment", f"{plan.experiment} ({plan.method}, {plan.backend})"),
        ("Model", _model(plan)),
        ("LoRA", _lora(plan)),
        ("Memory", _memory(plan)),
        ("Hardware", _hardware(plan)),
        ("Workload", _workload(plan)),
        ("Time", _time(plan)),
        ("Timeout", _timeout(plan)),
        ("Cost", _cost(plan)),
    ]
    lines = ["| Plan | |", "|---|---|", *(f"| {key} | {_cell(value)} |" for key, value in rows)]
    lines += _bullets("Warnings", plan.warnings)
    lines += _bullets("Assumptions", plan.assumptions)
    return "\n".join(lines) + "\n"
