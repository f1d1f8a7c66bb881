"""Validation as users write files: local or Hub decided once, every mistake in one pass.

Local-path tests run the real CLI with HF_ENDPOINT and the dataset viewer pointed at
loopback servers, and assert that neither saw a request.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from ci_runner.cli import main
from ci_runner.core.hub import RefKind, resolve_ref
from ci_runner.errors import ExitCode, SpecError
from ci_runner.spec.load import load_experiment, parse_experiment
from tests.conftest import ROOT, make_project
from tests.corpus import entries, serve
from tests.dataset_viewer_server import FakeDatasetViewer
from tests.model_hub import config_files, model_hub

BASE = "name: refs\nmethod: sft\n"


def invoke(root: Path, *args: str):
    return CliRunner().invoke(main, ["--root", str(root), *args])


# --- local or Hub -----------------------------------------------------------------------


def test_resolve_ref_prefers_what_exists_locally(tmp_path):
    (tmp_path / "fixtures" / "tiny-llama").mkdir(parents=True)
    local = resolve_ref("fixtures/tiny-llama", tmp_path)
    assert (local.kind, local.value, local.shadows_hub_id) == (
        RefKind.LOCAL,
        "./fixtures/tiny-llama",
        True,
    )
    assert resolve_ref("Qwen/Qwen3-0.6B", tmp_path).kind is RefKind.HUB
    missing = resolve_ref("data/train.jsonl", tmp_path)  # no Hub repo is named *.jsonl
    assert (missing.kind, missing.exists) == (RefKind.LOCAL, False)
    assert resolve_ref("./elsewhere", tmp_path).value == "./elsewhere"


@pytest.mark.usefixtures("loopback_online")
def test_unprefixed_local_paths_are_local_and_never_reach_the_network(
    tiny_fixtures, tmp_path, monkeypatch
):
    root = make_project(tmp_path / "project", tiny_fixtures.model.parent)
    spec = root / "experiments" / "local.yaml"
    spec.write_text(
        "name: local\nbase_model: fixtures/tiny-llama\nmethod: sft\n"
        "dataset: fixtures/data/tiny-chat.jsonl\nhyperparameters: {max_steps: 2}\n"
    )
    with model_hub(tmp_path, monkeypatch) as hub, FakeDatasetViewer() as viewer:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_DATASETS_SERVER", viewer.url)
        validated = invoke(root, "validate", "--json", str(spec))
        planned = invoke(root, "plan", "--json", str(spec))
        checked = invoke(
            root, "check-data", "--json", "--dataset", "fixtures/data/tiny-prefs.jsonl"
        )
        assert hub.seen == [] and viewer.requests == []
    assert validated.exit_code == 0, validated.output
    (result,) = json.loads(validated.stdout)
    assert any("local copy is used, not the Hub repo" in w for w in result["warnings"])
    assert planned.exit_code == 0, planned.output
    plan = json.loads(planned.stdout)
    assert plan["plan"]["base_model"] == "./fixtures/tiny-llama"
    assert plan["plan"]["params"] is not None  # sized from the local folder
    assert checked.exit_code == 0, checked.output
    report = json.loads(checked.stdout)
    assert report["origin"].startswith("local JSONL file")
    dpo = next(c for c in report["checks"] if c["method"] == "dpo")
    assert dpo["verdict"] == "READY"


def test_neither_hub_id_nor_local_path_is_refused_at_validate(tmp_path):
    spec = tmp_path / "x.yaml"
    spec.write_text(BASE + "base_model: my model\ndataset: trl-lib/Capybara\n")
    with pytest.raises(SpecError) as err:
        load_experiment(spec, root=tmp_path)
    (issue,) = err.value.issues
    assert (issue.line, issue.field) == (3, "base_model")
    assert issue.message == "'my model' is not in this project and cannot be a Hub repo id"


def test_a_typo_in_a_local_path_gets_a_did_you_mean(tmp_path):
    (tmp_path / "models" / "tiny-llama").mkdir(parents=True)
    (tmp_path / "models" / "tiny-llama" / "config.json").write_text("{}")
    spec = tmp_path / "x.yaml"
    spec.write_text(BASE + "base_model: ./models/tiny-lama\ndataset: trl-lib/Capybara\n")
    with pytest.raises(SpecError) as err:
        load_experiment(spec, root=tmp_path)
    (issue,) = err.value.issues
    assert str(issue) == (
        f"{spec}:3: base_model: no model folder at './models/tiny-lama'\n"
        "  hint: did you mean 'tiny-llama'?"
    )


def test_reward_code_is_checked_without_running_it(tmp_path):
    (tmp_path / "rewards.py").write_text(
        "import sys\nsys.exit('executed!')\ndef length_reward(completions, **kw):\n    return []\n"
    )
    text = (
        "name: r\nbase_model: Qwen/Qwen3-0.6B\nmethod: grpo\ndataset: trl-lib/DeepMath-103K\n"
        "rewards:\n  - rewards.py:length_reward\n  - rewards.py:lenght_reward\n"
        "  - missing.py:f\n"
    )
    with pytest.raises(SpecError) as err:
        parse_experiment(text, "r.yaml", root=tmp_path)
    assert [str(i) for i in err.value.issues] == [
        "r.yaml:7: rewards[1]: rewards.py has no function 'lenght_reward'\n"
        "  hint: did you mean 'length_reward'?",
        f"r.yaml:8: rewards[2]: no reward module at 'missing.py'\n  hint: {tmp_path} holds: "
        "rewards.py",
    ]


# --- one pass, every mistake ---------------------------------------------------------------

FIVE_MISTAKES = """\
name: five-mistakes
base_model: ./models/tiny-lama
method: grpo
dataset: trl-lib/DeepMath-103K
lora: {rank: 8}
rewards: [./rewards/missing.py:score]
hyperparameters:
  max_seq_length: 512
  per_device_train_batch_size: 0
"""


def test_five_different_mistakes_are_reported_together_exit_3(tmp_path):
    (tmp_path / "models" / "tiny-llama").mkdir(parents=True)
    (tmp_path / "rewards").mkdir()
    spec = tmp_path / "five.yaml"
    spec.write_text(FIVE_MISTAKES)
    result = invoke(tmp_path, "validate", "--json", str(spec))
    assert result.exit_code == ExitCode.SPEC_INVALID
    (report,) = json.loads(result.stdout)
    found = {(e["line"], e["field"]) for e in report["errors"]}
    assert found == {
        (2, "base_model"),  # local path typo
        (5, "lora.rank"),  # schema
        (6, "rewards[0]"),  # reward file
        (8, "hyperparameters.max_seq_length"),  # renamed TRL field
        (9, "hyperparameters.per_device_train_batch_size"),  # range
    }
    messages = {e["field"]: e for e in report["errors"]}
    assert messages["hyperparameters.max_seq_length"]["hint"] == (
        "use 'max_completion_length' (GRPO bounds what it generates; prompts are not truncated)"
    )
    assert messages["hyperparameters.per_device_train_batch_size"]["message"] == (
        "must be at least 1, got 0"
    )
    assert messages["base_model"]["hint"] == "did you mean 'tiny-llama'?"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("per_device_train_batch_size", 0, "must be at least 1, got 0"),
        ("gradient_accumulation_steps", 0, "must be at least 1, got 0"),
        ("num_train_epochs", -1, "must be greater than 0, got -1"),
        ("learning_rate", 0, "must be greater than 0, got 0"),
        ("max_steps", 0, "must be a positive step count (or -1), got 0"),
    ],
)
def test_numeric_ranges_trl_implies(field, value, message):
    text = (
        f"{BASE}base_model: Qwen/Qwen3-0.6B\ndataset: trl-lib/Capybara\n"
        f"hyperparameters:\n  {field}: {value}\n"
    )
    with pytest.raises(SpecError) as err:
        parse_experiment(text, "x.yaml")
    (issue,) = err.value.issues
    assert (issue.line, issue.field, issue.message) == (6, f"hyperparameters.{field}", message)


def test_messages_echo_the_value_given():
    text = "name: x\nbase_model: Qwen/Qwen3-0.6B\nmethod: ppo2\ndataset: trl-lib/Capybara\n"
    with pytest.raises(SpecError) as err:
        parse_experiment(text, "x.yaml")
    (issue,) = err.value.issues
    assert issue.message == "Input should be 'sft', 'dpo' or 'grpo', got 'ppo2'"


def test_per_device_batch_size_suggests_the_train_field():
    text = f"{BASE}base_model: Qwen/Qwen3-0.6B\ndataset: trl-lib/Capybara\n"
    text += "hyperparameters: {per_device_batch_size: 4}\n"
    with pytest.raises(SpecError) as err:
        parse_experiment(text, "x.yaml")
    (issue,) = err.value.issues
    assert issue.hint == "use 'per_device_train_batch_size' (the batch size is per device)"


# --- the flagship against real columns ------------------------------------------------------


@pytest.mark.usefixtures("loopback_online")
def test_flagship_plans_against_codeforces_real_columns_with_no_mapping(tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    spec_text = (ROOT / "experiments" / "qwen3-codeforces-sft.yaml").read_text()
    assert "columns" not in spec_text
    (tmp_path / "experiments").mkdir()
    spec = tmp_path / "experiments" / "qwen3-codeforces-sft.yaml"
    spec.write_text(spec_text)
    files = {"Qwen/Qwen3-0.6B": config_files("Qwen3-0.6B")}
    with model_hub(tmp_path, monkeypatch, files) as hub, FakeDatasetViewer() as viewer:
        serve(viewer, entries()["open-r1/codeforces-cots"])
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_DATASETS_SERVER", viewer.url)
        monkeypatch.setenv("HF_TOKEN", "hf_test")
        result = invoke(tmp_path, "plan", "--json", str(spec))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    sft = next(c for c in data["data"]["checks"] if c["method"] == "sft")
    assert (sft["verdict"], sft["mapping"]) == ("READY", {})
    assert any(r.startswith("train.py keeps messages; drops prompt") for r in sft["reasons"])
    assert data["data"]["num_rows"] == entries()["open-r1/codeforces-cots"].num_rows
    assert data["plan"]["flavor"] and not data["plan"]["over_budget"]


# --- docs that run ---------------------------------------------------------------------------

YAML_BLOCK = re.compile(r"```yaml\n(.*?)```", re.DOTALL)


def doc_examples() -> list[tuple[str, int, str]]:
    """Every fenced YAML block in README.md and AGENTS.md that is a whole experiment."""
    found = []
    for doc in ("README.md", "AGENTS.md"):
        text = (ROOT / doc).read_text(encoding="utf-8")
        for match in YAML_BLOCK.finditer(text):
            block = match.group(1)
            if re.search(r"^name:", block, re.M) and re.search(r"^base_model:", block, re.M):
                found.append((doc, text[: match.start()].count("\n") + 2, block))
    return found


def test_the_docs_have_experiment_examples():
    assert {doc for doc, _, _ in doc_examples()} == {"README.md", "AGENTS.md"}


@pytest.mark.parametrize(("doc", "line", "block"), doc_examples(), ids=lambda v: str(v)[:40])
def test_doc_examples_validate(doc, line, block, tiny_fixtures, tmp_path):
    root = make_project(tmp_path / "project", tiny_fixtures.model.parent)
    (root / "rewards.py").write_text("def my_reward(completions, **kwargs):\n    return []\n")
    try:
        parse_experiment(block, f"{doc}:{line}", root=root)
    except SpecError as exc:
        pytest.fail(f"the example at {doc}:{line} does not validate:\n{exc}")
