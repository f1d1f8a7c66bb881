"""The savers the plan sizes a run with are the settings the job's TRL config gets.

Each case plans a published model (``tests/model_configs/``), resolves the run config a
job receives, and builds the TRL config with train.py's own code (``build_training_args``,
the spy used for precision too): Liger, gradient checkpointing, the bf16 weights of a full
fine-tune, packing, and GRPO's vLLM colocate reach it exactly as the plan shows them, and
the job's extra packages (``uv run --with``) carry liger-kernel and vLLM only when used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ci_runner.errors import SpecError
from ci_runner.plan.estimate import Plan, make_plan
from ci_runner.plan.model_size import model_size
from ci_runner.plan.render import render_plan
from ci_runner.plan.resolve import resolve_run
from ci_runner.runconfig import LIGER_KERNEL, VLLM, RunConfig, packages_for
from ci_runner.spec.load import parse_experiment
from ci_runner.spec.model import Experiment
from tests.test_train_script import train_module

CONFIGS = Path(__file__).parent / "model_configs"
REPOS = {
    "Qwen3-0.6B": "Qwen/Qwen3-0.6B",
    "gemma-2-2b-it": "google/gemma-2-2b-it",
    "Qwen2.5-7B-Instruct": "Qwen/Qwen2.5-7B-Instruct",
    "Qwen2.5-14B-Instruct": "Qwen/Qwen2.5-14B-Instruct",
    "Qwen3-30B-A3B": "Qwen/Qwen3-30B-A3B",
    "Llama-3.1-70B-Instruct": "meta-llama/Llama-3.1-70B-Instruct",
}


def experiment(model: str, **overrides: Any) -> Experiment:
    hp: dict[str, Any] = {
        "num_train_epochs": 1,
        "per_device_train_batch_size": 1,
        "gradient_accumulation_steps": 8,
        "max_length": 2048,
    }
    hp.update(overrides.pop("hyperparameters", {}))
    if overrides.get("method") == "grpo":
        hp.pop("max_length")  # GRPO sizes prompts and completions instead
    data = {
        "name": "savers",
        "base_model": REPOS[model],
        "method": "sft",
        "dataset": {"path": "org/data", "max_samples": 1000},
        "hyperparameters": hp,
        "backend": "hf-jobs",
        "timeout": "12h",
        **overrides,
    }
    return Experiment.model_validate(data)


def planned(model: str, **overrides: Any) -> tuple[Plan, RunConfig, dict[str, Any]]:
    """The plan, the run config, and that config as the job reads it (JSON)."""
    exp = experiment(model, **overrides)
    size = model_size(f"./{model}", root=CONFIGS, api=None)
    plan = make_plan(exp, size=size, dataset_rows=None, mean_seq_len=None)
    config = resolve_run(exp, output_dir="/tmp/ci-runner/out", plan=plan).run_config
    return plan, config, json.loads(config.model_dump_json())


def saver(plan: Plan, name: str) -> bool:
    return next(s for s in plan.savers if s.name == name).on


def trl_args(config: dict[str, Any]) -> Any:
    """The TRL config train.py builds from this JSON, read as the job reads it."""
    import job_config

    typed = job_config.RunConfig.from_json(config)
    return train_module().build_training_args(typed, has_eval=False)


GRPO = {
    "method": "grpo",
    "rewards": ["format"],
    "hyperparameters": {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 1},
}


@pytest.mark.parametrize(
    ("model", "overrides"),
    [
        ("Qwen3-0.6B", {}),  # full fine-tune in float32: it fits l4x1 as it is
        ("gemma-2-2b-it", {}),  # 256k vocabulary: bf16 weights buy an L40S, not an A100
        ("Qwen2.5-7B-Instruct", {}),  # LoRA: l4x1
        ("Qwen3-30B-A3B", {}),  # MoE, Liger's qwen3_moe kernels
        ("Llama-3.1-70B-Instruct", {}),  # QLoRA
        ("Qwen3-0.6B", GRPO),  # vLLM colocate
        ("Qwen2.5-7B-Instruct", GRPO),
        (
            "Qwen2.5-7B-Instruct",
            {
                "hyperparameters": {
                    "model_init_kwargs": {"attn_implementation": "flash_attention_2"}
                }
            },
        ),  # varlen attention: packing, padding-free
    ],
    ids=["0.6b", "2.6b-256k", "7b", "30b-moe", "70b", "0.6b-grpo", "7b-grpo", "7b-flash"],
)
def test_the_trl_config_the_job_builds_has_exactly_the_planned_savers(model, overrides):
    plan, run_config, config = planned(model, **overrides)
    args = trl_args(config)
    assert args.use_liger_kernel is saver(plan, "liger_kernel")
    checkpointing = args.activation_checkpointing or args.gradient_checkpointing
    assert bool(checkpointing) is saver(plan, "gradient_checkpointing")
    loaded = (args.model_init_kwargs or {}).get("dtype", "float32")  # TRL's default: float32
    assert loaded == plan.dtype
    assert (loaded == "bfloat16" and not plan.lora_on) is saver(plan, "bf16_weights")
    if plan.method == "sft":
        assert bool(args.packing) is saver(plan, "padding_free")
    if plan.method == "grpo":
        vllm = saver(plan, "vllm")
        assert args.use_vllm is vllm
        if vllm:
            assert args.vllm_mode == "colocate"
            assert args.vllm_gpu_memory_utilization == plan.vllm_gpu_memory_utilization
            # the engine's context is sent: TRL's default is the model's own (32k-128k)
            assert args.vllm_max_model_length == plan.vllm_max_model_length == 2560
    packages = packages_for(run_config)
    assert (LIGER_KERNEL in packages) is saver(plan, "liger_kernel")
    assert (VLLM in packages) is (plan.method == "grpo" and saver(plan, "vllm"))


def test_goals_on_the_published_configs():
    """7B LoRA at 2048 tokens on a 24 GB card; nothing under 3B on an 80 GB card."""
    seven = planned("Qwen2.5-7B-Instruct")[0]
    assert seven.flavor_vram_gb == 24 and seven.fits and seven.lora_on
    for model in ("Qwen3-0.6B", "gemma-2-2b-it"):
        plan = planned(model)[0]
        assert plan.params < 3e9 and plan.flavor_vram_gb < 80 and plan.fits, model
    gemma = planned("gemma-2-2b-it")[0]
    assert (gemma.flavor, gemma.dtype) == ("l40sx1", "bfloat16")
    text = render_plan(gemma)
    assert "| Savers | fused_lm_head −3.4 GB, liger_kernel −0.1 GB" in text
    assert "bf16_weights: on (−21.2 GB): float32 needs a dearer GPU than l40sx1" in text


def test_each_saver_can_be_turned_off_in_the_file():
    plan, run_config, config = planned("gemma-2-2b-it", savers="off")
    assert not any(s.on for s in plan.savers if s.name != "fused_lm_head")
    assert (plan.flavor, plan.dtype) == ("a100-large", "float32")  # no saver: the 80 GB card
    args = trl_args(config)
    assert not args.use_liger_kernel and not args.activation_checkpointing
    assert not args.gradient_checkpointing and args.model_init_kwargs is None
    assert packages_for(run_config) == ()
    one = planned("Qwen2.5-7B-Instruct", savers={"liger_kernel": False})[0]
    assert not saver(one, "liger_kernel") and saver(one, "gradient_checkpointing")
    grpo = planned("Qwen3-0.6B", savers={"vllm": False}, **GRPO)
    assert not saver(grpo[0], "vllm") and "use_vllm" not in grpo[2]["hyperparameters"]


def test_a_trl_field_the_file_sets_wins_over_the_planner():
    plan, run_config, config = planned(
        "Qwen2.5-7B-Instruct", hyperparameters={"use_liger_kernel": False}
    )
    assert not saver(plan, "liger_kernel")
    assert config["hyperparameters"]["use_liger_kernel"] is False
    assert LIGER_KERNEL not in packages_for(run_config)
    forced = planned("Qwen2.5-7B-Instruct", hyperparameters={"gradient_checkpointing": False})[0]
    plain = planned("Qwen2.5-7B-Instruct")[0]
    assert not saver(forced, "gradient_checkpointing")
    assert forced.memory_gb > plain.memory_gb


def test_local_and_cpu_runs_keep_transformers_generate_and_no_liger():
    for where in ({"backend": "local"}, {"hardware": "cpu-upgrade"}):
        plan, run_config, config = planned("Qwen3-0.6B", **where, **GRPO)
        assert not saver(plan, "vllm") and not saver(plan, "liger_kernel")
        assert "use_vllm" not in config["hyperparameters"]
        assert packages_for(run_config) == ()
        assert plan.vllm_gpu_memory_utilization is None


def test_grpo_generation_is_timed_with_and_without_vllm():
    plan = planned("Qwen2.5-7B-Instruct", **GRPO)[0]
    assert saver(plan, "vllm") and plan.flavor == "l40sx1"
    # both are bound by reading the weights each decode step; vLLM reaches more of the
    # bandwidth and has no per-step launch floor (gpu_check.py measures both)
    assert plan.generation_s < plan.generation_s_without_vllm
    (note,) = [a for a in plan.assumptions if a.startswith("GRPO generation")]
    assert "1,000 completions × 512 tokens" not in note  # 1,000 prompts × 8 generations
    assert "8,000 completions × 512 tokens" in note and "vLLM colocate" in note
    assert "transformers generate" in note
    # its memory share is in the plan's memory: the engine holds a 16-bit copy + KV cache
    assert plan.vllm_gpu_memory_utilization * 48 > 15.2
    # generate on the cheaper l4x1 would cost more than vLLM on l40sx1
    without = planned("Qwen2.5-7B-Instruct", savers={"vllm": False}, **GRPO)[0]
    assert without.flavor == "l4x1" and without.est_cost_usd > plan.est_cost_usd


def test_savers_in_the_file_are_validated_with_line_and_hint():
    text = (
        "name: x\nbase_model: org/model\nmethod: sft\ndataset: org/data\nsavers:\n  liger: false\n"
    )
    with pytest.raises(SpecError) as info:
        parse_experiment(text, "f.yaml")
    (issue,) = info.value.issues
    assert (issue.line, issue.field) == (6, "savers.liger")
    assert "liger_kernel" in str(info.value)
    ok = parse_experiment(
        text.replace("liger: false", "liger_kernel: false\n  vllm: false"), "f.yaml"
    )
    assert not ok.savers.liger_kernel and not ok.savers.vllm and ok.savers.bf16_weights


PIPELINE = {
    "evaluation": {"benchmarks": [{"benchmark": "gsm8k", "max_samples": 100}]},
    "export": {"gguf": {"quantizations": ["Q4_K_M"]}},
    "output": {"hub_model_id": "alice/x", "merge": True},
}


@pytest.mark.parametrize(
    ("lora", "evaluation", "eval_flavor"),
    [
        ("auto", ("4bit", None), "a100-large"),  # QLoRA: evaluated in 4 bits, as trained
        ({"quantize": "none"}, (None, "auto"), "rtx-pro-6000x2"),  # 16 bits over 2 GPUs
    ],
    ids=["qlora", "fsdp"],
)
def test_every_job_of_a_70b_run_is_sized_for_what_it_holds(lora, evaluation, eval_flavor):
    from ci_runner.core.flavors import FLAVORS_BY_NAME
    from ci_runner.plan.jobs import HOST_HEADROOM

    plan = planned("Llama-3.1-70B-Instruct", lora=lora, **PIPELINE)[0]
    jobs = {job.key: job for job in plan.jobs}
    assert list(jobs) == ["train", "base", "final", "gguf"]
    for key in ("base", "final"):
        job = jobs[key]
        flavor = FLAVORS_BY_NAME[job.flavor]
        assert (job.flavor, job.quantize, job.device_map) == (eval_flavor, *evaluation)
        assert job.memory_gb <= flavor.vram_gb * 0.85  # per GPU, weights + a KV batch
        assert job.timeout_s >= job.est_seconds
    export = jobs["gguf"]
    flavor = FLAVORS_BY_NAME[export.flavor]
    assert export.memory_gb > 141  # the 16-bit reload of the base, on the CPU
    assert export.memory_gb <= flavor.ram_gb * HOST_HEADROOM
    assert plan.total_cost_usd == pytest.approx(sum(j.est_cost_usd for j in plan.jobs), abs=1e-3)
    text = render_plan(plan)
    assert (
        "| export gguf | " in text
        and f"| **Total** | | | | | ~${plan.total_cost_usd:.2f} |" in text
    )
