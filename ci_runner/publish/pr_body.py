"""What a reviewer reads on an experiment's results PR (and in a poll's step summary).

Both reuse the report's own rendering (``report/render.py``), trimmed to the tables
and the plots: the runs with their method's metrics and health findings, the plots,
and every evaluation with its delta against the base model. Rendered from the ledger
alone, like the report, so an unchanged ledger gives the same body and a re-run has
nothing to update.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ci_runner.core.inert import link
from ci_runner.ledger.model import Ledger, Run
from ci_runner.report.evaluations import evaluations_table
from ci_runner.report.markdown import code, is_url
from ci_runner.report.render import render_overview, title_line


def report_marker(experiment: str) -> str:
    """Hidden line that identifies the PR body as ci-runner's, per experiment."""
    return f"<!-- ci-runner:report experiment={experiment} -->"


def pr_title(ledger: Ledger) -> str:
    return f"ci-runner: {ledger.experiment} training report"


@dataclass(frozen=True)
class Links:
    """Where the published files can be seen; ``plots`` maps a figure's key to its URL."""

    report: str
    ledger: str
    plots: Mapping[str, str] = field(default_factory=dict)


def summary_block(ledger: Ledger, plots: Mapping[str, str] | None = None) -> str:
    """One experiment, as the step summary and the PR body show it."""
    blocks = [f"### {title_line(ledger)}", render_overview(ledger, plots)]
    if any(run.evaluations or run.evaluation for run in ledger.runs):
        blocks.append("#### Evaluations\n\n" + evaluations_table(ledger, with_delta=True))
    return "\n\n".join(blocks)


def _run_links(run: Run) -> list[str]:
    links = []
    attempt = run.last_attempt
    if attempt and is_url(attempt.job_url):
        links.append(link("job", attempt.job_url))
    if run.tracking_url:
        tracker = "mlflow" if run.tracking_backend == "mlflow" else "trackio"
        links.append(link(tracker, run.tracking_url))
    if run.hub_model_url:
        links.append(link("model", run.hub_model_url))
    return [f"- {code(run.run_id)}: " + " · ".join(links)] if links else []


def render_pr_body(ledger: Ledger, links: Links) -> str:
    """Marker, the experiment's overview and evaluations (as in the report), links."""
    run_links = [line for run in ledger.runs for line in _run_links(run)]
    blocks = [
        report_marker(ledger.experiment),
        summary_block(ledger, links.plots),
        "#### Links\n\n"
        + "\n".join([f"- [Report]({links.report}) · [Ledger]({links.ledger})", *run_links]),
        "_Written by ci-runner from the ledger on every poll that changes it; "
        "do not edit this PR's files or description by hand. Merge it to keep the "
        "report on the default branch._",
    ]
    return "\n\n".join(blocks) + "\n"
