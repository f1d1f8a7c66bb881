"""The model card: eval results as model-index, pushed through the real client."""

from __future__ import annotations

import base64
import json

import pytest
import yaml
from huggingface_hub import HfApi

from ci_runner.ledger.model import Evaluation, Ledger, Run, RunStatus, TrainMetrics
from ci_runner.publish.model_card import build_model_card, push_model_card
from tests.hub_server import FakeHub

REPO = "alice/qwen3-codeforces-sft"


def ledger_and_run() -> tuple[Ledger, Run]:
    evals = [
        Evaluation(
            benchmark="humaneval",
            model_label="base",
            model="Qwen/Qwen3-0.6B",
            score=0.304,
            metric="pass@1",
            status=RunStatus.COMPLETED,
        ),
        Evaluation(
            benchmark="humaneval",
            model_label="final",
            model=REPO,
            score=0.342,
            metric="pass@1",
            status=RunStatus.COMPLETED,
        ),
        Evaluation(
            benchmark="gsm8k (5-shot)",
            model_label="final",
            model=REPO,
            score=0.41,
            metric="exact_match",
            status=RunStatus.COMPLETED,
        ),
    ]
    run = Run(
        run_id="qwen3-codeforces-sft-1234abcd",
        experiment="qwen3-codeforces-sft",
        title="t",
        method="sft",
        spec_hash="h",
        created_at="2026-11-22T00:00:00Z",
        status=RunStatus.COMPLETED,
        backend="hf-jobs",
        hardware="l4x1",
        base_model="Qwen/Qwen3-0.6B",
        dataset="open-r1/codeforces-cots",
        dataset_split="train",
        output_dir="/tmp/out",
        hub_model_id=REPO,
        hyperparameters={"learning_rate": 2e-5, "max_steps": 300},
        tracking_project="p",
        tracking_run="r",
        metrics=TrainMetrics(step=300, final_loss=0.91),
        evaluations=evals,
    )
    ledger = Ledger(
        experiment="qwen3-codeforces-sft",
        spec_path="e.yaml",
        report_path="r.md",
        base_model=run.base_model,
        dataset=run.dataset,
        method="sft",
        runs=[run],
    )
    return ledger, run


def front_matter(text: str) -> dict:
    return yaml.safe_load(text.split("---\n")[1])


def test_model_index_holds_the_final_scores():
    ledger, run = ledger_and_run()
    card = build_model_card(ledger, run)
    meta = front_matter(str(card))
    assert meta["base_model"] == "Qwen/Qwen3-0.6B"
    assert meta["datasets"] == ["open-r1/codeforces-cots"]
    assert "trl" in meta["tags"] and "sft" in meta["tags"]
    (index,) = meta["model-index"]
    assert index["name"] == REPO
    scores = {
        (r["dataset"]["type"], r["metrics"][0]["type"]): r["metrics"][0]["value"]
        for r in index["results"]
    }
    assert scores == {
        ("openai/openai_humaneval", "pass@1"): 0.342,
        ("openai/gsm8k", "exact_match"): 0.41,
    }
    assert "| humaneval | final | 0.342 | +0.038 |" in str(card)


@pytest.mark.usefixtures("loopback_online")
def test_card_is_uploaded_as_readme_through_the_real_client():
    ledger, run = ledger_and_run()
    hub = FakeHub()
    try:
        push_model_card(HfApi(endpoint=hub.url, token="hf_card"), ledger, run)
        (commit,) = hub.posts(f"/api/models/{REPO}/commit/main")
    finally:
        hub.close()
    lines = [json.loads(line) for line in commit.decode().splitlines() if line.strip()]
    files = {
        line["value"]["path"]: base64.b64decode(line["value"]["content"]).decode()
        for line in lines
        if line["key"] == "file"
    }
    assert list(files) == ["README.md"]
    meta = front_matter(files["README.md"])
    assert meta["model-index"][0]["results"][0]["metrics"][0]["value"] == 0.342
    header = next(line for line in lines if line["key"] == "header")
    assert "model card" in header["value"]["summary"]
