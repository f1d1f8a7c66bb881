"""The Ray backend against a real two-node Ray cluster on this host (``tests/ray_cluster``).

The runner speaks only HTTP to the cluster's dashboard (the Jobs API); the cluster runs
``ray_launch.py``, which places one rank per node (STRICT_SPREAD) and starts
``accelerate launch --machine_rank i`` on each: the tiny SFT trains over gloo across the
two nodes. Each test asserts what the cluster itself reports (job status, node ids, the
processes left on the host), not what our code says it did.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from ci_runner.backend import ray_jobs
from ci_runner.errors import ExitCode
from ci_runner.ledger.model import RunStatus
from ci_runner.ledger.repository import find_run
from ci_runner.paths import Project
from tests.conftest import cli, make_project

pytest.importorskip("ray", reason="the ray extra starts the test cluster")
pytestmark = pytest.mark.training


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory, tiny_fixtures):
    """Two Ray nodes on this host, with their own ports and temp dir; stopped by PID."""
    from tests.ray_cluster import start_cluster

    os.environ.setdefault("TRACKIO_DIR", str(tmp_path_factory.mktemp("ray-trackio")))
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cluster = start_cluster()
    yield cluster
    cluster.stop()


@pytest.fixture
def ray_project(ray_cluster, tiny_fixtures, tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", ray_cluster.address)
    monkeypatch.setenv("RAY_AUTH_TOKEN", ray_cluster.token)
    return make_project(tmp_path, tiny_fixtures.model.parent), tiny_fixtures


def write_ray_experiment(
    root: Path, fixtures, name: str, steps: int, extra: str = "", nodes: int = 2
) -> Path:
    """The tiny SFT on two CPU nodes: absolute paths, since both nodes share this disk."""
    path = root / "experiments" / f"{name}.yaml"
    path.write_text(
        f"name: {name}\n"
        f"base_model: {fixtures.model}\n"
        "method: sft\n"
        f"dataset:\n  path: {fixtures.model.parent / 'data' / 'tiny-chat.jsonl'}\n"
        "  max_samples: 32\n"
        f"hyperparameters:\n  max_steps: {steps}\n  per_device_train_batch_size: 2\n"
        "  logging_steps: 1\n  max_length: 64\n  save_steps: 1000\n"
        "lora: off\n"
        "backend: ray\n"
        f"nodes: {nodes}\n"
        # The test nodes run this venv, which has the training stack; Ray cannot clone a
        # virtualenv from inside a venv, so `pinned` (pip) is checked on the request only.
        "ray:\n  environment: cluster\n" + extra
    )
    return path


def backend(root: Path) -> ray_jobs.RayJobsBackend:
    return ray_jobs.from_environment(root)


def ledger_run(root: Path, run_id_prefix: str):
    project = Project(root)
    (path,) = project.ledger_paths()
    ledger = json.loads(path.read_text())
    (run,) = [r for r in ledger["runs"] if r["run_id"].startswith(run_id_prefix)]
    return find_run(project, run["run_id"])[1]


def test_two_node_sft_completes_with_summary_metrics_and_report(ray_project, ray_cluster):
    root, fixtures = ray_project
    write_ray_experiment(root, fixtures, "two-nodes", steps=4)
    result = cli(root, "run", "experiments/two-nodes.yaml", "--interval", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    run = ledger_run(root, "two-nodes")
    assert run.status == RunStatus.COMPLETED
    assert run.hardware == "ray-2x0"
    assert run.metrics is not None and run.metrics.final_loss is not None
    job_id = run.last_attempt.job_id
    info = backend(root)._job(job_id)
    assert info["status"] == "SUCCEEDED"
    assert info["metadata"]["ci-runner.run"] == run.run_id
    assert info["runtime_env"]["working_dir"].startswith("gcs://_ray_pkg_")
    # Two ranks, on the cluster's two nodes: the ids are the ones the dashboard lists.
    lines = backend(root).logs(job_id)
    placed = [line for line in lines if " on node " in line and "[ci-runner] rank" in line]
    print("\n".join(placed))
    nodes = {line.split(" on node ")[1].split()[0] for line in placed}
    alive = {n["raylet"]["nodeId"] for n in ray_cluster.alive_nodes()}
    assert len(placed) == 2 and nodes == alive
    summary = [line for line in lines if line.startswith("CI_RUNNER_SUMMARY ")]
    assert len(summary) == 1, "only global rank 0 reports"
    assert json.loads(summary[0].split(" ", 1)[1])["processes"] == 2
    (report,) = [p for p in (root / "training_reports").glob("*.md") if p.name != "README.md"]
    body = report.read_text()
    assert "Completed" in body and "ray-2x0" in body
    # `logs` and `logs -f` print the lines as the script printed them: no Ray prefixes.
    for args in (("logs", "two-nodes"), ("logs", "two-nodes", "-f")):
        shown = cli(root, *args)
        assert shown.returncode == 0, shown.stderr
        assert "CI_RUNNER_SUMMARY " in shown.stdout and "pid=" not in shown.stdout
        assert "\x1b[" not in shown.stdout
    # The cluster's token went with every request and was written nowhere.
    token = ray_cluster.token
    assert token not in result.stdout + result.stderr
    assert not [p for p in root.rglob("*") if p.is_file() and token.encode() in p.read_bytes()]


def test_the_cluster_refuses_a_missing_or_wrong_token(ray_project, monkeypatch):
    root, fixtures = ray_project
    write_ray_experiment(root, fixtures, "no-token", steps=2)
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    missing = cli(root, "submit", "experiments/no-token.yaml")
    assert missing.returncode == ExitCode.BACKEND, missing.stderr
    assert "(401)" in missing.stderr and "RAY_AUTH_TOKEN" in missing.stderr
    monkeypatch.setenv("RAY_AUTH_TOKEN", "raytest_wrong_token_0042")
    wrong = cli(root, "submit", "experiments/no-token.yaml")
    assert wrong.returncode == ExitCode.BACKEND, wrong.stderr
    assert "(403)" in wrong.stderr and "raytest_wrong_token_0042" not in wrong.stderr + wrong.stdout


def wait_for(what: str, check, timeout: float = 180, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what} did not happen in {timeout}s")


def job_processes(package: str) -> list[str]:
    """Processes on this host working in the job's unpacked package (its ranks)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if package in cwd and "train.py" in cmdline:
            found.append(f"{proc.name}: {cmdline[:120]}")
    return found


def test_cancel_mid_training_leaves_no_process(ray_project):
    root, fixtures = ray_project
    write_ray_experiment(root, fixtures, "to-cancel", steps=5000)
    assert cli(root, "submit", "experiments/to-cancel.yaml").returncode == 0
    run = ledger_run(root, "to-cancel")
    job_id = run.last_attempt.job_id
    ray = backend(root)
    package = ray._job(job_id)["runtime_env"]["working_dir"].split("://")[1].removesuffix(".zip")
    wait_for(
        "training steps",
        lambda: (
            len(job_processes(package)) >= 2
            and any(
                "'loss'" in line or "loss" in line and "step" in line for line in ray.logs(job_id)
            )
        ),
    )
    print("\n".join(["running ranks:", *job_processes(package)]))
    canceled = cli(root, "cancel", "to-cancel")
    assert canceled.returncode == 0, canceled.stderr
    wait_for("STOPPED", lambda: ray._job(job_id)["status"] == "STOPPED", timeout=60)
    # The driver ends every rank's process group before it exits, and Ray reports
    # STOPPED only once the driver is gone: nothing of the job is left at that moment.
    left = job_processes(package)
    print(f"after cancel: {ray._job(job_id)['status']}, processes left: {left}")
    assert left == []
    waited = cli(root, "wait", "to-cancel", "--interval", "0.5")
    assert waited.returncode == ExitCode.RUN_CANCELED, waited.stderr
    assert ledger_run(root, "to-cancel").status == RunStatus.CANCELED


def test_broken_config_fails_with_a_diagnosis(ray_project):
    root, fixtures = ray_project
    extra = ""
    path = write_ray_experiment(root, fixtures, "wrong-column", steps=2, nodes=1)
    text = path.read_text().replace(
        "  max_samples: 32\n", "  max_samples: 32\n  columns: {messages: conversation}\n"
    )
    path.write_text(text + extra)
    result = cli(
        root, "run", "--skip-data-check", "experiments/wrong-column.yaml", "--interval", "1"
    )
    assert result.returncode == ExitCode.RUN_FAILED, result.stderr[-2000:]
    run = ledger_run(root, "wrong-column")
    assert run.status == RunStatus.FAILED
    assert ray_jobs.STATES[backend(root)._job(run.last_attempt.job_id)["status"]].value == "ERROR"
    (report,) = [p for p in (root / "training_reports").glob("*.md") if p.name != "README.md"]
    body = report.read_text()
    assert "- `Failed`" in body and "conversation" in body


def test_repeated_submit_adopts_the_existing_job(ray_project):
    root, fixtures = ray_project
    write_ray_experiment(root, fixtures, "twice", steps=5000)
    assert cli(root, "submit", "experiments/twice.yaml").returncode == 0
    job_id = ledger_run(root, "twice").last_attempt.job_id
    ray = backend(root)
    try:
        # Ray itself answers a second job with the same submission_id with 500, not 409.
        info = ray._job(job_id)
        duplicate = ray.client.post(
            "/api/jobs/",
            json={"entrypoint": "true", "submission_id": job_id, "metadata": info["metadata"]},
        )
        assert duplicate.status_code == 500
        # Forget the job in the ledger (a crash before it was recorded): submit adopts it.
        project = Project(root)
        (ledger_path,) = project.ledger_paths()
        ledger = json.loads(ledger_path.read_text())
        ledger["runs"][0]["attempts"][-1]["job_id"] = None
        ledger_path.write_text(json.dumps(ledger))
        again = cli(root, "poll")
        assert again.returncode == 0, again.stderr
        assert ledger_run(root, "twice").last_attempt.job_id == job_id
        mine = [
            j
            for j in ray._jobs()
            if (j.get("metadata") or {}).get("ci-runner.run") == ledger_run(root, "twice").run_id
        ]
        assert len(mine) == 1
        # One poll asks about every run in one request (Ray's list has no filter).
        seen: list[str] = []
        ray.client.event_hooks["request"].append(lambda r: seen.append(f"{r.method} {r.url.path}"))
        states = ray.statuses([job_id, "ci-runner-gone-0000", job_id + "-x"])
        assert seen == ["GET /api/jobs/"]
        assert states[job_id].state.value in ("SCHEDULING", "RUNNING")
        assert states["ci-runner-gone-0000"].message.startswith("lost job")
    finally:
        ray.cancel(job_id)
        wait_for("STOPPED", lambda: ray._job(job_id)["status"] == "STOPPED", timeout=60)


def test_restarted_head_loses_the_job_which_is_retried(ray_project, ray_cluster):
    root, fixtures = ray_project
    write_ray_experiment(root, fixtures, "lost", steps=5000)
    assert cli(root, "submit", "experiments/lost.yaml").returncode == 0
    first = ledger_run(root, "lost").last_attempt.job_id
    ray = backend(root)
    wait_for("RUNNING", lambda: ray._job(first)["status"] == "RUNNING")
    ray_cluster.restart_head()
    assert ray._job(first) is None  # the new head answers 404 for it
    polled = cli(root, "poll")
    assert polled.returncode == 0, polled.stderr
    run = ledger_run(root, "lost")
    print(f"attempts: {[(a.job_id, a.failure_kind, a.message) for a in run.attempts]}")
    assert len(run.attempts) == 2
    assert run.attempts[0].failure_kind == "infra"
    assert "lost job" in (run.attempts[0].message or "")
    second = run.attempts[1].job_id
    assert second and second != first
    assert ray._job(second) is not None  # resubmitted to the restarted cluster
    ray.cancel(second)
    wait_for("STOPPED", lambda: ray._job(second)["status"] == "STOPPED", timeout=60)
