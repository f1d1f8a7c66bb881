"""Plans refuse what they cannot size: ``plan`` and ``submit`` exit 4 with the reason and a
remedy, against a loopback Hub that answers as huggingface.co does (gated repos, missing
repos and revisions, repos without safetensors or config.json), and never turn LoRA off
on a guess."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ci_runner.cli import main
from ci_runner.errors import ExitCode
from tests.model_hub import model_hub

pytestmark = pytest.mark.usefixtures("loopback_online")

SPEC = """\
name: unsized
base_model: {model}
method: sft
backend: hf-jobs
dataset: HuggingFaceH4/ultrachat_200k
output:
  hub_model_id: alice/unsized
hyperparameters:
  max_steps: 10
{extra}"""


def plan_and_submit(tmp_path, monkeypatch, model: str, *, extra: str = "", errors=None):
    spec = tmp_path / "experiments" / "unsized.yaml"
    spec.parent.mkdir(exist_ok=True)
    spec.write_text(SPEC.format(model=model, extra=extra))
    with model_hub(tmp_path, monkeypatch, {"README.md": b"# a model card"}) as hub:
        hub.errors.update(errors or {})
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", "hf_test")
        runner = CliRunner()
        root = ["--root", str(tmp_path)]
        planned = runner.invoke(main, [*root, "plan", "--json", "--skip-data-check", str(spec)])
        text = runner.invoke(main, [*root, "plan", "--skip-data-check", str(spec)])
        submitted = runner.invoke(main, [*root, "submit", "--skip-data-check", str(spec)])
    return planned, text, submitted


CASES = {
    "gated": (
        {"meta-llama/Llama-3.1-8B": (401, "GatedRepo")},
        "meta-llama/Llama-3.1-8B",
        "is gated: its files are served only to accounts that accepted its terms",
        "accept the terms on https://huggingface.co/meta-llama/Llama-3.1-8B and set HF_TOKEN",
    ),
    "missing": (
        {"org/no-such-model": (404, "RepoNotFound")},
        "org/no-such-model",
        "was not found on the Hub (or it is private and HF_TOKEN cannot read it)",
        "check the model id, or set HF_TOKEN to a token with access to it",
    ),
    "revision": (
        {"Qwen/Qwen3-0.6B@v9": (404, "RevisionNotFound")},
        "Qwen/Qwen3-0.6B@v9",
        "Qwen/Qwen3-0.6B has no revision 'v9'",
        "set base_model_revision to a branch, tag or commit of the repo",
    ),
    "no weights metadata": (
        {},
        "org/bare-repo",
        "has no safetensors metadata and no config.json with a decoder's sizes",
        "set `hardware:` to a flavor in the experiment file",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_model_that_cannot_be_sized_stops_plan_and_submit_with_a_remedy(
    case, tmp_path, monkeypatch
):
    errors, model, reason, remedy = CASES[case]
    planned, text, submitted = plan_and_submit(tmp_path, monkeypatch, model, errors=errors)
    assert planned.exit_code == ExitCode.NOT_READY, planned.output
    data = json.loads(planned.stdout)
    (problem,) = data["unsized"]
    assert reason in problem["reason"] and remedy in problem["remedy"]
    assert data["plan"]["lora_on"] is True  # never full fine-tuning on a guess
    assert text.exit_code == ExitCode.NOT_READY
    assert reason in text.output
    assert f"hint: {problem['remedy']}" in text.output
    assert submitted.exit_code == ExitCode.NOT_READY
    assert reason in submitted.output and remedy in submitted.output
    assert not (tmp_path / "training_reports").exists()  # nothing recorded


def test_hardware_by_hand_lets_an_unsized_model_plan(tmp_path, monkeypatch):
    planned, _, _ = plan_and_submit(
        tmp_path, monkeypatch, "org/bare-repo", extra="hardware: a10g-large\n"
    )
    assert planned.exit_code == ExitCode.OK, planned.output
    data = json.loads(planned.stdout)
    assert data["unsized"] == [] and data["plan"]["flavor"] == "a10g-large"
    assert data["plan"]["lora_on"] is True


def test_hardware_by_hand_does_not_hide_a_gated_repo(tmp_path, monkeypatch):
    errors = {"meta-llama/Llama-3.1-8B": (401, "GatedRepo")}
    planned, _, submitted = plan_and_submit(
        tmp_path,
        monkeypatch,
        "meta-llama/Llama-3.1-8B",
        extra="hardware: a10g-large\n",
        errors=errors,
    )
    assert planned.exit_code == submitted.exit_code == ExitCode.NOT_READY
    assert "is gated" in submitted.output
