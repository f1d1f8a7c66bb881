"""Reading dataset samples: local files and folders, and the dataset viewer over real HTTP."""

from __future__ import annotations

import csv
import json
import sys
import types
from pathlib import Path

import pytest

from ci_runner.data.sample import SAMPLE_ROWS
from ci_runner.data.sources import read_hub, read_local, read_sample
from ci_runner.data.viewer import ViewerClient, ViewerUnavailableError
from ci_runner.errors import (
    DatasetNotFoundError,
    DatasetViewerError,
    DataSourceError,
    ExitCode,
    NotReadyError,
)
from tests.dataset_viewer_server import FakeDatasetViewer

TOKEN = "hf_secret_token_do_not_print"
CHAT = [
    {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
    for i in range(150)
]
PAIRS = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(5)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_parquet(path: Path, rows: list[dict], row_group_size: int | None = None) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=row_group_size)
    return path


# --- local files --------------------------------------------------------------------


def test_jsonl_reads_rows_columns_and_count(tmp_path):
    sample = read_local(write_jsonl(tmp_path / "d.jsonl", PAIRS))
    assert sample.rows == PAIRS
    assert sample.columns == ["prompt", "completion"]
    assert sample.num_rows == 5
    assert sample.splits == ["train"]
    assert sample.origin == "local JSONL file"


def test_jsonl_limit_is_respected_and_total_counted(tmp_path):
    rows = [{"text": f"row {i}"} for i in range(10_000)]
    sample = read_local(write_jsonl(tmp_path / "big.jsonl", rows))
    assert len(sample.rows) == SAMPLE_ROWS == 100
    assert sample.rows[-1] == {"text": "row 99"}
    assert sample.num_rows == 10_000


def test_jsonl_over_the_count_cap_leaves_num_rows_unknown(tmp_path, monkeypatch):
    monkeypatch.setattr("ci_runner.data.sources.COUNT_CAP_BYTES", 100)
    rows = [{"text": f"row {i}"} for i in range(50)]
    sample = read_local(write_jsonl(tmp_path / "d.jsonl", rows), limit=10)
    assert len(sample.rows) == 10
    assert sample.num_rows is None
    assert "not counted" in sample.origin


def test_jsonl_malformed_line_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n\n{"text": "ok"}\n{"text": oops}\n')
    with pytest.raises(DataSourceError, match=r"bad\.jsonl:4: malformed JSON") as info:
        read_local(path)
    assert info.value.exit_code == ExitCode.DATA == 7


def test_jsonl_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n["a", "list"]\n')
    with pytest.raises(DataSourceError, match=r"bad\.jsonl:2: expected a JSON object.*a list"):
        read_local(path)


def test_csv_streams_rows_as_strings(tmp_path):
    path = tmp_path / "d.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["prompt", "completion"])
        for i in range(300):
            writer.writerow([f"line one\nline two {i}", f"c{i}"])  # quoted newlines
    sample = read_local(path, limit=3)
    assert sample.columns == ["prompt", "completion"]
    assert sample.rows[2] == {"prompt": "line one\nline two 2", "completion": "c2"}
    assert sample.num_rows == 300  # counted by the csv module, not by newlines


def test_csv_row_with_extra_fields_is_named(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b\n1,2\n3,4,5\n")
    with pytest.raises(DataSourceError, match=r"d\.csv:3: more fields than the header"):
        read_local(path)


def test_parquet_reads_first_row_group_and_counts_from_footer(tmp_path):
    rows = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(1000)]
    path = write_parquet(tmp_path / "d.parquet", rows, row_group_size=50)
    sample = read_local(path, limit=120)
    assert sample.rows == rows[:120]
    assert sample.num_rows == 1000
    assert sample.columns == ["prompt", "completion"]
    assert sample.features["prompt"] == "string"
    assert sample.origin == "local Parquet file"


def test_corrupt_parquet_is_a_clear_error(tmp_path):
    path = tmp_path / "d.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DataSourceError, match=r"d\.parquet: not a readable Parquet file"):
        read_local(path)


def test_json_list(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(CHAT))
    sample = read_local(path)
    assert sample.num_rows == 150
    assert len(sample.rows) == 100
    assert sample.columns == ["messages"]


def test_json_lines_with_a_json_suffix(tmp_path):
    path = write_jsonl(tmp_path / "d.json", PAIRS)
    assert read_local(path).rows == PAIRS


def test_json_wrapped_in_data_key_is_refused_like_the_training_job_would_misread_it(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"data": PAIRS}))
    with pytest.raises(DataSourceError, match=r"ONE row with a 'data' column"):
        read_local(path)


def test_json_over_the_size_cap_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("ci_runner.data.sources.JSON_CAP_BYTES", 10)
    path = tmp_path / "d.json"
    path.write_text(json.dumps(PAIRS))
    with pytest.raises(DataSourceError, match=r"parsed whole.*JSON Lines"):
        read_local(path)


def test_malformed_json_names_the_line(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[\n  {"a": 1},\n  {"a": }\n]\n')
    with pytest.raises(DataSourceError, match=r"d\.json:3: malformed JSON"):
        read_local(path)


def test_missing_path_is_not_ready(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="no such file") as info:
        read_local(tmp_path / "nope.jsonl")
    assert info.value.exit_code == ExitCode.NOT_READY
    assert isinstance(info.value, NotReadyError)


def test_unknown_extension(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("hello\n")
    with pytest.raises(DataSourceError, match=r"d\.txt: unsupported file type '\.txt'.*\.jsonl"):
        read_local(path)


def test_single_file_only_has_train(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", PAIRS)
    with pytest.raises(DataSourceError, match=r"only has a 'train' split, not 'test'"):
        read_local(path, split="test")


# --- local folders ------------------------------------------------------------------


def test_save_to_disk_dataset_dict(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.disable_progress_bars()
    train = datasets.Dataset.from_list([{"text": f"t{i}", "n": i} for i in range(2500)])
    test = datasets.Dataset.from_list([{"text": "x", "n": 0}])
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "saved"))

    sample = read_local(tmp_path / "saved", split="train", limit=5)
    assert sample.rows == [{"text": f"t{i}", "n": i} for i in range(5)]
    assert sample.num_rows == 2500  # from the Arrow batch headers
    assert sample.columns == ["text", "n"]
    assert sample.splits == ["train", "test"]
    assert sample.features["n"] == {"dtype": "int64", "_type": "Value"}
    assert read_local(tmp_path / "saved", split="test").num_rows == 1

    with pytest.raises(DataSourceError, match=r"no split 'tset'.*did you mean 'test'"):
        read_local(tmp_path / "saved", split="tset")


def test_save_to_disk_single_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.disable_progress_bars()
    datasets.Dataset.from_list(PAIRS).save_to_disk(str(tmp_path / "one"))
    sample = read_local(tmp_path / "one")
    assert sample.rows == PAIRS
    assert sample.num_rows == 5
    assert sample.origin == "local folder (save_to_disk)"


def test_folder_of_files_picks_the_split_by_name(tmp_path):
    folder = tmp_path / "data"
    write_jsonl(folder / "train-part1.jsonl", [{"text": f"a{i}"} for i in range(60)])
    write_jsonl(folder / "train-part2.jsonl", [{"text": f"b{i}"} for i in range(60)])
    write_jsonl(folder / "test.jsonl", [{"text": "t"}])
    write_jsonl(folder / ".hidden" / "train.jsonl", [{"text": "hidden"}])
    (folder / "README.md").write_text("# card\n")

    sample = read_local(folder)
    assert len(sample.rows) == 100
    assert sample.rows[0] == {"text": "a0"} and sample.rows[60] == {"text": "b0"}
    assert sample.num_rows == 120
    assert sample.splits == ["train", "test"]
    assert sample.origin == "local folder of data files"
    assert read_local(folder, split="test").rows == [{"text": "t"}]
    with pytest.raises(DataSourceError, match=r"no split 'validation'; available: train, test"):
        read_local(folder, split="validation")


def test_folder_of_sharded_parquet(tmp_path):
    folder = tmp_path / "repo"
    write_parquet(folder / "data" / "train-00000-of-00002.parquet", PAIRS)
    write_parquet(folder / "data" / "train-00001-of-00002.parquet", PAIRS)
    write_parquet(folder / "data" / "sft-00000-of-00001.parquet", PAIRS[:1])
    sample = read_local(folder, limit=2)
    assert sample.num_rows == 10
    assert len(sample.rows) == 2
    assert read_local(folder, split="sft").num_rows == 1


def test_folder_without_split_names_is_all_train(tmp_path):
    write_jsonl(tmp_path / "f" / "a.jsonl", PAIRS)
    write_jsonl(tmp_path / "f" / "b.jsonl", PAIRS)
    assert read_local(tmp_path / "f").num_rows == 10


def test_folder_without_data_files(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataSourceError, match="no data files"):
        read_local(tmp_path / "empty")


def test_read_sample_resolves_local_paths_against_root(tmp_path):
    write_jsonl(tmp_path / "data" / "d.jsonl", PAIRS)
    sample = read_sample("./data/d.jsonl", root=tmp_path)
    assert sample.source == "./data/d.jsonl"
    assert sample.rows == PAIRS


# --- the dataset viewer, over loopback HTTP -----------------------------------------


@pytest.fixture
def fake(loopback_online):
    with FakeDatasetViewer() as server:
        server.add_dataset("org/name", {"default": {"train": CHAT, "test": CHAT[:7]}})
        yield server


def client(fake: FakeDatasetViewer, token: str | None = TOKEN, **kwargs) -> ViewerClient:
    kwargs.setdefault("sleep", lambda s: None)
    return ViewerClient(fake.url, token=token, **kwargs)


def test_read_hub_uses_splits_first_rows_and_size(fake):
    sample = read_sample(
        "org/name", root=Path("."), config=None, split="train", viewer=client(fake)
    )
    assert sample.config == "default"
    assert sample.splits == ["train", "test"]
    assert sample.columns == ["messages"]
    assert len(sample.rows) == 100 and sample.rows[0] == CHAT[0]
    assert sample.num_rows == 150
    assert sample.features["messages"]["_type"] == "List"
    assert sample.origin == "dataset viewer"
    assert [r.path for r in fake.requests] == [
        "/splits?dataset=org%2Fname",
        "/first-rows?dataset=org%2Fname&config=default&split=train",
        "/size?dataset=org%2Fname&config=default",
    ]
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in fake.requests)


def test_no_token_sends_no_authorization_header(fake):
    read_hub("org/name", config="default", split="test", viewer=client(fake, token=None))
    assert all("authorization" not in r.headers for r in fake.requests)


def test_unknown_dataset_with_a_token_is_a_clear_404(fake):
    with pytest.raises(DatasetNotFoundError) as info:
        read_hub("org/typo", config=None, split="train", viewer=client(fake))
    message = str(info.value)
    assert "dataset org/typo not found on the Hub" in message
    assert TOKEN not in message
    assert info.value.exit_code == ExitCode.NOT_READY
    assert fake.requests[-1].status == 404
    assert len(fake.requests) == 1  # not retried


def test_unknown_or_private_dataset_without_a_token_says_set_hf_token(fake):
    fake.add_dataset("org/private", {"default": {"train": PAIRS}}, token="hf_other")
    with pytest.raises(DatasetNotFoundError, match="private/gated without a token.*HF_TOKEN"):
        read_hub("org/private", config=None, split="train", viewer=client(fake, token=None))
    assert fake.requests[-1].status == 401


def test_private_dataset_is_readable_with_its_token(fake):
    fake.add_dataset("org/private", {"default": {"train": PAIRS}}, token=TOKEN)
    sample = read_hub("org/private", config=None, split="train", viewer=client(fake))
    assert sample.rows == PAIRS


def test_forbidden_token_never_appears_in_the_error(fake):
    fake.fail_next(r"^/splits", 403, code="Forbidden", message=f"bad token {TOKEN[:3]}")
    with pytest.raises(DatasetViewerError, match="refused the token") as info:
        read_hub("org/name", config=None, split="train", viewer=client(fake))
    assert TOKEN not in str(info.value)
    assert info.value.exit_code == ExitCode.BACKEND


def test_5xx_then_success_is_retried(fake):
    sleeps: list[float] = []
    fake.fail_next(r"^/first-rows", 503, times=2)
    fake.fail_next(r"^/splits", 429, headers={"Retry-After": "3"})
    sample = read_hub(
        "org/name", config=None, split="train", viewer=client(fake, sleep=sleeps.append)
    )
    assert len(sample.rows) == 100
    assert [r.status for r in fake.requests_to(r"^/splits")] == [429, 200]
    assert [r.status for r in fake.requests_to(r"^/first-rows")] == [503, 503, 200]
    assert sleeps == [3.0, 1.0, 2.0]  # Retry-After honoured, else doubling backoff


def test_dropped_connection_is_retried(fake):
    fake.drop_next(r"^/splits")
    read_hub("org/name", config=None, split="train", viewer=client(fake))
    assert len(fake.requests_to(r"^/splits")) == 2


def test_retries_are_bounded(fake):
    fake.fail_next(r"^/splits", 502, times=99)
    with pytest.raises(DatasetViewerError, match=r"kept failing on /splits.*HTTP 502.*3 attempt"):
        read_hub("org/name", config=None, split="train", viewer=client(fake, retries=2))
    assert len(fake.requests) == 3


def test_unknown_split_lists_the_available_ones(fake):
    with pytest.raises(DataSourceError) as info:
        read_hub("org/name", config=None, split="tran", viewer=client(fake))
    assert "no split 'tran'; available: train, test; did you mean 'train'?" in str(info.value)
    assert info.value.exit_code == ExitCode.DATA
    assert [r.route for r in fake.requests] == ["/splits"]  # nothing fetched for a typo


def test_unknown_config_and_ambiguous_config(fake):
    fake.add_dataset("org/multi", {"en": {"train": PAIRS}, "fr": {"train": PAIRS}})
    with pytest.raises(DataSourceError, match=r"no config 'fn'.*available: en, fr"):
        read_hub("org/multi", config="fn", split="train", viewer=client(fake))
    with pytest.raises(DataSourceError, match=r"has 2 configs \(en, fr\): set dataset.config"):
        read_hub("org/multi", config=None, split="train", viewer=client(fake))
    assert read_hub("org/multi", config="fr", split="train", viewer=client(fake)).config == "fr"


def test_partial_size_leaves_num_rows_unknown(fake):
    fake.add_dataset("org/huge", {"default": {"train": PAIRS}}, partial=True)
    sample = read_hub("org/huge", config=None, split="train", viewer=client(fake))
    assert sample.num_rows is None
    assert "only part of the dataset" in sample.origin


def test_size_failure_keeps_the_rows(fake):
    fake.fail_next(r"^/size", 500, times=9)
    sample = read_hub("org/name", config=None, split="train", viewer=client(fake, retries=1))
    assert len(sample.rows) == 100
    assert sample.num_rows is None and "row count unavailable" in sample.origin


def test_unsupported_dataset_is_reported_as_unavailable_without_retry(fake):
    message = "The dataset viewer doesn't support this dataset because it runs arbitrary code."
    fake.add_dataset("org/script", {}, error=(501, "DatasetWithScriptNotSupportedError", message))
    with pytest.raises(ViewerUnavailableError, match="arbitrary code") as info:
        client(fake).splits("org/script")
    assert info.value.code == "DatasetWithScriptNotSupportedError"
    assert len(fake.requests) == 1


def test_unsupported_dataset_falls_back_to_streaming_only_limit_rows(fake, monkeypatch):
    fake.add_dataset("org/script", {}, error=(501, "DatasetWithScriptNotSupportedError", "no"))
    calls = []

    def endless():
        i = 0
        while True:  # a stream that never ends: only islice keeps this O(limit)
            yield {"text": f"s{i}"}
            i += 1

    class Stream:
        features = None

        def __iter__(self):
            return endless()

    def load_dataset(path, name=None, **kwargs):
        calls.append((path, name, kwargs))
        return Stream()

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    sample = read_hub("org/script", config="c", split="train", viewer=client(fake), limit=7)
    assert len(sample.rows) == 7 and sample.columns == ["text"]
    expected = {"split": "train", "streaming": True, "token": TOKEN, "revision": None}
    assert calls == [("org/script", "c", expected)]
    assert sample.origin.startswith("datasets streaming (the dataset viewer can't serve")


def test_not_ready_after_retries_is_unavailable(fake):
    fake.fail_next(r"^/splits", 500, times=9, code="ResponseNotReady")
    with pytest.raises(ViewerUnavailableError, match="not processed"):
        client(fake, retries=1).splits("org/name")
    assert len(fake.requests) == 2


def test_offline_mode_is_a_clear_error(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    viewer = ViewerClient("http://127.0.0.1:9", token=TOKEN, sleep=lambda s: None)
    with pytest.raises(DatasetViewerError, match="HF_HUB_OFFLINE"):
        viewer.splits("org/name")


def test_repr_hides_the_token():
    assert TOKEN not in repr(ViewerClient("http://x", token=TOKEN))


def test_base_url_from_env(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_SERVER", "http://127.0.0.1:1234/")
    assert ViewerClient().base_url == "http://127.0.0.1:1234"
