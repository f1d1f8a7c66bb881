"""Experiment files: shipped examples validate; malformed ones fail precisely."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ci_runner.cli import main
from ci_runner.core.durations import parse_duration
from ci_runner.errors import ExitCode, SpecError
from ci_runner.spec.load import parse_experiment
from tests.conftest import make_project

ROOT = Path(__file__).resolve().parents[1]
MALFORMED = Path(__file__).parent / "malformed"

# file → (line, field, words the message or hint must contain)
EXPECTED = {
    "bad_name.yaml": (1, "name", "lowercase"),
    "dataset_key_typo.yaml": (6, "dataset.colums", "did you mean 'columns'"),
    "duplicate_key.yaml": (4, "method", "duplicate key"),
    "grpo_batch_divisibility.yaml": (8, "hyperparameters.num_generations", "divisible"),
    "grpo_without_rewards.yaml": (3, "method", "rewards: [accuracy, format]"),
    "hardware_typo.yaml": (5, "hardware", "did you mean 'a10g-small'"),
    "hyperparameter_type.yaml": (6, "hyperparameters.beta", "expected float"),
    "invalid_yaml.yaml": (6, "", "invalid YAML"),
    "lora_key_typo.yaml": (6, "lora.rank", "allowed here: r, alpha"),
    "method_typo.yaml": (3, "method", "did you mean 'sft'"),
    "missing_base_model.yaml": (1, "base_model", "required field is missing"),
    "renamed_trl_field.yaml": (7, "hyperparameters.max_seq_length", "use 'max_length'"),
    "reward_unknown.yaml": (7, "rewards[1]", "did you mean 'accuracy'"),
    "scheduler_choice.yaml": (6, "hyperparameters.lr_scheduler_type", "did you mean 'cosine'"),
    "timeout_unparsable.yaml": (5, "timeout", "90m"),
    "token_in_file.yaml": (6, "hyperparameters.hub_token", "never put tokens"),
    "unknown_top_key.yaml": (5, "learning_rate", "move it under `hyperparameters:`"),
}


def test_every_malformed_file_has_an_expectation():
    assert sorted(p.name for p in MALFORMED.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_malformed_file_fails_with_location_field_and_hint(name):
    line, field, words = EXPECTED[name]
    path = MALFORMED / name
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == ExitCode.SPEC_INVALID
    prefix = f"{path}:{line}: {field}: " if field else f"{path}:{line}: "
    assert prefix in result.output
    assert words in result.output


def test_secret_values_are_never_echoed():
    result = CliRunner().invoke(main, ["validate", str(MALFORMED / "token_in_file.yaml")])
    assert "hf_SECRET" not in result.output


@pytest.mark.parametrize(
    "name", ["method_typo.yaml", "renamed_trl_field.yaml", "invalid_yaml.yaml"]
)
def test_submit_of_malformed_file_starts_nothing(tmp_path, name):
    shutil.copy(MALFORMED / name, tmp_path / name)
    result = subprocess.run(
        [sys.executable, "-m", "ci_runner.cli", "--root", str(tmp_path), "submit", name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == ExitCode.SPEC_INVALID, result.stderr
    assert f"{name}:" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / ".ci-runner").exists()
    assert not (tmp_path / "training_reports").exists()


def test_shipped_experiments_validate(tiny_fixtures, tmp_path):
    names = sorted(p.name for p in (ROOT / "experiments").glob("*.yaml"))
    assert len(names) >= 5
    root = make_project(tmp_path, tiny_fixtures.model.parent, *names)
    files = [str(root / "experiments" / name) for name in names]
    result = CliRunner().invoke(main, ["--root", str(root), "validate", *files])
    assert result.exit_code == 0, result.output
    assert result.output.count("ok  ") == len(files)


def test_demo_files_without_fixtures_say_how_to_build_them(tmp_path):
    root = make_project(tmp_path, tmp_path / "not-built", "tiny-sft.yaml")
    result = CliRunner().invoke(
        main, ["--root", str(root), "validate", str(root / "experiments" / "tiny-sft.yaml")]
    )
    assert result.exit_code == ExitCode.NOT_READY
    assert "base_model: no model folder at './fixtures/tiny-llama'" in result.output
    assert "hint: build the offline demo fixtures first: ci-runner fixtures" in result.output


def test_validate_json_reports_each_file(tmp_path):
    good = ROOT / "experiments" / "qwen3-codeforces-sft.yaml"
    bad = MALFORMED / "method_typo.yaml"
    result = CliRunner().invoke(main, ["validate", "--json", str(good), str(bad)])
    assert result.exit_code == ExitCode.SPEC_INVALID
    import json

    data = json.loads(result.stdout)
    assert [d["valid"] for d in data] == [True, False]
    assert data[1]["errors"][0]["line"] == 3
    assert data[1]["errors"][0]["field"] == "method"


MINIMAL = "name: x\nbase_model: org/model\nmethod: sft\ndataset: org/data\n"


def test_all_problems_are_reported_at_once():
    text = MINIMAL + "hyperparameters:\n  max_seq_length: 1\n  learning_rat: 1\n"
    with pytest.raises(SpecError) as info:
        parse_experiment(text, "f.yaml")
    assert [(i.line, i.field) for i in info.value.issues] == [
        (6, "hyperparameters.max_seq_length"),
        (7, "hyperparameters.learning_rat"),
    ]
    assert "did you mean 'learning_rate'" in str(info.value)


def test_yaml_quirks_are_normalised():
    text = MINIMAL + "lora: off\ntimeout: 1h30m\nhyperparameters:\n  learning_rate: 2e-4\n"
    experiment = parse_experiment(text, "f.yaml")
    assert experiment.lora == "off"
    assert experiment.timeout == 5400
    assert experiment.hyperparameters["learning_rate"] == pytest.approx(2e-4)  # YAML 1.2 float
    assert parse_experiment(MINIMAL + "lora: on\n", "f.yaml").lora.r == 16


def test_dataset_shorthand_and_lora_settings():
    experiment = parse_experiment(MINIMAL + "lora:\n  r: 8\n", "f.yaml")
    assert experiment.dataset.path == "org/data"
    assert experiment.dataset.split == "train"
    assert experiment.lora.r == 8 and experiment.lora.alpha == 32


def test_spec_hash_ignores_comments_and_key_order_but_not_values():
    a = parse_experiment(MINIMAL, "a.yaml")
    reordered = "method: sft\n# a comment\ndataset: org/data\nname: x\nbase_model: org/model\n"
    b = parse_experiment(reordered, "b.yaml")
    c = parse_experiment(MINIMAL + "seed: 7\n", "c.yaml")
    assert a.spec_hash == b.spec_hash
    assert a.spec_hash != c.spec_hash


def test_a_reference_that_can_be_neither_local_nor_hub_is_refused():
    with pytest.raises(SpecError) as info:
        parse_experiment(MINIMAL.replace("org/model", "models\\tiny llama"), "f.yaml")
    assert "is neither a Hub id (org/name) nor a local path" in str(info.value)
    assert parse_experiment(MINIMAL.replace("org/model", "./models/tiny"), "f.yaml")


@pytest.mark.parametrize(
    ("text", "seconds"), [("90m", 5400), ("2h", 7200), ("1h30m", 5400), ("45s", 45), (600, 600)]
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "0m", "-5", True])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_spec_hash_ignores_settings_that_do_not_change_training():
    base = parse_experiment(MINIMAL, "a.yaml")
    watched = parse_experiment(
        MINIMAL + "timeout: 3h\nbudget: {max_cost_usd: 9}\nretry: {max_attempts: 5}\n"
        "description: longer timeout\n",
        "b.yaml",
    )
    explicit_default = parse_experiment(MINIMAL + "seed: 42\n", "c.yaml")
    assert base.spec_hash == watched.spec_hash == explicit_default.spec_hash
    assert (
        base.spec_hash
        != parse_experiment(MINIMAL + "backend: local\nhardware: t4-small\n", "d").spec_hash
    )


def test_retry_settings_are_validated():
    with pytest.raises(SpecError) as info:
        parse_experiment(MINIMAL + "retry:\n  max_attempts: 0\n  on: [timeout, oom]\n", "r.yaml")
    fields = {i.field for i in info.value.issues}
    assert {"retry.max_attempts", "retry.on[1]"} <= fields  # `on:` is a key, not True


BENCHMARKS = """\
name: evals
base_model: Qwen/Qwen3-0.6B
method: sft
dataset: trl-lib/Capybara
evaluation:
  benchmarks:
    - benchmark: humanevl
    - benchmark: GSM8K
    - benchmark: gsm8k
    - benchmark: arc:easy
"""


def test_a_misspelled_builtin_benchmark_is_refused_with_did_you_mean():
    with pytest.raises(SpecError) as raised:
        parse_experiment(BENCHMARKS, "evals.yaml")
    text = str(raised.value)
    assert (
        "evals.yaml:7: evaluation.benchmarks[0].benchmark: unknown benchmark 'humanevl': the "
        "built-ins are humaneval, gsm8k; other names are lighteval tasks\n"
        "  hint: did you mean 'humaneval'?"
    ) in text
    assert "evals.yaml:8: evaluation.benchmarks[1].benchmark" in text
    assert "hint: did you mean 'gsm8k'?" in text
    assert "benchmarks[2]" not in text and "benchmarks[3]" not in text  # lighteval's own
