"""What one action run did, as the action's outputs and its step summary."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from ci_runner.ledger.model import Ledger, Run


def _add(items: list[str], *values: str | None) -> None:
    for value in values:
        if value and value not in items:
            items.append(value)


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
    annotations: list[tuple[str, str]] = field(default_factory=list)  # (level, message)

    def fail(self, code: int) -> None:
        """The first failure's code is the step's exit code."""
        self.exit_code = self.exit_code or code

    def acted_on(
        self,
        experiment: str | None,
        run_ids: Sequence[str] = (),
        job_ids: Sequence[str | None] = (),
        report: str | None = None,
    ) -> None:
        _add(self.experiments, experiment)
        _add(self.run_ids, *run_ids)
        _add(self.job_ids, *job_ids)
        _add(self.reports, report)

    def acted_on_runs(self, ledgers: list[Ledger], runs: list[Run]) -> None:
        """Runs as ledgers record them: each with its experiment, jobs and report."""
        wanted = {r.run_id for r in runs}
        for ledger in ledgers:
            for run in ledger.runs:
                if run.run_id in wanted:
                    self.acted_on(ledger.experiment, [run.run_id], jobs_of(run), ledger.report_path)

    def outputs(self) -> dict[str, str]:
        return {
            "exit-code": str(self.exit_code),
            "experiments": json.dumps(self.experiments),
            "job-ids": json.dumps(self.job_ids),
            "run-ids": json.dumps(self.run_ids),
            "report-paths": json.dumps(sorted(self.reports)),
            "pr-url": self.pr_urls[0] if self.pr_urls else "",
            "pr-urls": json.dumps(self.pr_urls),
            "comment-url": self.comment_url,
        }


def jobs_of(run: Run) -> list[str | None]:
    """A run's jobs: its training attempts, then its evaluation and export jobs."""
    return [a.job_id for a in run.attempts] + [j.job_id for j in run.phase_jobs]
