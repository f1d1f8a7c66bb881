"""The base model is evaluated at submit, beside training, and once: every run and
experiment on the same pinned base, benchmarks and lighteval takes its scores, per-sample
values included, and the report names the run that evaluated it.

Submit and poll go through the real ``huggingface_hub`` client against the loopback HF
Jobs API (pins included); the local backend runs the real evaluation job in
``test_demo_learns`` and the runner tests.
"""

from __future__ import annotations

import json

import pytest

from ci_runner.backend.hf_jobs import CONFIG_ENV
from ci_runner.commands import cancel
from ci_runner.flow.poll import poll as poll_once
from ci_runner.flow.submit import submit as submit_file
from ci_runner.ledger.model import RunStatus
from ci_runner.ledger.phases import BASE
from ci_runner.ledger.repository import find_run
from ci_runner.ledger.repository import ledgers as ledgers_of
from tests.test_hf_jobs_backend import creates, make_runner, summary_line, write

pytestmark = pytest.mark.usefixtures("loopback_online")

EVALUATION = "evaluation:\n  benchmarks:\n    - {benchmark: gsm8k, max_samples: 8}\n"
SWEEP = EVALUATION + "matrix:\n  hyperparameters.learning_rate: [1.0e-4, 2.0e-4, 5.0e-4, 1.0e-3]\n"
BASE_SAMPLES = [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
FINAL_SAMPLES = [1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]


def config_of(request) -> dict:
    return json.loads(request.json["environment"][CONFIG_ENV])


def job_id_of(request) -> str:
    return json.loads(request.response_body)["id"]


def eval_creates(hf) -> list:
    return [r for r in creates(hf) if "model_label" in config_of(r)]


def finish_eval(hf, request, samples: list[float]) -> None:
    label = config_of(request)["model_label"]
    score = {
        "benchmark": "gsm8k",
        "fewshot": 0,
        "metric": "exact_match",
        "score": sum(samples) / len(samples),
        "values": samples,
    }
    hf.add_logs(job_id_of(request), [summary_line(model_label=label, scores=[score])])
    hf.set_stage(job_id_of(request), "COMPLETED")


def finish_training(hf, job_id: str) -> None:
    hf.add_logs(job_id, [summary_line()])
    hf.set_stage(job_id, "COMPLETED")


def test_a_four_run_sweep_evaluates_its_base_once_at_submit(project, hf):
    ws = make_runner(project, hf)
    outcome = submit_file(ws, write(project, "sweep", SWEEP), check_data=False)
    runs = outcome.runs
    assert [r.status for r in runs] == ["submitted"] * 4
    (base_request,) = eval_creates(hf)  # beside the four trainings, not after them
    assert len(creates(hf)) == 5
    base_config = config_of(base_request)
    sha = hf.default_sha("models", "Qwen/Qwen3-0.6B", "main")
    assert (base_config["model_label"], base_config["model"]) == (BASE, f"Qwen/Qwen3-0.6B@{sha}")
    first, *others = runs
    jobs = {r.run_id: find_run(project, r.run_id)[1].phase_jobs for r in runs}
    assert all(len(j) == 1 and j[0].job_id == job_id_of(base_request) for j in jobs.values())
    assert jobs[first.run_id][0].reused_from is None
    assert {jobs[r.run_id][0].reused_from for r in others} == {first.run_id}

    finish_eval(hf, base_request, BASE_SAMPLES)  # done while every run still trains
    poll_once(ws)
    for summary in runs:
        _, run = find_run(project, summary.run_id)
        assert run.status == RunStatus.RUNNING and run.phase == "train"
        (ev,) = run.evaluations
        assert (ev.model_label, ev.score, ev.samples) == (BASE, 0.25, BASE_SAMPLES)
        assert ev.reused_from == (None if summary is first else first.run_id)

    finish_training(hf, first.job_id)
    poll_once(ws)
    final_requests = eval_creates(hf)[1:]
    assert [config_of(r)["model_label"] for r in final_requests] == ["final"]  # no base again
    finish_eval(hf, final_requests[0], FINAL_SAMPLES)
    poll_once(ws)
    ledger, run = find_run(project, first.run_id)
    assert run.status == RunStatus.COMPLETED
    assert [e.model_label for e in run.evaluations] == [BASE, "final"]

    # the poll is idempotent: nothing new is asked, written or started
    before = (project.root / ledger.report_path).read_text()
    assert poll_once(ws).changed == []
    assert (project.root / ledger.report_path).read_text() == before
    assert len(eval_creates(hf)) == 2


def test_another_experiment_on_the_base_takes_its_scores_and_names_the_run(project, hf):
    ws = make_runner(project, hf)
    first = submit_file(ws, write(project, "one", EVALUATION), check_data=False)
    (base_request,) = eval_creates(hf)
    finish_eval(hf, base_request, BASE_SAMPLES)
    poll_once(ws)

    other = submit_file(ws, write(project, "two", EVALUATION), check_data=False)
    assert len(eval_creates(hf)) == 1  # no second evaluation of the same base
    _, run = find_run(project, other.run_id)
    (ev,) = run.evaluations
    assert (ev.samples, ev.reused_from) == (BASE_SAMPLES, first.run_id)
    (job,) = run.phase_jobs
    assert job.done and job.reused_from == first.run_id

    finish_training(hf, other.job_id)
    poll_once(ws)
    (final_request,) = eval_creates(hf)[1:]
    finish_eval(hf, final_request, FINAL_SAMPLES)
    poll_once(ws)
    ledger, run = find_run(project, other.run_id)
    assert run.status == RunStatus.COMPLETED
    report = (project.root / ledger.report_path).read_text()
    assert f"reused from `{first.run_id}`" in report
    assert "Δ +0.625 [+0.250, +0.875], a significant gain" in report  # reused samples, paired


@pytest.mark.parametrize(
    "change",
    [
        EVALUATION.replace("max_samples: 8", "max_samples: 9"),  # other benchmark settings
        EVALUATION.replace("gsm8k,", "gsm8k, fewshot: 2,"),
    ],
)
def test_other_benchmark_settings_evaluate_the_base_again(project, hf, change):
    ws = make_runner(project, hf)
    submit_file(ws, write(project, "one", EVALUATION), check_data=False)
    finish_eval(hf, eval_creates(hf)[0], BASE_SAMPLES)
    poll_once(ws)
    submit_file(ws, write(project, "two", change), check_data=False)
    assert len(eval_creates(hf)) == 2


def test_another_lighteval_evaluates_the_base_again(project, hf):
    ws = make_runner(project, hf)
    submit_file(ws, write(project, "one", EVALUATION), check_data=False)
    finish_eval(hf, eval_creates(hf)[0], BASE_SAMPLES)
    poll_once(ws)
    own = project.root / "job_scripts"
    own.mkdir()
    script = ws.project.job_script("evaluate.py").path.read_text(encoding="utf-8")
    (own / "evaluate.py").write_text(script.replace("lighteval==0.13.0", "lighteval==0.14.0"))
    submit_file(ws, write(project, "two", EVALUATION), check_data=False)
    assert len(eval_creates(hf)) == 2


def test_an_unpinned_base_is_never_reused(project, hf):
    hf.fail_next("GET", r"^/api/(models|datasets)/", status=503, times=20)  # not pinned
    ws = make_runner(project, hf)
    submit_file(ws, write(project, "one", EVALUATION), check_data=False)
    submit_file(ws, write(project, "two", EVALUATION), check_data=False)
    assert len(eval_creates(hf)) == 2


def test_canceling_a_run_leaves_the_base_job_it_shares_running(project, hf):
    ws = make_runner(project, hf)
    runs = submit_file(ws, write(project, "sweep", SWEEP), check_data=False).runs
    (base_request,) = eval_creates(hf)
    result = cancel(ws, runs[1].run_id)
    assert result.canceled and job_id_of(base_request) not in result.message
    assert hf.requests_to("POST", rf"/{job_id_of(base_request)}/cancel$") == []
    finish_eval(hf, base_request, BASE_SAMPLES)
    poll_once(ws)
    ledger = ledgers_of(project)[0]
    scored = [r for r in ledger.runs if r.evaluations]
    assert len(scored) == 3  # the canceled run stops; the others got their base scores


# --- what identifies a base's scores (local inputs) ----------------------------------


def local_run(tmp_path, **fields):
    from tests.test_phases import make_run

    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text("{}")
    (model / "tokenizer.json").write_text('{"v": 1}')
    bench = tmp_path / "bench"
    bench.mkdir(exist_ok=True)
    (bench / "test.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n')
    evaluation = {"benchmarks": [{"benchmark": "gsm8k", "dataset": str(bench)}]}
    return make_run(
        base_model=str(model),
        base_model_revision="sha256:0123456789abcdef",
        evaluation=evaluation,
        status=RunStatus.RUNNING,
        **fields,
    )


def test_a_local_bases_fingerprint_follows_its_files_and_its_benchmark_data(tmp_path):
    from ci_runner.flow.base_eval import fingerprint
    from ci_runner.flow.workspace import Workspace
    from ci_runner.paths import Project

    ws = Workspace(Project(tmp_path))
    run = local_run(tmp_path)
    first = fingerprint(ws, run)
    assert first and fingerprint(ws, local_run(tmp_path, run_id="r-2")) == first  # not per run
    (tmp_path / "bench" / "test.jsonl").write_text('{"question": "q", "answer": "#### 2"}\n')
    second = fingerprint(ws, run)
    assert second != first  # the benchmark's rows changed
    (tmp_path / "model" / "tokenizer.json").write_text('{"v": 2}')
    assert fingerprint(ws, run) not in (first, second)  # the tokenizer, beyond the pin
    assert fingerprint(ws, run.model_copy(update={"base_model_revision": None})) is None


# --- a local final evaluation waits for its training job -----------------------------


def test_the_waiting_evaluation_goes_on_only_after_training_completed(tmp_path):
    import os
    import threading

    from ci_runner.job_scripts import protocol

    job = tmp_path / "local-train"
    job.mkdir()
    (job / "pid").write_text(f"{os.getpid()}\n")  # alive: it waits
    ended = threading.Timer(
        0.3, lambda: (job / "exit.json").write_text('{"exit_code": 0, "finished_at": "x"}')
    )
    ended.start()
    protocol.wait_for_job(str(job), poll_s=0.05)
    assert (job / "exit.json").exists()
    (job / "exit.json").write_text('{"exit_code": 1, "finished_at": "x"}')
    with pytest.raises(protocol.TrainingNotCompleted, match="exited with code 1"):
        protocol.wait_for_job(str(job), poll_s=0.05)
    (job / "exit.json").unlink()
    (job / "pid").write_text("999999999\n")  # gone, with no exit code: it does not hang
    with pytest.raises(protocol.TrainingNotCompleted, match="recorded no exit code"):
        protocol.wait_for_job(str(job), poll_s=0.05)


def test_locally_one_job_starts_with_training_and_a_resumed_attempt_gets_its_own_wait(tmp_path):
    from ci_runner.core.jobs import JobState, JobStatus
    from ci_runner.flow.base_eval import start_base_evaluation
    from ci_runner.flow.poll import fold_facts
    from ci_runner.flow.workspace import Workspace
    from ci_runner.ledger.model import Attempt, Ledger
    from ci_runner.paths import Project
    from tests.test_phases import NOW, make_run
    from tests.test_shared_eval import RecordingBackend, scored

    backend = RecordingBackend("local")
    ws = Workspace(Project(tmp_path), backends={"local": backend})
    first = Attempt(number=1, backend="local", job_id="train-1", submitted_at=NOW)
    run = make_run(
        evaluation={"benchmarks": [{"benchmark": "gsm8k"}]},
        status=RunStatus.RUNNING,
        attempts=[first],
    )
    ledger = Ledger(
        experiment="e", spec_path="e.yaml", report_path="e.md", base_model="b", dataset="d",
        method="sft", runs=[run],
    )  # fmt: skip
    run = start_base_evaluation(ws, ledger, run)
    (request,) = backend.requests
    assert request.script.name == "evaluate_many.py"  # base, then final once training ended
    base, final = request.run_config.evaluations
    assert base.after_job is None
    assert final.after_job == str(ws.project.jobs_dir / "train-1")
    assert [(j.key, j.job_id) for j in run.phase_jobs] == [("base", "job-1"), ("final", "job-1")]
    assert run.phase_jobs[1].after_attempt == 1
    assert start_base_evaluation(ws, ledger, run) == run  # started once

    # training failed and resumes: the final's evaluation waits for the new attempt
    second = Attempt(number=2, backend="local", job_id="train-2", submitted_at=NOW)
    run = start_base_evaluation(ws, ledger, run.model_copy(update={"attempts": [first, second]}))
    assert backend.requests[1].script.name == "evaluate.py"
    assert backend.requests[1].run_config.after_job == str(ws.project.jobs_dir / "train-2")
    assert [(j.key, j.job_id) for j in run.phase_jobs] == [("base", "job-1"), ("final", "job-2")]
    # the first job ended in error (its final part failed): the base keeps its own result
    failed = JobStatus("job-1", JobState.ERROR, 1, "exited with code 1", NOW)
    stale = summary_line(status="failed", model_label="final", error="training job failed")
    lines = [scored("base", 0.25), stale]
    run = fold_facts(run, {"job-1": (failed, lines)}, {})
    assert run.phase_jobs[0].state == JobState.COMPLETED
    assert [(e.model_label, e.score) for e in run.evaluations] == [("base", 0.25)]


def test_a_run_that_evaluates_nothing_starts_no_evaluation(tmp_path):
    from ci_runner.flow.base_eval import start_base_evaluation
    from ci_runner.flow.workspace import Workspace
    from ci_runner.ledger.model import Attempt, Ledger
    from ci_runner.paths import Project
    from tests.test_phases import NOW, make_run
    from tests.test_shared_eval import RecordingBackend

    backend = RecordingBackend("local")
    ws = Workspace(Project(tmp_path), backends={"local": backend})
    attempt = Attempt(number=1, backend="local", job_id="train-1", submitted_at=NOW)
    run = make_run(status=RunStatus.RUNNING, attempts=[attempt])
    ledger = Ledger(
        experiment="e", spec_path="e.yaml", report_path="e.md", base_model="b", dataset="d",
        method="sft", runs=[run],
    )  # fmt: skip
    assert start_base_evaluation(ws, ledger, run) == run and backend.requests == []
