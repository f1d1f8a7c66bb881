"""Does a dataset fit SFT, DPO, GRPO or KTO as TRL 1.16 reads it, and what mapping makes it fit?

Pure functions over a ``DatasetSample`` (no I/O, no heavy imports), so a check costs
nothing and runs before any GPU time. The dataset is first seen the way
``job_scripts/train.py`` hands it to TRL: ``dataset.columns`` (``{trl_column:
dataset_column}``) is applied exactly as its ``rename_columns`` does. Then, per method,
the columns TRL needs are looked up, under TRL's names or unambiguous synonyms, and the
sampled rows are checked for content TRL would choke on.

Verdicts: READY (train.py + TRL accept it as is), NEEDS MAPPING (add the ``mapping``
under ``dataset.columns``), INCOMPATIBLE (a column is missing, or a *blocking* problem).

Content rules. Blocking problems make the verdict INCOMPATIBLE because TRL would crash
or train on the wrong text; warnings are reported and leave the verdict alone.

============================================================  ==========  ==========
rule                                                          methods     effect
============================================================  ==========  ==========
dataset.columns names a missing column, or maps two TRL       all         blocking
  columns to one (train.py would keep only one of them)
null or empty ("" / []) content in the columns the format      SFT, DPO,   dropped (2)
  reads, or a turn whose content is null                        GRPO
null, empty ("" / []) or wrongly typed value; types mixed     all         blocking
  across rows (TRL reads the first row to pick a code path)
message not a {role, content} dict                            all         blocking
role not system/developer/user/assistant/tool (developer is   all         blocking
  refused for vision: TRL's multimodal path rejects it)
first turn after system/developer is not user                 all         blocking
conversation does not end with an assistant turn              SFT, DPO,   blocking
                                                              KTO (impl.)
prompt ends with a system turn (TRL raises on the last role)  all         blocking
prompt ends with an assistant turn (TRL continues it)         all         warning
reply (completion, or chosen/rejected after an explicit       all         blocking
  prompt) does not start with an assistant turn
two user or two assistant turns in a row; system turn in      all         warning
  mid-conversation; tool turn not after assistant (some
  templates, e.g. Gemma's, reject these; most accept them)
columns the format does not read (a prompt beside messages,    SFT, DPO,   dropped (3)
  ids, metadata); a string prompt beside chosen/rejected       GRPO
  conversations that start with the user (TRL would join
  str + list and fail)
string prompt beside chosen/rejected conversations that       KTO         mapping (1)
  start with the user: TRL joins str + list and fails
prompt and completion of different types (str vs messages)    SFT, KTO    blocking
chosen / rejected (/ prompt) of different types               DPO, KTO    blocking
chosen identical to rejected (no learning signal)             DPO, KTO    warning
implicit prompt, conversational: no shared leading turns      DPO, KTO    blocking
  (TRL extracts an empty prompt and fails on it)
implicit prompt, strings: no shared leading text              DPO, KTO    warning
vision preference data without an explicit prompt (TRL        DPO         blocking
  skips prompt extraction for image datasets)
vision KTO with chosen/rejected (TRL refuses paired vision)   KTO         blocking
image placeholders in the messages != number of images        all         blocking
images null (use [] for a text-only row)                      all         warning
KTO label not a bool (0/1 integers: warning, TRL casts them)  KTO         blocking
accuracy reward: answer null or without a number (scores 0)   GRPO        warning
============================================================  ==========  ==========

(1) NEEDS MAPPING with ``{prompt_unused: prompt}``, which renames the prompt out of TRL's
way; blocking instead when ``dataset.columns`` itself produced the prompt column.
(2) The check counts them; train.py drops them with a warning, and refuses a dataset where
they are more than half the rows (``job_scripts.shaping``).
(3) train.py keeps only the columns of one unambiguous format (``job_scripts.shaping``),
and the check judges that narrowed view, so it says READY and lists what is dropped.
ShareGPT ``{from, value}`` turns (``conversations`` or ``messages``) are normalised to
``{role, content}`` the same way.

Mapping proposals are conservative: a column is proposed only when its name is a known
synonym of the TRL column (case, spaces and dashes ignored), its sampled values have a
usable type, and it is the only such column. Several candidates are reported, not guessed:
NEEDS MAPPING with the rest of the mapping, the choice left as a YAML comment.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ci_runner.data.columns import (
    _YAML_PLAIN,
    _YAML_WORDS,
    MAX_LISTED,
    METHODS,
    MethodCheck,
    Verdict,
    _add_reason,
    _apply_mapping,
    _Binding,
    _dataset_columns,
    _mapping_errors,
    _result,
    _View,
)
from ci_runner.data.methods import (
    _check_dpo,
    _check_grpo,
    _check_kto,
    _check_sft,
)
from ci_runner.data.sample import DatasetSample
from ci_runner.job_scripts import shaping

__all__ = [
    "MAX_LISTED",
    "DataReport",
    "MethodCheck",
    "Verdict",
    "build_report",
    "check_dataset",
    "mapping_yaml",
    "render_report",
    "report_to_json",
]


@dataclass(frozen=True)
class DataReport:
    """The sample's summary plus every method's check, for the CLI and the report."""

    source: str
    split: str
    config: str | None
    origin: str
    num_rows: int | None
    sampled_rows: int
    columns: tuple[str, ...]
    checks: tuple[MethodCheck, ...]

    @classmethod
    def from_checks(cls, sample: DatasetSample, checks: Sequence[MethodCheck]) -> DataReport:
        return cls(
            source=sample.source,
            split=sample.split,
            config=sample.config,
            origin=sample.origin,
            num_rows=sample.num_rows,
            sampled_rows=len(sample.rows),
            columns=tuple(_dataset_columns(sample)),
            checks=tuple(checks),
        )

    def for_method(self, method: str) -> MethodCheck:
        for check in self.checks:
            if check.method == method:
                return check
        raise KeyError(f"no check for method {method!r} (have {[c.method for c in self.checks]})")


# --- public entry points --------------------------------------------------------------------


def check_dataset(
    sample: DatasetSample,
    *,
    columns: dict[str, str] | None = None,
    rewards: Sequence[str] = (),
    text_field: str = "text",
) -> list[MethodCheck]:
    """Verdicts for sft, dpo, grpo and kto, after the experiment's ``dataset.columns``.

    ``text_field`` is SFT's ``dataset_text_field`` hyperparameter, which train.py also
    accepts as the text column. A broken mapping fails every method, as it fails train.py.
    """
    columns = dict(columns or {})
    errors = _mapping_errors(_dataset_columns(sample), columns)
    if errors:
        view = _apply_mapping(sample, {})
        view = _View(view.columns, view.rows, view.source, view.renamed, columns)
        none = _Binding({}, {}, {}, ())
        return [_result(m, "", view, none, blockers=errors) for m in METHODS]
    view = _apply_mapping(sample, columns)
    if sample.num_rows == 0:
        empty = f"the {sample.split!r} split has no rows: there is nothing to train on"
        none = _Binding({}, {}, {}, ())
        return [_result(m, "", view, none, blockers=[empty]) for m in METHODS]
    checks = [
        _shaped("sft", view, lambda v: _check_sft(v, text_field), text_field=text_field),
        _shaped("dpo", view, _check_dpo),
        _shaped("grpo", view, lambda v: _check_grpo(v, list(rewards)), rewards=rewards),
        _check_kto(view),
    ]
    if not sample.rows:
        note = "no rows were sampled: only the column names were checked"
        checks = [_add_reason(check, note) for check in checks]
    return checks


def _shaped(
    method: str,
    view: _View,
    check: Callable[[_View], MethodCheck],
    *,
    text_field: str = "text",
    rewards: Sequence[str] = (),
) -> MethodCheck:
    """Check the rows train.py will hand TRL: one format's columns, ShareGPT normalised,
    rows without content dropped (refused when they are the majority)."""
    shape = shaping.choose_shape(
        method,
        view.columns,
        shaping.first_values(view.rows),
        text_field=text_field,
        rewards=rewards,
        mapped=view.renamed,
    )
    if shape is None:
        return check(view)
    shaped = [shaping.shape_row(row, shape) for row in view.rows]
    missing = [shaping.missing_content(row, shape) for row in shaped]
    kept = tuple(row for row, gone in zip(shaped, missing, strict=True) if not gone)
    lacking = {c: None for gone in missing for c in gone}
    back = {dst: src for src, dst in shape.rename.items()}
    narrowed = _View(
        columns=shape.keep,
        rows=kept,
        source={c: view.source.get(back.get(c, c), back.get(c, c)) for c in shape.keep},
        renamed=frozenset(c for c in shape.keep if c in view.renamed or c in back),
        mapping=view.mapping,
    )
    result = check(narrowed)
    notes = [shape.describe()] if shape.dropped or shape.rename or shape.sharegpt else []
    labels = tuple(narrowed.label(c) for c in lacking)
    empty = shaping.EmptyRows(len(shaped) - len(kept), len(shaped), labels)
    warnings = result.warnings
    verdict, reasons = result.verdict, [*result.reasons, *notes]
    if empty.too_many:
        verdict, reasons = Verdict.INCOMPATIBLE, [empty.message("sampled rows"), *reasons]
    elif empty.dropped:
        warnings = (empty.message("sampled rows"), *warnings)
    return MethodCheck(
        result.method,
        verdict,
        result.format,
        tuple(reasons),
        result.mapping,
        result.problems,
        warnings,
    )


def build_report(
    sample: DatasetSample,
    *,
    columns: dict[str, str] | None = None,
    rewards: Sequence[str] = (),
    text_field: str = "text",
) -> DataReport:
    """``check_dataset`` wrapped with the sample's summary."""
    checks = check_dataset(sample, columns=columns, rewards=rewards, text_field=text_field)
    return DataReport.from_checks(sample, checks)


def mapping_yaml(mapping: dict[str, str], ambiguous: Sequence[str] = ()) -> str:
    """The ``dataset.columns`` block to paste into the experiment file."""
    lines = ["dataset:", "  columns:"]
    lines += [f"    {_yaml_scalar(k)}: {_yaml_scalar(v)}" for k, v in mapping.items()]
    lines += [f"    # {reason}" for reason in ambiguous]
    return "\n".join(lines)


def _yaml_scalar(text: str) -> str:
    """Plain when YAML reads it back as the same string, else JSON-quoted (valid YAML)."""
    if _YAML_PLAIN.fullmatch(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text)


def _summary_lines(report: DataReport) -> list[str]:
    where = ", ".join(x for x in (report.config, f"split {report.split}", report.origin) if x)
    size = f"{report.num_rows:,} rows" if report.num_rows is not None else "size unknown"
    return [
        f"Dataset {report.source} ({where}): {size}, {report.sampled_rows} sampled",
        f"Columns: {', '.join(report.columns) or 'none'}",
    ]


def _check_lines(check: MethodCheck) -> list[str]:
    head = f"{check.method.upper()}: {check.verdict.value} — {check.headline}"
    lines = [head + ("; paste:" if check.verdict is Verdict.NEEDS_MAPPING else "")]
    pending: list[str] = []
    if check.verdict is Verdict.NEEDS_MAPPING:
        pending = [r for r in check.reasons if "several columns could be it" in r]
        lines.append(mapping_yaml(check.mapping, pending))
    in_headline = check.reasons[:1] if check.reasons and check.reasons[0] in check.headline else ()
    shown = [r for r in check.reasons[len(in_headline) :] if r not in pending]
    lines += [f"  - {reason}" for reason in shown]
    lines += [f"  ! {problem}" for problem in check.problems]
    lines += [f"  ~ {warning}" for warning in check.warnings]
    return lines


def render_report(
    sample: DatasetSample, checks: Sequence[MethodCheck], *, method: str | None = None
) -> str:
    """Sample summary, then each method (``!`` blocks training, ``~`` is a warning).

    With ``method`` (the experiment's), that method is shown in full and the others on one
    line, so the report leads with what matters for this run.
    """
    report = DataReport.from_checks(sample, checks)
    lines = _summary_lines(report)
    if method is None:
        for check in report.checks:
            lines += _check_lines(check)
        return "\n".join(lines)
    lines += _check_lines(report.for_method(method))
    others = [f"{c.method.upper()} {c.verdict.value}" for c in report.checks if c.method != method]
    if others:
        lines.append(f"Other methods: {', '.join(others)}")
    return "\n".join(lines)


def _check_json(check: MethodCheck) -> dict[str, Any]:
    return {
        "method": check.method,
        "verdict": check.verdict.value,
        "format": check.format,
        "reasons": list(check.reasons),
        "mapping": dict(check.mapping),
        "problems": list(check.problems),
        "warnings": list(check.warnings),
    }


def report_to_json(
    sample: DatasetSample, checks: Sequence[MethodCheck], *, method: str | None = None
) -> dict[str, Any]:
    """The same report as plain JSON types, for ``--json`` and the ledger."""
    report = DataReport.from_checks(sample, checks)
    return {
        "source": report.source,
        "split": report.split,
        "config": report.config,
        "origin": report.origin,
        "num_rows": report.num_rows,
        "sampled_rows": report.sampled_rows,
        "columns": list(report.columns),
        "method": method,
        "checks": [_check_json(check) for check in report.checks],
    }
