"""A dataset check: read a sample (I/O), judge it per method and measure it (pure).

Used by ``check-data`` and, before anything is paid for, by ``plan``/``submit``/
``run``: the example count and mean length it measures feed the cost estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ci_runner.data.formats import (
    MethodCheck,
    Verdict,
    check_dataset,
    render_report,
    report_to_json,
)
from ci_runner.data.lengths import LengthStats, jsonable, load_tokenizer, measure, tokenizer_counter
from ci_runner.data.sample import DatasetSample
from ci_runner.errors import DataIncompatibleError
from ci_runner.spec.model import Experiment

DEFAULT_MAX_LENGTH = {"sft": 1024, "dpo": 1024, "grpo": None}  # TRL 1.16's config defaults


@dataclass(frozen=True)
class DataCheck:
    sample: DatasetSample
    checks: list[MethodCheck]
    lengths: LengthStats | None = None
    method: str | None = None  # the experiment's method, when checking an experiment

    @property
    def verdict(self) -> Verdict | None:
        check = self.for_method(self.method) if self.method else None
        return check.verdict if check else None

    def for_method(self, method: str | None) -> MethodCheck | None:
        return next((c for c in self.checks if c.method == method), None)

    def render(self) -> str:
        text = render_report(self.sample, self.checks, method=self.method)
        if self.lengths is not None:
            text += "\n" + render_lengths(self.lengths)
        return text

    def to_json(self) -> dict[str, Any]:
        data = report_to_json(self.sample, self.checks, method=self.method)
        data["lengths"] = jsonable(self.lengths)
        return data

    def require_fit(self, file: str) -> None:
        """Stop before paying for a run whose data cannot train."""
        check = self.for_method(self.method) if self.method else None
        if check is None or check.verdict == Verdict.READY:
            return
        detail = "; ".join(check.problems or check.reasons) or check.verdict.value
        if check.verdict == Verdict.NEEDS_MAPPING:
            lines = "".join(f"\n    {k}: {v}" for k, v in check.mapping.items())
            detail += f"\n  hint: add to {file}:\n  dataset:\n    columns:{lines}"
        raise DataIncompatibleError(
            f"{file}: dataset: {self.sample.source} is {check.verdict.value} for "
            f"{check.method.upper()}: {detail}\n  (details: ci-runner check-data {file})"
        )


def render_lengths(stats: LengthStats) -> str:
    how = "tokens (model tokenizer)" if stats.exact else "tokens (estimated at 4 chars/token)"
    line = (
        f"Lengths over {stats.count} sampled examples, {how}: p50 {stats.p50}, "
        f"p95 {stats.p95}, max {stats.max}"
    )
    if stats.max_length is not None:
        line += f" (max_length {stats.max_length})"
    return line + (f"\n  warning: {stats.warning}" if stats.warning else "")


def mapped_rows(rows: list[dict[str, Any]], columns: dict[str, str]) -> list[dict[str, Any]]:
    """Rows as train.py will see them after ``dataset.columns`` renames."""
    if not columns:
        return rows
    sources = set(columns.values())
    out = []
    for row in rows:
        renamed = {k: v for k, v in row.items() if k not in sources}
        renamed.update({trl: row[src] for trl, src in columns.items() if src in row})
        out.append(renamed)
    return out


def check_sample(
    sample: DatasetSample, experiment: Experiment | None, *, tokenizer: Any | None = None
) -> DataCheck:
    """Pure: the verdicts and, for an experiment, the length statistics."""
    if experiment is None:
        return DataCheck(sample, check_dataset(sample))
    assert experiment.dataset is not None and experiment.method is not None  # loader-checked
    columns = dict(experiment.dataset.columns)
    checks = check_dataset(sample, columns=columns or None, rewards=list(experiment.rewards))
    method = experiment.method
    max_length = experiment.hyperparameters.get("max_length", DEFAULT_MAX_LENGTH.get(method))
    lengths = measure(
        mapped_rows(sample.rows, columns),
        method,
        max_length=max_length,
        counter=tokenizer_counter(tokenizer) if tokenizer is not None else None,
    )
    return DataCheck(sample, checks, lengths, method)


def check_experiment_data(
    experiment: Experiment,
    *,
    root: Path,
    viewer: Any | None = None,
    sample: DatasetSample | None = None,
) -> DataCheck:
    """Read the experiment's sample (unless given) and check it with the model's tokenizer."""
    from ci_runner.data.sources import read_sample

    ds = experiment.dataset
    assert ds is not None  # the loader requires a dataset of every run
    if sample is None:
        sample = read_sample(ds.path, root=root, config=ds.config, split=ds.split, viewer=viewer)
    tokenizer = load_tokenizer(experiment.base_model, root=root)
    return check_sample(sample, experiment, tokenizer=tokenizer)
