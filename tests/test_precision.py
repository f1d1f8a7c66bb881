"""The precision the plan sizes a run in is the precision train.py loads it in.

The plan's ``dtype`` and ``quantization`` travel in the run config (``model_init_kwargs``
and ``lora.quantize``); train.py's own config-building code turns them into the TRL
config and the ``BitsAndBytesConfig`` that reach ``from_pretrained``. bitsandbytes has
no CPU build that loads a 4-bit model here, so QLoRA is checked up to that boundary:
a spy on transformers' ``PreTrainedModel.from_pretrained`` records what train.py's
model-loading path (TRL's trainer, given the model id) hands it, then stops the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ci_runner.plan.estimate import make_plan
from ci_runner.plan.model_size import model_size
from ci_runner.plan.resolve import resolve_run
from ci_runner.spec.model import Experiment
from tests.test_train_script import job_side, make_config, train_module

CONFIGS = Path(__file__).parent / "model_configs"


def experiment(model: str, **overrides: Any) -> Experiment:
    hp = {"per_device_train_batch_size": 1, "gradient_accumulation_steps": 8, "max_length": 2048}
    hp.update(overrides.pop("hyperparameters", {}))
    data = {
        "name": "precision",
        "base_model": model,
        "method": "sft",
        "dataset": {"path": "org/data", "max_samples": 1000},
        "hyperparameters": hp,
        "backend": "hf-jobs",
        "timeout": "4h",
        **overrides,
    }
    return Experiment.model_validate(data)


def planned_run_config(model_dir: str, **overrides: Any) -> tuple[Any, Any]:
    """Plan the experiment and resolve it: the plan, and the run config as a job reads it."""
    org = "meta-llama" if model_dir.startswith("Llama") else "Qwen"
    exp = experiment(f"{org}/{model_dir}", **overrides)
    size = model_size(f"./{model_dir}", root=CONFIGS, api=None)
    plan = make_plan(exp, size=size, dataset_rows=None, mean_seq_len=None)
    resolved = resolve_run(exp, output_dir="/tmp/ci-runner/out", plan=plan)
    return plan, job_side(resolved.run_config)


@pytest.mark.parametrize(
    ("model", "overrides", "dtype", "quantize"),
    [
        ("Qwen2.5-7B-Instruct", {}, "bfloat16", None),  # LoRA on l40sx1
        ("Qwen2.5-7B-Instruct", {"hardware": "t4-small"}, "float16", None),
        ("Qwen2.5-7B-Instruct", {"hardware": "cpu-upgrade"}, "float32", None),
        ("Llama-3.1-70B-Instruct", {}, "bfloat16", "4bit"),  # QLoRA (auto)
        ("Qwen2.5-7B-Instruct", {"lora": {"quantize": "4bit"}}, "bfloat16", "4bit"),
    ],
)
@pytest.mark.slow
def test_model_init_kwargs_train_py_builds_match_the_plan(model, overrides, dtype, quantize):
    plan, config = planned_run_config(model, **overrides)
    assert (plan.dtype, plan.dtype_source, plan.quantization) == (dtype, "ci-runner", quantize)
    train = train_module()
    args = train.build_training_args(config, has_eval=False)
    assert args.model_init_kwargs == {"dtype": plan.dtype}
    assert (config.lora.quantize if config.lora else None) == plan.quantization
    bnb = train.quantization_config(config)
    if quantize:
        assert str(bnb.bnb_4bit_compute_dtype).removeprefix("torch.") == plan.dtype
    else:
        assert bnb is None


def test_full_fine_tuning_sends_nothing_and_trl_loads_float32():
    plan, config = planned_run_config("Qwen3-0.6B")
    assert (plan.lora_on, plan.dtype, plan.dtype_source) == (False, "float32", "TRL default")
    args = train_module().build_training_args(config, has_eval=False)
    assert args.model_init_kwargs is None  # TRL's create_model_from_path: float32


def test_a_dtype_in_the_file_is_kept():
    own = {"model_init_kwargs": {"dtype": "float32", "attn_implementation": "sdpa"}}
    plan, config = planned_run_config("Qwen2.5-7B-Instruct", hyperparameters=own)
    assert (plan.dtype, plan.dtype_source, plan.flavor) == ("float32", "experiment file", "l40sx1")
    args = train_module().build_training_args(config, has_eval=False)
    assert args.model_init_kwargs == own["model_init_kwargs"]


def test_fsdp_processes_load_the_model_onto_no_device(monkeypatch):
    _, config = planned_run_config("Qwen2.5-7B-Instruct")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what accelerate launch sets
    args = train_module().build_training_args(config, has_eval=False)
    assert args.model_init_kwargs == {"device_map": None, "dtype": "bfloat16"}


class StopLoading(Exception):
    """Raised by the spy once it has seen what reaches from_pretrained."""


@pytest.mark.parametrize("method", ["sft", "dpo", "grpo"])
@pytest.mark.slow
def test_qlora_bitsandbytes_config_reaches_from_pretrained(
    tiny_fixtures, job_env, tmp_path, monkeypatch, method
):
    import torch
    import transformers
    from transformers import BitsAndBytesConfig

    seen: dict[str, Any] = {}

    def spy(cls, pretrained, *args, **kwargs):
        seen.update(kwargs, model=pretrained, cls=cls)
        raise StopLoading

    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", classmethod(spy))
    for key in ("TRACKIO_DIR", "HF_HOME", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(key, job_env[key])
    data = {
        "sft": tiny_fixtures.sft_data,
        "dpo": tiny_fixtures.dpo_data,
        "grpo": tiny_fixtures.grpo_data,
    }[method]
    hyperparameters: dict[str, Any] = {"model_init_kwargs": {"dtype": "bfloat16"}}
    if method == "grpo":
        hyperparameters.update(num_generations=4, max_completion_length=8)
    config = make_config(
        tmp_path,
        tiny_fixtures.model,
        data,
        method,
        lora={"r": 4, "quantize": "4bit"},
        hyperparameters=hyperparameters,
        rewards=["format"] if method == "grpo" else [],
    )
    with pytest.raises(StopLoading):
        train_module().train(job_side(config))
    assert seen["model"] == str(tiny_fixtures.model)
    assert seen["cls"].__name__ == "LlamaForCausalLM"
    bnb = seen["quantization_config"]
    assert isinstance(bnb, BitsAndBytesConfig)
    assert bnb.load_in_4bit and not bnb.load_in_8bit
    assert bnb.bnb_4bit_quant_type == "nf4" and bnb.bnb_4bit_use_double_quant
    assert bnb.bnb_4bit_compute_dtype == torch.bfloat16
    assert seen["dtype"] == torch.bfloat16  # unquantized parts (embeddings, head) in bf16


def test_a_merge_on_a_reload_loads_the_base_at_its_pinned_revision(
    tiny_fixtures, tmp_path, monkeypatch
):
    """A 4-bit (or multi-process) LoRA run merges into a fresh 16-bit load of its base: the
    commit it trained from, with the dtype of model_init_kwargs, on the CPU."""
    from types import SimpleNamespace

    import torch
    import transformers

    seen: dict[str, Any] = {}

    def spy(cls, pretrained, *args, **kwargs):
        seen.update(kwargs, model=pretrained)
        raise StopLoading

    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", classmethod(spy))
    pinned = "0123456789abcdef0123456789abcdef01234567"
    run = make_config(
        tmp_path,
        tiny_fixtures.model,
        tiny_fixtures.sft_data,
        "sft",
        lora={"r": 4, "quantize": "4bit"},
        base_model_revision=pinned,
        hyperparameters={"model_init_kwargs": {"dtype": "bfloat16"}},
    )
    config = job_side(run)
    train = train_module()
    trainer = SimpleNamespace(args=train.build_training_args(config, has_eval=False))
    with pytest.raises(StopLoading):
        train.reload_merged(trainer, config, str(tmp_path / "out"))
    assert seen["model"] == str(tiny_fixtures.model)
    assert seen["revision"] == pinned
    assert seen["dtype"] == torch.bfloat16 and seen["device_map"] == "cpu"
    assert seen["trust_remote_code"] is False
