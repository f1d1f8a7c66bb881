"""Plan experiment files for people: validate, check the data, plan; never raise.

Shared by the action's plan/submit summaries, the PR plan comment and the proposal PR, so
all three say what ``ci-runner plan`` says (they all run ``flow.preflight``). Each problem
becomes the entry's error and its exit code, and the caller decides what to do with a file
that is not ready.
"""

from __future__ import annotations

from pathlib import Path

from ci_runner.errors import CiRunnerError
from ci_runner.flow.preflight import Preflight, preflight
from ci_runner.flow.workspace import Workspace
from ci_runner.publish.comment import PlanEntry


def plan_entry(
    ws: Workspace, file: Path, *, backend: str | None = None, check_data: bool = True
) -> PlanEntry:
    try:
        result = preflight(ws, file, backend=backend, check_data=check_data)
    except CiRunnerError as exc:
        return failed_entry(ws.project.relative(file), exc)
    return entry_of(ws.project.relative(file), result)


def failed_entry(file: str, exc: CiRunnerError) -> PlanEntry:
    return PlanEntry(file=file, error=str(exc), exit_code=exc.exit_code)


def entry_of(file: str, result: Preflight) -> PlanEntry:
    """A preflight as the plan summary and comment show it; a misfit becomes the error,
    with its mapping hint."""
    entry = PlanEntry(file=file, name=result.experiment.name, warnings=list(result.warnings))
    verdicts = {check.verdict for check in result.data.checks}
    only = next(iter(verdicts)) if len(verdicts) == 1 else None
    entry.data = only.value if only is not None else None
    try:
        result.require_fit()
    except CiRunnerError as exc:
        entry.error, entry.exit_code = str(exc), exc.exit_code
        return entry
    if result.multi_run:
        entry.file_plan = result.plan
    else:
        entry.plan = result.plan.runs[0].plan
    entry.exit_code = result.exit_code
    return entry
