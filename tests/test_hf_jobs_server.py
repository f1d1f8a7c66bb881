"""Contract tests: the REAL huggingface_hub 2.x client against the loopback HF Jobs fake.

What these pin down about the installed client (read off its source, then checked here):

* Only ``list_jobs`` retries by itself (pagination goes through ``http_backoff``: 408/429/500/502/
  503/504 and timeouts/network errors, 5 retries, sleeps 1, 2, 4, 8, 8 s; a 429 ``Retry-After: N``
  sleeps N+1 s). ``run_job``, ``inspect_job``, ``cancel_job``, ``whoami`` and
  ``list_jobs_hardware`` make one plain request with no timeout: a 5xx/429 raises at once.
* ``fetch_job_logs(follow=False)`` reads with a 5 s timeout and stops silently on it; a cut stream
  raises ``httpx2.RemoteProtocolError`` after yielding the lines it got.
  ``follow=True`` re-checks the job stage after every stream end/error and stops once it is
  terminal, so a stream cut on a finished job silently loses the rest of the logs, while a cut
  on a running job reconnects and resumes without duplicates.
"""

from __future__ import annotations

import threading
import time

import httpx2
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import BadRequestError, HfHubHTTPError, JobNotFoundError

from tests.hf_jobs_server import FakeHFJobs

UV_IMAGE = "ghcr.io/astral-sh/uv:python3.12-bookworm"
NS = "alice"
SECRET = "hf_TOPSECRET_value_do_not_leak_42"


pytestmark = pytest.mark.usefixtures("loopback_online")


@pytest.fixture
def hf():
    with FakeHFJobs(namespace=NS, page_size=50) as server:
        yield server


@pytest.fixture
def api(hf) -> HfApi:
    return HfApi(endpoint=hf.url, token=hf.token)


def _job(api: HfApi, **kw):
    kw.setdefault("image", "python:3.12")
    kw.setdefault("command", ["python", "-c", "print(1)"])
    return api.run_job(namespace=NS, **kw)


def _collect(iterable, out: list):
    """Drain ``iterable`` into ``out``; return the exception that ended it, if any."""
    try:
        for item in iterable:
            out.append(item)
    except Exception as exc:
        return exc
    return None


# --------------------------------------------------------------------------- auth / hardware
def test_whoami_and_auth(hf, api):
    me = api.whoami()
    assert me["name"] == NS and me["type"] == "user"
    (req,) = hf.requests_to("GET", r"^/api/whoami-v2$")
    assert req.headers["authorization"] == f"Bearer {hf.token}"

    with pytest.raises(HfHubHTTPError) as err:
        HfApi(endpoint=hf.url, token="hf_wrong").whoami()
    assert err.value.response.status_code == 401
    assert "Invalid user token" in str(err.value)

    # token=False: no Authorization header at all -> 401 from every Jobs route.
    with pytest.raises(HfHubHTTPError) as err:
        list(HfApi(endpoint=hf.url).list_jobs(namespace=NS, token=False))
    assert err.value.response.status_code == 401
    assert "authorization" not in hf.requests[-1].headers


def test_list_jobs_hardware_parses(api):
    hardware = {hw.name: hw for hw in api.list_jobs_hardware()}
    assert {"cpu-basic", "t4-small", "a10g-small", "a100-large", "h200"} <= set(hardware)
    cpu = hardware["cpu-basic"]
    assert cpu.accelerator is None
    assert (cpu.unit_cost_micro_usd, cpu.unit_label) == (167, "minute")  # $0.01/h
    t4 = hardware["t4-small"]
    assert t4.accelerator.model == "T4" and t4.accelerator.vram == "16 GB"
    assert t4.unit_cost_usd * 60 == pytest.approx(0.40, abs=1e-3)  # $/h from $/minute


# --------------------------------------------------------------------------- run_job
def test_run_job_sends_exactly_this_and_never_echoes_secrets(hf, api):
    script = "import sys; print('train')"
    job = api.run_job(
        image=UV_IMAGE,
        command=["uv", "run", "--with", "trl", "python", "-c", script],
        env={"WANDB_MODE": "offline"},
        secrets={"HF_TOKEN": SECRET},
        flavor="a10g-small",
        timeout="90m",
        labels={"experiment": "sft-tiny", "run": "r1"},
        name="sft-tiny-r1",
        namespace=NS,
    )
    (create,) = hf.requests_to("POST", r"^/api/jobs/alice$")
    assert create.json == {
        "dockerImage": UV_IMAGE,
        "command": ["uv", "run", "--with", "trl", "python", "-c", script],
        "arguments": [],
        "environment": {"WANDB_MODE": "offline"},
        "secrets": {"HF_TOKEN": SECRET},
        "flavor": "a10g-small",
        "timeoutSeconds": 5400,  # "90m" is converted client-side
        "labels": {"experiment": "sft-tiny", "run": "r1", "name": "sft-tiny-r1"},
    }
    assert create.headers["authorization"] == f"Bearer {hf.token}"
    assert create.headers["content-type"] == "application/json"

    # The server keeps the value; the client only ever sees the name.
    assert hf.jobs[job.id]["secrets"] == {"HF_TOKEN": SECRET}
    assert job.secrets == {"HF_TOKEN": None}
    assert len(job.id) == 24 and int(job.id, 16) >= 0
    assert job.status.stage == "SCHEDULING"
    assert job.docker_image == UV_IMAGE and job.flavor == "a10g-small"
    assert job.owner.name == NS and job.url == f"{hf.url}/jobs/{NS}/{job.id}"
    assert hf.public_job(job.id)["timeout"] == 5400

    hf.set_stage(job.id, "RUNNING")
    hf.add_logs(job.id, ["step 1"])
    hf.set_stage(job.id, "COMPLETED")
    assert api.inspect_job(job_id=job.id, namespace=NS).secrets == {"HF_TOKEN": None}
    assert [j.id for j in api.list_jobs(namespace=NS)] == [job.id]
    assert list(api.fetch_job_logs(job_id=job.id, namespace=NS)) == ["step 1"]
    api.cancel_job(job_id=job.id, namespace=NS)

    assert len(hf.requests) >= 5
    for req in hf.requests:
        assert SECRET.encode() not in req.response_body, req.path


def test_run_job_adds_a_name_label_unless_given(hf, api):
    job = _job(api, image=UV_IMAGE, labels={"experiment": "x"})
    sent = hf.requests[-1].json["labels"]
    assert sent["experiment"] == "x"
    assert sent["name"].startswith("uv-python3-12-bookworm-")  # derived from image + command
    assert job.labels == sent
    # No secrets, no timeout: the keys are left out of the body, not sent empty.
    assert "secrets" not in hf.requests[-1].json and "timeoutSeconds" not in hf.requests[-1].json
    with pytest.raises(ValueError):  # both `name=` and labels["name"]: refused client-side
        _job(api, name="a", labels={"name": "b"})


def test_create_is_validated_like_the_api(hf, api):
    with pytest.raises(BadRequestError, match="label"):
        _job(api, labels={"experiment": "alice/sft:1"})  # '/' and ':' are not allowed
    with pytest.raises(BadRequestError, match="environment"):
        _job(api, env={"EPOCHS": 3})  # the client sends non-string env values unchanged
    with pytest.raises(BadRequestError, match="flavor"):
        _job(api, flavor="tpu-v5")
    assert hf.jobs == {}

    raw = httpx2.post(
        f"{hf.url}/api/jobs/{NS}",
        json={"dockerImage": "a", "spaceId": "b/c", "command": ["x"], "environment": {}},
        headers={"Authorization": f"Bearer {hf.token}"},
    )
    assert raw.status_code == 400 and "dockerImage" in raw.json()["error"]
    with pytest.raises(HfHubHTTPError) as err:
        api.run_job(image="python:3.12", command=["true"], namespace="bob")
    assert err.value.response.status_code == 403


def test_on_create_hook_can_drive_the_job(hf, api):
    def start(job):
        hf.set_stage(job["id"], "RUNNING")
        hf.add_logs(job["id"], ["booted"])

    hf.on_create(start)
    job = _job(api)
    assert job.status.stage == "RUNNING" and job.started_at is not None


# --------------------------------------------------------------------------- list_jobs
def test_list_jobs_label_filter_follows_link_pagination():
    with FakeHFJobs(namespace=NS, page_size=2) as hf:
        api = hf.api()
        wanted = []
        for i in range(10):
            exp = "a" if i % 3 else "b"  # 6 x "a", 4 x "b"
            job = _job(api, labels={"exp": exp, "team": "ml"})
            if exp == "a":
                wanted.append(job.id)

        got = list(api.list_jobs(namespace=NS, labels={"exp": "a", "team": "ml"}))
        assert [j.id for j in got] == wanted  # creation order, nothing else
        pages = hf.requests_to("GET", r"^/api/jobs/alice$")
        assert len(pages) == 3
        assert pages[0].query == {"label": ["exp=a", "team=ml"]}  # repeated `label=k=v`, AND
        # The client sends nothing but the Link URL afterwards: the filters must ride in it.
        assert pages[1].query == {"label": ["exp=a", "team=ml"], "cursor": ["2"]}
        assert pages[2].query == {"label": ["exp=a", "team=ml"], "cursor": ["4"]}
        assert "link" not in {k.lower() for k in pages[2].response_headers}

        assert list(api.list_jobs(namespace=NS, labels={"exp": "zzz"})) == []


def test_list_jobs_stage_filter(hf, api):
    a, b, c = (_job(api, labels={"k": "v"}) for _ in range(3))
    hf.set_stage(a.id, "RUNNING")
    hf.set_stage(b.id, "COMPLETED")
    hf.set_stage(c.id, "UPDATING")  # unknown stages pass through untouched

    running = list(api.list_jobs(namespace=NS, status="running"))
    assert [j.id for j in running] == [a.id]
    assert hf.requests[-1].query == {"stage": ["RUNNING"]}  # upper-cased by the client
    either = api.list_jobs(namespace=NS, status=["RUNNING", "COMPLETED"], labels={"k": "v"})
    assert {j.id for j in either} == {a.id, b.id}
    assert hf.requests[-1].query == {"stage": ["RUNNING", "COMPLETED"], "label": ["k=v"]}
    assert api.inspect_job(job_id=c.id, namespace=NS).status.stage == "UPDATING"


# --------------------------------------------------------------------------- inspect / cancel
def test_inspect_job_reflects_set_stage(hf, api):
    job = _job(api)
    assert api.inspect_job(job_id=job.id, namespace=NS).status.stage == "SCHEDULING"
    hf.set_stage(job.id, "RUNNING")
    running = api.inspect_job(job_id=job.id, namespace=NS)
    assert running.status.stage == "RUNNING" and running.started_at is not None
    assert running.finished_at is None
    hf.set_stage(job.id, "ERROR", message="CUDA out of memory")
    failed = api.inspect_job(job_id=job.id, namespace=NS)
    assert (failed.status.stage, failed.status.message) == ("ERROR", "CUDA out of memory")
    assert failed.finished_at is not None

    with pytest.raises(JobNotFoundError):
        api.inspect_job(job_id="0" * 24, namespace=NS)


def test_cancel_job_sets_canceled(hf, api):
    job = _job(api)
    hf.set_stage(job.id, "RUNNING")
    assert api.cancel_job(job_id=job.id, namespace=NS) is None
    assert hf.requests[-1].method == "POST"
    assert hf.requests[-1].path == f"/api/jobs/{NS}/{job.id}/cancel"
    assert hf.jobs[job.id]["status"]["stage"] == "CANCELED"
    assert api.inspect_job(job_id=job.id, namespace=NS).status.stage == "CANCELED"


# --------------------------------------------------------------------------- logs
def test_fetch_job_logs_of_a_finished_job(hf, api):
    job = _job(api)
    hf.set_stage(job.id, "RUNNING")
    hf.add_logs(job.id, ["===== Job started at 2026-01-01 =====", "a", "b", "c"])
    hf.set_stage(job.id, "COMPLETED")

    # The client drops lines starting with "===== Job started".
    assert list(api.fetch_job_logs(job_id=job.id, namespace=NS)) == ["a", "b", "c"]
    assert list(api.fetch_job_logs(job_id=job.id, namespace=NS, follow=True)) == ["a", "b", "c"]
    assert list(api.fetch_job_logs(job_id=job.id, namespace=NS, tail=2)) == ["b", "c"]
    assert hf.requests[-1].query == {"tail": ["2"]}
    stream = hf.requests_to("GET", r"/logs$")[0]
    assert stream.response_headers["Content-Type"] == "text/event-stream"
    assert stream.response_body.startswith(b'data: {"data": "===== Job started')


def test_follow_streams_a_running_job_until_it_finishes(hf, api):
    job = _job(api)
    hf.set_stage(job.id, "RUNNING")
    hf.add_logs(job.id, ["first"])
    got: list[str] = []
    t = threading.Thread(
        target=_collect,
        args=(api.fetch_job_logs(job_id=job.id, namespace=NS, follow=True), got),
    )
    t.start()
    deadline = time.monotonic() + 5
    while got != ["first"] and time.monotonic() < deadline:
        time.sleep(0.02)
    hf.add_logs(job.id, ["second", "third"])
    hf.set_stage(job.id, "COMPLETED")
    t.join(timeout=10)
    assert not t.is_alive()
    assert got == ["first", "second", "third"]
    # After the stream ended, the client asked for the stage before stopping.
    assert hf.requests[-1].path == f"/api/jobs/{NS}/{job.id}"


@pytest.mark.slow
def test_no_follow_on_a_running_job_waits_out_the_5s_read_timeout(hf, api):
    job = _job(api)
    hf.set_stage(job.id, "RUNNING")
    hf.add_logs(job.id, ["one", "two"])
    start = time.monotonic()
    assert list(api.fetch_job_logs(job_id=job.id, namespace=NS)) == ["one", "two"]
    assert 4.5 <= time.monotonic() - start < 8  # the Hub keeps the stream open; no error

    # A fake whose live streams end when idle answers at once.
    with FakeHFJobs(namespace=NS, stream_idle_close_s=0.1) as quick:
        qapi = quick.api()
        job = _job(qapi)
        quick.set_stage(job.id, "RUNNING")
        quick.add_logs(job.id, ["one"])
        start = time.monotonic()
        assert list(qapi.fetch_job_logs(job_id=job.id, namespace=NS)) == ["one"]
        assert time.monotonic() - start < 2


@pytest.mark.slow
def test_slow_log_endpoint_yields_nothing_without_error(hf, api):
    """follow=False treats a 5 s read timeout as 'drained': a slow server means no logs."""
    job = _job(api)
    hf.add_logs(job.id, ["lost"])
    hf.set_stage(job.id, "COMPLETED")
    hf.delay_next("GET", r"/logs$", 5.5)
    assert list(api.fetch_job_logs(job_id=job.id, namespace=NS)) == []


def test_cut_stream_without_follow_raises_after_partial_lines(hf, api):
    job = _job(api)
    hf.add_logs(job.id, ["l1", "l2", "l3", "l4"])
    hf.set_stage(job.id, "COMPLETED")
    hf.cut_logs_after(job.id, 2)
    got: list[str] = []
    exc = _collect(api.fetch_job_logs(job_id=job.id, namespace=NS), got)
    assert got == ["l1", "l2"]
    assert isinstance(exc, httpx2.RemoteProtocolError)  # raw httpx2, not an HfHubHTTPError
    assert "incomplete chunked read" in str(exc)


def test_cut_stream_with_follow_on_a_finished_job_loses_the_rest_silently(hf, api):
    job = _job(api)
    hf.add_logs(job.id, ["l1", "l2", "l3", "l4"])
    hf.set_stage(job.id, "COMPLETED")
    hf.cut_logs_after(job.id, 2)
    assert list(api.fetch_job_logs(job_id=job.id, namespace=NS, follow=True)) == ["l1", "l2"]


def test_cut_stream_with_follow_on_a_running_job_resumes_without_duplicates(hf, api):
    job = _job(api)
    hf.set_stage(job.id, "RUNNING")
    hf.add_logs(job.id, ["l1", "l2", "l3"])
    hf.cut_logs_after(job.id, 2)
    got: list[str] = []
    result: list = []
    t = threading.Thread(
        target=lambda: result.append(
            _collect(api.fetch_job_logs(job_id=job.id, namespace=NS, follow=True), got)
        )
    )
    t.start()
    deadline = time.monotonic() + 10
    while len(hf.requests_to("GET", r"/logs$")) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)  # client: error -> stage check (RUNNING) -> sleep 1 s -> reconnect
    hf.add_logs(job.id, ["l4"])
    hf.set_stage(job.id, "COMPLETED")
    t.join(timeout=15)
    assert not t.is_alive() and result == [None]
    assert got == ["l1", "l2", "l3", "l4"]  # replayed events skipped by index


# --------------------------------------------------------------------------- faults / retries
def test_5xx_on_single_calls_is_raised_without_retry(hf, api):
    hf.fail_next("POST", r"^/api/jobs/alice$", status=500)
    with pytest.raises(HfHubHTTPError) as err:
        _job(api)
    assert err.value.response.status_code == 500
    assert "Injected 500" in str(err.value)
    assert len(hf.requests_to("POST", r"^/api/jobs/alice$")) == 1 and hf.jobs == {}

    job = _job(api)
    hf.fail_next("GET", rf"/{job.id}$", status=503, retry_after=0)
    with pytest.raises(HfHubHTTPError):
        api.inspect_job(job_id=job.id, namespace=NS)
    assert len(hf.requests_to("GET", rf"/{job.id}$")) == 1
    assert api.inspect_job(job_id=job.id, namespace=NS).id == job.id  # one-shot fault


def test_list_jobs_retries_5xx_and_429_by_itself(hf, api):
    _job(api)
    hf.fail_next("GET", r"^/api/jobs/alice$", status=500)
    hf.fail_next("GET", r"^/api/jobs/alice$", status=429, retry_after=0)
    start = time.monotonic()
    assert len(list(api.list_jobs(namespace=NS))) == 1
    elapsed = time.monotonic() - start
    statuses = [r.status for r in hf.requests_to("GET", r"^/api/jobs/alice$")]
    assert statuses == [500, 429, 200]
    assert hf.requests_to("GET", r"^/api/jobs/alice$")[1].response_headers["Retry-After"] == "0"
    assert elapsed >= 2  # 1 s backoff after the 500, Retry-After 0 + 1 s after the 429


def test_delay_provokes_a_client_timeout_that_list_jobs_retries(hf, api):
    _job(api)
    hf.delay_next("GET", r"^/api/jobs/alice$", 1.0)
    assert len(list(api.list_jobs(namespace=NS, timeout=0.3))) == 1
    assert len(hf.requests_to("GET", r"^/api/jobs/alice$")) == 2


def test_close_ends_held_open_streams():
    hf = FakeHFJobs(namespace=NS).start()
    api = hf.api()
    job = _job(api)
    hf.set_stage(job.id, "RUNNING")
    got: list[str] = []
    t = threading.Thread(
        target=_collect, args=(api.fetch_job_logs(job_id=job.id, namespace=NS), got)
    )
    t.start()
    while not hf.requests_to("GET", r"/logs$"):
        time.sleep(0.01)
    start = time.monotonic()
    hf.close()
    t.join(timeout=5)
    assert time.monotonic() - start < 3 and not t.is_alive()
