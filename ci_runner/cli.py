"""``ci-runner``: the command line. Parse, call the flow, print (``cli_output``).

Human-readable output goes to stdout for reading commands, progress to stderr;
``--json`` prints one JSON document on stdout for scripts and agents. Every error ends
in one place (``CliGroup``) with its exit code (``ci_runner.errors.ExitCode``, listed in
the README) and a message with secrets redacted.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from ci_runner import __version__
from ci_runner.cli_output import (
    JSON_OPTION,
    echo,
    echo_findings,
    emit_json,
    methods,
    outcome_code,
    plan_json,
    plan_text,
    progress_line,
    run_json,
    submit_json,
    submit_text,
    warn,
)
from ci_runner.core.hashing import file_hash
from ci_runner.data.formats import Verdict
from ci_runner.errors import CiRunnerError, ExitCode, SpecError
from ci_runner.flow import preflight as pre
from ci_runner.flow.poll import poll as poll_once
from ci_runner.flow.submit import SubmitOutcome
from ci_runner.flow.submit import submit as submit_file
from ci_runner.flow.workspace import Workspace
from ci_runner.ledger import repository
from ci_runner.ledger.model import Run
from ci_runner.paths import Project
from ci_runner.publish.redact import redact
from ci_runner.report.files import write_all
from ci_runner.spec.expand import expand


class CliGroup(click.Group):
    """Turns every ci-runner error into its message and exit code; never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CiRunnerError as exc:
            click.secho(f"error: {redact(str(exc))}", fg="red", err=True)
            sys.exit(exc.exit_code)


def workspace(ctx: click.Context) -> Workspace:
    """The project at ``--root``; evaluations push their model card as they close."""
    from ci_runner.publish.model_card import push_card_after_eval

    project = Project(Path(ctx.obj["root"]).resolve())
    return Workspace(project, on_evaluated=push_card_after_eval)


@click.group(cls=CliGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root",
    default=".",
    envvar="CI_RUNNER_ROOT",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Project root holding experiments/ and training_reports/.",
)
@click.version_option(__version__, prog_name="ci-runner")
@click.pass_context
def main(ctx: click.Context, root: str) -> None:
    """Run LLM fine-tuning experiments from experiment files."""
    ctx.ensure_object(dict)
    ctx.obj["root"] = root


BACKEND_OPTION = click.option(
    "--backend",
    type=click.Choice(["local", "hf-jobs"]),
    default=None,
    help="Override the experiment file's backend.",
)
BUDGET_OPTION = click.option(
    "--allow-over-budget", is_flag=True, help="Submit even if the plan exceeds budget.max_cost_usd."
)
SKIP_DATA_OPTION = click.option(
    "--skip-data-check", is_flag=True, help="Do not read the dataset before planning."
)


# --- reading commands ---------------------------------------------------------------------


@main.command()
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
    results: list[dict[str, Any]] = []
    failed, misfit = 0, False
    for file in files:
        warnings: list[str] = []
        try:
            experiment = ws.load(file, warnings=warnings)
        except SpecError as exc:
            # A wrong file (3) outranks one whose local inputs are only missing so far (4).
            failed = min(failed or exc.exit_code, exc.exit_code)
            results.append({"file": file, "valid": False, "errors": [vars(i) for i in exc.issues]})
            if not as_json:
                click.secho(redact(str(exc)), fg="red", err=True)
            continue
        for warning in [] if as_json else warnings:
            warn(warning)
        result: dict[str, Any] = {
            "file": file,
            "valid": True,
            "warnings": warnings,
            "name": experiment.name,
            "method": methods(experiment),
            "spec_hash": experiment.spec_hash,
        }
        runs = expand(experiment)
        if experiment.is_multi_run:  # identified by its runs (the file's own hash omits them)
            result["runs"] = [spec.run_id for spec in runs]
            result["spec_hash"] = file_hash(result["runs"])
        results.append(result)
        if not as_json:
            what = f"{experiment.name}: {methods(experiment).upper()}, {experiment.backend}"
            if experiment.is_multi_run:
                what += f", {len(runs)} runs"
            echo(f"ok  {file}  ({what})")
        if with_data:
            try:
                checks = pre.check_runs_data(ws, runs, strict=True).checks
            except CiRunnerError as exc:
                misfit = True
                result["data_error"] = str(exc)
                if not as_json:
                    click.secho(f"{file}: dataset: {redact(str(exc))}", fg="red", err=True)
                continue
            if checks:
                result["data"] = checks[0].to_json()
            if len(checks) > 1:
                result["data_per_run"] = [c.to_json() for c in checks]
            misfit |= any(c.verdict != Verdict.READY for c in checks)
            if not as_json:
                echo("\n".join(c.render() for c in checks))
    if as_json:
        emit_json(results)
    if failed:
        sys.exit(failed)
    if misfit:
        sys.exit(ExitCode.DATA)


@main.command()
@click.option("--out", default="fixtures", show_default=True, type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Rebuild the model even if it exists.")
@click.pass_context
def fixtures(ctx: click.Context, out: str, force: bool) -> None:
    """Build the tiny offline model, tokenizer and datasets used by the demo."""
    from ci_runner.fixtures import build_fixtures  # needs the [train] extra

    paths = build_fixtures(Path(ctx.obj["root"]) / out, force=force)
    fields = {k: v for k, v in vars(paths).items() if v is not None}
    width = max(map(len, fields))
    for label, path in fields.items():
        echo(f"{label:<{width}}  {path}")


@main.command()
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
    result = pre.preflight(
        workspace(ctx), Path(file), backend=backend, check_data=not skip_data_check
    )
    if as_json:
        emit_json(plan_json(result))
    else:
        for warning in result.warnings:
            warn(warning)
        echo(plan_text(result))
    if result.data.misfits:
        sys.exit(ExitCode.DATA)
    if result.plan.over_budget:
        sys.exit(ExitCode.OVER_BUDGET)


@main.command("check-data")
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
        result = pre.check_source(ws, dataset, config=config, split=split, remote=remote)
        _show(result.to_json(), result.render(), as_json)
        return
    assert file is not None
    experiment = ws.load(file)
    checks = pre.check_runs_data(ws, expand(experiment), remote=remote, strict=True)
    if experiment.is_multi_run:
        rendered = "\n\n".join(c.render() for c in checks.checks)
        _show([c.to_json() for c in checks.checks], rendered, as_json)
    else:
        (only,) = checks.checks
        _show(only.to_json(), only.render(), as_json)
    if checks.misfits:
        sys.exit(ExitCode.DATA)


# --- commands that act ------------------------------------------------------------------


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@BACKEND_OPTION
@BUDGET_OPTION
@SKIP_DATA_OPTION
@JSON_OPTION
@click.pass_context
def submit(
    ctx: click.Context,
    file: str,
    backend: str | None,
    allow_over_budget: bool,
    skip_data_check: bool,
    as_json: bool,
) -> None:
    """Check data, plan and submit a file's runs; does nothing for runs already submitted."""
    outcome = _submit(workspace(ctx), file, backend, allow_over_budget, skip_data_check)
    _show(submit_json(outcome), submit_text(outcome), as_json)


@main.command()
@JSON_OPTION
@click.pass_context
def poll(ctx: click.Context, as_json: bool) -> None:
    """Advance every active run from its backend, then update ledgers and reports."""
    outcome = poll_once(workspace(ctx))
    if as_json:
        changed = [str(p) for p in outcome.changed]
        emit_json({"runs": [run_json(r) for r in outcome.runs], "changed": changed})
        return
    if not outcome.runs:
        echo("no active runs")
    for run in outcome.runs:
        echo(progress_line(run))
    for path in outcome.changed:
        echo(f"updated {path}")


@main.command()
@click.pass_context
def report(ctx: click.Context) -> None:
    """Re-render every report from its ledger; writes only files that change."""
    changed = write_all(workspace(ctx).project)
    for path in changed:
        echo(f"updated {path}")
    if not changed:
        echo("reports are up to date")


@main.command()
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
    outcome = _submit(ws, file, backend, allow_over_budget, skip_data_check)
    if outcome.runs:
        for r in outcome.runs:
            how = f"job {r.job_id}" if r.job_id else f"waiting for {r.waiting_for or 'a turn'}"
            echo(f"{r.status} {r.title} ({how})", err=True)
        run_ids = [r.run_id for r in outcome.runs]
    else:
        verb = "submitted" if outcome.created else "watching"
        echo(f"{verb} {outcome.run_id} (job {outcome.job_id}; logs: {outcome.job_url})", err=True)
        run_ids = [outcome.run_id]
    runs = _watch(ws, run_ids, timeout=timeout, interval=interval)
    if as_json:
        emit_json([run_json(r) for r in runs] if outcome.runs else run_json(runs[0]))
    elif outcome.runs:
        for r in runs:
            echo(f"{r.status.label}: {r.run_id}" + (f" — {r.error}" if r.error else ""))
            echo_findings(r)
        echo(f"report: {outcome.report}")
    else:
        echo(f"{runs[0].status.label}: {runs[0].run_id}")
        echo_findings(runs[0])
        echo(f"report: {outcome.report}")
    sys.exit(outcome_code(runs))


@main.command()
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
    if experiments:
        run_ids = [r.run_id for n in experiments for r in repository.runs_of(ws.project, n)]
    else:
        ledgers = repository.ledgers(ws.project)
        run_ids = [r.run_id for led in ledgers for r in led.active_runs]
    runs = _watch(ws, run_ids, timeout=timeout, interval=interval) if run_ids else []
    if as_json:
        emit_json({"exit_code": outcome_code(runs), "runs": [run_json(r) for r in runs]})
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
    """Poll until the runs end or the timeout passes, waking as soon as a local job ends.

    On a terminal, one live line per run (a progress bar, step and loss) on stderr;
    piped (CI logs), a plain line whenever a run's line changes.
    """
    from ci_runner.cli_status import console, progress_bar

    deadline = None if timeout is None else time.monotonic() + timeout
    err = console(stderr=True)
    live = None
    if err.is_terminal:
        from rich.live import Live

        live = Live("", console=err, auto_refresh=False, transient=False)
        live.start()
    shown: dict[str, str] = {}
    try:
        while True:
            poll_once(ws)
            runs = [repository.find_run(ws.project, run_id)[1] for run_id in run_ids]
            if live is not None:
                live.update("\n".join(progress_bar(r) for r in runs), refresh=True)
            else:
                for r in runs:
                    line = progress_line(r)
                    if shown.get(r.run_id) != line:
                        echo(f"  {line}", err=True)
                        shown[r.run_id] = line
            if not any(r.active for r in runs):
                return runs
            if deadline is not None and time.monotonic() >= deadline:
                echo(f"stopped waiting after {timeout:.0f}s; runs continue", err=True)
                return runs
            ws.wait_for_news(runs, interval)
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
    ws: Workspace, file: str, backend: str | None, allow_over_budget: bool, skip_data_check: bool
) -> SubmitOutcome:
    """Submit as `submit` and `run` both do, warnings to stderr."""
    outcome = submit_file(
        ws,
        Path(file),
        backend=backend,
        allow_over_budget=allow_over_budget,
        check_data=not skip_data_check,
    )
    for warning in outcome.warnings:
        warn(warning)
    return outcome


def _register_commands() -> None:
    from ci_runner.cli_github import action, publish
    from ci_runner.cli_watch import cancel, logs, status

    for command in (status, logs, cancel, action, publish):
        main.add_command(command)


_register_commands()

if __name__ == "__main__":
    main()
