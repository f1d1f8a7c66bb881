"""Keep tokens out of everything ci-runner publishes: comments, PR bodies, commits, outputs.

Two nets: the values of the environment variables that carry secrets in CI, and the
shapes of the tokens GitHub, Hugging Face and OpenAI issue, so a token pasted into an
experiment file or a ledger field is caught even when it is not one of ours.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

MASK = "***"
SECRET_ENV = (
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "OPENAI_API_KEY",
    "INPUT_HF_TOKEN",
    "INPUT_GITHUB_TOKEN",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_PASSWORD",
)
# Short values ("1", "true") would mask half the text; real tokens are long.
MIN_SECRET_LEN = 8
TOKEN_SHAPES = re.compile(
    r"(?:gh[pousr]_[A-Za-z0-9]{20,}"
    r"|github_pat_[A-Za-z0-9_]{20,}"
    r"|hf_[A-Za-z0-9]{20,}"
    r"|sk-[A-Za-z0-9_-]{20,})"
)


def secret_values(env: Mapping[str, str] | None = None, extra: Iterable[str] = ()) -> list[str]:
    """Secret values worth masking, longest first so one never half-masks another."""
    env = os.environ if env is None else env
    values = {env.get(name, "") for name in SECRET_ENV} | set(extra)
    return sorted((v for v in values if v and len(v) >= MIN_SECRET_LEN), key=len, reverse=True)


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every known secret value and token-shaped string replaced by ***."""
    for value in secret_values(extra=extra):
        text = text.replace(value, MASK)
    return TOKEN_SHAPES.sub(MASK, text)
