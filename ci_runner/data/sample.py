"""A few rows of a dataset plus what is known about its size: the input of every check.

Sources (local files, the Hub's dataset viewer, a remote job) produce a
``DatasetSample``; the format checks only ever see this, so they stay pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SAMPLE_ROWS = 100  # the dataset viewer's /first-rows returns up to 100 rows


@dataclass(frozen=True)
class DatasetSample:
    source: str  # a local path or a Hub id, as written in the experiment file
    split: str
    columns: list[str]  # the dataset's own column names, in order
    rows: list[dict[str, Any]]  # the first rows, at most SAMPLE_ROWS
    config: str | None = None
    num_rows: int | None = None  # rows in this split, when known without reading them all
    splits: list[str] = field(default_factory=list)  # the splits available, when known
    features: dict[str, Any] = field(default_factory=dict)  # column -> type, when known
    origin: str = "local file"  # where the rows came from, for the report
    revision: str | None = None  # the Hub revision the rows were read at, when not the newest
