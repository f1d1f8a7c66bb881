"""How long the examples are, in the base model's tokens, against ``max_length``.

The statistics are pure; counting tokens needs the model's tokenizer. With a
``tokenizer.json`` (a local model, the HF cache, or its tokenizer files fetched from
the Hub unless ``HF_HUB_OFFLINE`` is set) it is counted by ``ci_runner.data.tokens``,
without transformers. A tokenizer without one (sentencepiece only) is loaded through
transformers when it is installed, from disk only. Without either, lengths are
estimated at 4 characters per token and the report says so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHARS_PER_TOKEN = 4.0
Counter = Callable[[Any], int]


@dataclass(frozen=True)
class LengthStats:
    count: int
    p50: int
    p95: int
    max: int
    mean: float
    max_length: int | None
    truncated: int  # examples longer than max_length
    exact: bool  # counted with the model's tokenizer, not estimated

    @property
    def truncated_fraction(self) -> float:
        return self.truncated / self.count if self.count else 0.0

    @property
    def warning(self) -> str | None:
        if not self.truncated or self.max_length is None:
            return None
        return (
            f"{self.truncated} of {self.count} sampled examples ({self.truncated_fraction:.0%}) "
            f"exceed max_length {self.max_length} and will be truncated (p95 {self.p95}, "
            f"max {self.max}): raise max_length or filter long examples"
        )


def _percentile(sorted_values: list[int], q: float) -> int:
    index = max(0, math.ceil(q * len(sorted_values)) - 1)
    return sorted_values[index]


def length_stats(lengths: list[int], *, max_length: int | None, exact: bool) -> LengthStats | None:
    if not lengths:
        return None
    ordered = sorted(lengths)
    over = sum(1 for n in ordered if max_length is not None and n > max_length)
    return LengthStats(
        count=len(ordered),
        p50=_percentile(ordered, 0.5),
        p95=_percentile(ordered, 0.95),
        max=ordered[-1],
        mean=sum(ordered) / len(ordered),
        max_length=max_length,
        truncated=over,
        exact=exact,
    )


def _as_messages(value: Any, role: str) -> list[dict[str, Any]]:
    if isinstance(value, list):
        return [m for m in value if isinstance(m, dict)]
    return [{"role": role, "content": "" if value is None else str(value)}]


def example_parts(row: dict[str, Any], method: str) -> list[list[dict[str, Any]]]:
    """The sequences TRL trains on for one row, as chat messages.

    SFT: the conversation (or prompt + completion, or text). DPO: prompt + the
    longer of chosen/rejected, since both must fit. GRPO: the prompt only; the
    completion is bounded by max_completion_length.
    """
    if method == "sft":
        if "messages" in row:
            return [_as_messages(row["messages"], "user")]
        if "prompt" in row:
            completion = _as_messages(row.get("completion"), "assistant")
            return [_as_messages(row["prompt"], "user") + completion]
        return [_as_messages(row.get("text"), "user")]
    prompt = _as_messages(row["prompt"], "user") if "prompt" in row else []
    if method == "dpo":
        return [
            prompt + _as_messages(row.get(side), "assistant")
            for side in ("chosen", "rejected")
            if side in row
        ]
    return [prompt]


def estimate_counter(messages: list[dict[str, Any]]) -> int:
    text = "".join(str(m.get("content", "")) for m in messages)
    return max(1, round(len(text) / CHARS_PER_TOKEN))


def tokenizer_counter(tokenizer: Any) -> Counter:
    """Count through the chat template when there is one: that is what TRL feeds the model.

    ``tokenizer`` is a ``ChatTokenizer`` (the usual case) or a transformers tokenizer.
    """
    from ci_runner.data.tokens import ChatTokenizer

    if isinstance(tokenizer, ChatTokenizer):
        return tokenizer.count

    def count(messages: list[dict[str, Any]]) -> int:
        if getattr(tokenizer, "chat_template", None):
            ids = tokenizer.apply_chat_template(messages, tokenize=True)
            # transformers 5 returns a BatchEncoding (a mapping), older ones a list.
            ids = ids["input_ids"] if hasattr(ids, "keys") else ids
            return len(ids)
        text = "\n".join(str(m.get("content", "")) for m in messages)
        return len(tokenizer(text)["input_ids"])

    return count


def measure(
    rows: list[dict[str, Any]],
    method: str,
    *,
    max_length: int | None,
    counter: Counter | None = None,
) -> LengthStats | None:
    count = counter or estimate_counter
    lengths = []
    for row in rows:
        parts = example_parts(row, method)
        if parts:
            lengths.append(max(count(part) for part in parts))
    return length_stats(lengths, max_length=max_length, exact=counter is not None)


def load_tokenizer(base_model: str, *, root: Path, download: bool = True) -> Any | None:
    """The model's tokenizer, for ``tokenizer_counter``, else None.

    With a ``tokenizer.json`` (local model, HF cache, or fetched: see
    ``tokens.find_tokenizer_dir``; ``download=False`` never touches the network) it is a
    ``ChatTokenizer``, without transformers. Otherwise transformers loads it, from disk
    only: an estimate (flagged as such) is enough to warn about truncation.
    """
    from ci_runner.data.tokens import load_chat_tokenizer

    fast = load_chat_tokenizer(base_model, root=root, download=download)
    if fast is not None:
        return fast
    from ci_runner.core.hub import is_local_path, local_path
    from ci_runner.data.tokens import CONFIG_FILE, cached_hub_file

    # No tokenizer config on disk: nothing for transformers either, so skip its import.
    if is_local_path(base_model):
        folder = local_path(base_model, root)
        if not (folder / CONFIG_FILE).exists():
            return None
        ref = str(folder)
    elif cached_hub_file(base_model, CONFIG_FILE) is None:
        return None
    else:
        ref = base_model
    try:
        from transformers import AutoTokenizer
    except ImportError:
        return None
    try:
        return AutoTokenizer.from_pretrained(ref, local_files_only=True)
    except Exception:  # noqa: BLE001 - offline, gated, or no tokenizer: fall back to estimates
        return None


def jsonable(stats: LengthStats | None) -> dict[str, Any] | None:
    if stats is None:
        return None
    data = dict(stats.__dict__)
    data["warning"] = stats.warning
    plain: dict[str, Any] = json.loads(json.dumps(data))
    return plain
