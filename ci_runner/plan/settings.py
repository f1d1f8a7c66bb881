"""What the estimate reads from the file: TRL's defaults filled in, the LoRA decision,
and the precision the base model loads in.

Defaults mirror TRL 1.16 / transformers 5.23 as run by ``train.py``: full fine-tuning
loads weights in float32 (TRL's default ``model_init_kwargs.dtype``), bf16 autocast
unless ``fp16`` is set, gradient checkpointing on GPU, batch size 8, 3 epochs,
``max_length`` 1024 (SFT, DPO), 8 generations of up to 512 tokens (GRPO), a reference
model for DPO and for GRPO with ``beta`` > 0.

LoRA runs on HF Jobs load the frozen base in 16 bits (``precision_for``): ci-runner sends
``model_init_kwargs.dtype`` itself unless the file sets one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ci_runner.core.flavors import ACCELERATORS, Flavor
from ci_runner.plan.model_size import ModelShape
from ci_runner.spec.model import Experiment, LoraSpec

GB = 1e9
LORA_AUTO_THRESHOLD = 3_000_000_000  # "switch LoRA on automatically above 3B"
UNBOUNDED_LENGTH = 4096  # what `max_length: null` is sized for


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
    fp16: bool  # fp16 autocast, set in the file
    num_generations: int
    completion_len: int
    beta: float
    precompute_ref: bool


@dataclass(frozen=True)
class Savers:
    """The memory savers a run is sized with on one flavor (``plan.savers`` decides them).

    ``fused_head`` is TRL 1.16's own fused LM head (always on: the trainers patch it in),
    ``liger`` Liger's layer kernels, ``bf16_weights`` a full fine-tune loaded in bf16
    (``Precision`` carries the dtype), ``padding_free`` varlen batches without padding,
    ``vllm_share`` the GPU fraction a colocated vLLM engine holds (0: transformers generate).
    Gradient checkpointing is ``Settings.checkpointing``.
    """

    liger: bool = False
    fused_head: bool = True
    bf16_weights: bool = False
    padding_free: bool = False
    vllm_share: float = 0.0


# --- settings ----------------------------------------------------------------


def _int(hp: Mapping[str, Any], key: str, default: int) -> int:
    value = hp.get(key)
    return default if value is None else int(value)


def file_dtype(hp: Mapping[str, Any]) -> str | None:
    """The ``model_init_kwargs.dtype`` the file sets (``torch_dtype``, its old name, too)."""
    kwargs = hp.get("model_init_kwargs")
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    dtype = kwargs.get("dtype") or kwargs.get("torch_dtype")
    return str(dtype).removeprefix("torch.") if dtype else None


def _checkpointing(hp: Mapping[str, Any], allowed: bool) -> bool:
    """transformers 5.23: ``activation_checkpointing`` wins over the old name; TRL: on,
    unless the file's ``savers`` turn it off."""
    for key in ("activation_checkpointing", "gradient_checkpointing"):
        if hp.get(key) is not None:
            return bool(hp[key])
    return allowed


def settings_from(experiment: Experiment) -> Settings:
    hp = experiment.hyperparameters
    max_length = hp.get("max_length", 1024)
    max_steps = _int(hp, "max_steps", -1)
    assert experiment.method is not None  # the loader requires a method of every run
    return Settings(
        method=experiment.method,
        batch=_int(hp, "per_device_train_batch_size", 8),
        grad_accum=_int(hp, "gradient_accumulation_steps", 1),
        epochs=float(hp.get("num_train_epochs") or 3.0),
        max_steps=max_steps if max_steps > 0 else None,
        max_length=int(max_length) if max_length else UNBOUNDED_LENGTH,
        checkpointing=_checkpointing(hp, experiment.savers.gradient_checkpointing),
        bf16=not hp.get("fp16") and hp.get("bf16", True) is not False,
        fp16=bool(hp.get("fp16")),
        num_generations=_int(hp, "num_generations", 8),
        completion_len=_int(hp, "max_completion_length", 512),
        beta=float(hp.get("beta", 0.1 if experiment.method == "dpo" else 0.0)),
        precompute_ref=bool(hp.get("precompute_ref_log_probs", False)),
    )


# --- precision ---------------------------------------------------------------

# Bytes per weight as loaded. "auto" keeps the checkpoint's dtype: 16-bit for nearly
# every published model.
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "auto": 2}
# bitsandbytes NF4 with double quantization: 4 bits per weight, plus one 8-bit absmax per
# block of 64 weights and one fp32 constant per 256 blocks: 0.5 + 1/64 + 4/16384 bytes.
NF4_BYTES = 0.516

FILE, TRL_DEFAULT, CI_RUNNER = "experiment file", "TRL default", "ci-runner"


@dataclass(frozen=True)
class Precision:
    """How the base model's weights are held.

    ``dtype`` is what ``model_init_kwargs.dtype`` loads them in; under QLoRA
    (``quantize="4bit"``) it is the compute dtype of the 4-bit layers and the dtype of
    what stays unquantized (embeddings, LM head, norms). ``source`` says who chose the
    dtype: the experiment file, TRL's default (float32), or ci-runner, which then sends
    it in the run config.
    """

    dtype: str
    quantize: str | None = None
    source: str = TRL_DEFAULT

    @property
    def weight_bytes(self) -> int:
        """Bytes per unquantized weight (and per activation kept between layers)."""
        return DTYPE_BYTES.get(self.dtype, 4)

    @property
    def sent(self) -> bool:
        return self.source == CI_RUNNER

    def describe(self) -> str:
        if self.quantize:
            return f"4-bit NF4 (bitsandbytes, double quant), {self.dtype} compute"
        return self.dtype


def sixteen_bit_dtype(flavor: Flavor, s: Settings) -> str:
    """bf16 where the GPU has bf16 tensor cores, fp16 on T4 or when the file asks for fp16."""
    accel = ACCELERATORS[flavor.accelerator] if flavor.accelerator else None
    return "float16" if s.fp16 or (accel is not None and not accel.bf16) else "bfloat16"


def precision_for(
    experiment: Experiment,
    s: Settings,
    *,
    lora_on: bool,
    flavor: Flavor | None,
    quantize: bool,
) -> Precision:
    """The precision a run loads its base model in, on ``flavor`` (None: local or unknown).

    The file's ``model_init_kwargs.dtype`` always wins. Full fine-tuning keeps TRL's
    float32. LoRA freezes the base, so ci-runner loads it in 16 bits on a GPU (bf16, or
    fp16 on T4) and in float32 on a CPU flavor; the adapters stay float32, as PEFT
    keeps them. QLoRA computes in the same 16-bit dtype. With no flavor (the local
    backend) the machine is unknown: TRL's float32 stands unless the run is QLoRA,
    which needs a CUDA GPU and computes in bf16.
    """
    q = "4bit" if quantize and lora_on else None
    own = file_dtype(experiment.hyperparameters)
    if own:
        return Precision(own, q, FILE)
    if not lora_on:
        return Precision("float32", None, TRL_DEFAULT)
    if flavor is None:
        return Precision("bfloat16", q, CI_RUNNER) if q else Precision("float32", None, TRL_DEFAULT)
    if not flavor.is_gpu:
        return Precision("float32", q, CI_RUNNER)
    return Precision(sixteen_bit_dtype(flavor, s), q, CI_RUNNER)


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


def quantizable_params(shape: ModelShape, params: int) -> int:
    """The decoder layers' linear weights: what bitsandbytes quantizes. Embeddings, the LM
    head and norms stay 16-bit. (MoE: only the active experts' width is known here, so
    the rest counts as 16-bit: an overestimate.)"""
    h, q, kv, i = shape.hidden_size, shape.q_dim, shape.kv_dim, shape.intermediate_size
    per_layer = 2 * h * q + 2 * h * kv + 3 * h * i
    return min(params, shape.num_layers * per_layer)


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
