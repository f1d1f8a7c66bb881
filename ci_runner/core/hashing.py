"""Short, stable content hashes: what run ids and spec hashes are made of."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def short_hash(text: str, length: int = 12) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def file_hash(run_ids: Iterable[str]) -> str:
    """A file of several runs is identified by its runs (the file's own hash omits them)."""
    return short_hash(",".join(run_ids))
