"""The plan comment on a pull request that touches experiment files.

One comment per PR, found again by its hidden marker and edited in place, so pushing to
the PR updates the plan and cost instead of stacking comments. The same text is the
step summary of a plan, so what the PR shows and what the run log shows agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ci_runner.core.inert import block, prose
from ci_runner.plan.estimate import Plan
from ci_runner.plan.render import render_plan
from ci_runner.plan.total import FilePlan, render_file_plan
from ci_runner.report.markdown import code

PLAN_MARKER = "<!-- ci-runner:plan -->"


@dataclass
class PlanEntry:
    """One experiment file's outcome: a plan, or why there is none."""

    file: str
    name: str | None = None
    plan: Plan | None = None
    file_plan: FilePlan | None = None  # a file with `matrix:` or `stages:`: every run, the total
    data: str | None = None  # the data check's verdict, e.g. READY
    error: str | None = None  # invalid file, data misfit, missing input...
    warnings: list[str] = field(default_factory=list)
    exit_code: int = 0


def _total(entries: list[PlanEntry]) -> str:
    costs = [e.plan.est_cost_usd for e in entries if e.plan]
    costs += [r.plan.est_cost_usd for e in entries if e.file_plan for r in e.file_plan.runs]
    known = [c for c in costs if c is not None]
    if not costs:
        return "no plan"
    text = f"~${sum(known):.2f}"
    if len(known) < len(costs):
        text += f" ({len(costs) - len(known)} not estimated)"
    return text


def _entry(entry: PlanEntry) -> str:
    title = f"### {code(entry.file)}" + (f" ({code(entry.name)})" if entry.name else "")
    blocks = [title]
    if entry.error:
        blocks.append("**Not ready:**\n\n" + block(entry.error))
    if entry.data:
        blocks.append(f"Data check: **{entry.data}**")
    blocks += [f"> warning: {prose(w)}" for w in entry.warnings]
    if entry.plan:
        blocks.append(render_plan(entry.plan).rstrip("\n"))
    if entry.file_plan:
        blocks.append(render_file_plan(entry.file_plan).replace("### ", "#### ").rstrip("\n"))
    return "\n\n".join(blocks)


def render_plan_summary(entries: list[PlanEntry], *, heading: str = "ci-runner plan") -> str:
    """Per file: errors, data verdict and the plan table; then the total estimated cost."""
    ok = sum(1 for e in entries if not e.exit_code)
    lines = [
        f"## {heading}",
        f"{ok}/{len(entries)} experiment file(s) ready · estimated cost {_total(entries)}",
    ]
    if not entries:
        lines.append("_No experiment files to plan._")
    return "\n\n".join([*lines, *(_entry(e) for e in entries)]) + "\n"


def render_plan_comment(entries: list[PlanEntry]) -> str:
    footer = (
        "_Nothing has run. Merging this PR submits these experiments; this comment is "
        "updated on every push._"
    )
    return f"{PLAN_MARKER}\n{render_plan_summary(entries)}\n{footer}\n"
