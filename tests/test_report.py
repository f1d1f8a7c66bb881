"""Report rendering: golden files plus the properties poll relies on.

Regenerate the goldens after an intended layout change with
``UPDATE_GOLDEN=1 pytest tests/test_report.py`` and review the diff by eye.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ci_runner.ledger.model import (
    LEDGER_SCHEMA_VERSION,
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
from ci_runner.publish.pr_body import Links, render_pr_body, summary_block
from ci_runner.report import plot
from ci_runner.report.figures import Figure, Line, Panel, figures, matrix_label, short_value
from ci_runner.report.files import write_report
from ci_runner.report.health import check_run
from ci_runner.report.render import render_report
from tests.conftest import cli
from tests.report_ledgers import dpo_ledger, grpo_ledger, sft_ledger, sweep_ledger

GOLDEN = Path(__file__).parent / "golden"
SVG_NS = "{http://www.w3.org/2000/svg}"
BASE = "Qwen/Qwen3-0.6B"
HUB_MODEL = "burtenshaw/qwen3-codeforces-cots-sft"
JOBS = "https://huggingface.co/jobs/burtenshaw"


def _completed_sft() -> Run:
    curve = [
        (s, round(1.9 * 0.993**s + 0.62 + 0.015 * (s // 25 % 3 - 1), 4)) for s in range(0, 501, 25)
    ]
    return Run(
        run_id="sft-a10g-full",
        experiment="qwen3-codeforces-sft",
        title="sft-a10g-full",
        method="sft",
        spec_hash="3f2a9c1d",
        created_at="2026-11-20T09:14:05Z",
        status=RunStatus.COMPLETED,
        backend="hf-jobs",
        hardware="a10g-large",
        timeout="2h",
        base_model=BASE,
        dataset="open-r1/codeforces-cots",
        dataset_split="train",
        hyperparameters={
            "learning_rate": 5e-05,
            "num_train_epochs": 1,
            "max_steps": 500,
            "per_device_train_batch_size": 1,
            "gradient_accumulation_steps": 8,
            "max_length": 2048,
            "warmup_ratio": 0.03,
            "lr_scheduler_type": "cosine",
            "bf16": True,
            "gradient_checkpointing": True,
            "packing": False,
        },
        output_dir="/data/outputs/sft-a10g-full",
        hub_model_id=HUB_MODEL,
        hub_model_url=f"https://huggingface.co/{HUB_MODEL}",
        tracking_project="qwen3-codeforces-cots",
        tracking_run="sft-a10g-full",
        tracking_url="https://burtenshaw-trackio.hf.space/?project=qwen3-codeforces-cots&runs=sft-a10g-full",
        attempts=[
            Attempt(
                number=1,
                backend="hf-jobs",
                job_id="6938272ec67c9f186cfe1ae3",
                job_url=f"{JOBS}/6938272ec67c9f186cfe1ae3",
                submitted_at="2026-11-20T09:14:09Z",
                finished_at="2026-11-20T09:44:12Z",
                state=JobState.ERROR,
                exit_code=137,
                message="timed out at step 200; resuming from checkpoint-200",
            ),
            Attempt(
                number=2,
                backend="hf-jobs",
                job_id="69382863c67c9f186cfe1ae7",
                job_url=f"{JOBS}/69382863c67c9f186cfe1ae7",
                submitted_at="2026-11-20T09:45:30Z",
                finished_at="2026-11-20T10:31:02+00:00",
                state=JobState.COMPLETED,
                exit_code=0,
            ),
        ],
        metrics=TrainMetrics(
            step=500,
            max_steps=500,
            final_loss=curve[-1][1],
            min_loss=min(v for _, v in curve),
            runtime_s=4532.6,
            train_tokens_per_s=1834.4,
            loss_curve=curve,
        ),
        evaluations=[
            Evaluation(
                benchmark="humaneval",
                metric="pass@1",
                model=BASE,
                model_url=f"https://huggingface.co/{BASE}",
                score=0.304,
                job_url=f"{JOBS}/6938301bc67c9f186cfe1b02",
                status=RunStatus.COMPLETED,
            ),
            Evaluation(
                benchmark="humaneval",
                metric="pass@1",
                model=HUB_MODEL,
                model_url=f"https://huggingface.co/{HUB_MODEL}",
                score=0.3415,
                job_url=f"{JOBS}/69383512c67c9f186cfe1b1c",
                status=RunStatus.COMPLETED,
            ),
        ],
    )


def _running_lora() -> Run:
    curve = [(s, round(2.4 - 0.006 * s, 4)) for s in range(0, 121, 20)]
    return Run(
        run_id="lora-r16",
        experiment="qwen3-codeforces-sft",
        title="lora-r16-lr2e-4",
        method="sft",
        spec_hash="9b7e0a44",
        created_at="2026-11-20T11:02:47+01:00",
        status=RunStatus.RUNNING,
        backend="local",
        hardware="cpu",
        base_model=BASE,
        dataset="open-r1/codeforces-cots",
        dataset_split="train[:2000]",
        hyperparameters={"learning_rate": 2e-4, "max_steps": 1000, "bf16": False},
        lora={"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]},
        output_dir=".ci-runner/runs/lora-r16/output",
        tracking_project="qwen3-codeforces-cots",
        tracking_run="lora-r16-lr2e-4",
        attempts=[
            Attempt(
                number=1,
                backend="local",
                job_id="local-4121",
                job_url=".ci-runner/runs/lora-r16/train.log",
                submitted_at="2026-11-20T10:03:00Z",
                state=JobState.RUNNING,
            )
        ],
        metrics=TrainMetrics(
            step=120,
            max_steps=1000,
            final_loss=curve[-1][1],
            min_loss=curve[-1][1],
            loss_curve=curve,
        ),
    )


def _ledger(*runs: Run) -> Ledger:
    return Ledger(
        experiment="qwen3-codeforces-sft",
        spec_path="experiments/qwen3-codeforces-sft.yaml",
        report_path="training_reports/qwen3-0.6b-codeforces-cots-sft.md",
        base_model=BASE,
        base_model_url=f"https://huggingface.co/{BASE}",
        dataset="open-r1/codeforces-cots",
        dataset_url="https://huggingface.co/datasets/open-r1/codeforces-cots",
        method="sft",
        runs=list(runs) if runs else [_completed_sft(), _running_lora()],
    )


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
    assert path.exists(), f"missing {path}; run with UPDATE_GOLDEN=1 to create it"
    assert text == path.read_bytes().decode("utf-8")


def _table_rows(md: str, heading: str) -> list[str]:
    section = md.split(heading, 1)[1]
    return [line for line in section.splitlines() if line.startswith("|")]


def _plots(ledger: Ledger, stem: str = "report") -> dict[str, str]:
    """Figure links as ``write_report`` gives them."""
    return {figure.key: f"{stem}.{figure.key}.svg" for figure in figures(ledger)}


def _render(ledger: Ledger) -> str:
    return render_report(ledger, plots=_plots(ledger))


# --- goldens: a ledger from before the per-method metrics, and one report per method --


def test_report_matches_golden():
    """A ledger written before series, checks and wall time: only the layout changed."""
    _check_golden("report.md", _render(_ledger()))


@pytest.mark.parametrize(
    ("name", "build"),
    [("sft", sft_ledger), ("dpo", dpo_ledger), ("grpo", grpo_ledger), ("sweep", sweep_ledger)],
)
def test_method_reports_match_golden(name, build):
    _check_golden(f"{name}.md", _render(build()))


def test_a_ledger_of_schema_version_1_loads_and_is_written_back_as_version_2():
    """Written by schema version 1 (the offline SFT demo): its runs did not name their
    experiment, and take the ledger's; their ``stage`` and ``stage_jobs`` are read as
    ``phase`` and ``phase_jobs``. Written back as version 2, with nothing else new."""
    text = (GOLDEN / "old-tiny-sft.ledger.json").read_text(encoding="utf-8")
    assert '"experiment": "tiny-sft"' in text and text.count('"experiment"') == 1
    ledger = Ledger.model_validate_json(text)
    (run,) = ledger.runs
    assert run.experiment == "tiny-sft"
    assert ledger.schema_version == LEDGER_SCHEMA_VERSION == 2
    assert (run.phase, [j.key for j in run.phase_jobs]) == ("done", ["base", "final"])
    expected = (
        text.replace('"schema_version": 1,', '"schema_version": 2,')
        .replace(
            '"run_id": "tiny-sft-d170db51",\n',
            '"run_id": "tiny-sft-d170db51",\n      "experiment": "tiny-sft",\n',
        )
        .replace('"stage": "done",', '"phase": "done",')
        .replace('"stage_jobs": [', '"phase_jobs": [')
    )
    assert ledger.model_dump_json(indent=2) + "\n" == expected
    assert Ledger.model_validate_json(expected) == ledger
    assert run.metrics.series == {} and run.rewards == [] and ledger.description is None


def test_a_version_1_run_keeps_how_its_later_jobs_were_sized():
    data = json.loads((GOLDEN / "old-tiny-sft.ledger.json").read_text(encoding="utf-8"))
    sized = {"final": {"flavor": "a10g-small", "quantize": None}}
    data["runs"][0] |= {"stage": "eval", "stage_hardware": sized}
    (run,) = Ledger.model_validate(data).runs
    assert (run.phase, run.phase_hardware) == ("eval", sized)
    written = json.loads(run.model_dump_json())
    assert written["phase_hardware"] == sized and written["phase"] == "eval"
    assert not {"stage", "stage_jobs", "stage_hardware"} & written.keys()


def test_rendering_is_byte_identical_and_survives_a_json_round_trip():
    for ledger in (_ledger(), sft_ledger(), dpo_ledger(), grpo_ledger(), sweep_ledger()):
        first = _render(ledger)
        reloaded = Ledger.model_validate_json(ledger.model_dump_json())
        assert _render(ledger) == first
        assert _render(reloaded) == first
        assert figures(reloaded) == figures(ledger)


def test_a_nan_loss_survives_the_ledger_round_trip():
    ledger = dpo_ledger()
    text = ledger.model_dump_json(indent=2)
    assert '"final_loss": "NaN"' in text  # JSON has no NaN; null would not load back
    reloaded = Ledger.model_validate_json(text)
    assert str(reloaded.runs[1].metrics.final_loss) == "nan"


def test_report_ends_with_exactly_one_newline():
    md = render_report(_ledger())
    assert md.endswith("\n") and not md.endswith("\n\n")


# --- the page a reviewer reads -----------------------------------------------------------


def test_title_is_the_experiment_and_its_description():
    first = sft_ledger()
    assert _render(first).splitlines()[2] == (
        "# `tiny-sft`: Smoke-test SFT on the tiny offline model and chat dataset."
    )
    plain = grpo_ledger()
    assert _render(plain).splitlines()[2] == (
        "# `tiny-grpo`: GRPO (TRL) of `./fixtures/tiny-llama` on `./fixtures/data/tiny-math.jsonl`"
    )
    assert "\n# Base Model & Dataset\n" in _render(plain)


def test_headings_links_and_numbers():
    md = render_report(_ledger(), plots={"loss": "loss.svg"})
    assert "# `sft-a10g-full` - `2026-11-20 09:14:05 UTC` - `Completed`" in md
    # +01:00 stamps are shown in UTC
    assert "# `lora-r16-lr2e-4` - `2026-11-20 10:02:47 UTC` - `In Progress`" in md
    assert "- [Base Model](https://huggingface.co/Qwen/Qwen3-0.6B): `Qwen/Qwen3-0.6B`" in md
    assert "![Loss](loss.svg)" in md
    assert "| `learning_rate` | 5e-05 |" in md
    assert "| `bf16` | true |" in md
    assert "| LoRA | r=16, alpha=32, dropout=0.05, targets=[q_proj, v_proj] |" in md
    assert "| LoRA | off |" in md
    assert "- Train tokens/s: 1834.4 (trainer)" in md
    assert "[Job 6938272ec67c9f186cfe1ae3](https://huggingface.co/jobs/" in md
    assert "local job `local-4121`, log `.ci-runner/runs/lora-r16/train.log`" in md
    assert "TRACKIO_DIR=.ci-runner/trackio trackio show --project qwen3-codeforces-cots" in md
    assert "| 0.342 | +0.038 |" in md


def test_runtime_is_the_jobs_wall_time_everywhere():
    """Submit → finish of each attempt, what the job is billed for; not train_runtime."""
    md = _render(_ledger())
    assert "- Wall time: 1h 15m 35s over 2 attempts (job, submit → finish)" in md
    assert "Runtime" not in md and "1h 15m 33s" not in md  # the trainer's 4532.6 s
    overview = _table_rows(md, "# `qwen3-codeforces-sft`")[2]
    assert "| 1h 15m 35s over 2 attempts |" in overview
    # a local job that ran 33 s with a trainer runtime of 18 s
    assert "- Wall time: 33s (job, submit → finish)" in _render(sft_ledger())


def test_local_paths_are_marked_local_and_never_linked_to_the_hub():
    ledger = grpo_ledger().model_copy(
        update={"base_model_url": "https://huggingface.co/./fixtures/tiny-llama"}  # older ledgers
    )
    md = _render(ledger)
    assert "huggingface.co/./" not in md and "huggingface.co/.ci-runner" not in md
    assert "- Base Model: `./fixtures/tiny-llama` (local)" in md
    assert "- Dataset: `./fixtures/data/tiny-math.jsonl` (local)" in md
    sft = _render(sft_ledger())
    assert "| humaneval pass@1 | `.ci-runner/runs/tiny-sft-d170db51/output` (local) |" in sft


def test_hf_jobs_runs_link_their_job_model_and_trackio_space():
    md = _render(dpo_ledger())
    assert "[Job 69382863c67c9f186cfe1ae7](https://huggingface.co/jobs/acme/" in md
    assert "| Hub Model | [acme/qwen3-dpo](https://huggingface.co/acme/qwen3-dpo) |" in md
    assert "[Trackio Logs](https://huggingface.co/spaces/acme/trackio?project=qwen-dpo" in md
    # a run without a Space says so rather than offering a local command for a remote job
    assert "Not synced to a trackio Space" in md and "TRACKIO_DIR" not in md


def test_column_mapping_rewards_and_eval_split_are_in_the_parameters():
    assert "| Column mapping | `chosen` ← `good_response`, `rejected` ← `bad_response` |" in (
        _render(dpo_ledger())
    )
    grpo = _render(grpo_ledger())
    assert "| Reward functions | `accuracy`, `format` |" in grpo
    assert "| Column mapping | `answer` ← `solution` |" in grpo
    sft = _render(sft_ledger())
    assert (
        "| Dataset | `./fixtures/data/tiny-chat.jsonl` (not pinned) "
        "(split `train[:64]`; eval: 10% of train) |" in sft
    )


def test_each_method_shows_its_own_metrics():
    sft = _render(sft_ledger())
    assert "| Eval loss | Token accuracy |" in sft
    assert "- Eval loss: 4.87\n- Mean token accuracy: 0.48\n- Eval mean token accuracy: 0.23" in sft
    dpo = _render(dpo_ledger())
    assert "| Reward accuracy | Reward margin |" in dpo
    assert "- Reward accuracy: 1\n- Reward margin: 0.1\n- Reward (chosen): 0.15" in dpo
    grpo = _render(grpo_ledger(rewards={"accuracy_reward": 0.25, "format_reward": 0.5}))
    assert "| Reward | Reward std |" in grpo
    assert "- Reward: 0.75\n- Reward (accuracy_reward): 0.25\n- Reward (format_reward): 0.5" in grpo
    assert "- Completion length (mean): 16" in grpo


def test_no_plot_link_without_data_or_a_plot_name():
    run = _running_lora().model_copy(update={"metrics": None})
    assert "![" not in _render(_ledger(run))
    assert "![" not in render_report(_ledger())
    grpo = _render(grpo_ledger())
    assert "![Loss](report.loss.svg)\n![GRPO reward per function](report.grpo-reward.svg)" in grpo
    assert "token-accuracy" not in grpo and "dpo-rewards" not in grpo


def test_failed_run_shows_its_error():
    error = "CUDA out of memory. Tried to allocate 2.00 GiB\nat step 37"
    run = _running_lora().model_copy(update={"status": RunStatus.FAILED, "error": error})
    md = render_report(_ledger(run))
    assert "`Failed`" in md
    assert "**Error:**" in md
    assert "```text\nCUDA out of memory. Tried to allocate 2.00 GiB\nat step 37\n```" in md
    assert "| Failed: CUDA out of memory. Tried to allocate 2.00 GiB |" in md


def test_pending_run_without_attempts():
    run = Run.model_validate(
        _running_lora().model_dump()
        | {"status": "queued", "attempts": [], "metrics": None, "evaluations": []}
    )
    md = _render(_ledger(run))
    assert "## Run Logs\n\nPending submission" in md
    assert "## Run Evaluations\n\nPending" in md


def test_experiment_evaluations_header_is_exact():
    md = render_report(_ledger())
    rows = _table_rows(md, "# Experiment Evaluations")
    assert rows[0] == "| Run Title | Benchmark | Score | Evaluation Job Link | Model Link |"
    assert len(rows) == 2 + 2  # header, rule, two evals of run 1; run 2 evaluates nothing


def test_runs_without_evaluations_have_no_tbd_rows():
    runs = [_completed_sft().model_copy(update={"evaluations": []}), _running_lora()]
    md = render_report(_ledger(*runs))
    assert md.endswith("# Experiment Evaluations\n\nNo evaluations configured.\n")
    assert "TBD | TBD" not in md
    # a run whose evaluation is configured but not done yet keeps its pending row
    pending = _running_lora().model_copy(update={"evaluation": {"benchmarks": []}})
    rows = _table_rows(render_report(_ledger(pending)), "# Experiment Evaluations")
    assert len(rows) == 3 and rows[2].count("TBD") == 4


def test_best_needs_a_strict_win():
    # run-level: the final model and a checkpoint tie at 0.000, so neither is best
    ledger = sft_ledger()
    (run,) = ledger.runs
    tie = [
        *run.evaluations,
        run.evaluations[1].model_copy(
            update={"model_label": "checkpoint-12", "model": ".ci-runner/x/checkpoint-12"}
        ),
    ]
    md = _render(ledger.model_copy(update={"runs": [run.model_copy(update={"evaluations": tie})]}))
    assert "Best model" not in md
    # sweep: 0.42 beats the rest and is marked; a tie at the top marks nothing
    assert _render(sweep_ledger()).count("(best)") == 1
    assert "| **0.420** (best) |" in _render(sweep_ledger())
    assert "(best)" not in _render(sweep_ledger(scores=(0.42, 0.42, 0.35, 0.0)))


def test_pipes_in_values_are_escaped():
    run = _running_lora().model_copy(
        update={"hyperparameters": {"dataset_text_field": "a|b"}, "hardware": "x|y"}
    )
    md = render_report(_ledger(run))
    assert "| `dataset_text_field` | a\\|b |" in md
    assert "| Hardware | x\\|y |" in md
    widths = {len(re.findall(r"(?<!\\)\|", line)) for line in md.splitlines() if line[:1] == "|"}
    assert widths <= {3, 6, 7, 8}, widths  # parameters, evaluations, runs tables


# --- health checks: one case each, shown with its remedy ---------------------------------


@pytest.mark.parametrize(
    ("build", "run_id", "check", "words"),
    [
        (
            grpo_ledger,
            "tiny-grpo-c466491e",
            "no learning signal",
            [
                "The reward was 0 at each of the 4 logged steps",
                "accuracy_reward always 0, format_reward always 0",
                "cut off at max_completion_length (16)",
                "check that the reward functions (`accuracy`, `format`)",
            ],
        ),
        (
            dpo_ledger,
            "qwen-dpo-77aa01c3",
            "loss is NaN",
            ["Loss NaN or infinite from step 3; grad_norm NaN", "lower learning_rate (÷10)"],
        ),
        (
            sweep_ledger,
            "lr-sweep-ee01ff23",
            "loss diverging",
            ["rose from 2.48 (first steps) to 6.16", "add warmup"],
        ),
        (
            sweep_ledger,
            "lr-sweep-0badc0de",
            "no loss curve",
            ["logging_steps was TRL's default (10)", "set hyperparameters.logging_steps to 1"],
        ),
        (
            sft_ledger,
            "tiny-sft-d170db51",
            "overfitting",
            ["Eval loss rose from 4.19 at step 12 to 4.87 at step 24", "load_best_model_at_end"],
        ),
    ],
)
def test_each_health_check_is_shown_with_its_remedy(build, run_id, check, words):
    md = _render(build())
    callout = next(b for b in md.split("\n\n") if b.startswith(f"> [!WARNING]\n> **`{run_id}`"))
    assert f"**`{run_id}`: {check}.**" in callout and "> **Remedy:**" in callout
    for word in words:
        assert word in callout
    row = next(line for line in md.splitlines() if line.startswith(f"| `{run_id}`"))
    assert row.endswith(f"| ⚠ {check} |")
    assert f"> **Warning: {check}** (details and remedy above)" in md


def test_healthy_runs_have_no_findings():
    healthy = [dpo_ledger().runs[0], *sweep_ledger().runs[:3], *_ledger().runs]
    assert all(check_run(run) == [] for run in healthy)
    # GRPO whose rewards differ within groups: something to learn from
    ledger = grpo_ledger(rewards={"accuracy_reward": 0.25, "format_reward": 0.5})
    (run,) = ledger.runs
    std = [(s, 0.3) for s in range(1, 5)]
    varied = run.model_copy(
        update={
            "metrics": run.metrics.model_copy(
                update={"series": run.metrics.series | {"reward_std": std}}
            )
        }
    )
    assert check_run(varied) == []


def test_no_learning_signal_waits_for_evidence_while_running():
    (run,) = grpo_ledger().runs
    m = run.metrics
    early = {key: points[:2] for key, points in m.series.items()}
    running = run.model_copy(
        update={"status": RunStatus.RUNNING, "metrics": m.model_copy(update={"series": early})}
    )
    assert check_run(running) == []  # two logged steps are not a run
    later = running.model_copy(update={"metrics": m})
    (finding,) = check_run(later)
    assert "at each of the 4 logged steps so far" in finding.detail


def test_a_constant_reward_without_its_std_logged_is_no_signal_either():
    (run,) = grpo_ledger(rewards={"accuracy_reward": 1.0}).runs
    series = {k: v for k, v in run.metrics.series.items() if k != "reward_std"}
    run = run.model_copy(update={"metrics": run.metrics.model_copy(update={"series": series})})
    (finding,) = check_run(run)
    assert finding.check == "no-learning-signal" and "The reward was 1" in (
        finding.detail[:1].upper() + finding.detail[1:]
    )


# --- plots -----------------------------------------------------------------------------


def test_one_figure_per_concern_and_method():
    assert [f.key for f in figures(sft_ledger())] == ["loss", "token-accuracy"]
    assert [f.key for f in figures(dpo_ledger())] == ["loss", "dpo-rewards"]
    grpo = figures(grpo_ledger())
    assert [f.key for f in grpo] == ["loss", "grpo-reward"]
    assert [p.title for p in grpo[1].panels] == [
        "Reward (total)",
        "Reward (accuracy_reward)",
        "Reward (format_reward)",
    ]
    assert [p.title for p in figures(dpo_ledger())[1].panels] == [
        "Reward accuracy",
        "Reward margin",
    ]
    # train solid, eval dashed, in the run's colour
    loss = figures(sft_ledger())[0]
    assert [(line.color, line.dashed) for line in loss.panels[0].lines] == [(0, False), (0, True)]
    assert [(e.label, e.dashed) for e in loss.legend] == [("train", False), ("eval", True)]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0002, "2e-4"),
        (5e-05, "5e-5"),
        (1.5e-4, "1.5e-4"),
        (0.05, "0.05"),
        (16, "16"),
        (True, "true"),
    ],
)
def test_swept_values_are_written_short(value, text):
    assert short_value(value) == text


def test_sweep_legend_names_the_swept_values():
    labels = [e.label for e in figures(sweep_ledger())[0].legend]
    assert labels == [
        "lr=2e-4, r=16",
        "lr=1e-4, r=16",
        "lr=2e-4, r=8",
        "lr=2e-3, r=8",
    ]  # the fifth run logged no loss: no line, no entry
    assert matrix_label({"hyperparameters.max_length": 512, "dataset.max_length": 64}) == (
        "hyperparameters.max_length=512, dataset.max_length=64"  # clashing short names
    )
    svg = plot.render_svg(figures(sweep_ledger())[0])
    texts = {t.text for t in ET.fromstring(svg).iter(f"{SVG_NS}text")}
    assert {"lr=2e-4, r=16", "lr=1e-4, r=16", "lr=2e-4, r=8", "lr=2e-3, r=8"} <= texts


def _markers(figure: Figure, monkeypatch) -> int:
    """How many point markers the figure's SVG draws: each is a <use> of a marker path, as
    are the axis ticks, so count against the same figure drawn with no markers at all."""

    def uses(up_to: int) -> int:
        monkeypatch.setattr(plot, "MARKERS_UP_TO", up_to)
        return len(ET.fromstring(plot.render_svg(figure)).findall(f".//{SVG_NS}use"))

    default = uses(plot.MARKERS_UP_TO)
    return default - uses(0)


def test_few_points_get_markers_and_many_do_not(monkeypatch):
    def figure(n: int) -> Figure:
        points = tuple((s, 2.0 - s / 100) for s in range(1, n + 1))
        return Figure("loss", "Loss", (Panel("Loss", "loss", (Line(points, 0),)),))

    assert _markers(figure(3), monkeypatch) == 3
    assert _markers(figure(100), monkeypatch) == 0


PLOT_SCRIPT = """
import sys
from tests.report_ledgers import sweep_ledger, grpo_ledger
from ci_runner.report.figures import figures
from ci_runner.report.plot import render_svg
for ledger in (sweep_ledger(), grpo_ledger()):
    for figure in figures(ledger):
        sys.stdout.write(render_svg(figure))
"""


@pytest.mark.slow
def test_plot_bytes_are_identical_across_processes():
    """No date, no random ids, no machine fonts: the same ledger draws the same bytes."""
    root = Path(__file__).resolve().parents[1]
    outputs = [
        subprocess.run(
            [sys.executable, "-c", PLOT_SCRIPT], cwd=root, capture_output=True, check=True
        ).stdout
        for _ in range(2)
    ]
    assert outputs[0] == outputs[1] and outputs[0].count(b"<svg") == 4
    assert b"<dc:date>" not in outputs[0] and b"Matplotlib v" not in outputs[0]


def test_svg_parses_and_carries_the_fingerprint_of_its_data():
    figure = figures(sft_ledger())[0]
    svg = plot.render_svg(figure)
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG_NS}svg"
    texts = {t.text for t in root.iter(f"{SVG_NS}text")}
    assert {"Loss", "step", "loss", "train", "eval"} <= texts
    assert plot.unchanged(figure, svg)
    assert not plot.unchanged(figures(dpo_ledger())[0], svg)
    assert not plot.unchanged(figure, None)


def test_write_report_draws_an_unchanged_figure_only_once(tmp_path, monkeypatch):
    project = Project(tmp_path)
    ledger = grpo_ledger()
    first = write_report(project, "tiny-grpo", ledger)
    assert sorted(p.name for p in first) == [
        "tiny-grpo.grpo-reward.svg",
        "tiny-grpo.loss.svg",
        "tiny-grpo.md",
    ]

    def no_drawing(figure):
        raise AssertionError("an unchanged figure was drawn again")

    monkeypatch.setattr("ci_runner.report.files.render_svg", no_drawing)
    assert write_report(project, "tiny-grpo", ledger) == []


def test_report_twice_changes_nothing_the_second_time(tmp_path):
    project = Project(tmp_path)
    for name, ledger in (("sweep", sweep_ledger()), ("grpo", grpo_ledger())):
        save_ledger(project.ledger_path(name), ledger)
    first = cli(tmp_path, "report")
    assert first.returncode == 0, first.stderr
    written = sorted(project.reports_dir.iterdir())
    assert len(first.stdout.splitlines()) == 2 + 2 + 2 + 1  # two reports, four plots, the index
    before = {p: p.read_bytes() for p in written}
    second = cli(tmp_path, "report")
    assert second.returncode == 0, second.stderr
    assert second.stdout == "reports are up to date\n"
    assert {p: p.read_bytes() for p in sorted(project.reports_dir.iterdir())} == before


def test_status_json_has_latest_values_and_checks(tmp_path):
    project = Project(tmp_path)
    save_ledger(project.ledger_path("grpo"), grpo_ledger())
    result = cli(tmp_path, "status", "--json")
    (experiment,) = json.loads(result.stdout)
    (run,) = experiment["runs"]
    assert run["metrics"]["latest"]["reward"] == 0.0
    assert run["wall_time_s"] == 33.0  # submit → finish, as the report shows it
    assert "series" not in run["metrics"] and "loss_curve" not in run["metrics"]
    assert [c["check"] for c in run["checks"]] == ["no-learning-signal"]
    text = cli(tmp_path, "status").stdout
    (row,) = [line for line in text.splitlines() if line.startswith("tiny-grpo-c466491e")]
    assert row.split()[3:7] == ["Completed", "4/4", "0.0000", "33s"]
    assert "warning: tiny-grpo-c466491e: no learning signal: the reward was 0" in text
    line = cli(tmp_path, "poll").stdout  # a terminal's one line per run carries the same
    assert "no active runs" in line


def test_pr_body_and_step_summary_reuse_the_reports_overview():
    ledger = grpo_ledger()
    urls = {key: f"https://github.example/blob/x/{name}" for key, name in _plots(ledger).items()}
    body = render_pr_body(ledger, Links(report="r", ledger="l", plots=urls))
    report = _render(ledger)
    overview = report.split("\n\n# Base Model & Dataset")[0].split("\n\n", 2)[2]
    assert overview.replace("(report.", "(https://github.example/blob/x/report.") in body
    assert "no learning signal" in body and "**Remedy:**" in body
    assert (
        "![GRPO reward per function](https://github.example/blob/x/report.grpo-reward.svg)" in body
    )
    summary = summary_block(ledger)  # the step summary: no plots (no URL for them yet)
    assert summary.startswith("### `tiny-grpo`: GRPO (TRL)") and "![" not in summary
    assert "> [!WARNING]\n> **`tiny-grpo-c466491e`: no learning signal.**" in summary
