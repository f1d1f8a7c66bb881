"""A run's jobs: ``logs`` (``-f`` to follow) and ``cancel`` (recorded at once)."""

from __future__ import annotations

import click

from ci_runner import commands as cmd
from ci_runner.cli.options import JSON_OPTION, ROOT_OPTION, workspace
from ci_runner.cli.output import echo, emit_json


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
    ws = workspace(ctx, root)
    if as_json:
        if follow:
            raise click.UsageError("--follow streams lines; use it without --json")
        emit_json(cmd.logs(ws, run_or_job, tail=tail).to_json())
        return
    run, job_id = cmd.job_of(ws, run_or_job)
    others = [j for j in run.phase_jobs if j.job_id and j.job_id != job_id]
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
    outcome = cmd.cancel(workspace(ctx, root), run_id)
    if as_json:
        emit_json(outcome.to_json())
    else:
        echo(outcome.message)
