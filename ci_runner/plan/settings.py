"""What the estimate reads from the file: TRL's defaults filled in, and the LoRA decision.

Defaults mirror TRL 1.16 / transformers 5.23 as run by ``train.py``: weights load in
float32 (TRL's default ``model_init_kwargs.dtype``), bf16 autocast unless ``fp16`` is set,
gradient checkpointing on GPU, batch size 8, 3 epochs, ``max_length`` 1024 (SFT, DPO),
8 generations of up to 512 tokens (GRPO), a reference model for DPO and for GRPO with
``beta`` > 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ci_runner.plan.model_size import ModelShape
from ci_runner.spec.model import Experiment, LoraSpec

if TYPE_CHECKING:
    pass


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
    weight_bytes: int  # bytes per weight as loaded (4: TRL's float32 default)
    num_generations: int
    completion_len: int
    beta: float
    precompute_ref: bool


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
