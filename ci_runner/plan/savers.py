"""Memory savers: which TRL/transformers options a run gets on a flavor, and what each buys.

The planner decides them per candidate flavor *before* choosing one, so a saver that
makes a run fit a cheaper GPU gets that GPU. Each is applied only where the model type
and the flavor support it, and the file can turn any of them off (``savers:``, or the
TRL field itself). ``resolve.with_savers`` sends exactly the decided settings.

- TRL 1.16's trainers patch a fused LM head into every model (``add_fused_lm_head``):
  per-token log-probs in 4,096-token × 32,768-vocab tiles, so the ``(tokens, vocab)``
  logits are never stored. Always on; it is why Liger's own fused cross-entropy is
  refused by TRL 1.16, which applies only Liger's layer kernels.
- Liger (``use_liger_kernel``): Triton RMSNorm, SwiGLU/GeGLU (recomputed in the backward)
  and RoPE, for the model types liger-kernel 0.8.5 patches, on a CUDA flavor.
- Gradient checkpointing: TRL's default on GPU; shown with what it saves.
- bf16 weights: a full fine-tune loads bf16 (weights, grads and AdamW states at 2 bytes)
  only where float32 would need a dearer GPU: bf16 optimizer steps round away updates
  below ~0.4% of a weight, so full precision is kept whenever it costs nothing.
- Padding-free batches (SFT: ``packing`` with TRL's ``bfd`` strategy; DPO:
  ``padding_free``): exact only with varlen attention (flash attention), so only when the
  file loads the model with such an implementation.
- vLLM colocate (GRPO ``use_vllm``): generation in a vLLM engine sharing the GPU, with
  ``vllm_gpu_memory_utilization`` budgeted in the plan's memory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from ci_runner.core.flavors import ACCELERATORS, Flavor
from ci_runner.plan.model_size import ModelShape
from ci_runner.plan.settings import GB, Settings
from ci_runner.runconfig import LIGER_KERNEL
from ci_runner.spec.model import Experiment

# liger-kernel 0.8.5 ``MODEL_TYPE_TO_APPLY_LIGER_FN``: the text decoders among its keys.
LIGER_MODEL_TYPES = frozenset(
    {
        "deepseek_v2",
        "deepseek_v3",
        "exaone4",
        "falcon_h1",
        "gemma",
        "gemma2",
        "gemma3",
        "gemma3_text",
        "glm4",
        "gpt_oss",
        "granite",
        "hunyuan_v1_dense",
        "hunyuan_v1_moe",
        "llama",
        "ministral",
        "mistral",
        "mixtral",
        "nemotron",
        "olmo2",
        "olmo3",
        "phi3",
        "qwen2",
        "qwen3",
        "qwen3_moe",
        "qwen3_next",
        "smollm3",
    }
)

# Text decoders vLLM 0.30 serves natively (its model registry), by config ``model_type``.
VLLM_MODEL_TYPES = frozenset(
    {
        "deepseek_v2",
        "deepseek_v3",
        "gemma",
        "gemma2",
        "gemma3",
        "gemma3_text",
        "glm4",
        "gpt_oss",
        "granite",
        "llama",
        "mistral",
        "mixtral",
        "olmo2",
        "phi3",
        "qwen2",
        "qwen2_moe",
        "qwen3",
        "qwen3_moe",
        "smollm3",
    }
)
VLLM_SHARE_STEP = 0.05  # vllm_gpu_memory_utilization is rounded up to a multiple of this
VLLM_MAX_SHARE = 0.6  # past this the trainer is left too little of the GPU

# attn_implementation values whose kernels take varlen (cu_seqlens) batches
VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3", "kernels-community/")

FUSED_LM_HEAD = "fused_lm_head"
LIGER = "liger_kernel"
CHECKPOINTING = "gradient_checkpointing"
BF16_WEIGHTS = "bf16_weights"
PADDING_FREE = "padding_free"
VLLM_SAVER = "vllm"


class SaverPlan(BaseModel):
    """One saver as the plan shows it: on or off, why, and the memory it takes off a GPU."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    on: bool
    saves_gb: float | None = None  # peak memory per GPU without it minus with it
    note: str = ""


def _hp(experiment: Experiment) -> Mapping[str, Any]:
    return experiment.hyperparameters


def _file_says(hp: Mapping[str, Any], *keys: str) -> bool | None:
    for key in keys:
        if hp.get(key) is not None:
            return bool(hp[key])
    return None


def _cuda(flavor: Flavor | None) -> bool:
    return flavor is not None and flavor.is_gpu


def liger_decision(
    experiment: Experiment, shape: ModelShape | None, flavor: Flavor | None
) -> tuple[bool, str]:
    """Liger's layer kernels: supported model type, CUDA flavor, not turned off."""
    own = _file_says(_hp(experiment), "use_liger_kernel")
    if own is not None:
        return own, f"use_liger_kernel: {str(own).lower()} in the file"
    if not experiment.savers.liger_kernel:
        return False, "off in the file (savers.liger_kernel: false)"
    model_type = shape.model_type if shape else None
    if model_type not in LIGER_MODEL_TYPES:
        return False, f"liger-kernel 0.8.5 has no kernels for model type {model_type or 'unknown'}"
    if not _cuda(flavor):
        return False, "Triton kernels need a CUDA GPU" + ("" if flavor else " (local: unknown)")
    return True, f"RMSNorm, SwiGLU/GeGLU and RoPE kernels for {model_type} (adds {LIGER_KERNEL})"


def varlen_attention(experiment: Experiment) -> str | None:
    """The file's ``model_init_kwargs.attn_implementation`` when its kernels take varlen."""
    kwargs = _hp(experiment).get("model_init_kwargs")
    impl = kwargs.get("attn_implementation") if isinstance(kwargs, dict) else None
    if isinstance(impl, str) and impl.startswith(VARLEN_ATTENTION) and "flash" in impl:
        return impl
    return None


def padding_free_decision(experiment: Experiment, s: Settings) -> tuple[bool, str]:
    """SFT packing (bfd, padding-free) or DPO padding_free: exact with varlen attention."""
    if s.method == "grpo":
        return False, "GRPO pads its own generation batches"
    keys = ("packing", "padding_free") if s.method == "sft" else ("padding_free",)
    own = _file_says(_hp(experiment), *keys)
    if own is not None:
        return own, f"{keys[0]}: {str(own).lower()} in the file"
    if not experiment.savers.padding_free:
        return False, "off in the file (savers.padding_free: false)"
    impl = varlen_attention(experiment)
    if impl is None:
        return False, (
            "exact only with varlen flash attention: set model_init_kwargs.attn_implementation "
            "(flash_attention_2, or a kernels-community flash kernel) to turn it on"
        )
    how = "packing (bfd: padding-free)" if s.method == "sft" else "padding_free"
    return True, f"{how} with {impl}: batches carry no padding tokens"


def vllm_share(flavor: Flavor, need_bytes: float) -> float | None:
    """The ``vllm_gpu_memory_utilization`` that holds ``need_bytes`` on one of the flavor's
    GPUs, rounded up; None when it would leave the trainer too little."""
    share = math.ceil(need_bytes / (flavor.vram_gb * GB) / VLLM_SHARE_STEP) * VLLM_SHARE_STEP
    share = round(max(share, VLLM_SHARE_STEP), 2)
    return share if share <= VLLM_MAX_SHARE else None


def vllm_allowed(
    experiment: Experiment, shape: ModelShape | None, flavor: Flavor | None, quantized: bool
) -> tuple[bool, str]:
    """GRPO on a GPU flavor, a model type vLLM serves, a 16-bit base, not turned off."""
    if experiment.method != "grpo":
        return False, "GRPO only"
    own = _file_says(_hp(experiment), "use_vllm")
    if own is False:
        return False, "use_vllm: false in the file"
    if not experiment.savers.vllm:
        return False, "off in the file (savers.vllm: false)"
    if not _cuda(flavor):
        return False, "transformers generate: vLLM needs a CUDA GPU" + (
            "" if flavor else " (local runs keep generate)"
        )
    model_type = shape.model_type if shape else None
    if model_type not in VLLM_MODEL_TYPES:
        return False, f"vLLM does not serve model type {model_type or 'unknown'}"
    if quantized:
        return False, "a 4-bit base: vLLM would hold a second, 16-bit copy"
    return True, ""


def bf16_capable(flavor: Flavor | None) -> bool:
    accel = ACCELERATORS.get(flavor.accelerator or "") if flavor else None
    return accel is not None and accel.bf16


def rows_text(savers: tuple[SaverPlan, ...]) -> str:
    """``liger_kernel −0.2 GB, gradient_checkpointing −9.5 GB``: the savers that are on."""
    parts = []
    for saver in savers:
        if saver.on:
            big = saver.saves_gb is not None and saver.saves_gb >= 0.05
            effect = f" −{saver.saves_gb:.1f} GB" if big else ""
            parts.append(f"{saver.name}{effect}")
    return ", ".join(parts) or "none"
