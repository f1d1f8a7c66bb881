"""The action's entry point: ``python -m ci_runner.action`` (action.yml's last step).

One command over the experiment files, through the functions the CLI and the MCP server
call (:mod:`ci_runner.commands`); then the outputs, the step summary and, given a GitHub
token, the results branch and pull request (or the plan comment on a pull request).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ci_runner import commands as cmd
from ci_runner.action import event as events
from ci_runner.action.inputs import Command, Inputs
from ci_runner.action.outcome import Outcome
from ci_runner.action.runner_files import WorkflowLog, append_summary, write_outputs
from ci_runner.core.inert import block, prose, quote
from ci_runner.core.jobs import BackendName
from ci_runner.errors import CiRunnerError, ExitCode, NotReadyError
from ci_runner.flow.workspace import Workspace
from ci_runner.ledger import repository
from ci_runner.paths import Project
from ci_runner.plan.render import render_plan
from ci_runner.plan.total import render_totals
from ci_runner.publish import comment as plan_comment
from ci_runner.publish.plans import entry_of, failed_entry
from ci_runner.publish.pr_body import summary_block
from ci_runner.publish.redact import redact
from ci_runner.report.markdown import code, table

if TYPE_CHECKING:
    from ci_runner.flow.submit import SubmitOutcome
    from ci_runner.publish.comment import PlanEntry
    from ci_runner.publish.git import Git
    from ci_runner.publish.reports import Target

RUN_POLL_INTERVAL_S = 30.0

LOCAL_SUBMIT_REFUSED = (
    "{file}: `submit` with the local backend is refused in the GitHub Action: a local job "
    "runs on this runner and dies with it, so no later poll could ever finish it. Use "
    "`command: run` on a self-hosted runner (it trains, evaluates and reports in one job; "
    "add `extras: train`), or `backend: hf-jobs` (set in the file or as the action's "
    "`backend` input)."
)


# -- commands ---------------------------------------------------------------------------


def do_validate(ws: Workspace, files: list[str], out: Outcome) -> None:
    rows, errors = [], []
    for file in files:
        result = cmd.validate_file(ws, file)
        if result.error is not None:
            rows.append([code(file), "", "", "", "invalid"])
            errors.append(str(result.error))
            out.fail(result.error.exit_code)
            continue
        name, method = result.document["name"], result.document["method"]
        out.acted_on(name, result.run_ids)
        backend = result.experiment.backend if result.experiment else ""
        rows.append([code(file), code(name), method.upper(), backend, "ok"])
    header = ("File", "Experiment", "Method", "Backend", "Result")
    text = "## ci-runner validate\n\n" + (table(header, rows) if rows else "_No files._")
    if errors:
        text += "\n\n" + block("\n".join(errors))
    out.summary.append(text)


def do_check_data(ws: Workspace, files: list[str], out: Outcome) -> None:
    blocks = ["## ci-runner check-data"]
    for file in files:
        try:
            validation = cmd.validate_file(ws, file)
            if validation.error is not None:
                raise validation.error
            shown = cmd.check_data_file(ws, file)
        except CiRunnerError as exc:
            out.fail(exc.exit_code)
            blocks.append(f"### {code(file)}\n\n{block(str(exc))}")
            continue
        out.fail(shown.exit_code)
        out.acted_on(validation.document["name"], validation.run_ids)
        blocks.append(f"### {code(file)}\n\n{block(shown.text)}")
    out.summary.append("\n\n".join(blocks))


def do_plan(
    ws: Workspace, inputs: Inputs, files: list[str], out: Outcome, heading: str
) -> list[PlanEntry]:
    entries = []
    for file in files:
        try:
            result, _ = cmd.plan_file(ws, file, backend=inputs.backend)
        except CiRunnerError as exc:
            entries.append(failed_entry(file, exc))
            continue
        entries.append(entry_of(file, result))
        out.acted_on(result.experiment.name, [spec.run_id for spec in result.runs])
    for entry in entries:
        out.fail(entry.exit_code)
    out.summary.append(plan_comment.render_plan_summary(entries, heading=heading))
    return entries


def refuse_local_submit(ws: Workspace, inputs: Inputs, file: str) -> None:
    experiment = ws.load(file, backend=inputs.backend)
    if experiment.backend == BackendName.LOCAL.value:
        raise NotReadyError(LOCAL_SUBMIT_REFUSED.format(file=file))


def submitted_block(file: str, result: SubmitOutcome) -> str:
    lines = [f"### {code(file)}"]
    if result.runs:  # a file with a matrix or stages: every run, some still waiting
        for run in result.runs:
            how = f"job {code(run.job_id)}" if run.job_id else f"waiting for {run.waiting_for}"
            lines.append(f"- {run.status}: {code(run.run_id)} ({how})")
    else:
        verb = "Submitted" if result.created else "Already submitted"
        lines.append(f"{verb} {code(result.run_id)} as job {code(result.job_id)}")
    lines += [quote(f"warning: {w}") for w in result.warnings]
    if result.file_plan:
        lines.append(render_totals(result.file_plan).rstrip("\n"))
    elif result.plan:
        lines.append(render_plan(result.plan).rstrip("\n"))
    return "\n\n".join(lines)


def record_submitted(ws: Workspace, result: SubmitOutcome, out: Outcome) -> None:
    jobs = [r.job_id for r in result.runs] if result.runs else [result.job_id]
    report = ws.project.relative(result.report)
    out.acted_on(result.experiment, cmd.submitted_run_ids(result), jobs, report)


def do_submit(ws: Workspace, inputs: Inputs, files: list[str], out: Outcome) -> None:
    blocks = ["## ci-runner submit"]
    for file in files:
        try:
            refuse_local_submit(ws, inputs, file)
            result = cmd.submit_file(ws, file, backend=inputs.backend)
        except CiRunnerError as exc:
            out.fail(exc.exit_code)
            blocks.append(f"### {code(file)}\n\n**Not submitted:**\n\n{block(str(exc))}")
            continue
        record_submitted(ws, result, out)
        blocks.append(submitted_block(file, result))
    out.summary.append("\n\n".join(blocks))


def summarize_ledgers(ws: Workspace, out: Outcome, heading: str) -> None:
    """Each experiment as its report opens: runs, metrics, health findings, evaluations;
    a ledger that cannot be read is named with its remedy and fails the step (exit 9),
    while every other experiment is still shown.

    Plots are left out: a step summary cannot show the repository's files (the PR body,
    written once they are pushed, links them)."""
    ledgers = repository.ledgers(ws.project)
    blocks = [f"## {heading}"]
    blocks += [summary_block(ledger) for ledger in ledgers] or ["_No runs recorded yet._"]
    for exc in cmd.unreadable_ledgers(ws):
        out.fail(exc.exit_code)
        out.annotations.append(("error", str(exc).splitlines()[0]))
        blocks.append(f"**Not read:**\n\n{block(str(exc))}")
    out.summary.append("\n\n".join(blocks))


def do_poll(ws: Workspace, out: Outcome) -> None:
    polled = cmd.poll(ws)
    out.acted_on_runs(repository.ledgers(ws.project), polled.runs)
    summarize_ledgers(ws, out, "ci-runner poll")


def do_report(ws: Workspace, out: Outcome) -> None:
    cmd.report(ws)
    ledgers = repository.ledgers(ws.project)
    out.acted_on_runs(ledgers, [run for ledger in ledgers for run in ledger.runs])
    summarize_ledgers(ws, out, "ci-runner report")


def do_run(ws: Workspace, inputs: Inputs, files: list[str], out: Outcome) -> None:
    blocks = ["## ci-runner run"]
    for file in files:
        try:
            ran = cmd.run_file(
                ws,
                file,
                backend=inputs.backend,
                interval=RUN_POLL_INTERVAL_S,
                on_line=lambda line: click.echo(redact(line), err=True),
            )
        except CiRunnerError as exc:
            out.fail(exc.exit_code)
            blocks.append(f"### {code(file)}\n\n**Not run:**\n\n{block(str(exc))}")
            continue
        record_submitted(ws, ran.submitted, out)
        out.acted_on_runs(repository.ledgers(ws.project), ran.runs)
        out.fail(ran.exit_code)
    cmd.report(ws)
    out.summary.append("\n\n".join(blocks))
    summarize_ledgers(ws, out, "ci-runner run: results")


# -- publishing -------------------------------------------------------------------------


def _target(inputs: Inputs, env: Mapping[str, str]) -> Target:
    from ci_runner.publish.github import client, get_repo
    from ci_runner.publish.reports import Target

    full_name = env.get("GITHUB_REPOSITORY", "")
    repo = get_repo(client(inputs.github_token), full_name)
    server = env.get("GITHUB_SERVER_URL", "https://github.com")
    return Target(repo, full_name, repo.default_branch, server)


def _git(project: Project, inputs: Inputs, env: Mapping[str, str]) -> Git:
    from ci_runner.publish.git import Git, auth_env

    return Git(project.root, env=auth_env(inputs.github_token, env.get("GITHUB_SERVER_URL")))


def restore(project: Project, inputs: Inputs, env: Mapping[str, str], out: Outcome) -> None:
    from ci_runner.publish.reports import restore_pending

    restored = restore_pending(project, _git(project, inputs, env))
    if restored:
        out.summary.append("Restored from unmerged result branches: " + ", ".join(restored))


def publish(project: Project, inputs: Inputs, env: Mapping[str, str], out: Outcome) -> None:
    from ci_runner.publish.reports import publish_reports

    results = publish_reports(project, _git(project, inputs, env), _target(inputs, env))
    lines = []
    for item in results:
        if item.pr:
            out.pr_urls.append(item.pr.url)
            lines.append(f"- {code(item.experiment)}: PR {item.pr.action}: {item.pr.url}")
        elif item.committed:
            lines.append(f"- {code(item.experiment)}: pushed {item.branch}")
    if lines:
        out.summary.append("### Published\n\n" + "\n".join(lines))


def comment_plan(
    inputs: Inputs,
    env: Mapping[str, str],
    event: dict[str, Any],
    entries: list[PlanEntry],
    out: Outcome,
) -> None:
    """The plan comment on the PR; skipped for forks, whose token cannot write."""
    from ci_runner.publish.github import client, get_repo, upsert_comment

    if events.from_fork(event, env.get("GITHUB_REPOSITORY")):
        out.annotations.append(
            ("notice", "pull request from a fork: the plan is in the job summary, not a comment")
        )
        return
    repo = get_repo(client(inputs.github_token), env.get("GITHUB_REPOSITORY", ""))
    body = plan_comment.render_plan_comment(entries)
    number = int(event["pull_request"]["number"])
    written = upsert_comment(repo, number, marker=plan_comment.PLAN_MARKER, body=body)
    out.comment_url = written.url


# -- entry point --------------------------------------------------------------------------


def execute(inputs: Inputs, env: Mapping[str, str], out: Outcome) -> None:
    """Run one command; errors of one file are recorded in ``out``, not raised."""
    root = Path(env.get("GITHUB_WORKSPACE") or ".") / inputs.working_directory
    os.chdir(root)
    ws = cmd.open_workspace(Path.cwd())
    project = ws.project
    event_name, event = env.get("GITHUB_EVENT_NAME", ""), events.payload(env)
    files = events.experiment_files(project.root, inputs.experiments, event_name, event)
    command = inputs.command
    if command.starts_jobs and not inputs.experiments and event_name != "push":
        raise click.UsageError(f"name the experiments to {command.value} (input `experiments`)")
    if command.starts_jobs and inputs.dry_run:
        command = Command.PLAN
    if command.writes and inputs.publishing:
        restore(project, inputs, env, out)
    if command is Command.VALIDATE:
        do_validate(ws, files, out)
    elif command is Command.CHECK_DATA:
        do_check_data(ws, files, out)
    elif command is Command.PLAN:
        heading = "ci-runner plan" + (" (dry run)" if inputs.dry_run else "")
        entries = do_plan(ws, inputs, files, out, heading)
        if event_name == "pull_request" and inputs.github_token and event.get("pull_request"):
            comment_plan(inputs, env, event, entries, out)
    elif command is Command.SUBMIT:
        do_submit(ws, inputs, files, out)
    elif command is Command.POLL:
        do_poll(ws, out)
    elif command is Command.REPORT:
        do_report(ws, out)
    elif command is Command.RUN:
        do_run(ws, inputs, files, out)
    if command.writes and inputs.publishing:
        publish(project, inputs, env, out)


def run_action(env: Mapping[str, str], log: WorkflowLog | None = None) -> int:
    """The whole action: mask, execute with workflow commands off, then always write the
    outputs and the summary."""
    log = log or WorkflowLog()
    log.mask(env.get("INPUT_HF_TOKEN", "").strip(), env.get("INPUT_GITHUB_TOKEN", "").strip())
    out = Outcome()
    with log.inert():
        try:
            inputs = Inputs.from_env(env)
            if inputs.hf_token:
                os.environ["HF_TOKEN"] = inputs.hf_token
            execute(inputs, env, out)
        except (CiRunnerError, click.ClickException) as exc:
            out.fail(getattr(exc, "exit_code", ExitCode.INTERNAL))
            message = exc.format_message() if isinstance(exc, click.ClickException) else str(exc)
            command = env.get("INPUT_COMMAND", "").strip()
            out.summary.append(f"**ci-runner {prose(command)} failed:**\n\n{block(message)}")
            out.annotations.append(("error", message.splitlines()[0] if message else command))
        finally:
            write_outputs(env.get("GITHUB_OUTPUT"), out.outputs())
            append_summary(env.get("GITHUB_STEP_SUMMARY"), "\n\n".join(out.summary))
        for text in out.summary:
            click.echo(redact(text))
    for level, message in out.annotations:
        log.annotate(level, message)
    return out.exit_code


@click.command("action")
def action() -> None:
    """Run the GitHub Action's command from its INPUT_* environment (see action.yml)."""
    sys.exit(run_action(os.environ))
