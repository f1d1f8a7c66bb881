"""One check per method, in the order TRL's trainers read columns. Internal to ``data``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ci_runner.data.columns import (
    _DIGIT,
    PARKED,
    REWARD_COLUMNS,
    TEXTUAL,
    MethodCheck,
    Verdict,
    _bind,
    _Binding,
    _conv,
    _image_column,
    _Issue,
    _kind,
    _missing,
    _result,
    _View,
    _vision,
)
from ci_runner.data.content import (
    _column_issues,
    _first_role,
    _image_issues,
    _is_conversational,
    _is_empty,
    _pair_issues,
    _row,
    _textual_issues,
)
from ci_runner.data.rewards import RewardNeeds

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


# --- DPO ------------------------------------------------------------


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
    if _carries_prompt(chosen):
        return binding  # chosen carries its prompt: implicit
    if found.ambiguous:
        return _merge(binding, found)
    if not found.proposed or _kind(view.first(found.columns["prompt"])) != _kind(chosen):
        return binding
    return _merge(binding, found)


def _carries_prompt(chosen: Any) -> bool:
    """A whole conversation starting with the user's turn holds its own prompt."""
    return _kind(chosen) == "messages" and _first_role(_roles(chosen)) == "user"


def _prompt_candidate(view: _View) -> bool:
    """Preference data without a prompt column, but with a column named like one, and
    replies that do not carry the prompt themselves."""
    if "prompt" in view.columns:
        return False
    pair = _bind(view, ("chosen", "rejected"))
    if not pair.complete or _carries_prompt(view.first(pair.columns["chosen"])):
        return False
    found = _bind(view, ("prompt",), taken=tuple(pair.columns.values()))
    return bool(found.proposed or found.ambiguous)


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
    reasons: list[str] = []
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
    if isinstance(a, str) and not a[:n].strip():
        return 0  # only whitespace in common: no prompt to extract
    return n


def _no_shared_start(i: int, label: str, conversational: bool) -> _Issue:
    what = "turns" if conversational else "text"
    text = (
        f"shares no leading {what} with chosen, so there is no prompt for TRL to extract "
        "(it would train on an empty one): map the prompt column with dataset.columns "
        "(prompt: <column>)"
    )
    return _row(i, label, text)


# --- GRPO -----------------------------------------------------------------------------------


def _check_grpo(
    view: _View, rewards: Sequence[str], needs: Mapping[str, RewardNeeds]
) -> MethodCheck:
    """The prompt, and every column a reward needs: by name, a synonym, or a mapping."""
    read = [needs[r] for r in rewards if r in needs]
    wanted = list(dict.fromkeys(c for n in read for c in n.columns))
    binding = _bind(view, ("prompt", *wanted))
    reasons = [
        f"{n.label} was not read ({n.note}): its columns are not checked"
        for n in read
        if not n.known
    ]
    if "prompt" in binding.missing:
        return _missing("grpo", view, binding, "prompt")
    blockers = [
        f"{n.label} takes parameter '{p}', which TRL never passes (it passes the "
        f"{p} as '{p}s'): rename the parameter to {p}s or give it a default"
        for n in read
        for p in n.withheld
    ]
    blockers += [
        _reward_gap(n, binding, view) for n in read if set(n.columns) & set(binding.missing)
    ]
    if blockers:
        return _result("grpo", "", view, binding, reasons=reasons, blockers=blockers)
    image = _image_column(view)
    conversational = _is_conversational(view, binding, "prompt")
    fmt = _vision(_conv("prompt-only", conversational), image)
    if not binding.complete:
        return _result("grpo", fmt, view, binding, reasons=reasons)
    issues = _textual_issues(
        view, binding, "prompt", "prompt" if conversational else "", bool(image)
    )
    if "answer" in binding.columns and any(n.builtin and "answer" in n.columns for n in read):
        issues += _answer_warnings(view, binding.columns["answer"])
    if image:
        issues += _image_issues(view, image, "prompt", binding.columns["prompt"])
    return _result("grpo", fmt, view, binding, issues, reasons)


def _reward_gap(needs: RewardNeeds, binding: _Binding, view: _View) -> str:
    """Why a reward cannot run on this dataset, and what can be done that would work."""
    gone = [c for c in needs.columns if c in binding.missing]
    have = ", ".join(view.source[c] for c in view.columns)
    cols = ", ".join(f"'{c}'" for c in gone)
    fits = [
        name for name, columns in REWARD_COLUMNS.items() if all(c in view.columns for c in columns)
    ]
    instead = f"rewards that fit this dataset: {', '.join(fits)}; or " if fits else ""
    if needs.builtin:
        return (
            f"{needs.label} reads column(s) {cols} and no column is named like it (the dataset "
            f"has {have}): map yours with dataset.columns ({gone[0]}: <column>) if one holds "
            f"it; {instead}your own reward (path/to/module.py:function) reading the columns "
            "the dataset has"
        )
    return (
        f"{needs.label} takes parameter(s) {cols} without a default; TRL fills them from "
        f"dataset columns of those names, and the dataset has none (it has {have}): map one "
        f"with dataset.columns ({gone[0]}: <column>), give the parameter a default, or use "
        f"{instead.removesuffix('; or ') or 'another reward'}"
    )


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
