"""Ledger → markdown training report.

Rendering is a pure function of the ledger: no clock, no I/O, no randomness.
``poll`` commits the report only when its bytes change, so the same ledger must
always give the same text. Links are taken from the ledger as recorded, never
rebuilt here, so the report cannot drift from what the backends returned.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from ci_runner.core.durations import clock
from ci_runner.ledger.model import Attempt, Evaluation, Ledger, Run, RunStatus, TrainMetrics

TBD = "TBD"
EVAL_HEADER = ("Run Title", "Benchmark", "Score", "Evaluation Job Link", "Model Link")
_METHOD_NAMES = {"sft": "SFT", "dpo": "DPO", "grpo": "GRPO"}


def render_report(ledger: Ledger, *, plot_name: str | None) -> str:
    """Render the whole report; ``plot_name`` is the loss SVG's path relative to the report."""
    blocks = [_header(ledger)]
    if plot_name and loss_series(ledger):
        blocks.append(f"![Training loss]({plot_name})")
    if not ledger.runs:
        blocks.append("_No runs recorded yet._")
    if any(run.stage_index is not None for run in ledger.runs):
        blocks.append(_pipeline(ledger))
    for run in ledger.runs:
        blocks += ["---", _run_section(ledger, run)]
    blocks += ["---", _experiment_evaluations(ledger)]
    return "\n\n".join(blocks).rstrip("\n") + "\n"


def loss_series(ledger: Ledger) -> list[tuple[str, list[tuple[int, float]]]]:
    """The (title, curve) pairs the loss plot draws: only runs that logged a loss."""
    return [(r.title, list(r.metrics.loss_curve)) for r in ledger.runs if _curve(r)]


def _curve(run: Run) -> list[tuple[int, float]]:
    return run.metrics.loss_curve if run.metrics else []


# --- formatting primitives -------------------------------------------------


def code(text: str) -> str:
    """Inline code span that survives backticks inside ``text``."""
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def cell(text: str) -> str:
    """Make ``text`` safe inside a table cell: a pipe or newline would split the row."""
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def table(header: tuple[str, ...] | list[str], rows: list[list[str]]) -> str:
    """A GitHub table; every cell is escaped so ledger values cannot break it."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("-" * (len(h) + 2) for h in header) + "|",
    ]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def utc_time(stamp: str | None) -> str:
    """'YYYY-MM-DD HH:MM:SS UTC' for an ISO stamp; unparseable stamps are shown as recorded."""
    if not stamp:
        return TBD
    try:
        parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc)
    return parsed.strftime("%Y-%m-%d %H:%M:%S UTC")


def value(v: Any) -> str:
    """Readable hyperparameter value: lowercase bools, shortest float repr (5e-05)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)
    if isinstance(v, (list, tuple)):
        return ", ".join(value(x) for x in v) if v else "[]"
    if isinstance(v, dict):
        return ", ".join(f"{k}={value(v[k])}" for k in sorted(v, key=str)) or "{}"
    return str(v) if v != "" else '""'


def link_or_path(target: str | None, label: str) -> str:
    """A link for URLs; a local path in backticks (local backend); TBD when unknown."""
    if not target:
        return TBD
    if target.startswith(("http://", "https://")):
        return f"[{label}]({target})"
    return code(target)


def method_label(method: str) -> str:
    """'sft' → 'SFT (TRL)': every method runs on TRL."""
    return f"{_METHOD_NAMES.get(method.lower(), method.upper())} (TRL)"


def run_title(run: Run) -> str:
    """The run's identity as users know it: `title` - `created` - `status`."""
    return f"{code(run.title)} - {code(utc_time(run.created_at))} - {code(run.status.label)}"


def _score(ev: Evaluation) -> str:
    if ev.score is not None:
        return f"{ev.score:.3f}"
    return ev.status.label if ev.status in (RunStatus.FAILED, RunStatus.CANCELED) else TBD


def _benchmark(ev: Evaluation) -> str:
    return f"{ev.benchmark} {ev.metric}" if ev.metric else ev.benchmark


def _model_link(ev: Evaluation) -> str:
    return f"[{ev.model}]({ev.model_url})" if ev.model_url else code(ev.model)


# --- header ----------------------------------------------------------------


def _header(ledger: Ledger) -> str:
    """Base model and dataset first: the two things every run in the report shares."""
    lines = [
        "<!-- Generated by ci-runner from the experiment ledger. Do not edit by hand. -->",
        "",
        "# Base Model & Dataset",
        "",
        _named_link("Base Model", ledger.base_model, ledger.base_model_url),
        _named_link("Dataset", ledger.dataset, ledger.dataset_url),
        f"- Experiment: {code(ledger.experiment)}",
        f"- Method: {method_label(ledger.method)}",
        f"- Spec: {code(ledger.spec_path)}",
    ]
    return "\n".join(lines)


def _named_link(label: str, name: str, url: str | None) -> str:
    if url:
        return f"- [{label}]({url}): {code(name)}"
    return f"- {label}: {code(name)}"


# --- one run ---------------------------------------------------------------


def _run_section(ledger: Ledger, run: Run) -> str:
    return "\n\n".join(
        [
            f"# {run_title(run)}",
            "## Training Parameters\n\n" + table(("Parameter", "Value"), _parameters(run)),
            "## Run Status\n\n" + _status(run),
            "## Run Logs\n\n" + _logs(run),
            _tracker_section(run),
            "## Run Evaluations\n\n" + _run_evaluations(ledger, run),
            *(["## Exports\n\n" + _exports(run)] if run.exports else []),
        ]
    )


def _exports(run: Run) -> str:
    """GGUF files with their real sizes, as the export job measured them."""
    rows = [
        [link_or_path(f.url, f.name) if f.url else code(f.name), f.quantization, _size(f.bytes)]
        for f in run.exports
    ]
    return table(("File", "Quantization", "Size"), rows)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _parameters(run: Run) -> list[list[str]]:
    """Everything needed to reproduce the run, hyperparameters sorted for stable diffs."""
    rows = [
        ["Method", method_label(run.method)],
        ["Model", code(run.base_model)],
        ["Dataset", f"{code(run.dataset)} (split {code(run.dataset_split)})"],
    ]
    rows += [[code(str(k)), value(v)] for k, v in sorted(run.hyperparameters.items())]
    rows += [
        ["LoRA", _lora(run.lora)],
        ["Backend", run.backend],
        ["Hardware", run.hardware],
        ["Timeout", run.timeout or "backend default"],
        ["Hub Model", _hub_model(run)],
        ["Output Dir", code(run.output_dir)],
        _tracker_row(run),
    ]
    return rows


def _hub_model(run: Run) -> str:
    if not run.hub_model_id:
        return "not pushed"
    if run.hub_model_url:
        return f"[{cell(run.hub_model_id)}]({run.hub_model_url})"
    return code(run.hub_model_id)


def _lora(lora: dict[str, Any] | None) -> str:
    """One line for the adapter: the four knobs people compare first, then any extras."""
    if not lora:
        return "off"
    known = [("r", "r"), ("alpha", "alpha"), ("dropout", "dropout"), ("target_modules", "targets")]
    parts = [f"{label}={_lora_value(lora[key])}" for key, label in known if key in lora]
    keys = {k for k, _ in known}
    parts += [f"{k}={_lora_value(v)}" for k, v in sorted(lora.items()) if k not in keys]
    return ", ".join(parts)


def _lora_value(v: Any) -> str:
    """Lists in brackets, so a module list cannot be misread as further settings."""
    return f"[{value(v)}]" if isinstance(v, (list, tuple)) else value(v)


def _status(run: Run) -> str:
    """Label first (what a reviewer scans for), then progress, then any error verbatim."""
    label = f"**{run.status.label}**"
    if run.status is RunStatus.QUEUED and not run.attempts:
        label += " (waiting to be submitted)"
    blocks = [label]
    if run.metrics and (
        details := _metric_lines(run.metrics, final=run.status is RunStatus.COMPLETED)
    ):
        blocks.append("\n".join(details))
    blocks += [f"> **Warning:** {warning}" for warning in run.warnings]
    if run.error:
        blocks += ["**Error:**", _fenced(run.error)]
    return "\n\n".join(blocks)


def _metric_lines(m: TrainMetrics, *, final: bool) -> list[str]:
    """Progress and loss; only a completed run has a final loss; otherwise it is the latest."""
    lines = []
    if m.step is not None:
        lines.append(f"- Step: {m.step}" + (f" / {m.max_steps}" if m.max_steps else ""))
    if m.final_loss is not None:
        lines.append(f"- {'Final' if final else 'Latest'} loss: {m.final_loss:.4f}")
    if m.min_loss is not None:
        lines.append(f"- Min loss: {m.min_loss:.4f}")
    if m.eta_s is not None and not final:
        lines.append(f"- ETA: {clock(m.eta_s)}")
    if m.runtime_s is not None:
        lines.append(f"- Runtime: {clock(m.runtime_s)}")
    if m.train_tokens_per_s is not None:
        lines.append(f"- Train tokens/s: {m.train_tokens_per_s:.1f}")
    return lines


def _fenced(text: str) -> str:
    """A code block whose fence is longer than any backtick run in ``text``."""
    ticks = 3
    while "`" * ticks in text:
        ticks += 1
    return f"{'`' * ticks}text\n{text.rstrip()}\n{'`' * ticks}"


def _logs(run: Run) -> str:
    if not run.attempts:
        return "Pending submission"
    return "\n".join(_attempt_line(a) for a in run.attempts)


def _attempt_line(a: Attempt) -> str:
    """One line per submission, so resumes and their outcomes stay visible."""
    job = _job_ref(a)
    parts = [
        f"- Attempt {a.number}",
        code(a.state.value),
        job,
        f"submitted {utc_time(a.submitted_at)}",
    ]
    if a.finished_at:
        parts.append(f"finished {utc_time(a.finished_at)}")
    if a.exit_code not in (None, 0):
        parts.append(f"exit code {a.exit_code}")
    if a.resume_from:
        parts.append(f"resumed from {code(a.resume_from)}")
    if a.cost_usd:
        parts.append(f"~${a.cost_usd:.2f}")
    line = " · ".join(parts)
    return line + (f" — {a.message}" if a.message else "")


def _job_ref(a: Attempt) -> str:
    label = f"Job {a.job_id}" if a.job_id else "Job"
    if a.job_url:
        return link_or_path(a.job_url, label)
    return f"job {code(a.job_id)}" if a.job_id else "no job id yet"


def _tracker_row(run: Run) -> list[str]:
    if run.tracking_backend == "mlflow":
        where = f"experiment {code(run.tracking_project)}, run {code(run.tracking_run)}"
        return ["MLflow", f"{where}, store {code(run.tracking_uri or 'default')}"]
    return ["Trackio", f"project {code(run.tracking_project)}, run {code(run.tracking_run)}"]


def _tracker_section(run: Run) -> str:
    if run.tracking_backend == "mlflow":
        return "## MLflow Logs\n\n" + _mlflow(run)
    return "## Trackio Logs\n\n" + _trackio(run)


def _mlflow(run: Run) -> str:
    """The MLflow run (known once the job's summary named it) and how to open its store."""
    experiment = f"Experiment {code(run.tracking_project)}"
    if run.tracking_run_id:
        label = f"MLflow run {run.tracking_run_id}"
        ref = f"[{label}]({run.tracking_url})" if run.tracking_url else code(label)
        lines = [f"{ref} ({experiment}, tagged `ci-runner.run={run.run_id}`)."]
    else:
        lines = [f"{experiment}; the run is tagged `ci-runner.run={run.run_id}`."]
    uri = run.tracking_uri or ""
    if not uri.lower().startswith(("http://", "https://", "databricks")):
        lines.append(f"View locally:\n\n```bash\nmlflow ui --backend-store-uri {uri}\n```")
    return "\n\n".join(lines)


def _trackio(run: Run) -> str:
    if run.tracking_url:
        return f"[Trackio Logs]({run.tracking_url})"
    where = f"Project {code(run.tracking_project)}, run {code(run.tracking_run)}."
    # Local jobs log to the project's own trackio store, not ~/.cache.
    env = "TRACKIO_DIR=.ci-runner/trackio " if run.backend == "local" else ""
    command = f"{env}trackio show --project {run.tracking_project}"
    return f"{where} View locally:\n\n```bash\n{command}\n```"


def _run_evaluations(ledger: Ledger, run: Run) -> str:
    if not run.evaluations:
        if run.evaluation and run.active:
            return (
                "Pending: "
                + ", ".join(
                    f"{j.key} ({j.state.value.lower()})" for j in run.stage_jobs if j.kind == "eval"
                )
                if run.stage_jobs
                else "Pending (after training)"
            )
        return "Pending" if run.active else "No evaluations configured"
    header = ("Benchmark", "Model", "Score", "Δ vs base", "Evaluation Job Link")
    rows = [
        [
            _benchmark(ev),
            _model_link(ev),
            _score(ev),
            _delta(ledger, run, ev),
            link_or_path(ev.job_url, "Logs"),
        ]
        for ev in run.evaluations
    ]
    best = (
        f"\n\nBest model by the first benchmark: {code(run.best_model)}" if run.best_model else ""
    )
    return table(header, rows) + best


def _delta(ledger: Ledger, run: Run, ev: Evaluation) -> str:
    """Score minus the base model's score on the same benchmark; the base row is the baseline."""
    if ev.model == ledger.base_model:
        return "baseline"
    base = _base_score(ledger, run, ev.benchmark)
    if ev.score is None or base is None:
        return TBD
    diff = ev.score - base
    return "±0.000" if abs(diff) < 0.0005 else f"{diff:+.3f}"


def _base_score(ledger: Ledger, run: Run, benchmark: str) -> float | None:
    """Prefer the run's own base evaluation, else any run's: the base is evaluated once."""
    for candidate in [run, *ledger.runs]:
        for ev in candidate.evaluations:
            if ev.benchmark == benchmark and ev.model == ledger.base_model and ev.score is not None:
                return ev.score
    return None


# --- pipelines ---------------------------------------------------------------


def _pipeline(ledger: Ledger) -> str:
    """A file's stages as one chain: stage → method → model → the trained model's scores."""
    runs = [run for run in ledger.runs if run.stage_index is not None]
    benchmarks = list(
        dict.fromkeys(_benchmark(ev) for run in runs for ev in run.evaluations if _is_final(ev))
    )
    header = ["Stage", "Run", "Method", "Trained From", "Model", "Status", *benchmarks]
    rows = []
    for run in runs:
        scores = {_benchmark(ev): _score(ev) for ev in run.evaluations if _is_final(ev)}
        rows.append(
            [
                f"{run.stage_index + 1}. {run.stage_name or run.method}",
                code(run.run_id) + (f" ({_matrix_label(run)})" if run.matrix else ""),
                method_label(run.method),
                code(run.base_model),
                _trained_model(run),
                _pipeline_status(run),
                *[scores.get(b, TBD if run.active else "—") for b in benchmarks],
            ]
        )
    return "# Pipeline\n\n" + table(header, rows)


def _is_final(ev: Evaluation) -> bool:
    return ev.model_label == "final"


def _matrix_label(run: Run) -> str:
    return ", ".join(f"{k}={value(v)}" for k, v in (run.matrix or {}).items())


def _trained_model(run: Run) -> str:
    if run.hub_model_id:
        return _hub_model(run)
    return code(run.output_dir)


def _pipeline_status(run: Run) -> str:
    if run.waiting:
        return "Waiting" + (f" for {code(run.depends_on)}" if run.depends_on else "")
    if run.status is RunStatus.CANCELED and run.error and run.error.startswith("not started"):
        return "Not started (an earlier stage did not complete)"
    label = run.status.label
    if run.active and run.stage in ("eval", "export"):
        label += " (evaluating)" if run.stage == "eval" else " (exporting)"
    return label


# --- experiment-wide table -------------------------------------------------


def _experiment_evaluations(ledger: Ledger) -> str:
    """Every score in one table, the view a PR reviewer reads first.

    For a file with a matrix or stages, runs are sorted by the final model's score on
    the first benchmark, best first, and the best is marked.
    """
    runs, best = list(ledger.runs), None
    if any(run.max_parallel is not None for run in ledger.runs):
        runs, best = _ranked(ledger)
    rows = [row for run in runs for row in _eval_rows(run, best)]
    return "# Experiment Evaluations\n\n" + table(EVAL_HEADER, rows)


def _ranked(ledger: Ledger) -> tuple[list[Run], tuple[str, str] | None]:
    """Runs by final score on the first benchmark (unscored last), and (run, benchmark)
    of the best."""
    first = next((ev.benchmark for run in ledger.runs for ev in run.evaluations), None)

    def final_score(run: Run) -> float | None:
        return next(
            (
                ev.score
                for ev in run.evaluations
                if ev.benchmark == first and _is_final(ev) and ev.score is not None
            ),
            None,
        )

    scored = [(run, final_score(run)) for run in ledger.runs]
    ranked = sorted(scored, key=lambda item: (item[1] is None, -(item[1] or 0.0)))
    best = ranked[0] if ranked and ranked[0][1] is not None else None
    return [run for run, _ in ranked], (best[0].run_id, first) if best else None


def _eval_rows(run: Run, best: tuple[str, str] | None = None) -> list[list[str]]:
    title = run_title(run)
    if not run.evaluations:
        model = code(run.hub_model_id) if run.hub_model_id else TBD
        return [[title, TBD, TBD, TBD, model]]
    rows = []
    for ev in run.evaluations:
        score = _score(ev)
        if best == (run.run_id, ev.benchmark) and _is_final(ev):
            score = f"**{score}** (best)"
        rows.append(
            [title, _benchmark(ev), score, link_or_path(ev.job_url, "Logs"), _model_link(ev)]
        )
    return rows
