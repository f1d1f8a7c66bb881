"""``check-data --remote``: fetch the sample inside a CPU job, check it here.

The job only reads rows (``check_data.py``); the format checks stay
in the runner, so a remote check and a local one give the same verdicts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from ci_runner.core.hashing import short_hash
from ci_runner.core.jobs import Backend, JobRequest
from ci_runner.data.sample import DatasetSample
from ci_runner.errors import BackendError, NotReadyError
from ci_runner.job_scripts.protocol import parse_summary
from ci_runner.runconfig import DatasetSource, RunConfig, Tracking

CHECK_SCRIPT = "check_data.py"
CHECK_FLAVOR = "cpu-basic"
CHECK_TIMEOUT_S = 900


def check_run_id(source: DatasetSource) -> str:
    return f"check-{short_hash(json.dumps(source.model_dump(), sort_keys=True))}"


def fetch_remote_sample(
    backend: Backend,
    source: DatasetSource,
    *,
    script: Path,
    wait_s: float = CHECK_TIMEOUT_S,
    interval_s: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[str], None] = lambda _: None,
) -> DatasetSample:
    """Run (or reuse) the check job for this exact source and read its rows."""
    run_id = check_run_id(source)
    labels = {"ci-runner.check": run_id}
    existing = backend.find(labels)
    if existing:
        handle = existing[-1]
        progress(f"reusing check job {handle.job_id}")
    else:
        config = RunConfig(
            experiment="check-data",
            run_id=run_id,
            method="sft",
            base_model="none",
            dataset=source,
            output_dir="/tmp/ci-runner-check",
            tracking=Tracking(project="check-data", run_name=run_id),
        )
        request = JobRequest(
            script=script,
            run_config=config,
            labels=labels,
            flavor=CHECK_FLAVOR,
            timeout_s=CHECK_TIMEOUT_S,
        )
        handle = backend.launch(request)
        progress(f"started check job {handle.job_id} ({handle.url})")
    deadline = time.monotonic() + wait_s
    while True:
        status = backend.statuses([handle.job_id])[handle.job_id]
        if status.state.terminal:
            break
        if time.monotonic() > deadline:
            raise BackendError(f"check job {handle.job_id} did not finish in {wait_s:.0f}s")
        sleep(interval_s)
    data = parse_summary(backend.logs(handle.job_id))
    if data is None or data.get("status") != "completed":
        reason = (data.get("error") if data else None) or status.message or "no summary"
        raise NotReadyError(
            f"the remote check job {handle.job_id} could not read the dataset: {reason}"
        )
    return DatasetSample(
        source=source.path,
        config=source.config,
        split=source.split,
        columns=list(data.get("columns") or []),
        rows=list(data.get("rows") or []),
        num_rows=data.get("num_rows"),
        features=dict(data.get("features") or {}),
        origin=f"remote job {handle.job_id}",
        revision=source.revision,
    )
