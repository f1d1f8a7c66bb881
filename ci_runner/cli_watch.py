"""Watching runs: ``status`` (live, as ``hf jobs ps``), ``logs`` (``-f`` to follow) and
``cancel`` (recorded at once). Registered on the ``ci-runner`` group by ``cli.py``."""

from __future__ import annotations

import time

import click

from ci_runner import commands as cmd
from ci_runner.cli_output import (
    JSON_OPTION,
    echo,
    echo_findings,
    emit_json,
    end_if_unreadable,
    ledgers_json,
    warn,
)
from ci_runner.flow.workspace import Workspace
from ci_runner.ledger.model import Ledger

ROOT_OPTION = click.option(
    "--root",
    "root",
    default=None,
    type=click.Path(file_okay=False),
    help="Project root (the same as the global --root).",
)


def _workspace(ctx: click.Context, root: str | None = None) -> Workspace:
    return cmd.open_workspace(root or (ctx.obj or {}).get("root", "."))


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
        return cmd.status_ledgers(ws, names, warnings)

    if as_json:
        emit_json(ledgers_json(current()))
        end_if_unreadable([] if names else cmd.unreadable_ledgers(ws))
        return
    from ci_runner.cli_status import console, status_table

    out = console()
    ledgers = current()
    for warning in dict.fromkeys(warnings):
        warn(warning)
    unreadable = [] if names else cmd.unreadable_ledgers(ws)
    if not ledgers and not unreadable:
        echo("no experiments submitted yet; try `ci-runner submit experiments/<name>.yaml`")
        return
    if watch is None:
        out.print(status_table(ledgers))
        for ledger in ledgers:
            for run in ledger.runs:
                echo_findings(run)
        end_if_unreadable(unreadable)
        return
    from rich.live import Live

    try:
        with Live(status_table(ledgers), console=out, auto_refresh=False) as live:
            while True:
                time.sleep(watch)
                live.update(status_table(current()), refresh=True)
    except KeyboardInterrupt:
        return


@click.command()
@click.argument("run_or_job")
@click.option("--tail", type=int, default=None, help="Only the last N lines.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the job ends.")
@ROOT_OPTION
@JSON_OPTION
@click.pass_context
def logs(
    ctx: click.Context,
    run_or_job: str,
    tail: int | None,
    follow: bool,
    root: str | None,
    as_json: bool,
) -> None:
    """Print a job's log: a run's training job (RUN may be a run id prefix or an experiment
    name), or any job by its id, evaluation and export jobs included."""
    ws = _workspace(ctx, root)
    if as_json:
        if follow:
            raise click.UsageError("--follow streams lines; use it without --json")
        emit_json(cmd.logs(ws, run_or_job, tail=tail).to_json())
        return
    run, job_id = cmd.job_of(ws, run_or_job)
    others = [j for j in run.stage_jobs if j.job_id and j.job_id != job_id]
    if others and job_id == (run.last_attempt.job_id if run.last_attempt else None):
        listing = ", ".join(f"{j.kind} {j.key}: {j.job_id}" for j in others)
        echo(f"# {run.run_id}: training job {job_id}; also {listing}", err=True)
    backend = ws.backend(run.backend)
    lines = backend.follow(job_id) if follow else backend.logs(job_id, tail=tail)
    for line in lines:
        echo(line)


@click.command()
@click.argument("run_id")
@ROOT_OPTION
@JSON_OPTION
@click.pass_context
def cancel(ctx: click.Context, run_id: str, root: str | None, as_json: bool) -> None:
    """Cancel a run's jobs; its ledger and report say so at once."""
    outcome = cmd.cancel(_workspace(ctx, root), run_id)
    if as_json:
        emit_json(outcome.to_json())
    else:
        echo(outcome.message)
