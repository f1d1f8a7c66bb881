"""The data check's vocabulary: verdicts, the view of a dataset after ``dataset.columns``,
which column plays which TRL role, and how a verdict is reached. Internal to ``data``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ci_runner.data.sample import DatasetSample
from ci_runner.job_scripts import shaping

METHODS = ("sft", "dpo", "grpo", "kto")
TRAINABLE = ("sft", "dpo", "grpo")  # what job_scripts/train.py can run
ROLES = ("system", "developer", "user", "assistant", "tool")
VISION_ROLES = ("system", "user", "assistant", "tool")
SYSTEM_ROLES = ("system", "developer")
# The job's own vocabulary (train.py's built-in rewards, the image columns TRL reads).
REWARD_COLUMNS = shaping.BUILTIN_REWARD_COLUMNS
IMAGE_COLUMNS = shaping.IMAGE_COLUMNS
# Where a column TRL must not see is renamed to, when the fix is to move it out of the way.
PARKED = {"prompt": "prompt_unused"}
MAX_LISTED = 10  # problems / warnings listed per method; the rest are counted

# Dataset column names (normalised: lower case, "_" for spaces and dashes) that mean the
# TRL column. TRL's own name in another case ("Prompt") also counts.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "prompt": ("question", "instruction", "query", "input", "problem"),
    "completion": ("response", "answer", "output", "solution"),
    "chosen": ("good_response", "preferred", "accepted", "response_chosen", "chosen_response"),
    "rejected": ("bad_response", "dispreferred", "response_rejected", "rejected_response"),
    "messages": ("conversation", "conversations", "dialog", "dialogue", "chat"),
    "answer": ("solution", "final_answer", "target", "label", "ground_truth"),
    "label": ("desirable", "is_desirable", "kto_label"),
}
# Value types a column may hold, by TRL column (see ``_kind``).
TEXTUAL = ("string", "messages")
COLUMN_KINDS: dict[str, tuple[str, ...]] = {
    "prompt": TEXTUAL,
    "completion": TEXTUAL,
    "chosen": TEXTUAL,
    "rejected": TEXTUAL,
    "messages": ("messages",),
    "answer": ("string", "number"),
    "label": ("bool", "number"),
}
KIND_WORDS = {
    "null": "null",
    "string": "a string",
    "messages": "a message list",
    "list": "a list",
    "dict": "a dict",
    "bool": "a bool",
    "number": "a number",
}
_YAML_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}
_DIGIT = re.compile(r"\d")


class Verdict(str, Enum):
    READY = "READY"
    NEEDS_MAPPING = "NEEDS MAPPING"
    INCOMPATIBLE = "INCOMPATIBLE"


@dataclass(frozen=True)
class MethodCheck:
    """One method's verdict; ``mapping`` is the whole ``dataset.columns`` to paste."""

    method: str
    verdict: Verdict
    format: str
    reasons: tuple[str, ...] = ()
    mapping: dict[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()  # blocking content issues: "row N, column 'x': ..."
    warnings: tuple[str, ...] = ()  # content issues that leave the verdict alone

    @property
    def headline(self) -> str:
        """The format, and for INCOMPATIBLE why: a reason, or how many rows stand in the way."""
        reason = self.reasons[0] if self.reasons else ""
        if not self.format or self.verdict is not Verdict.INCOMPATIBLE:
            return self.format or reason
        if not self.problems:
            return f"{self.format}: {reason}" if reason else self.format
        return f"{self.format}: {_count(self.problems)} problem(s) in the sampled rows"


# --- the dataset as train.py hands it to TRL ----------------------------------------------


@dataclass(frozen=True)
class _Issue:
    text: str
    blocking: bool


@dataclass(frozen=True)
class _View:
    """Columns and rows after ``dataset.columns``, remembering each column's dataset name."""

    columns: tuple[str, ...]
    rows: tuple[dict[str, Any], ...]
    source: dict[str, str]  # view column -> dataset column
    renamed: frozenset[str]  # view columns produced by dataset.columns
    mapping: dict[str, str]  # dataset.columns as the experiment gave it

    def values(self, column: str) -> list[tuple[int, Any]]:
        return [(i, row.get(column)) for i, row in enumerate(self.rows)]

    def first(self, column: str) -> Any:
        """The first non-null value: what TRL inspects to pick its code path."""
        return next((v for _, v in self.values(column) if v is not None), None)

    def label(self, column: str, trl: str | None = None) -> str:
        """The dataset's own column name, plus the TRL name when they differ."""
        src, trl = self.source.get(column, column), trl or column
        return f"'{src}'" if src == trl else f"'{src}' ({trl})"


def _dataset_columns(sample: DatasetSample) -> list[str]:
    if sample.columns:
        return list(sample.columns)
    return list(dict.fromkeys(key for row in sample.rows for key in row))


def _mapping_errors(names: list[str], columns: dict[str, str]) -> list[str]:
    """What makes train.py's ``rename_columns`` fail, or lose a column, for this mapping."""
    effective = {trl: src for trl, src in columns.items() if trl != src}
    errors = [
        f"dataset.columns maps {trl} to '{src}', but the dataset has no column '{src}' "
        f"(it has {', '.join(names) or 'none'})"
        for trl, src in effective.items()
        if src not in names
    ]
    by_source: dict[str, list[str]] = {}
    for trl, src in effective.items():
        by_source.setdefault(src, []).append(trl)
    errors += [
        f"dataset.columns maps {' and '.join(trls)} to the same column '{src}'; train.py "
        "renames a column once, so only one of them would exist"
        for src, trls in by_source.items()
        if len(trls) > 1
    ]
    return errors


def _apply_mapping(sample: DatasetSample, columns: dict[str, str]) -> _View:
    """Rename like train.py: identity entries skipped, TRL-named columns it replaces dropped."""
    names = _dataset_columns(sample)
    effective = {trl: src for trl, src in columns.items() if trl != src}
    sources = set(effective.values())
    shadowed = {trl for trl in effective if trl in names and trl not in sources}
    kept = [name for name in names if name not in shadowed]
    rename = {src: trl for trl, src in effective.items()}
    view_names = [rename.get(name, name) for name in kept]
    return _View(
        columns=tuple(view_names),
        rows=tuple({rename.get(c, c): row.get(c) for c in kept} for row in sample.rows),
        source=dict(zip(view_names, kept, strict=True)),
        renamed=frozenset(rename.values()),
        mapping=dict(columns),
    )


# --- finding the columns a method needs ------------------------------------------------------


@dataclass(frozen=True)
class _Binding:
    """Where each TRL column a format needs lives, and what must be mapped to get it there."""

    columns: dict[str, str]  # TRL name -> view column holding it
    proposed: dict[str, str]  # TRL name -> dataset column to add to dataset.columns
    ambiguous: dict[str, tuple[str, ...]]
    missing: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.missing and not self.ambiguous

    @property
    def found(self) -> bool:
        """Every column is there or has candidates: the format is the one to report."""
        return not self.missing


def _normal(name: str) -> str:
    return re.sub(r"[\s-]+", "_", name.strip().lower())


def _kind(value: Any) -> str:
    """The value's shape as TRL sees it; a list of dicts is a message list."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "messages" if value and all(isinstance(m, dict) for m in value) else "list"
    if isinstance(value, dict):
        return "dict"
    return type(value).__name__


def _fits(view: _View, trl: str, column: str) -> bool:
    """A synonym only counts when its values could be what TRL expects (a bool is no prompt)."""
    value = view.first(column)
    if value is None:
        return True  # nothing sampled to judge by: the name decides
    return _kind(value) in COLUMN_KINDS.get(trl, (_kind(value),))


def _candidates(view: _View, trl: str, taken: set[str]) -> list[str]:
    names = {trl, *SYNONYMS.get(trl, ())}
    return [
        column
        for column in view.columns
        if column not in view.renamed
        and column not in taken
        and _normal(column) in names
        and _fits(view, trl, column)
    ]


def _bind(view: _View, wanted: Sequence[str], taken: Sequence[str] = ()) -> _Binding:
    """Each wanted column under its TRL name, else its one synonym; never two roles per column."""
    used = set(taken) | set(wanted)
    columns: dict[str, str] = {}
    proposed: dict[str, str] = {}
    ambiguous: dict[str, tuple[str, ...]] = {}
    missing: list[str] = []
    for trl in wanted:
        if trl in view.columns:
            columns[trl] = trl
            continue
        found = _candidates(view, trl, used)
        if len(found) == 1:
            columns[trl], proposed[trl] = found[0], view.source[found[0]]
            used.add(found[0])
        elif found:
            ambiguous[trl] = tuple(view.source[c] for c in found)
        else:
            missing.append(trl)
    return _Binding(columns, proposed, ambiguous, tuple(missing))


def _mapping_reasons(binding: _Binding) -> list[str]:
    reasons = [
        f"{trl} ← '{src}': the column is named like TRL's '{trl}'"
        for trl, src in binding.proposed.items()
    ]
    reasons += [
        f"{trl}: several columns could be it ({', '.join(cands)}); "
        "add the right one under dataset.columns"
        for trl, cands in binding.ambiguous.items()
    ]
    return reasons


def _image_column(view: _View) -> str | None:
    return next((c for c in IMAGE_COLUMNS if c in view.columns), None)


# --- verdicts -------------------------------------------------------------------------------


def _count(listed: Sequence[str]) -> int:
    """How many items a capped list stands for."""
    tail = re.match(r"\.\.\. and (\d+) more", listed[-1]) if listed else None
    return len(listed) - 1 + int(tail.group(1)) if tail else len(listed)


def _capped(texts: list[str]) -> tuple[str, ...]:
    if len(texts) <= MAX_LISTED:
        return tuple(texts)
    more = len(texts) - MAX_LISTED
    return (*texts[:MAX_LISTED], f"... and {more} more in the sampled rows")


def _result(
    method: str,
    fmt: str,
    view: _View,
    binding: _Binding,
    issues: Sequence[_Issue] = (),
    reasons: Sequence[str] = (),
    blockers: Sequence[str] = (),
) -> MethodCheck:
    """The verdict: blockers or blocking issues beat a pending mapping, which beats READY."""
    problems = [issue.text for issue in issues if issue.blocking]
    warnings = [issue.text for issue in issues if not issue.blocking]
    pending = bool(binding.proposed or binding.ambiguous)
    if blockers or problems or binding.missing:
        verdict = Verdict.INCOMPATIBLE
    elif pending:
        verdict = Verdict.NEEDS_MAPPING
    else:
        verdict = Verdict.READY
    mapping = {**view.mapping, **binding.proposed} if pending else dict(view.mapping)
    return MethodCheck(
        method=method,
        verdict=verdict,
        format=fmt,
        reasons=tuple([*blockers, *_mapping_reasons(binding), *reasons]),
        mapping=mapping,
        problems=_capped(problems),
        warnings=_capped(warnings),
    )


def _missing(method: str, view: _View, binding: _Binding, needs: str) -> MethodCheck:
    have = ", ".join(view.source[c] for c in view.columns) or "no columns"
    reason = (
        f"needs {needs}; missing {', '.join(binding.missing)} and no column is named like "
        f"{'it' if len(binding.missing) == 1 else 'them'} (the dataset has {have})"
    )
    empty = _Binding({}, {}, {}, binding.missing)
    return _result(method, "", view, empty, reasons=[reason])


def _conv(fmt: str, conversational: bool) -> str:
    return f"{fmt} (conversational)" if conversational else fmt


def _vision(fmt: str, image: str | None) -> str:
    """Vision data is conversational in practice, so its format drops that suffix."""
    return f"vision ({image} + {fmt.removesuffix(' (conversational)')})" if image else fmt


def _add_reason(check: MethodCheck, reason: str) -> MethodCheck:
    return MethodCheck(
        check.method,
        check.verdict,
        check.format,
        (*check.reasons, reason),
        check.mapping,
        check.problems,
        check.warnings,
    )
