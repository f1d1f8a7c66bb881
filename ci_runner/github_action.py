"""``ci-runner action``: everything the composite action does, so action.yml stays thin.

action.yml hands each input over as an ``INPUT_*`` environment variable (never by
interpolating ``${{ inputs.* }}`` into a script, where a crafted value would run as
shell). This command masks the secrets before anything is printed, runs one ci-runner
command over the experiment files, writes ``$GITHUB_OUTPUT`` and a readable
``$GITHUB_STEP_SUMMARY``, and, given a GitHub token, publishes results and the PR plan comment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ci_runner.errors import CiRunnerError, ExitCode, SpecError
from ci_runner.flow.poll import poll
from ci_runner.flow.records import methods_of
from ci_runner.flow.submit import submit
from ci_runner.flow.workspace import Workspace
from ci_runner.ledger import repository
from ci_runner.ledger.model import RunStatus
from ci_runner.paths import Project
from ci_runner.plan.render import render_plan
from ci_runner.plan.total import render_totals
from ci_runner.publish import comment as plan_comment
from ci_runner.publish.model_card import push_card_after_eval
from ci_runner.publish.plans import plan_entry
from ci_runner.publish.pr_body import summary_block
from ci_runner.publish.redact import redact
from ci_runner.report.files import write_all
from ci_runner.report.markdown import code, table
from ci_runner.spec.expand import expand

if TYPE_CHECKING:
    from ci_runner.publish.comment import PlanEntry
    from ci_runner.publish.git import Git
    from ci_runner.publish.reports import Target

COMMANDS = ("validate", "plan", "submit", "poll", "report", "run")
WRITES = ("submit", "poll", "report", "run")  # commands whose results are published
RUN_EXIT = {RunStatus.FAILED: ExitCode.RUN_FAILED, RunStatus.CANCELED: ExitCode.RUN_CANCELED}
POLL_INTERVAL_S = 30.0


@dataclass(frozen=True)
class Inputs:
    command: str
    experiments: list[str]
    backend: str | None
    hf_token: str
    github_token: str
    dry_run: bool
    working_directory: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Inputs:
        command = env.get("INPUT_COMMAND", "").strip()
        if command not in COMMANDS:
            raise click.UsageError(f"command must be one of {', '.join(COMMANDS)}, not {command!r}")
        specs = env.get("INPUT_EXPERIMENTS", "").replace(",", " ").split()
        return cls(
            command=command,
            experiments=specs,
            backend=env.get("INPUT_BACKEND", "").strip() or None,
            hf_token=env.get("INPUT_HF_TOKEN", "").strip(),
            github_token=env.get("INPUT_GITHUB_TOKEN", "").strip(),
            dry_run=env.get("INPUT_DRY_RUN", "false").strip().lower() in ("true", "1", "yes"),
            working_directory=env.get("INPUT_WORKING_DIRECTORY", "").strip() or ".",
        )


@dataclass
class Outcome:
    exit_code: int = 0
    summary: list[str] = field(default_factory=list)
    experiments: list[str] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)
    pr_urls: list[str] = field(default_factory=list)
    comment_url: str = ""

    def fail(self, code: int) -> None:
        self.exit_code = self.exit_code or code

    def outputs(self) -> dict[str, str]:
        return {
            "exit-code": str(self.exit_code),
            "experiments": json.dumps(self.experiments),
            "job-ids": json.dumps(self.job_ids),
            "run-ids": json.dumps(self.run_ids),
            "report-paths": json.dumps(sorted(set(self.reports))),
            "pr-url": self.pr_urls[0] if self.pr_urls else "",
            "pr-urls": json.dumps(self.pr_urls),
            "comment-url": self.comment_url,
        }


# -- the GitHub side ------------------------------------------------------------------


def mask(*values: str) -> None:
    """Ask the runner to hide these values in every log line from now on."""
    for value in values:
        if value:
            click.echo(f"::add-mask::{value}")


def event(env: Mapping[str, str]) -> dict[str, Any]:
    path = env.get("GITHUB_EVENT_PATH")
    if not path or not Path(path).is_file():
        return {}
    payload: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8") or "{}")
    return payload


def write_outputs(path: str | None, outputs: Mapping[str, str]) -> None:
    """Append to $GITHUB_OUTPUT, heredoc style so a value can never forge another output."""
    if not path:
        return
    with open(path, "a", encoding="utf-8") as handle:
        for name, value in outputs.items():
            delimiter = f"ghadelimiter_{uuid.uuid4()}"
            handle.write(f"{name}<<{delimiter}\n{redact(value)}\n{delimiter}\n")


def append_summary(path: str | None, text: str) -> None:
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(redact(text).rstrip("\n") + "\n\n")


def changed_in_push(payload: dict[str, Any]) -> list[str]:
    """Experiment files a push added or modified (and did not remove afterwards)."""
    files: list[str] = []
    for commit in payload.get("commits") or []:
        for path in (commit.get("added") or []) + (commit.get("modified") or []):
            if path not in files:
                files.append(path)
        files = [f for f in files if f not in (commit.get("removed") or [])]
    return files


def changed_in_pull_request(root: Path, payload: dict[str, Any]) -> list[str] | None:
    base = (payload.get("pull_request") or {}).get("base", {}).get("sha")
    if not base:
        return None
    proc = subprocess.run(
        ["git", "diff", "--name-only", "--diff-filter=d", f"{base}...HEAD", "--", "experiments"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    return proc.stdout.split() if proc.returncode == 0 else None


def _is_experiment(path: str) -> bool:
    parts = Path(path).parts
    return len(parts) == 2 and parts[0] == "experiments" and path.endswith((".yaml", ".yml"))


def experiment_files(
    root: Path, specs: list[str], event_name: str, payload: dict[str, Any]
) -> list[str]:
    """The files to act on: the input's paths and globs, else the files the event changed."""
    if specs:
        found: list[str] = []
        for spec in specs:
            if "/" not in spec and not spec.endswith((".yaml", ".yml")):
                spec = f"experiments/{spec}.yaml"  # an experiment name
            if Path(spec).is_absolute():
                matches = [spec]
            else:
                matches = sorted(str(p.relative_to(root)) for p in root.glob(spec)) or [spec]
            found += [m for m in matches if m not in found]
        return found
    changed = None
    if event_name == "push":
        changed = changed_in_push(payload)
    elif event_name == "pull_request":
        changed = changed_in_pull_request(root, payload)
    if changed is None:
        changed = [str(p.relative_to(root)) for p in sorted(root.glob("experiments/*.y*ml"))]
    return [f for f in changed if _is_experiment(f) and (root / f).is_file()]


# -- commands ---------------------------------------------------------------------------


def do_validate(ws: Workspace, files: list[str], out: Outcome) -> None:
    rows, errors = [], []
    for file in files:
        try:
            exp = ws.load(file)
        except SpecError as exc:
            rows.append([code(file), "", "", "", "invalid"])
            errors.append(str(exc))
            out.fail(exc.exit_code)
            continue
        out.experiments.append(exp.name)
        method = exp.method or " → ".join(methods_of(expand(exp)))
        rows.append([code(file), code(exp.name), method.upper(), exp.backend, "ok"])
    header = ("File", "Experiment", "Method", "Backend", "Result")
    text = "## ci-runner validate\n\n" + (table(header, rows) if rows else "_No files._")
    if errors:
        text += "\n\n```text\n" + "\n".join(errors) + "\n```"
    out.summary.append(text)


def do_plan(
    ws: Workspace, inputs: Inputs, files: list[str], out: Outcome, heading: str
) -> list[PlanEntry]:
    entries = [plan_entry(ws, Path(f), backend=inputs.backend) for f in files]
    for entry in entries:
        out.fail(entry.exit_code)
        if entry.name:
            out.experiments.append(entry.name)
    out.summary.append(plan_comment.render_plan_summary(entries, heading=heading))
    return entries


def do_submit(ws: Workspace, inputs: Inputs, files: list[str], out: Outcome) -> None:
    blocks = ["## ci-runner submit"]
    for file in files:
        try:
            result = submit(ws, Path(file), backend=inputs.backend)
        except CiRunnerError as exc:
            out.fail(exc.exit_code)
            blocks.append(f"### {code(file)}\n\n**Not submitted:**\n\n```text\n{exc}\n```")
            continue
        out.reports.append(ws.project.relative(result.report))
        if result.runs:  # a file with a matrix or stages: every run, some still waiting
            lines = [f"### {code(file)}"]
            for run in result.runs:
                out.run_ids.append(run.run_id)
                if run.job_id:
                    out.job_ids.append(run.job_id)
                how = f"job {code(run.job_id)}" if run.job_id else f"waiting for {run.waiting_for}"
                lines.append(f"- {run.status}: {code(run.run_id)} ({how})")
            lines += [f"> warning: {w}" for w in result.warnings]
            if result.file_plan:
                lines.append(render_totals(result.file_plan).rstrip("\n"))
            blocks.append("\n\n".join(lines))
            continue
        out.run_ids.append(result.run_id)
        out.job_ids.append(result.job_id)
        verb = "Submitted" if result.created else "Already submitted"
        lines = [f"### {code(file)}", f"{verb} {code(result.run_id)} as job {code(result.job_id)}"]
        lines += [f"> warning: {w}" for w in result.warnings]
        if result.plan:
            lines.append(render_plan(result.plan).rstrip("\n"))
        blocks.append("\n\n".join(lines))
    out.summary.append("\n\n".join(blocks))


def summarize_ledgers(ws: Workspace, out: Outcome, heading: str) -> None:
    """Each experiment as its report opens: runs, metrics, health findings, evaluations.

    Plots are left out: a step summary cannot show the repository's files (the PR body,
    written once they are pushed, links them)."""
    ledgers = repository.ledgers(ws.project)
    blocks = [f"## {heading}"]
    blocks += [summary_block(ledger) for ledger in ledgers] or ["_No runs recorded yet._"]
    out.summary.append("\n\n".join(blocks))


def do_poll(ws: Workspace, out: Outcome) -> None:
    result = poll(ws)
    out.run_ids += [r.run_id for r in result.runs]
    out.reports += [ws.project.relative(p) for p in result.changed if p.suffix == ".md"]
    summarize_ledgers(ws, out, "ci-runner poll")


def do_run(ws: Workspace, inputs: Inputs, files: list[str], out: Outcome) -> None:
    do_submit(ws, inputs, files, out)
    waiting = list(out.run_ids)
    while waiting:
        poll(ws)
        runs = [repository.find_run(ws.project, run_id)[1] for run_id in waiting]
        for run in runs:
            if not run.active:
                out.fail(RUN_EXIT.get(run.status, 0))
        waiting = [run.run_id for run in runs if run.active]
        if waiting:
            time.sleep(POLL_INTERVAL_S)
    out.reports += [ws.project.relative(p) for p in write_all(ws.project)]
    summarize_ledgers(ws, out, "ci-runner run")


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
    payload: dict[str, Any],
    entries: list[PlanEntry],
    out: Outcome,
) -> None:
    """The plan comment on the PR; skipped for forks, whose token cannot write."""
    from ci_runner.publish.github import client, get_repo, upsert_comment

    pr = payload.get("pull_request") or {}
    head_repo = ((pr.get("head") or {}).get("repo") or {}).get("full_name")
    if head_repo and head_repo != env.get("GITHUB_REPOSITORY"):
        click.echo("::notice::pull request from a fork: plan is in the job summary, not a comment")
        return
    repo = get_repo(client(inputs.github_token), env.get("GITHUB_REPOSITORY", ""))
    body = plan_comment.render_plan_comment(entries)
    written = upsert_comment(repo, int(pr["number"]), marker=plan_comment.PLAN_MARKER, body=body)
    out.comment_url = written.url


# -- entry point --------------------------------------------------------------------------


def execute(inputs: Inputs, env: Mapping[str, str], out: Outcome) -> None:
    """Run one command; errors of one file are recorded in ``out``, not raised."""
    root = Path(env.get("GITHUB_WORKSPACE") or ".") / inputs.working_directory
    os.chdir(root)
    project = Project(Path.cwd())
    ws = Workspace(project, on_evaluated=push_card_after_eval)
    event_name, payload = env.get("GITHUB_EVENT_NAME", ""), event(env)
    files = experiment_files(project.root, inputs.experiments, event_name, payload)
    if inputs.command in ("submit", "run") and not inputs.experiments and event_name != "push":
        raise click.UsageError("name the experiments to submit (input `experiments`)")
    publishing = bool(inputs.github_token) and not inputs.dry_run
    command = inputs.command
    if command in ("submit", "run") and inputs.dry_run:
        command = "plan"
    if command in WRITES and publishing:
        restore(project, inputs, env, out)
    if command == "validate":
        do_validate(ws, files, out)
    elif command == "plan":
        heading = "ci-runner plan" + (" (dry run)" if inputs.dry_run else "")
        entries = do_plan(ws, inputs, files, out, heading)
        if event_name == "pull_request" and inputs.github_token and payload.get("pull_request"):
            comment_plan(inputs, env, payload, entries, out)
    elif command == "submit":
        do_submit(ws, inputs, files, out)
    elif command == "poll":
        do_poll(ws, out)
    elif command == "report":
        out.reports += [ws.project.relative(p) for p in write_all(ws.project)]
        summarize_ledgers(ws, out, "ci-runner report")
    elif command == "run":
        do_run(ws, inputs, files, out)
    if command in WRITES and publishing:
        publish(project, inputs, env, out)


def run_action(env: Mapping[str, str]) -> int:
    """The whole action: mask, execute, then always write outputs and summary."""
    inputs = Inputs.from_env(env)
    mask(inputs.hf_token, inputs.github_token)
    if inputs.hf_token:
        os.environ["HF_TOKEN"] = inputs.hf_token
    out = Outcome()
    try:
        execute(inputs, env, out)
    except (CiRunnerError, click.ClickException) as exc:
        out.fail(getattr(exc, "exit_code", ExitCode.INTERNAL))
        message = exc.format_message() if isinstance(exc, click.ClickException) else str(exc)
        out.summary.append(f"**ci-runner {inputs.command} failed:**\n\n```text\n{message}\n```")
        click.echo(f"::error::{redact(message).splitlines()[0]}", err=True)
    finally:
        write_outputs(env.get("GITHUB_OUTPUT"), out.outputs())
        append_summary(env.get("GITHUB_STEP_SUMMARY"), "\n\n".join(out.summary))
    for block in out.summary:
        click.echo(redact(block))
    return out.exit_code


@click.command("action")
def action() -> None:
    """Run the GitHub Action's command from its INPUT_* environment (see action.yml)."""
    sys.exit(run_action(os.environ))


if __name__ == "__main__":
    action()
