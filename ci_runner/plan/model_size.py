"""A model's parameter count from its weights' metadata, never from its name.

Sources, best first: safetensors headers (exact), the Hub's safetensors metadata
(exact, a few KB of ranged reads), ``config.json`` arithmetic (within ~1% for
decoder-only transformers). The shape (hidden size, layers, vocab...) comes from
``config.json`` when there is one; the memory estimate needs it for activations.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ci_runner.core.hub import is_local_path, local_path

if TYPE_CHECKING:
    from huggingface_hub import HfApi

DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}


def _header(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header: dict[str, Any] = json.loads(handle.read(length))
        return header


def local_tensor_shapes(model_dir: Path) -> dict[str, list[int]]:
    """Tensor name → shape over every ``*.safetensors`` file: reads a few KB only."""
    shapes: dict[str, list[int]] = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        for name, info in _header(file).items():
            if name != "__metadata__":
                shapes[name] = list(info["shape"])
    return shapes


def _numel(shape: list[int]) -> int:
    return math.prod(shape)


@dataclass(frozen=True)
class ModelShape:
    """What activation and KV-cache memory scale with (text decoder only)."""

    hidden_size: int
    num_layers: int
    intermediate_size: int  # per token: MoE counts the routed experts' width
    vocab_size: int
    q_dim: int  # num_attention_heads * head_dim
    kv_dim: int  # num_key_value_heads * head_dim
    active_params: int  # what one token passes through: the FLOPs count; < total for MoE
    model_type: str | None = None  # config.json's (the decoder's): which kernels support it


@dataclass(frozen=True)
class ModelSize:
    params: int
    source: str  # where the count came from, shown in the plan
    shape: ModelShape | None = None


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    """Multimodal configs (Gemma 3, Qwen-VL) nest the decoder under ``text_config``."""
    inner = config.get("text_config")
    return inner if isinstance(inner, dict) and "hidden_size" in inner else config


def _attention_params(c: dict[str, Any], h: int, q: int, kv: int, head_dim: int) -> int:
    """q/k/v/o projections, their biases, and per-head q/k norms where the family has them."""
    total = 2 * h * q + 2 * h * kv
    model_type = str(c.get("model_type", ""))
    if "attention_bias" in c:
        total += (q + 2 * kv + h) if c["attention_bias"] else 0  # Llama-style: all four
    elif model_type.startswith("qwen2"):
        total += q + 2 * kv  # Qwen2 hard-codes bias on q, k, v only
    if model_type.startswith(("qwen3", "gemma3")):
        total += 2 * head_dim  # q_norm, k_norm
    return total


def _mlp_params(c: dict[str, Any], h: int, layer: int) -> tuple[int, int, int]:
    """(total, active, active width) of one layer's MLP; gated (3 matrices) throughout."""
    inter = int(c["intermediate_size"])
    experts = c.get("num_experts") or c.get("num_local_experts")
    step = int(c.get("decoder_sparse_step") or 1)
    dense_layer = layer in (c.get("mlp_only_layers") or []) or (layer + 1) % step != 0
    if not experts or dense_layer:
        return 3 * h * inter, 3 * h * inter, inter
    width = int(c.get("moe_intermediate_size") or inter)
    top_k = int(c.get("num_experts_per_tok") or 2)
    router = h * int(experts)
    shared_width = int(c.get("shared_expert_intermediate_size") or 0)
    shared = 3 * h * shared_width + (h if shared_width else 0)  # + its sigmoid gate
    total = int(experts) * 3 * h * width + router + shared
    active = top_k * 3 * h * width + router + shared
    return total, active, top_k * width + shared_width


def _dims(c: dict[str, Any]) -> tuple[int, int, int, int, int] | None:
    """(hidden, layers, vocab, q_dim, kv_dim), or None when a basic key is missing."""
    try:
        h, layers, vocab = int(c["hidden_size"]), int(c["num_hidden_layers"]), int(c["vocab_size"])
        heads = int(c["num_attention_heads"])
        int(c["intermediate_size"])
    except (KeyError, TypeError, ValueError):
        return None
    kv_heads = int(c.get("num_key_value_heads") or heads)
    head_dim = int(c.get("head_dim") or h // heads)
    return h, layers, vocab, heads * head_dim, kv_heads * head_dim


def _tied(config: dict[str, Any]) -> bool:
    """transformers' default is tied; multimodal configs may say it at either level."""
    return bool(
        _text_config(config).get("tie_word_embeddings", config.get("tie_word_embeddings", True))
    )


def _count(config: dict[str, Any]) -> tuple[int, int, int] | None:
    """(total params, active params, mean active MLP width) from a decoder config."""
    c = _text_config(config)
    dims = _dims(c)
    if dims is None:
        return None
    h, layers, vocab, q, kv = dims
    head_dim = q // int(c["num_attention_heads"])
    attention = _attention_params(c, h, q, kv, head_dim)
    norms = 4 * h if str(c.get("model_type", "")).startswith(("gemma2", "gemma3")) else 2 * h
    total = active = widths = 0
    for layer in range(layers):
        mlp_total, mlp_active, width = _mlp_params(c, h, layer)
        total += attention + norms + mlp_total
        active += attention + norms + mlp_active
        widths += width
    tied = _tied(config)
    embeddings = vocab * h * (1 if tied else 2) + h  # + final norm
    return total + embeddings, active + embeddings, widths // layers


def estimate_from_config(config: dict[str, Any]) -> int | None:
    """Parameter count of a decoder-only transformer from ``config.json`` arithmetic.

    Exact for Llama/Qwen2/Qwen3/Mistral-style layers (embeddings, attention with
    GQA and family-specific biases/norms, gated MLP or MoE experts + router,
    RMSNorm weights, untied lm_head). None when the config lacks the basic keys.
    """
    counted = _count(config)
    return counted[0] if counted else None


def shape_from_config(config: dict[str, Any]) -> ModelShape | None:
    counted = _count(config)
    if counted is None:
        return None
    c = _text_config(config)
    h, layers, vocab, q, kv = _dims(c)  # type: ignore[misc]  # _count checked them
    model_type = c.get("model_type")
    return ModelShape(
        h, layers, counted[2], vocab, q, kv, counted[1], model_type and str(model_type)
    )


def tied_duplicate(shapes: dict[str, list[int]], config: dict[str, Any] | None) -> int:
    """Parameters stored twice: a checkpoint may keep ``lm_head.weight`` although the
    config ties it to the embeddings (Qwen3-0.6B does); in memory it is one tensor."""
    if not config or not _tied(config):
        return 0
    heads = [name for name in shapes if name.endswith("lm_head.weight")]
    if len(heads) != 1 or not any(name.endswith("embed_tokens.weight") for name in shapes):
        return 0
    return _numel(shapes[heads[0]])


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _local_size(model_dir: Path) -> ModelSize | None:
    if not model_dir.is_dir():
        return None
    config = _read_json(model_dir / "config.json")
    shape = shape_from_config(config) if config else None
    shapes = local_tensor_shapes(model_dir)
    if shapes:
        counted = sum(_numel(s) for s in shapes.values()) - tied_duplicate(shapes, config)
        return ModelSize(counted, "safetensors headers", shape)
    estimated = estimate_from_config(config) if config else None
    return ModelSize(estimated, "config.json", shape) if estimated else None


def _hub_config(api: HfApi, repo_id: str) -> dict[str, Any] | None:
    """The repo's config.json (a few KB, cached), or None: the shape is optional."""
    try:
        path = api.hf_hub_download(repo_id, "config.json")
    except Exception:  # any Hub, network or cache failure: plan without the shape
        return None
    return _read_json(Path(path))


def _hub_size(api: HfApi, repo_id: str) -> ModelSize | None:
    config = _hub_config(api, repo_id)
    shape = shape_from_config(config) if config else None
    try:
        metadata = api.get_safetensors_metadata(repo_id)
    except Exception:  # not a safetensors repo, gated, offline...: fall back to config
        metadata = None
    counted = 0
    if metadata is not None:
        shapes = {
            name: list(info.shape)
            for file in metadata.files_metadata.values()
            for name, info in file.tensors.items()
        }
        counted = sum(metadata.parameter_count.values()) - tied_duplicate(shapes, config)
    if counted:
        return ModelSize(counted, "Hub safetensors metadata", shape)
    estimated = estimate_from_config(config) if config else None
    return ModelSize(estimated, "Hub config.json", shape) if estimated else None


def model_size(ref: str, *, root: Path, api: HfApi | None) -> ModelSize | None:
    """Size a local model directory or a Hub model; None when it cannot be known.

    Local paths resolve against ``root`` (the project checkout). Hub ids need
    ``api``; without one (offline) the size is unknown: it is never guessed from
    the name.
    """
    if is_local_path(ref):
        return _local_size(local_path(ref, root))
    return _hub_size(api, ref) if api is not None else None
