"""Plan experiment files for people: validate, check the data, plan; never raise.

Shared by the action's plan/submit summaries, the PR plan comment and the proposal PR, so
all three say the same thing about a file. Each problem becomes the entry's error and its
exit code, and the caller decides what to do with a file that is not ready.
"""

from __future__ import annotations

from pathlib import Path

from ci_runner.data.formats import Verdict
from ci_runner.errors import CiRunnerError, DatasetViewerError, ExitCode
from ci_runner.publish.comment import PlanEntry
from ci_runner.runner import Runner
from ci_runner.spec.expand import expand


def plan_entry(
    runner: Runner, file: Path, *, backend: str | None = None, check_data: bool = True
) -> PlanEntry:
    entry = PlanEntry(file=runner.project.relative(file))
    try:
        experiment = runner.load(file, backend=backend, warnings=entry.warnings)
        entry.name = experiment.name
        if experiment.is_multi_run:
            _plan_runs(runner, experiment, entry, check_data=check_data)
            return entry
        data = None
        if check_data:
            try:
                data = runner.check_data(experiment)
            except DatasetViewerError as exc:
                entry.warnings.append(f"dataset not checked: {exc}")
        if data is not None:
            entry.data = data.verdict.value if data.verdict else None
            if data.verdict not in (None, Verdict.READY):
                data.require_fit(entry.file)  # raises with the mapping hint
        entry.plan = runner.plan(experiment, data)
        if entry.plan.over_budget:
            entry.exit_code = ExitCode.OVER_BUDGET
    except CiRunnerError as exc:
        entry.error, entry.exit_code = str(exc), exc.exit_code
    return entry


def _plan_runs(runner: Runner, experiment, entry: PlanEntry, *, check_data: bool) -> None:
    """A file with a matrix or stages: every run's plan, and the budget on their total."""
    runs = expand(experiment)
    data: dict = {}
    if check_data:
        data, distinct, warnings = runner.check_runs_data(runs)
        entry.warnings += warnings
        verdicts = [check.verdict for _, check in distinct]
        entry.data = verdicts[0].value if len(set(verdicts)) == 1 and verdicts[0] else None
        for _, check in distinct:
            if check.verdict not in (None, Verdict.READY):
                check.require_fit(entry.file)  # raises with the mapping hint
    entry.file_plan = runner.plan_file(experiment, runs, data)
    if entry.file_plan.over_budget:
        entry.exit_code = ExitCode.OVER_BUDGET
