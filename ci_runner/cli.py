"""``ci-runner``: the command line. Thin: parse, call the runner, print.

Human-readable output goes to stdout for reading commands, progress to stderr;
``--json`` prints one JSON document on stdout for scripts and agents. Exit codes
are listed in ``ci_runner.errors.ExitCode`` and the README.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
import time
from pathlib import Path

import click

from ci_runner import __version__
from ci_runner.data.formats import Verdict
from ci_runner.errors import CiRunnerError, DatasetViewerError, ExitCode, SpecError
from ci_runner.ledger.model import Run, RunStatus
from ci_runner.paths import Project
from ci_runner.plan.render import plan_to_json, render_plan
from ci_runner.plan.total import file_plan_to_json, render_file_plan
from ci_runner.report.health import check_run, fmt
from ci_runner.report.render import OVERVIEW_COLUMNS, wall_time
from ci_runner.runner import Runner, SubmitOutcome, methods_of
from ci_runner.spec.expand import expand
from ci_runner.spec.model import Experiment


def _fail(message: str, code: int) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def handle_errors(command):
    """Turn our errors into a message and their exit code; never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except CiRunnerError as exc:
            _fail(str(exc), exc.exit_code)

    return wrapper


def _emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _runner(ctx: click.Context) -> Runner:
    return Runner(Project(Path(ctx.obj["root"]).resolve()))


def _run_json(run: Run) -> dict:
    """The run without its curves; the latest value of each metric, the wall time (the
    runtime the report shows) and the health findings."""
    data = run.model_dump(mode="json", exclude={"hyperparameters"})
    spent = wall_time(run)
    data["wall_time_s"] = round(spent[0], 3) if spent else None
    if data.get("metrics"):
        data["metrics"].pop("loss_curve", None)
        data["metrics"].pop("series", None)
        data["metrics"]["latest"] = {key: run.metrics.last(key) for key in run.metrics.series}
    data["checks"] = [finding.to_json() for finding in check_run(run)]
    return data


def _echo_findings(run: Run, *, indent: str = "") -> None:
    """The run's health findings, each with its remedy, as warnings."""
    for finding in check_run(run):
        click.secho(f"{indent}warning: {run.run_id}: {finding.text}", fg="yellow")


def _methods(experiment: Experiment) -> str:
    """``sft``, or for a file with stages ``sft → dpo``."""
    if not experiment.is_multi_run:
        return experiment.method
    return (" → " if experiment.stages else " / ").join(methods_of(expand(experiment)))


def _progress_line(run: Run) -> str:
    parts = [f"{run.run_id}: {run.status.label}"]
    if run.waiting:
        parts.append("waiting to start" + (f" after {run.depends_on}" if run.depends_on else ""))
    if run.active and run.stage in ("eval", "export"):
        jobs = [j for j in run.stage_jobs if j.kind == run.stage]
        verb = "evaluating" if run.stage == "eval" else "exporting GGUF"
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
        parts.append(f"ETA {m.eta_s:.0f}s")
    findings = check_run(run)
    if findings:
        parts.append("⚠ " + ", ".join(f.title for f in findings))
    if run.error:
        parts.append(run.error)
    return " · ".join(parts)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root",
    default=".",
    envvar="CI_RUNNER_ROOT",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Project root holding experiments/, job_scripts/ and training_reports/.",
)
@click.version_option(__version__, prog_name="ci-runner")
@click.pass_context
def main(ctx: click.Context, root: str) -> None:
    """Run LLM fine-tuning experiments from experiment files."""
    ctx.ensure_object(dict)
    ctx.obj["root"] = root


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--data", "with_data", is_flag=True, help="Also check each dataset (reads rows).")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@click.pass_context
def validate(ctx: click.Context, files: tuple[str, ...], with_data: bool, as_json: bool) -> None:
    """Check experiment files (schema and TRL field names) without running anything.

    Exits 3 if a file is invalid; with --data, 7 if a dataset does not fit.
    """
    results, failed, misfit = [], 0, False
    runner = _runner(ctx)
    for file in files:
        warnings: list[str] = []
        try:
            experiment = runner.load(file, warnings=warnings)
        except SpecError as exc:
            # A wrong file (3) outranks one whose local inputs are only missing so far (4).
            failed = min(failed or exc.exit_code, exc.exit_code)
            results.append({"file": file, "valid": False, "errors": [vars(i) for i in exc.issues]})
            if not as_json:
                click.secho(str(exc), fg="red", err=True)
            continue
        if not as_json:
            for warning in warnings:
                click.secho(f"warning: {warning}", fg="yellow", err=True)
        results.append(
            {
                "file": file,
                "valid": True,
                "warnings": warnings,
                "name": experiment.name,
                "method": _methods(experiment),
                "spec_hash": experiment.spec_hash,
            }
        )
        if experiment.is_multi_run:  # identified by its runs (the file's own hash omits them)
            results[-1]["runs"] = [spec.run_id for spec in expand(experiment)]
            joined = ",".join(results[-1]["runs"]).encode()
            results[-1]["spec_hash"] = hashlib.sha256(joined).hexdigest()[:12]
        if not as_json:
            what = f"{experiment.name}: {_methods(experiment).upper()}, {experiment.backend}"
            if experiment.is_multi_run:
                what += f", {len(results[-1]['runs'])} runs"
            click.echo(f"ok  {file}  ({what})")
        if with_data:
            try:
                checks = _data_checks(runner, experiment)
            except CiRunnerError as exc:
                misfit = True
                results[-1]["data_error"] = str(exc)
                if not as_json:
                    click.secho(f"{file}: dataset: {exc}", fg="red", err=True)
                continue
            results[-1]["data"] = checks[0].to_json()
            if len(checks) > 1:
                results[-1]["data_per_run"] = [c.to_json() for c in checks]
            misfit |= any(c.verdict != Verdict.READY for c in checks)
            if not as_json:
                click.echo("\n".join(c.render() for c in checks))
    if as_json:
        _emit_json(results)
    if failed:
        sys.exit(failed)
    if misfit:
        sys.exit(ExitCode.DATA)


@main.command()
@click.option("--out", default="fixtures", show_default=True, type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Rebuild the model even if it exists.")
@click.pass_context
@handle_errors
def fixtures(ctx: click.Context, out: str, force: bool) -> None:
    """Build the tiny offline model, tokenizer and datasets used by the demo."""
    from ci_runner.fixtures import build_fixtures  # needs the [train] extra

    target = Path(ctx.obj["root"]) / out
    paths = build_fixtures(target, force=force)
    fields = {k: v for k, v in vars(paths).items() if v is not None}
    width = max(map(len, fields))
    for label, path in fields.items():
        click.echo(f"{label:<{width}}  {path}")


def _data_checks(runner: Runner, experiment: Experiment, *, remote: bool = False) -> list:
    """The experiment's data check; for a file with several runs, one per distinct dataset."""
    if not experiment.is_multi_run:
        return [runner.check_data(experiment, remote=remote)]
    if remote:
        seen: dict[str, object] = {}
        for spec in expand(experiment):
            key = spec.experiment.dataset.model_dump_json() + spec.experiment.method
            if key not in seen:
                seen[key] = runner.check_data(spec.experiment, remote=True)
        return list(seen.values())
    _, distinct, _ = runner.check_runs_data(expand(experiment))
    return [check for _, check in distinct]


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


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@BACKEND_OPTION
@SKIP_DATA_OPTION
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def plan(
    ctx: click.Context, file: str, backend: str | None, skip_data_check: bool, as_json: bool
) -> None:
    """Check the data, then show hardware, LoRA, memory, time and cost; nothing runs.

    Exits 7 when the dataset does not fit the method, 5 when the plan exceeds
    budget.max_cost_usd.
    """
    runner = _runner(ctx)
    warnings: list[str] = []
    experiment = runner.load(file, backend=backend, warnings=warnings)
    if experiment.is_multi_run:
        _plan_file(runner, experiment, skip_data_check=skip_data_check, as_json=as_json)
        return
    data = None
    if not skip_data_check:
        try:
            data = runner.check_data(experiment)
        except DatasetViewerError as exc:
            warnings.append(f"dataset not checked: {exc}")
    the_plan = runner.plan(experiment, data)
    if as_json:
        _emit_json(
            {
                "plan": plan_to_json(the_plan),
                "data": data.to_json() if data else None,
                "warnings": warnings,
            }
        )
    else:
        if data:
            click.echo(data.render() + "\n")
        for warning in warnings:
            click.secho(f"warning: {warning}", fg="yellow", err=True)
        click.echo(render_plan(the_plan))
    if data and data.verdict != Verdict.READY:
        sys.exit(ExitCode.DATA)
    if the_plan.over_budget:
        sys.exit(ExitCode.OVER_BUDGET)


def _plan_file(
    runner: Runner, experiment: Experiment, *, skip_data_check: bool, as_json: bool
) -> None:
    """Each run's plan, then the total; the budget applies to the total."""
    runs = expand(experiment)
    data, distinct, warnings = ({}, [], []) if skip_data_check else runner.check_runs_data(runs)
    file_plan = runner.plan_file(experiment, runs, data)
    if as_json:
        _emit_json(
            file_plan_to_json(file_plan)
            | {"data": [c.to_json() for _, c in distinct], "warnings": warnings}
        )
    else:
        for _, check in distinct:
            click.echo(check.render() + "\n")
        for warning in warnings:
            click.secho(f"warning: {warning}", fg="yellow", err=True)
        click.echo(render_file_plan(file_plan))
    if any(check.verdict != Verdict.READY for _, check in distinct):
        sys.exit(ExitCode.DATA)
    if file_plan.over_budget:
        sys.exit(ExitCode.OVER_BUDGET)


@main.command("check-data")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--dataset", "dataset", help="A Hub id or local path, instead of an experiment file.")
@click.option("--config", "config", default=None, help="Hub dataset config (with --dataset).")
@click.option("--split", default="train", show_default=True, help="Split (with --dataset).")
@click.option("--remote", is_flag=True, help="Read the rows in a CPU HF Jobs job.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
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
    runner = _runner(ctx)
    if file:
        experiment = runner.load(file)
        if experiment.is_multi_run:
            checks = _data_checks(runner, experiment, remote=remote)
            if as_json:
                _emit_json([c.to_json() for c in checks])
            else:
                click.echo("\n\n".join(c.render() for c in checks))
            if any(c.verdict != Verdict.READY for c in checks):
                sys.exit(ExitCode.DATA)
            return
        result = runner.check_data(experiment, remote=remote)
    else:
        result = runner.check_source(dataset, config=config, split=split, remote=remote)
    if as_json:
        _emit_json(result.to_json())
    else:
        click.echo(result.render())
    if result.method and result.verdict != Verdict.READY:
        sys.exit(ExitCode.DATA)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@BACKEND_OPTION
@BUDGET_OPTION
@SKIP_DATA_OPTION
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def submit(
    ctx: click.Context,
    file: str,
    backend: str | None,
    allow_over_budget: bool,
    skip_data_check: bool,
    as_json: bool,
) -> None:
    """Check data, plan and submit a run; does nothing if it was already submitted."""
    outcome = _submit(_runner(ctx), file, backend, allow_over_budget, skip_data_check)
    if as_json:
        _emit_json(_submit_json(outcome))
        return
    if outcome.runs:
        _echo_runs(outcome)
        return
    if outcome.plan:
        click.echo(render_plan(outcome.plan))
    verb = "submitted" if outcome.created else "already submitted, nothing to do:"
    click.echo(f"{verb} {outcome.run_id} as job {outcome.job_id}")
    click.echo(f"  logs:   {outcome.job_url}")
    click.echo(f"  report: {outcome.report}")


def _submit_json(outcome: SubmitOutcome) -> dict:
    data = vars(outcome) | {"report": str(outcome.report)}
    data["plan"] = plan_to_json(outcome.plan) if outcome.plan else None
    file_plan = data.pop("file_plan")
    runs = data.pop("runs")
    if runs:  # a file with stages or a matrix
        data["runs"] = [vars(r) for r in runs]
        data["file_plan"] = file_plan_to_json(file_plan) if file_plan else None
    return data


def _echo_runs(outcome: SubmitOutcome) -> None:
    if outcome.file_plan:
        click.echo(render_file_plan(outcome.file_plan))
    for run in outcome.runs:
        if run.status == "submitted":
            click.echo(f"submitted {run.title} as job {run.job_id}")
            click.echo(f"  logs:   {run.job_url}")
        elif run.status == "already submitted":
            click.echo(f"already submitted, nothing to do: {run.title} (job {run.job_id})")
        elif run.status == "waiting":
            click.echo(f"queued {run.title}: waiting for {run.waiting_for}")
        else:
            click.echo(f"not started: {run.title}")
    click.echo(f"report: {outcome.report}")


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def poll(ctx: click.Context, as_json: bool) -> None:
    """Advance every active run from its backend, then update ledgers and reports."""
    outcome = _runner(ctx).poll()
    if as_json:
        _emit_json(
            {
                "runs": [_run_json(r) for r in outcome.runs],
                "changed": [str(p) for p in outcome.changed],
            }
        )
        return
    if not outcome.runs:
        click.echo("no active runs")
    for run in outcome.runs:
        click.echo(_progress_line(run))
    for path in outcome.changed:
        click.echo(f"updated {path}")


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def status(ctx: click.Context, as_json: bool) -> None:
    """Show every run recorded in the ledgers (no backend calls; see `poll`)."""
    ledgers = _runner(ctx).ledgers()
    if as_json:
        _emit_json(
            [
                {
                    "experiment": led.experiment,
                    "report": led.report_path,
                    "runs": [_run_json(r) for r in led.runs],
                }
                for led in ledgers
            ]
        )
        return
    if not ledgers:
        click.echo("no experiments submitted yet; try `ci-runner submit experiments/<name>.yaml`")
    for ledger in ledgers:
        click.echo(f"{ledger.experiment}  ({ledger.report_path})")
        for run in ledger.runs:
            click.echo(f"  {_progress_line(run)}")
            _echo_findings(run, indent="    ")


@main.command()
@click.argument("run_id")
@click.option("--tail", type=int, default=None, help="Only the last N lines.")
@click.pass_context
@handle_errors
def logs(ctx: click.Context, run_id: str, tail: int | None) -> None:
    """Print a run's job log (RUN_ID may be a run id prefix or an experiment name)."""
    runner = _runner(ctx)
    _, run = runner.find_run(run_id)
    if not run.last_attempt or not run.last_attempt.job_id:
        _fail(f"{run.run_id} has no job yet", ExitCode.NOT_READY)
    for line in runner.backend(run.backend).logs(run.last_attempt.job_id, tail=tail):
        click.echo(line)


@main.command()
@click.argument("run_id")
@click.pass_context
@handle_errors
def cancel(ctx: click.Context, run_id: str) -> None:
    """Cancel a run's job; the next `poll` records it as canceled."""
    runner = _runner(ctx)
    _, run = runner.find_run(run_id)
    if run.waiting and runner.cancel_waiting(run.run_id):
        click.echo(f"canceled {run.run_id} (it had not started)")
        return
    if not run.active or not run.last_attempt or not run.last_attempt.job_id:
        click.echo(f"{run.run_id} is {run.status.label.lower()}; nothing to cancel")
        return
    runner.backend(run.backend).cancel(run.last_attempt.job_id)
    runner.poll()
    click.echo(f"canceled {run.run_id} (job {run.last_attempt.job_id})")


@main.command()
@click.pass_context
@handle_errors
def report(ctx: click.Context) -> None:
    """Re-render every report from its ledger; writes only files that change."""
    changed = _runner(ctx).report()
    for path in changed:
        click.echo(f"updated {path}")
    if not changed:
        click.echo("reports are up to date")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@BACKEND_OPTION
@BUDGET_OPTION
@SKIP_DATA_OPTION
@click.option("--interval", default=2.0, show_default=True, help="Seconds between polls.")
@click.option("--timeout", type=float, default=None, help="Stop waiting after N seconds (exit 12).")
@click.option("--json", "as_json", is_flag=True, help="Print the final run as JSON.")
@click.pass_context
@handle_errors
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
    """Submit, poll until the run ends, render the report. Exit code = run outcome."""
    runner = _runner(ctx)
    outcome = _submit(runner, file, backend, allow_over_budget, skip_data_check)
    if outcome.runs:
        _run_file(runner, outcome, timeout=timeout, interval=interval, as_json=as_json)
    click.echo(
        f"{'submitted' if outcome.created else 'watching'} {outcome.run_id} "
        f"(job {outcome.job_id}; logs: {outcome.job_url})",
        err=True,
    )
    runs = _watch(runner, [outcome.run_id], timeout=timeout, interval=interval)
    (current,) = runs
    if as_json:
        _emit_json(_run_json(current))
    else:
        click.echo(f"{current.status.label}: {current.run_id}")
        _echo_findings(current)
        click.echo(f"report: {outcome.report}")
    sys.exit(outcome_code(runs))


def _run_file(
    runner: Runner, outcome: SubmitOutcome, *, timeout: float | None, interval: float, as_json: bool
) -> None:
    """`run` for a file with stages or a matrix: watch every run; exit with their outcome."""
    for run in outcome.runs:
        how = f"job {run.job_id}" if run.job_id else f"waiting for {run.waiting_for or 'a turn'}"
        click.echo(f"{run.status} {run.title} ({how})", err=True)
    runs = _watch(runner, [r.run_id for r in outcome.runs], timeout=timeout, interval=interval)
    if as_json:
        _emit_json([_run_json(r) for r in runs])
    else:
        for run in runs:
            click.echo(
                f"{run.status.label}: {run.run_id}" + (f" — {run.error}" if run.error else "")
            )
            _echo_findings(run)
        click.echo(f"report: {outcome.report}")
    sys.exit(outcome_code(runs))


@main.command()
@click.argument("experiments", nargs=-1)
@click.option(
    "--timeout", type=float, default=None, help="Give up after this many seconds (exit 12)."
)
@click.option("--interval", default=10.0, show_default=True, help="Seconds between polls.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary of the runs.")
@click.pass_context
@handle_errors
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
    runner = _runner(ctx)
    if experiments:
        run_ids = [r.run_id for name in experiments for r in runner.runs_of(name)]
    else:
        run_ids = [r.run_id for led in runner.ledgers() for r in led.active_runs]
    runs = _watch(runner, run_ids, timeout=timeout, interval=interval) if run_ids else []
    if as_json:
        _emit_json({"exit_code": outcome_code(runs), "runs": [_run_json(r) for r in runs]})
    else:
        for run in runs:
            click.echo(
                f"{run.status.label}: {run.run_id}" + (f" — {run.error}" if run.error else "")
            )
            _echo_findings(run)
        if not runs:
            click.echo("no runs to wait for")
    sys.exit(outcome_code(runs))


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


def _watch(
    runner: Runner, run_ids: list[str], *, timeout: float | None, interval: float
) -> list[Run]:
    """Poll until the runs end or the timeout passes; progress lines to stderr."""
    deadline = None if timeout is None else time.monotonic() + timeout
    shown: dict[str, str] = {}
    try:
        while True:
            runner.poll()
            runs = [runner.find_run(run_id)[1] for run_id in run_ids]
            for run in runs:
                line = _progress_line(run)
                if shown.get(run.run_id) != line:
                    click.echo(f"  {line}", err=True)
                    shown[run.run_id] = line
            if not any(r.active for r in runs):
                return runs
            if deadline is not None and time.monotonic() >= deadline:
                click.echo(f"stopped waiting after {timeout:.0f}s; runs continue", err=True)
                return runs
            time.sleep(interval)
    except KeyboardInterrupt:
        click.echo(
            "\nstopped watching; jobs keep running. Check with `ci-runner poll`, "
            "stop one with `ci-runner cancel RUN`.",
            err=True,
        )
        sys.exit(130)


def _submit(
    runner: Runner, file: str, backend: str | None, allow_over_budget: bool, skip_data_check: bool
):
    """Submit as `submit` and `run` both do, warnings to stderr."""
    outcome = runner.submit(
        Path(file),
        backend=backend,
        allow_over_budget=allow_over_budget,
        check_data=not skip_data_check,
    )
    for warning in outcome.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    return outcome


def _register_github_commands() -> None:
    from ci_runner.cli_github import action, publish

    main.add_command(action)
    main.add_command(publish)


_register_github_commands()

if __name__ == "__main__":
    main()
