"""What the action hands the GitHub runner: its log, ``$GITHUB_OUTPUT`` and the step summary.

The runner reads every log line that starts with ``::`` as a workflow command
(``::error::``, ``::add-mask::``, ``::set-env`` ...). Experiment files, datasets and model
output are untrusted, so while ci-runner works the log is switched off for commands with
``::stop-commands::<token>``, where the token is random and never printed again until the
work is done. Only the masks (before) and the annotations (after, escaped) are live.
"""

from __future__ import annotations

import secrets
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TextIO

from ci_runner.publish.redact import redact


def escape_data(text: str) -> str:
    """A workflow command's message: one line, whatever the text holds."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


class WorkflowLog:
    """The step's log, with workflow commands live only where ci-runner means them."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def _command(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def mask(self, *values: str) -> None:
        """Hide these values in every later log line (before anything else is printed)."""
        for value in values:
            if value:
                self._command(f"::add-mask::{escape_data(value)}")

    @contextmanager
    def inert(self) -> Iterator[None]:
        """No line printed inside, by ci-runner or a library it calls, is a command."""
        token = secrets.token_hex(16)
        sys.stderr.flush()
        self._command(f"::stop-commands::{token}")
        try:
            yield
        finally:
            sys.stderr.flush()
            self._command(f"::{token}::")

    def annotate(self, level: str, message: str) -> None:
        """An ``::error::`` / ``::warning::`` / ``::notice::`` annotation, redacted and escaped."""
        self._command(f"::{level}::{escape_data(redact(message))}")


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
