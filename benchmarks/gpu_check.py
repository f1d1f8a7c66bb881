"""Check the plan's memory and speed estimates on a real accelerator, saver by saver.

Instantiates real architectures from their published ``config.json`` (``tests/model_configs``)
with random weights, no download: memory and speed depend on the shapes, not the weights.
For each model it runs a few training steps as the plan sizes the run (full fine-tuning or
LoRA, the dtype the plan loads, every saver the plan turns on) and again with each saver
off, and prints the peak memory and tokens/s next to the plan's estimate for the same
settings (``ci_runner.plan.memory``, ``ci_runner.plan.timing``).

It needs torch, transformers, peft and ci-runner's plan modules (pydantic). TRL and
liger-kernel are used when importable (both are pure Python wheels that can travel with
the job): the fused LM head is TRL's ``add_fused_lm_head`` when TRL is there, else a
chunked loss with the same tile size, so the logits are never stored either way. A saver
whose library is missing is reported as skipped, not faked.

    python benchmarks/gpu_check.py                      # the default models, on CUDA
    python benchmarks/gpu_check.py --models Qwen2.5-7B-Instruct --steps 4 --json
    python benchmarks/gpu_check.py --config-dir DIR --models tiny --device cpu   # tests

Budget: the default set (0.6B full, 2.6B full in bf16, 7B LoRA; four variants each,
three steps at 2,048 tokens) takes a few minutes on one H100.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ci_runner.core.flavors import ACCELERATORS  # noqa: E402
from ci_runner.plan.memory import FUSED_HEAD_TOKENS, FUSED_HEAD_VOCAB, estimate_memory  # noqa: E402
from ci_runner.plan.model_size import estimate_from_config, shape_from_config  # noqa: E402
from ci_runner.plan.settings import (  # noqa: E402
    GB,
    Precision,
    Savers,
    Settings,
    lora_trainable,
)
from ci_runner.plan.timing import CPU_EFFECTIVE_TFLOPS, flops_per_token_factor  # noqa: E402
from ci_runner.spec.model import LoraSpec  # noqa: E402

CONFIGS = ROOT / "tests" / "model_configs"
# (model folder, LoRA, weights dtype): as the plan runs them at max_length 2048
DEFAULT_MODELS = {
    "Qwen3-0.6B": (False, "float32"),
    "gemma-2-2b-it": (False, "bfloat16"),
    "Qwen2.5-7B-Instruct": (True, "bfloat16"),
}
VARIANTS = ("planned", "no liger_kernel", "no gradient_checkpointing", "no fused_lm_head")
GPU_NAMES = {"H100": "H200", "H200": "H200", "A100": "A100", "L40S": "L40S", "L4": "L4"}


@dataclass(frozen=True)
class Case:
    model: str
    lora: bool
    dtype: str
    variant: str
    liger: bool
    checkpointing: bool
    fused: bool


@dataclass
class Result:
    model: str
    variant: str
    lora: bool
    dtype: str
    params: int
    peak_gb: float | None  # measured (CUDA only)
    plan_gb: float  # the plan's estimate for the same settings
    tokens_per_s: float
    plan_tokens_per_s: float | None
    skipped: str | None = None


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def load_config(config_dir: Path, model: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((config_dir / model / "config.json").read_text())
    return data


def cases(models: dict[str, tuple[bool, str]], device: str) -> Iterator[tuple[Case, str | None]]:
    """Each model as planned, then with one saver off; a saver that cannot run is skipped."""
    liger = device == "cuda" and has("liger_kernel")
    for model, (lora, dtype) in models.items():
        planned = Case(model, lora, dtype, "planned", liger, True, True)
        for variant in VARIANTS:
            case = planned
            skip = None
            if variant == "no liger_kernel":
                case = replace(planned, variant=variant, liger=False)
                skip = None if liger else "liger-kernel needs CUDA and its wheel"
            elif variant == "no gradient_checkpointing":
                case = replace(planned, variant=variant, checkpointing=False)
            elif variant == "no fused_lm_head":
                case = replace(planned, variant=variant, fused=False)
            yield case, skip


# --- the plan's side ---------------------------------------------------------------


def plan_estimate(
    config: dict[str, Any], case: Case, seq: int, accelerator: str | None
) -> tuple[int, float, float | None]:
    """(parameters, memory GB, tokens/s) the plan's own formulas give for this case."""
    params = estimate_from_config(config)
    shape = shape_from_config(config)
    assert params is not None and shape is not None
    settings = Settings(
        method="sft",
        batch=1,
        grad_accum=1,
        epochs=1.0,
        max_steps=None,
        max_length=seq,
        checkpointing=case.checkpointing,
        bf16=True,
        fp16=False,
        num_generations=8,
        completion_len=512,
        beta=0.0,
        precompute_ref=False,
    )
    trainable = lora_trainable(shape, LoraSpec()) if case.lora else None
    source = "ci-runner" if case.dtype != "float32" else "TRL default"
    memory = estimate_memory(
        params,
        shape,
        settings,
        precision=Precision(case.dtype, None, source),
        trainable=trainable,
        prompt_len=seq,
        savers=Savers(liger=case.liger, fused_head=case.fused),
    )
    factor = flops_per_token_factor(settings, case.lora)
    if accelerator is None:
        rate = CPU_EFFECTIVE_TFLOPS * 1e12
    else:
        accel = ACCELERATORS[accelerator]
        from ci_runner.core.flavors import FLAVORS

        peak = max(f.peak_tflops for f in FLAVORS if f.accelerator == accelerator)
        rate = peak * accel.mfu * 1e12
    return params, memory.per_gpu_gb(), rate / (factor * shape.active_params)


# --- the measured side --------------------------------------------------------------


def chunked_loss(hidden: Any, head: Any, labels: Any, softcap: float | None) -> Any:
    """Mean next-token cross-entropy in token chunks of at most the plan's tile size
    (4,096 × 32,768 logits), each recomputed in the backward: no full logits held."""
    import torch
    import torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint

    hidden, labels = hidden[:, :-1].flatten(0, 1), labels[:, 1:].flatten()
    step = max(1, min(FUSED_HEAD_TOKENS, FUSED_HEAD_TOKENS * FUSED_HEAD_VOCAB // head.out_features))

    def piece(h: Any, y: Any) -> Any:
        logits = head(h).float()
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        return F.cross_entropy(logits, y, reduction="sum")

    total = sum(
        checkpoint(piece, hidden[i : i + step], labels[i : i + step], use_reentrant=False)
        for i in range(0, hidden.shape[0], step)
    )
    return total / labels.numel()


def build_model(config: dict[str, Any], case: Case, device: str) -> Any:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    data = {k: v for k, v in config.items() if k not in ("architectures", "transformers_version")}
    cfg = AutoConfig.for_model(**data)
    dtype = getattr(torch, case.dtype)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    if case.checkpointing:
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.23
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        model.config.use_cache = False
    if case.liger:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance

        _apply_liger_kernel_to_instance(model=model, fused_linear_cross_entropy=False)
    if case.fused and has("trl"):
        from trl.trainer.utils import add_fused_lm_head

        add_fused_lm_head(model)
    if case.lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"),
        )
        if case.checkpointing:
            model.enable_input_require_grads()
    return model


def train_steps(model: Any, case: Case, vocab: int, seq: int, steps: int, device: str) -> float:
    """Seconds per step over ``steps`` steps after one warm-up step (batch 1 × seq tokens)."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    base = model.get_base_model() if case.lora else model
    softcap = getattr(base.config.get_text_config(), "final_logit_softcapping", None)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")
    ids = torch.randint(0, vocab, (1, seq), device=device)
    timings = []
    for step in range(steps + 1):
        start = time.perf_counter()
        with autocast:
            if not case.fused:
                loss = model(input_ids=ids, labels=ids).loss
            elif has("trl"):
                loss = model(input_ids=ids, labels=ids, fused_lm_head=True).loss
            else:
                hidden = base.base_model(input_ids=ids).last_hidden_state
                loss = chunked_loss(hidden, base.get_output_embeddings(), ids, softcap)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if step:  # the first step warms up kernels and the allocator
            timings.append(time.perf_counter() - start)
    return sum(timings) / len(timings)


def accelerator_name(device: str) -> str | None:
    if device != "cuda":
        return None
    import torch

    name = torch.cuda.get_device_name()
    return next((plan for key, plan in GPU_NAMES.items() if key in name), None)


def run_case(
    config: dict[str, Any], case: Case, seq: int, steps: int, device: str, accelerator: str | None
) -> Result:
    import torch

    params, plan_gb, plan_rate = plan_estimate(config, case, seq, accelerator)
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = build_model(config, case, device)
    vocab = int(model.config.get_text_config().vocab_size)
    seconds = train_steps(model, case, vocab, seq, steps, device)
    peak = torch.cuda.max_memory_allocated() / GB if device == "cuda" else None
    del model
    gc.collect()
    return Result(
        case.model,
        case.variant,
        case.lora,
        case.dtype,
        params,
        None if peak is None else round(peak, 2),
        round(plan_gb, 2),
        round(seq / seconds, 1),
        None if plan_rate is None else round(plan_rate, 1),
    )


def skipped(config: dict[str, Any], case: Case, seq: int, why: str) -> Result:
    params, plan_gb, _ = plan_estimate(config, case, seq, None)
    return Result(
        case.model,
        case.variant,
        case.lora,
        case.dtype,
        params,
        None,
        round(plan_gb, 2),
        0.0,
        None,
        why,
    )


def _row(r: Result) -> str:
    measured = "—" if r.peak_gb is None else f"{r.peak_gb:.2f}"
    ratio = "" if r.peak_gb is None else f" ({r.peak_gb / r.plan_gb:.2f}×)"
    rate = "—" if r.skipped else f"{r.tokens_per_s:,.0f}"
    plan_rate = "—" if r.plan_tokens_per_s is None else f"{r.plan_tokens_per_s:,.0f}"
    how = "LoRA" if r.lora else "full"
    note = f" skipped: {r.skipped}" if r.skipped else ""
    return (
        f"| {r.model} | {how}, {r.dtype} | {r.variant} | {measured}{ratio} | {r.plan_gb:.2f} "
        f"| {rate} | {plan_rate} |{note}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-dir", type=Path, default=CONFIGS)
    parser.add_argument("--models", help="comma-separated folders (default: 0.6B, 2.6B, 7B)")
    parser.add_argument("--lora", action="store_true", help="train LoRA on --models")
    parser.add_argument("--dtype", default=None, help="weights dtype for --models")
    parser.add_argument("--seq", type=int, default=2048, help="tokens per step (batch 1)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up")
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    models = dict(DEFAULT_MODELS)
    if args.models:
        names = [m.strip() for m in args.models.split(",") if m.strip()]
        models = {
            m: DEFAULT_MODELS.get(
                m, (args.lora, args.dtype or ("bfloat16" if args.lora else "float32"))
            )
            for m in names
        }
        if args.lora or args.dtype:
            models = {m: (args.lora, args.dtype or v[1]) for m, v in models.items()}
    accelerator = accelerator_name(device)
    torch.manual_seed(0)
    results = []
    for case, skip in cases(models, device):
        config = load_config(args.config_dir, case.model)
        if skip:
            results.append(skipped(config, case, args.seq, skip))
            continue
        print(f"  ... {case.model}: {case.variant}", file=sys.stderr, flush=True)
        try:
            results.append(run_case(config, case, args.seq, args.steps, device, accelerator))
        except torch.cuda.OutOfMemoryError:
            gc.collect()
            results.append(skipped(config, case, args.seq, "out of memory"))
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
        return 0
    gpu = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(f"device: {gpu}; plan rates as {accelerator or 'a CPU flavor'}; {args.seq} tokens/step")
    head = "trl" if has("trl") else "chunked loss (no trl)"
    print(f"fused LM head: {head}; liger-kernel: {has('liger_kernel')}")
    print("| model | training | variant | peak GB (× plan) | plan GB | tokens/s | plan tokens/s |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(_row(r))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
