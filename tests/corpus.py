"""The schema-faithful dataset corpus (``tests/corpus/*.yaml``, see its README).

Each entry becomes a local Parquet file written through ``datasets.Features`` built from
the card's ``dataset_info`` features, and the same rows and features as the dataset
viewer's ``/first-rows`` serves them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CORPUS = Path(__file__).with_name("corpus")


@dataclass(frozen=True)
class CorpusEntry:
    dataset: str
    config: str
    split: str
    num_rows: int
    features_yaml: list[dict[str, Any]]  # as the card's dataset_info writes them
    raw_rows: list[dict[str, Any]]

    @property
    def slug(self) -> str:
        return self.dataset.replace("/", "__")

    @functools.cached_property
    def features(self):
        from datasets import Features

        return Features._from_yaml_list(self.features_yaml)

    @functools.cached_property
    def table(self):
        """The rows as Arrow holds them: every struct field present, nulls typed."""
        from datasets import Dataset

        return Dataset.from_list(self.raw_rows, features=self.features)

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.table.to_list()

    def viewer_features(self) -> dict[str, Any]:
        """Each column's ``datasets`` type dict, as ``/first-rows`` serves it."""
        return self.features.to_dict()

    def write_parquet(self, folder: Path) -> Path:
        """``<folder>/<slug>.parquet``, carrying the features in its schema metadata."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.slug}.parquet"
        if not path.exists():
            self.table.to_parquet(str(path))
        return path


@functools.cache
def entries() -> dict[str, CorpusEntry]:
    """Every corpus dataset, by Hub id."""
    found = {}
    for path in sorted(CORPUS.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        found[data["dataset"]] = CorpusEntry(
            dataset=data["dataset"],
            config=data["config"],
            split=data["split"],
            num_rows=data["num_rows"],
            features_yaml=data["features"],
            raw_rows=data["rows"],
        )
    return found


def viewer_cell(value: Any) -> Any:
    """A cell as ``/first-rows`` serves it: an image is a link with its size, not bytes."""
    if isinstance(value, dict) and isinstance(value.get("bytes"), bytes):
        return {
            "src": "https://datasets-server.huggingface.co/assets/image.png",
            "height": 2,
            "width": 2,
        }
    if isinstance(value, dict):
        return {k: viewer_cell(v) for k, v in value.items()}
    if isinstance(value, list):
        return [viewer_cell(v) for v in value]
    return value


def serve(viewer, entry: CorpusEntry) -> None:
    """Put one entry on a ``FakeDatasetViewer`` with its real features."""
    viewer.add_dataset(
        entry.dataset,
        {entry.config: {entry.split: [viewer_cell(row) for row in entry.rows]}},
        features=entry.viewer_features(),
        num_rows={(entry.config, entry.split): entry.num_rows},
    )
