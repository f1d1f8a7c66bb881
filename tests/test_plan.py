"""The plan: model size, memory → flavor, LoRA auto, time, cost, timeout, budget.

Model sizes come from real Qwen configs under tests/model_configs/. Hub calls go
through the real huggingface_hub client to a loopback server on 127.0.0.1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import HfApi

from ci_runner.plan.estimate import (
    LORA_AUTO_THRESHOLD,
    Plan,
    decide_lora,
    make_plan,
    prices_from_hardware,
    recommended_timeout,
)
from ci_runner.plan.model_size import (
    ModelSize,
    estimate_from_config,
    model_size,
)
from ci_runner.plan.render import plan_from_json, plan_to_json, render_plan
from ci_runner.spec.load import load_experiment
from ci_runner.spec.model import Experiment
from tests.model_hub import FakeModelHub, model_hub, safetensors_bytes

pytestmark = pytest.mark.usefixtures("loopback_online")


ROOT = Path(__file__).resolve().parents[1]
CONFIGS = Path(__file__).parent / "model_configs"

# Published parameter counts (safetensors totals, tied lm_head counted once).
REAL_COUNTS = {
    "Qwen3-0.6B": 596_049_920,
    "Qwen2.5-3B": 3_085_938_688,
    "Qwen2.5-7B": 7_615_616_512,
    "Qwen2.5-14B": 14_770_033_664,
}


def size_of(name: str) -> ModelSize:
    size = model_size(f"./{name}", root=CONFIGS, api=None)
    assert size is not None
    return size


def experiment(**overrides: Any) -> Experiment:
    """A Hub SFT experiment; ``hyperparameters`` overrides merge into the defaults."""
    hp = {
        "num_train_epochs": 1,
        "per_device_train_batch_size": 1,
        "gradient_accumulation_steps": 8,
        "max_length": 2048,
    }
    hp.update(overrides.pop("hyperparameters", {}))
    data: dict[str, Any] = {
        "name": "plan-test",
        "base_model": "Qwen/Qwen3-0.6B",
        "method": "sft",
        "dataset": {"path": "org/data", "max_samples": 1000},
        "hyperparameters": hp,
        "backend": "hf-jobs",
        "timeout": "2h",
    }
    data.update(overrides)
    return Experiment.model_validate(data)


def plan_for(model: str, **overrides: Any) -> Plan:
    mean = overrides.pop("mean_seq_len", None)
    return make_plan(
        experiment(**overrides), size=size_of(model), dataset_rows=None, mean_seq_len=mean
    )


# --- model size --------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REAL_COUNTS))
def test_config_estimate_matches_real_counts(name: str) -> None:
    config = json.loads((CONFIGS / name / "config.json").read_text())
    estimated = estimate_from_config(config)
    assert estimated is not None
    assert abs(estimated - REAL_COUNTS[name]) / REAL_COUNTS[name] < 0.01


def test_config_estimate_handles_moe_and_missing_keys() -> None:
    dense = json.loads((CONFIGS / "Qwen3-0.6B" / "config.json").read_text())
    moe = {**dense, "model_type": "qwen3_moe", "num_experts": 8, "num_experts_per_tok": 2}
    moe["moe_intermediate_size"] = 768
    per_layer_experts = 8 * 3 * 1024 * 768 + 1024 * 8  # experts + router
    per_layer_dense = 3 * 1024 * 3072
    assert estimate_from_config(moe) == REAL_COUNTS["Qwen3-0.6B"] + 28 * (
        per_layer_experts - per_layer_dense
    )
    assert estimate_from_config({"hidden_size": 8}) is None


def test_local_model_dir_sized_from_config_and_shape_kept() -> None:
    size = size_of("Qwen3-0.6B")
    assert (size.params, size.source) == (REAL_COUNTS["Qwen3-0.6B"], "config.json")
    assert size.shape is not None and size.shape.vocab_size == 151936


TINY_TENSORS = {
    "model.embed_tokens.weight": [64, 16],
    "model.layers.0.mlp.down_proj.weight": [16, 48],
    "lm_head.weight": [64, 16],
}
TINY_CONFIG = {
    "model_type": "llama",
    "hidden_size": 16,
    "intermediate_size": 48,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "vocab_size": 64,
    "tie_word_embeddings": True,
}


def test_local_safetensors_count_drops_a_stored_tied_lm_head(tmp_path: Path) -> None:
    model = tmp_path / "tiny"
    model.mkdir()
    (model / "model.safetensors").write_bytes(safetensors_bytes(TINY_TENSORS))
    untied = model_size(str(model), root=Path("/nowhere"), api=None)
    assert untied is not None and untied.params == 64 * 16 * 2 + 16 * 48  # no config: no tie
    (model / "config.json").write_text(json.dumps(TINY_CONFIG))
    size = model_size(str(model), root=Path("/nowhere"), api=None)
    assert size is not None
    assert (size.params, size.source) == (64 * 16 + 16 * 48, "safetensors headers")


def test_unknown_sizes_are_none_never_guessed(tmp_path: Path) -> None:
    assert model_size("./missing", root=tmp_path, api=None) is None
    assert model_size("Qwen/Qwen2.5-7B", root=tmp_path, api=None) is None


# --- a loopback Hub ----------------------------------------------------------


@contextmanager
def loopback_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **state: Any
) -> Iterator[tuple[HfApi, FakeModelHub]]:
    files = state.pop("files", {})
    with model_hub(tmp_path, monkeypatch, files, **state) as hub:
        yield HfApi(endpoint=hub.url, token="hf_test"), hub


def test_hub_model_sized_from_safetensors_metadata(tmp_path, monkeypatch) -> None:
    files = {
        "model.safetensors": safetensors_bytes(TINY_TENSORS),
        "config.json": json.dumps(TINY_CONFIG).encode(),
    }
    with loopback_hub(tmp_path, monkeypatch, files=files) as (api, hub):
        size = model_size("org/tiny", root=tmp_path, api=api)
    assert ("GET", "/org/tiny/resolve/main/model.safetensors", "bytes=0-100000") in hub.seen
    assert size is not None
    assert (size.params, size.source) == (64 * 16 + 16 * 48, "Hub safetensors metadata")
    assert size.shape is not None and size.shape.hidden_size == 16


def test_hub_without_safetensors_falls_back_to_config(tmp_path, monkeypatch) -> None:
    files = {"config.json": (CONFIGS / "Qwen2.5-7B" / "config.json").read_bytes()}
    with loopback_hub(tmp_path, monkeypatch, files=files) as (api, _):
        size = model_size("Qwen/Qwen2.5-7B", root=tmp_path, api=api)
    assert size is not None
    assert (size.params, size.source) == (REAL_COUNTS["Qwen2.5-7B"], "Hub config.json")


def test_hub_errors_give_unknown_size(tmp_path, monkeypatch) -> None:
    # 401: a gated or private repo without access (5xx behave alike, after the client's retries)
    with loopback_hub(tmp_path, monkeypatch, fail=401) as (api, _):
        assert model_size("org/tiny", root=tmp_path, api=api) is None


HARDWARE = [
    {
        "name": "cpu-basic",
        "prettyName": "CPU Basic",
        "cpu": "2 vCPU",
        "ram": "16 GB",
        "accelerator": None,
        "unitCostMicroUSD": 167,
        "unitCostUSD": 0.000167,
        "unitLabel": "minute",
    },
    {
        "name": "l4x1",
        "prettyName": "Nvidia 1xL4",
        "cpu": "8 vCPU",
        "ram": "30 GB",
        "accelerator": {
            "type": "gpu",
            "model": "L4",
            "quantity": "1",
            "vram": "24 GB",
            "manufacturer": "Nvidia",
        },
        "unitCostMicroUSD": 20000,
        "unitCostUSD": 0.02,
        "unitLabel": "minute",
    },
]


def test_prices_from_hardware_converts_per_minute_to_per_hour(tmp_path, monkeypatch) -> None:
    with loopback_hub(tmp_path, monkeypatch, hardware=HARDWARE) as (api, hub):
        prices = prices_from_hardware(api)
    assert hub.seen == [("GET", "/api/jobs/hardware", None)]
    assert prices == {"cpu-basic": pytest.approx(0.01002), "l4x1": pytest.approx(1.2)}
    plan = make_plan(
        experiment(),
        size=size_of("Qwen3-0.6B"),
        dataset_rows=None,
        mean_seq_len=None,
        prices=prices,
    )
    # live prices decide: l4x1 at $1.20/h now costs more than a10g-small's shipped $1.00/h
    assert plan.flavor == "a10g-small" and plan.flavor_usd_per_hour == 1.0


def test_prices_from_hardware_failure_keeps_the_table(tmp_path, monkeypatch) -> None:
    with loopback_hub(tmp_path, monkeypatch, fail=503) as (api, _):
        assert prices_from_hardware(api) is None


# --- LoRA auto ---------------------------------------------------------------


def test_lora_auto_is_strictly_above_3b() -> None:
    exp = experiment()
    assert decide_lora(exp, LORA_AUTO_THRESHOLD)[0] is None
    lora, note = decide_lora(exp, REAL_COUNTS["Qwen2.5-7B"])
    assert lora is not None and note == "LoRA on (auto): 7.62B parameters > 3B"
    assert decide_lora(experiment(lora="off"), 10**11) == (
        None,
        "LoRA off (set in the experiment file)",
    )
    assert decide_lora(experiment(lora={"r": 8}), 10**6)[0].r == 8


# --- flavors per model size ----------------------------------------------------


def test_demo_sft_on_0_6b_fits_a_t4_for_cents() -> None:
    plan = plan_for("Qwen3-0.6B", hyperparameters={"max_length": 1024, "fp16": True})
    assert (plan.flavor, plan.lora_on, plan.fits) == ("t4-small", False, True)
    assert plan.lora_note == "LoRA off (auto): 0.60B parameters ≤ 3B"
    assert plan.examples == 1000 and plan.tokens == 512_000
    assert 0.01 < plan.est_cost_usd < 0.30
    assert plan.est_seconds < 20 * 60


def test_0_6b_at_2048_tokens_fits_a_t4_since_trl_never_stores_the_152k_vocab_logits() -> None:
    plan = plan_for("Qwen3-0.6B", hyperparameters={"fp16": True, "max_steps": 300})
    # 9.5 GB of float32 weights, grads and AdamW states; TRL 1.16's fused LM head holds one
    # 4,096 × 32,768 tile instead of 2048 × 151,936 logits (3.7 GB)
    assert plan.flavor == "t4-small" and 10 < plan.memory_gb < 16 * 0.85
    head = next(s for s in plan.savers if s.name == "fused_lm_head")
    assert head.on and 2 < head.saves_gb < 4
    assert plan.examples == 300 * 8 and plan.steps == 300
    assert plan.est_cost_usd < 0.30


def test_bf16_skips_t4() -> None:
    plan = plan_for("Qwen3-0.6B", hyperparameters={"max_length": 1024})
    assert plan.flavor == "l4x1"
    assert any("T4 skipped" in note for note in plan.assumptions)


def test_3b_gets_lora_and_a_24gb_card() -> None:
    plan = plan_for("Qwen2.5-3B")
    assert plan.lora_on and plan.lora_note == "LoRA on (auto): 3.09B parameters > 3B"
    assert plan.flavor == "l4x1"
    assert plan.trainable_params == 16 * 36 * (
        (2048 + 2048) * 2 + (2048 + 256) * 2 + (2048 + 11008) * 3
    )


def test_3b_full_fine_tuning_loads_bf16_to_fit_48gb_instead_of_80gb() -> None:
    plan = plan_for("Qwen2.5-3B", lora="off")
    # float32: 16 bytes/param = 49 GB, more than an L40S holds; bf16 weights: 8 bytes/param
    assert not plan.lora_on and plan.flavor == "l40sx1"
    assert (plan.dtype, plan.dtype_source) == ("bfloat16", "ci-runner")
    bf16 = next(s for s in plan.savers if s.name == "bf16_weights")
    assert bf16.on and bf16.saves_gb > 20
    kept = plan_for("Qwen2.5-3B", lora="off", savers={"bf16_weights": False})
    assert (kept.flavor, kept.dtype) == ("a100-large", "float32")


def test_7b_lora_loads_its_base_in_bf16_and_fits_24gb_at_1024_tokens() -> None:
    plan = plan_for("Qwen2.5-7B")
    assert plan.lora_on and (plan.dtype, plan.dtype_source) == ("bfloat16", "ci-runner")
    # 15.2 GB of bf16 weights; TRL's fused LM head keeps the 3.7 GB of 152k-vocab logits at
    # 2048 tokens out of memory: under 24 GB × 85%
    assert plan.flavor == "l4x1" and 16 < plan.memory_gb < 24 * 0.85
    assert not any("T4" in note for note in plan.assumptions)  # it would not fit anyway
    short = plan_for("Qwen2.5-7B", hyperparameters={"max_length": 1024})
    assert short.flavor == "l4x1" and short.memory_gb <= 24 * 0.85


def test_14b_lora_fits_48gb_in_bf16_and_needs_80gb_when_the_file_says_float32() -> None:
    plan = plan_for("Qwen2.5-14B")
    assert plan.lora_on and plan.flavor == "l40sx1" and plan.dtype == "bfloat16"
    fp32 = plan_for("Qwen2.5-14B", hyperparameters={"model_init_kwargs": {"dtype": "float32"}})
    assert fp32.flavor == "a100-large" and fp32.memory_gb > plan.memory_gb
    assert (fp32.dtype, fp32.dtype_source) == ("float32", "experiment file")


def test_no_single_gpu_fits_so_fsdp_over_several_is_planned() -> None:
    plan = plan_for("Qwen2.5-14B", lora="off")
    assert (plan.flavor, plan.gpus, plan.sharded, plan.fits) == ("a100x4", 4, True, True)
    assert (plan.launcher, plan.processes) == ("fsdp", 4)
    assert plan.memory_per_gpu_gb < 80 * 0.85 < plan.memory_gb
    assert any("`accelerate launch` starts 4 processes" in a for a in plan.assumptions)
    assert not any("accelerate" in w for w in plan.warnings)  # it runs as planned: no warning
    assert plan.examples == 1000  # from max_samples, whatever the GPU count


# --- precision: the dtype the base loads in, QLoRA ------------------------------


def test_lora_base_precision_follows_the_flavor_and_full_fine_tuning_keeps_trls() -> None:
    cases = {
        ("Qwen2.5-7B", "auto"): ("bfloat16", "ci-runner"),  # l40sx1: bf16 tensor cores
        ("Qwen2.5-7B", "t4-small"): ("float16", "ci-runner"),  # T4: no bf16
        ("Qwen2.5-7B", "cpu-upgrade"): ("float32", "ci-runner"),  # CPU: sent all the same
        ("Qwen3-0.6B", "auto"): ("float32", "TRL default"),  # full fine-tuning: not sent
    }
    for (model, hardware), expected in cases.items():
        plan = plan_for(model, hardware=hardware)
        assert (plan.dtype, plan.dtype_source) == expected, (model, hardware)
        assert plan.quantization is None
    t4 = plan_for("Qwen2.5-7B", hardware="t4-small")
    assert not any("emulated" in w for w in t4.warnings)  # fp16 weights run on its tensor cores
    local = plan_for("Qwen2.5-7B", backend="local")  # the machine is unknown: TRL's float32
    assert (local.dtype, local.dtype_source) == ("float32", "TRL default")
    own = plan_for("Qwen2.5-7B", hyperparameters={"model_init_kwargs": {"torch_dtype": "float16"}})
    assert (own.dtype, own.dtype_source) == ("float16", "experiment file")


def test_memory_follows_the_dtype_sent() -> None:
    bf16 = plan_for("Qwen2.5-14B")
    fp32 = plan_for("Qwen2.5-14B", hyperparameters={"model_init_kwargs": {"dtype": "float32"}})
    params = REAL_COUNTS["Qwen2.5-14B"]
    assert fp32.memory_gb - bf16.memory_gb == pytest.approx(2 * params / 1e9, rel=0.05)


def test_explicit_qlora_loads_the_base_in_4_bits() -> None:
    plan = plan_for("Qwen2.5-7B", lora={"quantize": "4bit"})
    assert (plan.quantization, plan.dtype, plan.launcher) == ("4bit", "bfloat16", "single")
    assert plan.flavor == "l4x1" and plan.memory_gb < plan_for("Qwen2.5-7B").memory_gb - 9
    assert any("4-bit NF4" in a and "bitsandbytes" in a for a in plan.assumptions)
    assert not any(a.startswith("QLoRA (auto)") for a in plan.assumptions)
    on_t4 = plan_for("Qwen2.5-7B", hardware="t4-small", lora={"quantize": "4bit"})
    assert (on_t4.dtype, on_t4.quantization, on_t4.fits) == ("float16", "4bit", True)
    on_cpu = plan_for("Qwen2.5-7B", hardware="cpu-basic", lora={"quantize": "4bit"})
    assert any("needs a CUDA GPU" in w for w in on_cpu.warnings)


def test_qlora_is_chosen_only_when_no_single_gpu_at_a_sane_price_holds_16_bits() -> None:
    for model in ("Qwen2.5-7B", "Qwen2.5-14B"):
        assert plan_for(model).quantization is None  # 16 bits fit one GPU: no QLoRA
    plan = plan_for("Llama-3.1-70B-Instruct")
    assert (plan.flavor, plan.quantization, plan.launcher, plan.fits) == (
        "a100-large",
        "4bit",
        "single",
        True,
    )
    assert plan.flavor_usd_per_hour <= 5 and 40 < plan.memory_gb < 80 * 0.85
    (rule,) = [a for a in plan.assumptions if a.startswith("QLoRA (auto)")]
    assert "needs ~149 GB, more than any single GPU at ≤ $5.00/h" in rule
    # `quantize: none` keeps 16 bits: then only several GPUs hold it, under FSDP
    sharded = plan_for("Llama-3.1-70B-Instruct", lora={"quantize": "none"})
    assert (sharded.quantization, sharded.launcher, sharded.fits) == (None, "fsdp", True)
    assert sharded.processes == sharded.gpus > 1 and sharded.flavor_usd_per_hour > 5
    # a flavor the file names is kept: auto never squeezes a run onto it with 4 bits
    named = plan_for("Llama-3.1-70B-Instruct", hardware="a100-large")
    assert (named.quantization, named.fits) == (None, False)
    assert any("`lora: {quantize: 4bit}`" in w for w in named.warnings)


def test_qlora_locally_and_merging_a_4bit_or_sharded_base_are_spelled_out() -> None:
    local = plan_for("Qwen2.5-7B", backend="local", lora={"quantize": "4bit"})
    assert (local.dtype, local.quantization) == ("bfloat16", "4bit")
    assert any("needs bitsandbytes installed and a CUDA GPU" in w for w in local.warnings)
    merged = plan_for("Llama-3.1-70B-Instruct", output={"merge": True})
    (note,) = [a for a in merged.assumptions if a.startswith("output.merge")]
    # 141 GB of bf16 weights × 1.2 for the loader, more than a100-large's 142 GB of RAM
    assert "needs (~169 GB of host memory), more than a100-large's 142 GB of RAM" in note
    assert "the adapter is pushed unmerged" in note and merged.merge_in_training is False
    sharded = plan_for("Llama-3.1-70B-Instruct", output={"merge": True}, lora={"quantize": "none"})
    (note,) = [a for a in sharded.assumptions if a.startswith("output.merge")]
    assert "reload of the base in bfloat16 on the CPU (~169 GB of host memory)" in note
    assert sharded.merge_in_training is True  # rtx-pro-6000x2: 512 GB of RAM
    assert not any(a.startswith("output.merge") for a in plan_for("Qwen2.5-7B").assumptions)


def test_lora_quantize_shorthands() -> None:
    assert experiment(lora={"quantize": False}).lora.quantize == "none"
    assert experiment(lora={"quantize": "nf4"}).lora.quantize == "4bit"
    assert experiment(lora={}).lora.quantize == "auto"
    # the default stays out of the run id: files written before QLoRA keep theirs
    assert experiment(lora={}).spec_hash == experiment(lora={"quantize": "auto"}).spec_hash


def test_plan_prints_the_flops_formula_it_uses() -> None:
    from ci_runner.plan.settings import settings_from
    from ci_runner.plan.timing import flops_per_token_factor

    for overrides, factor in (
        ({"lora": "off"}, 8),  # 6 + checkpointing 2
        ({}, 6),  # LoRA: 4 + 2
        ({"method": "dpo"}, 8),  # + the reference forward
        ({"hyperparameters": {"gradient_checkpointing": False}}, 4),
    ):
        plan = plan_for("Qwen2.5-7B", **overrides)
        exp = experiment(**overrides)
        assert flops_per_token_factor(settings_from(exp), plan.lora_on) == factor
        assert plan.flops_formula.startswith(f"{factor}·N·tokens = 2 forward")
        assert f"| Compute | {plan.flops_formula} |" in render_plan(plan)
        assert any(a.startswith(f"training FLOPs = {factor}·N·tokens") for a in plan.assumptions)


def test_plan_json_without_the_new_fields_still_loads() -> None:
    data = plan_to_json(plan_for("Qwen2.5-7B"))
    for key in (
        "dtype",
        "dtype_source",
        "quantization",
        "launcher",
        "processes",
        "memory_per_gpu_gb",
        "flops_formula",
    ):
        data.pop(key)
    old = plan_from_json(data)
    assert (old.launcher, old.processes, old.dtype) == ("single", 1, None)


# --- explicit hardware, budget, timeout ----------------------------------------


def test_explicit_hardware_is_kept_and_warned_when_too_small() -> None:
    plan = plan_for("Qwen2.5-7B", hardware="l4x1", hyperparameters={"max_length": 8192})
    assert plan.flavor == "l4x1" and plan.fits is False
    assert any("l4x1 does not fit" in w for w in plan.warnings)


def test_explicit_t4_with_bf16_is_warned() -> None:
    plan = plan_for("Qwen3-0.6B", hardware="t4-medium", hyperparameters={"max_length": 512})
    assert plan.flavor == "t4-medium" and plan.fits
    assert any("no bf16 tensor cores" in w for w in plan.warnings)


def test_explicit_multi_gpu_flavors_launch_ddp_or_fsdp_and_cpu_is_warned() -> None:
    long = {"max_length": 8192}  # 20.8 GB > 24 GB × 85%: shard
    multi = plan_for("Qwen2.5-7B", hardware="a10g-largex2", hyperparameters=long)
    assert (multi.gpus, multi.sharded, multi.launcher, multi.processes) == (2, True, "fsdp", 2)
    replica = plan_for("Qwen2.5-7B", hardware="a100x4")  # fits one GPU: a replica on each
    assert (replica.sharded, replica.launcher, replica.processes) == (False, "ddp", 4)
    assert replica.memory_per_gpu_gb == replica.memory_gb and replica.fits
    assert any("DDP" in a for a in replica.assumptions)
    cpu = plan_for("Qwen3-0.6B", hardware="cpu-upgrade", method="grpo", rewards=["format"])
    assert (cpu.flavor, cpu.fits, cpu.flavor_vram_gb) == ("cpu-upgrade", None, None)
    assert any("has no GPU" in w for w in cpu.warnings) and cpu.est_seconds > 3600


def test_over_budget() -> None:
    plan = plan_for("Qwen2.5-7B", budget={"max_cost_usd": 0.05})
    assert plan.over_budget and plan.budget_usd == 0.05
    assert any("exceeds budget" in w for w in plan.warnings)
    assert not plan_for("Qwen2.5-7B", budget={"max_cost_usd": 50}).over_budget


def test_timeout_below_estimate_is_warned() -> None:
    plan = plan_for("Qwen2.5-7B", timeout="5m")
    assert plan.timeout_s == 300 and plan.est_seconds > 300
    assert any(w.startswith("timeout 5m is below the estimated") for w in plan.warnings)
    assert not any("timeout" in w for w in plan_for("Qwen2.5-7B").warnings)


def test_missing_timeout_warns_about_the_30_minute_default() -> None:
    plan = plan_for("Qwen2.5-7B", timeout=None, hyperparameters={"num_train_epochs": 3})
    assert plan.recommended_timeout_s > 1800
    assert any("30 min by default" in w for w in plan.warnings)


def test_recommended_timeout_is_1_5x_plus_10_min_in_quarter_hours() -> None:
    assert recommended_timeout(600) == 1800  # 900 + 600 = 25 min → 30 min
    assert recommended_timeout(3600) == 6300  # 90 + 10 = 100 min → 105 min


# --- methods ---------------------------------------------------------------------


def test_dpo_full_fine_tuning_needs_more_memory_than_sft() -> None:
    sft = plan_for("Qwen3-0.6B", lora="off")
    dpo = plan_for("Qwen3-0.6B", lora="off", method="dpo")
    assert dpo.memory_gb > sft.memory_gb
    # LoRA needs no separate reference model: the adapter-disabled base is the reference.
    dpo_lora = plan_for("Qwen2.5-7B", method="dpo")
    sft_lora = plan_for("Qwen2.5-7B")
    assert dpo_lora.memory_gb - sft_lora.memory_gb < 7.6 * 4


def test_grpo_takes_longer_than_sft_at_equal_steps() -> None:
    steps = {"max_steps": 100, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1}
    sft = plan_for("Qwen3-0.6B", hyperparameters=steps)
    grpo = plan_for(
        "Qwen3-0.6B", method="grpo", rewards=["accuracy"], hyperparameters={**steps, "beta": 0.04}
    )
    assert grpo.examples == sft.examples == 800
    assert grpo.est_seconds > sft.est_seconds and grpo.est_cost_usd > sft.est_cost_usd


def test_examples_from_rows_less_eval_fraction_times_epochs() -> None:
    exp = experiment(
        dataset={"path": "org/data", "eval_fraction": 0.1},
        hyperparameters={"num_train_epochs": 2},
    )
    plan = make_plan(exp, size=size_of("Qwen3-0.6B"), dataset_rows=500, mean_seq_len=300)
    assert plan.examples == 900 and plan.tokens == 900 * 300
    assert not any("assumed" in a for a in plan.assumptions)


def test_unknown_dataset_size_leaves_time_unestimated() -> None:
    exp = experiment(dataset={"path": "org/data"})
    plan = make_plan(exp, size=size_of("Qwen3-0.6B"), dataset_rows=None, mean_seq_len=None)
    assert plan.examples is None and plan.est_seconds is None and plan.est_cost_usd is None
    assert plan.flavor == "l4x1"


def test_unknown_model_plans_without_hardware() -> None:
    plan = make_plan(experiment(), size=None, dataset_rows=None, mean_seq_len=None)
    assert plan.flavor is None and plan.memory_gb is None
    assert plan.lora_on  # never full fine-tuning on a model of unknown size
    assert plan.lora_note == "LoRA on (auto): model size unknown; set `lora:` to choose"


def test_local_backend_has_no_flavor_cost_or_timeout() -> None:
    plan = plan_for("Qwen2.5-7B", backend="local")
    assert (plan.flavor, plan.est_cost_usd, plan.est_seconds) == ("local", 0.0, None)
    assert plan.lora_on and plan.memory_gb is not None and not plan.over_budget


# --- rendering -------------------------------------------------------------------


def test_json_round_trip_and_markdown_table() -> None:
    plan = plan_for("Qwen2.5-7B", timeout="5m", budget={"max_cost_usd": 0.05})
    data = json.loads(json.dumps(plan_to_json(plan)))
    assert plan_from_json(data) == plan
    text = render_plan(plan)
    assert text.startswith("| Plan | |\n|---|---|\n")
    assert "| Hardware | l4x1 at $0.80/h |" in text
    assert "**Warnings**" in text and "over budget $0.05" in text


@pytest.mark.parametrize("name", ["qwen3-codeforces-sft.yaml", "qwen3-gsm8k-grpo.yaml"])
def test_shipped_hub_examples_plan_within_budget(name: str) -> None:
    exp = load_experiment(ROOT / "experiments" / name)
    plan = make_plan(exp, size=size_of("Qwen3-0.6B"), dataset_rows=None, mean_seq_len=None)
    assert plan.flavor == "l4x1" and not plan.lora_on and not plan.over_budget
    assert plan.timeout_s >= plan.est_seconds and not plan.warnings


# --- the plan guards submit ----------------------------------------------------

BIG_SPEC = """\
name: big-sft
base_model: Qwen/Qwen2.5-7B
method: sft
dataset: trl-lib/Capybara
hyperparameters: {max_steps: 5000, per_device_train_batch_size: 8, max_length: 2048}
output: {hub_model_id: alice/big-sft}
backend: hf-jobs
budget: {max_cost_usd: 1}
"""


def test_over_budget_plan_exits_5_and_submit_starts_nothing(tmp_path, monkeypatch) -> None:
    from click.testing import CliRunner

    from ci_runner.cli import main

    spec = tmp_path / "big.yaml"
    spec.write_text(BIG_SPEC)
    files = {"config.json": (CONFIGS / "Qwen2.5-7B" / "config.json").read_bytes()}
    with loopback_hub(tmp_path, monkeypatch, files=files) as (api, _):
        monkeypatch.setenv("HF_ENDPOINT", api.endpoint)
        monkeypatch.setenv("HF_TOKEN", "hf_test")
        runner = CliRunner()
        root = ["--root", str(tmp_path)]
        planned = runner.invoke(main, [*root, "plan", "--json", "--skip-data-check", str(spec)])
        submitted = runner.invoke(main, [*root, "submit", "--skip-data-check", str(spec)])
    assert planned.exit_code == 5
    data = json.loads(planned.stdout)["plan"]
    assert data["over_budget"] is True and data["lora_on"] is True
    assert data["est_cost_usd"] > 1
    assert submitted.exit_code == 5
    assert "--allow-over-budget" in submitted.output
    assert not (tmp_path / "training_reports").exists()


def test_runs_checkpoint_about_ten_times_unless_told() -> None:
    from ci_runner.plan.resolve import checkpointing

    plan = make_plan(experiment(), size=size_of("Qwen3-0.6B"), dataset_rows=None, mean_seq_len=None)
    assert plan.steps and plan.steps >= 20
    assert checkpointing({}, plan)["save_steps"] == -(-plan.steps // 10)
    assert checkpointing({"save_steps": 7}, plan) == {"save_steps": 7}
    assert checkpointing({"save_strategy": "epoch"}, plan) == {"save_strategy": "epoch"}


def test_runs_log_about_ten_points_unless_told() -> None:
    """TRL logs every 10 steps: a 6-step run would log nothing and have no curve."""
    from ci_runner.plan.resolve import logging

    plan = make_plan(experiment(), size=size_of("Qwen3-0.6B"), dataset_rows=None, mean_seq_len=None)

    def replace(plan, steps):
        return plan.model_copy(update={"steps": steps})

    assert logging({}, replace(plan, steps=6)) == {"logging_steps": 1}
    assert logging({}, replace(plan, steps=50)) == {"logging_steps": 5}
    assert logging({}, replace(plan, steps=100)) == {}  # TRL's 10 already gives ten points
    assert logging({}, replace(plan, steps=None)) == {}  # unknown: the report warns if needed
    assert logging({"logging_steps": 3}, replace(plan, steps=6)) == {"logging_steps": 3}
    assert logging({"logging_strategy": "epoch"}, replace(plan, steps=6)) == {
        "logging_strategy": "epoch"
    }
