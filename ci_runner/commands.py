"""What each command does, once, for both of its front ends: the CLI and the MCP server.

Each function takes a :class:`Workspace` and the command's arguments, does the work, and
returns what the command reports: the JSON document ``--json`` prints (built with
``documents``' functions, so the shapes live in one place), the exit code, and what a
person reads. ``ci_runner.cli`` prints these; ``ci_runner.mcp_server`` returns them as tool
results. Errors are raised as ``CiRunnerError`` with their exit code, as everywhere.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ci_runner.core.hashing import file_hash
from ci_runner.data.check import DataCheck
from ci_runner.data.formats import Verdict
from ci_runner.documents import (
    ledgers_json,
    outcome_code,
    progress_line,
    run_json,
    submit_json,
)
from ci_runner.errors import CiRunnerError, ExitCode, NotReadyError, SpecError
from ci_runner.flow import preflight as pre
from ci_runner.flow.poll import PollOutcome, peek
from ci_runner.flow.poll import poll as poll_once
from ci_runner.flow.preflight import Preflight
from ci_runner.flow.records import method_label
from ci_runner.flow.start import cancel_waiting
from ci_runner.flow.submit import SubmitOutcome
from ci_runner.flow.submit import submit as submit_spec
from ci_runner.flow.workspace import Workspace
from ci_runner.ledger import repository
from ci_runner.ledger.advance import cancel_run
from ci_runner.ledger.model import Ledger, Run
from ci_runner.ledger.store import (
    CorruptLedgerError,
    UnreadableLedgersError,
    load_ledger,
    save_ledger,
)
from ci_runner.paths import Project
from ci_runner.report.files import write_all, write_index, write_report
from ci_runner.spec.expand import expand
from ci_runner.spec.model import Experiment


def open_workspace(root: Path | str) -> Workspace:
    """The project at ``root``; evaluations push their model card as they close."""
    from ci_runner.publish.model_card import push_card_after_eval

    return Workspace(Project(Path(root).resolve()), on_evaluated=push_card_after_eval)


# --- validate ---------------------------------------------------------------------------


@dataclass
class FileValidation:
    """One file's verdict: its ``--json`` entry plus what a person is shown."""

    file: str
    document: dict[str, Any]
    error: SpecError | None = None
    summary: str | None = None  # "tiny-sft: SFT, local"
    checks: list[DataCheck] = field(default_factory=list)
    data_error: CiRunnerError | None = None
    experiment: Experiment | None = None  # None when the file is invalid
    run_ids: list[str] = field(default_factory=list)  # the runs the file would start

    @property
    def warnings(self) -> list[str]:
        return list(self.document.get("warnings", []))

    @property
    def misfit(self) -> bool:
        return self.data_error is not None or any(c.verdict != Verdict.READY for c in self.checks)


def validate_file(ws: Workspace, file: str, *, with_data: bool = False) -> FileValidation:
    warnings: list[str] = []
    try:
        experiment = ws.load(file, warnings=warnings)
    except SpecError as exc:
        invalid = {"file": file, "valid": False, "errors": [vars(i) for i in exc.issues]}
        return FileValidation(file, invalid, error=exc)
    runs = expand(experiment)
    method = method_label(experiment, runs)
    document: dict[str, Any] = {
        "file": file,
        "valid": True,
        "warnings": warnings,
        "name": experiment.name,
        "method": method,
        "spec_hash": experiment.spec_hash,
    }
    summary = f"{experiment.name}: {method.upper()}, {experiment.backend}"
    if experiment.is_multi_run:  # identified by its runs (the file's own hash omits them)
        run_ids = [spec.run_id for spec in runs]
        document["runs"] = run_ids
        document["spec_hash"] = file_hash(run_ids)
        summary += f", {len(runs)} runs"
    result = FileValidation(
        file, document, summary=summary, experiment=experiment, run_ids=[s.run_id for s in runs]
    )
    if with_data:
        try:
            result.checks = pre.check_runs_data(ws, runs, strict=True).checks
        except CiRunnerError as exc:
            result.data_error = exc
            document["data_error"] = str(exc)
            return result
        if result.checks:
            document["data"] = result.checks[0].to_json()
        if len(result.checks) > 1:
            document["data_per_run"] = [c.to_json() for c in result.checks]
    return result


def validate_exit_code(results: list[FileValidation]) -> int:
    """A wrong file (3) outranks one whose local inputs are only missing so far (4); then
    a dataset that does not fit (7)."""
    codes = [r.error.exit_code for r in results if r.error is not None]
    if codes:
        return min(codes)
    return ExitCode.DATA if any(r.misfit for r in results) else ExitCode.OK


# --- check-data and plan ----------------------------------------------------------------


@dataclass
class Shown:
    """A command's JSON document, what a person reads, and the exit code."""

    document: Any
    text: str
    exit_code: int = ExitCode.OK


def check_data_file(ws: Workspace, file: str, *, remote: bool = False) -> Shown:
    """``check-data FILE``: exit 7 unless every run's dataset is READY."""
    experiment = ws.load(file)
    checks = pre.check_runs_data(ws, expand(experiment), remote=remote, strict=True)
    code = ExitCode.DATA if checks.misfits else ExitCode.OK
    if experiment.is_multi_run:
        rendered = "\n\n".join(c.render() for c in checks.checks)
        return Shown([c.to_json() for c in checks.checks], rendered, code)
    (only,) = checks.checks
    return Shown(only.to_json(), only.render(), code)


def check_data_source(
    ws: Workspace, dataset: str, *, config: str | None, split: str, remote: bool = False
) -> Shown:
    """``check-data --dataset``: a dataset judged for every method (never an exit 7)."""
    result = pre.check_source(ws, dataset, config=config, split=split, remote=remote)
    return Shown(result.to_json(), result.render())


def plan_file(
    ws: Workspace, file: str, *, backend: str | None = None, check_data: bool = True
) -> tuple[Preflight, int]:
    """``plan``: the preflight and its exit code (7 misfit, 4 a model that cannot be sized,
    5 over budget)."""
    result = pre.preflight(ws, Path(file), backend=backend, check_data=check_data)
    return result, result.exit_code


# --- submit, poll, run -----------------------------------------------------------------


def submit_file(
    ws: Workspace,
    file: str,
    *,
    backend: str | None = None,
    allow_over_budget: bool = False,
    check_data: bool = True,
    rerun: bool = False,
) -> SubmitOutcome:
    """``submit``: check the data, plan, pin and submit the file's runs; a run that already
    has a job is adopted, never submitted twice."""
    return submit_spec(
        ws,
        Path(file),
        backend=backend,
        allow_over_budget=allow_over_budget,
        check_data=check_data,
        rerun=rerun,
    )


def submit_document(outcome: SubmitOutcome) -> dict[str, Any]:
    return submit_json(outcome)


def submitted_run_ids(outcome: SubmitOutcome) -> list[str]:
    """The runs a submit acted on: every run of a file with stages or a matrix."""
    return [r.run_id for r in outcome.runs] if outcome.runs else [outcome.run_id]


def poll(ws: Workspace) -> PollOutcome:
    """``poll``: advance every active run once; ledgers and reports are rewritten only
    where something changed."""
    return poll_once(ws)


def poll_document(outcome: PollOutcome) -> dict[str, Any]:
    changed = [str(p) for p in outcome.changed]
    return {"runs": [run_json(r) for r in outcome.runs], "changed": changed}


@dataclass
class Ran:
    """``run``: what was submitted, and the runs as they ended (or stood at the timeout)."""

    submitted: SubmitOutcome
    runs: list[Run]

    @property
    def exit_code(self) -> int:
        return outcome_code(self.runs)


def run_file(
    ws: Workspace,
    file: str,
    *,
    backend: str | None = None,
    allow_over_budget: bool = False,
    check_data: bool = True,
    timeout: float | None = None,
    interval: float = 2.0,
    on_submitted: Callable[[SubmitOutcome], None] = lambda outcome: None,
    on_line: Callable[[str], None] = lambda line: None,
    on_runs: Callable[[list[Run]], None] | None = None,
) -> Ran:
    """``run``: submit, then poll until the file's runs end; the exit code is theirs."""
    submitted = submit_file(
        ws, file, backend=backend, allow_over_budget=allow_over_budget, check_data=check_data
    )
    on_submitted(submitted)
    runs = watch(
        ws,
        submitted_run_ids(submitted),
        timeout=timeout,
        interval=interval,
        on_line=on_line,
        on_runs=on_runs,
    )
    return Ran(submitted, runs)


# --- reading runs -----------------------------------------------------------------------


def unreadable_ledgers(ws: Workspace) -> list[CorruptLedgerError]:
    """The ledgers a command over every experiment had to skip, each with its remedy."""
    return repository.corrupt_ledgers(ws.project)


@contextlib.contextmanager
def naming_unreadable(ws: Workspace) -> Iterator[None]:
    """A name that matches no run may be recorded in a ledger that does not load: say so,
    with the file and its remedy, rather than that the run does not exist."""
    try:
        yield
    except repository.UnknownRunError as exc:
        corrupt = unreadable_ledgers(ws)
        if not corrupt:
            raise
        lead = f"{exc}; it may be recorded in a ledger that cannot be read:"
        raise UnreadableLedgersError(lead, corrupt) from None


def status_ledgers(
    ws: Workspace, names: tuple[str, ...] | list[str] = (), warnings: list[str] | None = None
) -> list[Ledger]:
    """The ledgers as the backends see them now (one bulk call per backend, nothing
    written; ``poll`` records), narrowed to ``names``."""
    with naming_unreadable(ws):
        return select(peek(ws, repository.ledgers(ws.project), warnings), tuple(names))


def status_document(ws: Workspace, names: tuple[str, ...] | list[str] = ()) -> list[dict[str, Any]]:
    return ledgers_json(status_ledgers(ws, names))


def select(ledgers: list[Ledger], names: tuple[str, ...]) -> list[Ledger]:
    """Only the runs ``names`` pick: an experiment name, a run id, or a run id prefix."""
    if not names:
        return ledgers
    picked = []
    for ledger in ledgers:
        if ledger.experiment in names:
            picked.append(ledger)
            continue
        runs = [r for r in ledger.runs if any(r.run_id.startswith(n) for n in names)]
        if runs:
            picked.append(ledger.model_copy(update={"runs": runs}))
    if not picked:
        raise repository.UnknownRunError(
            f"no run or experiment named {', '.join(names)}; see `ci-runner status`"
        )
    return picked


def job_of(ws: Workspace, name: str) -> tuple[Run, str]:
    """The job a name means: a job id (training attempt or phase job), else a run's job;
    ``NotReadyError`` for a run that has none yet."""
    loaded = repository.ledgers(ws.project)
    for ledger in loaded:
        for run in ledger.runs:
            if any(a.job_id == name for a in run.attempts):
                return run, name
            if any(j.job_id == name for j in run.phase_jobs):
                return run, name
    with naming_unreadable(ws):
        _, run = repository.find_run_in(loaded, name)
    job_id = run.last_attempt.job_id if run.last_attempt else None
    if job_id is None:
        raise NotReadyError(f"{run.run_id} has no job yet")
    return run, job_id


@dataclass
class JobLog:
    run_id: str
    job_id: str
    lines: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "job_id": self.job_id, "lines": self.lines}


def logs(ws: Workspace, run_or_job: str, *, tail: int | None = None) -> JobLog:
    """A job's log: a run's training job (a run id, a prefix of one, or an experiment),
    or any job by its id, evaluation and export jobs included."""
    run, job_id = job_of(ws, run_or_job)
    return JobLog(run.run_id, job_id, list(ws.backend(run.backend).logs(job_id, tail=tail)))


# --- acting on runs -----------------------------------------------------------------------


@dataclass
class Canceled:
    run_id: str
    canceled: bool
    job_id: str | None
    status: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def cancel(ws: Workspace, run_ref: str) -> Canceled:
    """Cancel a run's jobs (training, evaluation, export), or a run still waiting for its
    turn; the ledger and report say so at once rather than at the next poll."""
    with naming_unreadable(ws):
        ledger, run = repository.find_run(ws.project, run_ref)
    stem = Path(ledger.report_path).stem
    if not run.active:
        message = f"{run.run_id} is {run.status.label.lower()}; nothing to cancel"
        return Canceled(run.run_id, False, None, run.status.value, message)
    # A base evaluation taken from another run is that run's job: it is left running.
    own = [j.job_id for j in run.phase_jobs if j.job_id and not j.done and not j.reused_from]
    jobs = list(dict.fromkeys(own))
    attempt = run.last_attempt
    if attempt and attempt.job_id and not attempt.state.terminal:
        jobs.insert(0, attempt.job_id)
    for job_id in jobs:
        ws.backend(run.backend).cancel(job_id)
    status = run.status.value
    with ws.lock(stem):
        current = load_ledger(ws.project.ledger_path(stem)) or ledger
        updated: Ledger | None
        if run.waiting:
            updated = cancel_waiting(ws, current, run.run_id)
        else:
            latest = current.run(run.run_id)
            updated = (
                repository.replace_run(current, cancel_run(latest, now=ws.now()))
                if latest is not None
                else None
            )
        if updated is not None:
            save_ledger(ws.project.ledger_path(stem), updated)
            write_report(ws.project, stem, updated)
            write_index(ws.project)
            after = updated.run(run.run_id)
            status = after.status.value if after is not None else status
    how = "it had not started" if not jobs else f"job {', '.join(jobs)}"
    message = f"canceled {run.run_id} ({how})"
    return Canceled(run.run_id, True, jobs[0] if jobs else None, status, message)


def report(ws: Workspace) -> list[Path]:
    """Re-render every report from its ledger; the files that changed."""
    return write_all(ws.project)


def report_document(changed: list[Path]) -> dict[str, Any]:
    return {"changed": [str(p) for p in changed]}


# --- waiting ----------------------------------------------------------------------------


def wait_run_ids(ws: Workspace, experiments: list[str] | tuple[str, ...]) -> list[str]:
    """The runs of ``experiments``, or every active run."""
    if experiments:
        with naming_unreadable(ws):
            return [r.run_id for n in experiments for r in repository.runs_of(ws.project, n)]
    return [r.run_id for led in repository.ledgers(ws.project) for r in led.active_runs]


def watch(
    ws: Workspace,
    run_ids: list[str],
    *,
    timeout: float | None,
    interval: float,
    on_line: Callable[[str], None] = lambda line: None,
    on_runs: Callable[[list[Run]], None] | None = None,
) -> list[Run]:
    """Poll until the runs end or ``timeout`` passes, waking as soon as a local job ends.

    Each poll's runs go to ``on_runs`` when given (a live display), else each changed
    progress line to ``on_line``. Runs go on after a timeout (``outcome_code`` says 12).
    """
    if not run_ids:
        return []
    deadline = None if timeout is None else time.monotonic() + timeout
    shown: dict[str, str] = {}
    while True:
        poll_once(ws)
        runs = _runs_now(ws, run_ids)
        if on_runs is not None:
            on_runs(runs)
        else:
            for r in runs:
                line = progress_line(r)
                if shown.get(r.run_id) != line:
                    on_line(f"  {line}")
                    shown[r.run_id] = line
        if not any(r.active for r in runs):
            return runs
        if deadline is not None and time.monotonic() >= deadline:
            on_line(f"stopped waiting after {timeout:.0f}s; runs continue")
            return runs
        ws.wait_for_news(runs, interval)


def _runs_now(ws: Workspace, run_ids: list[str]) -> list[Run]:
    """The runs as their ledgers say now: every ledger read once, not once per run; an id
    not found as such goes through ``find_run`` (an experiment, a prefix, or its error)."""
    by_id: dict[str, Run] = {}
    for ledger in repository.ledgers(ws.project):
        for run in ledger.runs:
            by_id.setdefault(run.run_id, run)  # the first, as ``find_run`` picks
    return [by_id[i] if i in by_id else repository.find_run(ws.project, i)[1] for i in run_ids]


def wait_document(runs: list[Run]) -> dict[str, Any]:
    return {"exit_code": outcome_code(runs), "runs": [run_json(r) for r in runs]}
