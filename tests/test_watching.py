"""Watching runs: progress from trackio in one read per project, logs once at a job's end,
a live `status`, `cancel` recorded at once, and `logs -f` / phase-job logs.

HF Jobs and the trackio Space are loopback servers spoken to by the real clients; the
local tests run real detached jobs.
"""

from __future__ import annotations

import json
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from ci_runner.backend.local import LocalBackend
from ci_runner.cli import main
from ci_runner.core.jobs import JobRequest
from ci_runner.flow import poll as poll_module
from ci_runner.flow.poll import poll as poll_once
from ci_runner.flow.submit import submit as submit_file
from ci_runner.ledger.repository import find_run
from ci_runner.runconfig import DatasetSource, RunConfig, Tracking
from ci_runner.track.trackio_progress import URL_ENV
from tests.conftest import HF_NAMESPACE, HF_TOKEN
from tests.test_hf_jobs_backend import make_runner, summary_line, write
from tests.trackio_server import FakeTrackioSpace

pytestmark = pytest.mark.usefixtures("loopback_online")


def logs_requests(server) -> list:
    return [r for r in server.requests if r.path.endswith("/logs")]


@pytest.fixture
def space(tmp_path, monkeypatch):
    """A loopback trackio Space; jobs' metrics written with trackio's own storage."""
    pytest.importorskip("trackio")
    from trackio import sqlite_storage

    root = tmp_path / "trackio-space"
    monkeypatch.setattr(sqlite_storage, "TRACKIO_DIR", root)
    with FakeTrackioSpace(root) as fake:
        monkeypatch.setenv(URL_ENV, fake.url)
        yield fake


def log_steps(project: str, run: str, losses: list[float]) -> None:
    from trackio import sqlite_storage

    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    logs = [{"train/loss": v, "train/global_step": i} for i, v in enumerate(losses, start=1)]
    stamps = [(start + timedelta(seconds=3 * i)).isoformat() for i in range(len(logs))]
    sqlite_storage.SQLiteStorage.bulk_log(
        project, run, logs, steps=[None] * len(logs), timestamps=stamps, config=None
    )


def test_progress_comes_from_trackio_and_logs_are_read_once_at_the_end(project, hf, space):
    ws = make_runner(project, hf)
    outcome = submit_file(ws, write(project, "watched"), check_data=False)
    hf.set_stage(outcome.job_id, "RUNNING")
    log_steps("watched", outcome.run_id, [2.5, 2.1, 1.8])
    hf.requests.clear()
    for _ in range(2):
        poll_once(ws)
    _, run = find_run(project, outcome.run_id)
    assert (run.metrics.step, run.metrics.final_loss) == (3, 1.8)
    assert run.metrics.progress_from == "trackio" and not run.metrics.stale
    assert run.metrics.eta_s == pytest.approx(97 * 3.0)  # max_steps 100, 3 s a step
    assert logs_requests(hf) == []  # a running job's log is never read
    assert len(space.requests) == 2  # one read per poll for the project
    hf.add_logs(outcome.job_id, [summary_line()])
    hf.set_stage(outcome.job_id, "COMPLETED")
    poll_once(ws)
    poll_once(ws)
    assert len(logs_requests(hf)) == 1  # read once, when the job ended
    _, run = find_run(project, outcome.run_id)
    assert run.status.value == "completed" and run.metrics.eta_s is None


def test_without_a_space_progress_comes_from_log_tails_within_a_budget(project, hf, monkeypatch):
    monkeypatch.setattr(poll_module, "LOG_BUDGET", 1)
    ws = make_runner(project, hf)
    jobs = []
    for name in ("no-space-a", "no-space-b"):
        spec = project.root / "experiments" / f"{name}.yaml"
        spec.write_text(
            write(project, name).read_text().replace("tracking:\n  space: alice/trackio\n", "")
        )
        jobs.append(submit_file(ws, spec, check_data=False))
    for outcome in jobs:
        hf.set_stage(outcome.job_id, "RUNNING")
        hf.add_logs(outcome.job_id, ["[step 7/100] loss=1.5 eta_s=93"])
    hf.requests.clear()
    poll_once(ws)
    assert len(logs_requests(hf)) == 1
    runs = [find_run(project, o.run_id)[1] for o in jobs]
    fresh = [r for r in runs if r.metrics and r.metrics.step == 7]
    assert len(fresh) == 1 and fresh[0].metrics.progress_from == "logs"
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
    monkeypatch.setenv("HF_JOBS_NAMESPACE", HF_NAMESPACE)
    result = CliRunner().invoke(main, ["--root", str(project.root), "status"])
    assert result.exit_code == 0, result.output
    assert "7/100" in result.output and "1.5000" in result.output and "1m" in result.output


@pytest.mark.slow
def test_mlflow_runs_read_progress_from_mlflow_one_search_per_experiment(project, hf, tmp_path):
    """Runs tracked by MLflow get their progress from MLflow's client, not from job logs.

    The team's tracking server is stood in for by a real SQLite store, written with
    MLflow's own client as transformers' MLflowCallback would (loss per step, the run
    tagged with its ci-runner run id)."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from ci_runner.ledger.repository import replace_run
    from ci_runner.ledger.store import save_ledger
    from ci_runner.track import mlflow_progress

    ws = make_runner(project, hf)
    tracked = "tracking:\n  backend: mlflow\n  uri: https://mlflow.example.com\n"
    runs = []
    for name in ("mlf-a", "mlf-b"):
        spec = project.root / "experiments" / f"{name}.yaml"
        spec.write_text(
            write(project, name).read_text().replace("tracking:\n  space: alice/trackio\n", tracked)
        )
        runs.append(submit_file(ws, spec, check_data=False))
    store = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    (tmp_path / "mlflow").mkdir()
    client = MlflowClient(tracking_uri=store)
    for outcome, losses in zip(runs, ([2.0, 1.6, 1.2], [2.2, 1.9]), strict=True):
        hf.set_stage(outcome.job_id, "RUNNING")
        ledger, run = find_run(project, outcome.run_id)
        assert run.tracking_backend == "mlflow"
        path = project.ledger_path(Path(ledger.report_path).stem)
        save_ledger(path, replace_run(ledger, run.model_copy(update={"tracking_uri": store})))
        experiment = client.get_experiment_by_name(run.tracking_project)
        experiment_id = (
            experiment.experiment_id
            if experiment
            else client.create_experiment(run.tracking_project)
        )
        mlflow_run = client.create_run(
            experiment_id, tags={mlflow_progress.RUN_TAG: outcome.run_id}
        )
        client.log_param(mlflow_run.info.run_id, "max_steps", "100")
        for step, loss in enumerate(losses, start=1):
            client.log_metric(mlflow_run.info.run_id, "loss", loss, step=step)
    hf.requests.clear()
    poll_once(ws)
    steps = {}
    for outcome in runs:
        _, run = find_run(project, outcome.run_id)
        assert run.metrics.progress_from == "mlflow" and not run.metrics.stale
        steps[outcome.run_id] = (run.metrics.step, run.metrics.max_steps, run.metrics.final_loss)
    assert steps == {runs[0].run_id: (3, 100, 1.2), runs[1].run_id: (2, 100, 1.9)}
    assert logs_requests(hf) == []  # progress came from MLflow, not from the job logs


# --- the local backend: status, cancel, logs -f ---------------------------------------------

SLOW = textwrap.dedent(
    """
    import sys, time
    for step in range(1, 4):
        print(f"[step {step}/3] loss={3 - step}.0", flush=True)
        time.sleep(0.3)
    print("done", flush=True)
    """
)


def test_logs_follow_stops_when_a_local_job_ends(tmp_path):
    backend = LocalBackend(tmp_path / "jobs", cwd=tmp_path)
    script = tmp_path / "slow.py"
    script.write_text(SLOW)
    config = RunConfig(
        experiment="e",
        run_id="r1",
        method="sft",
        base_model="./m",
        dataset=DatasetSource(path="./d.jsonl"),
        output_dir="out",
        tracking=Tracking(project="p", run_name="r1"),
    )
    handle = backend.launch(JobRequest(script, config, {"ci-runner.run": "r1"}))
    started = time.monotonic()
    lines = list(backend.follow(handle.job_id))
    assert [line for line in lines if line.startswith("[step")] == [
        "[step 1/3] loss=2.0",
        "[step 2/3] loss=1.0",
        "[step 3/3] loss=0.0",
    ]
    assert lines[-1] == "done" and time.monotonic() - started < 30
    assert (tmp_path / "jobs" / handle.job_id / "exit.json").exists()


@pytest.mark.training
def test_cancel_shows_at_once_and_eval_job_logs_are_reachable(tiny_fixtures, tmp_path):
    from tests.conftest import cli, make_project
    from tests.test_runner import write_experiment

    root = make_project(tmp_path, tiny_fixtures.model.parent)
    write_experiment(root, "to-cancel", steps=500)
    assert cli(root, "submit", "experiments/to-cancel.yaml").returncode == 0
    deadline = time.monotonic() + 120
    while "[step" not in (logs := cli(root, "logs", "to-cancel")).stdout:
        assert time.monotonic() < deadline, logs.stderr
        time.sleep(0.5)
    assert cli(root, "cancel", "to-cancel").returncode == 0
    status = cli(root, "status", "--json", "to-cancel")
    (ledger,) = json.loads(status.stdout)
    (run,) = ledger["runs"]
    assert run["status"] == "canceled"
    assert (run["metrics"] or {}).get("eta_s") is None
    table = cli(root, "status", "to-cancel")
    assert "Canceled" in table.stdout and "ETA" in table.stdout  # the column, empty
    reports = (root / "training_reports").glob("*.md")
    report = next(p for p in reports if p.name != "README.md").read_text()
    assert "- ETA:" not in report

    write_experiment(
        root,
        "evaluated",
        extra="evaluation:\n  benchmarks:\n"
        "    - {benchmark: gsm8k, dataset: ./fixtures/data/tiny-gsm8k, max_samples: 1}\n"
        "  models: [final]\n",
    )
    ran = cli(root, "run", "experiments/evaluated.yaml", "--interval", "0.5")
    assert ran.returncode == 0, ran.stderr
    (ledger,) = [
        led
        for led in json.loads(cli(root, "status", "--json").stdout)
        if led["experiment"] == "evaluated"
    ]
    (eval_job,) = ledger["runs"][0]["phase_jobs"]
    listed = cli(root, "logs", "evaluated")
    assert f"eval final: {eval_job['job_id']}" in listed.stderr
    shown = cli(root, "logs", eval_job["job_id"])
    assert shown.returncode == 0 and "CI_RUNNER_SUMMARY" in shown.stdout
