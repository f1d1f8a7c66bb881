"""Errors a user can act on, each with its own exit code.

Every exit code is documented in the README; scripts and agents branch on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1  # a bug in ci-runner: please report it
    USAGE = 2  # click's own code for bad command-line usage
    SPEC_INVALID = 3  # the experiment file is malformed
    NOT_READY = 4  # inputs missing on disk (model, dataset, fixtures)
    OVER_BUDGET = 5  # plan exceeds budget.max_cost_usd
    BACKEND = 6  # the backend refused or failed to answer
    DATA = 7  # the dataset can't be read as the experiment asks (format, split, rows)
    UNISOLATED = 8  # generated code could not be isolated here, and the file does not opt in
    LEDGER_CORRUPT = 9  # a ledger file is not valid JSON of a ledger; restore its copy
    RUN_FAILED = 10  # a run ended in failure
    RUN_CANCELED = 11  # a run was canceled
    WAIT_TIMEOUT = 12  # stopped waiting before runs finished


# What each exit code means, for front ends that report it rather than exit with it (MCP).
EXIT_MEANINGS: dict[int, str] = {
    ExitCode.OK: "success",
    ExitCode.INTERNAL: "internal error in ci-runner (please report it)",
    ExitCode.USAGE: "bad usage: fix the call's arguments",
    ExitCode.SPEC_INVALID: "the experiment file is invalid: fix it at the line given",
    ExitCode.NOT_READY: "something the run needs is missing: a local model, dataset, fixtures "
    "or an extra",
    ExitCode.OVER_BUDGET: "the plan exceeds budget.max_cost_usd",
    ExitCode.BACKEND: "the backend, Hub or GitHub refused or failed: check tokens and quota",
    ExitCode.DATA: "the dataset does not fit the method, or cannot be read as the file asks",
    ExitCode.UNISOLATED: "generated code (HumanEval) cannot be isolated here: run as root, "
    "with `sudo -n`, or with bubblewrap and user namespaces, or set "
    "evaluation.allow_unisolated_code: true",
    ExitCode.LEDGER_CORRUPT: "a ledger file is unreadable (truncated or edited): restore "
    "the committed copy; the other experiments were handled",
    ExitCode.RUN_FAILED: "the run failed: read its error, then its logs",
    ExitCode.RUN_CANCELED: "the run was canceled",
    ExitCode.WAIT_TIMEOUT: "stopped waiting before the runs finished; they continue",
}


def exit_meaning(code: int) -> str:
    return EXIT_MEANINGS.get(code, f"exit code {code}")


class CiRunnerError(Exception):
    """Base for errors that end a command with a message and an exit code."""

    exit_code: int = ExitCode.INTERNAL


@dataclass(frozen=True)
class SpecIssue:
    """One problem in an experiment file, located to the line."""

    file: str
    line: int | None
    field: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )
        return f"{text}\n  hint: {self.hint}" if self.hint else text


class SpecError(CiRunnerError):
    """The file is wrong (exit 3), or only points at inputs not on disk yet (exit 4)."""

    exit_code = ExitCode.SPEC_INVALID

    def __init__(self, issues: list[SpecIssue], *, missing_inputs: bool = False):
        self.issues = issues
        if missing_inputs:
            self.exit_code = ExitCode.NOT_READY
        super().__init__("\n".join(str(i) for i in issues))


class NotReadyError(CiRunnerError):
    exit_code = ExitCode.NOT_READY


class BackendError(CiRunnerError):
    exit_code = ExitCode.BACKEND


class UnisolatedCodeError(CiRunnerError):
    """Generated code would run where it could reach its judge and the answers, and the
    experiment does not opt in (``evaluation.allow_unisolated_code``)."""

    exit_code = ExitCode.UNISOLATED


class OverBudgetError(CiRunnerError):
    exit_code = ExitCode.OVER_BUDGET


class DataSourceError(CiRunnerError):
    """The dataset is there but can't be read as asked: bad rows, unknown split, odd format."""

    exit_code = ExitCode.DATA


class DatasetNotFoundError(DataSourceError, NotReadyError):
    """No dataset where the experiment points: a missing path, or a Hub id we can't see.

    Exit 4 like every other missing input; still a ``DataSourceError`` for callers.
    """

    exit_code = ExitCode.NOT_READY


class DatasetViewerError(DataSourceError, BackendError):
    """The Hub's dataset viewer refused or kept failing: exit 6 like any service we call."""

    exit_code = ExitCode.BACKEND


class DataIncompatibleError(CiRunnerError):
    """The dataset reads fine but does not fit the method (or needs a mapping)."""

    exit_code = ExitCode.DATA
