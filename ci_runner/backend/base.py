"""The backend interface: four verbs, both backends, same tests.

A backend knows nothing about experiments or ledgers. It runs a job script with
a run config and answers questions about the jobs it started. Labels let the
runner find a job again after a crash between "submitted" and "recorded".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ci_runner.ledger.model import JobState
from ci_runner.runconfig import SUMMARY_PREFIX, EvalConfig, ExportConfig, RunConfig


@dataclass(frozen=True)
class JobRequest:
    script: Path  # a job script from job_scripts/
    run_config: RunConfig | EvalConfig | ExportConfig  # the script's one input
    labels: dict[str, str]
    flavor: str = "cpu-basic"
    timeout_s: int | None = None


@dataclass(frozen=True)
class JobHandle:
    job_id: str
    url: str  # where a person reads the logs: a Hub job page or a local file


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    state: JobState
    exit_code: int | None = None
    message: str | None = None
    finished_at: str | None = None


@dataclass(frozen=True)
class JobSummary:
    """The machine-readable line a job script prints last."""

    data: dict = field(default_factory=dict)

    @classmethod
    def from_logs(cls, lines: list[str]) -> JobSummary | None:
        for line in reversed(lines):
            text = line.strip()
            if text.startswith(SUMMARY_PREFIX):
                try:
                    return cls(json.loads(text[len(SUMMARY_PREFIX) :]))
                except json.JSONDecodeError:
                    return None
        return None


class Backend(Protocol):
    name: str

    def submit(self, request: JobRequest) -> JobHandle: ...

    def find(self, labels: dict[str, str]) -> list[JobHandle]:
        """Jobs carrying all these labels, oldest first."""
        ...

    def statuses(self, job_ids: list[str]) -> dict[str, JobStatus]:
        """Many jobs in one call: polling N runs must not cost N requests."""
        ...

    def logs(self, job_id: str, tail: int | None = None) -> list[str]: ...

    def cancel(self, job_id: str) -> None: ...
