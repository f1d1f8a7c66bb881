"""train.py's data: one split from a local file, a saved folder or a Hub dataset (at the
commit submit pinned), renamed to TRL's columns, checked, shaped and capped.

A helper shipped beside ``train.py`` in every job: only the standard library at the
top; ``datasets`` is imported inside the functions that need it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import shaping
from job_config import DatasetSource, Method, RunConfig
from protocol import ConfigError

FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
# Column sets TRL accepts per method; the dataset must contain one of them.
REQUIRED_COLUMNS: dict[str, list[tuple[str, ...]]] = {
    "sft": [("messages",), ("text",), ("prompt", "completion")],
    "dpo": [("chosen", "rejected")],
    "grpo": [("prompt",)],
}


def load_split(source: DatasetSource, split: str):
    """One split from a local file, a local folder (saved or raw files) or a Hub dataset."""
    from datasets import Dataset, load_dataset, load_from_disk

    path, name = source.path, source.config
    local = Path(path)
    if local.is_file():
        builder = FILE_BUILDERS.get(local.suffix.lower())
        if builder is None:
            raise ConfigError(f"{path}: unsupported file type, use one of {sorted(FILE_BUILDERS)}")
        if split != "train":
            raise ConfigError(
                f"{path} is a single file: it only has a 'train' split, not {split!r}"
            )
        return load_dataset(builder, data_files=str(local), split="train")
    if local.is_dir() and any((local / f).exists() for f in ("dataset_dict.json", "state.json")):
        saved = load_from_disk(str(local))  # written by save_to_disk
        if isinstance(saved, Dataset):
            if split != "train":
                raise ConfigError(f"{path} holds a single split: use 'train', not {split!r}")
            return saved
        if split not in saved:
            raise ConfigError(f"{path} has no split {split!r} (has {sorted(saved)})")
        return saved[split]
    # A folder of data files or a Hub id: the datasets library works out the rest, at the
    # commit submit pinned.
    return load_dataset(path, name, split=split, revision=source.revision)


def rename_columns(dataset, columns: dict[str, str]):
    """Apply ``{trl_column: source_column}`` so TRL finds the names it expects."""
    columns = {trl: src for trl, src in columns.items() if trl != src}
    missing = sorted(src for src in columns.values() if src not in dataset.column_names)
    if missing:
        raise ConfigError(
            f"dataset.columns refers to missing column(s) {missing}; "
            f"the dataset has {dataset.column_names}"
        )
    # A TRL-named column that the mapping replaces would collide with the rename.
    sources = set(columns.values())
    shadowed = [trl for trl in columns if trl in dataset.column_names and trl not in sources]
    if shadowed:
        dataset = dataset.remove_columns(shadowed)
    return dataset.rename_columns({src: trl for trl, src in columns.items()})


def check_columns(dataset, config: RunConfig, extra: set[str], what: str) -> None:
    """Fail before training, with the fix, when TRL or a reward would miss a column."""
    have, method = set(dataset.column_names), config.method.value
    options = list(REQUIRED_COLUMNS[method])
    text_field = config.hyperparameters.get("dataset_text_field")
    if config.method is Method.SFT and text_field:
        options.append((text_field,))
    if not any(set(option) <= have for option in options):
        wanted = " or ".join("+".join(option) for option in options)
        example = f"{{'{options[0][0]}': 'your_column'}}"
        raise ConfigError(
            f"{method.upper()} needs column(s) {wanted} but the {what} set has "
            f"{sorted(have)}; map yours with dataset.columns, e.g. {example}"
        )
    if extra - have:
        raise ConfigError(
            f"the rewards need column(s) {sorted(extra - have)} but the {what} set has "
            f"{sorted(have)}; map yours with dataset.columns, e.g. {{'answer': 'solution'}}"
        )


def shape_for_trl(dataset, config: RunConfig, what: str):
    """Keep the columns the method's TRL format reads, chat-shaped and with content.

    Returns the dataset, the rows dropped for lacking content and the shape (None when
    no format is unambiguous); refuses the dataset when rows without content are the
    majority (``shaping.MAX_EMPTY_FRACTION``).
    """
    shape = shaping.choose_shape(
        config.method.value,
        dataset.column_names,
        shaping.first_values(dataset.select(range(min(len(dataset), 100)))),
        text_field=config.hyperparameters.get("dataset_text_field", "text"),
        rewards=list(config.rewards),
        mapped=config.dataset.columns.keys(),
    )
    if shape is None:
        return dataset, None, None  # no unambiguous format: check_columns says what is missing
    if shape.notable:
        print(f"{what} set: {shape.describe()}", flush=True)
    if shape.rewrites:  # the same row function the runner's data check applies
        dataset = dataset.map(
            lambda row: shaping.shape_row(row, shape), remove_columns=dataset.column_names
        )
    else:
        if shape.rename:
            dataset = dataset.rename_columns(shape.rename)
        dataset = dataset.select_columns(list(shape.keep))
    total = len(dataset)
    dataset = dataset.filter(lambda row: not shaping.lacks_content(row, shape))
    empty = shaping.EmptyRows(total - len(dataset), total, shape.content)
    if empty.too_many:
        raise ConfigError(f"the {what} set: {empty.message()}")
    if empty.dropped:
        print(f"warning: the {what} set: {empty.message()}", flush=True)
    return dataset, empty, shape


def load_datasets(config: RunConfig, extra_columns: set[str]):
    """Train and optional eval dataset, shaped for TRL: mapped, capped, narrowed, split.

    Also returns the data notes for the summary (rows dropped for lacking content).
    """
    source = config.dataset
    columns, limit = source.columns, source.max_samples
    notes: dict[str, Any] = {}

    def prepare(split: str, what: str):
        dataset = rename_columns(load_split(source, split), columns)
        if limit is not None:
            dataset = dataset.select(range(min(limit, len(dataset))))
        if len(dataset) == 0:
            raise ConfigError(f"the {split!r} split of {source.path} is empty")
        dataset, empty, shape = shape_for_trl(dataset, config, what)
        if shape is not None and shape.system:
            notes[f"{what}_system_turn"] = {"column": shape.system}
        if empty is not None and empty.dropped:
            notes[f"{what}_rows_without_content"] = {
                "dropped": empty.dropped,
                "total": empty.total,
                "columns": list(empty.columns),
            }
        return dataset

    train = prepare(source.split or "train", "train")
    evaluation = None
    if source.eval_split:
        evaluation = prepare(source.eval_split, "eval")
    elif source.eval_fraction:
        parts = train.train_test_split(test_size=source.eval_fraction, seed=config.seed)
        train, evaluation = parts["train"], parts["test"]

    check_columns(train, config, extra_columns, "train")
    if evaluation is not None:
        check_columns(evaluation, config, extra_columns, "eval")
    return train, evaluation, notes
