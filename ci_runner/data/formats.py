"""Does a dataset fit SFT, DPO or GRPO as TRL 1.16 reads it, and what mapping makes it fit?

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
  columns to one (train.py would keep only one of them); a
  mapping written the wrong way round is named as reversed
null or empty ("" / []) content in the columns the format      all         dropped (2)
  reads, or a turn whose content is null
null, empty ("" / []) or wrongly typed value; types mixed     all         blocking
  across rows (TRL reads the first row to pick a code path)
message not a {role, content} dict                            all         blocking
role not system/developer/user/assistant/tool (developer is   all         blocking
  refused for vision: TRL's multimodal path rejects it)
first turn after system/developer is not user                 all         blocking
conversation does not end with an assistant turn              SFT, DPO    blocking
prompt ends with a system turn (TRL raises on the last role)  all         blocking
prompt ends with an assistant turn (TRL continues it)         all         warning
reply (completion, or chosen/rejected after an explicit       all         blocking
  prompt) does not start with an assistant turn
two user or two assistant turns in a row; system turn in      all         warning
  mid-conversation; tool turn not after assistant (some
  templates, e.g. Gemma's, reject these; most accept them)
columns the format does not read (a prompt beside messages,    all         dropped (3)
  ids, metadata); a string prompt beside chosen/rejected
  conversations that start with the user (TRL would join
  str + list and fail)
a system column beside the conversation                        all         system turn (4)
prompt and completion of different types (str vs messages)    SFT         blocking
chosen / rejected (/ prompt) of different types               DPO         blocking
chosen identical to rejected (no learning signal)             DPO         warning
implicit prompt: chosen and rejected share no leading turns   DPO         blocking;
  or text (TRL would extract an empty prompt)                              mapping (1)
vision preference data without an explicit prompt (TRL        DPO         blocking
  skips prompt extraction for image datasets)
image placeholders in the messages != number of images        all         blocking
images null (use [] for a row without images)                 all         warning
accuracy reward: answer null or without a number (scores 0)   GRPO        warning
a reward's column missing (built-in: its column; your own     GRPO        blocking or
  function: a parameter without a default, read with ast)                 mapping
============================================================  ==========  ==========

(1) NEEDS MAPPING with the prompt-like column (``question``, ``instruction``...) when there
is one; a string prompt beside conversations that carry it is dropped by train.py (3).
(2) The check counts them; train.py drops them with a warning, and refuses a dataset where
they are more than half the rows (``job_scripts.shaping``).
(3) train.py keeps only the columns of one unambiguous format (``job_scripts.shaping``),
and the check judges that narrowed view, so it says READY and lists what is dropped.
ShareGPT ``{from, value}`` turns (``conversations`` or ``messages``, also in the columnar
and ``{role, value}`` spellings) are normalised to ``{role, content}`` the same way.
(4) train.py puts a ``system`` column first in each conversation as its system turn (string
columns become turns to carry it); the check judges those rows and says so.

Mapping proposals are conservative: a column is proposed only when its name is a known
synonym of the TRL column (case, spaces and dashes ignored), its sampled values have a
usable type, and it is the only such column. Several candidates are reported, not guessed:
NEEDS MAPPING with the rest of the mapping, the choice left as a YAML comment.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
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
    _check_sft,
    _prompt_candidate,
)
from ci_runner.data.rewards import RewardNeeds, default_needs
from ci_runner.data.sample import DatasetSample
from ci_runner.job_scripts import shaping

__all__ = [
    "MAX_LISTED",
    "DataReport",
    "MethodCheck",
    "ShapedSample",
    "Verdict",
    "build_report",
    "check_dataset",
    "mapping_yaml",
    "render_report",
    "report_to_json",
    "shape_sample",
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
    revision: str | None = None

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
            revision=sample.revision,
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
    reward_needs: Mapping[str, RewardNeeds] | None = None,
) -> list[MethodCheck]:
    """Verdicts for sft, dpo and grpo, after the experiment's ``dataset.columns``.

    ``text_field`` is SFT's ``dataset_text_field`` hyperparameter, which train.py also
    accepts as the text column. ``reward_needs`` says what each reward reads (the
    project's own functions parsed by ``rewards.reward_needs``); without it only the
    built-ins are checked. A broken mapping fails every method, as it fails train.py.
    """
    needs = reward_needs if reward_needs is not None else default_needs(rewards)
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
    sft = _shaped("sft", view, lambda v: _check_sft(v, text_field), text_field=text_field)
    if sft.verdict is Verdict.INCOMPATIBLE and "messages" not in columns:
        sft = _other_conversation(sample, columns, text_field) or sft
    checks = [
        sft,
        _shaped("dpo", view, _check_dpo),
        _shaped("grpo", view, lambda v: _check_grpo(v, list(rewards), needs), rewards=rewards),
    ]
    if not sample.rows:
        note = "no rows were sampled: only the column names were checked"
        checks = [_add_reason(check, note) for check in checks]
    return checks


def _other_conversation(
    sample: DatasetSample, columns: dict[str, str], text_field: str
) -> MethodCheck | None:
    """Another column of ``{role, content}`` turns that SFT would take as it is (a dataset
    with ShareGPT turns TRL cannot read beside their chat-template twin): proposed."""
    first = shaping.first_values(sample.rows)
    for name in _dataset_columns(sample):
        turns = first.get(name)
        if name in (*shaping.TRL_NAMES, *columns.values()) or not _role_content_turns(turns):
            continue
        mapping = {**columns, "messages": name}
        view = _apply_mapping(sample, mapping)
        check = _shaped("sft", view, lambda v: _check_sft(v, text_field), text_field=text_field)
        if check.verdict is Verdict.READY:
            why = (
                f"messages ← '{name}': its turns are {{role, content}} and train, where the "
                "conversation train.py would pick otherwise does not"
            )
            return MethodCheck(
                check.method,
                Verdict.NEEDS_MAPPING,
                check.format,
                (why, *check.reasons),
                mapping,
                check.problems,
                check.warnings,
            )
    return None


def _role_content_turns(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, dict) and "role" in t and "content" in t for t in value)
    )


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
    shape = _choose_shape(method, view, text_field, rewards)
    if shape is None or _prompt_elsewhere(method, shape, view):
        result = check(view)
        if result.verdict is Verdict.NEEDS_MAPPING:
            after = _shape_after(method, view, result.mapping, text_field, rewards)
            if after is not None and after.system:
                result = _add_reason(result, f"with the mapping, train.py {after.system_notice()}")
            elif after is not None and after.system_unused:
                note = f"with the mapping, column '{after.system_unused}' is not used"
                result = _add_reason(result, f"{note}: the prompt stays plain text")
        return result
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
    notes = [shape.describe()] if shape.notable else []
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


def _choose_shape(
    method: str, view: _View, text_field: str, rewards: Sequence[str]
) -> shaping.Shape | None:
    return shaping.choose_shape(
        method,
        view.columns,
        shaping.first_values(view.rows),
        text_field=text_field,
        rewards=rewards,
        mapped=view.renamed,
    )


def _shape_after(
    method: str, view: _View, mapping: dict[str, str], text_field: str, rewards: Sequence[str]
) -> shaping.Shape | None:
    """The shape train.py would choose once the proposed mapping is in the file."""
    rename = {src: trl for trl, src in mapping.items() if trl != src and src in view.columns}
    columns = list(dict.fromkeys(rename.get(c, c) for c in view.columns))
    rows = [{rename.get(k, k): v for k, v in row.items()} for row in view.rows]
    return shaping.choose_shape(
        method, columns, shaping.first_values(rows), text_field=text_field, rewards=rewards
    )


@dataclass(frozen=True)
class ShapedSample:
    """The sampled rows as train.py hands them to TRL for one method."""

    shape: shaping.Shape
    rows: tuple[dict[str, Any], ...]  # rows without content already dropped, as the job does


def shape_sample(
    sample: DatasetSample,
    method: str,
    *,
    columns: dict[str, str] | None = None,
    text_field: str = "text",
    rewards: Sequence[str] = (),
) -> ShapedSample | None:
    """``dataset.columns`` applied, then the job's own shaping; None when the mapping is
    broken or no format fits (there is nothing the trainer would receive)."""
    columns = dict(columns or {})
    if _mapping_errors(_dataset_columns(sample), columns):
        return None
    view = _apply_mapping(sample, columns)
    shape = _choose_shape(method, view, text_field, rewards)
    if shape is None:
        return None
    shaped = (shaping.shape_row(row, shape) for row in view.rows)
    return ShapedSample(shape, tuple(r for r in shaped if not shaping.lacks_content(r, shape)))


def _prompt_elsewhere(method: str, shape: shaping.Shape, view: _View) -> bool:
    """Preference data whose prompt sits in a column named like one: judged whole, so the
    check proposes that column rather than an implicit prompt."""
    return method == "dpo" and "prompt" not in shape.keep and _prompt_candidate(view)


def build_report(
    sample: DatasetSample,
    *,
    columns: dict[str, str] | None = None,
    rewards: Sequence[str] = (),
    text_field: str = "text",
    reward_needs: Mapping[str, RewardNeeds] | None = None,
) -> DataReport:
    """``check_dataset`` wrapped with the sample's summary."""
    checks = check_dataset(
        sample, columns=columns, rewards=rewards, text_field=text_field, reward_needs=reward_needs
    )
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
    revision = f"revision {report.revision}" if report.revision else None
    parts = (report.config, f"split {report.split}", revision, report.origin)
    where = ", ".join(x for x in parts if x)
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
        "revision": report.revision,
        "origin": report.origin,
        "num_rows": report.num_rows,
        "sampled_rows": report.sampled_rows,
        "columns": list(report.columns),
        "method": method,
        "checks": [_check_json(check) for check in report.checks],
    }
