"""MLflow as the second tracker: the experiment file, the run config, train.py logging to a
real local MLflow store (SQLite, in a temp dir), MLflow's client reading it back, the run
id reaching the ledger through the job's summary, and the report's link to the run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from ci_runner.core.hub import mlflow_run_url
from ci_runner.core.jobs import JobState, JobStatus
from ci_runner.errors import SpecError
from ci_runner.job_scripts.protocol import TrainSummary
from ci_runner.ledger.advance import apply_job_status
from ci_runner.ledger.model import Attempt, Run, RunStatus
from ci_runner.plan.resolve import tracking_for
from ci_runner.runconfig import LOCAL_MLFLOW_URI, Tracking
from ci_runner.spec.load import load_experiment
from ci_runner.spec.model import Experiment
from tests.conftest import ROOT, make_project

BASE = {
    "name": "mlf",
    "base_model": "Qwen/Qwen3-0.6B",
    "method": "sft",
    "dataset": "trl-lib/Capybara",
    "output": {"hub_model_id": "alice/mlf"},
}


def load(tmp_path: Path, **fields) -> Experiment:
    path = tmp_path / "experiments" / "mlf.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump({**BASE, **fields}))
    return load_experiment(path, root=tmp_path)


# --- the experiment file and the run config ----------------------------------------------


def test_existing_run_ids_do_not_change():
    """The new tracking fields default away (spec_hash drops defaults): same ids as before."""
    ids = {}
    for name in ("qwen3-codeforces-sft", "qwen3-gsm8k-grpo", "tiny-sft", "tiny-dpo", "tiny-grpo"):
        data = yaml.safe_load((ROOT / "experiments" / f"{name}.yaml").read_text())
        ids[name] = Experiment.model_validate(data).run_id
    assert ids == {
        "qwen3-codeforces-sft": "qwen3-codeforces-sft-c7e7b6d7",
        "qwen3-gsm8k-grpo": "qwen3-gsm8k-grpo-f78cbe28",
        "tiny-sft": "tiny-sft-1b7751eb",
        "tiny-dpo": "tiny-dpo-90401732",
        "tiny-grpo": "tiny-grpo-c466491e",
    }
    plain = Experiment.model_validate(BASE)
    explicit = Experiment.model_validate({**BASE, "tracking": {"backend": "trackio"}})
    assert plain.spec_hash == explicit.spec_hash
    mlflow = Experiment.model_validate({**BASE, "tracking": {"backend": "mlflow"}})
    assert mlflow.spec_hash != plain.spec_hash  # a different tracker is a different run


def test_mlflow_resolves_to_its_experiment_and_store(tmp_path):
    local = load(tmp_path, backend="local", tracking={"backend": "mlflow"})
    tracking = tracking_for(local, "mlf-1")
    assert (tracking.backend, tracking.project, tracking.uri) == ("mlflow", "mlf", LOCAL_MLFLOW_URI)
    named = load(
        tmp_path,
        backend="hf-jobs",
        tracking={"backend": "mlflow", "uri": "https://mlflow.example.com", "experiment": "team"},
    )
    tracking = tracking_for(named, "mlf-1")
    assert (tracking.project, tracking.uri) == ("team", "https://mlflow.example.com")
    databricks = load(
        tmp_path, backend="hf-jobs", tracking={"backend": "mlflow", "uri": "databricks"}
    )
    assert tracking_for(databricks, "mlf-1").uri == "databricks"
    assert tracking_for(load(tmp_path), "mlf-1").backend == "trackio"


@pytest.mark.parametrize(
    ("tracking", "backend", "field", "words"),
    [
        ({"backend": "mlflow", "space": "alice/trackio"}, "local", "tracking.space", "trackio"),
        ({"uri": "sqlite:///m.db"}, "local", "tracking.uri", "mlflow"),
        ({"backend": "mlflow"}, "hf-jobs", "tracking.backend", "tracking server"),
        ({"backend": "mlflow", "uri": "sqlite:///m.db"}, "hf-jobs", "tracking.uri", "cannot"),
        ({"backend": "mlflow", "uri": "./mlruns"}, "local", "tracking.uri", "sqlite:///"),
        ({"backend": "mlflow", "uri": "file:///tmp/mlruns"}, "local", "tracking.uri", "sqlite:///"),
        (
            {"backend": "mlflow", "uri": "https://bob:pw@mlflow.example.com"},
            "hf-jobs",
            "tracking.uri",
            "MLFLOW_TRACKING_PASSWORD",
        ),
    ],
)
def test_tracking_settings_are_checked_with_a_location(tmp_path, tracking, backend, field, words):
    with pytest.raises(SpecError) as caught:
        load(tmp_path, backend=backend, tracking=tracking)
    (issue,) = [i for i in caught.value.issues if i.field == field]
    assert issue.line is not None and words in f"{issue.message} {issue.hint}"
    if "bob:pw" in str(tracking.get("uri")):
        assert "bob:pw" not in str(caught.value)  # the credentials are not echoed back


# --- the run id: job summary -> ledger -> report ------------------------------------------


def mlflow_run(uri: str = LOCAL_MLFLOW_URI) -> Run:
    return Run(
        run_id="mlf-1",
        experiment="mlf",
        title="mlf-1",
        method="sft",
        spec_hash="abc",
        created_at="2026-11-27T10:00:00Z",
        status=RunStatus.RUNNING,
        backend="local",
        hardware="local",
        base_model="m",
        dataset="d",
        dataset_split="train",
        output_dir="out",
        tracking_project="mlf",
        tracking_run="mlf-1",
        tracking_backend="mlflow",
        tracking_uri=uri,
        attempts=[Attempt(number=1, backend="local", job_id="j1", submitted_at="t")],
    )


@pytest.mark.parametrize(
    ("uri", "url"),
    [
        (LOCAL_MLFLOW_URI, "http://127.0.0.1:5000/#/experiments/7/runs/r9"),
        ("https://mlflow.example.com/", "https://mlflow.example.com/#/experiments/7/runs/r9"),
        ("databricks", None),
    ],
)
def test_the_summary_names_the_mlflow_run_and_the_ledger_links_it(uri, url):
    summary = TrainSummary.from_dict(
        {
            "status": "completed",
            "steps": 2,
            "tracking": {"backend": "mlflow", "run_id": "r9", "experiment_id": "7", "uri": uri},
        }
    )
    status = JobStatus("j1", JobState.COMPLETED, exit_code=0, finished_at="t2")
    run = apply_job_status(mlflow_run(uri), status, progress=None, summary=summary)
    assert (run.tracking_run_id, run.tracking_url) == ("r9", url)
    assert mlflow_run_url(uri, "7", "r9") == url
    dumped = run.model_dump(mode="json")
    assert dumped["tracking_backend"] == "mlflow" and dumped["tracking_run_id"] == "r9"


def test_trackio_runs_keep_their_ledger_json():
    run = mlflow_run().model_copy(
        update={"tracking_backend": None, "tracking_uri": None, "tracking_run_id": None}
    )
    assert not {"tracking_backend", "tracking_uri", "tracking_run_id"} & set(run.model_dump())


# --- the HF Jobs side: the job gets the client and the credentials ------------------------


@pytest.mark.usefixtures("loopback_online")
def test_an_hf_job_logging_to_mlflow_installs_the_client_and_gets_its_token(tmp_path, monkeypatch):
    from ci_runner.backend.hf_jobs import CONFIG_ENV
    from ci_runner.flow.submit import submit as submit_file
    from ci_runner.paths import Project
    from tests.dataset_viewer_server import FakeDatasetViewer
    from tests.hf_jobs_server import FakeHFJobs
    from tests.test_hf_jobs_backend import CAPYBARA, NS, TOKEN, experiment_text, make_runner

    mlflow_token = "mlflow-secret-token-0123456789"
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", mlflow_token)
    project = Project(tmp_path)
    (tmp_path / "experiments").mkdir()
    text = experiment_text("qwen-mlflow").replace(
        "tracking:\n  space: alice/trackio\n",
        "tracking:\n  backend: mlflow\n  uri: https://mlflow.example.com\n",
    )
    spec = tmp_path / "experiments" / "qwen-mlflow.yaml"
    spec.write_text(text)
    with FakeHFJobs(namespace=NS, token=TOKEN) as hf, FakeDatasetViewer() as viewer:
        viewer.add_dataset("trl-lib/Capybara", {"default": {"train": CAPYBARA}})
        monkeypatch.setenv("HF_ENDPOINT", hf.url)
        monkeypatch.setenv("HF_DATASETS_SERVER", viewer.url)
        submit_file(make_runner(project, hf), spec)
        (create,) = hf.requests_to("POST", rf"^/api/jobs/{NS}$")
    body = create.json
    assert "uv run --with mlflow-skinny==3.17.2 " in body["command"][2]
    assert body["secrets"] == {"HF_TOKEN": TOKEN, "MLFLOW_TRACKING_TOKEN": mlflow_token}
    config = json.loads(body["environment"][CONFIG_ENV])
    assert config["tracking"]["backend"] == "mlflow"
    assert config["tracking"]["uri"] == "https://mlflow.example.com"
    assert mlflow_token not in json.dumps(body["environment"])
    (ledger,) = project.ledger_paths()
    (run,) = json.loads(ledger.read_text())["runs"]
    assert (run["tracking_backend"], run["tracking_uri"]) == (
        "mlflow",
        "https://mlflow.example.com",
    )
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert mlflow_token.encode() not in path.read_bytes(), path


# --- for real: train.py -> a SQLite MLflow store -> MLflow's client ------------------------


@pytest.mark.training
def test_tiny_sft_logs_to_a_local_mlflow_store_read_back_by_mlflows_client(
    tiny_fixtures, job_env, tmp_path
):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from ci_runner.track.mlflow_progress import read_progress
    from tests.test_train_script import make_config, run_train

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    config = make_config(
        tmp_path,
        tiny_fixtures.model,
        tiny_fixtures.sft_data,
        "sft",
        hyperparameters={"max_steps": 2},
        run_name="mlf-tiny-1",
    )
    tracking = Tracking(
        project="ci-runner-mlflow", run_name="mlf-tiny-1", backend="mlflow", uri=uri
    )
    config = config.model_copy(update={"tracking": tracking})
    result = run_train(config, job_env, tmp_path)
    assert result.returncode == 0, result.output[-6000:]
    summary = result.summary
    assert summary["status"] == "completed" and summary["steps"] == 2
    tracked = summary["tracking"]
    assert tracked["backend"] == "mlflow" and tracked["uri"] == uri
    assert not (Path(job_env["TRACKIO_DIR"]) / "ci-runner-tests.db").exists()

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("ci-runner-mlflow")
    assert experiment.experiment_id == tracked["experiment_id"]
    run = client.get_run(tracked["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "mlf-tiny-1"
    assert run.data.tags["ci-runner.run"] == "mlf-tiny-1"
    assert run.data.tags["ci-runner.experiment"] == "tiny"
    assert run.data.params["max_steps"] == "2"
    history = client.get_metric_history(tracked["run_id"], "loss")
    assert [(m.step, m.value) for m in history] == [
        (step, pytest.approx(loss)) for step, loss in summary["loss_history"]
    ]

    progress = read_progress("ci-runner-mlflow", ["mlf-tiny-1", "never-ran"], tracking_uri=uri)
    assert progress.fresh and progress.source == "mlflow" and set(progress.runs) == {"mlf-tiny-1"}
    assert progress.requests == 2  # the experiment's id, then one search for all its runs
    (latest,) = progress.runs.values()
    assert (latest.step, latest.max_steps) == (2, 2)
    assert latest.loss == pytest.approx(summary["final_loss"])
    assert latest.loss_curve == [(2, pytest.approx(summary["final_loss"]))]
    assert latest.eta_s == 0.0 and latest.updated_at is not None
    again = read_progress("ci-runner-mlflow", ["mlf-tiny-1"], tracking_uri=uri)
    assert again.requests == 1 and again.runs["mlf-tiny-1"].step == 2  # the id is kept


def test_reading_a_store_not_created_yet_creates_nothing(tmp_path):
    from ci_runner.track.mlflow_progress import read_progress

    uri = f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}"
    progress = read_progress("x", ["r"], tracking_uri=uri)
    assert progress.fresh and progress.runs == {} and progress.requests == 0
    assert not (tmp_path / "none").exists()


def test_an_unreachable_tracking_server_is_reported_not_raised():
    pytest.importorskip("mlflow")
    from ci_runner.track.mlflow_progress import read_progress

    started = time.monotonic()
    progress = read_progress("x", ["r"], tracking_uri="http://127.0.0.1:9", timeout_s=2)
    assert progress.runs is None and "could not read MLflow" in progress.reason
    assert time.monotonic() - started < 30  # no minutes of retries inside a poll


@pytest.mark.training
def test_a_local_mlflow_run_reaches_the_ledger_and_the_report_links_it(tiny_fixtures, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from ci_runner.flow.submit import submit as submit_file
    from ci_runner.flow.workspace import Workspace
    from ci_runner.ledger.store import load_ledger
    from ci_runner.paths import Project
    from ci_runner.track.mlflow_progress import read_progress
    from tests.test_runner import wait_until_done, write_experiment

    root = make_project(tmp_path, tiny_fixtures.model.parent)
    spec = write_experiment(root, "tiny-mlflow", extra="tracking:\n  backend: mlflow\n")
    ws = Workspace(Project(root))
    outcome = submit_file(ws, spec)
    run = wait_until_done(ws, outcome.run_id)
    assert run.status == RunStatus.COMPLETED, run.error

    uri = f"sqlite:///{root / '.ci-runner' / 'mlflow.db'}"  # the default local store
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tiny-mlflow")
    (found,) = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`ci-runner.run` = '{run.run_id}'"
    )
    losses = client.get_metric_history(found.info.run_id, "loss")
    assert [m.step for m in losses] == [1, 2]
    assert run.tracking_run_id == found.info.run_id
    assert run.tracking_uri == LOCAL_MLFLOW_URI
    link = (
        f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs/{run.tracking_run_id}"
    )
    assert run.tracking_url == link

    (ledger_path,) = Project(root).ledger_paths()
    report = Path(load_ledger(ledger_path).report_path)
    body = (root / report if not report.is_absolute() else report).read_text()
    assert "## MLflow Logs" in body and "## Trackio Logs" not in body
    assert f"[MLflow run {run.tracking_run_id}]({link})" in body
    assert f"mlflow ui --backend-store-uri {LOCAL_MLFLOW_URI}" in body

    progress = read_progress("tiny-mlflow", [run.run_id], tracking_uri=LOCAL_MLFLOW_URI, root=root)
    assert progress.runs[run.run_id].step == 2
