"""Commands on experiment files and their runs: check, plan, submit, poll, report, and
``run``/``wait``, which watch runs to their end."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ci_runner import commands as cmd
from ci_runner.cli.options import (
    BACKEND_OPTION,
    BUDGET_OPTION,
    JSON_OPTION,
    SKIP_DATA_OPTION,
    workspace,
)
from ci_runner.cli.output import echo, echo_findings, emit_json, end_if_unreadable, warn
from ci_runner.cli.status import console, progress_bar
from ci_runner.documents import (
    outcome_code,
    plan_json,
    plan_text,
    progress_line,
    run_json,
    submit_json,
    submit_text,
)
from ci_runner.flow.submit import SubmitOutcome
from ci_runner.flow.workspace import Workspace
from ci_runner.ledger.model import Run
from ci_runner.publish.redact import redact

T = TypeVar("T")


# --- reading commands ---------------------------------------------------------------------


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--data", "with_data", is_flag=True, help="Also check each dataset (reads rows).")
@JSON_OPTION
@click.pass_context
def validate(ctx: click.Context, files: tuple[str, ...], with_data: bool, as_json: bool) -> None:
    """Check experiment files, their paths and reward code, without running anything.

    Exits 3 if a file is invalid (4 if it only points at local inputs not built yet);
    with --data, 7 if a dataset does not fit.
    """
    ws = workspace(ctx)
    results = []
    for file in files:
        result = cmd.validate_file(ws, file, with_data=with_data)
        results.append(result)
        if as_json:
            continue
        if result.error is not None:
            click.secho(redact(str(result.error)), fg="red", err=True)
            continue
        for warning in result.warnings:
            warn(warning)
        echo(f"ok  {file}  ({result.summary})")
        if result.data_error is not None:
            click.secho(f"{file}: dataset: {redact(str(result.data_error))}", fg="red", err=True)
        elif result.checks:
            echo("\n".join(c.render() for c in result.checks))
    if as_json:
        emit_json([r.document for r in results])
    code = cmd.validate_exit_code(results)
    if code:
        sys.exit(code)


@click.command()
@click.option(
    "--markdown", is_flag=True, help="Print the field reference (a table) instead of the schema."
)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON Schema (the default).")
def schema(markdown: bool, as_json: bool) -> None:
    """Print the JSON Schema of experiment files, for editors and validators.

    Editors read it from a file's first line, `# yaml-language-server: $schema=PATH`;
    `check-jsonschema --schemafile PATH experiments/x.yaml` checks a file against it.
    """
    from ci_runner.spec.schema import field_reference, schema_text

    if markdown and as_json:
        raise click.UsageError("--markdown and --json exclude each other")
    click.echo(field_reference() if markdown else schema_text(), nl=False)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@BACKEND_OPTION
@SKIP_DATA_OPTION
@JSON_OPTION
@click.pass_context
def plan(
    ctx: click.Context, file: str, backend: str | None, skip_data_check: bool, as_json: bool
) -> None:
    """Check the data, then show hardware, LoRA, memory, time and cost; nothing runs.

    Exits 7 when the dataset does not fit the method, 5 when the plan exceeds
    budget.max_cost_usd (for a file of several runs: their total).
    """
    result, code = cmd.plan_file(
        workspace(ctx), file, backend=backend, check_data=not skip_data_check
    )
    if as_json:
        emit_json(plan_json(result))
    else:
        for warning in result.warnings:
            warn(warning)
        echo(plan_text(result))
    if code:
        sys.exit(code)


@click.command("check-data")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--dataset", "dataset", help="A Hub id or local path, instead of an experiment file.")
@click.option("--config", "config", default=None, help="Hub dataset config (with --dataset).")
@click.option("--split", default="train", show_default=True, help="Split (with --dataset).")
@click.option("--remote", is_flag=True, help="Read the rows in a CPU HF Jobs job.")
@JSON_OPTION
@click.pass_context
def check_data(
    ctx: click.Context,
    file: str | None,
    dataset: str | None,
    config: str | None,
    split: str,
    remote: bool,
    as_json: bool,
) -> None:
    """Say, per method, whether a dataset fits: READY, NEEDS MAPPING or INCOMPATIBLE.

    With FILE, checks the experiment's dataset (after its `dataset.columns` mapping)
    against its method and max_length, and exits 7 unless it is READY.
    """
    if bool(file) == bool(dataset):
        raise click.UsageError("give an experiment FILE or --dataset ID_OR_PATH (not both)")
    ws = workspace(ctx)
    if dataset:
        shown = cmd.check_data_source(ws, dataset, config=config, split=split, remote=remote)
    else:
        assert file is not None
        shown = cmd.check_data_file(ws, file, remote=remote)
    _show(shown.document, shown.text, as_json)
    if shown.exit_code:
        sys.exit(shown.exit_code)


# --- commands that act ------------------------------------------------------------------


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@BACKEND_OPTION
@BUDGET_OPTION
@SKIP_DATA_OPTION
@click.option(
    "--rerun",
    is_flag=True,
    help="Start a fresh replicate of each recorded run: the same pinned inputs under the "
    "next seed, in the same report.",
)
@JSON_OPTION
@click.pass_context
def submit(
    ctx: click.Context,
    file: str,
    backend: str | None,
    allow_over_budget: bool,
    skip_data_check: bool,
    rerun: bool,
    as_json: bool,
) -> None:
    """Check data, plan and submit a file's runs; does nothing for runs already submitted
    (with --rerun, starts another seed of each)."""
    outcome = _submit(
        workspace(ctx), file, backend, allow_over_budget, skip_data_check, rerun=rerun
    )
    _show(submit_json(outcome), submit_text(outcome), as_json)


@click.command()
@JSON_OPTION
@click.pass_context
def poll(ctx: click.Context, as_json: bool) -> None:
    """Advance every active run from its backend, then update ledgers and reports."""
    outcome = cmd.poll(workspace(ctx))
    if as_json:
        emit_json(cmd.poll_document(outcome))
    else:
        if not outcome.runs:
            echo("no active runs")
        for run in outcome.runs:
            echo(progress_line(run))
        for path in outcome.changed:
            echo(f"updated {path}")
    end_if_unreadable(outcome.corrupt)


@click.command()
@JSON_OPTION
@click.pass_context
def report(ctx: click.Context, as_json: bool) -> None:
    """Re-render every report from its ledger; writes only files that change."""
    ws = workspace(ctx)
    changed = cmd.report(ws)
    if as_json:
        emit_json(cmd.report_document(changed))
    else:
        for path in changed:
            echo(f"updated {path}")
        if not changed:
            echo("reports are up to date")
    end_if_unreadable(cmd.unreadable_ledgers(ws))


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@BACKEND_OPTION
@BUDGET_OPTION
@SKIP_DATA_OPTION
@click.option("--interval", default=2.0, show_default=True, help="Seconds between polls.")
@click.option("--timeout", type=float, default=None, help="Stop waiting after N seconds (exit 12).")
@click.option("--json", "as_json", is_flag=True, help="Print the final run(s) as JSON.")
@click.pass_context
def run(
    ctx: click.Context,
    file: str,
    backend: str | None,
    allow_over_budget: bool,
    skip_data_check: bool,
    interval: float,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Submit, poll until the runs end, render the report. Exit code = the runs' outcome."""
    ws = workspace(ctx)

    def submitted(outcome: SubmitOutcome) -> None:
        for warning in outcome.warnings:
            warn(warning)
        if outcome.runs:
            for r in outcome.runs:
                how = f"job {r.job_id}" if r.job_id else f"waiting for {r.waiting_for or 'a turn'}"
                echo(f"{r.status} {r.title} ({how})", err=True)
            return
        verb = "submitted" if outcome.created else "watching"
        echo(f"{verb} {outcome.run_id} (job {outcome.job_id}; logs: {outcome.job_url})", err=True)

    ran = _watching(
        lambda on_line, on_runs: cmd.run_file(
            ws,
            file,
            backend=backend,
            allow_over_budget=allow_over_budget,
            check_data=not skip_data_check,
            timeout=timeout,
            interval=interval,
            on_submitted=submitted,
            on_line=on_line,
            on_runs=on_runs,
        )
    )
    outcome, runs = ran.submitted, ran.runs
    if as_json:
        emit_json([run_json(r) for r in runs] if outcome.runs else run_json(runs[0]))
    else:
        for run_ in runs:
            echo(f"{run_.status.label}: {run_.run_id}" + (f" — {run_.error}" if run_.error else ""))
            echo_findings(run_)
        echo(f"report: {outcome.report}")
    sys.exit(ran.exit_code)


@click.command()
@click.argument("experiments", nargs=-1)
@click.option(
    "--timeout", type=float, default=None, help="Give up after this many seconds (exit 12)."
)
@click.option("--interval", default=10.0, show_default=True, help="Seconds between polls.")
@JSON_OPTION
@click.pass_context
def wait(
    ctx: click.Context,
    experiments: tuple[str, ...],
    timeout: float | None,
    interval: float,
    as_json: bool,
) -> None:
    """Block until every run of EXPERIMENTS (default: all active runs) has ended.

    Exit 0 if all completed, 10 if any failed, 11 if any was canceled (and none
    failed), 12 if --timeout passed first. Progress goes to stderr.
    """
    ws = workspace(ctx)
    run_ids = cmd.wait_run_ids(ws, experiments)
    runs = _watch(ws, run_ids, timeout=timeout, interval=interval)
    if as_json:
        emit_json(cmd.wait_document(runs))
    else:
        for r in runs:
            echo(f"{r.status.label}: {r.run_id}" + (f" — {r.error}" if r.error else ""))
            echo_findings(r)
        if not runs:
            echo("no runs to wait for")
    sys.exit(outcome_code(runs))


def _show(data: Any, text: str, as_json: bool) -> None:
    if as_json:
        emit_json(data)
    else:
        echo(text)


def _watch(
    ws: Workspace, run_ids: list[str], *, timeout: float | None, interval: float
) -> list[Run]:
    return _watching(
        lambda on_line, on_runs: cmd.watch(
            ws, run_ids, timeout=timeout, interval=interval, on_line=on_line, on_runs=on_runs
        )
    )


def _watching(
    watch: Callable[[Callable[[str], None], Callable[[list[Run]], None] | None], T],
) -> T:
    """Run ``watch`` with a display: on a terminal, one live line per run (a progress bar,
    step and loss) on stderr; piped (CI logs), a plain line whenever a run's line changes.
    """
    err = console(stderr=True)
    live = None
    on_runs = None
    if err.is_terminal:
        from rich.live import Live

        live = Live("", console=err, auto_refresh=False, transient=False)
        live.start()

        def on_runs(runs: list[Run]) -> None:
            live.update("\n".join(progress_bar(r) for r in runs), refresh=True)

    try:
        return watch(lambda line: echo(line, err=True), on_runs)
    except KeyboardInterrupt:
        echo(
            "\nstopped watching; jobs keep running. Check with `ci-runner poll`, "
            "stop one with `ci-runner cancel RUN`.",
            err=True,
        )
        sys.exit(130)
    finally:
        if live is not None:
            live.stop()


def _submit(
    ws: Workspace,
    file: str,
    backend: str | None,
    allow_over_budget: bool,
    skip_data_check: bool,
    *,
    rerun: bool = False,
) -> SubmitOutcome:
    """Submit, warnings to stderr."""
    outcome = cmd.submit_file(
        ws,
        file,
        backend=backend,
        allow_over_budget=allow_over_budget,
        check_data=not skip_data_check,
        rerun=rerun,
    )
    for warning in outcome.warnings:
        warn(warning)
    return outcome
