"""Ledger files on disk: read, and write atomically only when something changed."""

from __future__ import annotations

from pathlib import Path

from ci_runner.core.files import STALE_TEMP_S, write_atomic
from ci_runner.ledger.model import Ledger

# STALE_TEMP_S and write_atomic stay importable from here (tests use them with load_ledger).
__all__ = ["STALE_TEMP_S", "dump", "load_ledger", "save_ledger", "write_atomic"]


def dump(ledger: Ledger) -> str:
    return ledger.model_dump_json(indent=2) + "\n"


def load_ledger(path: Path) -> Ledger | None:
    if not path.exists():
        return None
    return Ledger.model_validate_json(path.read_text(encoding="utf-8"))


def save_ledger(path: Path, ledger: Ledger) -> bool:
    return write_atomic(path, dump(ledger))
