"""What a command returns, for the CLI and the MCP server alike: JSON documents for
scripts and agents, lines for people.

The JSON shapes here are the contract documented in AGENTS.md; tests pin them.
"""

from __future__ import annotations

import json
from typing import Any

from ci_runner.core.durations import short
from ci_runner.core.jobs import Phase
from ci_runner.errors import ExitCode
from ci_runner.flow.preflight import Preflight
from ci_runner.flow.submit import SubmitOutcome
from ci_runner.ledger.model import Ledger, Run, RunStatus
from ci_runner.ledger.retry import wall_time
from ci_runner.plan.render import plan_to_json, render_plan
from ci_runner.plan.total import file_plan_to_json, render_file_plan
from ci_runner.publish.redact import redact
from ci_runner.report.health import check_run, fmt
from ci_runner.report.render import OVERVIEW_COLUMNS


def json_text(data: Any) -> str:
    """The document as ``--json`` prints it (less the final newline): sorted, indented,
    redacted."""
    return redact(json.dumps(data, indent=2, sort_keys=True, default=str))


def run_json(run: Run) -> dict[str, Any]:
    """The run without its curves; the latest value of each metric, the wall time (the
    runtime the report shows) and the health findings."""
    data = run.model_dump(mode="json", exclude={"hyperparameters"})
    spent = wall_time(run)
    data["wall_time_s"] = round(spent[0], 3) if spent else None
    if data.get("metrics") and run.metrics is not None:
        data["metrics"].pop("loss_curve", None)
        data["metrics"].pop("series", None)
        data["metrics"]["latest"] = {key: run.metrics.last(key) for key in run.metrics.series}
    data["checks"] = [finding.to_json() for finding in check_run(run)]
    return data


def ledgers_json(ledgers: list[Ledger]) -> list[dict[str, Any]]:
    return [
        {
            "experiment": led.experiment,
            "report": led.report_path,
            "runs": [run_json(r) for r in led.runs],
        }
        for led in ledgers
    ]


def progress_line(run: Run) -> str:
    parts = [f"{run.run_id}: {run.status.label}"]
    if run.waiting:
        parts.append("waiting to start" + (f" after {run.depends_on}" if run.depends_on else ""))
    if run.active and run.phase in (Phase.EVAL, Phase.EXPORT):
        jobs = run.current_phase_jobs
        verb = "evaluating" if run.phase == Phase.EVAL else "exporting GGUF"
        parts.append(f"{verb} ({sum(j.done for j in jobs)}/{len(jobs)} jobs done)")
    m = run.metrics
    if m and m.step is not None:
        parts.append(f"step {m.step}/{m.max_steps or '?'}")
    if m and m.final_loss is not None:
        parts.append(f"loss {m.final_loss:.4f}")
    for name, key in OVERVIEW_COLUMNS.get(run.method, ()):
        if m and (latest := m.last(key)) is not None:
            parts.append(f"{name.lower()} {fmt(latest)}")
    if m and m.eta_s is not None and run.active:
        parts.append(f"ETA {short(m.eta_s)}")
    findings = check_run(run)
    if findings:
        parts.append("⚠ " + ", ".join(f.title for f in findings))
    if run.error:
        parts.append(run.error)
    return " · ".join(parts)


def outcome_code(runs: list[Run]) -> int:
    """One exit code for many runs: any failure wins, then cancel, then still running."""
    statuses = {r.status for r in runs}
    if RunStatus.FAILED in statuses:
        return ExitCode.RUN_FAILED
    if RunStatus.CANCELED in statuses:
        return ExitCode.RUN_CANCELED
    if any(r.active for r in runs):
        return ExitCode.WAIT_TIMEOUT
    return ExitCode.OK


# --- plan -------------------------------------------------------------------------------


def plan_json(pre: Preflight) -> dict[str, Any]:
    """One run: ``{plan, data, warnings, unsized}``; several: the file plan plus ``data``,
    ``warnings``, ``unsized`` (why a model could not be sized, and the remedy)."""
    unsized = [{"reason": p.reason, "remedy": p.remedy} for p in pre.unsized]
    if pre.multi_run:
        return file_plan_to_json(pre.plan) | {
            "data": [check.to_json() for check in pre.data.checks],
            "warnings": pre.warnings,
            "unsized": unsized,
        }
    (only,) = pre.plan.runs
    checks = pre.data.checks
    return {
        "plan": plan_to_json(only.plan),
        "data": checks[0].to_json() if checks else None,
        "warnings": pre.warnings,
        "unsized": unsized,
    }


def plan_text(pre: Preflight) -> str:
    blocks = [check.render() for check in pre.data.checks]
    if pre.multi_run:
        blocks.append(render_file_plan(pre.plan).rstrip("\n"))
    else:
        blocks.append(render_plan(pre.plan.runs[0].plan).rstrip("\n"))
    blocks += [f"error: {problem.message(str(pre.file))}" for problem in pre.unsized]
    return "\n\n".join(blocks)


# --- submit -----------------------------------------------------------------------------


def submit_json(outcome: SubmitOutcome) -> dict[str, Any]:
    data = vars(outcome) | {"report": str(outcome.report)}
    data["plan"] = plan_to_json(outcome.plan) if outcome.plan else None
    file_plan = data.pop("file_plan")
    runs = data.pop("runs")
    if runs:  # a file with stages or a matrix
        data["runs"] = [vars(r) for r in runs]
        data["file_plan"] = file_plan_to_json(file_plan) if file_plan else None
    return data


def submit_text(outcome: SubmitOutcome) -> str:
    if outcome.runs:
        lines = [render_file_plan(outcome.file_plan).rstrip("\n")] if outcome.file_plan else []
        for run in outcome.runs:
            if run.status == "submitted":
                lines += [f"submitted {run.title} as job {run.job_id}", f"  logs:   {run.job_url}"]
            elif run.status == "already submitted":
                lines.append(f"already submitted, nothing to do: {run.title} (job {run.job_id})")
            elif run.status == "waiting":
                lines.append(f"queued {run.title}: waiting for {run.waiting_for}")
            else:
                lines.append(f"not started: {run.title}")
        return "\n".join([*lines, f"report: {outcome.report}"])
    lines = [render_plan(outcome.plan).rstrip("\n")] if outcome.plan else []
    verb = "submitted" if outcome.created else "already submitted, nothing to do:"
    lines += [
        f"{verb} {outcome.run_id} as job {outcome.job_id}",
        f"  logs:   {outcome.job_url}",
        f"  report: {outcome.report}",
    ]
    return "\n".join(lines)
