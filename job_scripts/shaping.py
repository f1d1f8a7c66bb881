"""What TRL's trainer receives: the columns a method's format reads, and nothing else.

Real Hub datasets carry many more columns than a trainer reads (``open-r1/codeforces-cots``
has a ``prompt`` beside its ``messages``, plus ids, contest metadata and raw generations),
and TRL 1.16 picks its code path from which columns exist: a ``prompt`` next to
``messages`` sends SFT down the prompt-completion path, which then fails. So before the
trainer sees a row, the job keeps only the columns of one unambiguous format, turns
ShareGPT ``{from, value}`` turns (and their columnar and ``{role, value}`` spellings)
into ``{role, content}``, puts a ``system`` column first in each conversation as its
system turn, and drops rows without content. ``trainer_inputs`` then says what TRL
tokenizes for a row, so the lengths the check reports are the ones TRL trains on.

Pure and stdlib-only: ``train.py`` applies it to the dataset inside the job, and the
runner's data check applies it to the sampled rows, so the check judges exactly the rows
TRL will train on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
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
# A column holding the system prompt beside the conversation: it becomes the system turn.
SYSTEM_COLUMNS = ("system", "system_prompt", "system_message")
# Keys of a turn that chat templates read; anything else (ShareGPT's ``weight``, a
# ``markdown`` copy...) is dropped when a turn is rewritten.
TURN_KEYS = (
    "role",
    "content",
    "tool_calls",
    "tool_call_id",
    "name",
    "reasoning_content",
    "thinking",
)
# Reward functions built into train.py, and the dataset columns each reads.
BUILTIN_REWARD_COLUMNS: dict[str, tuple[str, ...]] = {"accuracy": ("answer",), "format": ()}
# What TRL's GRPOTrainer passes every reward function besides the dataset's columns (and
# it never passes ``prompt``, ``completion``: they arrive as ``prompts``, ``completions``).
REWARD_ARGUMENTS = (
    "prompts",
    "completions",
    "completion_ids",
    "trainer_state",
    "log_extra",
    "log_metric",
    "environments",
)
REWARD_WITHHELD = ("prompt", "completion", "completion_ids")
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
    sharegpt: tuple[str, ...] = ()  # kept columns whose turns are rewritten as {role, content}
    content: tuple[str, ...] = ()  # kept columns that must hold content, else the row drops
    dropped: tuple[str, ...] = ()  # dataset columns the trainer will not see
    system: str | None = None  # the column folded into each conversation as its system turn
    to_chat: tuple[str, ...] = ()  # string columns turned into turns (to carry the system turn)
    system_unused: str | None = None  # a system column the format cannot carry (plain text)
    flatten_parts: bool = True  # text-only content parts joined into one string

    @property
    def rewrites(self) -> bool:
        """Rows change beyond renaming and selecting columns."""
        return bool(self.sharegpt or self.system or self.to_chat)

    @property
    def notable(self) -> bool:
        return bool(self.dropped or self.rename or self.rewrites or self.system_unused)

    def describe(self) -> str:
        """One line for the data check and the job log."""
        parts = [f"keeps {', '.join(self.keep)}"]
        renamed = [f"{src} as {dst}" for src, dst in self.rename.items()]
        if renamed:
            parts.append(f"reads {', '.join(renamed)}")
        if self.sharegpt:
            parts.append(
                f"rewrites the turns of {', '.join(self.sharegpt)} as {{role, content}} "
                "(ShareGPT {from, value}, columnar or text-part spellings)"
            )
        if self.system:
            parts.append(self.system_notice())
        if self.system_unused:
            parts.append(
                f"cannot use column '{self.system_unused}' as a system turn: the "
                f"{'prompt is' if self.format is Format.PROMPT_ONLY else 'data is'} plain text"
            )
        dropped = [c for c in self.dropped if c not in (self.system, self.system_unused)]
        if dropped:
            parts.append(f"drops {_listing(dropped)}")
        return "train.py " + "; ".join(parts)

    def system_notice(self) -> str:
        """The one line check-data and the job log print about the system column."""
        where = " and ".join(_leading_columns(self))
        notice = f"puts column '{self.system}' first in {where} as the system turn"
        if self.to_chat:
            notice += f" (the strings in {', '.join(self.to_chat)} become chat turns to carry it)"
        return notice


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


# --- conversations in the spellings real datasets use ------------------------------------


def as_turns(value: Any) -> list[dict[str, Any]] | None:
    """A conversation as a list of turn dicts, or None when ``value`` is not one.

    Besides a list of dicts this reads the columnar spelling ``datasets`` gives a
    ``sequence`` of structs: ``{"from": [...], "value": [...]}``.
    """
    if isinstance(value, dict) and value and all(isinstance(v, list) for v in value.values()):
        if not {"from", "role"} & set(value):
            return None
        sizes = {len(v) for v in value.values()}
        if len(sizes) != 1:
            return None
        (size,) = sizes
        return [{key: value[key][i] for key in value} for i in range(size)] or None
    if _is_messages(value) and all("role" in t or "from" in t for t in value):
        return value
    return None


def _text_parts(content: Any) -> str | None:
    """``[{"type": "text", "text": ...}, ...]`` as one string; None if any part is not text."""
    if not isinstance(content, list) or not content:
        return None
    texts = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") != "text":
            return None
        texts.append(str(part.get("text") or ""))
    return "".join(texts)


def _turn_needs_rewrite(turn: dict[str, Any], flatten_parts: bool) -> bool:
    if "role" not in turn or "content" not in turn:
        return True
    return flatten_parts and _text_parts(turn.get("content")) is not None


def is_sharegpt(value: Any, *, flatten_parts: bool = True) -> bool:
    """Turns TRL cannot read as they are: ShareGPT ``{from, value}``, ``{role, value}``,
    the columnar spelling, or text-only content parts (when ``flatten_parts``)."""
    turns = as_turns(value)
    if turns is None:
        return False
    if turns is not value:
        return True
    return any(_turn_needs_rewrite(t, flatten_parts) for t in turns)


def _is_messages(value: Any) -> TypeGuard[list[dict[str, Any]]]:
    return isinstance(value, list) and bool(value) and all(isinstance(t, dict) for t in value)


def _first_role(value: Any) -> str | None:
    turns = as_turns(value) or []
    roles = [_role(t) for t in turns if _role(t) not in ("system", "developer")]
    return roles[0] if roles else None


def _role(turn: Mapping[str, Any]) -> str:
    if "role" in turn:
        return str(turn["role"])
    return SHAREGPT_ROLES.get(str(turn.get("from")), str(turn.get("from")))


def system_column(columns: Sequence[str], first: Mapping[str, Any]) -> str | None:
    """The one column holding a system prompt as a string, if the dataset has one."""
    found = [c for c in columns if c.lower() in SYSTEM_COLUMNS]
    found = [c for c in found if first.get(c) is None or isinstance(first.get(c), str)]
    return found[0] if len(found) == 1 else None


# --- the shape per method -------------------------------------------------------------


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
        shape = _sft_shape(columns, first, text_field, extras)
    elif method == "dpo":
        shape = _dpo_shape(columns, first, set(mapped), extras)
    elif method == "grpo":
        shape = _grpo_shape(columns, first, rewards, extras)
    else:
        return None
    return _with_system(shape, columns, first) if shape is not None else None


def _shape(
    fmt: Format,
    columns: Sequence[str],
    keep: Sequence[str],
    first: Mapping[str, Any],
    *,
    content: Sequence[str],
    rename: dict[str, str] | None = None,
    flatten_parts: bool = True,
) -> Shape:
    rename = rename or {}
    back = {dst: src for src, dst in rename.items()}
    kept_sources = {back.get(c, c) for c in keep}
    sharegpt = tuple(
        c for c in keep if is_sharegpt(first.get(back.get(c, c)), flatten_parts=flatten_parts)
    )
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
        flatten_parts=flatten_parts,
    )


def _with_system(shape: Shape, columns: Sequence[str], first: Mapping[str, Any]) -> Shape:
    """Fold a system column into the conversation the trainer reads.

    Conversations get it as their first turn. String prompt/completion or preference
    columns become turns so that they can carry it; plain text (and an implicit prompt
    inside string chosen/rejected) cannot, and the shape says so.
    """
    system = system_column(columns, first)
    if system is None or system in shape.keep:
        return shape
    leading = _leading_columns(shape)
    if not leading:
        return replace(shape, system_unused=system)
    to_chat = tuple(c for c in _text_columns(shape) if isinstance(first.get(c), str))
    implicit = shape.format is Format.PREFERENCE and "prompt" not in shape.keep
    # GRPO keeps string prompts: chat turns would hand the rewards message lists instead of
    # the strings they were written for.
    if to_chat and (implicit or shape.format is Format.PROMPT_ONLY):
        return replace(shape, system_unused=system)
    return replace(shape, system=system, to_chat=to_chat)


def _leading_columns(shape: Shape) -> tuple[str, ...]:
    """The columns a conversation starts in: where the system turn goes."""
    if shape.format is Format.TEXT:
        return ()
    if shape.format is Format.MESSAGES:
        return ("messages",)
    if "prompt" in shape.keep:
        return ("prompt",)
    return ("chosen", "rejected")  # implicit prompt: both conversations carry it


def _text_columns(shape: Shape) -> tuple[str, ...]:
    return tuple(
        c for c in ("prompt", "completion", "chosen", "rejected", "messages") if c in shape.keep
    )


def _sft_shape(
    columns: Sequence[str], first: Mapping[str, Any], text_field: str, extras: list[str]
) -> Shape | None:
    """In TRL's order: prompt + completion, else a conversation, else plain text."""
    present = set(columns)
    flatten = not extras
    tools = [TOOLS_COLUMN] if TOOLS_COLUMN in present else []
    if {"prompt", "completion"} <= present:
        keep = ["prompt", "completion", *extras, *tools]
        return _shape(
            Format.PROMPT_COMPLETION,
            columns,
            keep,
            first,
            content=("prompt", "completion"),
            flatten_parts=flatten,
        )
    for name in ("messages", "conversations"):
        if name in present:
            rename: dict[str, str] = {name: "messages"} if name != "messages" else {}
            keep = ["messages", *extras, *tools]
            return _shape(
                Format.MESSAGES,
                columns,
                keep,
                first,
                content=("messages",),
                rename=rename,
                flatten_parts=flatten,
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
            and as_turns(chosen) is not None
            and _first_role(chosen) == "user"
        )
        if not redundant or "prompt" in mapped:
            keep.insert(0, "prompt")
    tools = [TOOLS_COLUMN] if TOOLS_COLUMN in present else []
    return _shape(
        Format.PREFERENCE,
        columns,
        [*keep, *extras, *tools],
        first,
        content=keep,
        flatten_parts=not extras,
    )


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
    return _shape(
        Format.PROMPT_ONLY, columns, keep, first, content=("prompt",), flatten_parts=not extras
    )


# --- rows -------------------------------------------------------------------------


def normalize_turns(turns: Any, *, flatten_parts: bool = True) -> list[dict[str, Any]]:
    """Any spelling of a conversation → ``{role, content}`` turns (plus the keys chat
    templates read: tool calls, names, reasoning).

    ShareGPT ``{from: human|gpt|system, value}`` becomes ``{role: user|assistant|system,
    content}``; an unknown speaker keeps its name as the role, so the data check can point
    at it. Text-only content parts are joined into one string when ``flatten_parts``.
    """
    out = []
    for turn in as_turns(turns) or []:
        content = turn["content"] if "content" in turn else turn.get("value")
        joined = _text_parts(content) if flatten_parts else None
        rewritten = {"role": _role(turn), "content": content if joined is None else joined}
        for key in TURN_KEYS[2:]:
            if turn.get(key) is not None:
                rewritten[key] = turn[key]
        out.append(rewritten)
    return out


def normalize_row(row: Mapping[str, Any], shape: Shape) -> dict[str, Any]:
    """A row already under TRL's column names, with its turns made chat turns."""
    out = dict(row)
    for column in shape.sharegpt:
        if is_sharegpt(out.get(column), flatten_parts=shape.flatten_parts):
            out[column] = normalize_turns(out[column], flatten_parts=shape.flatten_parts)
    return out


_CHAT_ROLE = {"prompt": "user", "completion": "assistant", "chosen": "assistant"}


def _fold_system(row: dict[str, Any], shape: Shape, system: Any) -> dict[str, Any]:
    """String columns become turns; the system text leads each conversation that lacks one."""
    for column in shape.to_chat:
        value = row.get(column)
        if isinstance(value, str):
            row[column] = [{"role": _CHAT_ROLE.get(column, "assistant"), "content": value}]
    if not isinstance(system, str) or not system.strip():
        return row
    for column in _leading_columns(shape):
        turns = row.get(column)
        if _is_messages(turns) and turns[0].get("role") not in ("system", "developer"):
            row[column] = [{"role": "system", "content": system}, *turns]
    return row


def shape_row(row: Mapping[str, Any], shape: Shape) -> dict[str, Any]:
    """One dataset row as the trainer receives it: renamed, narrowed, normalised, with the
    system column folded in."""
    back = {dst: src for src, dst in shape.rename.items()}
    out = normalize_row({c: row.get(back.get(c, c)) for c in shape.keep}, shape)
    if shape.system or shape.to_chat:
        out = _fold_system(out, shape, row.get(shape.system) if shape.system else None)
    return out


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


# --- what the trainer tokenizes ---------------------------------------------------------


@dataclass(frozen=True)
class Tokenized:
    """One input TRL tokenizes for a row: a chat through the template, or plain text."""

    text: str | None = None
    messages: list[dict[str, Any]] | None = None
    add_generation_prompt: bool = False
    tools: list[Any] | None = None


def _tools(row: Mapping[str, Any]) -> list[Any] | None:
    tools = row.get(TOOLS_COLUMN)
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except ValueError:
            return None
    return tools if isinstance(tools, list) else None


def trainer_inputs(
    row: Mapping[str, Any], shape: Shape, method: str, *, eos: str, text_field: str = "text"
) -> list[Tokenized]:
    """What TRL 1.16 tokenizes for one shaped row; the example's length is the longest.

    SFT: the conversation, prompt + completion, or the text (EOS appended to plain
    text). DPO: prompt + chosen and prompt + rejected (EOS appended to plain text). GRPO:
    the prompt with the generation prompt opened (the completion is bounded by
    ``max_completion_length``, not by the data).
    """
    tools = _tools(row)
    prompt = row.get("prompt")
    if method == "grpo":
        if isinstance(prompt, list):
            return [Tokenized(messages=prompt, add_generation_prompt=True, tools=tools)]
        return [Tokenized(text=str(prompt or ""))]
    replies = ("chosen", "rejected") if method == "dpo" else ("completion",)
    if method == "sft" and shape.format is Format.MESSAGES:
        return [Tokenized(messages=list(row.get("messages") or []), tools=tools)]
    if method == "sft" and shape.format is Format.TEXT:
        return [Tokenized(text=_with_eos(str(row.get(text_field) or ""), eos))]
    inputs = []
    for reply in replies:
        value = row.get(reply)
        if isinstance(value, list):
            turns = list(prompt) if isinstance(prompt, list) else []
            inputs.append(Tokenized(messages=turns + value, tools=tools))
        else:
            head = prompt if isinstance(prompt, str) else ""
            inputs.append(Tokenized(text=head + _with_eos(str(value or ""), eos)))
    return inputs


def _with_eos(text: str, eos: str) -> str:
    return text if not eos or text.endswith(eos) else text + eos
