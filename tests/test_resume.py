"""Never lose a run: resume after a kill, timeout or preemption; honest exit codes."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ci_runner.backend.hf_jobs import CONFIG_ENV, HfJobsBackend, RetryPolicy
from ci_runner.cli import main
from ci_runner.errors import ExitCode
from ci_runner.flow.poll import poll as poll_once
from ci_runner.flow.submit import submit as submit_file
from ci_runner.flow.workspace import Workspace
from ci_runner.ledger.model import RunStatus
from ci_runner.ledger.repository import find_run
from ci_runner.paths import Project
from tests.conftest import make_project
from tests.dataset_viewer_server import FakeDatasetViewer
from tests.hf_jobs_server import FakeHFJobs

NS = "alice"
TOKEN = "hf_resume_token_0001"


def wait_for(predicate, timeout: float = 120, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def training_pid(job_dir: Path) -> int:
    """The job script's process: the supervisor's only child."""
    supervisor = int((job_dir / "pid").read_text())
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return int(children[0])


@pytest.mark.training
def test_killed_local_run_resumes_from_its_checkpoint(tiny_fixtures, tmp_path):
    root = make_project(tmp_path, tiny_fixtures.model.parent)
    spec = root / "experiments" / "resumable.yaml"
    spec.write_text(
        "name: resumable\nbase_model: ./fixtures/tiny-llama\nmethod: sft\n"
        "dataset: {path: ./fixtures/data/tiny-chat.jsonl, max_samples: 32}\n"
        "hyperparameters: {max_steps: 120, per_device_train_batch_size: 2, max_length: 64,"
        " logging_steps: 1, save_steps: 5, save_total_limit: 2}\nlora: off\n"
    )
    project = Project(root)
    runner = Workspace(project)
    outcome = submit_file(runner, spec)
    job_dir = project.jobs_dir / outcome.job_id
    output = root / ".ci-runner" / "runs" / outcome.run_id / "output"
    wait_for(lambda: list(output.glob("checkpoint-*/trainer_state.json")), what="a checkpoint")
    os.kill(training_pid(job_dir), signal.SIGKILL)  # preempted mid-run

    def finished():
        poll_once(runner)
        run = find_run(runner.project, outcome.run_id)[1]
        return run if not run.active else None

    run = wait_for(finished, timeout=300, what="the resumed run to finish")
    assert run.status == RunStatus.COMPLETED, run.error
    first, second = run.attempts
    assert first.failure_kind == "preempted" and "SIGKILL" in first.message
    assert second.resume_from.startswith(f".ci-runner/runs/{outcome.run_id}/output/checkpoint-")
    assert run.metrics.step == run.metrics.max_steps == 120
    steps = [s for s, _ in run.metrics.loss_curve]
    assert steps == sorted(set(steps)) and steps[-1] == 120  # one curve across both attempts
    log = (project.jobs_dir / second.job_id / "log.txt").read_text()
    assert f"resuming from {second.resume_from}" in log
    report = (root / find_run(runner.project, outcome.run_id)[0].report_path).read_text()
    assert "- Attempt 1 · `ERROR`" in report and "- Attempt 2 · `COMPLETED`" in report


# --- HF Jobs, loopback ---------------------------------------------------------


@pytest.fixture
def hf(monkeypatch):
    with (
        FakeHFJobs(namespace=NS, token=TOKEN, stream_idle_close_s=0.05) as server,
        FakeDatasetViewer() as viewer,
    ):
        rows = [{"text": f"row {i}"} for i in range(10)]
        viewer.add_dataset("trl-lib/Capybara", {"default": {"train": rows}})
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_DATASETS_SERVER", viewer.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setenv("HF_JOBS_NAMESPACE", NS)
        yield server


def hf_project(tmp_path: Path, name: str, extra: str = "") -> tuple[Project, Path]:
    (tmp_path / "experiments").mkdir(exist_ok=True)
    spec = tmp_path / "experiments" / f"{name}.yaml"
    spec.write_text(
        f"name: {name}\nbase_model: Qwen/Qwen3-0.6B\nmethod: sft\ndataset: trl-lib/Capybara\n"
        f"hardware: a10g-small\ntimeout: 30m\noutput: {{hub_model_id: {NS}/{name}}}\n"
        "backend: hf-jobs\n" + extra
    )
    return Project(tmp_path), spec


def hf_runner(project: Project, hf: FakeHFJobs) -> Workspace:
    backend = HfJobsBackend(
        hf.api(TOKEN),
        namespace=NS,
        token=TOKEN,
        repo="acme",
        retry=RetryPolicy(base_delay_s=0),
        sleep=lambda s: None,
    )
    return Workspace(project, backends={"hf-jobs": backend})


def creates(hf: FakeHFJobs):
    return [r for r in hf.requests_to("POST", rf"^/api/jobs/{NS}$") if r.status == 200]


def fail(hf: FakeHFJobs, job_id: str, message: str, log: str = "") -> None:
    if log:
        hf.add_logs(job_id, [log])
    hf.set_stage(job_id, "ERROR", message=message)


@pytest.mark.usefixtures("loopback_online")
def test_timeout_is_resubmitted_from_the_pushed_checkpoint(hf, tmp_path):
    project, spec = hf_project(tmp_path, "long-run")
    runner = hf_runner(project, hf)
    first = submit_file(runner, spec)
    fail(hf, first.job_id, "Job timeout: exceeded the 1800s limit")
    poll_once(runner)
    assert len(creates(hf)) == 2
    body = creates(hf)[1].json
    assert (
        json.loads(body["environment"][CONFIG_ENV])["resume_from_checkpoint"] == "last-checkpoint"
    )
    assert body["labels"]["ci-runner.attempt"] == "2"
    run = find_run(runner.project, first.run_id)[1]
    assert [a.failure_kind for a in run.attempts] == ["timeout", None]
    assert run.status in (RunStatus.QUEUED, RunStatus.RUNNING)
    assert run.attempts[0].cost_usd is not None  # a10g-small's price × the attempt's time
    poll_once(runner)  # polling again starts nothing new
    assert len(creates(hf)) == 2


@pytest.mark.usefixtures("loopback_online")
def test_oom_is_not_resubmitted(hf, tmp_path):
    project, spec = hf_project(tmp_path, "too-big")
    runner = hf_runner(project, hf)
    first = submit_file(runner, spec)
    summary = {"status": "failed", "error_type": "OutOfMemoryError", "error": "CUDA out of memory"}
    fail(hf, first.job_id, "Job failed", "CI_RUNNER_SUMMARY " + json.dumps(summary))
    poll_once(runner)
    run = find_run(runner.project, first.run_id)[1]
    assert run.status == RunStatus.FAILED and len(creates(hf)) == 1
    assert run.attempts[0].failure_kind == "oom"
    assert "per_device_train_batch_size" in run.error


@pytest.mark.usefixtures("loopback_online")
def test_max_attempts_is_respected(hf, tmp_path):
    project, spec = hf_project(tmp_path, "flaky", "retry: {max_attempts: 2, on: [preempted]}\n")
    runner = hf_runner(project, hf)
    submit_file(runner, spec)
    for _ in range(3):
        job_id = json.loads(creates(hf)[-1].response_body)["id"]
        fail(hf, job_id, "The job was preempted (spot instance reclaimed)")
        poll_once(runner)
    run = find_run(runner.project, "flaky")[1]
    assert len(creates(hf)) == 2
    assert run.status == RunStatus.FAILED
    assert [a.failure_kind for a in run.attempts] == ["preempted", "preempted"]


@pytest.mark.usefixtures("loopback_online")
@pytest.mark.parametrize(
    ("stage", "message", "code"),
    [
        ("COMPLETED", None, ExitCode.OK),
        ("ERROR", "Job failed with exit code 1", ExitCode.RUN_FAILED),
        ("CANCELED", None, ExitCode.RUN_CANCELED),
        ("RUNNING", None, ExitCode.WAIT_TIMEOUT),
    ],
)
def test_wait_exit_codes(hf, tmp_path, stage, message, code):
    project, spec = hf_project(tmp_path, "waited", "retry: {max_attempts: 1}\n")
    cli = CliRunner()
    root = ["--root", str(project.root)]
    submitted = cli.invoke(main, [*root, "submit", "--json", str(spec)])
    assert submitted.exit_code == 0, submitted.output
    job_id = json.loads(submitted.stdout)["job_id"]
    if stage == "COMPLETED":
        hf.add_logs(job_id, ['CI_RUNNER_SUMMARY {"status": "completed", "steps": 1}'])
    hf.set_stage(job_id, stage, message=message)
    result = cli.invoke(
        main, [*root, "wait", "waited", "--timeout", "0.3", "--interval", "0.1", "--json"]
    )
    assert result.exit_code == code, result.output
    assert json.loads(result.stdout)["exit_code"] == code
