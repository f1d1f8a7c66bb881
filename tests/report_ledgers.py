"""Ledgers for report tests: one per method, a sweep, and one case per health check.

The curves have the shapes real TRL runs log (names, ranges, logging steps), so the
goldens show what a reviewer would see.
"""

from __future__ import annotations

import math

from ci_runner.ledger.model import (
    Attempt,
    Evaluation,
    JobState,
    Ledger,
    Run,
    RunStatus,
    TrainMetrics,
)

JOBS = "https://huggingface.co/jobs/acme"
TINY = "./fixtures/tiny-llama"


def _run(run_id: str, method: str, dataset: str, **fields) -> Run:
    """A completed local run; ``fields`` override anything."""
    values = dict(
        run_id=run_id,
        experiment=run_id.rsplit("-", 1)[0],
        title=run_id,
        method=method,
        spec_hash="0123456789ab",
        created_at="2026-11-27T15:26:27Z",
        status=RunStatus.COMPLETED,
        backend="local",
        hardware="local",
        base_model=TINY,
        dataset=dataset,
        dataset_split="train[:64]",
        output_dir=f".ci-runner/runs/{run_id}/output",
        tracking_project="tiny-demo",
        tracking_run=run_id,
        attempts=[
            Attempt(
                number=1,
                backend="local",
                job_id="local-20261127152627-71d890",
                job_url=".ci-runner/jobs/local-20261127152627-71d890/log.txt",
                submitted_at="2026-11-27T15:26:27Z",
                finished_at="2026-11-27T15:27:00Z",
                state=JobState.COMPLETED,
                exit_code=0,
            )
        ],
    )
    return Run(**(values | fields))


def _ledger(experiment: str, method: str, dataset: str, runs: list[Run], **fields) -> Ledger:
    values = dict(
        experiment=experiment,
        spec_path=f"experiments/{experiment}.yaml",
        report_path=f"training_reports/{experiment}.md",
        base_model=TINY,
        dataset=dataset,
        method=method,
        runs=runs,
    )
    return Ledger(**(values | fields))


def _curve(steps, f) -> list[tuple[int, float]]:
    return [(s, round(f(s), 4)) for s in steps]


# --- SFT: eval split, token accuracy; the eval loss turns up while train loss falls -------


def sft_ledger() -> Ledger:
    steps = range(1, 25)
    run = _run(
        "tiny-sft-d170db51",
        "sft",
        "./fixtures/data/tiny-chat.jsonl",
        eval_split="10% of train",
        hyperparameters={
            "eval_steps": 6,
            "learning_rate": 0.0005,
            "logging_steps": 1,
            "max_steps": 24,
            "per_device_train_batch_size": 4,
        },
        metrics=TrainMetrics(
            step=24,
            max_steps=24,
            final_loss=2.05,
            min_loss=2.05,
            runtime_s=18.009,
            train_tokens_per_s=76.07,
            loss_curve=_curve(steps, lambda s: 6.3 - 4.25 * math.log1p(s) / math.log1p(24)),
            series={
                "eval_loss": [(6, 4.63), (12, 4.19), (18, 4.41), (24, 4.87)],
                "eval_mean_token_accuracy": [(6, 0.1657), (12, 0.2652), (18, 0.25), (24, 0.23)],
                "grad_norm": _curve(steps, lambda s: 8.3 / (1 + s / 6)),
                "mean_token_accuracy": _curve(steps, lambda s: min(0.6, 0.02 * s)),
            },
        ),
        evaluation={"benchmarks": [{"benchmark": "humaneval"}], "models": ["base", "final"]},
        evaluations=[
            Evaluation(
                benchmark="humaneval",
                metric="pass@1",
                model_label="base",
                model=TINY,
                score=0.0,
                job_url=".ci-runner/jobs/local-eval-base/log.txt",
                status=RunStatus.COMPLETED,
            ),
            Evaluation(
                benchmark="humaneval",
                metric="pass@1",
                model_label="final",
                model=".ci-runner/runs/tiny-sft-d170db51/output",
                score=0.0,
                job_url=".ci-runner/jobs/local-eval-final/log.txt",
                status=RunStatus.COMPLETED,
            ),
        ],
    )
    return _ledger(
        "tiny-sft",
        "sft",
        "./fixtures/data/tiny-chat.jsonl",
        [run],
        description="Smoke-test SFT on the tiny offline model and chat dataset.",
    )


# --- DPO on HF Jobs: real links; a second attempt whose loss went NaN --------------------


def dpo_ledger() -> Ledger:
    steps = range(1, 7)
    healthy = _run(
        "qwen-dpo-5e1c2a90",
        "dpo",
        "trl-lib/ultrafeedback_binarized",
        backend="hf-jobs",
        hardware="a10g-large",
        timeout="1h30m",
        usd_per_hour=1.5,
        base_model="Qwen/Qwen3-0.6B",
        dataset_split="train",
        dataset_columns={"chosen": "good_response", "rejected": "bad_response"},
        hyperparameters={"beta": 0.1, "learning_rate": 5e-07, "max_steps": 6, "logging_steps": 1},
        output_dir="/tmp/ci-runner/qwen-dpo-5e1c2a90/output",
        hub_model_id="acme/qwen3-dpo",
        hub_model_url="https://huggingface.co/acme/qwen3-dpo",
        tracking_project="qwen-dpo",
        tracking_run="qwen-dpo-5e1c2a90",
        tracking_url="https://huggingface.co/spaces/acme/trackio?project=qwen-dpo&runs=qwen-dpo-5e1c2a90&metrics=train/loss",
        attempts=[
            Attempt(
                number=1,
                backend="hf-jobs",
                job_id="69382863c67c9f186cfe1ae7",
                job_url=f"{JOBS}/69382863c67c9f186cfe1ae7",
                submitted_at="2026-11-20T09:45:30Z",
                finished_at="2026-11-20T09:58:02Z",
                state=JobState.COMPLETED,
                exit_code=0,
                cost_usd=0.3133,
            )
        ],
        metrics=TrainMetrics(
            step=6,
            max_steps=6,
            final_loss=0.643,
            min_loss=0.643,
            runtime_s=4.27,
            train_tokens_per_s=297.91,
            loss_curve=[
                (1, 0.6931),
                (2, 0.7013),
                (3, 0.6651),
                (4, 0.7076),
                (5, 0.6515),
                (6, 0.643),
            ],
            series={
                "rewards/accuracies": [
                    (1, 0.0),
                    (2, 0.5),
                    (3, 0.75),
                    (4, 0.75),
                    (5, 0.75),
                    (6, 1.0),
                ],
                "rewards/margins": _curve(steps, lambda s: 0.02 * (s - 1)),
                "rewards/chosen": _curve(steps, lambda s: 0.03 * (s - 1)),
                "rewards/rejected": _curve(steps, lambda s: 0.01 * (s - 1)),
                "grad_norm": _curve(steps, lambda s: 2.2 - 0.15 * s),
            },
        ),
    )
    nan = _run(
        "qwen-dpo-77aa01c3",
        "dpo",
        "trl-lib/ultrafeedback_binarized",
        created_at="2026-11-20T11:02:00Z",
        backend="hf-jobs",
        hardware="a10g-large",
        base_model="Qwen/Qwen3-0.6B",
        dataset_split="train",
        hyperparameters={"beta": 0.1, "learning_rate": 0.01, "max_steps": 6, "logging_steps": 1},
        output_dir="/tmp/ci-runner/qwen-dpo-77aa01c3/output",
        tracking_project="qwen-dpo",
        tracking_run="qwen-dpo-77aa01c3",
        attempts=[
            Attempt(
                number=1,
                backend="hf-jobs",
                job_id="6938301bc67c9f186cfe1b02",
                job_url=f"{JOBS}/6938301bc67c9f186cfe1b02",
                submitted_at="2026-11-20T11:02:05Z",
                finished_at="2026-11-20T11:09:40Z",
                state=JobState.COMPLETED,
                exit_code=0,
            )
        ],
        metrics=TrainMetrics(
            step=6,
            max_steps=6,
            final_loss=float("nan"),
            min_loss=0.6931,
            loss_curve=[(1, 0.6931), (2, 0.9)],
            series={"rewards/accuracies": [(1, 0.0), (2, 0.25)]},
            nonfinite={"loss": 3, "grad_norm": 3},
        ),
    )
    return _ledger(
        "qwen-dpo",
        "dpo",
        "trl-lib/ultrafeedback_binarized",
        [healthy, nan],
        base_model="Qwen/Qwen3-0.6B",
        base_model_url="https://huggingface.co/Qwen/Qwen3-0.6B",
        dataset_url="https://huggingface.co/datasets/trl-lib/ultrafeedback_binarized",
    )


# --- GRPO: every reward 0 at every step ------------------------------------------------


def grpo_ledger(*, rewards: dict[str, float] | None = None) -> Ledger:
    """``rewards``: each function's constant mean (default: both always 0)."""
    rewards = rewards if rewards is not None else {"accuracy_reward": 0.0, "format_reward": 0.0}
    steps = range(1, 5)
    total = sum(rewards.values())
    series = {
        "reward": _curve(steps, lambda s: total),
        "reward_std": _curve(steps, lambda s: 0.0),
        "frac_reward_zero_std": _curve(steps, lambda s: 1.0),
        "completions/mean_length": _curve(steps, lambda s: 16.0),
        "completions/clipped_ratio": _curve(steps, lambda s: 1.0),
        "grad_norm": _curve(steps, lambda s: 0.0),
    }
    series |= {
        f"rewards/{name}/mean": _curve(steps, lambda s, v=v: v) for name, v in rewards.items()
    }
    run = _run(
        "tiny-grpo-c466491e",
        "grpo",
        "./fixtures/data/tiny-math.jsonl",
        dataset_split="train[:32]",
        dataset_columns={"answer": "solution"},
        rewards=["accuracy", "format"],
        hyperparameters={
            "learning_rate": 1e-05,
            "logging_steps": 1,
            "max_completion_length": 16,
            "max_steps": 4,
            "num_generations": 4,
            "per_device_train_batch_size": 4,
        },
        metrics=TrainMetrics(
            step=4,
            max_steps=4,
            final_loss=0.0,
            min_loss=0.0,
            runtime_s=5.272,
            train_tokens_per_s=129.73,
            loss_curve=_curve(steps, lambda s: 0.0),
            series=series,
        ),
    )
    return _ledger("tiny-grpo", "grpo", "./fixtures/data/tiny-math.jsonl", [run])


# --- a 2×2 sweep: lr × LoRA r; one run diverges, one logged nothing ---------------------


def sweep_ledger(scores: tuple[float, ...] = (0.31, 0.42, 0.35, 0.0)) -> Ledger:
    combos = [(0.0002, 16), (0.0001, 16), (0.0002, 8), (0.002, 8)]
    runs = []
    for i, ((lr, r), score) in enumerate(zip(combos, scores, strict=True)):
        run_id = f"lr-sweep-{['58569b3a', '1c0de2f4', '9a8b7c6d', 'ee01ff23'][i]}"
        matrix = {"hyperparameters.learning_rate": lr, "lora.r": r}
        if lr == 0.002:  # too high: the loss climbs after a few steps
            curve = _curve(range(1, 41), lambda s: 2.4 - 0.1 * s if s < 6 else 1.9 + 0.12 * s)
        else:
            curve = _curve(range(1, 41), lambda s, lr=lr, r=r: 0.9 + 1.5 / (1 + lr * 1e4 * s / r))
        metrics = TrainMetrics(
            step=40,
            max_steps=40,
            final_loss=curve[-1][1],
            min_loss=min(v for _, v in curve),
            loss_curve=curve,
            series={"mean_token_accuracy": [(s, round(0.3 + 0.01 * s, 4)) for s, _ in curve]},
        )
        runs.append(
            _run(
                run_id,
                "sft",
                "trl-lib/Capybara",
                title=f"{run_id} (hyperparameters.learning_rate={lr}, lora.r={r})",
                base_model="Qwen/Qwen3-0.6B",
                dataset_split="train",
                backend="hf-jobs",
                hardware="a10g-small",
                matrix=matrix,
                max_parallel=2,
                hyperparameters={"learning_rate": lr, "max_steps": 40, "logging_steps": 1},
                lora={"r": r, "alpha": 2 * r, "dropout": 0.05, "target_modules": "all-linear"},
                output_dir=f"/tmp/ci-runner/{run_id}/output",
                hub_model_id=f"acme/lr-sweep-{i}",
                hub_model_url=f"https://huggingface.co/acme/lr-sweep-{i}",
                attempts=[
                    Attempt(
                        number=1,
                        backend="hf-jobs",
                        job_id=f"69383512c67c9f186cfe1b1{i}",
                        job_url=f"{JOBS}/69383512c67c9f186cfe1b1{i}",
                        submitted_at="2026-11-21T08:00:00Z",
                        finished_at=f"2026-11-21T08:{21 + i}:30Z",
                        state=JobState.COMPLETED,
                        exit_code=0,
                    )
                ],
                metrics=metrics,
                evaluation={"benchmarks": [{"benchmark": "gsm8k"}], "models": ["final"]},
                evaluations=[
                    Evaluation(
                        benchmark="gsm8k",
                        metric="exact_match",
                        model=f"acme/lr-sweep-{i}",
                        model_url=f"https://huggingface.co/acme/lr-sweep-{i}",
                        score=score,
                        job_url=f"{JOBS}/eval{i}",
                        status=RunStatus.COMPLETED,
                    )
                ],
            )
        )
    # A fifth run of 6 steps with TRL's default logging_steps: no curve at all.
    short = runs[0].model_copy(
        update={
            "run_id": "lr-sweep-0badc0de",
            "title": "lr-sweep-0badc0de (hyperparameters.learning_rate=0.0003, lora.r=16)",
            "matrix": {"hyperparameters.learning_rate": 0.0003, "lora.r": 16},
            "hyperparameters": {"learning_rate": 0.0003, "max_steps": 6},
            "metrics": TrainMetrics(step=6, max_steps=6, final_loss=1.71, min_loss=1.71),
            "evaluation": None,
            "evaluations": [],
            "hub_model_id": None,
            "hub_model_url": None,
        }
    )
    return _ledger(
        "lr-sweep",
        "sft",
        "trl-lib/Capybara",
        [*runs, short],
        base_model="Qwen/Qwen3-0.6B",
        base_model_url="https://huggingface.co/Qwen/Qwen3-0.6B",
        dataset_url="https://huggingface.co/datasets/trl-lib/Capybara",
        description="Which learning rate and LoRA rank for Capybara SFT?",
    )
