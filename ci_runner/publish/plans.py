"""Plan experiment files for people: validate, check the data, plan; never raise.

Shared by the action's plan/submit summaries, the PR plan comment and the proposal PR, so
all three say what ``ci-runner plan`` says (they all run ``flow.preflight``). Each problem
becomes the entry's error and its exit code, and the caller decides what to do with a file
that is not ready.
"""

from __future__ import annotations

from pathlib import Path

from ci_runner.errors import CiRunnerError, ExitCode
from ci_runner.flow.preflight import preflight
from ci_runner.flow.workspace import Workspace
from ci_runner.publish.comment import PlanEntry


def plan_entry(
    ws: Workspace, file: Path, *, backend: str | None = None, check_data: bool = True
) -> PlanEntry:
    entry = PlanEntry(file=ws.project.relative(file))
    try:
        result = preflight(ws, file, backend=backend, check_data=check_data)
        entry.name = result.experiment.name
        entry.warnings += result.warnings
        verdicts = {check.verdict for check in result.data.checks}
        only = next(iter(verdicts)) if len(verdicts) == 1 else None
        entry.data = only.value if only is not None else None
        result.require_fit()  # raises with the mapping hint
        if result.multi_run:
            entry.file_plan = result.plan
        else:
            entry.plan = result.plan.runs[0].plan
        if result.unsized:
            entry.error = "\n".join(p.message(entry.file) for p in result.unsized)
            entry.exit_code = ExitCode.NOT_READY
        elif result.plan.over_budget:
            entry.exit_code = ExitCode.OVER_BUDGET
    except CiRunnerError as exc:
        entry.error, entry.exit_code = str(exc), exc.exit_code
    return entry
