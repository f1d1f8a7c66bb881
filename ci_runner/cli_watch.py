"""Watching runs: ``status`` (live, as ``hf jobs ps``), ``logs`` (``-f`` to follow) and
``cancel`` (recorded at once). Registered on the ``ci-runner`` group by ``cli.py``."""

from __future__ import annotations

import time
from pathlib import Path

import click

from ci_runner.cli_output import JSON_OPTION, echo, echo_findings, emit_json, ledgers_json, warn
from ci_runner.errors import NotReadyError
from ci_runner.flow.poll import peek
from ci_runner.flow.start import cancel_waiting
from ci_runner.flow.workspace import Workspace
from ci_runner.ledger import repository
from ci_runner.ledger.advance import cancel_run
from ci_runner.ledger.model import Ledger, Run
from ci_runner.ledger.store import load_ledger, save_ledger
from ci_runner.paths import Project
from ci_runner.report.files import write_report

ROOT_OPTION = click.option(
    "--root",
    "root",
    default=None,
    type=click.Path(file_okay=False),
    help="Project root (the same as the global --root).",
)


def _workspace(ctx: click.Context, root: str | None = None) -> Workspace:
    from ci_runner.publish.model_card import push_card_after_eval

    base = root or (ctx.obj or {}).get("root", ".")
    return Workspace(Project(Path(base).resolve()), on_evaluated=push_card_after_eval)


@click.command()
@click.argument("names", nargs=-1)
@ROOT_OPTION
@click.option(
    "--watch",
    type=float,
    is_flag=False,
    flag_value=5.0,
    default=None,
    metavar="[SECONDS]",
    help="Refresh in place every SECONDS (default 5) until interrupted.",
)
@JSON_OPTION
@click.pass_context
def status(
    ctx: click.Context, names: tuple[str, ...], root: str | None, watch: float | None, as_json: bool
) -> None:
    """Every run, or the runs of NAMES (run ids, prefixes or experiment names), as the
    backends see them now: one bulk status call per backend, one progress read per project.

    Reads the live state without writing anything; `poll` is what records it.
    """
    ws = _workspace(ctx, root)

    warnings: list[str] = []

    def current() -> list[Ledger]:
        return select(peek(ws, repository.ledgers(ws.project), warnings), names)

    if as_json:
        emit_json(ledgers_json(current()))
        return
    from ci_runner.cli_status import console, status_table

    out = console()
    ledgers = current()
    for warning in dict.fromkeys(warnings):
        warn(warning)
    if not ledgers:
        echo("no experiments submitted yet; try `ci-runner submit experiments/<name>.yaml`")
        return
    if watch is None:
        out.print(status_table(ledgers))
        for ledger in ledgers:
            for run in ledger.runs:
                echo_findings(run)
        return
    from rich.live import Live

    try:
        with Live(status_table(ledgers), console=out, auto_refresh=False) as live:
            while True:
                time.sleep(watch)
                live.update(status_table(current()), refresh=True)
    except KeyboardInterrupt:
        return


def select(ledgers: list[Ledger], names: tuple[str, ...]) -> list[Ledger]:
    """Only the runs NAMES pick: an experiment name, a run id, or a run id prefix."""
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
        raise NotReadyError(
            f"no run or experiment named {', '.join(names)}; see `ci-runner status`"
        )
    return picked


@click.command()
@click.argument("run_or_job")
@click.option("--tail", type=int, default=None, help="Only the last N lines.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the job ends.")
@ROOT_OPTION
@click.pass_context
def logs(
    ctx: click.Context, run_or_job: str, tail: int | None, follow: bool, root: str | None
) -> None:
    """Print a job's log: a run's training job (RUN may be a run id prefix or an experiment
    name), or any job by its id, evaluation and export jobs included."""
    ws = _workspace(ctx, root)
    run, job_id = job_of(ws, run_or_job)
    if job_id is None:
        raise NotReadyError(f"{run.run_id} has no job yet")
    others = [j for j in run.stage_jobs if j.job_id and j.job_id != job_id]
    if others and job_id == (run.last_attempt.job_id if run.last_attempt else None):
        listing = ", ".join(f"{j.kind} {j.key}: {j.job_id}" for j in others)
        echo(f"# {run.run_id}: training job {job_id}; also {listing}", err=True)
    backend = ws.backend(run.backend)
    lines = backend.follow(job_id) if follow else backend.logs(job_id, tail=tail)
    for line in lines:
        echo(line)


def job_of(ws: Workspace, name: str) -> tuple[Run, str | None]:
    """The job a name means: a job id (training attempt or stage job), else a run's job."""
    for ledger in repository.ledgers(ws.project):
        for run in ledger.runs:
            if any(a.job_id == name for a in run.attempts):
                return run, name
            if any(j.job_id == name for j in run.stage_jobs):
                return run, name
    _, run = repository.find_run(ws.project, name)
    return run, run.last_attempt.job_id if run.last_attempt else None


@click.command()
@click.argument("run_id")
@ROOT_OPTION
@click.pass_context
def cancel(ctx: click.Context, run_id: str, root: str | None) -> None:
    """Cancel a run's jobs; its ledger and report say so at once."""
    ws = _workspace(ctx, root)
    ledger, run = repository.find_run(ws.project, run_id)
    stem = Path(ledger.report_path).stem
    if not run.active:
        echo(f"{run.run_id} is {run.status.label.lower()}; nothing to cancel")
        return
    jobs = [j.job_id for j in run.stage_jobs if j.job_id and not j.done]
    attempt = run.last_attempt
    if attempt and attempt.job_id and not attempt.state.terminal:
        jobs.insert(0, attempt.job_id)
    for job_id in jobs:
        ws.backend(run.backend).cancel(job_id)
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
    how = "it had not started" if not jobs else f"job {', '.join(jobs)}"
    echo(f"canceled {run.run_id} ({how})")
