"""GRPO rewards for train.py: the built-ins (``accuracy``, ``format``) and functions
from the project's own modules (``path/to/module.py:function``).

A helper shipped beside ``train.py`` in every job: standard library only.
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from protocol import ConfigError
from shaping import BUILTIN_REWARD_COLUMNS

# A number as answers write it (commas, decimals), and an <answer> block: GSM8K's scoring
# (evaluate_gsm8k.py) reads answers with the same two.
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_FORMAT = re.compile(r"<answer>\s*\S.*?</answer>\s*$", re.DOTALL)


def completion_text(completion: Any) -> str:
    """Plain text of a completion, whether a string or a list of chat messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
    return "".join(completion_text(message) for message in completion or [])


def extract_number(text: Any) -> float | None:
    """The number inside the last <answer> block, or else the last number in the text."""
    if text is None:
        return None
    text = str(text)
    blocks = ANSWER_TAG.findall(text)
    candidates = NUMBER.findall(blocks[-1] if blocks else text)
    if not candidates:
        return None
    try:
        return float((candidates[0] if blocks else candidates[-1]).replace(",", ""))
    except ValueError:
        return None


def accuracy_reward(completions: list[Any], answer: list[Any], **kwargs: Any) -> list[float]:
    """1.0 when the completion's number equals the ``answer`` column, else 0.0."""
    rewards = []
    for completion, gold in zip(completions, answer, strict=True):
        predicted, expected = extract_number(completion_text(completion)), extract_number(gold)
        hit = (
            predicted is not None
            and expected is not None
            and math.isclose(predicted, expected, abs_tol=1e-6)
        )
        rewards.append(1.0 if hit else 0.0)
    return rewards


def format_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """1.0 when the completion ends with a non-empty ``<answer>...</answer>`` block."""
    return [1.0 if _FORMAT.search(completion_text(c)) else 0.0 for c in completions]


# Each built-in with the dataset columns it reads: shaping.py keeps the columns, so the
# runner's data check and the job agree on them.
BUILTIN_REWARDS: dict[str, tuple[Callable[..., list[float]], set[str]]] = {
    name: (func, set(BUILTIN_REWARD_COLUMNS[name]))
    for name, func in (("accuracy", accuracy_reward), ("format", format_reward))
}


def load_reward_function(spec: str) -> Callable[..., list[float]]:
    """Import ``path/to/module.py:function`` from a file; no package install needed."""
    file_part, _, func_name = spec.rpartition(":")
    path = Path(file_part)
    if not path.is_file():
        raise ConfigError(f"reward {spec!r}: file {path} not found")
    module_spec = importlib.util.spec_from_file_location(f"ci_runner_reward_{path.stem}", path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"reward {spec!r}: {path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError(f"reward {spec!r}: {path} has no function {func_name!r}")
    return func


def resolve_rewards(names: list[str]) -> tuple[list[Callable[..., list[float]]], set[str]]:
    """Reward callables plus the dataset columns the built-in ones read."""
    funcs, columns = [], set()
    for name in names:
        if name in BUILTIN_REWARDS:
            func, needs = BUILTIN_REWARDS[name]
            funcs.append(func)
            columns |= needs
        elif name.endswith(".py") or ".py:" in name:
            funcs.append(load_reward_function(name))
        else:
            raise ConfigError(
                f"unknown reward {name!r}: use {' or '.join(sorted(BUILTIN_REWARDS))}, "
                "or path/to/module.py:function"
            )
    return funcs, columns
