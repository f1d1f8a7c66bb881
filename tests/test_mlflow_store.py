"""Two processes opening the same fresh MLflow store at once: without one initialiser,
both run MLflow's migrations and one fails (`table _alembic_tmp_model_versions already
exists`, `duplicate column name: step`...)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("mlflow")

ROOT = Path(__file__).resolve().parents[1]

# Each process imports MLflow, says it is ready, waits for the start line, then opens the
# store: the two opens race as closely as two processes can.
OPENER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path

    sys.path.insert(0, {scripts!r})
    from mlflow.tracking import MlflowClient
    from mlflow_store import open_store
    from ci_runner.track.mlflow_progress import read_progress

    role, uri, folder = sys.argv[1:4]
    Path(folder, role + ".ready").touch()
    while not Path(folder, "go").exists():
        time.sleep(0.001)
    if role == "reader":  # `poll` reading progress while a job creates the store; the
        # wait is long enough for a loaded machine (a stuck initialiser has its own test)
        progress = read_progress("sweep", ["sweep-run"], tracking_uri=uri, timeout_s=120)
        print(json.dumps({{"fresh": progress.fresh, "reason": progress.reason}}))
    else:  # a job, as train.py opens it before training
        open_store(uri)
        client = MlflowClient(tracking_uri=uri)
        experiment = client.create_experiment(role)
        run = client.create_run(experiment, tags={{"ci-runner.run": role}})
        client.log_metric(run.info.run_id, "loss", 1.5, step=1)
        print(json.dumps({{"run": run.info.run_id}}))
    """
).format(scripts=str(ROOT / "job_scripts"))


def race(tmp_path: Path, *roles: str) -> tuple[str, list[dict]]:
    folder = tmp_path / "race"
    folder.mkdir()
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    if "reader" in roles:  # the job's first connection has made the (empty) file
        (tmp_path / "store").mkdir()
        (tmp_path / "store" / "mlflow.db").touch()
    script = folder / "opener.py"
    script.write_text(OPENER)
    processes = [
        subprocess.Popen(
            [sys.executable, str(script), role, uri, str(folder)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for role in roles
    ]
    deadline = time.monotonic() + 120
    while not all((folder / f"{role}.ready").exists() for role in roles):
        assert time.monotonic() < deadline, "the processes never got ready"
        assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
        time.sleep(0.01)
    (folder / "go").touch()
    answers = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err[-3000:]
        answers.append(json.loads(out.strip().splitlines()[-1]))
    return uri, answers


@pytest.mark.slow
def test_two_jobs_create_one_store(tmp_path):
    uri, answers = race(tmp_path, "job-a", "job-b")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    for role, answer in zip(("job-a", "job-b"), answers, strict=True):
        experiment = client.get_experiment_by_name(role)
        assert experiment is not None
        (run,) = client.search_runs([experiment.experiment_id])
        assert run.info.run_id == answer["run"] and run.data.metrics == {"loss": 1.5}


@pytest.mark.slow
def test_a_poll_reading_while_a_job_creates_the_store(tmp_path):
    uri, (reader, job) = race(tmp_path, "reader", "job-a")
    assert reader == {"fresh": True, "reason": None}  # nothing logged yet; no error
    from ci_runner.track.mlflow_progress import read_progress

    later = read_progress("job-a", ["job-a"], tracking_uri=uri)
    assert later.fresh and later.runs is not None and later.runs["job-a"].loss == 1.5


@pytest.mark.slow
def test_a_stuck_initialiser_makes_a_read_fail_in_time_not_hang(tmp_path):
    from ci_runner.job_scripts.mlflow_store import init_lock
    from ci_runner.track.mlflow_progress import read_progress

    database = tmp_path / "mlflow.db"
    database.touch()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; "
            "from ci_runner.job_scripts.mlflow_store import init_lock\n"
            f"with init_lock(Path({str(database)!r})):\n"
            "    print('held', flush=True); time.sleep(60)",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        progress = read_progress("x", ["x-run"], tracking_uri=f"sqlite:///{database}", timeout_s=1)
        assert progress.runs is None and "creating the MLflow store" in (progress.reason or "")
    finally:
        holder.kill()
        holder.wait()
    with init_lock(database, wait_s=5):  # the kernel freed the dead holder's lock
        pass
