# /// script
# requires-python = ">=3.10"
# dependencies = [
#     "datasets==5.2.0",
#     "huggingface_hub==2.4.0",
# ]
# ///
"""Fetch the first rows of a dataset split, inside a cheap CPU job.

``ci-runner check-data --remote`` runs this where the data is reachable (private
or gated datasets, formats the dataset viewer cannot serve) and then runs the
format checks on the rows it prints. It streams: nothing is downloaded whole.

Usage: ``uv run job_scripts/check_data.py --config run.json`` (a ci-runner run
config; only its ``dataset`` part is used) or ``CI_RUNNER_RUN_CONFIG`` set to the
JSON itself or a path to it.
"""

from __future__ import annotations

import itertools
import sys
from typing import Any

import protocol  # helper modules beside this script, shipped with it
from job_config import DataCheckConfig

SAMPLE_ROWS = 50
MAX_CELL_CHARS = 8000  # keeps the summary line within what a job log carries


def jsonable(value: Any) -> Any:
    """Rows as JSON: long strings clipped, images and other objects described."""
    if isinstance(value, str):
        return value[:MAX_CELL_CHARS]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return f"<{type(value).__name__}>"


def split_size(path: str, config: str | None, split: str) -> int | None:
    """Row count from the dataset's metadata, without reading the data."""
    from datasets import load_dataset_builder

    try:
        info = load_dataset_builder(path, config).info
        return info.splits[split].num_examples if info.splits and split in info.splits else None
    except Exception:  # noqa: BLE001 - metadata is a bonus; the rows are what matters
        return None


def main(argv: list[str] | None = None) -> int:
    """Stream the rows and print them in the summary; the exit code (1: failed, and why).

    The summary goes to the log alone: the job writes no files.
    """
    try:
        document, where = protocol.read_config(
            sys.argv[1:] if argv is None else argv, description=__doc__.splitlines()[0]
        )
        source = DataCheckConfig.from_json(document, source=where).dataset
        path, name, split = source.path, source.config, source.split
        from datasets import load_dataset

        print(f"streaming the first {SAMPLE_ROWS} rows of {path} ({name or 'default'}/{split})")
        # At the revision submit pins, when it is not the newest: the rows the job trains on.
        stream = load_dataset(path, name, split=split, streaming=True, revision=source.revision)
        rows = [jsonable(row) for row in itertools.islice(stream, SAMPLE_ROWS)]
        summary = {
            "status": "completed",
            "columns": list(rows[0]) if rows else list(stream.column_names or []),
            "rows": rows,
            "num_rows": split_size(path, name, split),
            "features": {k: str(v) for k, v in (stream.features or {}).items()},
        }
        code = 0
    except Exception as exc:  # noqa: BLE001 - reported to the runner, which explains it
        if isinstance(exc, protocol.ConfigError):
            print(f"error: {exc}", file=sys.stderr)
        summary = protocol.failure(exc, None)
        code = 1
    protocol.emit_summary(summary, None)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
