"""The data check reads the rows the job will train on: the dataset revision submit pins
(or the file names), not whatever the dataset viewer serves (only the newest revision).

A loopback Hub holds a dataset whose ``main`` has moved on from the tagged revision the
experiment asks for, and changed schema on the way; the loopback viewer serves ``main``.
"""

from __future__ import annotations

import io

import pytest

from ci_runner.errors import ExitCode
from tests.conftest import cli
from tests.dataset_viewer_server import FakeDatasetViewer
from tests.model_hub import model_hub

pytestmark = pytest.mark.usefixtures("loopback_online")

OLD, NEW = "b" * 40, "a" * 40
OLD_ROWS = [{"question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(4)]
NEW_ROWS = [{"prompt": f"What is {i} + {i}?", "completion": str(2 * i)} for i in range(4)]

SPEC = """\
name: pinned-data
base_model: org/tiny
method: sft
backend: hf-jobs
output:
  hub_model_id: alice/pinned-data
dataset:
  path: org/moving
  revision: v1
hyperparameters:
  max_steps: 5
"""


def parquet(rows: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), out)
    return out.getvalue()


def run(tmp_path, monkeypatch, *args: str):
    """The CLI in its own process, as a user runs it, pointed at the loopback Hub and viewer."""
    pytest.importorskip("datasets")
    spec = tmp_path / "experiments" / "pinned-data.yaml"
    spec.parent.mkdir(exist_ok=True)
    spec.write_text(SPEC)
    data = "data/train-00000-of-00001.parquet"
    with model_hub(tmp_path, monkeypatch) as hub, FakeDatasetViewer() as viewer:
        hub.datasets["org/moving"] = {
            OLD: {data: parquet(OLD_ROWS)},
            NEW: {data: parquet(NEW_ROWS)},
        }
        hub.dataset_heads["org/moving"] = NEW
        hub.dataset_tags["org/moving@v1"] = OLD
        viewer.add_dataset("org/moving", {"default": {"train": NEW_ROWS}})
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_DATASETS_SERVER", viewer.url)
        monkeypatch.setenv("HF_TOKEN", "hf_test")
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
        result = cli(tmp_path, *args, str(spec))
        asked_viewer = [r for r in viewer.requests if "first-rows" in r.path]
        asked_hub = [path for _, path, _ in hub.seen]
    return result, asked_viewer, asked_hub


def test_submit_checks_the_revision_it_pins_not_the_newest(tmp_path, monkeypatch):
    result, asked_viewer, asked_hub = run(tmp_path, monkeypatch, "submit")
    output = result.stdout + result.stderr
    # At v1 the columns are question/answer: SFT needs the mapping (the newest would pass).
    assert result.returncode == ExitCode.DATA, result.stdout + result.stderr
    assert "is NEEDS MAPPING for SFT" in output
    assert "prompt: question" in output and "completion: answer" in (result.stdout + result.stderr)
    assert f"/datasets/org/moving/resolve/{OLD}/data/train-00000-of-00001.parquet" in asked_hub
    assert asked_viewer == []  # the viewer's rows are main's, not the pinned commit's
    assert not (tmp_path / "training_reports").exists()


def test_check_data_samples_the_revision_the_file_names(tmp_path, monkeypatch):
    result, asked_viewer, _ = run(tmp_path, monkeypatch, "check-data")
    output = result.stdout + result.stderr
    assert result.returncode == ExitCode.DATA, result.stdout + result.stderr
    assert "Dataset org/moving (split train, revision v1, datasets streaming" in (
        result.stdout + result.stderr
    )
    assert "SFT: NEEDS MAPPING" in output
    assert asked_viewer == []
