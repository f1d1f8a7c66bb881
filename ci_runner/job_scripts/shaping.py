"""What TRL's trainer receives: the columns a method's format reads, and nothing else.

Real Hub datasets carry many more columns than a trainer reads (``open-r1/codeforces-cots``
has a ``prompt`` beside its ``messages``, plus ids, contest metadata and raw generations),
and TRL 1.16 picks its code path from which columns exist: a ``prompt`` next to
``messages`` sends SFT down the prompt-completion path, which then fails. So before the
trainer sees a row, the job keeps only the columns of one unambiguous format, turns
ShareGPT ``{from, value}`` turns into ``{role, content}``, and drops rows without content.

Pure and stdlib-only: ``train.py`` applies it to the dataset inside the job, and the
runner's data check applies it to the sampled rows, so the check judges exactly the rows
TRL will train on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeGuard

# ShareGPT speaker names → chat roles; role names pass through unchanged.
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "tool": "tool",
}
# Column names TRL gives a meaning to: listed first among the dropped, as they matter most.
TRL_NAMES = ("prompt", "completion", "messages", "conversations", "text", "chosen", "rejected")
# Columns TRL reads beside a format's own, when present.
IMAGE_COLUMNS = ("images", "image")
TOOLS_COLUMN = "tools"
# Reward functions built into train.py, and the dataset columns each reads.
BUILTIN_REWARD_COLUMNS: dict[str, tuple[str, ...]] = {"accuracy": ("answer",), "format": ()}
# Above this share of rows without content, the dataset is refused rather than thinned.
MAX_EMPTY_FRACTION = 0.5


class Format(str, Enum):
    MESSAGES = "messages"
    TEXT = "text"
    PROMPT_COMPLETION = "prompt-completion"
    PREFERENCE = "preference"
    PROMPT_ONLY = "prompt-only"


@dataclass(frozen=True)
class Shape:
    """How one dataset is cut down for one method's trainer."""

    format: Format
    keep: tuple[str, ...]  # the columns the trainer receives, under TRL's names
    rename: dict[str, str] = field(default_factory=dict)  # dataset column → TRL column
    sharegpt: tuple[str, ...] = ()  # kept columns whose turns are ShareGPT {from, value}
    content: tuple[str, ...] = ()  # kept columns that must hold content, else the row drops
    dropped: tuple[str, ...] = ()  # dataset columns the trainer will not see

    def describe(self) -> str:
        """One line for the data check and the job log."""
        parts = [f"keeps {', '.join(self.keep)}"]
        renamed = [f"{src} as {dst}" for src, dst in self.rename.items()]
        if renamed:
            parts.append(f"reads {', '.join(renamed)}")
        if self.sharegpt:
            parts.append("turns ShareGPT {from, value} turns into {role, content}")
        if self.dropped:
            parts.append(f"drops {_listing(self.dropped)}")
        return "train.py " + "; ".join(parts)


def _listing(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return f"{shown} and {len(names) - limit} more" if len(names) > limit else shown


def first_values(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Each column's first non-null value: what TRL inspects to pick its code path."""
    found: dict[str, Any] = {}
    for row in rows:
        for key, value in row.items():
            if value is not None and key not in found:
                found[key] = value
    return found


def is_sharegpt(value: Any) -> bool:
    """A list of turns spelled ``{from, value}`` rather than ``{role, content}``."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, dict) for t in value)
        and all("from" in t and "role" not in t for t in value)
    )


def _is_messages(value: Any) -> TypeGuard[list[dict[str, Any]]]:
    return isinstance(value, list) and bool(value) and all(isinstance(t, dict) for t in value)


def _first_role(value: Any) -> str | None:
    turns = value if _is_messages(value) else []
    roles = [t.get("role") for t in turns if t.get("role") not in ("system", "developer")]
    return roles[0] if roles else None


def choose_shape(
    method: str,
    columns: Sequence[str],
    first: Mapping[str, Any],
    *,
    text_field: str = "text",
    rewards: Sequence[str] = (),
    mapped: Iterable[str] = (),
) -> Shape | None:
    """The format ``method``'s trainer will read, or None when no format is unambiguous.

    ``columns`` are the dataset's columns after ``dataset.columns`` renamed them;
    ``first`` holds each column's first non-null value; ``mapped`` names the columns the
    experiment's ``dataset.columns`` produced, which are never dropped behind its back.
    """
    present = set(columns)
    extras = [c for c in IMAGE_COLUMNS if c in present]
    if method == "sft":
        return _sft_shape(columns, first, text_field, extras)
    if method == "dpo":
        return _dpo_shape(columns, first, set(mapped), extras)
    if method == "grpo":
        return _grpo_shape(columns, first, rewards, extras)
    return None


def _shape(
    fmt: Format,
    columns: Sequence[str],
    keep: Sequence[str],
    first: Mapping[str, Any],
    *,
    content: Sequence[str],
    rename: dict[str, str] | None = None,
) -> Shape:
    rename = rename or {}
    back = {dst: src for src, dst in rename.items()}
    kept_sources = {back.get(c, c) for c in keep}
    sharegpt = tuple(c for c in keep if is_sharegpt(first.get(back.get(c, c))))
    return Shape(
        format=fmt,
        keep=tuple(keep),
        rename=rename,
        sharegpt=sharegpt,
        content=tuple(content),
        dropped=tuple(
            sorted(
                (c for c in columns if c not in kept_sources),
                key=lambda c: TRL_NAMES.index(c) if c in TRL_NAMES else len(TRL_NAMES),
            )
        ),
    )


def _sft_shape(
    columns: Sequence[str], first: Mapping[str, Any], text_field: str, extras: list[str]
) -> Shape | None:
    """In TRL's order: prompt + completion, else a conversation, else plain text."""
    present = set(columns)
    if {"prompt", "completion"} <= present:
        keep = ["prompt", "completion", *extras]
        return _shape(
            Format.PROMPT_COMPLETION, columns, keep, first, content=("prompt", "completion")
        )
    for name in ("messages", "conversations"):
        if name in present:
            rename: dict[str, str] = {name: "messages"} if name != "messages" else {}
            keep = ["messages", *extras]
            if TOOLS_COLUMN in present:
                keep.append(TOOLS_COLUMN)
            return _shape(
                Format.MESSAGES, columns, keep, first, content=("messages",), rename=rename
            )
    if text_field in present:
        return _shape(Format.TEXT, columns, [text_field, *extras], first, content=(text_field,))
    return None


def _dpo_shape(
    columns: Sequence[str], first: Mapping[str, Any], mapped: set[str], extras: list[str]
) -> Shape | None:
    """chosen + rejected, with the prompt unless it would break TRL.

    A string prompt beside whole conversations that start with the user's turn would be
    joined string + list; without it TRL extracts the prompt from the shared turns.
    """
    present = set(columns)
    if not {"chosen", "rejected"} <= present:
        return None
    keep = ["chosen", "rejected"]
    if "prompt" in present:
        chosen = first.get("chosen")
        redundant = (
            isinstance(first.get("prompt"), str)
            and _is_messages(chosen)
            and _first_role(chosen) == "user"
        )
        if not redundant or "prompt" in mapped:
            keep.insert(0, "prompt")
    return _shape(Format.PREFERENCE, columns, [*keep, *extras], first, content=keep)


def _grpo_shape(
    columns: Sequence[str], first: Mapping[str, Any], rewards: Sequence[str], extras: list[str]
) -> Shape | None:
    """The prompt and what the rewards read; a reward of the user's own may read any column."""
    if "prompt" not in columns:
        return None
    if any(r not in BUILTIN_REWARD_COLUMNS for r in rewards):
        keep = list(columns)
    else:
        needed = [c for r in rewards for c in BUILTIN_REWARD_COLUMNS[r]]
        if any(c not in columns for c in needed):
            return None  # a reward's column is missing: the check proposes a mapping
        keep = list(dict.fromkeys(["prompt", *needed, *extras]))
    return _shape(Format.PROMPT_ONLY, columns, keep, first, content=("prompt",))


# --- rows -------------------------------------------------------------------------


def normalize_turns(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ShareGPT ``{from: human|gpt|system, value}`` → ``{role: user|assistant|system, content}``.

    An unknown speaker keeps its name as the role, so the data check can point at it.
    """
    return [
        {
            "role": SHAREGPT_ROLES.get(str(t.get("from")), str(t.get("from"))),
            "content": t.get("value"),
        }
        for t in turns
    ]


def normalize_row(row: Mapping[str, Any], shape: Shape) -> dict[str, Any]:
    """A row already under TRL's column names, with its ShareGPT turns made chat turns."""
    out = dict(row)
    for column in shape.sharegpt:
        if is_sharegpt(out.get(column)):
            out[column] = normalize_turns(out[column])
    return out


def shape_row(row: Mapping[str, Any], shape: Shape) -> dict[str, Any]:
    """One dataset row as the trainer receives it: renamed, narrowed, normalised."""
    back = {dst: src for src, dst in shape.rename.items()}
    return normalize_row({c: row.get(back.get(c, c)) for c in shape.keep}, shape)


def missing_content(row: Mapping[str, Any], shape: Shape) -> list[str]:
    """The columns where text must be but is not: null, empty, or a turn with null content."""
    missing = []
    for column in shape.content:
        value = row.get(column)
        empty = value is None or value == "" or value == []
        if empty or (
            _is_messages(value)
            and any(t.get("content") is None and not t.get("tool_calls") for t in value)
        ):
            missing.append(column)
    return missing


def lacks_content(row: Mapping[str, Any], shape: Shape) -> bool:
    return bool(missing_content(row, shape))


@dataclass(frozen=True)
class EmptyRows:
    """Rows dropped for lacking content, and whether that is too many to train on."""

    dropped: int
    total: int
    columns: tuple[str, ...]

    @property
    def too_many(self) -> bool:
        return self.total > 0 and self.dropped / self.total > MAX_EMPTY_FRACTION

    def message(self, where: str = "rows") -> str:
        share = self.dropped / self.total if self.total else 0.0
        what = f"{self.dropped} of {self.total} {where} ({share:.0%}) have no content in " + (
            " or ".join(self.columns)
        )
        if self.too_many:
            return f"{what}: more than half, so the dataset is refused; fix or filter it"
        return f"{what}: train.py drops them"
