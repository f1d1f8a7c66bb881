"""job_scripts/job_config.py: the job's typed configs, and their agreement with the runner's.

The runner builds a job's config with the pydantic models in ``ci_runner/runconfig.py``;
the job reads it into the stdlib dataclasses of ``job_config.py``. The two sides are
compared field by field here (names, nesting, types, required or not, defaults), and real
documents the runner sends are read back on the job's side.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

import job_config  # conftest puts job_scripts/ on the path, as a job has it
import pytest
from protocol import RUN_CONFIG_ENV, SCHEMA_VERSION, SUMMARY_PREFIX, ConfigError
from pydantic import BaseModel, ConfigDict

from ci_runner import runconfig
from ci_runner.data.remote import check_run_id
from ci_runner.plan.estimate import make_plan
from ci_runner.plan.resolve import resolve_run
from ci_runner.spec.load import load_experiment

ROOT = Path(__file__).resolve().parents[1]
# What each job script receives: the runner's model, the job's dataclass.
TOP_LEVEL = (
    (runconfig.RunConfig, job_config.RunConfig),
    (runconfig.EvalConfig, job_config.EvalConfig),
    (runconfig.EvalBatchConfig, job_config.EvalBatchConfig),
    (runconfig.ExportConfig, job_config.ExportConfig),
)


# --- the comparison -----------------------------------------------------------------------


def shape(hint: Any) -> Any:
    """A type hint of either side as a comparable value: a list is a list whether the
    runner says ``list[X]`` or the job ``tuple[X, ...]``, a closed set is its values whether
    a Literal or an Enum, a nested model or dataclass is its name."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or isinstance(hint, types.UnionType):
        return frozenset(shape(arg) for arg in args)
    if origin is Literal:
        return ("one of", frozenset(args))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return ("one of", frozenset(member.value for member in hint))
    if origin in (list, tuple):
        return ("list", shape(args[0]))
    if origin is dict:
        return ("dict", shape(args[0]), shape(args[1]))
    if isinstance(hint, type) and (issubclass(hint, BaseModel) or dataclasses.is_dataclass(hint)):
        return ("object", hint.__name__)
    if hint is Any:
        return "any"
    if hint is type(None):
        return "null"
    return hint.__name__


def plain(value: Any) -> Any:
    """A default of either side as JSON would carry it (a nested object: its class name)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, BaseModel) or dataclasses.is_dataclass(value):
        return ("object", type(value).__name__)
    return value


def runner_fields(model: type[BaseModel]) -> dict[str, tuple[Any, bool, Any]]:
    return {
        name: (
            shape(info.annotation),
            info.is_required(),
            None if info.is_required() else plain(info.get_default(call_default_factory=True)),
        )
        for name, info in model.model_fields.items()
    }


def job_fields(cls: type) -> dict[str, tuple[Any, bool, Any]]:
    hints = typing.get_type_hints(cls)
    found = {}
    for spec in dataclasses.fields(cls):
        required = spec.default is dataclasses.MISSING and (
            spec.default_factory is dataclasses.MISSING
        )
        default = None
        if not required:
            has_default = spec.default is not dataclasses.MISSING
            default = plain(spec.default if has_default else spec.default_factory())  # type: ignore[misc]
        found[spec.name] = (shape(hints[spec.name]), required, default)
    return found


def differences(model: type[BaseModel], cls: type, path: str = "") -> list[str]:
    """Every way the job's dataclass ``cls`` differs from the runner's ``model``, nested
    models included (each nested model needs a dataclass of its name in ``job_config``)."""
    where = path or model.__name__
    ours, theirs = runner_fields(model), job_fields(cls)
    found = [f"{where}.{name}: only the runner has it" for name in ours.keys() - theirs.keys()]
    found += [f"{where}.{name}: only the job has it" for name in theirs.keys() - ours.keys()]
    for name in sorted(ours.keys() & theirs.keys()):
        (runner_type, runner_required, runner_default) = ours[name]
        (job_type, job_required, job_default) = theirs[name]
        if runner_type != job_type:
            found.append(f"{where}.{name}: type {runner_type} (runner) vs {job_type} (job)")
        if runner_required != job_required:
            found.append(f"{where}.{name}: required {runner_required} (runner) vs {job_required}")
        elif runner_default != job_default:
            found.append(f"{where}.{name}: default {runner_default!r} vs {job_default!r}")
    for name in sorted(ours.keys() & theirs.keys()):
        for nested in nested_models(model.model_fields[name].annotation):
            twin = getattr(job_config, nested.__name__, None)
            if twin is None or not dataclasses.is_dataclass(twin):
                found.append(f"{where}.{name}: job_config has no dataclass {nested.__name__}")
            else:
                found += differences(nested, twin, f"{where}.{name}")
    return found


def nested_models(hint: Any) -> list[type[BaseModel]]:
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return [hint]
    return [model for arg in typing.get_args(hint) for model in nested_models(arg)]


@pytest.mark.parametrize(("model", "cls"), TOP_LEVEL, ids=lambda c: c.__name__)
def test_the_job_reads_every_field_the_runner_writes_as_the_runner_means_it(model, cls):
    assert differences(model, cls) == []


def test_the_data_check_reads_the_run_configs_dataset_as_the_runner_writes_it():
    fields = job_fields(job_config.DataCheckConfig)
    assert fields == {"dataset": runner_fields(runconfig.RunConfig)["dataset"]}
    assert differences(runconfig.DatasetSource, job_config.DatasetSource) == []


def test_the_comparison_catches_each_kind_of_drift():
    """A runner model that drifted from ``job_config.Tracking`` in each way is caught."""
    frozen = ConfigDict(extra="forbid", frozen=True)

    class Tracking(BaseModel):  # a renamed field, a new one, a dropped default, a new value
        model_config = frozen
        project: str
        run: str
        space_id: str | None
        backend: Literal["trackio", "mlflow", "wandb"] = "trackio"
        uri: str | None = None
        tags: list[str] = []

    found = differences(Tracking, job_config.Tracking)
    assert sorted(found) == sorted(
        [
            "Tracking.run: only the runner has it",
            "Tracking.tags: only the runner has it",
            "Tracking.run_name: only the job has it",
            "Tracking.space_id: required True (runner) vs False",
            f"Tracking.backend: type {shape(Tracking.model_fields['backend'].annotation)} "
            f"(runner) vs {shape(Literal['trackio', 'mlflow'])} (job)",
        ]
    )

    class Seeded(BaseModel):  # same fields, another default
        model_config = frozen
        benchmark: str
        fewshot: int = 5
        dataset: str | None = None
        max_samples: int | None = None

    assert differences(Seeded, job_config.BenchmarkSpec) == ["Seeded.fewshot: default 5 vs 0"]


# --- what the runner really sends, read back ----------------------------------------------


def job_side(cls: type, model: BaseModel) -> Any:
    """What a job reads of ``model``: the JSON the backends send, through ``from_json``."""
    return cls.from_json(json.loads(model.model_dump_json()), source="run.json")


def as_json(config: Any) -> Any:
    """A job-side config back as the JSON document it came from."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=lambda e: e.value))


def test_a_resolved_experiment_round_trips_into_the_job_config(tmp_path):
    experiment = load_experiment(ROOT / "experiments" / "qwen3-codeforces-sft.yaml")
    plan = make_plan(experiment, size=None, dataset_rows=None, mean_seq_len=None)
    sent = resolve_run(experiment, output_dir=str(tmp_path), plan=plan).run_config
    read = job_side(job_config.RunConfig, sent)
    assert read.method is job_config.Method.SFT
    assert read.dataset.path == sent.dataset.path == "open-r1/codeforces-cots"
    assert read.tracking.run_name == sent.tracking.run_name
    assert as_json(read) == {**json.loads(sent.model_dump_json()), "launch": as_json(read.launch)}


def test_every_setting_survives_the_trip():
    """A run config with every field away from its default reads back whole."""
    sent = runconfig.RunConfig(
        experiment="e",
        run_id="e-1",
        method="grpo",
        base_model="org/model",
        base_model_revision="a" * 40,
        dataset=runconfig.DatasetSource(
            path="org/data",
            config="main",
            split="train[:90%]",
            eval_split="test",
            eval_fraction=0.1,
            columns={"prompt": "question"},
            max_samples=100,
            revision="b" * 40,
        ),
        hyperparameters={"learning_rate": 1e-5, "model_init_kwargs": {"dtype": "bfloat16"}},
        lora=runconfig.LoraSettings(r=8, alpha=16, dropout=0.0, target_modules=["q_proj"]),
        rewards=["accuracy", "format"],
        output_dir="/out",
        hub_model_id="me/model",
        hub_private=False,
        merge_lora=True,
        tracking=runconfig.Tracking(
            project="p", run_name="r", space_id="me/space", backend="mlflow", uri="http://x"
        ),
        seed=7,
        resume_from_checkpoint="last-checkpoint",
        launch=runconfig.Launch(processes=4, strategy="fsdp", mixed_precision="bf16", nodes=2),
    )
    read = job_side(job_config.RunConfig, sent)
    assert as_json(read) == json.loads(sent.model_dump_json())
    assert read.lora == job_config.LoraSettings(8, 16, 0.0, ("q_proj",))
    assert read.launch.nodes == 2 and read.tracking.backend == "mlflow"


def test_eval_batch_and_export_configs_round_trip():
    evaluation = runconfig.EvalConfig(
        experiment="e",
        run_id="e-1",
        eval_id="e-1-final",
        model="me/model@abc",
        model_label="final",
        after_job="/jobs/train",
        base_model="org/base",
        benchmarks=[
            runconfig.BenchmarkSpec(benchmark="humaneval", max_samples=20),
            runconfig.BenchmarkSpec(benchmark="gsm8k", fewshot=5, dataset="/data/gsm8k"),
        ],
        output_dir="/out/eval",
        inference_backend="vllm",
        allow_unisolated_code=True,
        quantize="4bit",
        device_map="auto",
    )
    batch = runconfig.EvalBatchConfig(evaluations=[evaluation, evaluation])
    read = job_side(job_config.EvalBatchConfig, batch)
    assert as_json(read) == json.loads(batch.model_dump_json())
    assert read.evaluations[0].benchmarks[1] == job_config.BenchmarkSpec("gsm8k", 5, "/data/gsm8k")

    export = runconfig.ExportConfig(
        experiment="e",
        run_id="e-1",
        model="/out/e-1",
        base_model="org/base",
        quantizations=["Q4_K_M", "Q8_0"],
        output_dir="/out/export",
        hub_repo="me/model-gguf",
    )
    read_export = job_side(job_config.ExportConfig, export)
    assert as_json(read_export) == json.loads(export.model_dump_json())
    assert read_export.quantizations == ("Q4_K_M", "Q8_0")


def test_the_data_check_job_reads_the_run_config_remote_check_sends():
    source = runconfig.DatasetSource(path="openai/gsm8k", config="main", revision="c" * 40)
    sent = runconfig.RunConfig(  # as ci_runner.data.remote builds it
        experiment="check-data",
        run_id=check_run_id(source),
        method="sft",
        base_model="none",
        dataset=source,
        output_dir="/tmp/ci-runner-check",
        tracking=runconfig.Tracking(project="check-data", run_name=check_run_id(source)),
    )
    read = job_side(job_config.DataCheckConfig, sent)
    assert read.dataset == job_config.DatasetSource("openai/gsm8k", "main", revision="c" * 40)


# --- malformed documents ----------------------------------------------------------------


def minimal_run() -> dict[str, Any]:
    return {
        "experiment": "e",
        "run_id": "e-1",
        "method": "sft",
        "base_model": "m",
        "dataset": {"path": "d"},
        "output_dir": "/out",
        "tracking": {"project": "p", "run_name": "r"},
    }


def without(document: dict[str, Any], *path: str) -> dict[str, Any]:
    copy = json.loads(json.dumps(document))
    inner = copy
    for key in path[:-1]:
        inner = inner[key]
    del inner[path[-1]]
    return copy


def test_the_defaults_fill_what_the_runner_leaves_out():
    read = job_config.RunConfig.from_json(minimal_run())
    assert (read.seed, read.hub_private, read.rewards, read.lora) == (42, True, (), None)
    assert read.launch == job_config.Launch() and read.schema_version == SCHEMA_VERSION
    assert read.dataset.split == "train" and read.dataset.columns == {}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: without(d, "dataset", "path"), "run.json: field 'dataset.path' is missing"),
        (lambda d: without(d, "tracking"), "run.json: field 'tracking' is missing"),
        (
            lambda d: {**d, "method": "ppo"},
            "run.json: field 'method' must be one of 'sft', 'dpo', 'grpo', not 'ppo'",
        ),
        (
            lambda d: {**d, "seed": "7"},
            "run.json: field 'seed' must be an integer, not '7'",
        ),
        (lambda d: {**d, "seed": True}, "field 'seed' must be an integer, not True"),
        (
            lambda d: {**d, "lora": {"r": 8, "quantize": "8bit"}},
            "field 'lora.quantize' must be one of '4bit' or null, not '8bit'",
        ),
        (lambda d: {**d, "lora": []}, "field 'lora' must be an object or null, not []"),
        (
            lambda d: {**d, "rewards": ["accuracy", 3]},
            "field 'rewards[1]' must be a string, not 3",
        ),
        (
            lambda d: {**d, "dataset": {"path": "d", "columns": {"prompt": 1}}},
            "field 'dataset.columns.prompt' must be a string, not 1",
        ),
        (
            lambda d: {**d, "tracking": "p/r"},
            "field 'tracking' must be an object, not 'p/r'",
        ),
    ],
)
def test_a_malformed_config_names_the_field_and_what_was_expected(change, message):
    with pytest.raises(ConfigError) as caught:
        job_config.RunConfig.from_json(change(minimal_run()), source="run.json")
    assert message in str(caught.value)


def test_an_unknown_field_is_ignored_with_a_note(capsys):
    """A newer runner may send optional settings an older script can do without: the job
    runs and says what it ignored (a change it must not ignore bumps SCHEMA_VERSION)."""
    document = {**minimal_run(), "new_setting": 1}
    document["dataset"] = {"path": "d", "streaming": True}
    read = job_config.RunConfig.from_json(document, source="run.json")
    assert read.dataset.path == "d"
    err = capsys.readouterr().err
    assert "note: run.json: ignoring field(s) dataset.streaming, new_setting that" in err


@pytest.mark.parametrize(
    ("script", "document", "message"),
    [
        ("train.py", {"method": "sft"}, "run.json: field 'experiment' is missing"),
        (
            "evaluate.py",
            {"experiment": "e", "run_id": "r", "eval_id": "i", "model": "m",
             "model_label": "final", "benchmarks": [{"fewshot": 1}], "output_dir": "OUT"},
            "run.json: field 'benchmarks[0].benchmark' is missing",
        ),
        (
            "export_gguf.py",
            {"experiment": "e", "run_id": "r", "model": "m", "output_dir": "OUT",
             "quantizations": "Q4_K_M"},
            "run.json: field 'quantizations' must be a list of strings, not 'Q4_K_M'",
        ),
        (
            "check_data.py",
            {"dataset": {"split": "train"}},
            "run.json: field 'dataset.path' is missing",
        ),
        ("train.py", {"schema_version": 99}, "run.json: config schema_version 99 is not 1"),
    ],
)  # fmt: skip
def test_each_job_script_fails_a_malformed_config_with_a_summary(
    script, document, message, tmp_path
):
    """Before any heavy import (``-S``: the standard library alone): a failed summary with
    the message, no traceback, exit 1."""
    output_dir = tmp_path / "out"
    text = json.dumps(document).replace('"OUT"', json.dumps(str(output_dir)))
    (tmp_path / "run.json").write_text(text)
    proc = subprocess.run(
        [sys.executable, "-S", str(ROOT / "job_scripts" / script), "--config", "run.json"],
        cwd=tmp_path,
        env={RUN_CONFIG_ENV: ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    last = proc.stdout.splitlines()[-1]
    summary = json.loads(last.removeprefix(SUMMARY_PREFIX))
    assert summary["status"] == "failed" and summary["error_type"] == "ConfigError"
    assert message in summary["error"]
    assert "Traceback" not in proc.stderr and f"error: {message}" in proc.stderr
    if "OUT" in json.dumps(document):  # the failure is kept beside the outputs too
        assert json.loads((output_dir / "ci_runner_summary.json").read_text()) == summary
