"""The action's inputs, read from the ``INPUT_*`` environment action.yml sets.

Inputs travel through the environment, never interpolated into a script, where a crafted
value would run as shell.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

import click


class Command(str, Enum):
    VALIDATE = "validate"
    CHECK_DATA = "check-data"
    PLAN = "plan"
    SUBMIT = "submit"
    POLL = "poll"
    REPORT = "report"
    RUN = "run"

    @property
    def writes(self) -> bool:
        """Commands whose results are committed and published."""
        return self in (Command.SUBMIT, Command.POLL, Command.REPORT, Command.RUN)

    @property
    def starts_jobs(self) -> bool:
        return self in (Command.SUBMIT, Command.RUN)


TRUE = ("true", "1", "yes")


@dataclass(frozen=True)
class Inputs:
    command: Command
    experiments: list[str]
    backend: str | None
    hf_token: str
    github_token: str
    dry_run: bool
    working_directory: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Inputs:
        raw = env.get("INPUT_COMMAND", "").strip()
        try:
            command = Command(raw)
        except ValueError:
            names = ", ".join(c.value for c in Command)
            raise click.UsageError(f"input `command` must be one of {names}, not {raw!r}") from None
        return cls(
            command=command,
            experiments=env.get("INPUT_EXPERIMENTS", "").replace(",", " ").split(),
            backend=env.get("INPUT_BACKEND", "").strip() or None,
            hf_token=env.get("INPUT_HF_TOKEN", "").strip(),
            github_token=env.get("INPUT_GITHUB_TOKEN", "").strip(),
            dry_run=env.get("INPUT_DRY_RUN", "false").strip().lower() in TRUE,
            working_directory=env.get("INPUT_WORKING_DIRECTORY", "").strip() or ".",
        )

    @property
    def publishing(self) -> bool:
        return bool(self.github_token) and not self.dry_run
