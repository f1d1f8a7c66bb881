"""Ledger files on disk: read, and write atomically only when something changed."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ci_runner.ledger.model import Ledger


def write_atomic(path: Path, text: str) -> bool:
    """Write via a temp file + rename, so a crash never leaves half a file.

    Returns False (and leaves the file untouched) when the content is the same,
    which keeps ``poll`` from producing empty commits.
    """
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def dump(ledger: Ledger) -> str:
    return ledger.model_dump_json(indent=2) + "\n"


def load_ledger(path: Path) -> Ledger | None:
    if not path.exists():
        return None
    return Ledger.model_validate_json(path.read_text(encoding="utf-8"))


def save_ledger(path: Path, ledger: Ledger) -> bool:
    return write_atomic(path, dump(ledger))
