"""Content checks on sampled rows: nulls, types, chat turns, images. Internal to ``data``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ci_runner.data.columns import (
    COLUMN_KINDS,
    KIND_WORDS,
    ROLES,
    SYSTEM_ROLES,
    TEXTUAL,
    VISION_ROLES,
    _Binding,
    _Issue,
    _kind,
    _View,
)

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
