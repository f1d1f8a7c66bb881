"""Pure ledger transitions and log parsing: same facts in, same ledger out."""

from __future__ import annotations

from ci_runner.core.jobs import JobStatus
from ci_runner.job_scripts.protocol import TrainSummary, parse_summary
from ci_runner.ledger.advance import apply_job_status, diagnose
from ci_runner.ledger.model import Attempt, JobState, Run, RunStatus
from ci_runner.track.log_progress import parse_progress

LOG = [
    "loading model",
    "[step 1/4] loss=2.5 learning_rate=0.001 epoch=0.25",
    "[step 1/4] eval_loss=2.6",
    "[step 2/4] loss=2.25 learning_rate=0.00075 epoch=0.5 eta_s=12",
    "[step 3/4] loss=nan learning_rate=0.0005",
    "  [step 9/9] loss=1.0 (indented lines from other tools are ignored)",
]


def make_run(**attempt) -> Run:
    return Run(
        run_id="r-1",
        experiment="r",
        title="r-1",
        method="sft",
        spec_hash="abc",
        created_at="2026-11-22T00:00:00Z",
        backend="local",
        hardware="local",
        base_model="./m",
        dataset="./d.jsonl",
        dataset_split="train",
        output_dir="out",
        tracking_project="p",
        tracking_run="r-1",
        attempts=[Attempt(number=1, backend="local", job_id="j1", submitted_at="t0", **attempt)],
    )


def test_parse_progress_reads_steps_losses_and_skips_nan():
    progress = parse_progress(LOG)
    assert (progress.step, progress.max_steps) == (3, 4)
    assert progress.loss_curve == [(1, 2.5), (2, 2.25)]
    assert progress.loss == 2.25
    assert progress.learning_rate == 0.0005
    assert progress.min_loss == 2.25


def test_running_job_updates_step_and_curve():
    run = apply_job_status(
        make_run(), JobStatus("j1", JobState.RUNNING), progress=parse_progress(LOG), summary=None
    )
    assert run.status == RunStatus.RUNNING
    assert run.metrics.step == 3 and run.metrics.final_loss == 2.25
    assert run.metrics.eta_s == 12
    assert run.last_attempt.state == JobState.RUNNING


def test_completed_job_takes_metrics_from_summary():
    summary = TrainSummary.from_dict(
        parse_summary(
            [
                'CI_RUNNER_SUMMARY {"status": "completed", "steps": 4, "max_steps": 4,'
                ' "final_loss": 1.5, "min_loss": 1.4, "runtime_s": 9.5,'
                ' "train_tokens_per_s": 100.0, "loss_history": [[1, 2.5], [4, 1.5]]}'
            ]
        )
    )
    status = JobStatus("j1", JobState.COMPLETED, 0, None, "2026-11-22T00:01:00Z")
    run = apply_job_status(make_run(), status, progress=parse_progress(LOG), summary=summary)
    assert run.status == RunStatus.COMPLETED
    assert run.metrics.step == 4 and run.metrics.final_loss == 1.5
    assert run.metrics.loss_curve == [(1, 2.5), (4, 1.5)]
    assert run.last_attempt.finished_at == "2026-11-22T00:01:00Z"
    # Applying the same facts again is a no-op.
    assert apply_job_status(run, status, progress=parse_progress(LOG), summary=summary) == run


def test_clean_exit_without_summary_is_a_failure():
    run = apply_job_status(
        make_run(), JobStatus("j1", JobState.COMPLETED, 0), progress=None, summary=None
    )
    assert run.status == RunStatus.FAILED
    assert "no completion summary" in run.error


def test_error_carries_the_scripts_own_message_and_a_remedy():
    summary = TrainSummary(
        status="failed", error_type="OutOfMemoryError", error="CUDA out of memory"
    )
    run = apply_job_status(
        make_run(),
        JobStatus("j1", JobState.ERROR, 1, "exited with code 1"),
        progress=None,
        summary=summary,
    )
    assert run.status == RunStatus.FAILED
    assert run.error.startswith("OutOfMemoryError: CUDA out of memory")
    assert "per_device_train_batch_size" in run.error


def test_canceled_and_stale_status_for_another_job():
    run = apply_job_status(
        make_run(), JobStatus("j1", JobState.CANCELED, -15), progress=None, summary=None
    )
    assert run.status == RunStatus.CANCELED
    untouched = make_run()
    assert (
        apply_job_status(untouched, JobStatus("other", JobState.ERROR), progress=None, summary=None)
        == untouched
    )


def test_diagnose_known_failures():
    assert "dataset.columns" in diagnose("KeyError: 'messages'")
    assert "HF_TOKEN" in diagnose("401 Client Error: Unauthorized")
    assert diagnose("something else entirely") is None


def test_diagnose_timeout_missing_module_and_push_errors():
    assert "longer `timeout:`" in diagnose("Job timeout: exceeded 1800 seconds")
    assert "PEP 723" in diagnose("ModuleNotFoundError: No module named 'flash_attn'")
    assert "output.hub_model_id" in diagnose("push_to_hub failed: 403 Forbidden")


def test_rows_the_job_dropped_become_run_warnings_in_the_report():
    from ci_runner.ledger.model import Ledger
    from ci_runner.report.render import render_report

    summary = TrainSummary(
        status="completed",
        steps=4,
        max_steps=4,
        final_loss=1.0,
        data={"train_rows_without_content": {"dropped": 2, "total": 16, "columns": ["messages"]}},
    )
    run = apply_job_status(
        make_run(), JobStatus("j1", JobState.COMPLETED, 0), progress=None, summary=summary
    )
    assert run.warnings == ["train set: dropped 2 of 16 rows with no content in messages"]
    assert '"warnings"' in run.model_dump_json()
    assert '"warnings"' not in make_run().model_dump_json()  # older ledgers stay byte-identical
    ledger = Ledger(
        experiment="r",
        spec_path="r.yaml",
        report_path="r.md",
        base_model="./m",
        dataset="./d.jsonl",
        method="sft",
        runs=[run],
    )
    text = render_report(ledger)
    assert "> **Warning:** train set: dropped 2 of 16 rows with no content in messages" in text


def test_a_system_column_made_the_system_turn_is_said_in_the_report():
    summary = TrainSummary(
        status="completed",
        steps=4,
        max_steps=4,
        final_loss=1.0,
        data={"train_system_turn": {"column": "system"}},
    )
    run = apply_job_status(
        make_run(), JobStatus("j1", JobState.COMPLETED, 0), progress=None, summary=summary
    )
    assert run.warnings == [
        "train set: column 'system' was put first in each conversation as its system turn"
    ]


# --- the method's own metrics: kept small, idempotent ------------------------------------


def test_downsampling_keeps_at_most_200_points_first_and_last_and_is_idempotent():
    from ci_runner.job_scripts.curves import MAX_POINTS, downsample

    curve = [(s, 3.0 - s / 10_000) for s in range(1, 10_001)]
    thin = downsample(curve, 10_000)
    assert len(thin) <= MAX_POINTS
    assert thin[0] == curve[0] and thin[-1] == curve[-1]
    assert downsample(thin, 10_000) == thin
    # a poll merges a log tail (points it may have dropped) back in: still the same curve
    assert downsample([*thin, *curve[-500:]], 10_000) == thin
    short = [(1, 2.0), (2, 1.5), (3, 1.2)]
    assert downsample(short, 3) == short


def test_summary_series_keep_the_methods_own_metrics_only():
    summary = TrainSummary.from_dict(
        {
            "status": "completed",
            "steps": 4,
            "max_steps": 4,
            "final_loss": 0.0,
            "loss_history": [[1, 0.0], [2, 0.0]],
            "series": {
                "reward": [[1, 0.0], [2, 0.0]],
                "rewards/accuracy_reward/mean": [[1, 0.0], [2, 0.0]],
                "eval_loss": [[2, 1.0]],  # not one of GRPO's
                "mean_token_accuracy": [[1, 0.1]],
            },
            "nonfinite": {"grad_norm": 2},
        }
    )
    run = make_run().model_copy(update={"method": "grpo"})
    status = JobStatus("j1", JobState.COMPLETED, 0, None, "2026-11-22T00:01:00Z")
    run = apply_job_status(run, status, progress=None, summary=summary)
    assert sorted(run.metrics.series) == ["reward", "rewards/accuracy_reward/mean"]
    assert run.metrics.last("reward") == 0.0 and run.metrics.nonfinite == {"grad_norm": 2}
    assert apply_job_status(run, status, progress=None, summary=summary) == run


def test_progress_lines_fill_the_series_while_running():
    log = [
        "[step 1/4] loss=0.69 rewards/accuracies=0.5 rewards/margins=0.01 grad_norm=1.2 eta_s=9",
        "[step 2/4] loss=0.68 rewards/accuracies=0.75 rewards/margins=0.02 grad_norm=inf",
        "[step 2/4] eval_loss=0.7 epoch=0.5",
    ]
    progress = parse_progress(log)
    assert progress.nonfinite == {"grad_norm": 2}
    assert "epoch" not in progress.series and "eta_s" not in progress.series
    run = make_run().model_copy(update={"method": "dpo"})
    run = apply_job_status(run, JobStatus("j1", JobState.RUNNING), progress=progress, summary=None)
    assert run.metrics.series == {
        "eval_loss": [(2, 0.7)],
        "grad_norm": [(1, 1.2)],
        "rewards/accuracies": [(1, 0.5), (2, 0.75)],
        "rewards/margins": [(1, 0.01), (2, 0.02)],
    }
    again = apply_job_status(
        run, JobStatus("j1", JobState.RUNNING), progress=progress, summary=None
    )
    assert again == run


def test_reward_function_names_with_capitals_and_digits_are_read():
    progress = parse_progress(["[step 1/2] loss=0 reward=1 rewards/Exact2Match/mean=1"])
    assert progress.series["rewards/Exact2Match/mean"] == [(1, 1.0)]
