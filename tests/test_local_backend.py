"""The local backend with real detached processes: status, logs, cancel, timeout, loss."""

from __future__ import annotations

import os
import signal
import textwrap
import time
from pathlib import Path

import pytest

from ci_runner.backend.local import LocalBackend
from ci_runner.core.jobs import JobRequest
from ci_runner.job_scripts.protocol import parse_summary
from ci_runner.ledger.model import JobState
from ci_runner.runconfig import DatasetSource, RunConfig, Tracking

SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    config = json.load(open(sys.argv[sys.argv.index("--config") + 1]))
    behaviour = config["hyperparameters"]
    print("[step 1/2] loss=2.5 learning_rate=0.001", flush=True)
    time.sleep(behaviour.get("sleep", 0))
    print("[step 2/2] loss=2.0 learning_rate=0.0005", flush=True)
    print("CI_RUNNER_SUMMARY " + json.dumps({"status": "completed", "steps": 2}), flush=True)
    sys.exit(behaviour.get("exit", 0))
    """
)


@pytest.fixture
def backend(tmp_path) -> LocalBackend:
    return LocalBackend(tmp_path / "jobs", cwd=tmp_path)


def request(tmp_path: Path, run_id: str = "r1", timeout_s=None, **behaviour) -> JobRequest:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    config = RunConfig(
        experiment="e",
        run_id=run_id,
        method="sft",
        base_model="./m",
        dataset=DatasetSource(path="./d.jsonl"),
        hyperparameters=behaviour,
        output_dir="out",
        tracking=Tracking(project="p", run_name=run_id),
    )
    return JobRequest(script, config, {"ci-runner.run": run_id}, timeout_s=timeout_s)


def wait_for(backend: LocalBackend, job_id: str, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = backend.statuses([job_id])[job_id]
        if status.state.terminal:
            return status
        time.sleep(0.1)
    raise AssertionError(f"{job_id} still running after {timeout}s")


def test_completed_job_reports_exit_logs_and_summary(backend, tmp_path):
    handle = backend.launch(request(tmp_path))
    status = wait_for(backend, handle.job_id)
    assert status.state == JobState.COMPLETED and status.exit_code == 0
    assert status.finished_at.endswith("Z")
    lines = backend.logs(handle.job_id)
    assert "[step 2/2] loss=2.0 learning_rate=0.0005" in lines
    assert parse_summary(lines) == {"status": "completed", "steps": 2}
    assert backend.logs(handle.job_id, tail=1)[0].startswith("CI_RUNNER_SUMMARY")
    assert handle.url.endswith("log.txt") and (tmp_path / handle.url).exists()


def test_failing_job_is_error_with_exit_code(backend, tmp_path):
    handle = backend.launch(request(tmp_path, exit=3))
    status = wait_for(backend, handle.job_id)
    assert status.state == JobState.ERROR
    assert status.exit_code == 3
    assert "code 3" in status.message


def test_running_then_cancel_kills_the_process_group(backend, tmp_path):
    handle = backend.launch(request(tmp_path, sleep=60))
    time.sleep(0.5)
    assert backend.statuses([handle.job_id])[handle.job_id].state == JobState.RUNNING
    backend.cancel(handle.job_id)
    status = wait_for(backend, handle.job_id)
    assert status.state == JobState.CANCELED
    assert "[step 2/2] loss=2.0 learning_rate=0.0005" not in backend.logs(handle.job_id)
    backend.cancel(handle.job_id)  # a second cancel is a no-op


def test_timeout_stops_the_job_and_says_so(backend, tmp_path):
    handle = backend.launch(request(tmp_path, timeout_s=1, sleep=60))
    status = wait_for(backend, handle.job_id)
    assert status.state == JobState.ERROR
    assert status.message.startswith("timeout")


def test_job_whose_supervisor_died_is_reported_lost(backend, tmp_path):
    handle = backend.launch(request(tmp_path, sleep=60))
    pid = int((tmp_path / "jobs" / handle.job_id / "pid").read_text())
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while backend.statuses([handle.job_id])[handle.job_id].state == JobState.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    status = backend.statuses([handle.job_id])[handle.job_id]
    assert status.state == JobState.ERROR
    assert "gone" in status.message


def test_find_by_labels_and_bulk_status(backend, tmp_path):
    a = backend.launch(request(tmp_path, run_id="a"))
    b = backend.launch(request(tmp_path, run_id="b"))
    assert [h.job_id for h in backend.find({"ci-runner.run": "a"})] == [a.job_id]
    assert backend.find({"ci-runner.run": "zzz"}) == []
    wait_for(backend, a.job_id)
    wait_for(backend, b.job_id)
    statuses = backend.statuses([a.job_id, b.job_id, "local-missing"])
    assert statuses[a.job_id].state == statuses[b.job_id].state == JobState.COMPLETED
    assert statuses["local-missing"].state == JobState.ERROR


def test_jobs_get_sleeping_openmp_threads_unless_the_user_chose(tmp_path, monkeypatch):
    """Spinning OpenMP threads starve the thread they wait on when the CPU is shared."""
    script = tmp_path / "env.py"
    script.write_text("import os; print('policy=' + os.environ.get('OMP_WAIT_POLICY', '-'))\n")

    def policy(backend: LocalBackend) -> str:
        job = request(tmp_path)
        handle = backend.launch(JobRequest(script, job.run_config, job.labels))
        wait_for(backend, handle.job_id)
        return next(x for x in backend.logs(handle.job_id) if x.startswith("policy="))

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert policy(LocalBackend(tmp_path / "a", cwd=tmp_path)) == "policy=PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert policy(LocalBackend(tmp_path / "b", cwd=tmp_path)) == "policy=ACTIVE"
