"""Pure phase transitions after training: evaluate, pick the best, export."""

from __future__ import annotations

from ci_runner.core.jobs import JobStatus
from ci_runner.job_scripts.protocol import EvalSummary
from ci_runner.ledger.model import JobState, Run, RunStatus
from ci_runner.ledger.phases import (
    apply_phase_status,
    best_model,
    close_phase,
    enter_next_phase,
    eval_jobs,
    export_job,
    phase_finished,
)

NOW = "2026-11-22T00:00:00Z"


def make_run(**fields) -> Run:
    base = dict(
        run_id="r-1",
        experiment="r",
        title="r-1",
        method="sft",
        spec_hash="h",
        created_at=NOW,
        backend="local",
        hardware="local",
        base_model="Qwen/Qwen3-0.6B",
        dataset="d",
        dataset_split="train",
        output_dir="out",
        tracking_project="p",
        tracking_run="r-1",
        status=RunStatus.COMPLETED,
    )
    return Run(**(base | fields))


EVAL = {
    "benchmarks": [{"benchmark": "humaneval"}, {"benchmark": "gsm8k", "fewshot": 5}],
    "models": ["base", "final"],
    "checkpoints": "all",
}


def scores(humaneval: float, gsm8k: float) -> EvalSummary:
    return EvalSummary(
        status="completed",
        scores=[
            {"benchmark": "humaneval", "fewshot": 0, "metric": "pass@1", "score": humaneval},
            {"benchmark": "gsm8k", "fewshot": 5, "metric": "em", "score": gsm8k},
        ],
    )


def test_without_later_phases_training_completes_the_run():
    run = enter_next_phase(make_run(), after="train")
    assert (run.phase, run.status) == ("done", RunStatus.COMPLETED)


def test_evaluation_keeps_the_run_in_progress_and_plans_one_job_per_model():
    run = enter_next_phase(make_run(evaluation=EVAL), after="train")
    assert (run.phase, run.status) == ("eval", RunStatus.RUNNING)
    jobs = eval_jobs(
        run, final_model="out", checkpoints=["out/checkpoint-5", "out/checkpoint-10"], now=NOW
    )
    assert [(j.key, j.model) for j in jobs] == [
        ("base", "Qwen/Qwen3-0.6B"),
        ("checkpoint-5", "out/checkpoint-5"),
        ("checkpoint-10", "out/checkpoint-10"),
        ("final", "out"),
    ]


def test_results_best_model_and_export():
    run = enter_next_phase(
        make_run(evaluation=EVAL, export={"gguf": {"quantizations": ["Q4_K_M"]}}), after="train"
    )
    jobs = eval_jobs(run, final_model="out", checkpoints=["out/checkpoint-5"], now=NOW)
    jobs = [j.model_copy(update={"job_id": f"j-{j.key}", "job_url": f"u/{j.key}"}) for j in jobs]
    run = run.model_copy(update={"phase_jobs": jobs})
    results = {
        "base": scores(0.30, 0.2),
        "checkpoint-5": scores(0.36, 0.1),
        "final": scores(0.34, 0.5),
    }
    for job in jobs[:-1]:
        run = apply_phase_status(
            run, job, JobStatus(job.job_id, JobState.COMPLETED), results[job.key]
        )
        assert not phase_finished(run, "eval")
    run = apply_phase_status(
        run, jobs[-1], JobStatus("j-final", JobState.COMPLETED), results["final"]
    )
    assert phase_finished(run, "eval")
    assert best_model(run) == "out/checkpoint-5"  # best on the first benchmark, humaneval
    run = close_phase(run, "eval")
    assert (run.phase, run.status, run.best_model) == (
        "export",
        RunStatus.RUNNING,
        "out/checkpoint-5",
    )
    assert len(run.evaluations) == 6
    assert {e.benchmark for e in run.evaluations} == {"humaneval", "gsm8k (5-shot)"}
    assert export_job(run, now=NOW).model == "out/checkpoint-5"


def test_a_failed_eval_fails_the_run_with_its_reason():
    run = enter_next_phase(make_run(evaluation=EVAL), after="train")
    (job,) = [
        j.model_copy(update={"job_id": "j"})
        for j in eval_jobs(run, final_model="out", checkpoints=[], now=NOW)
        if j.key == "final"
    ]
    run = run.model_copy(update={"phase_jobs": [job]})
    failed = EvalSummary.from_dict({"status": "failed", "error": "CUDA out of memory"})
    run = apply_phase_status(run, job, JobStatus("j", JobState.ERROR, 1, "exit 1"), failed)
    run = close_phase(run, "eval")
    assert run.status == RunStatus.FAILED and "eval final: CUDA out of memory" in run.error


def test_clean_exit_without_a_summary_is_a_failed_phase_job():
    run = enter_next_phase(make_run(evaluation=EVAL), after="train")
    job = eval_jobs(run, final_model="out", checkpoints=[], now=NOW)[0].model_copy(
        update={"job_id": "j"}
    )
    run = apply_phase_status(
        run.model_copy(update={"phase_jobs": [job]}),
        job,
        JobStatus("j", JobState.COMPLETED, 0),
        None,
    )
    assert run.phase_jobs[0].state == JobState.ERROR


def test_no_best_model_on_a_tie_or_without_a_rival():
    """0.000 vs 0.000 is not a win; nor is being the only model evaluated. The export then
    takes the final model."""
    from ci_runner.ledger.model import Evaluation

    def evaluated(*scored: tuple[str, str, float]) -> Run:
        return make_run(
            evaluations=[
                Evaluation(benchmark="humaneval", model_label=label, model=model, score=score)
                for label, model, score in scored
            ]
        )

    base = ("base", "Qwen/Qwen3-0.6B", 0.0)
    tie = evaluated(base, ("checkpoint-5", "out/checkpoint-5", 0.0), ("final", "out", 0.0))
    assert best_model(tie) is None
    assert export_job(tie.model_copy(update={"export": {}}), now=NOW).model == "out"
    assert best_model(evaluated(base, ("final", "out", 0.4))) is None
    win = evaluated(base, ("checkpoint-5", "out/checkpoint-5", 0.1), ("final", "out", 0.4))
    assert best_model(win) == "out"
