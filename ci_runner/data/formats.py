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
import re
from collections.abc import Callable, Sequence
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
REWARD_COLUMNS: dict[str, tuple[str, ...]] = {"accuracy": ("answer",), "format": ()}
IMAGE_COLUMNS = ("images", "image")
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
_YAML_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
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


# --- content checks on the sampled rows ------------------------------------------------------


def _row(i: int, label: str, text: str, *, blocking: bool = True) -> _Issue:
    return _Issue(f"row {i}, column {label}: {text}", blocking)


def _is_empty(value: Any) -> bool:
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, (list, dict)) and not value


def _column_issues(
    view: _View, column: str, trl: str, kinds: tuple[str, ...] | None = None
) -> list[_Issue]:
    """Null, empty, wrongly typed, or a type that differs from the column's first row."""
    kinds, label = kinds or COLUMN_KINDS.get(trl, TEXTUAL), view.label(column, trl)
    issues: list[_Issue] = []
    first: tuple[int, str] | None = None
    for i, value in view.values(column):
        kind = _kind(value)
        if value is None:
            issues.append(_row(i, label, "is null"))
        elif _is_empty(value):
            issues.append(_row(i, label, "is empty"))
        elif kind not in kinds:
            wanted = " or ".join(KIND_WORDS[k] for k in kinds)
            issues.append(_row(i, label, f"is {KIND_WORDS.get(kind, kind)}; expected {wanted}"))
        elif first is None:
            first = (i, kind)
        elif kind != first[1]:
            text = (
                f"is {KIND_WORDS[kind]} but row {first[0]} is {KIND_WORDS[first[1]]}; "
                "a column must hold one type"
            )
            issues.append(_row(i, label, text))
    return issues


def _turn_problem(turn: int, message: Any, roles: Sequence[str]) -> str | None:
    """Why one message is not a {role, content} turn TRL can render, or None."""
    if not isinstance(message, dict):
        what = KIND_WORDS.get(_kind(message), "not a dict")
        return f"turn {turn} is {what}, not a {{role, content}} dict"
    if "role" not in message and "from" in message:
        return "ShareGPT-style {from, value} turns; TRL needs {role, content}"
    if "role" not in message:
        return f"turn {turn} has no 'role'"
    role = message["role"]
    if role not in roles:
        return f"turn {turn} has role {role!r}; expected one of {', '.join(roles)}"
    if message.get("content") is None and not message.get("tool_calls"):
        return f"turn {turn} ({role}) has no content"
    return None


def _structure_problem(messages: list[Any], roles: Sequence[str]) -> str | None:
    return next(
        (p for t, m in enumerate(messages) if (p := _turn_problem(t, m, roles)) is not None), None
    )


def _order_warning(roles: list[str]) -> str | None:
    """The first turn order that some chat templates reject (most accept it)."""
    for t in range(1, len(roles)):
        prev, cur = roles[t - 1], roles[t]
        if cur in SYSTEM_ROLES:
            return f"turn {t} is a {cur} turn in mid-conversation; some chat templates reject it"
        if cur == prev and cur in ("user", "assistant"):
            return (
                f"turns {t - 1} and {t} are both {cur}; some chat templates "
                "(e.g. Gemma's) require alternating roles"
            )
        if cur == "tool" and prev not in ("assistant", "tool"):
            return f"turn {t} is a tool turn that does not follow an assistant turn"
    return None


def _first_role(roles: list[str]) -> str | None:
    return next((r for r in roles if r not in SYSTEM_ROLES), None)


def _shape_problem(roles: list[str], shape: str, trl: str) -> str | None:
    """Role rules per kind of message list: a whole conversation, a prompt, or a reply."""
    first = _first_role(roles)
    if shape == "reply":
        if roles[0] != "assistant":
            return (
                f"starts with a {roles[0]!r} turn; a {trl} after a prompt is the assistant's reply"
            )
        return None
    if first is None:
        return "has no user turn"
    if first != "user":
        return f"first non-system turn is {first!r}, not 'user'"
    if shape == "prompt" and roles[-1] in SYSTEM_ROLES:
        return f"ends with a {roles[-1]} turn; TRL's chat template step rejects that last role"
    if shape == "conversation" and roles[-1] != "assistant":
        return f"last turn is {roles[-1]!r}; it must be the assistant's, the turn that is trained"
    return None


def _messages_issues(view: _View, column: str, trl: str, shape: str, vision: bool) -> list[_Issue]:
    """Per row: structure first (blocking), then role rules, then order warnings."""
    label, roles_ok = view.label(column, trl), VISION_ROLES if vision else ROLES
    issues: list[_Issue] = []
    for i, messages in view.values(column):
        if _kind(messages) != "messages":
            continue  # null, empty or wrongly typed: reported by _column_issues
        problem = _structure_problem(messages, roles_ok)
        if problem is None:
            roles = [m["role"] for m in messages]
            problem = _shape_problem(roles, shape, trl)
            warning = _order_warning(roles)
            if warning:
                issues.append(_row(i, label, warning, blocking=False))
            if problem is None and shape == "prompt" and roles[-1] == "assistant":
                text = "ends with an assistant turn; TRL continues that turn instead of answering"
                issues.append(_row(i, label, text, blocking=False))
        if problem:
            issues.append(_row(i, label, problem))
    return issues


def _textual_issues(
    view: _View, binding: _Binding, trl: str, shape: str, vision: bool = False
) -> list[_Issue]:
    column = binding.columns[trl]
    issues = _column_issues(view, column, trl)
    if shape:
        issues += _messages_issues(view, column, trl, shape, vision)
    return issues


def _pair_issues(view: _View, binding: _Binding, left: str, right: str) -> list[_Issue]:
    """Two columns TRL concatenates or compares must be both strings or both message lists."""
    lcol, rcol = binding.columns[left], binding.columns[right]
    issues = []
    for (i, a), (_, b) in zip(view.values(lcol), view.values(rcol), strict=True):
        ka, kb = _kind(a), _kind(b)
        if ka in TEXTUAL and kb in TEXTUAL and ka != kb:
            text = f"{left} is {KIND_WORDS[ka]} but {right} is {KIND_WORDS[kb]}; they must match"
            issues.append(_row(i, view.label(rcol, right), text))
    return issues


def _is_conversational(view: _View, binding: _Binding, trl: str) -> bool:
    """The first row holds a list of dicts. TRL also wants a role in them; those without
    one are checked as messages too, so the report says why TRL would not take them."""
    value = view.first(binding.columns[trl]) if trl in binding.columns else None
    return _kind(value) == "messages"


def _image_issues(view: _View, image: str, text_trl: str, text_column: str) -> list[_Issue]:
    """Images must be a list (one per placeholder, when the messages carry placeholders)."""
    issues: list[_Issue] = []
    label = view.label(image)
    for (i, images), (_, messages) in zip(
        view.values(image), view.values(text_column), strict=True
    ):
        if images is None:
            text = "is null; use [] for a row without images"
            issues.append(_row(i, label, text, blocking=False))
            continue
        if image == "images" and not isinstance(images, list):
            issues.append(_row(i, label, f"is {KIND_WORDS.get(_kind(images))}; expected a list"))
            continue
        count = len(images) if isinstance(images, list) else 1
        slots = _placeholders(messages)
        if slots and slots != count:
            text = f"has {slots} image placeholder(s) but {label} has {count} image(s)"
            issues.append(_row(i, view.label(text_column, text_trl), text))
    return issues


def _placeholders(messages: Any) -> int:
    """Unfilled {"type": "image"} blocks; string contents get theirs from TRL instead."""
    if _kind(messages) != "messages":
        return 0
    return sum(
        1
        for m in messages
        if isinstance(m.get("content"), list)
        for part in m["content"]
        if isinstance(part, dict) and part.get("type") == "image" and "image" not in part
    )


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


# --- SFT ------------------------------------------------------------------------------------


def _check_sft(view: _View, text_field: str) -> MethodCheck:
    """messages, text or prompt + completion, in the order TRL's SFTTrainer picks them."""
    image, cols = _image_column(view), set(view.columns)
    lm_first = bool(image)  # TRL's vision collator looks for messages/text before prompt
    if not lm_first and {"prompt", "completion"} <= cols:
        return _sft_prompt_completion(view, _bind(view, ("prompt", "completion")), image)
    if "messages" in cols:
        return _sft_messages(view, _bind(view, ("messages",)), image)
    if text_field in cols:
        return _sft_text(view, text_field, image)
    if {"prompt", "completion"} <= cols:
        return _sft_prompt_completion(view, _bind(view, ("prompt", "completion")), image)
    messages = _bind(view, ("messages",))
    if messages.found:
        return _sft_messages(view, messages, image)
    pair = _bind(view, ("prompt", "completion"))
    if pair.found:
        return _sft_prompt_completion(view, pair, image)
    needs = f"messages, {text_field}, or prompt + completion"
    return _missing("sft", view, pair, needs)


def _without_prompt(
    method: str, view: _View, why: str, check: Callable[[_View], MethodCheck]
) -> MethodCheck:
    """Check as if the prompt column were renamed away, and propose that rename."""
    if "prompt" in view.renamed:
        blocker = f"{why}: drop prompt from dataset.columns"
        return _result(method, "", view, _Binding({}, {}, {}, ()), blockers=[blocker])
    result = check(_park(view, "prompt"))
    verdict = Verdict.NEEDS_MAPPING if result.verdict is Verdict.READY else result.verdict
    return MethodCheck(
        result.method,
        verdict,
        result.format,
        (f"{why}: the mapping renames the prompt column out of the way", *result.reasons),
        {**result.mapping, PARKED["prompt"]: "prompt"},
        result.problems,
        result.warnings,
    )


def _park(view: _View, column: str) -> _View:
    """The view with ``column`` renamed to ``PARKED[column]``, as the proposed mapping does."""
    parked = PARKED[column]
    names = tuple(parked if c == column else c for c in view.columns)
    rows = tuple({(parked if k == column else k): v for k, v in row.items()} for row in view.rows)
    source = {(parked if k == column else k): v for k, v in view.source.items()}
    return _View(names, rows, source, view.renamed | {parked}, view.mapping)


def _sft_messages(view: _View, binding: _Binding, image: str | None) -> MethodCheck:
    fmt = _vision("messages", image) if image else "conversational (messages)"
    if not binding.complete:
        return _result("sft", fmt, view, binding)
    column = binding.columns["messages"]
    issues = _textual_issues(view, binding, "messages", "conversation", bool(image))
    if image:
        issues += _image_issues(view, image, "messages", column)
    return _result("sft", fmt, view, binding, issues)


def _sft_text(view: _View, text_field: str, image: str | None) -> MethodCheck:
    binding = _bind(view, (text_field,))
    issues = _column_issues(view, text_field, text_field, ("string",))
    fmt = f"standard ({text_field})"
    reasons = []
    if image:
        reasons.append("text rows must carry the model's own image tokens")
    return _result("sft", _vision(fmt, image), view, binding, issues, reasons)


def _sft_prompt_completion(view: _View, binding: _Binding, image: str | None) -> MethodCheck:
    conversational = _is_conversational(view, binding, "prompt")
    fmt = _vision(_conv("prompt-completion", conversational), image)
    if not binding.complete:
        return _result("sft", fmt, view, binding)
    issues = _prompt_reply_issues(view, binding, "completion", bool(image))
    if image:
        issues += _image_issues(view, image, "prompt", binding.columns["prompt"])
    return _result("sft", fmt, view, binding, issues)


def _prompt_reply_issues(view: _View, binding: _Binding, reply: str, vision: bool) -> list[_Issue]:
    """Prompt and reply columns (completion, chosen, rejected) checked as TRL joins them."""
    conversational = _is_conversational(view, binding, "prompt")
    issues = _textual_issues(view, binding, "prompt", "prompt" if conversational else "", vision)
    issues += _textual_issues(view, binding, reply, "reply" if conversational else "", vision)
    return issues + _pair_issues(view, binding, "prompt", reply)


# --- DPO (and KTO's paired input) ------------------------------------------------------------


def _check_dpo(view: _View) -> MethodCheck:
    binding = _bind(view, ("chosen", "rejected"))
    if not binding.found:
        return _missing("dpo", view, binding, "chosen + rejected (and optionally prompt)")
    return _paired("dpo", view, binding)


def _paired(method: str, view: _View, binding: _Binding) -> MethodCheck:
    """Paired preference data, with its prompt moved away when chosen already carries it."""
    if not _prompt_in_chosen(view, binding):
        return _preference(method, view, _with_prompt(view, binding))
    why = (
        "prompt is a string but chosen/rejected are whole conversations that start with the "
        "user's turn: TRL would join string + list and fail; without a prompt column it "
        "extracts the prompt from the shared turns"
    )
    return _without_prompt(method, view, why, lambda parked: _preference(method, parked, binding))


def _prompt_in_chosen(view: _View, binding: _Binding) -> bool:
    """A string prompt beside conversations that already start with the user's turn."""
    if "prompt" not in view.columns or "chosen" not in binding.columns:
        return False
    chosen = view.first(binding.columns["chosen"])
    return (
        _kind(view.first("prompt")) == "string"
        and _kind(chosen) == "messages"
        and _first_role(_roles(chosen)) == "user"
    )


def _with_prompt(view: _View, binding: _Binding) -> _Binding:
    """Add the explicit prompt: the prompt column, or a synonym that fits chosen's shape.

    Without one TRL extracts the prompt as chosen's and rejected's shared start, which is
    wrong when the prompt sits in another column (question + good/bad responses).
    """
    if "prompt" in view.columns:
        return _merge(binding, _bind(view, ("prompt",)))
    if not binding.complete:
        return binding
    found = _bind(view, ("prompt",), taken=tuple(binding.columns.values()))
    chosen = view.first(binding.columns["chosen"])
    if not found.proposed or _kind(view.first(found.columns["prompt"])) != _kind(chosen):
        return binding
    if _kind(chosen) == "messages" and _first_role(_roles(chosen)) == "user":
        return binding  # chosen carries its prompt: implicit
    return _merge(binding, found)


def _roles(messages: list[Any]) -> list[str]:
    return [m.get("role", "") for m in messages if isinstance(m, dict)]


def _merge(a: _Binding, b: _Binding) -> _Binding:
    return _Binding(
        {**b.columns, **a.columns},
        {**b.proposed, **a.proposed},
        {**b.ambiguous, **a.ambiguous},
        a.missing + b.missing,
    )


def _preference(method: str, view: _View, binding: _Binding) -> MethodCheck:
    explicit = "prompt" in binding.columns
    conversational = _is_conversational(view, binding, "chosen")
    base = "preference, explicit prompt" if explicit else "preference, implicit prompt"
    image = _image_column(view)
    fmt = _vision(_conv(base, conversational), image)
    blockers = []
    if image and not explicit:
        blockers.append(
            "vision preference data needs an explicit prompt column: TRL skips prompt "
            "extraction for image datasets"
        )
    if image and method == "kto":
        blockers.append(
            "TRL's KTOTrainer refuses paired (chosen/rejected) vision data; unpair it first"
        )
    unpairs = "TRL's KTOTrainer unpairs chosen/rejected into prompt/completion/label"
    reasons = [unpairs] if method == "kto" else []
    if not binding.complete:
        return _result(method, fmt, view, binding, reasons=reasons, blockers=blockers)
    issues = _preference_issues(view, binding, explicit, conversational, bool(image))
    if image and explicit:
        issues += _image_issues(view, image, "prompt", binding.columns["prompt"])
    return _result(method, fmt, view, binding, issues, reasons, blockers)


def _preference_issues(
    view: _View, binding: _Binding, explicit: bool, conversational: bool, vision: bool
) -> list[_Issue]:
    if explicit:
        issues = _prompt_reply_issues(view, binding, "chosen", vision)
        shape = "reply" if conversational else ""
        issues += _textual_issues(view, binding, "rejected", shape, vision)
        issues += _pair_issues(view, binding, "prompt", "rejected")
    else:
        shape = "conversation" if conversational else ""
        issues = _textual_issues(view, binding, "chosen", shape, vision)
        issues += _textual_issues(view, binding, "rejected", shape, vision)
    issues += _pair_issues(view, binding, "chosen", "rejected")
    return issues + _pair_content_issues(view, binding, explicit)


def _pair_content_issues(view: _View, binding: _Binding, explicit: bool) -> list[_Issue]:
    """Identical pairs teach nothing; an implicit prompt needs a shared start to extract."""
    chosen, rejected = binding.columns["chosen"], binding.columns["rejected"]
    label = view.label(rejected, "rejected")
    issues = []
    for (i, a), (_, b) in zip(view.values(chosen), view.values(rejected), strict=True):
        if _kind(a) not in TEXTUAL or _kind(a) != _kind(b) or _is_empty(a) or _is_empty(b):
            continue
        if a == b:
            text = "is identical to chosen; the pair teaches nothing"
            issues.append(_row(i, label, text, blocking=False))
        elif not explicit and _shared_start(a, b) == 0:
            issues.append(_no_shared_start(i, label, _kind(a) == "messages"))
    return issues


def _shared_start(a: str | list[Any], b: str | list[Any]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _no_shared_start(i: int, label: str, conversational: bool) -> _Issue:
    if conversational:
        text = "shares no leading turns with chosen, so TRL extracts an empty prompt and fails"
        return _row(i, label, text)
    text = "shares no leading text with chosen, so TRL extracts an empty prompt"
    return _row(i, label, text, blocking=False)


# --- GRPO -----------------------------------------------------------------------------------


def _check_grpo(view: _View, rewards: Sequence[str]) -> MethodCheck:
    needed = [c for r in rewards for c in REWARD_COLUMNS.get(r, ())]
    binding = _bind(view, ("prompt", *dict.fromkeys(needed)))
    reasons = [
        f"reward {r!r} may read other columns (TRL passes every column to it): not checked"
        for r in rewards
        if r not in REWARD_COLUMNS
    ]
    if "prompt" in binding.missing:
        return _missing("grpo", view, binding, "prompt")
    if binding.missing:
        have = ", ".join(view.source[c] for c in view.columns)
        reason = (
            f"the accuracy reward needs column(s) {', '.join(binding.missing)}: none found "
            f"(the dataset has {have}); map one with dataset.columns"
        )
        return _result("grpo", "", view, binding, reasons=reasons, blockers=[reason])
    image = _image_column(view)
    conversational = _is_conversational(view, binding, "prompt")
    fmt = _vision(_conv("prompt-only", conversational), image)
    if not binding.complete:
        return _result("grpo", fmt, view, binding, reasons=reasons)
    issues = _textual_issues(
        view, binding, "prompt", "prompt" if conversational else "", bool(image)
    )
    if "answer" in binding.columns:
        issues += _answer_warnings(view, binding.columns["answer"])
    if image:
        issues += _image_issues(view, image, "prompt", binding.columns["prompt"])
    return _result("grpo", fmt, view, binding, issues, reasons)


def _answer_warnings(view: _View, column: str) -> list[_Issue]:
    """The built-in accuracy reward compares numbers: a row without one always scores 0."""
    label = view.label(column, "answer")
    issues = []
    for i, value in view.values(column):
        if value is None or not _DIGIT.search(str(value)):
            what = "is null" if value is None else "has no number"
            text = f"{what}; the accuracy reward always scores 0 on this row"
            issues.append(_row(i, label, text, blocking=False))
    return issues


# --- KTO ------------------------------------------------------------------------------------


def _check_kto(view: _View) -> MethodCheck:
    note = "train.py runs sft, dpo and grpo only: KTO is checked for reference"
    unpaired = _bind(view, ("prompt", "completion", "label"))
    paired = _bind(view, ("chosen", "rejected"))
    if unpaired.found or not paired.found:
        if not unpaired.found:
            return _missing(
                "kto", view, unpaired, "prompt + completion + label, or chosen + rejected"
            )
        return _add_reason(_kto_unpaired(view, unpaired), note)
    return _add_reason(_paired("kto", view, paired), note)


def _kto_unpaired(view: _View, binding: _Binding) -> MethodCheck:
    image = _image_column(view)
    fmt = _vision("unpaired preference (KTO)", image)
    if not binding.complete:
        return _result("kto", fmt, view, binding)
    issues = _prompt_reply_issues(view, binding, "completion", bool(image))
    issues += _label_issues(view, binding.columns["label"])
    if image:
        issues += _image_issues(view, image, "prompt", binding.columns["prompt"])
    return _result("kto", fmt, view, binding, issues)


def _label_issues(view: _View, column: str) -> list[_Issue]:
    """KTO casts labels to bool tensors: true/false, or 0/1 at a pinch."""
    label = view.label(column, "label")
    issues = []
    for i, value in view.values(column):
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and value in (0, 1):
            text = f"is {value}, not a bool; TRL casts it, but write true/false"
            issues.append(_row(i, label, text, blocking=False))
        else:
            text = (
                f"is {value!r} ({KIND_WORDS.get(_kind(value), _kind(value))}); KTO needs true/false"
            )
            issues.append(_row(i, label, text))
    return issues


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
    kept = tuple(row for row in shaped if not shaping.lacks_content(row, shape))
    lacking = {c: None for row in shaped for c in shaping.missing_content(row, shape)}
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
    if _YAML_PLAIN.match(text) and text.lower() not in _YAML_WORDS:
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
