"""What every benchmark prints with: progress on stderr, aligned tables, the CPU's load."""

from __future__ import annotations

import os
import sys


class BenchError(RuntimeError):
    pass


def progress(message: str) -> None:
    print(f"  ... {message}", file=sys.stderr, flush=True)


def load_average() -> str:
    """1, 5 and 15 minute load: a figure taken on a busy CPU says so."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def print_table(title: str, headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]
    print(f"\n{title}")
    for cells in [headers, ["-" * w for w in widths], *rows]:
        line = "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True))
        print(f"  {line}".rstrip())
