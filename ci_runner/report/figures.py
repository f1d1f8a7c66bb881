"""Ledger → what to plot: one figure per concern, as plain data (``plot.py`` draws it).

- ``loss``: training loss (solid) and eval loss (dashed), every method;
- ``token-accuracy``: SFT's mean token accuracy, train and eval;
- ``dpo-rewards``: DPO's reward accuracy and reward margin;
- ``grpo-reward``: GRPO's total reward and each reward function's.

A figure exists only when some run logged what it shows. With several runs (a sweep, a
pipeline, an edited file) each run has its colour and a legend entry naming what sets it
apart: the swept values (``lr=2e-4, r=16``), the stage, or else the run id.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from ci_runner.job_scripts.curves import REWARD_FUNCTION
from ci_runner.ledger.model import Ledger, Run

Points = tuple[tuple[int, float], ...]

# Short names for the keys people sweep; anything else shows its last segment.
ABBREVIATIONS = {
    "learning_rate": "lr",
    "per_device_train_batch_size": "bs",
    "gradient_accumulation_steps": "grad_accum",
    "num_train_epochs": "epochs",
    "max_steps": "steps",
    "warmup_ratio": "warmup",
    "weight_decay": "wd",
    "max_length": "max_len",
    "max_completion_length": "max_completion",
    "num_generations": "generations",
    "lora.r": "r",
    "lora.alpha": "alpha",
    "lora.dropout": "lora_dropout",
    "lora.target_modules": "targets",
    "base_model": "model",
    "dataset.path": "data",
}


@dataclass(frozen=True)
class Line:
    points: Points
    color: int  # index into the palette
    dashed: bool = False


@dataclass(frozen=True)
class Panel:
    title: str
    ylabel: str
    lines: tuple[Line, ...]


@dataclass(frozen=True)
class LegendEntry:
    label: str
    color: int | None  # None: grey, for a line style shared by all runs (train / eval)
    dashed: bool = False


@dataclass(frozen=True)
class Figure:
    key: str  # the file is <report stem>.<key>.svg
    title: str  # the image's alt text in the report
    panels: tuple[Panel, ...]
    legend: tuple[LegendEntry, ...] = ()


# --- run labels ------------------------------------------------------------------------


def short_value(v: object) -> str:
    """2e-4 rather than 0.0002; a model or dataset by its last path segment."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if v != 0 and math.isfinite(v) and (abs(v) < 1e-2 or abs(v) >= 1e5):
            mantissa, exponent = f"{v:.3e}".split("e")
            return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(short_value(x) for x in v) + "]"
    if isinstance(v, str) and "/" in v:
        return v.rstrip("/").rsplit("/", 1)[-1]
    return str(v)


def matrix_label(matrix: dict[str, object]) -> str:
    """``{"hyperparameters.learning_rate": 2e-4, "lora.r": 16}`` → ``lr=2e-4, r=16``."""

    def short(key: str) -> str:
        last = key.rsplit(".", 1)[-1]
        return ABBREVIATIONS.get(key) or ABBREVIATIONS.get(last) or last

    names = {key: short(key) for key in matrix}
    clashes = {n for n in names.values() if list(names.values()).count(n) > 1}
    return ", ".join(
        f"{key if names[key] in clashes else names[key]}={short_value(v)}"
        for key, v in matrix.items()
    )


def run_labels(runs: list[Run]) -> dict[str, str]:
    """What tells each run apart in a legend; unique within the report."""
    stages = len({r.stage_name for r in runs if r.stage_name}) > 1
    labels = {}
    for run in runs:
        parts = [run.stage_name] if run.stage_name and (stages or not run.matrix) else []
        if run.matrix:
            parts.append(matrix_label(run.matrix))
        labels[run.run_id] = ": ".join(parts) or run.run_id
    seen = list(labels.values())
    return {
        run_id: label if seen.count(label) == 1 else f"{label} ({run_id})"
        for run_id, label in labels.items()
    }


# --- figures ---------------------------------------------------------------------------


def _finite(points: Iterable[tuple[int, float]]) -> Points:
    return tuple((int(s), float(v)) for s, v in points if math.isfinite(v))


@dataclass(frozen=True)
class _Runs:
    """The runs a figure draws, with each run's colour and legend label (report-wide)."""

    runs: list[Run]
    color: dict[str, int]
    label: dict[str, str]


def _train_eval_figure(
    runs: _Runs, key: str, title: str, ylabel: str, train_key: str, eval_key: str
) -> Figure | None:
    """Train solid, eval dashed, one colour per run."""
    lines, entries, has_eval = [], [], False
    for run in runs.runs:
        m, color = run.metrics, runs.color[run.run_id]
        if m is None:
            continue
        train = _finite(m.loss_curve if train_key == "loss" else m.series.get(train_key, []))
        evals = _finite(m.series.get(eval_key, []))
        lines += [Line(p, color, dashed) for p, dashed in ((train, False), (evals, True)) if p]
        has_eval |= bool(evals)
        if train or evals:
            entries.append(LegendEntry(runs.label[run.run_id], color))
    if not lines:
        return None
    styles = [LegendEntry("train", None)] + ([LegendEntry("eval", None, True)] if has_eval else [])
    if len(entries) == 1:  # one run: the legend only says which line is which
        only = entries[0].color
        legend = tuple(LegendEntry(e.label, only, e.dashed) for e in styles) if has_eval else ()
    else:
        legend = (*entries, *styles) if has_eval else tuple(entries)
    return Figure(key, title, (Panel(title, ylabel, tuple(lines)),), legend)


def _panels_figure(
    runs: _Runs, key: str, title: str, panels: list[tuple[str, str]]
) -> Figure | None:
    """One panel per metric (series key, panel title), one colour per run."""
    built, shown = [], {}
    for series_key, panel_title in panels:
        lines = []
        for run in runs.runs:
            points = _finite(run.metrics.series.get(series_key, []) if run.metrics else [])
            if points:
                lines.append(Line(points, runs.color[run.run_id]))
                shown[run.run_id] = runs.color[run.run_id]
        if lines:
            built.append(Panel(panel_title, "", tuple(lines)))
    if not built:
        return None
    legend: tuple[LegendEntry, ...] = ()
    if len(shown) > 1:
        legend = tuple(LegendEntry(runs.label[run_id], color) for run_id, color in shown.items())
    return Figure(key, title, tuple(built), legend)


def _reward_functions(runs: list[Run]) -> list[str]:
    names = {
        match[1]
        for run in runs
        if run.metrics
        for key in run.metrics.series
        if (match := REWARD_FUNCTION.match(key))
    }
    return sorted(names)


def figures(ledger: Ledger) -> list[Figure]:
    """The figures the report shows, in order; only those with something to draw."""
    color = {run.run_id: i for i, run in enumerate(ledger.runs)}
    label = run_labels(list(ledger.runs))

    def of(method: str | None) -> _Runs:
        runs = [r for r in ledger.runs if method is None or r.method == method]
        return _Runs(runs, color, label)

    found = [_train_eval_figure(of(None), "loss", "Loss", "loss", "loss", "eval_loss")]
    found.append(
        _train_eval_figure(
            of("sft"),
            "token-accuracy",
            "Mean token accuracy",
            "accuracy",
            "mean_token_accuracy",
            "eval_mean_token_accuracy",
        )
    )
    dpo = [("rewards/accuracies", "Reward accuracy"), ("rewards/margins", "Reward margin")]
    found.append(_panels_figure(of("dpo"), "dpo-rewards", "DPO rewards", dpo))
    grpo = of("grpo")
    functions = _reward_functions(grpo.runs)
    if len(functions) == 1:
        panels = [("reward", f"Reward ({functions[0]})")]
    else:
        panels = [("reward", "Reward (total)")]
        panels += [(f"rewards/{name}/mean", f"Reward ({name})") for name in functions]
    found.append(_panels_figure(grpo, "grpo-reward", "GRPO reward per function", panels))
    return [f for f in found if f is not None]
