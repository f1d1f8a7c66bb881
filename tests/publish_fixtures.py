"""Shared setup for publishing tests: a real bare repository, a CI checkout, ledgers.

Ledgers are built as data (no training), and the report and plot beside them are
rendered by the real Runner, exactly as ``poll`` writes them.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ci_runner.ledger.model import (
    Attempt,
    Evaluation,
    JobState,
    Ledger,
    Run,
    RunStatus,
    TrainMetrics,
)
from ci_runner.ledger.store import save_ledger
from ci_runner.paths import Project
from ci_runner.report.files import write_report

EXPERIMENT = "qwen3-codeforces-sft"
STEM = "qwen3-0.6b-codeforces-cots-sft"
BASE_MODEL = "Qwen/Qwen3-0.6B"
JOB_URL = "https://huggingface.co/jobs/acme/6938272ec67c9f186cfe1ae3"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Person",
    "GIT_AUTHOR_EMAIL": "person@example.com",
    "GIT_COMMITTER_NAME": "Test Person",
    "GIT_COMMITTER_EMAIL": "person@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str, env: dict | None = None) -> str:
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV, **(env or {})},
        check=True,
    )
    return proc.stdout.strip()


def make_remote(tmp: Path) -> tuple[Path, Path]:
    """A bare 'GitHub' repository with one commit on main, and a CI checkout of it."""
    bare = tmp / "remote.git"
    git(tmp, "init", "--quiet", "--bare", "-b", "main", str(bare))
    seed = tmp / "seed"
    git(tmp, "init", "--quiet", "-b", "main", str(seed))
    (seed / "experiments").mkdir()
    (seed / "experiments" / f"{EXPERIMENT}.yaml").write_text(f"name: {EXPERIMENT}\n")
    (seed / "README.md").write_text("models\n")
    git(seed, "add", ".")
    git(seed, "commit", "--quiet", "-m", "initial")
    git(seed, "remote", "add", "origin", str(bare))
    git(seed, "push", "--quiet", "origin", "main")
    work = tmp / "work"
    git(tmp, "clone", "--quiet", str(bare), str(work))
    return bare, work


def make_run(*, step: int, loss: float, done: bool, score: float | None, error: str | None = None):
    status = RunStatus.COMPLETED if done else RunStatus.RUNNING
    evaluations = [
        Evaluation(
            benchmark="humaneval",
            metric="pass@1",
            model=BASE_MODEL,
            model_url=f"https://huggingface.co/{BASE_MODEL}",
            score=0.304,
            status=RunStatus.COMPLETED,
        )
    ]
    if score is not None:
        evaluations.append(
            Evaluation(
                benchmark="humaneval",
                metric="pass@1",
                model="acme/qwen3-sft",
                model_url="https://huggingface.co/acme/qwen3-sft",
                score=score,
                status=RunStatus.COMPLETED,
            )
        )
    return Run(
        run_id=f"{EXPERIMENT}-3f2a9c1d",
        experiment=EXPERIMENT,
        title=f"{EXPERIMENT}-3f2a9c1d",
        method="sft",
        spec_hash="3f2a9c1d",
        created_at="2026-11-20T09:14:05Z",
        status=status,
        backend="hf-jobs",
        hardware="a10g-large",
        timeout="2h",
        base_model=BASE_MODEL,
        dataset="open-r1/codeforces-cots",
        dataset_split="train",
        hyperparameters={"max_steps": 100, "learning_rate": 2e-05},
        output_dir="/tmp/ci-runner/out",
        hub_model_id="acme/qwen3-sft",
        hub_model_url="https://huggingface.co/acme/qwen3-sft",
        tracking_project="qwen3-codeforces-sft",
        tracking_run="run",
        attempts=[
            Attempt(
                number=1,
                backend="hf-jobs",
                job_id="6938272ec67c9f186cfe1ae3",
                job_url=JOB_URL,
                submitted_at="2026-11-20T09:14:09Z",
                state=JobState.COMPLETED if done else JobState.RUNNING,
            )
        ],
        metrics=TrainMetrics(
            step=step,
            max_steps=100,
            final_loss=loss,
            loss_curve=[(s, round(2.0 - s / 100, 4)) for s in range(0, step + 1, 10)],
        ),
        evaluations=evaluations,
        error=error,
    )


def write_results(work: Path, run: Run) -> Ledger:
    """Write the ledger, report and plot as ``poll`` would."""
    project = Project(work)
    ledger = Ledger(
        experiment=EXPERIMENT,
        spec_path=f"experiments/{EXPERIMENT}.yaml",
        report_path=f"training_reports/{STEM}.md",
        base_model=BASE_MODEL,
        base_model_url=f"https://huggingface.co/{BASE_MODEL}",
        dataset="open-r1/codeforces-cots",
        dataset_url="https://huggingface.co/datasets/open-r1/codeforces-cots",
        method="sft",
        runs=[run],
    )
    save_ledger(project.ledger_path(STEM), ledger)
    write_report(project, STEM, ledger)
    return ledger
