"""What a reviewer reads on an experiment's results PR (and in a poll's step summary).

Rendered from the ledger alone, like the report, so an unchanged ledger gives the same
body and a re-run has nothing to update. Scores carry their delta against the base
model, the number a reviewer decides on.
"""

from __future__ import annotations

from dataclasses import dataclass

from ci_runner.ledger.model import Ledger, Run
from ci_runner.report.render import (
    EVAL_HEADER,
    TBD,
    code,
    link_or_path,
    method_label,
    run_title,
    table,
)

STATUS_HEADER = ("Experiment", "Run", "Status", "Step", "Loss", "Hardware", "Job")
EVAL_DELTA_HEADER = (*EVAL_HEADER[:3], "Δ vs base", *EVAL_HEADER[3:])


def report_marker(experiment: str) -> str:
    """Hidden line that identifies the PR body as ci-runner's, per experiment."""
    return f"<!-- ci-runner:report experiment={experiment} -->"


def pr_title(ledger: Ledger) -> str:
    return f"ci-runner: {ledger.experiment} training report"


@dataclass(frozen=True)
class Links:
    """Where the published files can be seen; plot is None when there is no loss curve yet."""

    report: str
    ledger: str
    plot: str | None = None


def status_rows(ledger: Ledger) -> list[list[str]]:
    rows = []
    for run in ledger.runs:
        m = run.metrics
        step = f"{m.step}/{m.max_steps or '?'}" if m and m.step is not None else TBD
        loss = f"{m.final_loss:.4f}" if m and m.final_loss is not None else TBD
        attempt = run.last_attempt
        job = TBD
        if attempt and attempt.job_id:
            job = (
                link_or_path(attempt.job_url, attempt.job_id) if attempt.job_url else attempt.job_id
            )
        status = run.status.label + (f": {run.error.splitlines()[0]}" if run.error else "")
        rows.append([ledger.experiment, code(run.run_id), status, step, loss, run.hardware, job])
    return rows


def status_table(ledgers: list[Ledger]) -> str:
    rows = [row for ledger in ledgers for row in status_rows(ledger)]
    return table(STATUS_HEADER, rows) if rows else "_No runs recorded yet._"


def _base_scores(ledger: Ledger) -> dict[str, float]:
    """The base model's score per benchmark; the base is evaluated once per experiment."""
    scores: dict[str, float] = {}
    for run in ledger.runs:
        for ev in run.evaluations:
            if ev.model == ledger.base_model and ev.score is not None:
                scores.setdefault(ev.benchmark, ev.score)
    return scores


def _eval_rows(ledger: Ledger, run: Run, base: dict[str, float]) -> list[list[str]]:
    rows = []
    for ev in run.evaluations:
        score = f"{ev.score:.3f}" if ev.score is not None else TBD
        if ev.model == ledger.base_model:
            delta = "baseline"
        elif ev.score is not None and ev.benchmark in base:
            diff = ev.score - base[ev.benchmark]
            delta = "±0.000" if abs(diff) < 0.0005 else f"{diff:+.3f}"
        else:
            delta = TBD
        model = f"[{ev.model}]({ev.model_url})" if ev.model_url else code(ev.model)
        benchmark = f"{ev.benchmark} {ev.metric}" if ev.metric else ev.benchmark
        job = link_or_path(ev.job_url, "Logs")
        rows.append([run_title(run), benchmark, score, delta, job, model])
    return rows


def eval_table(ledger: Ledger) -> str:
    """Every evaluation of the experiment, with its delta against the base model."""
    base = _base_scores(ledger)
    rows = [row for run in ledger.runs for row in _eval_rows(ledger, run, base)]
    return table(EVAL_DELTA_HEADER, rows) if rows else "_No evaluations yet._"


def _named(name: str, url: str | None) -> str:
    return f"[{code(name)}]({url})" if url else code(name)


def _run_links(run: Run) -> list[str]:
    links = []
    attempt = run.last_attempt
    if attempt and attempt.job_url and attempt.job_url.startswith("http"):
        links.append(f"[job]({attempt.job_url})")
    if run.tracking_url:
        tracker = "mlflow" if run.tracking_backend == "mlflow" else "trackio"
        links.append(f"[{tracker}]({run.tracking_url})")
    if run.hub_model_url:
        links.append(f"[model]({run.hub_model_url})")
    return [f"- {code(run.run_id)}: " + " · ".join(links)] if links else []


def render_pr_body(ledger: Ledger, links: Links) -> str:
    """Marker, what was trained, run status, evaluations with deltas, loss plot, links."""
    blocks = [
        report_marker(ledger.experiment),
        f"## {code(ledger.experiment)}: {method_label(ledger.method)} of "
        f"{_named(ledger.base_model, ledger.base_model_url)} on "
        f"{_named(ledger.dataset, ledger.dataset_url)}",
        "### Runs\n\n" + status_table([ledger]),
        "### Evaluations\n\n" + eval_table(ledger),
    ]
    if links.plot:
        blocks.append(f"### Training loss\n\n![Training loss]({links.plot})")
    run_links = [line for run in ledger.runs for line in _run_links(run)]
    blocks.append(
        "### Links\n\n"
        + "\n".join([f"- [Report]({links.report}) · [Ledger]({links.ledger})", *run_links])
    )
    blocks.append(
        "_Written by ci-runner from the ledger on every poll that changes it; "
        "do not edit this PR's files or description by hand. Merge it to keep the "
        "report on the default branch._"
    )
    return "\n\n".join(blocks) + "\n"
