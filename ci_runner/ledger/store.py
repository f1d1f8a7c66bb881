"""Ledger files on disk: read, and write atomically only when something changed.

A ledger that does not parse (a truncated write, a bad merge, a hand edit) is named with
its remedy, never shown as a validation traceback, and it costs only its own experiment:
commands that go over every ledger skip it and say so (``scan``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from ci_runner.core.files import STALE_TEMP_S, write_atomic
from ci_runner.errors import CiRunnerError, ExitCode
from ci_runner.ledger.model import Ledger

# STALE_TEMP_S and write_atomic stay importable from here (tests use them with load_ledger).
__all__ = [
    "STALE_TEMP_S",
    "CorruptLedgerError",
    "LedgerScan",
    "UnreadableLedgersError",
    "dump",
    "load_ledger",
    "save_ledger",
    "scan",
    "write_atomic",
]


class CorruptLedgerError(CiRunnerError):
    """A ledger file that is not a ledger: which file, what is wrong, how to get it back."""

    exit_code = ExitCode.LEDGER_CORRUPT

    def __init__(self, path: Path, problem: str):
        self.path, self.problem = path, problem
        shown = _shown(path)
        super().__init__(
            f"{shown}: unreadable ledger ({problem}). Restore the committed copy with "
            f"`git checkout -- {shown}` (in CI the latest copy is on the experiment's "
            f"results branch: `git checkout origin/ci-runner/<experiment> -- {shown}`), "
            "then run the command again. Ledgers are written by ci-runner only; never "
            "edit one by hand."
        )


class UnreadableLedgersError(CiRunnerError):
    """What a command could not do because of unreadable ledgers, each named."""

    exit_code = ExitCode.LEDGER_CORRUPT

    def __init__(self, lead: str, corrupt: list[CorruptLedgerError]):
        self.corrupt = corrupt
        super().__init__("\n".join([lead, *(str(exc) for exc in corrupt)]))


def _shown(path: Path) -> str:
    """The path as a person would type it from the current folder."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _problem(exc: ValidationError) -> str:
    """The first thing wrong, where: JSON that stops early, or a field of the wrong type."""
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    more = f"; {exc.error_count() - 1} more" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}" if where else f"{first['msg']}{more}"


def dump(ledger: Ledger) -> str:
    return ledger.model_dump_json(indent=2) + "\n"


def load_ledger(path: Path) -> Ledger | None:
    """The ledger at ``path``; None when there is none; ``CorruptLedgerError`` when the
    file is there but is not a ledger."""
    if not path.exists():
        return None
    try:
        return Ledger.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise CorruptLedgerError(path, _problem(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CorruptLedgerError(path, f"{type(exc).__name__}: {exc}") from None


def save_ledger(path: Path, ledger: Ledger) -> bool:
    return write_atomic(path, dump(ledger))


@dataclass
class LedgerScan:
    """Every ledger of a set of files: those that load, and those that do not."""

    found: list[tuple[Path, Ledger]] = field(default_factory=list)
    corrupt: list[CorruptLedgerError] = field(default_factory=list)

    @property
    def ledgers(self) -> list[Ledger]:
        return [ledger for _, ledger in self.found]


def scan(paths: list[Path]) -> LedgerScan:
    """Load each ledger; an unreadable one is recorded, and the others still load."""
    result = LedgerScan()
    for path in paths:
        try:
            ledger = load_ledger(path)
        except CorruptLedgerError as exc:
            result.corrupt.append(exc)
            continue
        if ledger is not None:
            result.found.append((path, ledger))
    return result
