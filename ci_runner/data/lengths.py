"""How long the examples are, in the base model's tokens, against ``max_length``.

Rows are measured as the job shapes them (``job_scripts.shaping``: ShareGPT converted,
the system turn folded in) and as TRL tokenizes them (``shaping.trainer_inputs``: the
chat template applied, EOS appended to plain text), so the lengths are the trainer's.
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ci_runner.job_scripts.shaping import Shape, Tokenized, trainer_inputs

CHARS_PER_TOKEN = 4.0
Counter = Callable[[Tokenized], int]


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


def estimate_counter(item: Tokenized) -> int:
    """Tokens guessed at 4 characters each, when no tokenizer can be had."""
    if item.text is not None:
        text = item.text
    else:
        text = "".join(str(m.get("content") or "") for m in item.messages or [])
    return max(1, round(len(text) / CHARS_PER_TOKEN))


def tokenizer_counter(tokenizer: Any) -> Counter:
    """Count one input as TRL tokenizes it: a chat through the template (what TRL feeds
    the model), plain text through the tokenizer with its special tokens.

    ``tokenizer`` is a ``ChatTokenizer`` (the usual case) or a transformers tokenizer.
    """
    from ci_runner.data.tokens import ChatTokenizer

    if isinstance(tokenizer, ChatTokenizer):
        return tokenizer.count_input

    def count(item: Tokenized) -> int:
        if item.text is not None:
            return len(tokenizer(item.text)["input_ids"])
        if not item.messages:
            return 0
        if not getattr(tokenizer, "chat_template", None):  # as ChatTokenizer.count does
            text = "\n".join(str(m.get("content", "")) for m in item.messages)
            return len(tokenizer(text)["input_ids"])
        ids = tokenizer.apply_chat_template(
            item.messages,
            tokenize=True,
            add_generation_prompt=item.add_generation_prompt,
            tools=item.tools,
            return_dict=True,
        )
        return len(ids["input_ids"])

    return count


def eos_token(tokenizer: Any) -> str:
    """The EOS token TRL appends to plain-text examples."""
    from ci_runner.data.tokens import ChatTokenizer

    if isinstance(tokenizer, ChatTokenizer):
        return tokenizer.special_tokens_map.get("eos_token", "")
    return str(getattr(tokenizer, "eos_token", None) or "")


def row_lengths(
    rows: Sequence[Mapping[str, Any]],
    shape: Shape,
    method: str,
    *,
    counter: Counter | None = None,
    eos: str = "",
    text_field: str = "text",
) -> list[int]:
    """Each shaped row's length in tokens: its longest input to the trainer."""
    count = counter or estimate_counter
    lengths = []
    for row in rows:
        inputs = trainer_inputs(row, shape, method, eos=eos, text_field=text_field)
        if inputs:
            lengths.append(max(count(item) for item in inputs))
    return lengths


def measure(
    rows: Sequence[Mapping[str, Any]],
    shape: Shape,
    method: str,
    *,
    max_length: int | None,
    counter: Counter | None = None,
    eos: str = "",
    text_field: str = "text",
) -> LengthStats | None:
    lengths = row_lengths(rows, shape, method, counter=counter, eos=eos, text_field=text_field)
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
