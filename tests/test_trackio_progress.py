"""Progress from trackio: the local SQLite reader, the Space reader, and the loopback Space.

Data is written by trackio itself (``SQLiteStorage.bulk_log``, or a real training run),
then read back by ci-runner's reader (no trackio import) and by trackio's own client.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ci_runner.track.trackio_progress import (
    MAX_CURVE_POINTS,
    URL_ENV,
    RunProgress,
    progress_sql,
    read_local,
    read_progress,
    read_space,
    runs_from_rows,
    space_url,
)
from tests.trackio_server import KNOWN_APIS, FakeTrackioSpace, real_trackio_server

pytest.importorskip("trackio")

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


class Store:
    """A trackio store in a temp dir, written through trackio's own ``SQLiteStorage``."""

    def __init__(self, root: Path, storage) -> None:
        self.root = root
        self.storage = storage

    def log(
        self,
        project: str,
        run: str,
        logs: list[dict],
        *,
        config: dict | None = None,
        start: datetime = T0,
        every_s: float = 2.0,
    ) -> None:
        """One trackio log per dict, ``every_s`` apart, steps continuing as trackio's do."""
        stamps = [(start + timedelta(seconds=i * every_s)).isoformat() for i in range(len(logs))]
        self.storage.bulk_log(
            project, run, logs, steps=[None] * len(logs), timestamps=stamps, config=config
        )

    def trainer_run(self, project: str, run: str, losses: list[float], **kw) -> None:
        """What transformers' TrackioCallback logs: one row per Trainer log, with the step."""
        logs = [
            {
                "train/loss": loss,
                "train/learning_rate": 1e-4,
                "train/epoch": step / len(losses),
                "train/global_step": step,
            }
            for step, loss in enumerate(losses, start=1)
        ]
        self.log(project, run, logs, **kw)


@pytest.fixture
def store(tmp_path, monkeypatch) -> Store:
    from trackio import sqlite_storage

    root = tmp_path / "trackio"
    monkeypatch.setattr(sqlite_storage, "TRACKIO_DIR", root)  # fixed at trackio's import
    return Store(root, sqlite_storage.SQLiteStorage)


@pytest.fixture
def space(store, monkeypatch, loopback_online):
    """The loopback Space over the store, and the reader pointed at it."""
    with FakeTrackioSpace(store.root) as fake:
        monkeypatch.setenv(URL_ENV, fake.url)
        yield fake


# -- the local reader -------------------------------------------------------------


def test_local_reader_latest_step_loss_and_config_max_steps(store):
    store.trainer_run("proj", "run-a", [2.0, 1.5, 1.25], config={"max_steps": 10})
    store.trainer_run("proj", "run-b", [3.0, 2.5], config={"max_steps": -1})  # epochs-based
    store.trainer_run("proj", "run-other", [9.0])
    final = {"train/epoch": 1.0, "train/global_step": 3}  # the Trainer's last log: no loss
    store.log("proj", "run-a", [final], start=T0 + timedelta(seconds=10))

    read = read_local("proj", ["run-a", "run-b", "run-none"], store.root)

    assert read.fresh and read.reason is None and read.requests == 0
    assert read.location == str(store.root / "proj.db")
    assert set(read.runs) == {"run-a", "run-b"}  # not asked: other; no logs yet: none
    a, b = read.runs["run-a"], read.runs["run-b"]
    assert (a.step, a.max_steps, a.loss, a.learning_rate, a.epoch) == (3, 10, 1.25, 1e-4, 1.0)
    assert a.loss_curve == [(1, 2.0), (2, 1.5), (3, 1.25)]
    assert a.num_logs == 4
    assert a.updated_at == (T0 + timedelta(seconds=10)).isoformat()
    assert (b.step, b.max_steps, b.loss) == (2, None, 2.5)  # -1 means "not set"
    assert b.eta_s is None and b.eta_for(10) == pytest.approx(8 * 2.0)


def test_local_reader_pace_eta_nan_and_eval(store):
    losses = [4.0, 3.0, float("nan"), 2.0]
    store.trainer_run("proj", "run", losses, config={"max_steps": 12}, every_s=3.0)
    store.log(
        "proj",
        "run",
        [{"eval/loss": 2.5, "train/global_step": 4}],
        start=T0 + timedelta(seconds=9),
    )

    run = read_local("proj", ["run"], store.root).runs["run"]

    assert run.step == 4 and run.loss == 2.0  # a NaN loss is skipped, never shown
    assert run.loss_curve == [(1, 4.0), (2, 3.0), (4, 2.0)]
    assert run.updated_at == (T0 + timedelta(seconds=9)).isoformat()
    assert run.s_per_step == pytest.approx(3.0)  # steps 1 -> 4 over 9 s
    assert run.eta_s == pytest.approx(8 * 3.0)
    progress = run.to_progress()
    assert (progress.step, progress.max_steps, progress.loss, progress.eta_s) == (4, 12, 2.0, 24.0)
    assert progress.min_loss == 2.0


def test_pace_restarts_at_a_resume(store):
    """A second attempt resumes from checkpoint 2 after step 4: pace from this attempt only."""
    store.trainer_run("proj", "run", [4.0, 3.0, 2.5, 2.0], every_s=1.0)
    resumed = [{"train/loss": 2.6 - s / 10, "train/global_step": s} for s in (3, 4, 5, 6)]
    store.log("proj", "run", resumed, start=T0 + timedelta(hours=1), every_s=10.0)

    run = read_local("proj", ["run"], store.root).runs["run"]

    assert run.step == 6 and run.loss == pytest.approx(2.0)
    assert run.s_per_step == pytest.approx(10.0)  # not the hour between attempts
    assert dict(run.loss_curve)[3] == pytest.approx(2.3)  # the later log of a step wins


def test_same_timestamps_give_no_pace(store):
    """trackio stamps a flushed batch once: equal stamps must not read as infinite speed."""
    store.trainer_run("proj", "run", [3.0, 2.0, 1.0], config={"max_steps": 9}, every_s=0.0)
    run = read_local("proj", ["run"], store.root).runs["run"]
    assert run.s_per_step is None and run.eta_s is None and run.max_steps == 9


def test_long_runs_curve_is_thinned_to_200_points_with_the_last_kept(store):
    losses = [10.0 / step for step in range(1, 1001)]
    store.trainer_run("proj", "run", losses, every_s=0.5)
    store.trainer_run("proj", "short", losses[:199])

    read = read_local("proj", ["run", "short"], store.root)

    curve = read.runs["run"].loss_curve
    assert len(curve) <= MAX_CURVE_POINTS and len(curve) > 150
    assert curve[0] == (1, 10.0) and curve[-1] == (1000, 0.01)
    assert [s for s, _ in curve] == sorted(s for s, _ in curve)
    assert len(read.runs["short"].loss_curve) == 199  # short curves stay whole


def test_no_store_yet_is_fresh_and_empty(tmp_path):
    read = read_local("proj", ["run"], tmp_path / "nowhere")
    assert read.fresh and read.runs == {}
    assert read_progress("proj", [], trackio_dir=tmp_path).runs == {}


def test_a_broken_store_is_unavailable_with_a_reason(tmp_path):
    (tmp_path / "proj.db").write_bytes(b"not a database, just bytes" * 100)
    read = read_local("proj", ["run"], tmp_path)
    assert not read.fresh and read.runs is None
    assert "cannot read" in read.reason and "proj.db" in read.reason


def test_project_names_map_to_trackio_file_names(store):
    """trackio keeps only [A-Za-z0-9_-] of a project name for its file."""
    store.trainer_run("my.project v2", "run", [1.0])
    assert (store.root / "myprojectv2.db").is_file()
    assert read_local("my.project v2", ["run"], store.root).runs["run"].loss == 1.0


def test_local_read_is_read_only(store):
    store.trainer_run("proj", "run", [1.0])
    db = store.root / "proj.db"
    before = db.read_bytes()
    read_local("proj", ["run"], store.root)
    assert db.read_bytes() == before


def test_the_query_passes_trackios_own_read_only_sql_gate(store):
    """The Space runs the statement through SQLiteStorage.query_project: same rows as ours."""
    store.trainer_run("proj", "run-a", [2.0, 1.0], config={"max_steps": 4})
    store.trainer_run("proj", "it's", [3.0])  # quoting
    names = ["run-a", "it's"]

    theirs = store.storage.query_project("proj", progress_sql(names))

    ours = read_local("proj", names, store.root)
    assert theirs["row_count"] == 2
    assert {row["run_name"] for row in theirs["rows"]} == set(names)
    assert runs_from_rows(theirs["rows"]) == ours.runs


# -- the loopback Space, through trackio's own client ------------------------------


def test_fake_space_speaks_the_real_client_protocol(store, space):
    """trackio's RemoteClient (as ``trackio query project --space`` uses it) against the fake."""
    from trackio.remote_client import RemoteClient

    store.trainer_run("proj", "run-a", [2.0, 1.0])
    sql = progress_sql(["run-a"])

    client = RemoteClient(space.url)
    result = client.predict("proj", sql, api_name="/query_project")

    assert [r.method + " " + r.path for r in space.requests] == [
        "GET /version",
        "POST /api/query_project",
    ]
    assert space.requests[1].json == {"args": ["proj", sql], "kwargs": {}}
    assert result == store.storage.query_project("proj", sql)  # what the real server returns
    assert client.predict(api_name="/get_all_projects") == ["proj"]
    import httpx

    with pytest.raises(httpx.HTTPStatusError) as failed:  # trackio's client raises on 5xx
        client.predict("nope", sql, api_name="/query_project")
    assert failed.value.response.status_code == 500
    assert failed.value.response.json() == {"error": "Project 'nope' not found."}
    with pytest.raises(RuntimeError, match="does not support '/no_such_api'"):
        client.predict(api_name="/no_such_api")


def test_fake_space_knows_trackios_api_names():
    from trackio.server import _api_registry

    assert set(_api_registry()) == KNOWN_APIS


def test_trackio_cli_query_against_the_fake(store, space):
    """The trackio CLI, unchanged, reads the fake Space."""
    store.trainer_run("proj", "run-a", [2.0, 1.0])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "trackio.cli",
            "query",
            "project",
            "--space",
            space.url,
            "--project",
            "proj",
            "--sql",
            "SELECT run_name, COUNT(*) AS n FROM metrics GROUP BY run_name",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["rows"] == [{"run_name": "run-a", "n": 2}]


def test_fake_and_real_trackio_server_answer_alike(store, space, monkeypatch):
    """Contract: the same request gets the same answer from trackio's own server."""
    pytest.importorskip("uvicorn")
    store.trainer_run("proj", "run-a", [2.0, 1.5, 1.0], config={"max_steps": 6})
    store.trainer_run("proj", "run-b", [3.0, float("nan")])
    names = ["run-a", "run-b", "missing"]

    fake_read = read_space("proj", names, "alice/space")
    with real_trackio_server(store.root) as url:
        monkeypatch.setenv(URL_ENV, url)
        real_read = read_space("proj", names, "alice/space", timeout_s=30)
        import httpx

        bodies = [
            httpx.post(f"{base}/api/query_project", json=body, timeout=30)
            for base in (space.url, url)
            for body in (
                {"args": ["proj", progress_sql(names)], "kwargs": {}},
                {"args": ["nope", "SELECT 1"], "kwargs": {}},
                {"args": ["proj"], "kwargs": {}},
                {"args": ["proj", "DELETE FROM metrics"], "kwargs": {}},
            )
        ]
        version = httpx.get(f"{url}/version").json()

    assert fake_read.fresh and real_read.fresh
    assert fake_read.runs == real_read.runs and set(real_read.runs) == {"run-a", "run-b"}
    fake, real = bodies[:4], bodies[4:]
    assert [r.status_code for r in fake] == [r.status_code for r in real] == [200, 500, 400, 500]
    assert [r.json() for r in fake] == [r.json() for r in real]
    assert version == space.version_payload()


# -- the Space reader -------------------------------------------------------------


def test_space_reader_matches_local_in_one_request(store, space):
    store.trainer_run("proj", "run-a", [2.0, 1.0], config={"max_steps": 4})
    store.trainer_run("proj", "run-b", [5.0])

    read = read_progress("proj", ["run-a", "run-b"], space="alice/trackio", token="hf_secret")

    assert read.fresh and read.source == "space" and read.requests == 1
    assert read.location == space.url + "/"
    assert read.runs == read_local("proj", ["run-a", "run-b"], store.root).runs
    (request,) = space.requests
    assert (request.method, request.path) == ("POST", "/api/query_project")
    assert request.json == {"args": ["proj", progress_sql(["run-a", "run-b"])], "kwargs": {}}
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers  # the token goes to *.hf.space only


def test_fifty_runs_cost_exactly_one_request(store, space):
    names = [f"exp-{i:02d}" for i in range(50)]
    for i, name in enumerate(names):
        store.trainer_run("proj", name, [5.0, 4.0, 3.0 - i / 100], config={"max_steps": 30})

    read = read_space("proj", names, "alice/trackio")

    assert len(space.requests) == 1
    assert read.requests == 1 and len(read.runs) == 50
    assert all(run.step == 3 and run.max_steps == 30 for run in read.runs.values())
    assert read.runs["exp-49"].loss == pytest.approx(2.51)


def test_unknown_project_on_the_space_is_fresh_and_empty(space):
    read = read_space("never-logged", ["run"], "alice/trackio")
    assert read.fresh and read.runs == {} and read.requests == 1


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (lambda s: s.fail_next("/api/", 500), "HTTP 500: Injected 500"),
        (lambda s: s.fail_next("/api/", 503, body={"error": "busy"}), "HTTP 503: busy"),
        (lambda s: s.fail_next("/api/", 502, body="Bad Gateway"), "HTTP 502: Bad Gateway"),
        (lambda s: s.fail_next("/api/", 404, body=b"Not Found"), "no trackio HTTP API"),
        (lambda s: s.fail_next("/api/", 502, body="upstream\n  reset"), "502: upstream reset"),
        (
            lambda s: s.fail_next(
                "/api/", 503, body=b"<html>Paused</html>", content_type="text/html"
            ),
            "HTTP 503: an HTML page",
        ),
        (lambda s: s.delay_next("/api/", 3.0), "did not answer within 0.5s"),
        (
            lambda s: s.truncate_next("/api/"),
            "could not read the trackio Space (RemoteProtocolError)",
        ),
        (lambda s: s.html_next("/api/"), "sent no JSON (text/html)"),
        (lambda s: s.fail_next("/api/", 200, body={"data": None}), "answer has no rows"),
    ],
)
def test_space_faults_are_unavailable_with_a_reason(store, space, fault, reason):
    store.trainer_run("proj", "run", [1.0])
    fault(space)

    read = read_space("proj", ["run"], "alice/trackio", timeout_s=0.5)

    assert not read.fresh and read.runs is None
    assert reason in read.reason
    assert read.requests == 1 and len(space.requests) == 1  # no retry: the next poll retries
    assert read_space("proj", ["run"], "alice/trackio").fresh  # and it recovers


def test_unreachable_space(monkeypatch, loopback_online):
    monkeypatch.setenv(URL_ENV, "http://127.0.0.1:9")  # discard port: connection refused
    read = read_space("proj", ["run"], "alice/trackio", timeout_s=2)
    assert read.runs is None and "could not read the trackio Space (ConnectError)" in read.reason


def test_offline_mode_asks_no_space(monkeypatch):
    monkeypatch.setenv(URL_ENV, "http://127.0.0.1:9")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    read = read_space("proj", ["run"], "alice/trackio")
    assert read.runs is None and read.requests == 0 and "HF_HUB_OFFLINE" in read.reason


def test_space_urls_as_trackio_derives_them(monkeypatch):
    from trackio.remote_client import _space_id_to_url

    monkeypatch.delenv(URL_ENV, raising=False)
    for space_id in ("alice/trackio", "Big_Org/my.space", "a-b/C_d.e"):
        assert space_url(space_id) == _space_id_to_url(space_id)
    assert space_url("https://example.org/trackio") == "https://example.org/trackio/"
    read = read_space("proj", ["run"], "no-owner")
    assert read.runs is None and "<owner>/<space>" in read.reason


def test_hf_token_goes_only_to_hf_spaces():
    from ci_runner.track.trackio_progress import _request_headers

    on_hf = _request_headers("https://alice-trackio.hf.space/", "hf_secret")
    assert on_hf["authorization"] == "Bearer hf_secret"
    elsewhere = _request_headers("http://127.0.0.1:8000/", "hf_secret")
    assert "authorization" not in {k.lower() for k in elsewhere}


def test_run_progress_defaults():
    run = RunProgress("r", step=None, max_steps=None, loss=None, eta_s=None, updated_at=None)
    assert run.eta_for(10) is None and run.to_progress().loss_curve == []


def test_reader_imports_stay_light():
    code = (
        "import sys, ci_runner.track, ci_runner.track.trackio_progress; "
        "print(sorted(m for m in ('trackio', 'pandas', 'torch', 'gradio', 'gradio_client', "
        "'numpy', 'huggingface_hub', 'httpx2') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


# -- after a real training run ------------------------------------------------------


@pytest.mark.training
def test_progress_of_real_training_runs(
    tiny_fixtures, job_env, tmp_path, monkeypatch, loopback_online
):
    """Two tiny SFT runs log to one project; both readers give each run's last step and loss."""
    from tests.test_train_script import PROJECT, make_config, run_train

    summaries = {}
    for name, steps in (("progress-a", 3), ("progress-b", 4)):
        (tmp_path / name).mkdir()
        config = make_config(
            tmp_path / name,
            tiny_fixtures.model,
            tiny_fixtures.sft_data,
            "sft",
            run_name=name,
            hyperparameters={"max_steps": steps},
        )
        result = run_train(config, job_env, tmp_path / name)
        assert result.returncode == 0, result.output[-4000:]
        summaries[name] = result.summary

    trackio_dir = Path(job_env["TRACKIO_DIR"])
    read = read_local(PROJECT, list(summaries), trackio_dir)

    assert read.fresh and set(read.runs) == set(summaries)
    for name, summary in summaries.items():
        run = read.runs[name]
        assert run.step == summary["steps"] == summary["max_steps"]
        assert run.max_steps == summary["max_steps"]  # TrainingArguments.max_steps, in the config
        assert run.loss == summary["final_loss"]  # the very float trackio stored, not rounded
        assert run.loss_curve == [tuple(point) for point in summary["loss_history"]]
        assert run.learning_rate is not None and run.epoch is not None
        assert run.eta_s in (None, 0.0)  # finished
        assert run.updated_at and datetime.fromisoformat(run.updated_at).tzinfo is not None

    with FakeTrackioSpace(trackio_dir) as fake:
        monkeypatch.setenv(URL_ENV, fake.url)
        remote = read_space(PROJECT, list(summaries), "alice/trackio")
    assert remote.runs == read.runs and len(fake.requests) == 1
