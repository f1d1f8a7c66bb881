"""A run's evaluations share one process locally (``evaluate_many.py``); each model's
result still reaches its own phase job, as if it had had a job of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ci_runner.core.jobs import JobHandle, JobRequest, JobState, JobStatus
from ci_runner.flow.launch import launch_phase_jobs
from ci_runner.flow.poll import fold_facts
from ci_runner.flow.workspace import Workspace
from ci_runner.job_scripts.protocol import SUMMARY_PREFIX
from ci_runner.ledger.model import Run, RunStatus
from ci_runner.ledger.phases import close_phase, eval_jobs, job_groups, phase_finished
from ci_runner.paths import Project
from ci_runner.runconfig import EvalBatchConfig, EvalConfig
from tests.test_evaluate import JOB_SCRIPTS, assert_evaluated, eval_config
from tests.test_phases import EVAL, NOW, make_run


class RecordingBackend:
    """Records what was submitted; ``existing`` are jobs it already has, by their phase
    label; ``started`` are jobs with all their labels, found as the real backends find."""

    def __init__(
        self,
        name: str,
        existing: dict[str, str] | None = None,
        started: list[tuple[dict[str, str], str]] = (),
    ) -> None:
        self.name = name
        self.requests: list[JobRequest] = []
        self.existing = existing or {}
        self.started = list(started)

    def find(self, labels: dict[str, str]) -> list[JobHandle]:
        found = [
            job_id
            for job_labels, job_id in self.started
            if all(job_labels.get(k) == v for k, v in labels.items())
        ]
        job_id = self.existing.get(labels["ci-runner.stage"])
        found += [job_id] if job_id else []
        return [JobHandle(job_id, f"url/{job_id}") for job_id in found]

    def launch(self, request: JobRequest) -> JobHandle:
        self.requests.append(request)
        job_id = f"job-{len(self.requests)}"
        return JobHandle(job_id, f"url/{job_id}")


def eval_run(backend: str = "local", **fields) -> Run:
    run = make_run(
        backend=backend,
        evaluation={**EVAL, "checkpoints": None},
        phase="eval",
        status=RunStatus.RUNNING,
        **fields,
    )
    jobs = eval_jobs(run, final_model="out", checkpoints=[], now=NOW)
    return run.model_copy(update={"phase_jobs": jobs})


def launch(tmp_path: Path, run: Run, backend: RecordingBackend) -> Run:
    ws = Workspace(Project(tmp_path), backends={run.backend: backend})
    return launch_phase_jobs(ws, run)


def test_local_evaluations_start_as_one_job_running_evaluate_many(tmp_path):
    backend = RecordingBackend("local")
    run = launch(tmp_path, eval_run(), backend)
    (request,) = backend.requests
    assert request.script.name == "evaluate_many.py"
    assert request.labels["ci-runner.stage"] == "eval-base.final"
    assert isinstance(request.run_config, EvalBatchConfig)
    base, final = request.run_config.evaluations
    assert (base.model_label, base.model, base.eval_id) == ("base", "Qwen/Qwen3-0.6B", "r-1-base")
    assert (final.model_label, final.model) == ("final", "out")
    assert base.output_dir != final.output_dir  # each writes where its own job would
    assert [(j.key, j.job_id, j.job_url) for j in run.phase_jobs] == [
        ("base", "job-1", "url/job-1"),
        ("final", "job-1", "url/job-1"),
    ]
    assert launch(tmp_path, run, backend) == run and len(backend.requests) == 1  # started once


def test_hf_jobs_evaluations_keep_a_job_each(tmp_path):
    backend = RecordingBackend("hf-jobs")
    run = launch(tmp_path, eval_run("hf-jobs"), backend)
    assert [r.script.name for r in backend.requests] == ["evaluate.py", "evaluate.py"]
    assert [r.labels["ci-runner.stage"] for r in backend.requests] == ["eval-base", "eval-final"]
    assert all(isinstance(r.run_config, EvalConfig) for r in backend.requests)
    assert [j.job_id for j in run.phase_jobs] == ["job-1", "job-2"]


def test_a_projects_own_evaluate_py_keeps_a_job_per_model(tmp_path):
    (tmp_path / "job_scripts").mkdir()
    (tmp_path / "job_scripts" / "evaluate.py").write_text("# the project's own\n")
    backend = RecordingBackend("local")
    launch(tmp_path, eval_run(), backend)
    assert [r.script for r in backend.requests] == [tmp_path / "job_scripts" / "evaluate.py"] * 2


def test_a_shared_job_started_before_a_crash_is_adopted(tmp_path):
    backend = RecordingBackend("local", existing={"eval-base.final": "job-0"})
    run = launch(tmp_path, eval_run(), backend)
    assert backend.requests == []
    assert [j.job_id for j in run.phase_jobs] == ["job-0", "job-0"]


def test_a_job_labelled_by_the_previous_version_is_adopted(tmp_path):
    """A job already on a backend keeps the labels it was started with: its phase under
    ``ci-runner.stage``, and, for a rerun, an experiment label cut from the run id."""
    run = eval_run("hf-jobs", run_id="exp-1a2b3c4d-r2", experiment="exp")
    labels = {"ci-runner.experiment": "exp-1a2b3c4d", "ci-runner.run": run.run_id}
    backend = RecordingBackend(
        "hf-jobs",
        started=[
            ({**labels, "ci-runner.stage": "eval-base"}, "job-b"),
            ({**labels, "ci-runner.stage": "eval-final"}, "job-f"),
        ],
    )
    run = launch(tmp_path, run, backend)
    assert backend.requests == []
    assert [(j.key, j.job_id) for j in run.phase_jobs] == [("base", "job-b"), ("final", "job-f")]


def test_a_new_phase_job_is_labelled_with_its_run_experiment_and_phase(tmp_path):
    backend = RecordingBackend("hf-jobs")
    launch(tmp_path, eval_run("hf-jobs", run_id="exp-1a2b3c4d-r2", experiment="exp"), backend)
    assert backend.requests[0].labels == {
        "ci-runner.experiment": "exp",
        "ci-runner.run": "exp-1a2b3c4d-r2",
        "ci-runner.stage": "eval-base",
    }


def test_only_evaluations_are_grouped_and_only_when_asked():
    run = eval_run()
    base, final = run.phase_jobs
    assert job_groups([base, final], share_evals=True) == [[base, final]]
    assert job_groups([base, final], share_evals=False) == [[base], [final]]
    assert job_groups([final], share_evals=True) == [[final]]


def summary_line(**fields) -> str:
    return SUMMARY_PREFIX + json.dumps({"schema_version": 1, **fields})


def scored(label: str, score: float) -> str:
    entry = {"benchmark": "gsm8k", "fewshot": 0, "metric": "exact_match", "score": score}
    return summary_line(status="completed", model_label=label, scores=[entry])


def shared(run: Run) -> Run:
    jobs = [j.model_copy(update={"job_id": "j", "job_url": "log"}) for j in run.phase_jobs]
    return run.model_copy(update={"phase_jobs": jobs})


def test_each_model_takes_its_own_summary_from_a_shared_job():
    run = shared(eval_run())
    lines = ["loading", scored("base", 0.25), "more output", scored("final", 0.75)]
    ended = JobStatus("j", JobState.COMPLETED, 0, None, NOW)
    run = fold_facts(run, {"j": (ended, lines)}, {})
    assert phase_finished(run, "eval")
    assert [(e.model_label, e.score) for e in run.evaluations] == [("base", 0.25), ("final", 0.75)]
    assert close_phase(run, "eval").status == RunStatus.COMPLETED


def test_one_failed_model_fails_only_its_own_phase_job():
    run = shared(eval_run())
    failed = summary_line(status="failed", model_label="base", error="no such model")
    lines = [failed, scored("final", 0.5)]
    ended = JobStatus("j", JobState.ERROR, 1, "exited with code 1", NOW)
    run = fold_facts(run, {"j": (ended, lines)}, {})
    base, final = run.phase_jobs
    assert (base.state, base.message) == (JobState.ERROR, "no such model")
    assert (final.state, final.message) == (JobState.COMPLETED, None)
    assert [(e.model_label, e.score) for e in run.evaluations] == [("final", 0.5)]
    closed = close_phase(run, "eval")
    assert closed.status == RunStatus.FAILED and closed.error == "eval base: no such model"


def test_a_shared_job_that_died_before_a_models_summary_fails_that_model():
    run = shared(eval_run())
    killed = JobStatus("j", JobState.ERROR, -9, "killed by SIGKILL", NOW)
    run = fold_facts(run, {"j": (killed, [scored("base", 0.5)])}, {})
    base, final = run.phase_jobs
    assert base.state == JobState.COMPLETED
    assert (final.state, final.message) == (JobState.ERROR, "killed by SIGKILL")


def test_a_job_of_its_own_reads_its_last_summary_whatever_it_names():
    run = eval_run()
    final = run.phase_jobs[1].model_copy(update={"job_id": "f"})
    run = run.model_copy(update={"phase_jobs": [run.phase_jobs[0], final]})
    entry = {"benchmark": "gsm8k", "fewshot": 0, "metric": "exact_match", "score": 1.0}
    lines = [summary_line(status="completed", scores=[entry])]  # no model_label
    run = fold_facts(run, {"f": (JobStatus("f", JobState.COMPLETED, 0), lines)}, {})
    assert [(e.model_label, e.score) for e in run.evaluations] == [("final", 1.0)]


@pytest.mark.training
def test_evaluate_many_evaluates_each_model_as_evaluate_py_does(tiny_fixtures, job_env, tmp_path):
    """A model that fails prints its failure and the next is still evaluated; the job then
    exits 1, and each model's summary is the one evaluate.py would have printed."""
    missing = eval_config(
        tmp_path / "a", tiny_fixtures, model=tmp_path / "missing", model_label="final"
    )
    base = eval_config(tmp_path / "b", tiny_fixtures)
    batch = EvalBatchConfig(evaluations=[missing, base]).model_dump(mode="json")
    proc = subprocess.run(
        [sys.executable, str(JOB_SCRIPTS / "evaluate_many.py"), "--config", json.dumps(batch)],
        cwd=tmp_path,
        env=job_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-6000:]
    summaries = [
        json.loads(line[len(SUMMARY_PREFIX) :])
        for line in proc.stdout.splitlines()
        if line.startswith(SUMMARY_PREFIX)
    ]
    assert [(s["model_label"], s["status"]) for s in summaries] == [
        ("final", "failed"),
        ("base", "completed"),
    ]
    assert str(tmp_path / "missing") in summaries[0]["error"]
    assert_evaluated(0, output, summaries[1], base)
