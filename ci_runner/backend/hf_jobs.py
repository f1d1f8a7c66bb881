"""The Hugging Face Jobs backend, on ``huggingface_hub``'s Jobs API.

How a job script gets into the container: ``run_uv_job`` would upload a local
script to a private Hub bucket over Xet before starting the job. That is one more
moving part per submission, and one no test can exercise offline. Instead the
script and the helper modules it imports travel inside the job spec itself: a
reproducible tar.gz, base64 in an env var, unpacked by a one-line ``bash -c`` and
run with ``uv run`` (which reads the script's PEP 723 header). The run config
travels the same way, as JSON. The job spec is then the whole truth about what
ran, visible on the job's page.

A training run planned on several GPUs starts one process per GPU through
``accelerate launch`` (``backend.launcher``): its bundle also carries the script's
dependencies as a requirements file (accelerate spawns plain ``python`` processes,
which don't read PEP 723 headers) and, for FSDP, the generated accelerate config.

``HF_TOKEN`` is always passed as a *secret*, never in ``env``: secrets are
encrypted and never echoed back by the API.
"""

from __future__ import annotations

import functools
import os
import shlex
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from ci_runner.backend.launcher import (
    REQUIREMENTS,
    accelerate_args,
    launch_files,
    launch_of,
)
from ci_runner.core.flavors import FLAVORS_BY_NAME
from ci_runner.core.hub import label_value
from ci_runner.core.jobs import JobHandle, JobRequest, JobState, JobStatus, RetryPolicy
from ci_runner.errors import BackendError
from ci_runner.job_scripts import bundle_b64, script_dependencies
from ci_runner.runconfig import EvalConfig, ExportConfig, Launch, RunConfig

UV_IMAGE = "ghcr.io/astral-sh/uv:python3.12-bookworm"
BUNDLE_ENV = "CI_RUNNER_BUNDLE_B64"
CONFIG_ENV = "CI_RUNNER_RUN_CONFIG"
JOB_DIR = "/tmp/ci-runner-job"
RETRY_STATUS = (408, 429, 500, 502, 503, 504)
# Best effort: where the container refuses it, the sandbox records the degradation.
SANDBOX_SETUP = (
    "(command -v bwrap >/dev/null || (apt-get update -qq && apt-get install -y -qq "
    "--no-install-recommends bubblewrap) >/dev/null 2>&1 || "
    'echo "warning: bubblewrap not installed; the sandbox runs without it" >&2)'
)
LOG_TAIL = 2000
REPO_LABEL = "ci-runner.repo"

T = TypeVar("T")

AUTH_HINTS = {
    401: "the HF token is missing or invalid: create a write token at "
    "https://huggingface.co/settings/tokens and set HF_TOKEN",
    402: "HF Jobs needs a paid plan (PRO, Team or Enterprise) on this namespace",
    403: "the HF token cannot run jobs in this namespace: it needs write access "
    "(or the namespace needs a Jobs-enabled plan)",
    404: "the namespace does not exist or the token cannot see it: check --namespace / HF_TOKEN",
}


def job_command(
    flavor: str, script: str, launch: Launch | None = None, *, packages: tuple[str, ...] = ()
) -> list[str]:
    """Unpack the bundle and run the script: one process, or ``launch.processes`` under
    ``accelerate launch`` (one per GPU of the flavor).

    For a single process ``uv run`` resolves the script's PEP 723 header itself. accelerate
    spawns plain ``python`` processes, so for several ``uv run`` builds accelerate's
    environment from the header's dependencies (shipped as a requirements file). Extra
    ``packages`` (bitsandbytes for QLoRA) are added with ``--with`` either way.
    """
    launch = launch or Launch()
    gpus = FLAVORS_BY_NAME[flavor].gpus if flavor in FLAVORS_BY_NAME else 1
    if launch.processes > 1 and launch.processes != gpus:
        raise BackendError(
            f"bug: the run is planned for {launch.processes} processes but {flavor} has "
            f"{gpus} GPU(s); re-plan it (`ci-runner plan`)"
        )
    path = shlex.quote(f"{JOB_DIR}/{script}")
    unpack = f'mkdir -p {JOB_DIR} && printf %s "${BUNDLE_ENV}" | base64 -d | tar -xz -C {JOB_DIR}'
    extras = "".join(f" --with {shlex.quote(package)}" for package in packages)
    if launch.processes > 1:
        accelerate = shlex.join(accelerate_args(launch, config_dir=JOB_DIR))
        run = (
            f"exec uv run --no-project --with-requirements {JOB_DIR}/{REQUIREMENTS}{extras} "
            f"-- {accelerate} {path}"
        )
    else:
        run = f"exec uv run{extras} {path}"
    if script == "evaluate.py":  # bubblewrap gives the HumanEval sandbox its own filesystem
        run = f"{SANDBOX_SETUP}; {run}"
    return ["bash", "-c", f"{unpack} && {run}"]


class HfJobsBackend:
    name = "hf-jobs"

    def __init__(
        self,
        api: Any,  # huggingface_hub.HfApi; typed loosely to keep imports lazy
        *,
        namespace: str,
        token: str,
        repo: str,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self._token = token
        self.repo = repo
        self.retry = retry
        self.sleep = sleep

    # -- plumbing ---------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], T], *, attempts: int | None = None) -> T:
        """Bounded retries with backoff on 5xx/429/network errors; clear 4xx messages."""
        import httpx2
        from huggingface_hub.errors import HfHubHTTPError

        attempts = attempts or self.retry.attempts
        delay = self.retry.base_delay_s
        for attempt in range(1, attempts + 1):
            try:
                return fn()
            except HfHubHTTPError as exc:
                status = exc.response.status_code if exc.response is not None else None
                if status in AUTH_HINTS:
                    raise BackendError(
                        f"HF Jobs refused to {what} ({status}): {AUTH_HINTS[status]}"
                    ) from None
                if status not in RETRY_STATUS:
                    raise BackendError(
                        f"HF Jobs could not {what}: HTTP {status}: {_server_message(exc)}"
                    ) from None
                problem = f"HTTP {status}"
                wait = _retry_after(exc) or delay
            except (httpx2.TransportError, OSError) as exc:
                problem = type(exc).__name__
                wait = delay
            if attempt == attempts:
                break
            self.sleep(min(wait, self.retry.max_delay_s))
            delay = min(delay * 2, self.retry.max_delay_s)
        raise BackendError(
            f"HF Jobs kept failing to {what} ({problem}) after {attempts} attempt(s); "
            "nothing was recorded as done. Run the command again later."
        )

    def url(self, job_id: str) -> str:
        return f"{self.api.endpoint}/jobs/{self.namespace}/{job_id}"

    # -- launch -----------------------------------------------------------------

    def launch(self, request: JobRequest) -> JobHandle:
        """Create the job; on a retried create, adopt a job the failed call made."""
        labels = {REPO_LABEL: self.repo, **request.labels}
        run_config = request.run_config
        assert isinstance(run_config, RunConfig | EvalConfig | ExportConfig)  # has a run_id
        launch = launch_of(request.run_config)
        extra = launch_files(launch, script_dependencies(request.script))
        # what the caller asked for: an MLflow client, bitsandbytes for a 4-bit base
        command = job_command(
            request.flavor, request.script.name, launch, packages=request.requirements
        )
        env = {
            BUNDLE_ENV: bundle_b64(request.script, extra),
            CONFIG_ENV: request.run_config.model_dump_json(),
            "PYTHONUNBUFFERED": "1",
        }

        secrets = {"HF_TOKEN": self._token}
        secrets |= {n: os.environ[n] for n in request.secret_env if os.environ.get(n)}

        def create() -> Any:
            # A 5xx may still have created the job: look before creating again.
            existing = self.find(request.labels)
            if existing:
                return existing[-1]
            return self.api.run_job(
                image=UV_IMAGE,
                command=command,
                env=env,
                secrets=secrets,
                flavor=request.flavor,
                timeout=request.timeout_s,
                name=label_value(run_config.run_id),
                labels=labels,
                namespace=self.namespace,
                token=self._token,
            )

        job = self._call("create the job", create)
        if isinstance(job, JobHandle):
            return job
        return JobHandle(job.id, self.url(job.id))

    # -- queries ----------------------------------------------------------------

    def _list(self, labels: dict[str, str]) -> list[Any]:
        # list_jobs already retries with backoff inside huggingface_hub (http_backoff);
        # retrying again here would multiply the requests of a 429 storm.
        return self._call(
            "list jobs",
            lambda: list(
                self.api.list_jobs(
                    labels={REPO_LABEL: self.repo, **labels},
                    namespace=self.namespace,
                    token=self._token,
                )
            ),
            attempts=1,
        )

    def find(self, labels: dict[str, str]) -> list[JobHandle]:
        jobs = [j for j in self._list(labels) if _hub_status(j) != "DELETED"]
        jobs.sort(key=lambda j: (j.created_at or 0, j.id))
        return [JobHandle(j.id, self.url(j.id)) for j in jobs]

    def statuses(self, job_ids: list[str]) -> dict[str, JobStatus]:
        """One labelled list (plus pages) for all runs; inspect only stragglers."""
        if not job_ids:
            return {}
        wanted = set(job_ids)
        found = {j.id: _to_status(j) for j in self._list({}) if j.id in wanted}
        for job_id in wanted - found.keys():
            job = self._call(
                "inspect a job",
                functools.partial(
                    self.api.inspect_job,
                    job_id=job_id,
                    namespace=self.namespace,
                    token=self._token,
                ),
            )
            found[job_id] = _to_status(job)
        return found

    def logs(self, job_id: str, tail: int | None = None) -> list[str]:
        """The job's log; ``tail`` keeps the last N lines, as on the local backend.

        The Hub's ``?tail=`` counts events, its own "===== Job started" notice included,
        which the client then drops; and a server that replays the whole history would
        hand back everything. So the cut is made here too.
        """
        lines: list[str] = self._call(
            "fetch logs",
            lambda: list(
                self.api.fetch_job_logs(
                    job_id=job_id,
                    namespace=self.namespace,
                    follow=False,
                    tail=tail or LOG_TAIL,
                    token=self._token,
                )
            ),
        )
        return lines[-tail:] if tail else lines

    def follow(self, job_id: str) -> Iterator[str]:
        """The job's log stream as the Hub serves it, until the job ends."""
        yield from self.api.fetch_job_logs(
            job_id=job_id, namespace=self.namespace, follow=True, token=self._token
        )

    def cancel(self, job_id: str) -> None:
        self._call(
            "cancel the job",
            lambda: self.api.cancel_job(job_id=job_id, namespace=self.namespace, token=self._token),
        )


def _hub_status(job: Any) -> str:
    """The Hub's name for where the job is (its ``status.stage``): ``RUNNING``, ``DELETED``..."""
    name = job.status.stage if job.status else "SCHEDULING"
    return getattr(name, "value", name)


def _to_status(job: Any) -> JobStatus:
    name = _hub_status(job)
    try:
        state = JobState(name)
    except ValueError:  # DELETED, UPDATING, or a status the Hub adds later
        state = JobState.ERROR if name == "DELETED" else JobState.RUNNING
    finished = getattr(job, "finished_at", None)
    return JobStatus(
        job.id,
        state,
        message=job.status.message if job.status else None,
        finished_at=finished.strftime("%Y-%m-%dT%H:%M:%SZ") if finished else None,
    )


def _server_message(exc: Exception) -> str:
    return getattr(exc, "server_message", None) or str(exc).splitlines()[0]


def _retry_after(exc: Any) -> float | None:
    value = exc.response.headers.get("retry-after") if exc.response is not None else None
    try:
        return float(value) if value else None
    except ValueError:
        return None


def repo_label(root: Path) -> str:
    """The repository a job belongs to: GitHub's name for it in CI, else the folder."""
    return label_value(os.environ.get("GITHUB_REPOSITORY") or root.resolve().name)


def from_environment(root: Path, *, namespace: str | None = None) -> HfJobsBackend:
    """Build the backend from HF_TOKEN / HF_ENDPOINT / HF_JOBS_NAMESPACE."""
    from huggingface_hub import HfApi, get_token

    token = os.environ.get("HF_TOKEN") or get_token()
    if not token:
        raise BackendError(
            "the hf-jobs backend needs a Hugging Face token: create a write token at "
            "https://huggingface.co/settings/tokens and set HF_TOKEN (in CI: a repository secret)"
        )
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    backend = HfJobsBackend(api, namespace="", token=token, repo=repo_label(root))
    # whoami must go through this api: the module-level one ignores HF_ENDPOINT overrides.
    backend.namespace = (
        namespace
        or os.environ.get("HF_JOBS_NAMESPACE")
        or backend._call("identify the token's user", lambda: api.whoami(token=token))["name"]
    )
    return backend
