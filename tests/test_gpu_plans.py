"""Plans pinned for real models, sized through the loopback Hub as on huggingface.co.

The real ``huggingface_hub`` client reads each model's ``config.json`` and safetensors
headers (``model.safetensors.index.json`` + a ranged GET per shard) from a server on
127.0.0.1. Every plan is then resolved into the run config a job receives and the job
command that starts it, so what is pinned here is what would run: flavor, price,
memory, the dtype the base loads in, quantization and the launcher.

The experiment: SFT, per-device batch 1 × 8 accumulation, max_length 2048, 1,000
examples, on HF Jobs, everything else TRL's defaults.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import HfApi

from ci_runner.backend.hf_jobs import job_command
from ci_runner.plan.estimate import Plan, make_plan
from ci_runner.plan.model_size import ModelSize, model_size
from ci_runner.plan.render import render_plan
from ci_runner.plan.resolve import resolve_run
from ci_runner.runconfig import RunConfig, packages_for
from ci_runner.spec.model import Experiment
from tests.model_hub import (
    SHARDED_MODELS,
    SINGLE_FILE_MODELS,
    config_files,
    hub_model_files,
    model_hub,
)

pytestmark = pytest.mark.usefixtures("loopback_online")

QWEN3 = "Qwen/Qwen3-0.6B"
QWEN3B = "Qwen/Qwen2.5-3B"
QWEN7 = "Qwen/Qwen2.5-7B-Instruct"
QWEN14 = "Qwen/Qwen2.5-14B-Instruct"
LLAMA70 = "meta-llama/Llama-3.1-70B-Instruct"

# (repo, params, where the count comes from)
SIZES = {
    QWEN3: (596_049_920, "Hub safetensors metadata"),  # 751,632,384 stored, lm_head tied
    QWEN3B: (3_085_938_688, "Hub config.json"),  # served without weights: config arithmetic
    QWEN7: (7_615_616_512, "Hub safetensors metadata"),
    QWEN14: (14_770_033_664, "Hub safetensors metadata"),
    LLAMA70: (70_553_706_496, "Hub safetensors metadata"),
}

# Liger's kernels cover every model here (qwen2, qwen3, llama): the job adds liger-kernel
RUN = "exec uv run --with liger-kernel==0.8.5 /tmp/ci-runner-job/train.py"
QLORA_RUN = (
    "exec uv run --with bitsandbytes==0.50.2 --with liger-kernel==0.8.5 /tmp/ci-runner-job/train.py"
)
FSDP_RUN = (
    "exec uv run --no-project --with-requirements /tmp/ci-runner-job/requirements.txt "
    "--with liger-kernel==0.8.5 -- "
    "accelerate launch --num_processes 2 --num_machines 1 "
    "--config_file /tmp/ci-runner-job/accelerate_config.yaml --dynamo_backend no "
    "/tmp/ci-runner-job/train.py"
)

# (repo, experiment overrides) -> flavor, $/h, memory GB, dtype, quantization, launcher, command
PINNED: list[tuple[str, dict[str, Any], tuple]] = [
    (QWEN3, {"lora": "off"}, ("l4x1", 0.80, 12.0, "float32", None, "single", RUN)),
    (QWEN3B, {}, ("l4x1", 0.80, 8.66, "bfloat16", None, "single", RUN)),
    (QWEN7, {}, ("l4x1", 0.80, 18.12, "bfloat16", None, "single", RUN)),
    (QWEN14, {}, ("l40sx1", 1.80, 33.51, "bfloat16", None, "single", RUN)),
    (LLAMA70, {}, ("a100-large", 2.50, 45.97, "bfloat16", "4bit", "single", QLORA_RUN)),
    (
        LLAMA70,
        {"lora": {"quantize": "none"}},
        ("rtx-pro-6000x2", 5.50, 149.21, "bfloat16", None, "fsdp", FSDP_RUN),
    ),
]


def experiment(model: str, **overrides: Any) -> Experiment:
    data: dict[str, Any] = {
        "name": "pinned",
        "base_model": model,
        "method": "sft",
        "dataset": {"path": "trl-lib/Capybara", "max_samples": 1000},
        "hyperparameters": {
            "num_train_epochs": 1,
            "per_device_train_batch_size": 1,
            "gradient_accumulation_steps": 8,
            "max_length": 2048,
        },
        "output": {"hub_model_id": "alice/pinned"},
        "backend": "hf-jobs",
        "timeout": "4h",
        **overrides,
    }
    return Experiment.model_validate(data)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    files: dict[str, Any] = {repo: hub_model_files(repo) for repo in SHARDED_MODELS}
    files.update({repo: hub_model_files(repo) for repo in SINGLE_FILE_MODELS})
    files[QWEN3B] = config_files("Qwen2.5-3B")
    with model_hub(tmp_path, monkeypatch, files) as server:
        yield server


def sized(hub, repo: str) -> ModelSize:
    # a Hub id: the project root plays no part
    size = model_size(repo, root=Path("."), api=HfApi(endpoint=hub.url, token="hf_test"))
    assert size is not None
    return size


def planned(hub, repo: str, **overrides: Any) -> tuple[Plan, RunConfig, str]:
    exp = experiment(repo, **overrides)
    plan = make_plan(exp, size=sized(hub, repo), dataset_rows=None, mean_seq_len=None)
    run_config = resolve_run(exp, output_dir="/tmp/ci-runner/x/output", plan=plan).run_config
    command = job_command(
        plan.flavor, "train.py", run_config.launch, packages=packages_for(run_config)
    )
    return plan, run_config, command[2]


@pytest.mark.parametrize("repo", sorted(SIZES))
def test_hub_models_are_sized_from_their_weights_metadata(hub, repo):
    size = sized(hub, repo)
    assert (size.params, size.source) == SIZES[repo]
    assert size.shape is not None


def test_sharded_headers_are_read_with_ranged_gets(hub):
    sized(hub, LLAMA70)
    ranged = [path for method, path, rng in hub.seen if method == "GET" and rng]
    shards = {path.rsplit("/", 1)[1] for path in ranged}  # one header read per shard
    assert len(ranged) == 30
    assert shards == {f"model-{n:05d}-of-00030.safetensors" for n in range(1, 31)}
    index = json.loads(hub_model_files(LLAMA70)["model.safetensors.index.json"])
    assert index["metadata"]["total_size"] == 141_107_412_992
    published = {  # the entries of the official index that could be checked
        "lm_head.weight": 30,
        "model.embed_tokens.weight": 1,
        "model.layers.0.input_layernorm.weight": 1,
        "model.layers.0.mlp.down_proj.weight": 1,
        "model.layers.0.mlp.gate_proj.weight": 1,
        "model.layers.0.mlp.up_proj.weight": 1,
        "model.layers.1.input_layernorm.weight": 2,
        "model.layers.1.mlp.down_proj.weight": 2,
        "model.layers.1.mlp.gate_proj.weight": 1,
        "model.layers.1.mlp.up_proj.weight": 2,
    }
    for name, shard in published.items():
        assert index["weight_map"][name] == f"model-{shard:05d}-of-00030.safetensors"
    for repo, shards, total in ((QWEN14, 8, 29_540_067_328), (QWEN7, 4, 15_231_233_024)):
        index = json.loads(hub_model_files(repo)["model.safetensors.index.json"])
        assert len(set(index["weight_map"].values())) == shards
        assert index["metadata"]["total_size"] == total


@pytest.mark.parametrize(
    ("repo", "overrides", "expected"),
    PINNED,
    ids=["0.6b-full", "3b-lora", "7b-lora", "14b-lora", "70b-lora", "70b-lora-16bit"],
)
def test_pinned_plans(hub, repo, overrides, expected):
    flavor, price, memory, dtype, quantization, launcher, run = expected
    plan, run_config, command = planned(hub, repo, **overrides)
    assert (plan.flavor, plan.flavor_usd_per_hour, plan.fits) == (flavor, price, True)
    assert plan.memory_gb == pytest.approx(memory, abs=0.01)
    assert (plan.dtype, plan.quantization, plan.launcher) == (dtype, quantization, launcher)
    assert command.endswith(f"&& {run}")
    # what the job receives says the same
    sent = (run_config.hyperparameters.get("model_init_kwargs") or {}).get("dtype")
    assert sent == (dtype if plan.lora_on else None)  # full fine-tuning: TRL's float32
    assert (run_config.lora.quantize if run_config.lora else None) == quantization
    assert (run_config.launch.strategy, run_config.launch.processes) == (
        launcher,
        plan.processes,
    )


def test_70b_fits_one_gpu_at_5_dollars_an_hour_with_qlora_and_says_why(hub):
    plan, _, _ = planned(hub, LLAMA70)
    assert plan.gpus == 1 and plan.flavor_usd_per_hour <= 5 and plan.quantization == "4bit"
    text = render_plan(plan)
    assert (
        "| Precision | 4-bit NF4 base (QLoRA, bitsandbytes, double quant), bfloat16 compute" in text
    )
    assert "QLoRA (auto): the 16-bit LoRA run needs ~149 GB" in text
    assert "| Compute | 6·N·tokens = 2 forward + 2 backward" in text


def test_plan_command_prints_the_formula_and_the_qlora_rule(hub, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from ci_runner.cli import main

    spec = tmp_path / "llama.yaml"
    spec.write_text(
        "name: llama70-sft\n"
        f"base_model: {LLAMA70}\n"
        "method: sft\n"
        "dataset: {path: trl-lib/Capybara, max_samples: 1000}\n"
        "hyperparameters: {per_device_train_batch_size: 1, gradient_accumulation_steps: 8,"
        " max_length: 2048, num_train_epochs: 1}\n"
        "output: {hub_model_id: alice/llama70-sft}\n"
        "timeout: 4h\n"
        "backend: hf-jobs\n"
    )
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    result = CliRunner().invoke(
        main, ["--root", str(tmp_path), "plan", "--skip-data-check", str(spec)]
    )
    assert result.exit_code == 0, result.output
    assert "| Hardware | a100-large at $2.50/h |" in result.output
    assert "| Savers | fused_lm_head −2.5 GB, liger_kernel −0.2 GB, gradient_checkpointing" in (
        result.output
    )
    assert "| Compute | 6·N·tokens = 2 forward + 2 backward" in result.output
    assert "QLoRA (auto): the 16-bit LoRA run needs ~149 GB" in result.output
