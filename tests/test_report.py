"""Report rendering: golden files plus the properties poll relies on.

Regenerate the goldens after an intended layout change with
``UPDATE_GOLDEN=1 pytest tests/test_report.py`` and review the diff by eye.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ci_runner.ledger.model import (
    Attempt,
    Evaluation,
    JobState,
    Ledger,
    Run,
    RunStatus,
    TrainMetrics,
)
from ci_runner.report.plot import render_loss_svg
from ci_runner.report.render import loss_series, render_report

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


def test_report_matches_golden():
    _check_golden("report.md", render_report(_ledger(), plot_name="loss.svg"))


def test_loss_svg_matches_golden():
    _check_golden("loss.svg", render_loss_svg(loss_series(_ledger())))


def test_rendering_is_byte_identical_and_survives_a_json_round_trip():
    ledger = _ledger()
    first = render_report(ledger, plot_name="loss.svg")
    reloaded = Ledger.model_validate_json(ledger.model_dump_json())
    assert render_report(ledger, plot_name="loss.svg") == first
    assert render_report(reloaded, plot_name="loss.svg") == first
    assert render_loss_svg(loss_series(reloaded)) == render_loss_svg(loss_series(ledger))


def test_report_ends_with_exactly_one_newline():
    md = render_report(_ledger(), plot_name=None)
    assert md.endswith("\n") and not md.endswith("\n\n")


def test_headings_links_and_numbers():
    md = render_report(_ledger(), plot_name="loss.svg")
    assert "# `sft-a10g-full` - `2026-11-20 09:14:05 UTC` - `Completed`" in md
    # +01:00 stamps are shown in UTC
    assert "# `lora-r16-lr2e-4` - `2026-11-20 10:02:47 UTC` - `In Progress`" in md
    assert "[Base Model](https://huggingface.co/Qwen/Qwen3-0.6B)" in md
    assert "![Training loss](loss.svg)" in md
    assert "| `learning_rate` | 5e-05 |" in md
    assert "| `bf16` | true |" in md
    assert "| LoRA | r=16, alpha=32, dropout=0.05, targets=[q_proj, v_proj] |" in md
    assert "| LoRA | off |" in md
    assert "- Runtime: 1h 15m 33s" in md
    assert "- Train tokens/s: 1834.4" in md
    assert "[Job 6938272ec67c9f186cfe1ae3](https://huggingface.co/jobs/" in md
    assert "`.ci-runner/runs/lora-r16/train.log`" in md
    assert "trackio show --project qwen3-codeforces-cots" in md
    assert "| 0.342 | +0.038 |" in md


def test_no_plot_link_without_a_curve_or_a_plot_name():
    run = _running_lora().model_copy(update={"metrics": None})
    assert "![Training loss]" not in render_report(_ledger(run), plot_name="loss.svg")
    assert "![Training loss]" not in render_report(_ledger(), plot_name=None)


def test_failed_run_shows_its_error():
    error = "CUDA out of memory. Tried to allocate 2.00 GiB\nat step 37"
    run = _running_lora().model_copy(update={"status": RunStatus.FAILED, "error": error})
    md = render_report(_ledger(run), plot_name=None)
    assert "`Failed`" in md
    assert "**Error:**" in md
    assert "```text\nCUDA out of memory. Tried to allocate 2.00 GiB\nat step 37\n```" in md


def test_pending_run_without_attempts():
    run = Run.model_validate(
        _running_lora().model_dump()
        | {"status": "queued", "attempts": [], "metrics": None, "evaluations": []}
    )
    md = render_report(_ledger(run), plot_name="loss.svg")
    assert "## Run Logs\n\nPending submission" in md
    assert "## Run Evaluations\n\nPending" in md


def test_experiment_evaluations_header_is_exact():
    md = render_report(_ledger(), plot_name=None)
    rows = _table_rows(md, "# Experiment Evaluations")
    assert rows[0] == "| Run Title | Benchmark | Score | Evaluation Job Link | Model Link |"
    assert len(rows) == 2 + 2 + 1  # header, rule, two evals of run 1, one TBD row for run 2


def test_no_evaluations_gives_one_tbd_row_per_run():
    runs = [
        _completed_sft().model_copy(update={"evaluations": []}),
        _running_lora(),
    ]
    rows = _table_rows(render_report(_ledger(*runs), plot_name=None), "# Experiment Evaluations")
    assert len(rows) == 4
    assert rows[2].startswith("| `sft-a10g-full` - `2026-11-20 09:14:05 UTC` - `Completed` | TBD")
    assert rows[3].count("TBD") >= 3


def test_pipes_in_values_are_escaped():
    run = _running_lora().model_copy(
        update={"hyperparameters": {"dataset_text_field": "a|b"}, "hardware": "x|y"}
    )
    md = render_report(_ledger(run), plot_name=None)
    assert "| `dataset_text_field` | a\\|b |" in md
    assert "| Hardware | x\\|y |" in md
    for line in md.splitlines():
        if line.startswith("|"):
            assert len(re.findall(r"(?<!\\)\|", line)) in (3, 6, 7), line


def test_svg_parses_and_has_one_polyline_per_run():
    series = loss_series(_ledger())
    root = ET.fromstring(render_loss_svg(series))
    assert root.tag == f"{SVG_NS}svg"
    assert len(root.findall(f"{SVG_NS}polyline")) == len(series) == 2
    texts = [t.text for t in root.iter(f"{SVG_NS}text")]
    assert {"Training loss", "step", "loss", "sft-a10g-full", "lora-r16-lr2e-4"} <= set(texts)


@pytest.mark.parametrize("runs", [[], [("empty", [])], [("diverged", [(1, float("nan"))])]])
def test_svg_without_data_says_so(runs):
    svg = render_loss_svg(runs)
    root = ET.fromstring(svg)
    assert "no data yet" in svg
    assert root.findall(f"{SVG_NS}polyline") == []


def test_svg_single_point_and_escaping():
    svg = render_loss_svg([("a<b & c", [(10, 1.5)])])
    root = ET.fromstring(svg)
    assert len(root.findall(f"{SVG_NS}polyline")) == 1
    assert len(root.findall(f"{SVG_NS}circle")) == 1
    assert "a&lt;b &amp; c" in svg
    assert not re.search(r'"(nan|inf|-0\.0)"', svg)
