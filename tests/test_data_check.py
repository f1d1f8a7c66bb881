"""The data check end to end: verdicts, lengths, plan inputs, remote mode, train agreement."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from ci_runner.backend.hf_jobs import HfJobsBackend, RetryPolicy
from ci_runner.data.check import check_sample
from ci_runner.data.formats import Verdict, shape_sample
from ci_runner.data.lengths import length_stats, measure
from ci_runner.data.remote import fetch_remote_sample
from ci_runner.data.sample import DatasetSample
from ci_runner.errors import ExitCode
from ci_runner.job_scripts import shaping
from ci_runner.runconfig import DatasetSource
from ci_runner.spec.load import parse_experiment
from tests.conftest import ROOT, cli, make_project
from tests.hf_jobs_server import FakeHFJobs


def test_length_stats_percentiles_and_truncation_warning():
    stats = length_stats(list(range(1, 101)), max_length=90, exact=True)
    assert (stats.p50, stats.p95, stats.max, stats.truncated) == (50, 95, 100, 10)
    assert "10 of 100 sampled examples (10%) exceed max_length 90" in stats.warning
    assert length_stats([5, 6], max_length=None, exact=True).warning is None
    assert length_stats([], max_length=10, exact=False) is None


def test_measure_uses_the_longer_preference_side_and_flags_estimates():
    rows = [{"prompt": "x" * 40, "chosen": "y" * 40, "rejected": "z" * 400}]
    shape = shaping.choose_shape("dpo", list(rows[0]), rows[0])
    stats = measure(rows, shape, "dpo", max_length=50, counter=None)
    assert stats.max == 110  # (40 + 400) chars / 4
    assert not stats.exact and stats.truncated == 1


def test_mapping_is_applied_like_train_py():
    rows = [{"good_response": "a", "bad_response": "b", "prompt": "p", "id": 1}]
    sample = DatasetSample(source="./p.jsonl", split="train", columns=list(rows[0]), rows=rows)
    mapping = {"chosen": "good_response", "rejected": "bad_response"}
    shaped = shape_sample(sample, "dpo", columns=mapping)
    assert shaped.rows == ({"prompt": "p", "chosen": "a", "rejected": "b"},)


PREFS = [
    {"prompt": f"Q{i}?", "good_response": f"Right {i}.", "bad_response": f"Wrong {i}."}
    for i in range(12)
]


def test_check_sample_for_an_experiment_uses_its_mapping_and_method():
    sample = DatasetSample(source="./p.jsonl", split="train", columns=list(PREFS[0]), rows=PREFS)
    text = (
        "name: x\nbase_model: ./m\nmethod: dpo\ndataset:\n  path: ./p.jsonl\n"
        "  columns: {chosen: good_response, rejected: bad_response}\n"
    )
    result = check_sample(sample, parse_experiment(text, "x.yaml"))
    assert result.verdict == Verdict.READY
    unmapped = check_sample(sample, parse_experiment(text.split("  columns")[0], "x.yaml"))
    assert unmapped.verdict == Verdict.NEEDS_MAPPING
    assert unmapped.for_method("dpo").mapping == {
        "chosen": "good_response",
        "rejected": "bad_response",
    }


@pytest.mark.training
def test_mapped_dpo_dataset_passes_the_check_and_trains(tiny_fixtures, tmp_path):
    root = make_project(tmp_path, tiny_fixtures.model.parent)
    rows = [json.loads(line) for line in tiny_fixtures.dpo_data.read_text().splitlines()]
    renamed = [
        {"prompt": r["prompt"], "good_response": r["chosen"], "bad_response": r["rejected"]}
        for r in rows
    ]
    data = root / "prefs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in renamed))

    suggested = cli(root, "check-data", "--dataset", "./prefs.jsonl", "--json")
    assert suggested.returncode == 0, suggested.stderr
    dpo = next(c for c in json.loads(suggested.stdout)["checks"] if c["method"] == "dpo")
    assert dpo["verdict"] == "NEEDS MAPPING"
    mapping = dpo["mapping"]
    assert mapping == {"chosen": "good_response", "rejected": "bad_response"}

    spec = root / "experiments" / "mapped-dpo.yaml"
    spec.write_text(
        "name: mapped-dpo\nbase_model: ./fixtures/tiny-llama\nmethod: dpo\n"
        "dataset:\n  path: ./prefs.jsonl\n  max_samples: 16\n"
        f"  columns: {json.dumps(mapping)}\n"
        "hyperparameters: {max_steps: 2, per_device_train_batch_size: 4, max_length: 64}\n"
        "lora: off\n"
    )
    checked = cli(root, "check-data", "experiments/mapped-dpo.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "DPO: READY" in checked.stdout
    assert "tokens (model tokenizer)" in checked.stdout
    trained = cli(root, "run", "experiments/mapped-dpo.yaml")
    assert trained.returncode == 0, trained.stderr


def test_plan_uses_the_measured_row_count_and_length(tiny_fixtures, tmp_path):
    root = make_project(tmp_path, tiny_fixtures.model.parent)
    spec = root / "experiments" / "epochs.yaml"
    spec.write_text(
        "name: epochs\nbase_model: ./fixtures/tiny-llama\nmethod: sft\n"
        "dataset: ./fixtures/data/tiny-chat.jsonl\n"
        "hyperparameters: {num_train_epochs: 2, per_device_train_batch_size: 4}\nlora: off\n"
    )
    out = cli(root, "plan", "--json", "experiments/epochs.yaml")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["data"]["num_rows"] == 64
    assert data["plan"]["examples"] == 128  # 64 rows x 2 epochs, not an assumption
    assert data["plan"]["mean_seq_len"] == pytest.approx(data["data"]["lengths"]["mean"])


def test_check_data_on_an_incompatible_experiment_exits_7_with_the_reason(tiny_fixtures, tmp_path):
    root = make_project(tmp_path, tiny_fixtures.model.parent)
    spec = root / "experiments" / "sft-on-prefs.yaml"
    spec.write_text(
        "name: sft-on-prefs\nbase_model: ./fixtures/tiny-llama\nmethod: sft\n"
        "dataset: ./fixtures/data/tiny-prefs.jsonl\nlora: off\n"
    )
    out = cli(root, "check-data", "experiments/sft-on-prefs.yaml")
    assert out.returncode == ExitCode.DATA
    assert "SFT: INCOMPATIBLE" in out.stdout
    refused = cli(root, "submit", "experiments/sft-on-prefs.yaml")
    assert refused.returncode == ExitCode.DATA
    assert "sft-on-prefs.yaml: dataset:" in refused.stderr
    assert not (root / ".ci-runner" / "jobs").exists()


@pytest.mark.slow
def test_check_data_job_script_streams_a_local_dataset(tmp_path):
    pytest.importorskip("datasets")
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "train.jsonl").write_text(
        "".join(json.dumps({"text": f"row {i}" + "x" * 10000}) + "\n" for i in range(80))
    )
    config = {"dataset": {"path": str(folder), "config": None, "split": "train"}}
    out = subprocess.run(
        [sys.executable, str(ROOT / "job_scripts" / "check_data.py")],
        env={
            **__import__("os").environ,
            "CI_RUNNER_RUN_CONFIG": json.dumps(config),
            "HF_HUB_OFFLINE": "1",
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1].removeprefix("CI_RUNNER_SUMMARY "))
    assert summary["status"] == "completed"
    assert summary["columns"] == ["text"]
    assert len(summary["rows"]) == 50  # streamed: the first rows only
    assert len(summary["rows"][0]["text"]) == 8000  # long cells clipped for the log line


@pytest.mark.usefixtures("loopback_online")
def test_remote_check_runs_a_cpu_job_and_checks_its_rows():
    rows = [{"prompt": "2+2?", "answer": "4"}] * 3
    summary = {
        "status": "completed",
        "columns": ["prompt", "answer"],
        "rows": rows,
        "num_rows": 7473,
    }
    with FakeHFJobs(namespace="alice", token="hf_x", stream_idle_close_s=0.05) as hf:

        def finish(job: dict) -> None:
            def later() -> None:
                time.sleep(0.2)
                hf.add_logs(job["id"], ["streaming", "CI_RUNNER_SUMMARY " + json.dumps(summary)])
                hf.set_stage(job["id"], "COMPLETED")

            threading.Thread(target=later, daemon=True).start()

        hf.on_create(finish)
        backend = HfJobsBackend(
            hf.api("hf_x"),
            namespace="alice",
            token="hf_x",
            repo="acme",
            retry=RetryPolicy(base_delay_s=0),
            sleep=lambda s: None,
        )
        source = DatasetSource(path="openai/gsm8k", config="main", split="train")
        sample = fetch_remote_sample(
            backend,
            source,
            script=ROOT / "job_scripts" / "check_data.py",
            interval_s=0.05,
            sleep=time.sleep,
        )
        (create,) = hf.requests_to("POST", r"^/api/jobs/alice$")
        again = fetch_remote_sample(
            backend,
            source,
            script=ROOT / "job_scripts" / "check_data.py",
            interval_s=0.05,
            sleep=time.sleep,
        )
    assert create.json["flavor"] == "cpu-basic"
    assert sample.num_rows == 7473 and sample.rows == rows
    assert sample.origin.startswith("remote job ")
    assert again.rows == rows and len(hf.requests_to("POST", r"^/api/jobs/alice$")) == 1
    result = check_sample(sample, None)
    assert result.for_method("grpo").verdict == Verdict.READY


def test_validate_with_data_reports_the_fit(tiny_fixtures, tmp_path):
    root = make_project(tmp_path, tiny_fixtures.model.parent, "tiny-sft.yaml")
    (root / "experiments" / "bad.yaml").write_text(
        "name: bad\nbase_model: ./fixtures/tiny-llama\nmethod: dpo\n"
        "dataset: ./fixtures/data/tiny-chat.jsonl\n"
    )
    good = cli(root, "validate", "--data", "experiments/tiny-sft.yaml")
    assert good.returncode == 0 and "SFT: READY" in good.stdout
    bad = cli(root, "validate", "--data", "experiments/bad.yaml")
    assert bad.returncode == ExitCode.DATA and "DPO: INCOMPATIBLE" in bad.stdout
    assert cli(root, "validate", "experiments/bad.yaml").returncode == 0  # spec-only by default
