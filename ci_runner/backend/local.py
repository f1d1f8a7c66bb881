"""The local backend: job scripts as detached processes on this machine.

Each job gets a directory under ``.ci-runner/jobs/<id>/`` holding its request,
run config, log and, once it ends, its exit code. A small supervisor process
(``ci_runner.backend.supervise``) owns the job's process group and records the
exit code, so ``poll`` can run later from any other process — or after a reboot,
when a job with no exit code and no live process is reported as lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from ci_runner.core.durations import utc_now
from ci_runner.core.files import write_atomic
from ci_runner.core.jobs import JobHandle, JobRequest, JobState, JobStatus
from ci_runner.errors import BackendError
from ci_runner.job_scripts import PACKAGE_DIR
from ci_runner.job_scripts.processes import pid_alive

REQUEST_FILE = "request.json"
CONFIG_FILE = "run_config.json"
LOG_FILE = "log.txt"
PID_FILE = "pid"
EXIT_FILE = "exit.json"
CANCEL_FILE = "canceled"
SUPERVISOR = "ci_runner.backend.supervise"
# A local job lives in the .ci-runner/ folder of the machine that started it: a fresh clone
# (a CI runner, another laptop) cannot see it, and it died with a runner that is gone.
NO_LOCAL_JOB = (
    "no local job {job_id} on this machine: a local job runs and is polled only where it "
    "was started. Poll from that machine, or resubmit with `backend: hf-jobs` (in CI, "
    "`command: run` on a self-hosted runner trains and reports in one job)"
)
# Defaults for every local job; the user's environment and the backend's own env win.
# OpenMP threads that spin at each barrier take the cores that the thread they wait on
# needs: on a shared CPU (other jobs, other programs) torch ran a tiny model's steps
# 10-30x slower than on one thread. Sleeping threads keep torch's parallelism without it.
JOB_ENV_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}


class LocalBackend:
    name = "local"

    def __init__(
        self,
        jobs_dir: Path,
        *,
        cwd: Path,
        env: dict[str, str] | None = None,
        python: str | None = None,
    ) -> None:
        self.jobs_dir = jobs_dir
        self.cwd = cwd
        self.env = env or {}
        self.python = python or sys.executable

    # -- launch -----------------------------------------------------------------

    def launch(self, request: JobRequest) -> JobHandle:
        job_id = f"local-{datetime.now(timezone.utc):%Y%m%d%H%M%S}-{secrets.token_hex(3)}"
        job_dir = self.jobs_dir / job_id
        job_dir.mkdir(parents=True)
        config_path = job_dir / CONFIG_FILE
        write_atomic(config_path, request.run_config.model_dump_json(indent=2) + "\n")
        meta = {
            "job_id": job_id,
            "script": str(request.script),
            "labels": request.labels,
            "submitted_at": utc_now(),
            "timeout_s": request.timeout_s,
        }
        # Recorded before the process starts, so a crash right after Popen still
        # leaves a job that find() sees (and the runner adopts instead of resubmitting).
        write_atomic(job_dir / REQUEST_FILE, json.dumps(meta, indent=2) + "\n")
        command = [self.python, str(request.script), "--config", str(config_path)]
        timeout = ["--timeout", str(request.timeout_s)] if request.timeout_s else []
        log = open(job_dir / LOG_FILE, "ab")  # noqa: SIM115 - handed to the child
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", SUPERVISOR, str(job_dir), *timeout, "--", *command],
                cwd=self.cwd,
                env={
                    **JOB_ENV_DEFAULTS,
                    **os.environ,
                    "PYTHONUNBUFFERED": "1",
                    **self.env,
                    **_helpers_path(),
                },
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: cancel kills all of it
            )
        except OSError as exc:
            raise BackendError(f"could not start {command[0]}: {exc}") from exc
        finally:
            log.close()
        write_atomic(job_dir / PID_FILE, f"{process.pid}\n")
        return JobHandle(job_id, self._url(job_id))

    def _url(self, job_id: str) -> str:
        try:
            return str((self.jobs_dir / job_id / LOG_FILE).relative_to(self.cwd))
        except ValueError:
            return str(self.jobs_dir / job_id / LOG_FILE)

    # -- queries ----------------------------------------------------------------

    def find(self, labels: dict[str, str]) -> list[JobHandle]:
        found = []
        for request_file in sorted(self.jobs_dir.glob(f"*/{REQUEST_FILE}")):
            meta = json.loads(request_file.read_text())
            if all(meta["labels"].get(k) == v for k, v in labels.items()):
                found.append((meta["submitted_at"], meta["job_id"]))
        return [JobHandle(job_id, self._url(job_id)) for _, job_id in sorted(found)]

    def statuses(self, job_ids: list[str]) -> dict[str, JobStatus]:
        return {job_id: self._status(job_id) for job_id in job_ids}

    def _status(self, job_id: str) -> JobStatus:
        job_dir = self.jobs_dir / job_id
        if not job_dir.is_dir():
            return JobStatus(job_id, JobState.ERROR, message=NO_LOCAL_JOB.format(job_id=job_id))
        exit_file = job_dir / EXIT_FILE
        if exit_file.exists():
            record = json.loads(exit_file.read_text())
            code, finished = record["exit_code"], record["finished_at"]
            if (job_dir / CANCEL_FILE).exists():
                return JobStatus(job_id, JobState.CANCELED, code, "canceled", finished)
            if record.get("timed_out"):
                message = f"timeout: stopped after the {record['timeout_s']}s limit"
                return JobStatus(job_id, JobState.ERROR, code, message, finished)
            if code == 0:
                return JobStatus(job_id, JobState.COMPLETED, 0, None, finished)
            return JobStatus(job_id, JobState.ERROR, code, _describe_exit(code), finished)
        if _alive(job_dir):
            return JobStatus(job_id, JobState.RUNNING)
        return JobStatus(
            job_id,
            JobState.ERROR,
            message="the job's process is gone and recorded no exit code "
            "(killed with the machine or its supervisor)",
        )

    def logs(self, job_id: str, tail: int | None = None) -> list[str]:
        path = self.jobs_dir / job_id / LOG_FILE
        if not path.exists():
            return []
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        return lines[-tail:] if tail else lines

    def wait(self, job_ids: list[str], timeout_s: float, *, poll_s: float = 0.05) -> bool:
        """Until one of the jobs ends (True), or ``timeout_s`` passes: the supervisor's exit
        file is the event, so a watcher wakes within ``poll_s`` of a job's end."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any((self.jobs_dir / job_id / EXIT_FILE).exists() for job_id in job_ids):
                return True
            time.sleep(poll_s)
        return False

    def follow(self, job_id: str, *, poll_s: float = 0.2) -> Iterator[str]:
        """Lines as the job writes them; ends once the job has ended and all is read."""
        path = self.jobs_dir / job_id / LOG_FILE
        done = self.jobs_dir / job_id / EXIT_FILE
        offset, partial = 0, b""
        while True:
            finished = done.exists() or not _alive(self.jobs_dir / job_id)
            if path.exists():
                with path.open("rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
                offset += len(chunk)
                *lines, partial = (partial + chunk).split(b"\n")
                yield from (line.decode("utf-8", "replace") for line in lines)
            if finished:
                if partial:
                    yield partial.decode("utf-8", "replace")
                return
            time.sleep(poll_s)

    # -- cancel -----------------------------------------------------------------

    def cancel(self, job_id: str) -> None:
        job_dir = self.jobs_dir / job_id
        if (job_dir / EXIT_FILE).exists() or not _alive(job_dir):
            return
        write_atomic(job_dir / CANCEL_FILE, utc_now() + "\n")
        pid = int((job_dir / PID_FILE).read_text())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)


def _helpers_path() -> dict[str, str]:
    """A project's own job script still imports the packaged helpers (after its siblings)."""
    paths = [str(PACKAGE_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"PYTHONPATH": os.pathsep.join(paths)}


def _alive(job_dir: Path) -> bool:
    """Is the job's supervisor still running? Guards against a recycled pid."""
    try:
        pid = int((job_dir / PID_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.parent.parent.exists() and Path("/proc/self").exists():
        try:
            return str(job_dir).encode() in cmdline.read_bytes()
        except OSError:
            return False
    return pid_alive(pid)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"
