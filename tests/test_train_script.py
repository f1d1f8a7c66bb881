"""job_scripts/train.py, run for real on the offline tiny model, plus its pure parts.

Training tests run the script as a subprocess, exactly as a job would, with
trackio logging to a temporary store that the test then reads back.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ci_runner.runconfig import RUN_CONFIG_ENV, SUMMARY_PREFIX, RunConfig

REPO = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = REPO / "job_scripts" / "train.py"
PROJECT = "ci-runner-tests"


@functools.cache
def train_module():
    """Import train.py from its path, with its folder on sys.path as when a job runs it."""
    if str(TRAIN_SCRIPT.parent) not in sys.path:
        sys.path.insert(0, str(TRAIN_SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("ci_runner_job_train", TRAIN_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Result:
    returncode: int
    output: str
    summary: dict[str, Any] | None


def make_config(tmp_path: Path, model: Path, data: Path | str, method: str, **fields) -> RunConfig:
    """A run config through the real contract model, so the test also checks the schema."""
    dataset = {"path": str(data), **fields.pop("dataset", {})}
    hyperparameters = {
        "max_steps": 3,
        "logging_steps": 1,
        "per_device_train_batch_size": 4,
        "save_strategy": "no",
        **fields.pop("hyperparameters", {}),
    }
    run_name = fields.pop("run_name", f"{method}-{tmp_path.name}")
    return RunConfig(
        experiment="tiny",
        run_id=run_name,
        method=method,
        base_model=str(model),
        dataset=dataset,
        hyperparameters=hyperparameters,
        output_dir=str(tmp_path / "out"),
        tracking={"project": PROJECT, "run_name": run_name},
        **fields,
    )


def job_side(config: RunConfig) -> Any:
    """The run config as the job reads it: the runner's JSON through ``job_config``."""
    import job_config

    return job_config.RunConfig.from_json(json.loads(config.model_dump_json()))


def job_run_config(method: str, dataset: dict[str, Any], **fields: Any) -> Any:
    """A job-side run config with the given method, dataset and fields, the rest filled in:
    for the data helpers, which read only those."""
    import job_config

    required = {"experiment": "t", "run_id": "t", "base_model": "m", "output_dir": "out"}
    tracking = {"project": PROJECT, "run_name": "t"}
    document = {**required, "tracking": tracking, **fields, "method": method, "dataset": dataset}
    return job_config.RunConfig.from_json(document)


def run_train(config: RunConfig, env: dict[str, str], cwd: Path, *, inline: bool = False) -> Result:
    """Run the script like a job does; the config goes in as a file or as inline JSON."""
    text = config.model_dump_json()
    env = dict(env)
    if inline:
        env[RUN_CONFIG_ENV] = text
        args: list[str] = []
    else:
        path = cwd / "run.json"
        path.write_text(text, encoding="utf-8")
        args = ["--config", str(path)]
    proc = subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = proc.stdout.splitlines()
    summaries = [line for line in lines if line.startswith(SUMMARY_PREFIX)]
    summary = json.loads(summaries[-1][len(SUMMARY_PREFIX) :]) if summaries else None
    if summary is not None:
        assert lines[-1].startswith(SUMMARY_PREFIX), "the summary must be the last stdout line"
    return Result(proc.returncode, proc.stdout + proc.stderr, summary)


def trackio_losses(env: dict[str, str], run_name: str, monkeypatch) -> list[float]:
    """train/loss values trackio stored for a run (its store path is fixed at import)."""
    from trackio import sqlite_storage

    monkeypatch.setattr(sqlite_storage, "TRACKIO_DIR", Path(env["TRACKIO_DIR"]))
    logs = sqlite_storage.SQLiteStorage.get_logs(PROJECT, run_name)
    return [entry["train/loss"] for entry in logs if "train/loss" in entry]


def assert_trained(result: Result, config: RunConfig, env, monkeypatch) -> dict[str, Any]:
    """What every successful run must show: exit 0, a sane summary, logged loss, saved files."""
    assert result.returncode == 0, result.output[-6000:]
    summary = result.summary
    assert summary is not None and summary["status"] == "completed"
    max_steps = config.hyperparameters["max_steps"]
    assert summary["method"] == config.method
    assert summary["steps"] == summary["max_steps"] == max_steps
    assert math.isfinite(summary["final_loss"]) and math.isfinite(summary["min_loss"])
    assert [step for step, _ in summary["loss_history"]] == list(range(1, max_steps + 1))
    assert summary["train_tokens"] > 0 and summary["train_tokens_per_s"] > 0
    assert summary["runtime_s"] > 0
    assert summary["lora"] is (config.lora is not None)

    out = Path(config.output_dir)
    assert summary["output_dir"] == str(out.resolve())
    assert json.loads((out / "ci_runner_summary.json").read_text()) == summary
    weights = "adapter_model.safetensors" if config.lora else "model.safetensors"
    assert (out / weights).is_file()
    assert (out / "tokenizer_config.json").is_file()
    if config.lora:
        assert (out / "adapter_config.json").is_file()
        assert not (out / "model.safetensors").exists()
    else:
        assert (out / "config.json").is_file()

    losses = trackio_losses(env, config.tracking.run_name, monkeypatch)
    assert len(losses) == max_steps
    assert losses[-1] == pytest.approx(summary["final_loss"])
    assert f"[step {max_steps}/{max_steps}] loss=" in result.output  # per-step progress
    return summary


# --- training runs ----------------------------------------------------------


@pytest.mark.training
def test_sft_messages(tiny_fixtures, job_env, tmp_path, monkeypatch):
    config = make_config(tmp_path, tiny_fixtures.model, tiny_fixtures.sft_data, "sft")
    result = run_train(config, job_env, tmp_path)
    assert_trained(result, config, job_env, monkeypatch)
    assert "ci-runner train: SFT" in result.output


@pytest.mark.training
def test_sft_lora_with_eval_split(tiny_fixtures, job_env, tmp_path, monkeypatch):
    config = make_config(
        tmp_path,
        tiny_fixtures.model,
        tiny_fixtures.sft_data,
        "sft",
        dataset={"eval_fraction": 0.25, "max_samples": 32},
        lora={"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
        hyperparameters={"learning_rate": 1e-3, "eval_steps": 3},
        merge_lora=True,
    )
    result = run_train(config, job_env, tmp_path)
    summary = assert_trained(result, config, job_env, monkeypatch)
    assert "rows train=24 eval=8" in result.output
    assert math.isfinite(summary["eval_loss"])
    # SFT's own metrics: eval loss at each eval step, token accuracy at each logging step
    assert [step for step, _ in summary["series"]["eval_loss"]] == [3]
    assert len(summary["series"]["mean_token_accuracy"]) == 3
    adapter = json.loads((Path(config.output_dir) / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and sorted(adapter["target_modules"]) == ["q_proj", "v_proj"]
    merged = Path(config.output_dir) / "merged"  # output.merge: a full model, no adapter
    assert (merged / "model.safetensors").exists() and (merged / "tokenizer_config.json").exists()
    assert not (merged / "adapter_config.json").exists()


@pytest.mark.training
def test_dpo_inline_config(tiny_fixtures, job_env, tmp_path, monkeypatch):
    config = make_config(tmp_path, tiny_fixtures.model, tiny_fixtures.dpo_data, "dpo")
    result = run_train(config, job_env, tmp_path, inline=True)
    summary = assert_trained(result, config, job_env, monkeypatch)
    assert summary["eval_loss"] is None
    series = summary["series"]
    assert {"rewards/accuracies", "rewards/margins", "rewards/chosen"} <= set(series)
    assert all(len(points) == 3 for points in series.values())
    assert "mean_token_accuracy" not in series  # SFT's, not DPO's


@pytest.mark.training
def test_dpo_column_mapping(tiny_fixtures, job_env, tmp_path, monkeypatch):
    rows = [json.loads(line) for line in tiny_fixtures.dpo_data.read_text().splitlines()]
    renamed = [
        {"prompt": r["prompt"], "good_response": r["chosen"], "bad_response": r["rejected"]}
        for r in rows
    ]
    data = tmp_path / "prefs-renamed.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in renamed))
    config = make_config(
        tmp_path,
        tiny_fixtures.model,
        data,
        "dpo",
        dataset={"columns": {"chosen": "good_response", "rejected": "bad_response"}},
    )
    assert_trained(run_train(config, job_env, tmp_path), config, job_env, monkeypatch)


@pytest.mark.training
def test_grpo_accuracy_reward(tiny_fixtures, job_env, tmp_path, monkeypatch):
    config = make_config(
        tmp_path,
        tiny_fixtures.model,
        tiny_fixtures.grpo_data,
        "grpo",
        rewards=["accuracy", "format"],
        hyperparameters={"num_generations": 4, "max_completion_length": 12},
    )
    result = run_train(config, job_env, tmp_path)
    summary = assert_trained(result, config, job_env, monkeypatch)
    assert "rewards/accuracy_reward/mean=" in result.output
    assert {
        "reward",
        "reward_std",
        "rewards/accuracy_reward/mean",
        "rewards/format_reward/mean",
        "completions/mean_length",
    } <= set(summary["series"])


@pytest.mark.training
def test_a_reward_that_is_always_zero_is_no_learning_signal(
    tiny_fixtures, job_env, tmp_path, monkeypatch
):
    """The summary carries the rewards, so the ledger can say the run learned nothing."""
    from ci_runner.core.jobs import JobState, JobStatus
    from ci_runner.job_scripts.protocol import TrainSummary
    from ci_runner.ledger.advance import apply_job_status
    from ci_runner.ledger.model import Attempt, Run
    from ci_runner.report.health import check_run

    module = tmp_path / "zero.py"
    module.write_text(
        "def zero_reward(completions, **kwargs):\n    return [0.0] * len(completions)\n"
    )
    config = make_config(
        tmp_path,
        tiny_fixtures.model,
        tiny_fixtures.grpo_data,
        "grpo",
        rewards=[f"{module}:zero_reward"],
        hyperparameters={"max_steps": 2, "num_generations": 4, "max_completion_length": 8},
    )
    summary = assert_trained(run_train(config, job_env, tmp_path), config, job_env, monkeypatch)
    assert summary["series"]["rewards/zero_reward/mean"] == [[1, 0.0], [2, 0.0]]
    run = Run(
        run_id="zero",
        experiment="zero",
        title="zero",
        method="grpo",
        spec_hash="h",
        created_at="2026-11-27T00:00:00Z",
        backend="local",
        hardware="local",
        base_model=str(tiny_fixtures.model),
        dataset=str(tiny_fixtures.grpo_data),
        dataset_split="train",
        rewards=list(config.rewards),
        hyperparameters=dict(config.hyperparameters),
        output_dir=config.output_dir,
        tracking_project=PROJECT,
        tracking_run="zero",
        attempts=[Attempt(number=1, backend="local", job_id="j", submitted_at="t0")],
    )
    run = apply_job_status(
        run,
        JobStatus("j", JobState.COMPLETED, 0),
        progress=None,
        summary=TrainSummary.from_dict(summary),
    )
    (finding,) = check_run(run)
    assert finding.check == "no-learning-signal"
    assert "the reward was 0 at each of the 2 logged steps (zero_reward always 0)" in finding.detail
    assert "max_completion_length (now 8)" in finding.remedy


@pytest.mark.training
def test_resume_from_latest_checkpoint(tiny_fixtures, job_env, tmp_path, monkeypatch):
    first = make_config(
        tmp_path,
        tiny_fixtures.model,
        tiny_fixtures.sft_data,
        "sft",
        hyperparameters={"max_steps": 2, "save_strategy": "steps", "save_steps": 2},
    )
    before = run_train(first, job_env, tmp_path).summary
    assert before is not None and before["steps"] == 2
    assert (Path(first.output_dir) / "checkpoint-2").is_dir()

    hyperparameters = {**first.hyperparameters, "max_steps": 4}
    second = first.model_copy(
        update={"hyperparameters": hyperparameters, "resume_from_checkpoint": "latest"}
    )
    summary = assert_trained(run_train(second, job_env, tmp_path), second, job_env, monkeypatch)
    # Steps 1-2 come from the checkpoint's history; tokens count this session only.
    assert summary["loss_history"][:2] == before["loss_history"]
    assert 0 < summary["train_tokens"] < 2 * before["train_tokens"]


def _chat_rows(tiny_fixtures) -> list[dict[str, Any]]:
    return [json.loads(line) for line in tiny_fixtures.sft_data.read_text().splitlines()]


@pytest.mark.training
def test_rows_without_content_are_dropped_and_reported(
    tiny_fixtures, job_env, tmp_path, monkeypatch
):
    rows = _chat_rows(tiny_fixtures)[:16]
    rows[3] = {"messages": None}
    rows[7]["messages"][-1]["content"] = None
    data = tmp_path / "holes.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = make_config(tmp_path, tiny_fixtures.model, data, "sft")
    result = run_train(config, job_env, tmp_path)
    summary = assert_trained(result, config, job_env, monkeypatch)
    assert summary["data"] == {
        "train_rows_without_content": {"dropped": 2, "total": 16, "columns": ["messages"]}
    }
    assert "warning: the train set: 2 of 16 rows (12%) have no content in messages" in (
        result.output
    )
    assert "rows train=14" in result.output


@pytest.mark.slow
def test_a_dataset_mostly_without_content_is_refused(tiny_fixtures, job_env, tmp_path):
    rows = _chat_rows(tiny_fixtures)[:6]
    for row in rows[:4]:
        row["messages"] = None
    data = tmp_path / "empty.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = make_config(tmp_path, tiny_fixtures.model, data, "sft")
    result = run_train(config, job_env, tmp_path)
    assert result.returncode == 1
    assert result.summary is not None and result.summary["error_type"] == "ConfigError"
    assert result.summary["error"] == (
        "the train set: 4 of 6 rows (67%) have no content in messages: more than half, so the "
        "dataset is refused; fix or filter it"
    )


@pytest.mark.training
def test_sharegpt_conversations_train_as_chat(tiny_fixtures, job_env, tmp_path, monkeypatch):
    speakers = {"user": "human", "assistant": "gpt", "system": "system"}
    rows = [
        {
            "id": i,
            "conversations": [
                {"from": speakers[m["role"]], "value": m["content"], "weight": None}
                for m in row["messages"]
            ],
        }
        for i, row in enumerate(_chat_rows(tiny_fixtures)[:16])
    ]
    data = tmp_path / "sharegpt.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = make_config(tmp_path, tiny_fixtures.model, data, "sft")
    result = run_train(config, job_env, tmp_path)
    assert_trained(result, config, job_env, monkeypatch)
    assert (
        "train set: train.py keeps messages; reads conversations as messages; rewrites the "
        "turns of messages as {role, content}" in result.output
    )


# --- failures end in a failed summary ---------------------------------------


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unknown_reward", "unknown reward 'bogus'"),
        ("missing_column", "DPO needs column(s) chosen+rejected"),
        ("bad_mapping", "missing column(s) ['good_response']"),
        ("renamed_field", "max_seq_length (did you mean max_length?)"),
    ],
)
@pytest.mark.slow
def test_config_errors_fail_with_summary(tiny_fixtures, job_env, tmp_path, case, expected):
    model = tiny_fixtures.model
    config = {
        "unknown_reward": lambda: make_config(
            tmp_path, model, tiny_fixtures.grpo_data, "grpo", rewards=["accuracy", "bogus"]
        ),
        "missing_column": lambda: make_config(tmp_path, model, tiny_fixtures.sft_data, "dpo"),
        "bad_mapping": lambda: make_config(
            tmp_path,
            model,
            tiny_fixtures.dpo_data,
            "dpo",
            dataset={"columns": {"chosen": "good_response"}},
        ),
        "renamed_field": lambda: make_config(
            tmp_path,
            model,
            tiny_fixtures.sft_data,
            "sft",
            hyperparameters={"max_seq_length": 64},
        ),
    }[case]()
    result = run_train(config, job_env, tmp_path)
    assert result.returncode != 0
    assert result.summary is not None, result.output[-4000:]
    assert result.summary["status"] == "failed"
    assert result.summary["error_type"] == "ConfigError"
    assert expected in result.summary["error"]
    saved = json.loads((Path(config.output_dir) / "ci_runner_summary.json").read_text())
    assert saved == result.summary


@pytest.mark.slow
def test_crash_in_training_fails_with_summary(tiny_fixtures, job_env, tmp_path):
    config = make_config(tmp_path, tmp_path / "no-such-model", tiny_fixtures.sft_data, "sft")
    result = run_train(config, job_env, tmp_path)
    assert result.returncode != 0
    assert result.summary is not None and result.summary["status"] == "failed"
    assert result.summary["error_type"] != "ConfigError" and result.summary["error"]
    assert "Traceback" in result.output  # unexpected errors keep their stack


def test_missing_config_fails_with_summary(job_env, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT)],
        cwd=tmp_path,
        env=job_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    last = proc.stdout.splitlines()[-1]
    summary = json.loads(last[len(SUMMARY_PREFIX) :])
    assert summary["status"] == "failed" and RUN_CONFIG_ENV in summary["error"]


# --- pure parts: rewards, columns, contract ----------------------------------


def test_script_speaks_the_shared_protocol():
    from ci_runner.job_scripts import protocol

    train = train_module()
    assert Path(train.protocol.__file__).resolve() == Path(protocol.__file__).resolve()
    assert (SUMMARY_PREFIX, RUN_CONFIG_ENV) == (protocol.SUMMARY_PREFIX, protocol.RUN_CONFIG_ENV)


def test_script_header_is_pep723():
    text = TRAIN_SCRIPT.read_text()
    assert text.startswith("# /// script\n")
    assert '"torch==2.13.0"' in text and '"trl==1.16.0"' in text
    assert not re.search(r"^\s*(from|import)\s+ci_runner", text, re.MULTILINE)


@pytest.mark.parametrize(
    ("completion", "answer", "reward"),
    [
        ("<answer>7</answer>", "7", 1.0),
        ("<answer>8</answer>", "7", 0.0),
        ("Reasoning: 3 + 4 = 7. <answer> 7 </answer>", "7", 1.0),
        ("3 + 4 = 7", "7", 1.0),  # no tags: the last number counts
        ("7 is close, but 8", "7", 0.0),
        ("<answer>-3</answer>", "-3", 1.0),
        ("<answer>1,000</answer>", "1000", 1.0),
        ("<answer>7.0</answer>", 7, 1.0),
        ("<answer>seven</answer>", "7", 0.0),
        ("", "7", 0.0),
        ([{"role": "assistant", "content": "<answer>12</answer>"}], "12", 1.0),
        ([{"role": "assistant", "content": "<answer>13</answer>"}], "12", 0.0),
        ("<answer>7</answer>", None, 0.0),
    ],
)
def test_accuracy_reward(completion, answer, reward):
    train_module()
    import rewards

    assert rewards.accuracy_reward([completion], answer=[answer]) == [reward]


@pytest.mark.parametrize(
    ("completion", "reward"),
    [
        ("<answer>7</answer>", 1.0),
        ("Let me think. <answer>42</answer>\n", 1.0),
        ([{"role": "assistant", "content": "<answer>3</answer>"}], 1.0),
        ("7", 0.0),
        ("<answer></answer>", 0.0),
        ("<answer>7</answer> and then more text", 0.0),
        ("<answer>7", 0.0),
    ],
)
def test_format_reward(completion, reward):
    train_module()
    import rewards

    assert rewards.format_reward([completion]) == [reward]


def test_resolve_rewards_builtin_user_and_unknown(tmp_path):
    train = train_module()
    import rewards

    module = tmp_path / "my_rewards.py"
    module.write_text(
        "def brevity(completions, **kwargs):\n    return [1.0 for _ in completions]\n"
    )
    funcs, columns = rewards.resolve_rewards(["accuracy", "format", f"{module}:brevity"])
    assert [f.__name__ for f in funcs] == ["accuracy_reward", "format_reward", "brevity"]
    assert columns == {"answer"}
    assert funcs[2](["x", "y"]) == [1.0, 1.0]
    with pytest.raises(train.ConfigError, match="unknown reward 'bleu'"):
        rewards.resolve_rewards(["bleu"])
    with pytest.raises(train.ConfigError, match="has no function 'nope'"):
        rewards.resolve_rewards([f"{module}:nope"])
    with pytest.raises(train.ConfigError, match="not found"):
        rewards.resolve_rewards([f"{tmp_path / 'absent.py'}:f"])


def test_load_split_from_saved_and_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    train = train_module()
    import train_data
    from job_config import DatasetSource

    rows = {"prompt": ["a", "b", "c"], "answer": ["1", "2", "3"]}
    saved = tmp_path / "saved"
    datasets.DatasetDict(
        train=datasets.Dataset.from_dict(rows), test=datasets.Dataset.from_dict(rows)
    ).save_to_disk(str(saved))
    assert train_data.load_split(DatasetSource(str(saved)), "test")["answer"] == ["1", "2", "3"]
    with pytest.raises(train.ConfigError, match="no split 'dev'"):
        train_data.load_split(DatasetSource(str(saved)), "dev")

    folder = tmp_path / "files"
    folder.mkdir()
    for split in ("train", "test"):
        (folder / f"{split}.jsonl").write_text('{"prompt": "q", "answer": "1"}\n')
    assert len(train_data.load_split(DatasetSource(str(folder)), "test")) == 1

    csv = tmp_path / "data.csv"
    csv.write_text("prompt,answer\nq,1\nr,2\n")
    assert train_data.load_split(DatasetSource(str(csv)), "train")["answer"] == [1, 2]
    with pytest.raises(train.ConfigError, match="only has a 'train' split"):
        train_data.load_split(DatasetSource(str(csv)), "test")


def test_rename_columns_replaces_existing_target():
    datasets = pytest.importorskip("datasets")
    train_module()
    import train_data

    data = datasets.Dataset.from_dict({"chosen": ["old"], "good": ["new"], "rejected": ["r"]})
    renamed = train_data.rename_columns(data, {"chosen": "good"})
    assert sorted(renamed.column_names) == ["chosen", "rejected"]
    assert renamed["chosen"] == ["new"]


# --- fixtures -----------------------------------------------------------------


def test_demo_module_imports_light():
    code = "import sys, ci_runner.demo; print(sorted({'torch','transformers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_fixtures_are_idempotent_and_well_formed(tiny_fixtures):
    from ci_runner.demo import build_demo

    files = [tiny_fixtures.model / "model.safetensors", tiny_fixtures.sft_data]
    before = [path.stat().st_mtime_ns for path in files]
    again = build_demo(tiny_fixtures.model.parent)
    assert again == tiny_fixtures
    assert [path.stat().st_mtime_ns for path in files] == before  # nothing rewritten

    sft = [json.loads(line) for line in tiny_fixtures.sft_data.read_text().splitlines()]
    assert len(sft) == 64 and all(r["messages"][-1]["role"] == "assistant" for r in sft)
    dpo = [json.loads(line) for line in tiny_fixtures.dpo_data.read_text().splitlines()]
    assert all(set(r) == {"prompt", "chosen", "rejected"} for r in dpo)
    assert all(r["chosen"] != r["rejected"] for r in dpo)
    grpo = [json.loads(line) for line in tiny_fixtures.grpo_data.read_text().splitlines()]
    assert all("<answer>" in r["prompt"][0]["content"] and r["answer"] for r in grpo)

    tok_config = json.loads((tiny_fixtures.model / "tokenizer_config.json").read_text())
    decoder = {v["content"]: v["special"] for v in tok_config["added_tokens_decoder"].values()}
    assert decoder["<|im_start|>"] and decoder["<|im_end|>"] and decoder["<pad>"]
    assert (tiny_fixtures.model / "tokenizer.model").is_file()


def test_fixture_tokenizer_and_model(tiny_fixtures):
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(tiny_fixtures.model)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<pad>"
    messages = [{"role": "user", "content": "What is 12 + 3?"}]
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\nWhat is 12 + 3?<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(prompt)["input_ids"]
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>")  # special, no BOS added
    assert tok.decode(ids) == prompt
    assert tok.tokenize("12")[-2:] == ["1", "2"]  # split digits

    config = transformers.AutoConfig.from_pretrained(tiny_fixtures.model)
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (256, 2, 512)
    assert config.tie_word_embeddings and len(tok) == config.vocab_size
    generation = transformers.GenerationConfig.from_pretrained(tiny_fixtures.model)
    assert generation.eos_token_id == tok.eos_token_id
    assert generation.pad_token_id == tok.pad_token_id
