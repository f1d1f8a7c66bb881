"""Where a dataset check gets its rows: a local file or folder, or the Hub's dataset viewer.

Cost stays O(1) in the dataset's size: rows are streamed and reading stops after ``limit``;
row counts come from metadata (Parquet footers, Arrow batch headers, the viewer's /size).
Text files (JSONL, CSV) are counted by a buffered scan only up to ``COUNT_CAP_BYTES``;
past that ``num_rows`` is None and the sample's ``origin`` says why.

What counts as a split mirrors ``job_scripts/train.py`` and the ``datasets`` library, so
a check passes exactly when the training job would find the same rows: a single file or
a single saved ``Dataset`` has only ``train``; a ``DatasetDict`` has its own splits; a folder
of data files splits by file name (``train*``, ``test*``, ``data/<split>-00000-of-00001.*``).
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import itertools
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

from ci_runner.core.hub import is_local_path, local_path
from ci_runner.data.sample import SAMPLE_ROWS, DatasetSample
from ci_runner.data.viewer import ViewerClient, ViewerUnavailableError
from ci_runner.errors import (
    DatasetNotFoundError,
    DatasetViewerError,
    DataSourceError,
    NotReadyError,
)

# What the training job can load (job_scripts/train.py FILE_BUILDERS), by suffix.
FORMATS = {".jsonl": "JSONL", ".json": "JSON", ".csv": "CSV", ".parquet": "Parquet"}
COUNT_CAP_BYTES = 256 * 2**20  # scanning more text than this for a row count costs seconds
JSON_CAP_BYTES = 64 * 2**20  # a .json file is parsed whole (about 10x its size in memory)
# The datasets library's split keywords in file names (datasets/data_files.py).
SPLIT_KEYWORDS = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test", "testing", "eval", "evaluation"),
}
SHARDED_RE = re.compile(r"data/(?P<split>\w+?)-\d{5}-of-\d{5}[^/]*")
NOT_COUNTED = f"rows not counted: more than {COUNT_CAP_BYTES >> 20} MiB of text to scan"


@dataclasses.dataclass
class _Part:
    """The rows read from one file or folder, before they become a DatasetSample."""

    rows: list[dict[str, Any]]
    columns: list[str]
    num_rows: int | None
    features: dict[str, Any] = dataclasses.field(default_factory=dict)


# --- entry points -------------------------------------------------------------------


def read_sample(
    path_or_id: str,
    *,
    root: Path,
    config: str | None = None,
    split: str = "train",
    viewer: ViewerClient | None = None,
    limit: int = SAMPLE_ROWS,
) -> DatasetSample:
    """Local paths are spelled ./ ../ / ~ (as in the spec); anything else is a Hub id.

    Relative paths resolve against ``root`` (the repository), not the working directory.
    ``config`` only applies to Hub datasets. The viewer defaults to ``ViewerClient.from_env()``.
    """
    if is_local_path(path_or_id):
        sample = read_local(local_path(path_or_id, root), split=split, limit=limit)
        return dataclasses.replace(sample, source=path_or_id)
    viewer = viewer or ViewerClient.from_env()
    return read_hub(path_or_id, config=config, split=split, viewer=viewer, limit=limit)


def read_local(path: Path, *, split: str = "train", limit: int = SAMPLE_ROWS) -> DatasetSample:
    """The first ``limit`` rows of a local file or folder, and its row count when cheap."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        return _read_folder(path, split, max(limit, 0))
    _check_format(path)
    _only_train(path, split, "is a single file")
    part = _read_file(path, max(limit, 0), count=path.stat().st_size <= COUNT_CAP_BYTES)
    origin = f"local {FORMATS[path.suffix.lower()]} file"
    return _local_sample(path, split, part, origin, ["train"])


def read_hub(
    dataset: str,
    *,
    config: str | None,
    split: str,
    viewer: ViewerClient,
    limit: int = SAMPLE_ROWS,
) -> DatasetSample:
    """Rows from the dataset viewer: three small GETs, nothing downloaded.

    When the viewer can't serve the dataset (not supported, not processed yet) the rows
    are streamed with ``datasets`` instead, which reads only as far as ``limit`` rows.
    """
    try:
        pairs = _viewer_splits(dataset, viewer.splits(dataset))
        config = _pick_config(dataset, config, pairs)
        splits = [s for c, s in pairs if c == config]
        if split not in splits:
            raise _unknown("split", f"{dataset} (config {config})", split, splits)
        first = viewer.first_rows(dataset, config, split)
    except ViewerUnavailableError as exc:
        return _stream_hub(dataset, config, split, max(limit, 0), viewer.token, reason=str(exc))
    part, truncated = _viewer_rows(dataset, first, max(limit, 0))
    num_rows, note = _viewer_num_rows(viewer, dataset, config, split)
    notes = [n for n in (note, "long cells truncated by the viewer" if truncated else "") if n]
    return DatasetSample(
        source=dataset,
        split=split,
        config=config,
        columns=part.columns,
        rows=part.rows,
        num_rows=num_rows,
        splits=splits,
        features=part.features,
        origin="; ".join(["dataset viewer", *notes]),
    )


# --- local folders ------------------------------------------------------------------


def _read_folder(path: Path, split: str, limit: int) -> DatasetSample:
    """A ``save_to_disk`` folder (DatasetDict or Dataset), else a folder of data files."""
    if (path / "dataset_dict.json").is_file():
        splits = [str(s) for s in _load_json(path / "dataset_dict.json").get("splits", [])]
        if split not in splits:
            raise _unknown("split", str(path), split, splits)
        part = _read_saved(path / split, limit)
        return _local_sample(path, split, part, "local folder (save_to_disk)", splits)
    if (path / "state.json").is_file():
        _only_train(path, split, "holds a single saved split (save_to_disk of a Dataset)")
        part = _read_saved(path, limit)
        return _local_sample(path, split, part, "local folder (save_to_disk)", ["train"])
    by_split = _split_files(path)
    if not by_split:
        raise DataSourceError(
            f"{path}: no data files ({', '.join(FORMATS)}) and no save_to_disk folder "
            "(state.json or dataset_dict.json)"
        )
    if split not in by_split:
        raise _unknown(
            "split",
            str(path),
            split,
            list(by_split),
            hint="file names map to splits as in the datasets library: "
            "train*, validation*/valid*/val*/dev*, test*/eval*, data/<split>-00000-of-00001.*",
        )
    files = by_split[split]
    text_bytes = sum(f.stat().st_size for f in files if f.suffix.lower() != ".parquet")
    part = _read_files(files, limit, count=text_bytes <= COUNT_CAP_BYTES)
    return _local_sample(path, split, part, "local folder of data files", list(by_split))


def _split_files(folder: Path) -> dict[str, list[Path]]:
    """Data files by split, the way ``datasets`` resolves a folder (one format: the commonest)."""
    files = _data_files(folder)
    if not files:
        return {}
    counts = Counter(f.suffix.lower() for f in files)
    suffix = max(FORMATS, key=lambda s: counts[s])  # ties: the FORMATS order
    files = [f for f in files if f.suffix.lower() == suffix]
    rel = {f: f.relative_to(folder).as_posix() for f in files}
    sharded = {f: m["split"] for f in files if (m := SHARDED_RE.fullmatch(rel[f]))}
    named = sharded or {f: s for f in files if (s := _keyword_split(rel[f]))}
    if not named:
        return {"train": files}
    by_split: dict[str, list[Path]] = {}
    for f in files:
        if f in named:
            by_split.setdefault(named[f], []).append(f)
    order = {"train": 0, "validation": 1, "test": 2}
    return dict(sorted(by_split.items(), key=lambda kv: (order.get(kv[0], 3), kv[0])))


def _data_files(folder: Path) -> list[Path]:
    """Supported files under ``folder``, skipping hidden ones and ``__special__`` folders."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__")))
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in FORMATS:
                found.append(Path(dirpath) / name)
    return sorted(found)


def _keyword_split(rel: str) -> str | None:
    for token in re.split(r"[^a-z]+", rel.lower()):
        for split, words in SPLIT_KEYWORDS.items():
            if token in words:
                return split
    return None


def _read_files(files: list[Path], limit: int, *, count: bool) -> _Part:
    """Rows from the files in order until ``limit``; the rest are only counted (if cheap)."""
    rows: list[dict[str, Any]] = []
    columns: list[str] = []
    features: dict[str, Any] = {}
    total: int | None = 0
    for file in files:
        if len(rows) < limit or not columns:
            part = _read_file(file, limit - len(rows), count=count)
            rows += part.rows
            columns += [c for c in part.columns if c not in columns]
            features = features or part.features
            num = part.num_rows
        else:
            num = _count_rows(file) if count or file.suffix.lower() == ".parquet" else None
        total = None if total is None or num is None else total + num
    return _Part(rows, columns, total, features)


def _read_saved(folder: Path, limit: int) -> _Part:
    """A saved Dataset: Arrow IPC streams listed in state.json, schema in dataset_info.json.

    The files are memory-mapped, so walking every batch to count rows reads only the
    batch headers, never the data.
    """
    pa = _pyarrow()
    state = _load_json(folder / "state.json")
    files = [folder / f["filename"] for f in state.get("_data_files", [])]
    info_path = folder / "dataset_info.json"
    info = _load_json(info_path) if info_path.is_file() else {}
    rows: list[dict[str, Any]] = []
    columns: list[str] = []
    total = 0
    for file in files:
        if not file.is_file():
            raise DataSourceError(f"{folder}: state.json lists {file.name}, which is missing")
        try:
            with pa.memory_map(str(file)) as source:
                reader = pa.ipc.open_stream(source)
                columns = columns or list(reader.schema.names)
                for batch in reader:
                    if len(rows) < limit:
                        rows += batch.slice(0, limit - len(rows)).to_pylist()
                    total += batch.num_rows
        except pa.ArrowInvalid as exc:
            raise DataSourceError(f"{file}: not a readable Arrow stream: {exc}") from None
    return _Part(rows, columns, total, info.get("features") or {})


# --- local files --------------------------------------------------------------------


def _read_file(path: Path, limit: int, *, count: bool) -> _Part:
    """Dispatch on the suffix; ``count`` says whether a text scan for num_rows is allowed."""
    suffix = _check_format(path)
    if suffix == ".parquet":
        return _read_parquet(path, limit)
    if suffix == ".json":
        return _read_json(path, limit, count=count)
    if suffix == ".csv":
        return _read_csv(path, limit, count=count)
    return _read_jsonl(path, limit, count=count)


def _read_jsonl(path: Path, limit: int, *, count: bool) -> _Part:
    """One JSON object per line; blank lines skipped; stops reading after ``limit`` rows."""
    rows: list[dict[str, Any]] = []
    complete = True
    with path.open("rb") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            if len(rows) == limit:
                complete = False
                break
            rows.append(_json_row(path, lineno, line))
    num_rows = len(rows) if complete else (_count_rows(path) if count else None)
    return _Part(rows, _columns(rows), num_rows)


def _json_row(path: Path, lineno: int, line: bytes) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataSourceError(
            f"{path}:{lineno}: malformed JSON ({exc.msg} at column {exc.colno})"
        ) from None
    except UnicodeDecodeError:
        raise DataSourceError(f"{path}:{lineno}: not UTF-8 text") from None
    if not isinstance(value, dict):
        raise DataSourceError(
            f"{path}:{lineno}: expected a JSON object per line, got {_json_type(value)}"
        )
    return value


def _read_json(path: Path, limit: int, *, count: bool) -> _Part:
    """A whole-file JSON list of objects, parsed under a size cap; JSON Lines in disguise too."""
    size = path.stat().st_size
    if size > JSON_CAP_BYTES:
        raise DataSourceError(
            f"{path}: a .json file is parsed whole to read any row, and this one is "
            f"{size >> 20} MiB (limit {JSON_CAP_BYTES >> 20} MiB): write it as JSON Lines "
            "(.jsonl, one object per line) or Parquet"
        )
    try:
        data = json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # one object per line, as the datasets loader accepts
            return _read_jsonl(path, limit, count=count)
        raise DataSourceError(
            f"{path}:{exc.lineno}: malformed JSON ({exc.msg} at column {exc.colno})"
        ) from None
    except UnicodeDecodeError:
        raise DataSourceError(f"{path}: not UTF-8 text") from None
    records = _json_records(path, data)
    rows = records[:limit]
    return _Part(rows, _columns(rows), len(records))


def _json_records(path: Path, data: Any) -> list[dict[str, Any]]:
    """The rows the datasets json loader would see: a list's items, or one top-level object."""
    if isinstance(data, dict):
        wrapped = [k for k, v in data.items() if isinstance(v, list) and v and _all_dicts(v)]
        if len(data) == 1 and wrapped:
            raise DataSourceError(
                f"{path}: the rows are wrapped in {{{wrapped[0]!r}: [...]}}; the training job "
                f"(datasets' json loader) would read that as ONE row with a {wrapped[0]!r} "
                "column. Put the list at the top level, or write JSON Lines (.jsonl)"
            )
        return [data]
    if not isinstance(data, list):
        raise DataSourceError(f"{path}: expected a JSON list of objects, got {_json_type(data)}")
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise DataSourceError(
                f"{path}: item {index} of the top-level list is {_json_type(item)}, not an object"
            )
    return data


def _read_csv(path: Path, limit: int, *, count: bool) -> _Part:
    """A header row, then rows as strings (no type guessing); stops after ``limit`` rows."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        try:
            columns = list(reader.fieldnames or [])
            if not columns:
                raise DataSourceError(f"{path}: empty CSV file (no header row)")
            rows = [_csv_row(path, reader.line_num, row) for row in itertools.islice(reader, limit)]
            complete = next(reader, None) is None
        except csv.Error as exc:
            raise DataSourceError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None
        except UnicodeDecodeError:
            raise DataSourceError(f"{path}:{reader.line_num}: not UTF-8 text") from None
    num_rows = len(rows) if complete else (_count_rows(path) if count else None)
    return _Part(rows, columns, num_rows)


def _csv_row(path: Path, line: int, row: dict[str | None, Any]) -> dict[str, Any]:
    if None in row:  # DictReader files surplus fields under the key None
        raise DataSourceError(f"{path}:{line}: more fields than the header has columns")
    return {str(k): v for k, v in row.items()}


def _read_parquet(path: Path, limit: int) -> _Part:
    """Rows from the first row group(s) only; num_rows and schema from the footer."""
    pa = _pyarrow()
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(path) as pf:
            batch = next(pf.iter_batches(batch_size=limit), None) if limit else None
            rows = batch.slice(0, limit).to_pylist() if batch is not None else []
            schema = pf.schema_arrow
            num_rows = pf.metadata.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise DataSourceError(f"{path}: not a readable Parquet file: {exc}") from None
    return _Part(rows, list(schema.names), num_rows, _arrow_features(schema))


def _count_rows(path: Path) -> int | None:
    """Rows in a file without keeping them: Parquet footer, or one buffered pass over text."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _read_parquet(path, 0).num_rows
    if suffix == ".json":
        return _read_json(path, 0, count=True).num_rows
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as f:
            return max(sum(1 for _ in csv.reader(f)) - 1, 0)  # quoted newlines handled
    lines, last = 0, b"\n"
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            lines, last = lines + chunk.count(b"\n"), chunk[-1:]
    return lines + (last != b"\n")  # JSONL: lines, blank ones included


# --- the Hub ------------------------------------------------------------------------


def _viewer_splits(dataset: str, payload: dict[str, Any]) -> list[tuple[str, str]]:
    """(config, split) pairs from /splits; none listed means the viewer has no answer yet."""
    try:
        pairs = [(str(s["config"]), str(s["split"])) for s in payload["splits"]]
    except (KeyError, TypeError):
        raise DatasetViewerError(f"unexpected /splits answer for {dataset}") from None
    if not pairs:
        waiting = "still processing" if payload.get("pending") else "failed on it"
        raise ViewerUnavailableError(f"the viewer lists no splits for {dataset} ({waiting})")
    return pairs


def _pick_config(dataset: str, config: str | None, pairs: list[tuple[str, str]]) -> str:
    """The config asked for, else ``default`` or the only one, as ``datasets`` would pick."""
    configs = list(dict.fromkeys(c for c, _ in pairs))
    if config is not None:
        if config not in configs:
            raise _unknown("config", dataset, config, configs)
        return config
    if "default" in configs:
        return "default"
    if len(configs) == 1:
        return configs[0]
    raise DataSourceError(
        f"{dataset} has {len(configs)} configs ({', '.join(configs)}): "
        "set dataset.config in the experiment to pick one"
    )


def _viewer_rows(dataset: str, payload: dict[str, Any], limit: int) -> tuple[_Part, bool]:
    """Rows, columns (in feature order) and feature types from /first-rows."""
    try:
        feats = sorted(payload["features"], key=lambda f: f.get("feature_idx", 0))
        features = {str(f["name"]): f["type"] for f in feats}
        items = payload["rows"][:limit]
        rows = [dict(item["row"]) for item in items]
        truncated = any(item.get("truncated_cells") for item in items)
    except (KeyError, TypeError, AttributeError):
        raise DatasetViewerError(f"unexpected /first-rows answer for {dataset}") from None
    return _Part(rows, list(features), None, features), truncated


def _viewer_num_rows(
    viewer: ViewerClient, dataset: str, config: str, split: str
) -> tuple[int | None, str]:
    """The split's row count from /size; a bonus, so a failure here only leaves a note."""
    try:
        payload = viewer.size(dataset, config)
        if payload.get("partial"):
            return None, "row count unknown: the viewer processed only part of the dataset"
        for entry in payload["size"]["splits"]:
            if entry["config"] == config and entry["split"] == split:
                return int(entry["num_rows"]), ""
    except DatasetViewerError as exc:
        return None, f"row count unavailable: {exc}"
    except (KeyError, TypeError, ValueError):
        return None, "row count unavailable: unexpected /size answer"
    return None, "row count unavailable: /size does not list this split"


def _stream_hub(
    dataset: str, config: str | None, split: str, limit: int, token: str | None, *, reason: str
) -> DatasetSample:
    """Fallback when the viewer can't help: stream ``limit`` rows, never download the split."""
    try:
        from datasets import load_dataset
    except ImportError:
        raise NotReadyError(
            f"{reason}; reading it another way needs the datasets library: "
            "pip install 'ci-runner[train]', or run the check as a job (check-data --remote)"
        ) from None
    try:
        stream = load_dataset(dataset, config, split=split, streaming=True, token=token)
        rows = [dict(row) for row in itertools.islice(stream, limit)]
        features = stream.features.to_dict() if stream.features is not None else {}
    except Exception as exc:  # noqa: BLE001 - any loader failure is the user's to read
        raise DataSourceError(
            f"{reason}; streaming it with datasets failed too: {type(exc).__name__}: {exc}"
        ) from None
    return DatasetSample(
        source=dataset,
        split=split,
        config=config,
        columns=list(features) or _columns(rows),
        rows=rows,
        features=features,
        origin=f"datasets streaming ({reason})",
    )


# --- shared helpers -----------------------------------------------------------------


def _local_sample(
    path: Path, split: str, part: _Part, origin: str, splits: list[str]
) -> DatasetSample:
    return DatasetSample(
        source=str(path),
        split=split,
        columns=part.columns,
        rows=part.rows,
        num_rows=part.num_rows,
        splits=splits,
        features=part.features,
        origin=origin if part.num_rows is not None else f"{origin}; {NOT_COUNTED}",
    )


def _check_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise DataSourceError(
            f"{path}: unsupported file type {suffix or '(no extension)'!r}: use "
            f"{', '.join(FORMATS)}, or a folder written by save_to_disk"
        )
    return suffix


def _only_train(path: Path, split: str, what: str) -> None:
    """As in the training job: a lone file or saved Dataset is the ``train`` split."""
    if split != "train":
        raise DataSourceError(f"{path} {what}: it only has a 'train' split, not {split!r}")


def _unknown(
    kind: str, where: str, value: str, available: list[str], *, hint: str = ""
) -> DataSourceError:
    """'no split X; available: ...; did you mean Y?' — the error a typo deserves."""
    text = f"{where}: no {kind} {value!r}; available: {', '.join(available) or 'none'}"
    close = difflib.get_close_matches(value, available, n=1, cutoff=0.6)
    if close:
        text += f"; did you mean {close[0]!r}?"
    return DataSourceError(f"{text} ({hint})" if hint else text)


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    """Column names in order of first appearance across the sampled rows."""
    return list(dict.fromkeys(key for row in rows for key in row))


def _arrow_features(schema: Any) -> dict[str, Any]:
    """HF feature dicts when the file was written by ``datasets``, else Arrow type names."""
    raw = (schema.metadata or {}).get(b"huggingface")
    if raw:
        try:
            features = json.loads(raw)["info"]["features"]
            if isinstance(features, dict):
                return features
        except (ValueError, KeyError, TypeError):
            pass
    return {field.name: str(field.type) for field in schema}


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataSourceError(f"{path}: unreadable: {exc}") from None
    if not isinstance(data, dict):
        raise DataSourceError(f"{path}: expected a JSON object")
    return data


def _pyarrow() -> Any:
    """pyarrow comes with the [train] extra; the runner itself doesn't need it."""
    try:
        import pyarrow
        import pyarrow.ipc  # noqa: F401 - pa.ipc is used by the callers
    except ImportError:
        raise NotReadyError(
            "reading Parquet and save_to_disk folders needs pyarrow: "
            "pip install 'ci-runner[train]' (or just pyarrow)"
        ) from None
    return pyarrow


def _all_dicts(values: list[Any]) -> bool:
    return all(isinstance(v, dict) for v in values)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")
