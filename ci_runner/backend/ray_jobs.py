"""The Ray backend: jobs on a Ray cluster through its Jobs REST API (``/api/jobs/``).

The runner talks HTTP to the cluster's dashboard with ``httpx2`` (what huggingface_hub
already brings), so it needs no ``ray`` package; only the cluster runs Ray. A job is:

- a ``working_dir`` package (``ray_package``): the script, its helpers, the run config,
  the launch files, and ``ray_launch.py``, the job's driver;
- a ``runtime_env`` that installs the script's pinned dependencies with ``pip`` (or
  none, when the nodes' image carries them: ``ray.environment: cluster``);
- ``metadata``: the run's labels. The ``submission_id`` is derived from them, so a
  resubmit after a crash finds the job it made. Ray answers a duplicate id with 500
  (not 409), so the backend looks before it creates, and looks again after a 5xx.

``ray_launch.py`` reserves the nodes with a STRICT_SPREAD placement group and starts
one ``accelerate launch --machine_rank i`` per node (``launcher.node_command``).

States: PENDING → SCHEDULING, RUNNING, SUCCEEDED → COMPLETED, FAILED → ERROR (with
the driver's exit code and Ray's message), STOPPED → CANCELED. A job the cluster no
longer knows (404; a head restarted without external GCS storage forgets every job)
is lost: an infrastructure failure, which the run resumes from.

The cluster's token (``RAY_AUTH_TOKEN``, for clusters started with
``RAY_AUTH_MODE=token``) travels as ``Authorization: Bearer`` and is never logged.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ci_runner.backend.launcher import launch_files, launch_of, node_command
from ci_runner.backend.ray_package import package
from ci_runner.core.hashing import short_hash
from ci_runner.core.hub import label_value
from ci_runner.core.jobs import JobHandle, JobRequest, JobState, JobStatus, RetryPolicy
from ci_runner.errors import BackendError
from ci_runner.job_scripts import PACKAGE_DIR, bundle_files, script_dependencies

DRIVER = "ray_launch.py"
SPEC_FILE = "ray_launch.json"
CONFIG_FILE = "run_config.json"
REPO_LABEL = "ci-runner.repo"
TOKEN_ENV = "RAY_AUTH_TOKEN"
ADDRESS_ENV = "RAY_ADDRESS"
RETRY_STATUS = (408, 429, 500, 502, 503, 504)
PLACEMENT_TIMEOUT_S = 600
LOG_TAIL = 2000
FLAVOR_RE = re.compile(r"^ray-(?P<nodes>\d+)x(?P<gpus>\d+)")

STATES = {
    "PENDING": JobState.SCHEDULING,
    "RUNNING": JobState.RUNNING,
    "SUCCEEDED": JobState.COMPLETED,
    "FAILED": JobState.ERROR,
    "STOPPED": JobState.CANCELED,
}
LOST = (
    "lost job: the Ray cluster no longer knows {job_id} (its head restarted, or the job "
    "was deleted): an infrastructure failure; the run resumes from its last checkpoint"
)
AUTH_HINTS = {
    401: f"the cluster requires a token: set {TOKEN_ENV} (in CI: a repository secret)",
    403: f"the cluster refused the token in {TOKEN_ENV}: check it is the cluster's current one",
}
# Ray prefixes what a task or actor prints with its origin, "(NodeRank pid=123, ip=…) ",
# and colours it when it thinks a person is watching.
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
ORIGIN = re.compile(r"^\((?:[\w.:<>-]+ )?pid=\d+(?:, ip=[^)]*)?\) ")


class RayAuthError(BackendError):
    """The cluster wants a token, or another one: no use retrying or planning around it."""


def clean_line(line: str) -> str:
    """A log line as the script printed it: Ray's colour codes and origin prefix gone."""
    return ORIGIN.sub("", ANSI.sub("", line), count=1)


def flavor_name(nodes: int, gpus_per_node: int, gpu: str | None) -> str:
    """How a Ray run's hardware reads in the ledger and report: ``ray-2x8-H100``."""
    name = f"ray-{nodes}x{gpus_per_node}"
    return f"{name}-{label_value(gpu)}" if gpu and gpus_per_node else name


def gpus_per_node(flavor: str) -> int:
    found = FLAVOR_RE.match(flavor)
    return int(found["gpus"]) if found else 0


def submission_id(repo: str, labels: dict[str, str]) -> str:
    """Stable for the same labels: a retried or repeated submit names the same job."""
    run = label_value(labels.get("ci-runner.run", "job"))[:60]
    digest = short_hash(json.dumps({REPO_LABEL: repo, **labels}, sort_keys=True))
    return f"ci-runner-{run}-{digest}"


class RayJobsBackend:
    name = "ray"

    def __init__(
        self,
        client: Any,  # httpx2.Client with the cluster's base URL (and token header)
        *,
        address: str,
        repo: str,
        environment: str = "pinned",
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        follow_poll_s: float = 1.0,
    ) -> None:
        self.client = client
        self.address = address.rstrip("/")
        self.repo = repo
        self.environment = environment
        self.retry = retry
        self.sleep = sleep
        self.follow_poll_s = follow_poll_s

    # -- plumbing ---------------------------------------------------------------

    def _request(self, what: str, method: str, path: str, **kwargs: Any) -> Any:
        """Bounded retries on 5xx/429/network errors; 401/403 explained; 404 returned."""
        import httpx2

        delay = self.retry.base_delay_s
        problem = ""
        for attempt in range(1, self.retry.attempts + 1):
            try:
                response = self.client.request(method, path, **kwargs)
            except httpx2.TransportError as exc:
                problem = type(exc).__name__
            else:
                status = response.status_code
                if status in AUTH_HINTS:
                    raise RayAuthError(f"Ray refused to {what} ({status}): {AUTH_HINTS[status]}")
                if status not in RETRY_STATUS:
                    if status >= 400 and status != 404:
                        raise BackendError(
                            f"Ray could not {what}: HTTP {status}: {_first_line(response.text)}"
                        )
                    return response
                problem = f"HTTP {status}: {_first_line(response.text)}"
            if attempt < self.retry.attempts:
                self.sleep(min(delay, self.retry.max_delay_s))
                delay = min(delay * 2, self.retry.max_delay_s)
        raise BackendError(
            f"the Ray cluster at {self.address} kept failing to {what} ({problem}) after "
            f"{self.retry.attempts} attempt(s); nothing was recorded as done. Check that "
            f"{ADDRESS_ENV} names the cluster's dashboard and run the command again."
        )

    def url(self, job_id: str) -> str:
        return f"{self.address}/#/jobs/{job_id}"

    def _job(self, job_id: str) -> dict[str, Any] | None:
        response = self._request("inspect a job", "GET", f"/api/jobs/{job_id}")
        return None if response.status_code == 404 else dict(response.json())

    def nodes(self) -> list[dict[str, Any]]:
        """Every node of the cluster as the dashboard summarises it (``ray_cluster``)."""
        response = self._request("list the cluster's nodes", "GET", "/nodes?view=summary")
        if response.status_code == 404:
            raise BackendError(f"{self.address} serves no Ray dashboard node list")
        return list(response.json()["data"]["summary"])

    def _jobs(self) -> list[dict[str, Any]]:
        """Every submitted job the cluster knows, in one request (Ray has no filter)."""
        response = self._request("list jobs", "GET", "/api/jobs/")
        return [j for j in response.json() if j.get("type") == "SUBMISSION"]

    # -- launch -----------------------------------------------------------------

    def job_files(self, request: JobRequest) -> dict[str, bytes]:
        """The working_dir: script and helpers, run config, launch files, the driver."""
        launch = launch_of(request.run_config)
        deps = script_dependencies(request.script)
        files = {**bundle_files(request.script), **launch_files(launch, deps)}
        files[CONFIG_FILE] = request.run_config.model_dump_json().encode()
        files[DRIVER] = (PACKAGE_DIR / DRIVER).read_bytes()
        bundle = {"CPU": 1, "GPU": gpus_per_node(request.flavor)}
        spec = {
            "nodes": launch.nodes,
            "bundle": bundle,
            "command": node_command(launch, request.script.name, CONFIG_FILE),
            "placement_timeout_s": PLACEMENT_TIMEOUT_S,
        }
        files[SPEC_FILE] = (json.dumps(spec, indent=2) + "\n").encode()
        return files

    def runtime_env(self, request: JobRequest, working_dir: str) -> dict[str, Any]:
        env: dict[str, Any] = {
            "working_dir": working_dir,
            "env_vars": {"PYTHONUNBUFFERED": "1", "OMP_WAIT_POLICY": "PASSIVE"},
        }
        if self.environment == "pinned":
            packages = [*script_dependencies(request.script), *request.requirements]
            env["pip"] = {"packages": list(dict.fromkeys(packages)), "pip_check": False}
        return env

    def _upload(self, files: dict[str, bytes]) -> str:
        """The package's URI, uploaded unless the cluster already has it."""
        pkg = package(files)
        if self._request("look up the job's package", "GET", pkg.path).status_code == 404:
            self._request(
                "upload the job's package",
                "PUT",
                pkg.path,
                content=pkg.data,
                headers={"Content-Type": "application/octet-stream"},
            )
        return pkg.uri

    def launch(self, request: JobRequest) -> JobHandle:
        """Create the job unless one with its labels' submission id exists: adopt that."""
        sid = submission_id(self.repo, request.labels)
        if self._job(sid) is not None:
            return JobHandle(sid, self.url(sid))
        body = {
            "entrypoint": f"python {DRIVER}",
            "submission_id": sid,
            "runtime_env": self.runtime_env(request, self._upload(self.job_files(request))),
            "metadata": {REPO_LABEL: self.repo, **request.labels},
            "entrypoint_num_cpus": 0,
        }
        for attempt in range(1, self.retry.attempts + 1):
            response = self.client.request("POST", "/api/jobs/", json=body)
            if response.status_code == 200:
                return JobHandle(sid, self.url(sid))
            # A 500 may mean an earlier try created it (Ray answers a duplicate id with
            # 500): look before trying again.
            if self._job(sid) is not None:
                return JobHandle(sid, self.url(sid))
            if response.status_code in AUTH_HINTS:
                raise RayAuthError(
                    f"Ray refused to submit the job ({response.status_code}): "
                    f"{AUTH_HINTS[response.status_code]}"
                )
            if response.status_code not in RETRY_STATUS:
                raise BackendError(
                    f"Ray refused the job: HTTP {response.status_code}: "
                    f"{_first_line(response.text)}"
                )
            if attempt < self.retry.attempts:
                self.sleep(min(self.retry.base_delay_s * 2 ** (attempt - 1), 16.0))
        raise BackendError(
            f"the Ray cluster at {self.address} kept failing to create the job "
            f"(HTTP {response.status_code}); nothing was submitted. Run the command again."
        )

    # -- queries ----------------------------------------------------------------

    def find(self, labels: dict[str, str]) -> list[JobHandle]:
        wanted = {REPO_LABEL: self.repo, **labels}
        jobs = [
            j
            for j in self._jobs()
            if all((j.get("metadata") or {}).get(k) == v for k, v in wanted.items())
        ]
        jobs.sort(key=lambda j: (j.get("start_time") or 0, j["submission_id"]))
        return [JobHandle(j["submission_id"], self.url(j["submission_id"])) for j in jobs]

    def statuses(self, job_ids: list[str]) -> dict[str, JobStatus]:
        """One list of every job for all runs; a job missing from it is lost."""
        if not job_ids:
            return {}
        known = {j["submission_id"]: j for j in self._jobs()}
        return {
            job_id: _to_status(known[job_id])
            if job_id in known
            else JobStatus(job_id, JobState.ERROR, message=LOST.format(job_id=job_id))
            for job_id in job_ids
        }

    def _log_lines(self, job_id: str) -> list[str] | None:
        response = self._request("fetch logs", "GET", f"/api/jobs/{job_id}/logs")
        if response.status_code == 404:
            return None
        text = str(response.json().get("logs") or "")
        return [clean_line(line) for line in text.splitlines()]

    def logs(self, job_id: str, tail: int | None = None) -> list[str]:
        lines = self._log_lines(job_id) or []
        return lines[-(tail or LOG_TAIL) :]

    def follow(self, job_id: str) -> Iterator[str]:
        """New lines as the job writes them, until it ends (Ray's own tail is a websocket;
        reading the whole log again each second needs only HTTP)."""
        seen = 0
        while True:
            job = self._job(job_id)
            lines = self._log_lines(job_id) or []
            yield from lines[seen:]
            seen = max(seen, len(lines))
            if job is None or _to_status(job).state.terminal:
                return
            time.sleep(self.follow_poll_s)

    def cancel(self, job_id: str) -> None:
        """Stop the job; its driver ends every rank's processes (``ray_launch.py``)."""
        self._request("stop the job", "POST", f"/api/jobs/{job_id}/stop")


def _to_status(job: dict[str, Any]) -> JobStatus:
    state = STATES.get(str(job.get("status")), JobState.RUNNING)
    end = job.get("end_time")
    finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end / 1000)) if end else None
    message = job.get("message") or None
    if state == JobState.SCHEDULING and message is None:
        message = "waiting for the job's runtime environment and nodes"
    code = job.get("driver_exit_code")
    if state == JobState.COMPLETED:
        code = 0
    return JobStatus(
        job["submission_id"],
        state,
        exit_code=code,
        message=None if state == JobState.COMPLETED else message,
        finished_at=finished if state.terminal else None,
    )


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no message)"


def _client(address: str, token: str | None) -> Any:
    import httpx2

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx2.Client(base_url=address, headers=headers, timeout=60.0)


def resolve_address(configured: str | None) -> str:
    address = os.environ.get(ADDRESS_ENV) or configured
    if not address:
        raise BackendError(
            "the ray backend needs the cluster's dashboard address: set RAY_ADDRESS "
            "(e.g. http://head:8265) or `ray.address` in the experiment file"
        )
    if address.startswith("ray://") or "://" not in address:
        raise BackendError(
            f"{ADDRESS_ENV}={address!r} is not the dashboard's HTTP address: the Jobs API "
            "listens on the dashboard port, e.g. http://head:8265"
        )
    return address.rstrip("/")


def from_environment(
    root: Path, *, address: str | None = None, environment: str = "pinned"
) -> RayJobsBackend:
    """The backend for ``RAY_ADDRESS`` (else the file's ``ray.address``), with
    ``RAY_AUTH_TOKEN`` when the cluster requires one."""
    from ci_runner.backend.hf_jobs import repo_label

    resolved = resolve_address(address)
    token = os.environ.get(TOKEN_ENV) or None
    return RayJobsBackend(
        _client(resolved, token),
        address=resolved,
        repo=repo_label(root),
        environment=environment,
    )
