"""A dataset check: read a sample (I/O), judge it per method and measure it (pure).

Used by ``check-data`` and, before anything is paid for, by ``plan``/``submit``/
``run``: the example count and mean length it measures feed the cost estimate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ci_runner.data.formats import (
    MethodCheck,
    Verdict,
    check_dataset,
    mapping_yaml,
    render_report,
    report_to_json,
    shape_sample,
)
from ci_runner.data.lengths import (
    LengthStats,
    eos_token,
    jsonable,
    length_stats,
    load_tokenizer,
    row_lengths,
    tokenizer_counter,
)
from ci_runner.data.rewards import RewardNeeds, reward_needs
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
            block = mapping_yaml(check.mapping).replace("\n", "\n    ")
            detail += f"\n  hint: add to {file}:\n    {block}"
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


def token_counts(
    sample: DatasetSample,
    experiment: Experiment,
    *,
    columns: dict[str, str] | None = None,
    tokenizer: Any | None = None,
) -> list[int] | None:
    """Each sampled row's length in tokens, as the experiment's trainer will tokenize it:
    ``dataset.columns`` (or ``columns``) applied, shaped by the job's own code, counted
    through the chat template. None when no format fits (nothing would be trained)."""
    assert experiment.method is not None  # loader-checked
    mapping = dict(experiment.dataset.columns if columns is None else columns)  # type: ignore[union-attr]
    text_field = str(experiment.hyperparameters.get("dataset_text_field", "text"))
    shaped = shape_sample(
        sample,
        experiment.method,
        columns=mapping,
        text_field=text_field,
        rewards=list(experiment.rewards),
    )
    if shaped is None:
        return None
    return row_lengths(
        shaped.rows,
        shaped.shape,
        experiment.method,
        counter=tokenizer_counter(tokenizer) if tokenizer is not None else None,
        eos=eos_token(tokenizer) if tokenizer is not None else "",
        text_field=text_field,
    )


def check_sample(
    sample: DatasetSample,
    experiment: Experiment | None,
    *,
    tokenizer: Any | None = None,
    reward_needs: Mapping[str, RewardNeeds] | None = None,
) -> DataCheck:
    """Pure: the verdicts and, for an experiment, the length statistics.

    Lengths are measured on the rows the job will train on; when the verdict proposes a
    mapping, with that mapping applied (what training will see once it is pasted).
    """
    if experiment is None:
        return DataCheck(sample, check_dataset(sample))
    assert experiment.dataset is not None and experiment.method is not None  # loader-checked
    columns = dict(experiment.dataset.columns)
    checks = check_dataset(
        sample,
        columns=columns or None,
        rewards=list(experiment.rewards),
        text_field=str(experiment.hyperparameters.get("dataset_text_field", "text")),
        reward_needs=reward_needs,
    )
    method = experiment.method
    mine = next(c for c in checks if c.method == method)
    if mine.verdict is Verdict.NEEDS_MAPPING:
        columns = dict(mine.mapping)
    max_length = experiment.hyperparameters.get("max_length", DEFAULT_MAX_LENGTH.get(method))
    counts = token_counts(sample, experiment, columns=columns, tokenizer=tokenizer)
    lengths = None
    if counts is not None:
        lengths = length_stats(counts, max_length=max_length, exact=tokenizer is not None)
    return DataCheck(sample, checks, lengths, method)


def check_experiment_data(
    experiment: Experiment,
    *,
    root: Path,
    viewer: Any | None = None,
    sample: DatasetSample | None = None,
    revision: str | None = None,
) -> DataCheck:
    """Read the experiment's sample (unless given) and check it with the model's tokenizer.

    ``revision``: the Hub revision to sample when it is not the newest (the one submit
    pins), so the rows checked are the rows the job trains on.
    """
    from ci_runner.data.sources import read_sample

    ds = experiment.dataset
    assert ds is not None  # the loader requires a dataset of every run
    if sample is None:
        sample = read_sample(
            ds.path,
            root=root,
            config=ds.config,
            split=ds.split,
            viewer=viewer,
            revision=revision,
        )
    tokenizer = load_tokenizer(experiment.base_model, root=root)
    needs = reward_needs(list(experiment.rewards), root)
    return check_sample(sample, experiment, tokenizer=tokenizer, reward_needs=needs)
