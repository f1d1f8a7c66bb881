"""Peak training memory: weights, gradients, optimizer states, reference model, activations."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ci_runner.plan.model_size import ModelShape
from ci_runner.plan.settings import (
    GB,
    NF4_BYTES,
    Precision,
    Savers,
    Settings,
    quantizable_params,
)

HEADROOM = 0.85  # use at most 85% of VRAM: allocator fragmentation, spikes
CUDA_OVERHEAD_GB = 1.0  # CUDA context, cuBLAS workspace, allocator reserve
LOGIT_BYTES = 12  # per logit: bf16 logits + fp32 upcast + fp32 log-softmax/grad
# TRL 1.16's fused LM head (trl/kernels/chunked_logprob.py): tiles of at most 4,096 tokens
# × 32,768 vocabulary entries, a projection buffer and its recomputed gradient in fp32.
FUSED_HEAD_TOKENS = 4096
FUSED_HEAD_VOCAB = 32768
FUSED_TILE_BYTES = 8  # fp32 tile + fp32 gradient tile, per tile element
VLLM_OVERHEAD_GB = 2.0  # a vLLM engine's activations, CUDA graphs and sampler
ADAPTER_BYTES = 16  # LoRA params: fp32 weight + grad + AdamW m, v (PEFT keeps them fp32)
# QLoRA: TRL 1.16 casts the adapters of a quantized model to bf16 (QLoRA paper, §3):
# bf16 weight + grad + AdamW m, v, which follow the parameter's dtype.
QLORA_ADAPTER_BYTES = 8


@dataclass(frozen=True)
class Memory:
    """Bytes a run holds: ``static`` shards under FSDP, ``dynamic`` is per GPU."""

    static: float  # weights, grads, optimizer states, reference model
    dynamic: float  # activations, logits, generation KV cache
    reserved: float = 0.0  # per GPU, held apart from training: a colocated vLLM engine
    savers: Savers = field(default_factory=Savers)  # what it was sized with

    def per_gpu_gb(self, gpus: int = 1) -> float:
        return (self.static / gpus + self.dynamic + self.reserved) / GB + CUDA_OVERHEAD_GB


# --- memory ------------------------------------------------------------------


def _activation_bytes_per_token(shape: ModelShape, s: Settings, w: int, liger: bool) -> float:
    """Activations kept for backward, per token.

    Per layer without checkpointing: ~8 hidden-wide (norms, q, k, v, attention
    out, residuals) and 4 MLP-wide (gate, up, activation, product) bf16 tensors =
    2·(8h + 4i) bytes; SDPA/flash attention keeps no seq² scores. Liger's SwiGLU/GeGLU
    recomputes the activation and the product in the backward: 2 MLP-wide tensors.
    Checkpointing keeps only each layer's input (in the weights' dtype) plus one layer
    being recomputed.
    """
    mlp_wide = 2 if liger else 4
    layer = 2 * (8 * shape.hidden_size + mlp_wide * shape.intermediate_size)
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


def _head_bytes(shape: ModelShape, head_tokens: float, *, fused: bool, head_trained: bool) -> float:
    """The LM head's working memory per micro-batch.

    Unfused: the ``(tokens, vocab)`` logits, upcast and their gradient (LOGIT_BYTES each).
    TRL 1.16's fused head: one tile, the hidden states' fp32 gradient, and, when the
    head itself trains (full fine-tuning), its fp32 gradient accumulator (vocab × hidden).
    """
    if not fused:
        return head_tokens * shape.vocab_size * LOGIT_BYTES
    tile = min(head_tokens, FUSED_HEAD_TOKENS) * min(shape.vocab_size, FUSED_HEAD_VOCAB)
    hidden_grad = head_tokens * shape.hidden_size * 4
    accumulator = shape.vocab_size * shape.hidden_size * 4 if head_trained else 0
    return tile * FUSED_TILE_BYTES + hidden_grad + accumulator


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
    savers: Savers | None = None,
) -> Memory:
    """Peak training memory.

    static: full fine-tuning = weights + grads + AdamW m, v, each in the load
    dtype: 4·w bytes/param (16 with TRL's float32 load, 8 with bf16; under FSDP with
    mixed precision accelerate upcasts trainable 16-bit weights to fp32: 16);
    LoRA = frozen weights w bytes/param (QLoRA: NF4 for the layers' linear weights)
    + 16 bytes per adapter param (QLoRA: 8, TRL keeps them bf16);
    + w bytes/param for a separate reference model (DPO; GRPO with beta > 0).
    dynamic: activations·tokens + the LM head's working memory per micro-batch (TRL's
    fused head: one tile; unfused: LOGIT_BYTES·vocab·LM-head tokens);
    GRPO takes the larger of that and the generation KV cache, which is freed
    before the backward pass; with a colocated vLLM engine the cache lives in the
    engine's share instead (``reserved``, set by the caller, who knows the GPU).
    """
    savers = savers or Savers()
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
    dynamic = tokens * _activation_bytes_per_token(shape, s, w, savers.liger)
    dynamic += _head_bytes(
        shape, head_tokens, fused=savers.fused_head, head_trained=trainable is None
    )
    if s.method == "grpo" and not savers.vllm_share:
        dynamic = max(dynamic, _kv_cache_bytes(shape, s, prompt_len, w))
    return Memory(static, dynamic, savers=savers)


VLLM_MIN_PROMPT_ROOM = 2048  # prompt tokens the engine's context allows at least


def vllm_context(s: Settings, prompt_len: float) -> int:
    """The ``vllm_max_model_length`` sent: room for long prompts (4 × the mean, at least
    2,048 tokens) plus ``max_completion_length``, rounded up to 256. Unset, TRL takes the
    model's own context (131,072 for Llama 3.1), whose KV cache vLLM refuses to start
    without."""
    room = max(VLLM_MIN_PROMPT_ROOM, 4 * prompt_len) + s.completion_len
    return int(math.ceil(room / 256) * 256)


def vllm_engine_bytes(params: int, shape: ModelShape, s: Settings, prompt_len: float) -> float:
    """What a colocated vLLM engine needs: a 16-bit copy of the weights, a KV cache for the
    larger of one generation batch (per_device_train_batch_size × gradient_accumulation_steps
    sequences of prompt + completion) and one sequence of its whole context, and its own
    activations and CUDA graphs."""
    per_token = shape.num_layers * 2 * shape.kv_dim * 2
    kv = max(_kv_cache_bytes(shape, s, prompt_len, 2), vllm_context(s, prompt_len) * per_token)
    return params * 2 + kv + VLLM_OVERHEAD_GB * GB
