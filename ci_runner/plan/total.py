"""A file with several runs (``matrix:``/``stages:``) is planned run by run; its cost is
the sum, and ``budget.max_cost_usd`` applies to that total."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ci_runner.core.durations import rounded_minutes as format_duration
from ci_runner.core.inert import prose
from ci_runner.plan.estimate import Plan
from ci_runner.plan.render import plan_to_json, render_plan


@dataclass(frozen=True)
class RunPlan:
    run_id: str
    title: str  # the run id and what sets it apart: its stage, its matrix values
    plan: Plan


@dataclass(frozen=True)
class FilePlan:
    experiment: str
    runs: list[RunPlan]
    budget_usd: float | None
    max_parallel: int

    @property
    def unknown_costs(self) -> int:
        return sum(1 for r in self.runs if _run_cost(r.plan) is None)

    @property
    def total_cost_usd(self) -> float | None:
        """Every job of every run: training, evaluations and exports."""
        known = [c for c in (_run_cost(r.plan) for r in self.runs) if c is not None]
        return round(sum(known), 4) if known else None

    @property
    def total_seconds(self) -> int | None:
        """Compute time over all runs (they may overlap up to ``max_parallel``)."""
        known = [r.plan.est_seconds for r in self.runs if r.plan.est_seconds is not None]
        return sum(known) if known else None

    @property
    def over_budget(self) -> bool:
        total = self.total_cost_usd
        return self.budget_usd is not None and total is not None and total > self.budget_usd

    @property
    def warnings(self) -> list[str]:
        out = []
        if self.over_budget:
            out.append(
                f"the {len(self.runs)} runs cost ~${self.total_cost_usd:.2f} together, over "
                f"budget.max_cost_usd ${self.budget_usd:.2f}"
            )
        if self.unknown_costs and self.budget_usd is not None:
            out.append(
                f"cost of {self.unknown_costs} run(s) unknown: the budget is checked on the rest"
            )
        return out


def _run_cost(plan: Plan) -> float | None:
    return plan.total_cost_usd if plan.total_cost_usd is not None else plan.est_cost_usd


def file_plan_to_json(plan: FilePlan) -> dict[str, Any]:
    return {
        "runs": [
            {"run_id": r.run_id, "title": r.title, "plan": plan_to_json(r.plan)} for r in plan.runs
        ],
        "total": {
            "runs": len(plan.runs),
            "est_cost_usd": plan.total_cost_usd,
            "unknown_costs": plan.unknown_costs,
            "est_seconds": plan.total_seconds,
            "budget_usd": plan.budget_usd,
            "over_budget": plan.over_budget,
            "max_parallel": plan.max_parallel,
        },
        "warnings": plan.warnings,
    }


def _cost(value: float | None) -> str:
    return "not estimated" if value is None else f"~${value:.2f}"


def _time(value: int | None) -> str:
    return "not estimated" if value is None else f"~{format_duration(value)}"


def render_totals(plan: FilePlan) -> str:
    """One row per run, then the total the budget is checked against."""
    lines = ["| Run | Method | Hardware | Time | Cost |", "|---|---|---|---|---|"]
    for run in plan.runs:
        p = run.plan
        hardware = p.flavor or "not chosen"
        title = prose(run.title[len(run.run_id) :]).replace("|", "\\|")
        row = f"| `{run.run_id}`{title} | {p.method} | {hardware} |"
        lines.append(f"{row} {_time(p.est_seconds)} | {_cost(_run_cost(p))} |")
    total = _cost(plan.total_cost_usd)
    if plan.unknown_costs:
        total += f" ({plan.unknown_costs} not estimated)"
    if plan.budget_usd is not None:
        verdict = "over budget" if plan.over_budget else "budget"
        total += f" ({verdict} ${plan.budget_usd:.2f})"
    lines.append(
        f"| **Total: {len(plan.runs)} runs**, {plan.max_parallel} at a time | | | "
        f"{_time(plan.total_seconds)} | {total} |"
    )
    text = "\n".join(lines) + "\n"
    if plan.warnings:
        text += "\n" + "\n".join(f"- {prose(w)}" for w in plan.warnings) + "\n"
    return text


def render_file_plan(plan: FilePlan) -> str:
    """Each run's plan under its title, then the totals."""
    blocks = [f"### {prose(r.title)}\n\n{render_plan(r.plan).rstrip()}" for r in plan.runs]
    blocks.append("### Total\n\n" + render_totals(plan).rstrip())
    return "\n\n".join(blocks) + "\n"
