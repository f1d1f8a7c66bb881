"""The plan: LoRA decision, memory → hardware, time, cost, timeout and budget.

Pure: an ``Experiment`` and measured facts in, a frozen ``Plan`` out. Every
number a person might doubt is a named constant below, and every assumption the
estimate had to make is written into ``Plan.assumptions`` so the PR shows it.

Defaults mirror TRL 1.16 / transformers 5.23 as run by ``job_scripts/train.py``:
weights load in float32 (TRL's default ``model_init_kwargs.dtype``), bf16
autocast unless ``fp16`` is set, gradient checkpointing on GPU, batch size 8,
3 epochs, ``max_length`` 1024 (SFT, DPO), 8 generations of up to 512 tokens
(GRPO), a reference model for DPO and for GRPO with ``beta`` > 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from ci_runner.core.flavors import ACCELERATORS, FLAVORS, FLAVORS_BY_NAME, Flavor
from ci_runner.plan.model_size import ModelShape, ModelSize
from ci_runner.spec.model import Experiment, LoraSpec

if TYPE_CHECKING:
    from huggingface_hub import HfApi

GB = 1e9
LORA_AUTO_THRESHOLD = 3_000_000_000  # "switch LoRA on automatically above 3B"

# --- memory ------------------------------------------------------------------
HEADROOM = 0.85  # use at most 85% of VRAM: allocator fragmentation, spikes
CUDA_OVERHEAD_GB = 1.0  # CUDA context, cuBLAS workspace, allocator reserve
LOGIT_BYTES = 12  # per logit: bf16 logits + fp32 upcast + fp32 log-softmax/grad
ADAPTER_BYTES = 16  # LoRA params: fp32 weight + grad + AdamW m, v (PEFT keeps them fp32)
UNBOUNDED_LENGTH = 4096  # what `max_length: null` is sized for

# --- time --------------------------------------------------------------------
FIXED_OVERHEAD_S = 180  # image pull, `uv` environment, process start
DOWNLOAD_BYTES_PER_S = 200e6  # Hub → job download of the (16-bit) checkpoint
MULTI_GPU_EFFICIENCY = 0.9  # FSDP communication
DECODE_FLOOR_S = 0.020  # transformers `generate` (no vLLM): kernel launches per token
DECODE_BANDWIDTH_EFFICIENCY = 0.6  # share of peak bandwidth a decode step reaches
CPU_EFFECTIVE_TFLOPS = 0.1  # a CPU flavor training in fp32: only for tiny models
DEFAULT_MEAN_LEN_CAP = 512  # mean tokens per example when not measured
GRPO_DEFAULT_PROMPT_LEN = 256  # mean prompt tokens when not measured

# --- timeout -----------------------------------------------------------------
HF_JOBS_DEFAULT_TIMEOUT_S = 1800  # the server's default when none is sent
TIMEOUT_FACTOR = 1.5
TIMEOUT_MARGIN_S = 600
TIMEOUT_ROUND_S = 900


class Plan(BaseModel):
    """Everything the plan stage decided and why; JSON round-trips."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    experiment: str
    base_model: str
    method: str
    backend: str
    flavor: str | None  # "local" for the local backend; None when nothing can be chosen
    flavor_usd_per_hour: float | None
    flavor_vram_gb: int | None  # total over the flavor's GPUs
    gpus: int
    sharded: bool  # the estimate relies on FSDP across several GPUs
    fits: bool | None  # None: not checked (local backend, CPU flavor, unknown size)
    lora_on: bool
    lora_note: str
    params: int | None
    params_source: str | None
    trainable_params: int | None
    memory_gb: float | None  # whole-run need on one device (sharded: before sharding)
    examples: int | None  # sequences trained (GRPO: completions; DPO: pairs)
    steps: int | None  # optimizer steps
    tokens: int | None
    mean_seq_len: float
    est_seconds: int | None
    est_cost_usd: float | None
    timeout_s: int | None  # from the experiment file
    recommended_timeout_s: int | None
    budget_usd: float | None
    over_budget: bool
    warnings: tuple[str, ...] = ()
    assumptions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    """The hyperparameters the estimate depends on, TRL defaults filled in."""

    method: str
    batch: int  # per_device_train_batch_size (GRPO: completions)
    grad_accum: int
    epochs: float
    max_steps: int | None
    max_length: int  # SFT/DPO truncation; sizes activations
    checkpointing: bool
    bf16: bool  # bf16 autocast, TRL's default unless fp16 is set
    weight_bytes: int  # bytes per weight as loaded (4: TRL's float32 default)
    num_generations: int
    completion_len: int
    beta: float
    precompute_ref: bool


@dataclass(frozen=True)
class Memory:
    """Bytes a run holds: ``static`` shards under FSDP, ``dynamic`` is per GPU."""

    static: float  # weights, grads, optimizer states, reference model
    dynamic: float  # activations, logits, generation KV cache

    def per_gpu_gb(self, gpus: int = 1) -> float:
        return (self.static / gpus + self.dynamic) / GB + CUDA_OVERHEAD_GB


@dataclass(frozen=True)
class FlavorChoice:
    flavor: Flavor | None
    sharded: bool
    fits: bool | None
    notes: tuple[str, ...] = ()


# --- settings ----------------------------------------------------------------


def _int(hp: Mapping[str, Any], key: str, default: int) -> int:
    value = hp.get(key)
    return default if value is None else int(value)


def _load_bytes(hp: Mapping[str, Any]) -> int:
    """TRL loads in float32 unless ``model_init_kwargs.dtype`` says otherwise."""
    kwargs = hp.get("model_init_kwargs")
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    dtype = str(kwargs.get("dtype") or kwargs.get("torch_dtype") or "float32")
    # "auto" keeps the checkpoint's dtype: 16-bit for nearly every published model
    return 2 if dtype.removeprefix("torch.") in ("bfloat16", "float16", "auto") else 4


def _checkpointing(hp: Mapping[str, Any]) -> bool:
    """transformers 5.23: ``activation_checkpointing`` wins over the old name; TRL: on."""
    for key in ("activation_checkpointing", "gradient_checkpointing"):
        if hp.get(key) is not None:
            return bool(hp[key])
    return True


def settings_from(experiment: Experiment) -> Settings:
    hp = experiment.hyperparameters
    max_length = hp.get("max_length", 1024)
    max_steps = _int(hp, "max_steps", -1)
    return Settings(
        method=experiment.method,
        batch=_int(hp, "per_device_train_batch_size", 8),
        grad_accum=_int(hp, "gradient_accumulation_steps", 1),
        epochs=float(hp.get("num_train_epochs") or 3.0),
        max_steps=max_steps if max_steps > 0 else None,
        max_length=int(max_length) if max_length else UNBOUNDED_LENGTH,
        checkpointing=_checkpointing(hp),
        bf16=not hp.get("fp16") and hp.get("bf16", True) is not False,
        weight_bytes=_load_bytes(hp),
        num_generations=_int(hp, "num_generations", 8),
        completion_len=_int(hp, "max_completion_length", 512),
        beta=float(hp.get("beta", 0.1 if experiment.method == "dpo" else 0.0)),
        precompute_ref=bool(hp.get("precompute_ref_log_probs", False)),
    )


# --- LoRA --------------------------------------------------------------------


def decide_lora(experiment: Experiment, params: int | None) -> tuple[LoraSpec | None, str]:
    """The file decides when it says; ``auto`` turns LoRA on strictly above 3B."""
    lora = experiment.lora
    if isinstance(lora, LoraSpec):
        return lora, "LoRA on (set in the experiment file)"
    if lora == "off":
        return None, "LoRA off (set in the experiment file)"
    if params is None:
        return None, "LoRA off (auto): model size unknown; set `lora:` to choose"
    size = f"{params / 1e9:.2f}B parameters"
    if params > LORA_AUTO_THRESHOLD:
        return LoraSpec(), f"LoRA on (auto): {size} > 3B"
    return None, f"LoRA off (auto): {size} ≤ 3B"


_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def lora_trainable(shape: ModelShape, lora: LoraSpec) -> int:
    """r·(d_in + d_out) per adapted linear per layer; unknown names count as all-linear."""
    h, q, kv, i = shape.hidden_size, shape.q_dim, shape.kv_dim, shape.intermediate_size
    dims = {
        "q_proj": h + q,
        "k_proj": h + kv,
        "v_proj": h + kv,
        "o_proj": q + h,
        "gate_proj": h + i,
        "up_proj": h + i,
        "down_proj": i + h,
    }
    targets = lora.target_modules
    names = [targets] if isinstance(targets, str) else list(targets)
    chosen = [n for n in names if n in dims]
    if not chosen or len(chosen) < len(names):
        chosen = list(_PROJECTIONS)
    return lora.r * shape.num_layers * sum(dims[n] for n in chosen)


def approx_shape(params: int) -> ModelShape:
    """A typical decoder's shape for ``params`` when no config.json was readable.

    Fitted on Qwen2.5/Llama 3: layers·hidden ≈ 0.04·N^(2/3) and 12·layers·hidden² ≈ N,
    so hidden ≈ N^(1/3)/0.48; MLP width 3·hidden, GQA kv width hidden/4, vocab 128k.
    """
    hidden = max(64, int(params ** (1 / 3) / 0.48))
    layers = max(1, round(0.04 * params ** (2 / 3) / hidden))
    return ModelShape(hidden, layers, 3 * hidden, 128_000, hidden, hidden // 4, params)


# --- memory ------------------------------------------------------------------


def _activation_bytes_per_token(shape: ModelShape, s: Settings) -> float:
    """Activations kept for backward, per token.

    Per layer without checkpointing: ~8 hidden-wide (norms, q, k, v, attention
    out, residuals) and 4 MLP-wide (gate, up, activation, product) bf16 tensors =
    2·(8h + 4i) bytes; SDPA/flash attention keeps no seq² scores. Checkpointing
    keeps only each layer's input (in the weights' dtype) plus one layer being
    recomputed.
    """
    layer = 2 * (8 * shape.hidden_size + 4 * shape.intermediate_size)
    if s.checkpointing:
        return shape.num_layers * shape.hidden_size * s.weight_bytes + layer
    return shape.num_layers * layer


def _training_tokens(s: Settings, prompt_len: float) -> tuple[float, float]:
    """(tokens through the model, tokens through the LM head) per micro-batch."""
    if s.method == "dpo":  # chosen + rejected, each up to max_length
        tokens = 2 * s.batch * s.max_length
        return tokens, tokens
    if s.method == "grpo":  # logits only for completion tokens (logits_to_keep)
        return s.batch * (prompt_len + s.completion_len), s.batch * s.completion_len
    return s.batch * s.max_length, s.batch * s.max_length


def _kv_cache_bytes(shape: ModelShape, s: Settings, prompt_len: float) -> float:
    """GRPO generates per_device_train_batch_size × gradient_accumulation_steps completions
    at once (TRL's default generation batch): K and V per layer per token."""
    sequences = s.batch * s.grad_accum
    per_token = shape.num_layers * 2 * shape.kv_dim * s.weight_bytes
    return sequences * (prompt_len + s.completion_len) * per_token


def uses_reference_model(s: Settings, lora_on: bool) -> bool:
    """DPO and GRPO with beta > 0 compare to a frozen copy; with LoRA the copy is
    the base with the adapter disabled, and precomputed log-probs need none."""
    wanted = s.method == "dpo" or (s.method == "grpo" and s.beta > 0)
    return wanted and not lora_on and not s.precompute_ref


def estimate_memory(
    params: int, shape: ModelShape, s: Settings, *, trainable: int | None, prompt_len: float
) -> Memory:
    """Peak training memory.

    static: full fine-tuning = weights + grads + AdamW m, v, each in the load
    dtype: 4·w bytes/param (16 with TRL's float32 load, 8 with bf16);
    LoRA = frozen weights w bytes/param + 16 bytes per adapter param;
    + w bytes/param for a separate reference model (DPO; GRPO with beta > 0).
    dynamic: activations·tokens + LOGIT_BYTES·vocab·LM-head tokens per micro-batch;
    GRPO takes the larger of that and the generation KV cache, which is freed
    before the backward pass.
    """
    w = s.weight_bytes
    lora_on = trainable is not None
    static = params * w + trainable * ADAPTER_BYTES if lora_on else params * 4 * w
    if uses_reference_model(s, lora_on):
        static += params * w
    tokens, head_tokens = _training_tokens(s, prompt_len)
    dynamic = tokens * _activation_bytes_per_token(shape, s)
    dynamic += head_tokens * shape.vocab_size * LOGIT_BYTES
    if s.method == "grpo":
        dynamic = max(dynamic, _kv_cache_bytes(shape, s, prompt_len))
    return Memory(static, dynamic)


# --- hardware ----------------------------------------------------------------


def usable_gb(flavor: Flavor) -> float:
    return flavor.vram_gb * HEADROOM


def _price(flavor: Flavor, prices: Mapping[str, float]) -> float:
    return prices.get(flavor.name, flavor.usd_per_hour)


def _gpu_candidates(bf16: bool, prices: Mapping[str, float]) -> list[Flavor]:
    """GPU flavors by price; T4 drops out under bf16 (no bf16 tensor cores)."""
    gpus = [f for f in FLAVORS if f.is_gpu and (ACCELERATORS[f.accelerator].bf16 or not bf16)]
    return sorted(gpus, key=lambda f: (_price(f, prices), -f.peak_tflops, f.name))


def choose_flavor(
    memory: Memory, *, bf16: bool, prices: Mapping[str, float] | None = None
) -> FlavorChoice:
    """The cheapest $/h GPU flavor whose VRAM holds the run at ≤ 85% use.

    One GPU first: the job script runs a single process. Only when no single GPU
    fits, a multi-GPU flavor whose GPUs each hold 1/n of the static memory
    (FSDP full sharding) plus the unsharded activations; that needs the job to
    run under ``accelerate launch`` with FSDP.
    """
    prices = prices or {}
    candidates = _gpu_candidates(bf16, prices)
    t4 = FLAVORS_BY_NAME["t4-small"]
    t4_would_fit = bf16 and memory.per_gpu_gb(1) <= usable_gb(t4)
    notes: tuple[str, ...] = ()
    if t4_would_fit:
        notes = ("T4 skipped: no bf16 tensor cores (set `fp16: true` to allow it)",)
    for flavor in candidates:
        if flavor.gpus == 1 and memory.per_gpu_gb(1) <= usable_gb(flavor):
            return FlavorChoice(flavor, False, True, notes)
    for flavor in candidates:
        if flavor.gpus > 1 and memory.per_gpu_gb(flavor.gpus) <= usable_gb(flavor):
            return FlavorChoice(flavor, True, True, notes)
    biggest = max(candidates, key=lambda f: (f.total_vram_gb, -_price(f, prices)))
    return FlavorChoice(biggest, biggest.gpus > 1, False, notes)


def _explicit_flavor(name: str, memory: Memory | None, bf16: bool) -> FlavorChoice:
    flavor = FLAVORS_BY_NAME[name]
    if not flavor.is_gpu or memory is None:
        return FlavorChoice(flavor, False, None)
    sharded = flavor.gpus > 1
    fits = memory.per_gpu_gb(flavor.gpus) <= usable_gb(flavor)
    notes: tuple[str, ...] = ()
    if bf16 and not ACCELERATORS[flavor.accelerator].bf16:
        notes = (
            f"{name}: {flavor.accelerator} has no bf16 tensor cores, so bf16 (TRL's default) "
            "runs emulated and several times slower; set `fp16: true` or choose l4x1",
        )
    return FlavorChoice(flavor, sharded, fits, notes)


# --- examples, tokens, time --------------------------------------------------


@dataclass(frozen=True)
class Workload:
    examples: int | None
    steps: int | None
    tokens: int | None


def _train_rows(experiment: Experiment, dataset_rows: int | None) -> int | None:
    """Rows trained on: the dataset capped by max_samples, less a held-out eval_fraction."""
    ds = experiment.dataset
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


def flops_per_token_factor(s: Settings, lora_on: bool) -> int:
    """Training FLOPs per token per parameter.

    Full: 6 (forward 2 + backward 4). LoRA: 4 — the backward still computes
    activation gradients (2) but no weight gradients for frozen weights.
    +2 for the recomputed forward under gradient checkpointing;
    +2 for the reference forward (DPO, GRPO with beta > 0; with LoRA too, where
    the reference is the adapter-disabled base).
    """
    factor = (4 if lora_on else 6) + (2 if s.checkpointing else 0)
    if s.method == "dpo" or (s.method == "grpo" and s.beta > 0):
        factor += 2
    return factor


def effective_tflops(flavor: Flavor, bf16: bool) -> float:
    """Peak × MFU × GPUs (× 0.9 across GPUs); emulated bf16 on T4 runs at its fp32 rate."""
    if not flavor.is_gpu:
        return CPU_EFFECTIVE_TFLOPS
    accel = ACCELERATORS[flavor.accelerator]
    peak = accel.emulated_bf16_tflops if bf16 and not accel.bf16 else flavor.peak_tflops
    scaling = MULTI_GPU_EFFICIENCY if flavor.gpus > 1 else 1.0
    return peak * accel.mfu * flavor.gpus * scaling


def generation_seconds(flavor: Flavor, s: Settings, params: int, steps: int) -> float:
    """GRPO decoding: one generation batch (batch × accumulation sequences per GPU) per
    optimizer step, completions run to max_completion_length. A decode step reads every
    weight once, so it takes the longest of weight bytes / (bandwidth × 0.6), the batch's
    2·N FLOPs per sequence at the training rate, and DECODE_FLOOR_S of launch overhead."""
    sequences = s.batch * s.grad_accum
    per_device_flops = effective_tflops(flavor, s.bf16) / max(flavor.gpus, 1) * 1e12
    compute = 2 * params * sequences / per_device_flops
    memory = 0.0
    if flavor.is_gpu:
        accel = ACCELERATORS[flavor.accelerator]
        memory = params * s.weight_bytes / (accel.mem_bw_gbps * 1e9 * DECODE_BANDWIDTH_EFFICIENCY)
    return steps * s.completion_len * max(DECODE_FLOOR_S, memory, compute)


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


def format_duration(seconds: float) -> str:
    """1h30m style, the same syntax the experiment file's ``timeout:`` accepts."""
    minutes = math.ceil(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes or not hours else "")


# --- live prices (I/O edge) -------------------------------------------------

_UNITS_PER_HOUR = {"second": 3600, "minute": 60, "hour": 1}


def prices_from_hardware(api: HfApi) -> dict[str, float] | None:
    """$/h by flavor from ``GET /api/jobs/hardware`` (``unitCostUSD`` per ``unitLabel``).

    None when the call fails or says nothing usable: the shipped table then stands.
    """
    try:
        hardware = api.list_jobs_hardware()
    except Exception:  # auth, network, server: prices are advisory, keep the table
        return None
    prices = {}
    for item in hardware:
        per_hour = _UNITS_PER_HOUR.get(str(item.unit_label).lower())
        if per_hour and item.unit_cost_usd is not None:
            prices[item.name] = round(float(item.unit_cost_usd) * per_hour, 6)
    return prices or None


# --- the plan ----------------------------------------------------------------


@dataclass(frozen=True)
class _Lengths:
    mean_len: float  # tokens per sequence (GRPO: per prompt)
    prompt_len: float  # GRPO prompt tokens; equals mean_len otherwise
    note: str | None


def _lengths(s: Settings, mean_seq_len: float | None) -> _Lengths:
    """For GRPO ``mean_seq_len`` is the mean prompt length; else the mean example length."""
    if mean_seq_len is not None:
        return _Lengths(mean_seq_len, mean_seq_len, None)
    if s.method == "grpo":
        note = f"mean prompt length {GRPO_DEFAULT_PROMPT_LEN} tokens assumed (not measured)"
        return _Lengths(GRPO_DEFAULT_PROMPT_LEN, GRPO_DEFAULT_PROMPT_LEN, note)
    assumed = min(s.max_length, DEFAULT_MEAN_LEN_CAP)
    note = f"mean sequence length {assumed} tokens assumed: min(max_length, 512), not measured"
    return _Lengths(assumed, assumed, note)


def _auto_hardware(
    memory: Memory | None, s: Settings, prices: Mapping[str, float]
) -> tuple[FlavorChoice, list[str]]:
    if memory is None:
        return FlavorChoice(None, False, None), [
            "model size unknown: hardware not chosen; set `hardware:` in the experiment file"
        ]
    choice = choose_flavor(memory, bf16=s.bf16, prices=prices)
    warnings = []
    if not choice.fits:
        warnings.append(
            f"no flavor fits ~{memory.per_gpu_gb():.0f} GB: turn LoRA on, or lower "
            "per_device_train_batch_size or max_length"
        )
    return choice, warnings


def _explicit_hardware(
    name: str, memory: Memory | None, s: Settings
) -> tuple[FlavorChoice, list[str]]:
    choice = _explicit_flavor(name, memory, s.bf16)
    flavor = choice.flavor
    assert flavor is not None
    warnings = list(choice.notes)
    if not flavor.is_gpu:
        warnings.append(f"{name} has no GPU: training is only practical for tiny models")
    elif choice.fits is False and memory is not None:
        warnings.append(
            f"{name} does not fit: needs ~{memory.per_gpu_gb(flavor.gpus):.1f} GB per GPU, "
            f"{usable_gb(flavor):.1f} of {flavor.vram_gb} GB usable; expect out-of-memory "
            "(use `hardware: auto`, LoRA, or a smaller batch or max_length)"
        )
    return FlavorChoice(flavor, choice.sharded, choice.fits), warnings


def _hardware(
    experiment: Experiment, memory: Memory | None, s: Settings, prices: Mapping[str, float]
) -> tuple[FlavorChoice, list[str], list[str]]:
    """(choice, warnings, assumptions) for the hf-jobs backend."""
    explicit = experiment.hardware != "auto"
    if explicit:
        choice, warnings = _explicit_hardware(experiment.hardware, memory, s)
    else:
        choice, warnings = _auto_hardware(memory, s, prices)
    if choice.sharded and choice.flavor is not None:
        why = "" if explicit else "no single GPU fits, so "
        warnings.append(
            f"{choice.flavor.name}: {why}the estimate shards weights, gradients and optimizer "
            "states over its GPUs (FSDP); the job must run under `accelerate launch` with FSDP, "
            "a plain single process uses one GPU"
        )
    return choice, warnings, [] if explicit else list(choice.notes)


def _throughput_note(flavor: Flavor, s: Settings, lora_on: bool) -> str:
    factor = flops_per_token_factor(s, lora_on)
    if not flavor.is_gpu:
        rate = f"{CPU_EFFECTIVE_TFLOPS} TFLOP/s effective on CPU"
    else:
        accel = ACCELERATORS[flavor.accelerator]
        rate = f"{flavor.accelerator} {flavor.peak_tflops:g} TFLOP/s peak × {accel.mfu:.0%} MFU"
        if flavor.gpus > 1:
            rate += f" × {flavor.gpus} GPUs × {MULTI_GPU_EFFICIENCY:.0%}"
    return f"training FLOPs = {factor}·N·tokens; {rate}"


def _seconds(
    flavor: Flavor, s: Settings, size: ModelSize, shape: ModelShape, lora_on: bool, work: Workload
) -> float | None:
    if work.tokens is None or work.steps is None:
        return None
    flops = flops_per_token_factor(s, lora_on) * shape.active_params * work.tokens
    seconds = flops / (effective_tflops(flavor, s.bf16) * 1e12)
    if s.method == "grpo":
        seconds += generation_seconds(flavor, s, size.params, work.steps)
    return seconds + overhead_seconds(size.params)


def _timeout_warnings(experiment: Experiment, est: float | None, recommended: int | None) -> list:
    """A timeout below the estimate kills the job; none at all means HF Jobs' 30 min."""
    if est is None or recommended is None:
        return []
    advice = f"set `timeout: {format_duration(recommended)}`"
    timeout = experiment.timeout
    if timeout is None and recommended > HF_JOBS_DEFAULT_TIMEOUT_S:
        return [
            "no timeout set: HF Jobs stops jobs after 30 min by default, which kills most "
            f"training; this one is estimated at ~{format_duration(est)}; {advice}"
        ]
    if timeout is not None and timeout < est:
        return [
            f"timeout {format_duration(timeout)} is below the estimated "
            f"{format_duration(est)}: the job would be killed; {advice}"
        ]
    return []


def _static_assumptions(s: Settings, lora_on: bool, size: ModelSize) -> list[str]:
    notes = []
    if not size.shape:
        notes.append("model shape approximated from the parameter count (no config.json)")
    if s.weight_bytes == 4:
        held = "LoRA freezes 4 bytes/param" if lora_on else "full fine-tuning holds 16 bytes/param"
        notes.append(
            f"weights load in float32 (TRL's default; set model_init_kwargs.dtype: bfloat16 "
            f"to halve it): {held}"
        )
    return notes


def _budget_warnings(experiment: Experiment, cost: float | None) -> tuple[bool, list[str]]:
    budget = experiment.budget.max_cost_usd if experiment.budget else None
    if budget is None:
        return False, []
    if cost is None:
        return False, [f"cost unknown: budget ${budget:.2f} cannot be checked"]
    if cost > budget:
        return True, [f"estimated ${cost:.2f} exceeds budget.max_cost_usd ${budget:.2f}"]
    return False, []


@dataclass(frozen=True)
class _Sizing:
    """What the model and the file fix before hardware is chosen."""

    lora: LoraSpec | None
    lora_note: str
    lengths: _Lengths
    shape: ModelShape | None
    trainable: int | None
    memory: Memory | None


def _sizing(s: Settings, experiment: Experiment, size: ModelSize | None, mean_len: float | None):
    lora, note = decide_lora(experiment, size.params if size else None)
    lengths = _lengths(s, mean_len)
    if size is None:
        return _Sizing(lora, note, lengths, None, None, None)
    shape = size.shape or approx_shape(size.params)
    trainable = lora_trainable(shape, lora) if lora else None
    memory = estimate_memory(
        size.params, shape, s, trainable=trainable, prompt_len=lengths.prompt_len
    )
    return _Sizing(lora, note, lengths, shape, trainable, memory)


@dataclass(frozen=True)
class _Timing:
    seconds: float | None = None
    usd_per_hour: float | None = None
    cost: float | None = None
    recommended: int | None = None


def _timing(
    flavor: Flavor,
    s: Settings,
    size: ModelSize,
    sized: _Sizing,
    work: Workload,
    prices: Mapping[str, float],
    notes: _Notes,
) -> _Timing:
    assert sized.shape is not None
    price = _price(flavor, prices)
    lora_on = sized.lora is not None
    est = _seconds(flavor, s, size, sized.shape, lora_on, work)
    if est is None:
        return _Timing(usd_per_hour=price)
    notes.assumptions.append(_throughput_note(flavor, s, lora_on))
    notes.assumptions.append(
        f"start-up {FIXED_OVERHEAD_S // 60} min + {size.params * 2 / GB:.1f} GB download"
    )
    if s.method == "grpo":
        notes.assumptions.append(
            "GRPO completions run to max_completion_length; transformers generate "
            f"(no vLLM) at ≥{DECODE_FLOOR_S * 1000:.0f} ms per decode step"
        )
    notes.assumptions.append("evaluation passes and checkpoint uploads are not counted")
    return _Timing(est, price, cost_usd(est, price), recommended_timeout(est))


@dataclass
class _Notes:
    warnings: list[str]
    assumptions: list[str]


def _workload_notes(experiment: Experiment, s: Settings, work: Workload, rows_known: bool):
    if work.tokens is None:
        return [
            "dataset size unknown and no max_steps or max_samples: time and cost not "
            "estimated; run the dataset check or set max_steps"
        ], []
    if not rows_known and not s.max_steps:
        return [], [f"the dataset has at least max_samples ({experiment.dataset.max_samples}) rows"]
    return [], []


def make_plan(
    experiment: Experiment,
    *,
    size: ModelSize | None,
    dataset_rows: int | None,
    mean_seq_len: float | None,
    prices: dict[str, float] | None = None,
) -> Plan:
    """Decide LoRA and hardware and estimate memory, time, cost and timeout.

    ``size`` None (unknown model) still plans, without hardware or memory.
    ``dataset_rows``/``mean_seq_len`` come from the dataset check when it has run
    (for GRPO ``mean_seq_len`` is the mean prompt length).
    ``prices`` ($/h by flavor) override the shipped table (see ``prices_from_hardware``).
    The local backend gets flavor "local" at no cost and no time estimate.
    """
    prices = prices or {}
    s = settings_from(experiment)
    sized = _sizing(s, experiment, size, mean_seq_len)
    notes = _Notes([], _static_assumptions(s, sized.lora is not None, size) if size else [])
    if sized.lengths.note:
        notes.assumptions.append(sized.lengths.note)
    if size is None:
        notes.warnings.append("model size unknown: memory, hardware and time not estimated")
    if experiment.allow_remote_code:
        notes.warnings.append(
            f"allow_remote_code: true: the job runs Python code from {experiment.base_model}'s "
            "repository (trust_remote_code)"
        )

    local = experiment.backend == "local"
    if local:
        choice = FlavorChoice(None, False, None)
        if experiment.hardware != "auto":
            notes.assumptions.append(
                f"hardware {experiment.hardware} is ignored by the local backend"
            )
    else:
        choice, hw_warnings, hw_notes = _hardware(experiment, sized.memory, s, prices)
        notes.warnings.extend(hw_warnings)
        notes.assumptions.extend(hw_notes)
    flavor = choice.flavor
    gpus = flavor.gpus if flavor else (1 if local else 0)

    per_example = tokens_per_example(s, sized.lengths.mean_len, sized.lengths.prompt_len)
    rows = _train_rows(experiment, dataset_rows)
    work = workload(s, gpus=gpus, rows=rows, per_example=per_example)
    work_warnings, work_notes = _workload_notes(experiment, s, work, dataset_rows is not None)
    notes.warnings.extend(work_warnings)
    notes.assumptions.extend(work_notes)

    timing = _Timing()
    if flavor is not None and size is not None:
        timing = _timing(flavor, s, size, sized, work, prices, notes)
        notes.warnings.extend(_timeout_warnings(experiment, timing.seconds, timing.recommended))
    over_budget, budget_warnings = (
        (False, []) if local else _budget_warnings(experiment, timing.cost)
    )
    notes.warnings.extend(budget_warnings)

    return Plan(
        experiment=experiment.name,
        base_model=experiment.base_model,
        method=experiment.method,
        backend=experiment.backend,
        flavor="local" if local else (flavor.name if flavor else None),
        flavor_usd_per_hour=0.0 if local else _hourly(flavor, timing, prices),
        flavor_vram_gb=flavor.total_vram_gb if flavor and flavor.is_gpu else None,
        gpus=gpus,
        sharded=choice.sharded,
        fits=choice.fits,
        lora_on=sized.lora is not None,
        lora_note=sized.lora_note,
        params=size.params if size else None,
        params_source=size.source if size else None,
        trainable_params=sized.trainable,
        memory_gb=round(sized.memory.per_gpu_gb(), 2) if sized.memory else None,
        examples=work.examples,
        steps=work.steps,
        tokens=work.tokens,
        mean_seq_len=sized.lengths.mean_len,
        est_seconds=None if timing.seconds is None else math.ceil(timing.seconds),
        est_cost_usd=0.0 if local else _round(timing.cost, 4),
        timeout_s=experiment.timeout,
        recommended_timeout_s=timing.recommended,
        budget_usd=experiment.budget.max_cost_usd if experiment.budget else None,
        over_budget=over_budget,
        warnings=tuple(notes.warnings),
        assumptions=tuple(notes.assumptions),
    )


def _hourly(flavor: Flavor | None, timing: _Timing, prices: Mapping[str, float]) -> float | None:
    """The price is known whenever the flavor is, even if the time is not."""
    if timing.usd_per_hour is not None:
        return timing.usd_per_hour
    return _price(flavor, prices) if flavor else None


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
