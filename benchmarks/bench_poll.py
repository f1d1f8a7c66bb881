"""How much one `poll` costs over many active HF Jobs runs, against the loopback API.

    .venv/bin/python benchmarks/bench_poll.py [--runs 200] [--page-size 50]

Submits N experiments through the real runner and the real huggingface_hub client
to the loopback fake in tests/, marks every job RUNNING with a few log lines, then
times one `poll` and counts the requests it made, by kind. The point: status is
one paginated list for all runs (N/page-size requests), never N inspects.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ["HF_HUB_OFFLINE"] = "0"

from huggingface_hub import constants  # noqa: E402

from ci_runner.backend.hf_jobs import HfJobsBackend, RetryPolicy  # noqa: E402
from ci_runner.flow.poll import poll as poll_once  # noqa: E402
from ci_runner.flow.submit import submit as submit_file  # noqa: E402
from ci_runner.flow.workspace import Workspace  # noqa: E402
from ci_runner.paths import Project  # noqa: E402
from tests.hf_jobs_server import FakeHFJobs  # noqa: E402

TOKEN = "hf_bench_token"
SPEC = """name: {name}
base_model: Qwen/Qwen3-0.6B
method: sft
dataset: trl-lib/Capybara
hyperparameters: {{max_steps: 100}}
hardware: t4-small
timeout: 1h
output: {{hub_model_id: bench/{name}}}
backend: hf-jobs
"""


def kind(method: str, path: str) -> str:
    if path.endswith("/logs"):
        return "logs"
    if method == "POST":
        return "create"
    return "list" if path.count("/") == 3 else "inspect"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--page-size", type=int, default=50)
    args = parser.parse_args()
    constants.HF_HUB_OFFLINE = False
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeHFJobs(
            namespace="bench", page_size=args.page_size, token=TOKEN, stream_idle_close_s=0.02
        ) as hf,
    ):
        os.environ["HF_ENDPOINT"] = hf.url
        root = Path(tmp)
        (root / "experiments").mkdir()
        backend = HfJobsBackend(
            hf.api(TOKEN),
            namespace="bench",
            token=TOKEN,
            repo="bench",
            retry=RetryPolicy(base_delay_s=0),
            sleep=lambda s: None,
        )
        runner = Workspace(Project(root), backends={"hf-jobs": backend})
        started = time.perf_counter()
        for i in range(args.runs):
            spec = root / "experiments" / f"run-{i:03d}.yaml"
            spec.write_text(SPEC.format(name=f"run-{i:03d}"))
            submit_file(runner, spec)
        submit_s = time.perf_counter() - started
        for job_id in hf.jobs:
            hf.set_stage(job_id, "RUNNING")
            hf.add_logs(job_id, [f"[step {s}/100] loss={3 - s / 50:.3f}" for s in range(1, 11)])
        hf.requests.clear()
        started = time.perf_counter()
        outcome = poll_once(runner)
        poll_s = time.perf_counter() - started
        counts = Counter(kind(r.method, r.path) for r in hf.requests)
        started = time.perf_counter()
        poll_once(runner)
        second_s = time.perf_counter() - started

    running = sum(r.status.value == "running" for r in outcome.runs)
    print(f"runs submitted            {args.runs} in {submit_s:.1f}s")
    print(
        f"poll wall time            {poll_s:.2f}s  (second poll, nothing changed: {second_s:.2f}s)"
    )
    print(f"runs advanced to running  {running}")
    print(
        f"requests in one poll      {sum(counts.values())}: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )
    print(
        f"status requests per run   {(counts['list'] + counts['inspect']) / args.runs:.3f}"
        f"  (one inspect per run would be 1.000)"
    )
    print(
        "note: the real Hub keeps a running job's log stream open; huggingface_hub's\n"
        "      fetch_job_logs(follow=False) then waits its 5 s read timeout per job,\n"
        f"      so against the Hub expect ~{args.runs * 5 / 8:.0f}s for logs with 8 workers."
    )


if __name__ == "__main__":
    main()
