"""What crosses between the runner and a backend: requests out, states and statuses back.

Closed sets are enums; the ledger stores their values, so its JSON reads as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel


class StrEnum(str, Enum):
    """A closed set of strings that reads as its value in text (``f"{Phase.EVAL}"`` → eval)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class BackendName(StrEnum):
    LOCAL = "local"
    HF_JOBS = "hf-jobs"
    RAY = "ray"


class JobState(StrEnum):
    """A backend job's lifecycle, named as HF Jobs names it."""

    SCHEDULING = "SCHEDULING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"
    CANCELED = "CANCELED"

    @property
    def terminal(self) -> bool:
        return self in (JobState.COMPLETED, JobState.ERROR, JobState.CANCELED)


class Phase(StrEnum):
    """Where a run is: training, then evaluation, then export."""

    TRAIN = "train"
    EVAL = "eval"
    EXPORT = "export"
    DONE = "done"


class JobKind(StrEnum):
    """A job after training: an evaluation of one model, or the GGUF export."""

    EVAL = "eval"
    EXPORT = "export"


class FailureKind(StrEnum):
    """How a job died; the first three are worth resuming from a checkpoint."""

    TIMEOUT = "timeout"
    PREEMPTED = "preempted"
    INFRA = "infra"
    OOM = "oom"
    DATA = "data"
    AUTH = "auth"
    ERROR = "error"


RETRYABLE = (FailureKind.TIMEOUT, FailureKind.PREEMPTED, FailureKind.INFRA)


@dataclass(frozen=True)
class JobRequest:
    script: Path  # an entry script (``ci_runner.job_scripts.locate``)
    run_config: BaseModel  # the script's one input (``ci_runner.runconfig``)
    labels: dict[str, str]
    flavor: str = "cpu-basic"
    timeout_s: int | None = None
    # Beyond the script's own PEP 723 header: packages a remote job installs (`uv run
    # --with`), and environment variables passed to it as secrets when set here. A local
    # job runs with this Python and inherits this environment.
    requirements: tuple[str, ...] = ()
    secret_env: tuple[str, ...] = ()


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


class Backend(Protocol):
    """Four verbs, every backend, the same tests. Labels let a job launched before a crash
    be adopted."""

    name: str

    def launch(self, request: JobRequest) -> JobHandle:
        """Put one job on the backend, now; ``flow.launch`` looks for it first (``find``)."""
        ...

    def find(self, labels: dict[str, str]) -> list[JobHandle]:
        """Jobs carrying all these labels, oldest first."""
        ...

    def statuses(self, job_ids: list[str]) -> dict[str, JobStatus]:
        """Many jobs in one call: polling N runs must not cost N requests."""
        ...

    def logs(self, job_id: str, tail: int | None = None) -> list[str]: ...

    def follow(self, job_id: str) -> Iterator[str]:
        """The log as it is written, until the job ends."""
        ...

    def cancel(self, job_id: str) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """How a remote backend retries a request that failed for a transient reason."""

    attempts: int = 4
    base_delay_s: float = 1.0
    max_delay_s: float = 16.0
