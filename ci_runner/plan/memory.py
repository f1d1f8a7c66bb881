"""Peak training memory: weights, gradients, optimizer states, reference model, activations."""

from __future__ import annotations

from dataclasses import dataclass

from ci_runner.plan.model_size import ModelShape
from ci_runner.plan.settings import (
    GB,
    NF4_BYTES,
    Precision,
    Settings,
    quantizable_params,
)

HEADROOM = 0.85  # use at most 85% of VRAM: allocator fragmentation, spikes
CUDA_OVERHEAD_GB = 1.0  # CUDA context, cuBLAS workspace, allocator reserve
LOGIT_BYTES = 12  # per logit: bf16 logits + fp32 upcast + fp32 log-softmax/grad
ADAPTER_BYTES = 16  # LoRA params: fp32 weight + grad + AdamW m, v (PEFT keeps them fp32)
# QLoRA: TRL 1.16 casts the adapters of a quantized model to bf16 (QLoRA paper, §3):
# bf16 weight + grad + AdamW m, v, which follow the parameter's dtype.
QLORA_ADAPTER_BYTES = 8


@dataclass(frozen=True)
class Memory:
    """Bytes a run holds: ``static`` shards under FSDP, ``dynamic`` is per GPU."""

    static: float  # weights, grads, optimizer states, reference model
    dynamic: float  # activations, logits, generation KV cache

    def per_gpu_gb(self, gpus: int = 1) -> float:
        return (self.static / gpus + self.dynamic) / GB + CUDA_OVERHEAD_GB


# --- memory ------------------------------------------------------------------


def _activation_bytes_per_token(shape: ModelShape, s: Settings, w: int) -> float:
    """Activations kept for backward, per token.

    Per layer without checkpointing: ~8 hidden-wide (norms, q, k, v, attention
    out, residuals) and 4 MLP-wide (gate, up, activation, product) bf16 tensors =
    2·(8h + 4i) bytes; SDPA/flash attention keeps no seq² scores. Checkpointing
    keeps only each layer's input (in the weights' dtype) plus one layer being
    recomputed.
    """
    layer = 2 * (8 * shape.hidden_size + 4 * shape.intermediate_size)
    if s.checkpointing:
        return shape.num_layers * shape.hidden_size * w + layer
    return shape.num_layers * layer


def _training_tokens(s: Settings, prompt_len: float) -> tuple[float, float]:
    """(tokens through the model, tokens through the LM head) per micro-batch."""
    if s.method == "dpo":  # chosen + rejected, each up to max_length
        tokens = 2 * s.batch * s.max_length
        return tokens, tokens
    if s.method == "grpo":  # logits only for completion tokens (logits_to_keep)
        return s.batch * (prompt_len + s.completion_len), s.batch * s.completion_len
    return s.batch * s.max_length, s.batch * s.max_length


def _kv_cache_bytes(shape: ModelShape, s: Settings, prompt_len: float, w: int) -> float:
    """GRPO generates per_device_train_batch_size × gradient_accumulation_steps completions
    at once (TRL's default generation batch): K and V per layer per token."""
    sequences = s.batch * s.grad_accum
    per_token = shape.num_layers * 2 * shape.kv_dim * w
    return sequences * (prompt_len + s.completion_len) * per_token


def uses_reference_model(s: Settings, lora_on: bool) -> bool:
    """DPO and GRPO with beta > 0 compare to a frozen copy; with LoRA the copy is
    the base with the adapter disabled, and precomputed log-probs need none."""
    wanted = s.method == "dpo" or (s.method == "grpo" and s.beta > 0)
    return wanted and not lora_on and not s.precompute_ref


def frozen_weight_bytes(params: int, shape: ModelShape, precision: Precision) -> float:
    """The frozen base: w bytes/param, or NF4 for the layers' linear weights under QLoRA."""
    if not precision.quantize:
        return params * precision.weight_bytes
    quantized = quantizable_params(shape, params)
    return quantized * NF4_BYTES + (params - quantized) * precision.weight_bytes


def estimate_memory(
    params: int,
    shape: ModelShape,
    s: Settings,
    *,
    precision: Precision,
    trainable: int | None,
    prompt_len: float,
    fsdp: bool = False,
) -> Memory:
    """Peak training memory.

    static: full fine-tuning = weights + grads + AdamW m, v, each in the load
    dtype: 4·w bytes/param (16 with TRL's float32 load, 8 with bf16; under FSDP with
    mixed precision accelerate upcasts trainable 16-bit weights to fp32: 16);
    LoRA = frozen weights w bytes/param (QLoRA: NF4 for the layers' linear weights)
    + 16 bytes per adapter param (QLoRA: 8, TRL keeps them bf16);
    + w bytes/param for a separate reference model (DPO; GRPO with beta > 0).
    dynamic: activations·tokens + LOGIT_BYTES·vocab·LM-head tokens per micro-batch;
    GRPO takes the larger of that and the generation KV cache, which is freed
    before the backward pass.
    """
    w = precision.weight_bytes
    lora_on = trainable is not None
    if trainable is not None:
        adapter = QLORA_ADAPTER_BYTES if precision.quantize else ADAPTER_BYTES
        static = frozen_weight_bytes(params, shape, precision) + trainable * adapter
    else:
        trained = 4 if fsdp and (s.bf16 or s.fp16) else w
        static = params * 4 * trained
    if uses_reference_model(s, lora_on):
        static += params * w
    tokens, head_tokens = _training_tokens(s, prompt_len)
    dynamic = tokens * _activation_bytes_per_token(shape, s, w)
    dynamic += head_tokens * shape.vocab_size * LOGIT_BYTES
    if s.method == "grpo":
        dynamic = max(dynamic, _kv_cache_bytes(shape, s, prompt_len, w))
    return Memory(static, dynamic)
