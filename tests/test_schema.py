"""The spec models are the one source of the experiment schema: the JSON Schema that
`ci-runner schema` prints and editors read, and the field tables in README.md and
AGENTS.md, all generated from them and kept in sync here."""

from __future__ import annotations

import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from ci_runner.cli import main
from ci_runner.errors import SpecError
from ci_runner.spec import model, schema
from ci_runner.spec.load import load_experiment

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "experiments").glob("*.yaml"))
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")


def ci_runner(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ci_runner.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def check_jsonschema(schema_file: Path, *files: Path) -> dict[str, list[str]]:
    """Run check-jsonschema as a user would; the failing paths of each file."""
    done = subprocess.run(
        [str(CHECK_JSONSCHEMA), "-o", "json", "--schemafile", str(schema_file), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(done.stdout)
    assert done.returncode == (0 if report["status"] == "ok" else 1), done.stderr
    assert not report.get("parse_errors"), report["parse_errors"]
    failed: dict[str, list[str]] = {}
    for error in report.get("errors", []):
        failed.setdefault(Path(error["filename"]).name, []).append(error["path"])
    return failed


def test_generated_files_match_the_models():
    assert schema.stale_files(ROOT) == [], (
        f"regenerate the schema file and the README/AGENTS.md field tables: "
        f"`{schema.REGENERATE}` from the repository root"
    )


def test_every_field_is_described():
    """Editors show these on hover and the docs tables are made of them: none may be empty."""
    seen: set[type[BaseModel]] = set()
    todo: list[type[BaseModel]] = [model.Experiment]
    undescribed = []
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        assert cls.__doc__, f"{cls.__name__} has no docstring"
        for name, field in cls.model_fields.items():
            if not field.description:
                undescribed.append(f"{cls.__name__}.{name}")
            for arg in (field.annotation, *_nested_args(field.annotation)):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    todo.append(arg)
    assert len(seen) >= 10
    assert undescribed == []


def _nested_args(annotation: object) -> list[object]:
    args = list(typing.get_args(annotation))
    for arg in list(args):
        args += _nested_args(arg)
    return args


def test_the_cli_prints_the_committed_schema():
    committed = (ROOT / schema.SCHEMA_FILE).read_text()
    printed = ci_runner("schema")  # as a user runs it
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == committed
    parsed = json.loads(printed.stdout)
    assert parsed["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert {"name", "base_model"} <= set(parsed["required"])
    assert parsed["additionalProperties"] is False  # a misspelt field is flagged

    runner = CliRunner()
    assert runner.invoke(main, ["schema", "--json"]).output == committed
    table = runner.invoke(main, ["schema", "--markdown"])
    assert table.output == schema.field_reference()
    assert "| `lora.quantize` |" in table.output
    both = runner.invoke(main, ["schema", "--markdown", "--json"])
    assert both.exit_code == 2 and "exclude each other" in both.output


def test_the_docs_tables_are_the_generated_reference():
    reference = schema.field_reference()
    for doc in schema.DOCS:
        text = (ROOT / doc).read_text()
        assert f"{schema.BEGIN}\n{reference}{schema.END}" in text, doc
    with pytest.raises(ValueError, match="no .* markers"):
        schema.splice("# no markers here\n", reference, where="X.md")


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_each_example_names_the_schema_for_editors(example):
    first = example.read_text().splitlines()[0]
    assert first.startswith(schema.MODELINE), f"{example.name}: first line is {first!r}"
    target = (example.parent / first[len(schema.MODELINE) :]).resolve()
    assert target == (ROOT / schema.SCHEMA_FILE).resolve()


def test_every_example_validates_against_the_printed_schema(tmp_path):
    """What an editor does with the modeline: validate the file against the schema."""
    printed = tmp_path / "experiment.schema.json"
    printed.write_text(ci_runner("schema").stdout)
    assert len(EXAMPLES) >= 5
    assert check_jsonschema(printed, *EXAMPLES) == {}


# The schema and the loader must agree on shape: what one accepts the other accepts,
# shorthands included (YAML 1.2 editors read `off` as a string, PyYAML as False).
ACCEPTED = {
    "shorthands.yaml": (
        "lora: off\ntimeout: 2h\nevaluation: [{benchmark: gsm8k}]\n"
        "stages: [{method: dpo, lora: on, dataset: trl-lib/ultrafeedback_binarized}]\n"
    ),
    "full-forms.yaml": (
        "dataset: {path: trl-lib/Capybara, split: train, eval_fraction: 0.1}\n"
        "lora: {r: 8, quantize: off}\ntimeout: 5400\nhardware: a10g-large\n"
        "evaluation: {benchmarks: [{benchmark: humaneval, max_samples: 20}], models: [final]}\n"
        "replicates: 3\n"
    ),
}
REFUSED = {
    "misspelt-field.yaml": ("lora: {rank: 8}\n", "$.lora"),
    "unknown-flavor.yaml": ("hardware: a100\n", "$.hardware"),
    "prose-duration.yaml": ("timeout: 2 hours\n", "$.timeout"),
    "bad-name.yaml": ("name: Tiny SFT\n", "$.name"),
    "unknown-key.yaml": ("learning_rate: 0.1\n", "$"),
    "bad-method.yaml": ("method: ppo\n", "$.method"),
}
BASE = "name: shapes\nbase_model: Qwen/Qwen3-0.6B\nmethod: sft\ndataset: trl-lib/Capybara\n"


def _write(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    lines = {line.split(":")[0]: line for line in BASE.splitlines()}
    for line in body.splitlines():
        lines[line.split(":")[0]] = line  # the body's value for a key wins
    path.write_text("\n".join(lines.values()) + "\n")
    return path


def test_schema_and_loader_agree_on_shape(tmp_path):
    folder = tmp_path / "experiments"
    folder.mkdir()
    accepted = [_write(folder, name, body) for name, body in ACCEPTED.items()]
    refused = {name: _write(folder, name, body) for name, (body, _) in REFUSED.items()}
    for path in accepted:
        load_experiment(path)
    for path in refused.values():
        with pytest.raises(SpecError):
            load_experiment(path)
    failed = check_jsonschema(ROOT / schema.SCHEMA_FILE, *accepted, *refused.values())
    assert set(failed) == set(REFUSED)
    for name, (_, where) in REFUSED.items():
        assert where in failed[name], (name, failed[name])
