"""The core loop on the tiny model: experiment file → local job → ledger → report.

These run real TRL steps through job_scripts/train.py as detached local jobs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ci_runner.backend.local import LocalBackend
from ci_runner.errors import ExitCode
from ci_runner.flow.poll import poll as poll_once
from ci_runner.flow.submit import submit as submit_file
from ci_runner.flow.workspace import Workspace
from ci_runner.ledger.model import RunStatus
from ci_runner.ledger.repository import find_run
from ci_runner.ledger.store import load_ledger
from ci_runner.paths import Project
from tests.conftest import cli, make_project

pytestmark = pytest.mark.training

STEM = "tiny-llama-tiny-shop-sft"


def git(root: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
    return out.stdout


def write_experiment(root: Path, name: str, extra: str = "", steps: int = 2) -> Path:
    path = root / "experiments" / f"{name}.yaml"
    path.write_text(
        f"name: {name}\n"
        "base_model: ./fixtures/tiny-llama\n"
        "method: sft\n"
        "dataset:\n  path: ./fixtures/data/tiny-chat.jsonl\n  max_samples: 16\n"
        f"hyperparameters:\n  max_steps: {steps}\n  per_device_train_batch_size: 4\n"
        "  logging_steps: 1\n  max_length: 64\n"
        "lora: off\n" + extra
    )
    return path


def wait_until_done(runner: Workspace, run_id: str, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        poll_once(runner)
        _, run = find_run(runner.project, run_id)
        if not run.active:
            return run
        time.sleep(0.5)
    raise AssertionError(f"{run_id} did not finish in {timeout}s")


@pytest.fixture(scope="module")
def demo(tiny_fixtures, tmp_path_factory):
    """The offline demo, run once through the CLI exactly as the README's command does."""
    root = make_project(
        tmp_path_factory.mktemp("demo"), tiny_fixtures.model.parent, "tiny-sft.yaml"
    )
    git(root, "init", "-q")
    result = cli(root, "run", "experiments/tiny-sft.yaml")
    return root, result


def test_demo_finishes_with_report_loss_and_plot(demo):
    root, result = demo
    assert result.returncode == 0, result.stderr
    report = root / "training_reports" / f"{STEM}.md"
    assert f"report: {report}" in result.stdout
    text = report.read_text()
    assert "- `Completed`" in text
    ledger = load_ledger(root / "training_reports" / f"{STEM}.ledger.json")
    (run,) = ledger.runs
    assert run.status == RunStatus.COMPLETED
    assert run.metrics.step == run.metrics.max_steps == 30
    assert f"Final loss: {run.metrics.final_loss:.4f}" in text
    assert len(run.metrics.loss_curve) == 30
    assert f"![Loss]({STEM}.loss.svg)\n![Mean token accuracy]({STEM}.token-accuracy.svg)" in text
    assert [s for s, _ in run.metrics.series["eval_loss"]] == [15, 30]  # eval_steps: 15
    assert f"- Eval loss: {run.metrics.last('eval_loss'):.4g}" in text
    svg = (root / "training_reports" / f"{STEM}.loss.svg").read_text()
    assert svg.startswith('<?xml version="1.0"') and "<!-- ci-runner figure " in svg
    assert ">train</text>" in svg and ">eval</text>" in svg  # eval loss drawn dashed
    assert (root / run.output_dir / "model.safetensors").exists()


def test_demo_evaluates_base_and_final_models(demo):
    root, _ = demo
    ledger = load_ledger(root / "training_reports" / f"{STEM}.ledger.json")
    (run,) = ledger.runs
    base, final = run.phase_jobs
    assert [(j.kind, j.key, j.state.value) for j in run.phase_jobs] == [
        ("eval", "base", "COMPLETED"),  # started with training
        ("eval", "final", "COMPLETED"),
    ]
    # one process evaluates both, started with training: it loads its libraries and the
    # base while the model trains, then waits for the training job to end
    assert base.job_id == final.job_id and base.fingerprint and base.reused_from is None
    base_started = (root / ".ci-runner" / "jobs" / base.job_id / "request.json").stat().st_mtime
    train_ended = (root / ".ci-runner" / "jobs" / run.last_attempt.job_id / "exit.json").stat()
    assert base_started < train_ended.st_mtime  # beside training, not after it
    by_label = {(e.model_label, e.benchmark): e for e in run.evaluations}
    assert set(by_label) == {("base", "gsm8k"), ("final", "gsm8k")}
    assert all(len(e.samples) == 32 for e in run.evaluations)  # every held-out question
    assert by_label["base", "gsm8k"].score == 0.0  # random weights cannot know the price
    table = (
        (root / "training_reports" / f"{STEM}.md").read_text().split("# Experiment Evaluations")[1]
    )
    rows = [line for line in table.splitlines() if line.startswith("| `tiny-sft")]
    assert len(rows) == 2
    assert any("`./fixtures/tiny-llama`" in r for r in rows)  # the base model's row
    assert any(f"`{run.output_dir}`" in r for r in rows)  # the trained model's row
    # every row has a score with its 95% interval over the benchmark's samples
    assert all(re.search(r"\| \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] \|", r) for r in rows)
    report = (root / "training_reports" / f"{STEM}.md").read_text()
    # what training taught, on questions it never saw: the gain's interval excludes 0
    assert re.search(r"final vs base on gsm8k exact_match: Δ \+0\.\d{3} \[\+0\.\d{3}, ", report)
    assert "a significant gain (n=32)" in report


def test_second_submit_starts_no_job(demo):
    root, _ = demo
    jobs_before = sorted((root / ".ci-runner" / "jobs").iterdir())
    result = cli(root, "submit", "experiments/tiny-sft.yaml")
    assert result.returncode == 0, result.stderr
    assert "already submitted" in result.stdout
    assert sorted((root / ".ci-runner" / "jobs").iterdir()) == jobs_before
    assert len(jobs_before) == 2  # training, and beside it one job evaluating base and final


def test_poll_and_report_twice_change_nothing(demo):
    root, _ = demo
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "demo")
    for _ in range(2):
        assert cli(root, "poll").returncode == 0
        assert cli(root, "report").returncode == 0
        assert git(root, "status", "--porcelain") == ""


def test_status_and_logs_read_back_as_json(demo):
    root, _ = demo
    status = json.loads(cli(root, "status", "--json").stdout)
    (run,) = status[0]["runs"]
    assert run["status"] == "completed"
    assert run["metrics"]["step"] == 30
    logs = cli(root, "logs", "tiny-sft", "--tail", "1")
    assert logs.stdout.startswith("CI_RUNNER_SUMMARY ")


class CrashAfterStart(LocalBackend):
    """The runner dies right after the job started, before recording it."""

    def launch(self, request):
        super().launch(request)
        raise KeyboardInterrupt("simulated crash")


class CrashBeforeStart(LocalBackend):
    def launch(self, request):
        raise KeyboardInterrupt("simulated crash")


@pytest.mark.parametrize("crashing", [CrashAfterStart, CrashBeforeStart])
def test_crash_during_submit_is_recovered_by_poll_without_a_second_job(
    tiny_fixtures, tmp_path, crashing
):
    root = make_project(tmp_path, tiny_fixtures.model.parent)
    spec = write_experiment(root, "crashy")
    project = Project(root)
    backend = crashing(project.jobs_dir, cwd=root, env={"TRACKIO_DIR": str(project.trackio_dir)})
    with pytest.raises(KeyboardInterrupt):
        submit_file(Workspace(project, backends={"local": backend}), spec)
    (ledger_path,) = project.ledger_paths()
    (run,) = load_ledger(ledger_path).runs
    assert run.last_attempt.job_id is None  # intent recorded, job not

    runner = Workspace(project)
    done = wait_until_done(runner, run.run_id)
    assert done.status == RunStatus.COMPLETED
    assert len(list(project.jobs_dir.iterdir())) == 1
    assert submit_file(runner, spec).created is False


def test_bad_mapping_is_refused_before_running_and_fails_the_job_if_forced(tiny_fixtures, tmp_path):
    root = make_project(tmp_path, tiny_fixtures.model.parent)
    write_experiment(root, "wrong-column", extra="")
    text = (root / "experiments" / "wrong-column.yaml").read_text()
    text = text.replace(
        "  max_samples: 16\n", "  max_samples: 16\n  columns: {messages: conversation}\n"
    )
    (root / "experiments" / "wrong-column.yaml").write_text(text)
    refused = cli(root, "run", "experiments/wrong-column.yaml")
    assert refused.returncode == ExitCode.DATA, refused.stderr  # the data check catches it first
    assert "conversation" in refused.stderr
    assert not (root / ".ci-runner" / "jobs").exists()
    # Past the check, the job itself fails, and the report says why.
    result = cli(root, "run", "--skip-data-check", "experiments/wrong-column.yaml")
    assert result.returncode == ExitCode.RUN_FAILED, result.stderr
    (report,) = [p for p in (root / "training_reports").glob("*.md") if p.name != "README.md"]
    body = report.read_text()
    assert "- `Failed`" in body
    assert "conversation" in body  # the missing column is named


def test_cancel_marks_run_canceled_and_wait_exits_11(tiny_fixtures, tmp_path):
    root = make_project(tmp_path, tiny_fixtures.model.parent)
    write_experiment(root, "to-cancel", steps=500)
    submitted = cli(root, "submit", "experiments/to-cancel.yaml")
    assert submitted.returncode == 0, submitted.stderr
    canceled = cli(root, "cancel", "to-cancel")
    assert canceled.returncode == 0 and "canceled" in canceled.stdout
    result = cli(root, "wait", "to-cancel", "--interval", "0.2")
    assert result.returncode == ExitCode.RUN_CANCELED
    (report,) = [p for p in (root / "training_reports").glob("*.md") if p.name != "README.md"]
    assert "- `Canceled`" in report.read_text()


def test_missing_fixtures_fail_before_anything_starts(tmp_path):
    (tmp_path / "experiments").mkdir()
    spec = write_experiment(tmp_path, "no-fixtures")
    result = cli(tmp_path, "submit", str(spec))
    assert result.returncode == ExitCode.NOT_READY
    assert "ci-runner fixtures" in result.stderr
    assert not (tmp_path / ".ci-runner").exists()


def test_run_exits_11_when_its_run_is_canceled_from_elsewhere(tiny_fixtures, tmp_path):
    root = make_project(tmp_path, tiny_fixtures.model.parent)
    write_experiment(root, "watched", steps=2000)
    watcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ci_runner.cli",
            "--root",
            str(root),
            "run",
            "experiments/watched.yaml",
            "--interval",
            "0.2",
        ],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list((root / ".ci-runner" / "jobs").glob("*/log.txt")):
        assert time.monotonic() < deadline and watcher.poll() is None
        time.sleep(0.2)
    assert cli(root, "cancel", "watched").returncode == 0
    _, err = watcher.communicate(timeout=120)
    assert watcher.returncode == ExitCode.RUN_CANCELED, err
    assert "Canceled" in err


def test_gguf_export_runs_after_training_and_lists_files_with_sizes(tiny_fixtures, tmp_path):
    from tests.test_export_gguf import need_llama_cpp

    need_llama_cpp()  # llama-cpp-python and its pinned converter, or skip
    root = make_project(tmp_path, tiny_fixtures.model.parent)
    write_experiment(root, "exported", extra="export: {gguf: {quantizations: [Q4_K_M]}}\n")
    result = cli(root, "run", "experiments/exported.yaml", "--interval", "0.5")
    assert result.returncode == 0, result.stderr
    (ledger_path,) = (root / "training_reports").glob("*.ledger.json")
    (run,) = load_ledger(ledger_path).runs
    assert [(j.kind, j.state.value) for j in run.phase_jobs] == [("export", "COMPLETED")]
    (gguf,) = run.exports
    assert gguf.quantization == "Q4_K_M" and gguf.name.endswith("Q4_K_M.gguf")
    on_disk = next((root / ".ci-runner" / "runs" / run.run_id).rglob(gguf.name))
    assert gguf.bytes == on_disk.stat().st_size
    report = ledger_path.with_name(ledger_path.name.replace(".ledger.json", ".md")).read_text()
    assert "## Exports" in report and f"| `{gguf.name}` | Q4_K_M |" in report
