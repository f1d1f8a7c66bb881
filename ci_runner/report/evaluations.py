"""Evaluation results as a reviewer reads them: each score with its 95% interval, each
change from the base model with a paired interval, and a best model named only when the
data can tell it apart from the runner-up (``ledger.ranking``).

Intervals are bootstrapped over the per-sample results the evaluation jobs recorded
(``Evaluation.samples``) with a fixed seed, so the same ledger renders the same bytes.
A result recorded without per-sample values shows its score alone.
"""

from __future__ import annotations

from ci_runner.core import stats
from ci_runner.core.inert import prose
from ci_runner.ledger.model import Evaluation, Ledger, Run, RunStatus
from ci_runner.ledger.phases import model_verdict
from ci_runner.ledger.ranking import Candidate, Verdict, verdict
from ci_runner.report.markdown import TBD, code, hub_model, link_or_path, named, run_title, table

EVAL_HEADER = ("Run Title", "Benchmark", "Score", "Evaluation Job Link", "Model Link")
LEGEND = (
    "Scores show 95% bootstrap intervals over the benchmark's samples; Δ vs base is a "
    "paired bootstrap over the same samples. A Δ whose interval includes 0 is no evidence "
    "of a change."
)
UNISOLATED_MARK = "⚠ unisolated"
UNISOLATED_NOTE = (
    f"{UNISOLATED_MARK}: the generated code behind this score ran without isolation from "
    "its judge (`evaluation.allow_unisolated_code: true`); it could have forged the score "
    "or read the answers. Rerun where the sandbox isolates (root, `sudo -n`, or user "
    "namespaces with bubblewrap) before trusting it."
)


def score_text(ev: Evaluation) -> str:
    """``0.342 [0.270, 0.415]`` with per-sample results, else ``0.342``; marked when the
    generated code behind it ran unisolated."""
    if ev.score is None:
        return ev.status.label if ev.status in (RunStatus.FAILED, RunStatus.CANCELED) else TBD
    mark = f" {UNISOLATED_MARK}" if ev.unisolated else ""
    if len(ev.samples) < 2:
        return f"{ev.score:.3f}{mark}"
    interval = stats.score_interval(ev.samples)
    return f"{ev.score:.3f} [{interval.low:.3f}, {interval.high:.3f}]{mark}"


def _unisolated(evaluations: list[Evaluation]) -> bool:
    return any(ev.unisolated and ev.score is not None for ev in evaluations)


def benchmark_text(ev: Evaluation) -> str:
    """The benchmark and its metric as the file and the job named them, made inert."""
    return prose(f"{ev.benchmark} {ev.metric}" if ev.metric else ev.benchmark)


def _model_link(ev: Evaluation) -> str:
    return named(ev.model, ev.model_url)


def job_link(ev: Evaluation) -> str:
    """The job that produced the score; a base score another run's job produced says whose
    (the same pinned base, benchmarks and lighteval: evaluated once)."""
    link = link_or_path(ev.job_url, "Logs")
    return f"{link} (reused from {code(ev.reused_from)})" if ev.reused_from else link


def is_final(ev: Evaluation) -> bool:
    return ev.model_label == "final"


def _has_intervals(ledger: Ledger) -> bool:
    return any(len(ev.samples) > 1 for run in ledger.runs for ev in run.evaluations)


# --- deltas against the base model ------------------------------------------------------


def base_evaluation(ledger: Ledger, run: Run, benchmark: str) -> Evaluation | None:
    """Prefer the run's own base evaluation, else any run's: the base is evaluated once."""
    for candidate in [run, *ledger.runs]:
        for ev in candidate.evaluations:
            if ev.benchmark == benchmark and ev.model == ledger.base_model and ev.score is not None:
                return ev
    return None


def paired(base: Evaluation, ev: Evaluation) -> stats.Delta | None:
    """The change from the base on the same samples, when both kept them."""
    if len(ev.samples) < 2 or len(ev.samples) != len(base.samples):
        return None
    return stats.paired_delta(base.samples, ev.samples)


def delta(ledger: Ledger, run: Run, ev: Evaluation) -> str:
    """Score minus the base model's score on the same benchmark, with its paired interval;
    the base row is the baseline."""
    if ev.model == ledger.base_model:
        return "baseline"
    base = base_evaluation(ledger, run, ev.benchmark)
    if ev.score is None or base is None or base.score is None:
        return TBD
    change = paired(base, ev)
    if change is not None:
        return stats.format_delta(change)
    diff = ev.score - base.score
    return "±0.000" if abs(diff) < 0.0005 else f"{diff:+.3f}"


def judgement(ledger: Ledger, run: Run) -> str | None:
    """One sentence on the final model against the base, on the first benchmark."""
    finals = [ev for ev in run.evaluations if is_final(ev) and ev.score is not None]
    if not finals:
        return None
    ev = finals[0]
    base = base_evaluation(ledger, run, ev.benchmark)
    change = paired(base, ev) if base is not None else None
    if change is None:
        return None
    verdict_text = (
        ("a significant gain" if change.estimate > 0 else "a significant drop")
        if change.significant
        else "no significant difference"
    )
    return (
        f"{code(run.run_id)}: final vs base on {benchmark_text(ev)}: "
        f"Δ {stats.format_delta(change)}, {verdict_text} (n={change.n_base})"
    )


# --- one run ----------------------------------------------------------------------------


def run_evaluations(ledger: Ledger, run: Run) -> str:
    if not run.evaluations:
        if run.evaluation and run.active:
            return (
                "Pending: "
                + ", ".join(
                    f"{j.key} ({j.state.value.lower()})" for j in run.phase_jobs if j.kind == "eval"
                )
                if run.phase_jobs
                else "Pending (after training)"
            )
        return "Pending" if run.active else "No evaluations configured"
    header = ("Benchmark", "Model", "Score", "Δ vs base", "Evaluation Job Link")
    rows = [
        [
            benchmark_text(ev),
            _model_link(ev),
            score_text(ev),
            delta(ledger, run, ev),
            job_link(ev),
        ]
        for ev in run.evaluations
    ]
    notes = []
    picked = model_verdict(run)
    if picked.best is not None:
        notes.append(f"Best model by the first benchmark: {code(picked.best)}")
    elif picked.tested and picked.runner_up is not None:
        notes.append(f"Best model by the first benchmark: {picked.summary}")
    if any(len(ev.samples) > 1 for ev in run.evaluations):
        notes.append(LEGEND)
    if _unisolated(run.evaluations):
        notes.append(UNISOLATED_NOTE)
    return table(header, rows) + "".join(f"\n\n{n}" for n in notes)


# --- experiment-wide table ---------------------------------------------------------------


def evaluations_table(ledger: Ledger, *, with_delta: bool = False) -> str:
    """Every score in one table, the view a PR reviewer reads first, then the verdicts.

    Runs that evaluate nothing have no row. For a file with a matrix or stages, runs
    are sorted by the final model's score on the first benchmark, best first, and a run
    is marked best only when it beats the runner-up significantly (``ranking``).
    ``with_delta`` adds each score's change from the base model (PR body, summary).
    """
    runs, ranked = list(ledger.runs), None
    if any(run.max_parallel is not None for run in ledger.runs):
        runs, ranked = _ranked(ledger)
    best = ranked.best if ranked else None
    rows = [row for run in runs for row in _eval_rows(ledger, run, best, with_delta)]
    if not rows:
        return "No evaluations configured."
    header = (*EVAL_HEADER[:3], "Δ vs base", *EVAL_HEADER[3:]) if with_delta else EVAL_HEADER
    lines = [table(header, rows)]
    verdicts = [j for run in runs if (j := judgement(ledger, run))]
    if ranked is not None and ranked.runner_up is not None:
        verdicts.append(f"Across runs, by the final model's first benchmark: {ranked.summary}")
    if verdicts:
        lines.append("\n".join(f"- {v}" for v in verdicts))
    if _has_intervals(ledger):
        lines.append(LEGEND)
    if _unisolated([ev for run in runs for ev in run.evaluations]):
        lines.append(UNISOLATED_NOTE)
    return "\n\n".join(lines)


def _first_benchmark(ledger: Ledger) -> str | None:
    return next((ev.benchmark for run in ledger.runs for ev in run.evaluations), None)


def _final_on(run: Run, benchmark: str | None) -> Evaluation | None:
    return next(
        (
            ev
            for ev in run.evaluations
            if ev.benchmark == benchmark and is_final(ev) and ev.score is not None
        ),
        None,
    )


def _ranked(ledger: Ledger) -> tuple[list[Run], Verdict[str]]:
    """Runs by final score on the first benchmark (unscored last), and which is best."""
    first = _first_benchmark(ledger)
    finals = {run.run_id: _final_on(run, first) for run in ledger.runs}

    def key(run: Run) -> tuple[bool, float]:
        ev = finals[run.run_id]
        return (ev is None, -(ev.score or 0.0) if ev else 0.0)

    picked = verdict(
        [
            Candidate(rid, ev.score, ev.samples)
            for rid, ev in finals.items()
            if ev is not None and ev.score is not None
        ]
    )
    return sorted(ledger.runs, key=key), picked


def _eval_rows(ledger: Ledger, run: Run, best: str | None, with_delta: bool) -> list[list[str]]:
    title = run_title(run)
    if not run.evaluations:
        if not (run.evaluation and run.active):
            return []  # nothing to evaluate, or nothing came of it (its status says why)
        model = hub_model(run) if run.hub_model_id else TBD
        return [[title, TBD, TBD, *([TBD] if with_delta else []), TBD, model]]
    first = _first_benchmark(ledger)
    rows = []
    for ev in run.evaluations:
        score = score_text(ev)
        if best == run.run_id and ev.benchmark == first and is_final(ev):
            score = f"**{score}** (best)"
        extra = [delta(ledger, run, ev)] if with_delta else []
        rows.append(
            [
                title,
                benchmark_text(ev),
                score,
                *extra,
                job_link(ev),
                _model_link(ev),
            ]
        )
    return rows
