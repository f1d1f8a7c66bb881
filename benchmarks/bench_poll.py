"""How much one `poll` costs over many running HF Jobs runs, against loopback servers.

    .venv/bin/python benchmarks/bench_poll.py [--files 4] [--runs-per-file 50] [--page-size 50]

Submits ``files`` experiment files, each a matrix of ``runs-per-file`` runs, through the
real flow and the real huggingface_hub client to the loopback HF Jobs API (tests/), marks
every job RUNNING, writes each run's training logs into a loopback trackio Space (through
trackio's own storage), then times one `poll` and counts the HTTP requests it made, by
kind. The point: status is one paginated list for all runs, progress one read per trackio
project, and logs are fetched only for jobs that ended.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ["HF_HUB_OFFLINE"] = "0"

from huggingface_hub import constants  # noqa: E402

from ci_runner.backend.hf_jobs import HfJobsBackend, RetryPolicy  # noqa: E402
from ci_runner.flow.poll import poll as poll_once  # noqa: E402
from ci_runner.flow.submit import submit as submit_file  # noqa: E402
from ci_runner.flow.workspace import Workspace  # noqa: E402
from ci_runner.ledger.repository import ledgers  # noqa: E402
from ci_runner.paths import Project  # noqa: E402
from ci_runner.track.trackio_progress import URL_ENV  # noqa: E402
from tests.hf_jobs_server import FakeHFJobs  # noqa: E402
from tests.trackio_server import FakeTrackioSpace  # noqa: E402

TOKEN = "hf_bench_token"
STEPS_LOGGED = 10
SPEC = """name: {name}
base_model: Qwen/Qwen3-0.6B
method: sft
dataset: trl-lib/Capybara
hyperparameters: {{max_steps: 100, logging_steps: 1}}
hardware: t4-small
timeout: 1h
output: {{hub_model_id: bench/{name}}}
tracking: {{project: {name}, space: bench/trackio}}
backend: hf-jobs
max_parallel: {runs}
matrix:
  hyperparameters.learning_rate: [{rates}]
"""


def kind(method: str, path: str) -> str:
    if path.endswith("/logs"):
        return "logs"
    if method == "POST":
        return "create"
    return "list" if path.count("/") == 3 else "inspect"


def write_trackio(trackio_dir: Path, project: str, run_names: list[str]) -> None:
    """What transformers' TrackioCallback logs, written with trackio's own storage."""
    from trackio import sqlite_storage

    sqlite_storage.TRACKIO_DIR = trackio_dir  # fixed at trackio's import
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for run in run_names:
        logs = [
            {"train/loss": 3 - step / 50, "train/global_step": step}
            for step in range(1, STEPS_LOGGED + 1)
        ]
        stamps = [(start + timedelta(seconds=2 * i)).isoformat() for i in range(len(logs))]
        sqlite_storage.SQLiteStorage.bulk_log(
            project, run, logs, steps=[None] * len(logs), timestamps=stamps, config=None
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--runs-per-file", type=int, default=50)
    parser.add_argument("--page-size", type=int, default=50)
    args = parser.parse_args()
    total = args.files * args.runs_per_file
    constants.HF_HUB_OFFLINE = False
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeHFJobs(
            namespace="bench", page_size=args.page_size, token=TOKEN, stream_idle_close_s=0.02
        ) as hf,
        FakeTrackioSpace(Path(tmp) / "trackio") as space,
    ):
        os.environ["HF_ENDPOINT"] = hf.url
        os.environ[URL_ENV] = space.url
        root = Path(tmp) / "project"
        (root / "experiments").mkdir(parents=True)
        backend = HfJobsBackend(
            hf.api(TOKEN),
            namespace="bench",
            token=TOKEN,
            repo="bench",
            retry=RetryPolicy(base_delay_s=0),
            sleep=lambda s: None,
        )
        ws = Workspace(Project(root), backends={"hf-jobs": backend})
        rates = ", ".join(f"{(i + 1) * 1e-6:.1e}" for i in range(args.runs_per_file))
        started = time.perf_counter()
        for f in range(args.files):
            spec = root / "experiments" / f"sweep-{f}.yaml"
            name = f"sweep-{f}"
            spec.write_text(SPEC.format(name=name, runs=args.runs_per_file, rates=rates))
            submit_file(ws, spec, check_data=False)  # no dataset viewer offline
        submit_s = time.perf_counter() - started
        for ledger in ledgers(ws.project):
            write_trackio(space.trackio_dir, ledger.experiment, [r.run_id for r in ledger.runs])
        for job_id in hf.jobs:
            hf.set_stage(job_id, "RUNNING")
        hf.requests.clear()
        space.requests.clear()
        started = time.perf_counter()
        outcome = poll_once(ws)
        poll_s = time.perf_counter() - started
        counts = Counter(kind(r.method, r.path) for r in hf.requests)
        counts["trackio"] = len(space.requests)
        started = time.perf_counter()
        poll_once(ws)
        second_s = time.perf_counter() - started
        shown = sum(
            1
            for r in outcome.runs
            if r.metrics and r.metrics.step == STEPS_LOGGED and r.metrics.final_loss is not None
        )
        reports = list((root / "training_reports").glob("*.md"))
        with_progress = sum(f"- Step: {STEPS_LOGGED}" in p.read_text() for p in reports)

    running = sum(r.status.value == "running" for r in outcome.runs)
    requests = sum(counts.values())
    print(f"runs submitted            {total} ({args.files} files) in {submit_s:.1f}s")
    print(f"poll wall time            {poll_s:.2f}s  (second poll: {second_s:.2f}s)")
    print(f"runs advanced to running  {running}")
    print(
        f"runs with step and loss   {shown}"
        f"  (reports showing them: {with_progress} of {len(reports)})"
    )
    print(
        f"requests in one poll      {requests}: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )
    print(f"requests per run          {requests / total:.3f}  (one log fetch per run: 1.000)")


if __name__ == "__main__":
    main()
