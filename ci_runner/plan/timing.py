"""Examples, steps, tokens, time, timeout and cost: ≈ FLOPs / effective throughput."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ci_runner.core.flavors import ACCELERATORS, Flavor
from ci_runner.plan.settings import (
    NF4_BYTES,
    Precision,
    Settings,
)
from ci_runner.spec.model import Experiment

# --- time --------------------------------------------------------------------
FIXED_OVERHEAD_S = 180  # image pull, `uv` environment, process start
DOWNLOAD_BYTES_PER_S = 200e6  # Hub → job download of the (16-bit) checkpoint
MULTI_GPU_EFFICIENCY = 0.9  # DDP/FSDP communication
QLORA_THROUGHPUT = 0.7  # a 4-bit base dequantizes its weights before every matmul
DECODE_FLOOR_S = 0.020  # transformers `generate` (no vLLM): kernel launches per token
DECODE_BANDWIDTH_EFFICIENCY = 0.6  # share of peak bandwidth a decode step reaches
# vLLM: CUDA graphs and paged attention take the launch overhead out of a decode step, which
# then runs near the memory-bandwidth bound; the engine starts once (load, graph capture).
VLLM_DECODE_FLOOR_S = 0.004
VLLM_BANDWIDTH_EFFICIENCY = 0.8
VLLM_STARTUP_S = 120
CPU_EFFECTIVE_TFLOPS = 0.1  # a CPU flavor training in fp32: only for tiny models
DEFAULT_MEAN_LEN_CAP = 512  # mean tokens per example when not measured
GRPO_DEFAULT_PROMPT_LEN = 256  # mean prompt tokens when not measured

# --- timeout -----------------------------------------------------------------
HF_JOBS_DEFAULT_TIMEOUT_S = 1800  # the server's default when none is sent
TIMEOUT_FACTOR = 1.5
TIMEOUT_MARGIN_S = 600
TIMEOUT_ROUND_S = 900


# --- examples, tokens, time --------------------------------------------------


@dataclass(frozen=True)
class Workload:
    examples: int | None
    steps: int | None
    tokens: int | None


def _train_rows(experiment: Experiment, dataset_rows: int | None) -> int | None:
    """Rows trained on: the dataset capped by max_samples, less a held-out eval_fraction."""
    ds = experiment.dataset
    assert ds is not None  # the loader requires a dataset of every run
    known = [n for n in (dataset_rows, ds.max_samples) if n is not None]
    if not known:
        return None
    rows = min(known)
    if ds.eval_split is None and ds.eval_fraction:
        rows -= math.ceil(rows * ds.eval_fraction)
    return rows


def tokens_per_example(s: Settings, mean_len: float, prompt_len: float) -> float:
    """SFT: one sequence; DPO: chosen + rejected; GRPO: prompt + full-length completion."""
    if s.method == "dpo":
        return 2 * mean_len
    if s.method == "grpo":
        return prompt_len + s.completion_len
    return mean_len


def workload(s: Settings, *, gpus: int, rows: int | None, per_example: float) -> Workload:
    """max_steps × batch × accumulation × GPUs when max_steps is set, else rows × epochs
    (GRPO: × num_generations completions per prompt)."""
    per_step = s.batch * s.grad_accum * max(gpus, 1)
    if s.max_steps:
        examples = s.max_steps * per_step
        steps = s.max_steps
    elif rows is not None:
        per_epoch = rows * (s.num_generations if s.method == "grpo" else 1)
        examples = math.ceil(per_epoch * s.epochs)
        steps = math.ceil(examples / per_step)
    else:
        return Workload(None, None, None)
    return Workload(examples, steps, round(examples * per_example))


def _flops_terms(s: Settings, lora_on: bool) -> list[tuple[int, str]]:
    terms = [(2, "forward")]
    if lora_on:
        terms.append((2, "backward (LoRA: activation gradients only, the frozen base gets none)"))
    else:
        terms.append((4, "backward"))
    if s.checkpointing:
        terms.append((2, "recomputed forward (gradient checkpointing)"))
    if s.method == "dpo" or (s.method == "grpo" and s.beta > 0):
        terms.append((2, "reference-model forward"))
    return terms


def flops_per_token_factor(s: Settings, lora_on: bool) -> int:
    """Training FLOPs per token per parameter.

    Full: 6 (forward 2 + backward 4). LoRA: 4 — the backward still computes
    activation gradients (2) but no weight gradients for frozen weights.
    +2 for the recomputed forward under gradient checkpointing;
    +2 for the reference forward (DPO, GRPO with beta > 0; with LoRA too, where
    the reference is the adapter-disabled base).
    """
    return sum(n for n, _ in _flops_terms(s, lora_on))


def flops_formula(s: Settings, lora_on: bool) -> str:
    """The formula the time estimate uses, spelled out: ``8·N·tokens (forward 2 + ...)``.

    N counts the parameters a token passes through (the active ones for MoE); GRPO's
    generation is timed separately (``generation_seconds``).
    """
    terms = " + ".join(f"{n} {what}" for n, what in _flops_terms(s, lora_on))
    return f"{flops_per_token_factor(s, lora_on)}·N·tokens = {terms}"


def effective_tflops(flavor: Flavor, bf16: bool, precision: Precision | None = None) -> float:
    """Peak × MFU × GPUs (× 0.9 across GPUs); emulated bf16 on T4 runs at its fp32 rate,
    unless the weights themselves are fp16; a 4-bit base runs at QLORA_THROUGHPUT."""
    if not flavor.is_gpu:
        return CPU_EFFECTIVE_TFLOPS
    assert flavor.accelerator is not None  # every GPU flavor names one
    accel = ACCELERATORS[flavor.accelerator]
    fp16_weights = precision is not None and precision.dtype == "float16"
    emulated = bf16 and not accel.bf16 and not fp16_weights
    peak = accel.emulated_bf16_tflops if emulated else flavor.peak_tflops
    assert peak is not None  # a GPU without bf16 (T4) has an emulated rate
    scaling = MULTI_GPU_EFFICIENCY if flavor.gpus > 1 else 1.0
    quantized = QLORA_THROUGHPUT if precision is not None and precision.quantize else 1.0
    return peak * accel.mfu * flavor.gpus * scaling * quantized


def generation_seconds(
    flavor: Flavor,
    s: Settings,
    params: int,
    steps: int,
    precision: Precision,
    *,
    vllm: bool = False,
    active_params: int | None = None,
) -> float:
    """GRPO decoding: one generation batch (batch × accumulation sequences per GPU) per
    optimizer step, completions run to max_completion_length. A decode step reads every
    weight once, so it takes the longest of weight bytes / (bandwidth × efficiency), the
    batch's 2·N FLOPs per sequence (N active) at the training rate, and a floor of launch
    overhead: DECODE_FLOOR_S for transformers generate, VLLM_DECODE_FLOOR_S for a vLLM
    engine (16-bit weights, CUDA graphs), which also starts once."""
    sequences = s.batch * s.grad_accum
    per_device_flops = effective_tflops(flavor, s.bf16, precision) / max(flavor.gpus, 1) * 1e12
    compute = 2 * (active_params or params) * sequences / per_device_flops
    memory = 0.0
    efficiency = VLLM_BANDWIDTH_EFFICIENCY if vllm else DECODE_BANDWIDTH_EFFICIENCY
    if flavor.is_gpu:
        assert flavor.accelerator is not None  # every GPU flavor names one
        accel = ACCELERATORS[flavor.accelerator]
        weight = 2 if vllm else NF4_BYTES if precision.quantize else precision.weight_bytes
        memory = params * weight / (accel.mem_bw_gbps * 1e9 * efficiency)
    floor = VLLM_DECODE_FLOOR_S if vllm else DECODE_FLOOR_S
    startup = VLLM_STARTUP_S if vllm else 0
    return startup + steps * s.completion_len * max(floor, memory, compute)


def overhead_seconds(params: int) -> float:
    """Job start (image, environment) plus downloading the 16-bit checkpoint."""
    return FIXED_OVERHEAD_S + params * 2 / DOWNLOAD_BYTES_PER_S


def recommended_timeout(est_seconds: float) -> int:
    """1.5 × the estimate + 10 min, rounded up to a quarter hour."""
    raw = est_seconds * TIMEOUT_FACTOR + TIMEOUT_MARGIN_S
    return math.ceil(raw / TIMEOUT_ROUND_S) * TIMEOUT_ROUND_S


def cost_usd(seconds: float, usd_per_hour: float) -> float:
    """HF Jobs bills per started minute."""
    return math.ceil(seconds / 60) / 60 * usd_per_hour
