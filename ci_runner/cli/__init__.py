"""``ci-runner``: the command line. Parse, call the flow, print.

Human-readable output goes to stdout for reading commands, progress to stderr;
``--json`` prints one JSON document on stdout for scripts and agents. Every error ends
in one place (``CliGroup``) with its exit code (``ci_runner.errors.ExitCode``, listed in
the README) and a message with secrets redacted.

The commands live beside this group, one module per concern: ``experiments`` (check,
plan, submit, poll, report, run, wait), ``status`` (the table of every run), ``jobs``
(a job's log, cancel), ``github`` (publish, action) and ``tools`` (the demo's data, the
MCP server); ``output`` and ``options`` are what they share.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from ci_runner import __version__
from ci_runner.errors import CiRunnerError
from ci_runner.publish.redact import redact


class CliGroup(click.Group):
    """Turns every ci-runner error into its message and exit code; never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CiRunnerError as exc:
            click.secho(f"error: {redact(str(exc))}", fg="red", err=True)
            sys.exit(exc.exit_code)


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


def _register_commands() -> None:
    from ci_runner.cli import experiments, github, jobs, status, tools

    for command in (
        experiments.validate,
        experiments.schema,
        tools.fixtures,
        experiments.plan,
        experiments.check_data,
        experiments.submit,
        experiments.poll,
        experiments.report,
        experiments.run,
        experiments.wait,
        tools.mcp,
        status.status,
        jobs.logs,
        jobs.cancel,
        github.action,
        github.publish,
    ):
        main.add_command(command)


_register_commands()
