"""How the CLI prints: ``--json`` documents on stdout, lines for people, warnings and
errors on stderr, every one redacted."""

from __future__ import annotations

import sys
from typing import Any

import click

from ci_runner.documents import json_text
from ci_runner.errors import ExitCode
from ci_runner.ledger.model import Run
from ci_runner.ledger.store import CorruptLedgerError
from ci_runner.publish.redact import redact
from ci_runner.report.health import check_run


def emit_json(data: Any) -> None:
    click.echo(json_text(data))


def echo(text: str = "", *, err: bool = False) -> None:
    click.echo(redact(text), err=err)


def warn(text: str) -> None:
    click.secho(f"warning: {redact(text)}", fg="yellow", err=True)


def end_if_unreadable(corrupt: list[CorruptLedgerError]) -> None:
    """After a command that went over every ledger and did its work for the others: name
    each ledger it skipped, with its remedy, and end with exit 9."""
    for exc in corrupt:
        click.secho(f"error: {redact(str(exc))}", fg="red", err=True)
    if corrupt:
        sys.exit(ExitCode.LEDGER_CORRUPT)


def echo_findings(run: Run, *, indent: str = "") -> None:
    """The run's health findings, each with its remedy, as warnings (stdout, as the run's
    own lines are)."""
    for finding in check_run(run):
        click.secho(redact(f"{indent}warning: {run.run_id}: {finding.text}"), fg="yellow")
