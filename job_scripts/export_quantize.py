"""The export's quantize and smoke-test stages, through llama-cpp-python.

Standard library only at import; ``llama_cpp`` and the converter's ``gguf-py`` are
imported inside the functions. Part of ``export_gguf.py`` (stages 3, quantize, and
4, smoke): one ``<stem>-<QUANT>.gguf`` per requested type (:func:`quantize_all`),
each checked for the tensor type it is named after, then loaded and asked for a few
tokens (:func:`smoke_test`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from export_convert import StageError, sha256_file

# Requested name -> llama_ftype (llama.h). F16 is the converter's own output.
FTYPES = {
    "F16": 1,
    "Q4_0": 2,
    "Q8_0": 7,
    "Q4_K_S": 14,
    "Q4_K_M": 15,
    "Q5_K_S": 16,
    "Q5_K_M": 17,
    "Q6_K": 18,
}
# The ggml tensor type a quantization is named after: at least one tensor must have it,
# or llama.cpp silently fell back (it does for rows not divisible by the block size).
MAIN_TENSOR_TYPE = {
    "F16": "F16",
    "Q4_0": "Q4_0",
    "Q8_0": "Q8_0",
    "Q4_K_S": "Q4_K",
    "Q4_K_M": "Q4_K",
    "Q5_K_S": "Q5_K",
    "Q5_K_M": "Q5_K",
    "Q6_K": "Q6_K",
}
SMOKE_PROMPT = "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"
SMOKE_TOKENS = 8


def quantize(source: Path, target: Path, quantization: str) -> None:
    """``llama_model_quantize`` with default params but the requested ftype."""
    import llama_cpp

    quiet_llama_cpp()
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[quantization]
    params.nthread = os.cpu_count() or 1
    code = llama_cpp.llama_model_quantize(
        str(source).encode(), str(target).encode(), ctypes.byref(params)
    )
    if code != 0 or not target.is_file():
        raise StageError("quantize", f"llama_model_quantize to {quantization} returned {code}")


_LOG_CALLBACK: Any = None  # the ctypes callback must outlive every llama.cpp call


def quiet_llama_cpp() -> None:
    """Show llama.cpp's warnings and errors, not its per-tensor INFO lines.

    Filtering through the ``llama-cpp-python`` logger does not work in 0.3.36: its
    level table predates ggml's enum (NONE, DEBUG, INFO, WARN, ERROR, CONT = 0..5),
    so INFO passes as WARNING and ERROR as DEBUG. Install a callback that reads the
    enum itself; a CONT piece follows the message it continues.
    """
    global _LOG_CALLBACK
    if _LOG_CALLBACK is not None:
        return
    import llama_cpp

    shown = [False]

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        if level != 5:  # GGML_LOG_LEVEL_CONT
            shown[0] = level in (3, 4)  # GGML_LOG_LEVEL_WARN, GGML_LOG_LEVEL_ERROR
        if shown[0]:
            sys.stderr.write(text.decode("utf-8", "replace"))
            sys.stderr.flush()

    _LOG_CALLBACK = callback
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))


def tensor_types(converter: Path, path: Path) -> dict[str, int]:
    """How many tensors of each ggml type the file holds, read with the vendored gguf-py."""
    gguf_py = str(converter / "gguf-py")
    if gguf_py not in sys.path:
        sys.path.insert(0, gguf_py)
    from gguf import GGUFReader

    counts: dict[str, int] = {}
    for tensor in GGUFReader(str(path)).tensors:
        name = tensor.tensor_type.name
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def smoke_test(path: Path) -> str:
    """Load the file in llama.cpp and greedily generate a few tokens."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=256, verbose=False, seed=0)
    try:
        output = llm.create_completion(SMOKE_PROMPT, max_tokens=SMOKE_TOKENS, temperature=0.0)
        assert isinstance(output, dict)  # one response: stream is off
        return output["choices"][0]["text"]
    finally:
        with contextlib.suppress(Exception):
            llm.close()


def quantize_all(
    converter: Path, f16_path: Path, gguf_dir: Path, stem: str, quants: list[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """One ``<stem>-<QUANT>.gguf`` per requested type, with sizes, hashes, tensor types."""
    files: list[dict[str, Any]] = []
    warnings: list[str] = []
    for quant in quants:
        target = gguf_dir / f"{stem}-{quant}.gguf"
        if quant == "F16":
            shutil.copyfile(f16_path, target)
        else:
            quantize(f16_path, target, quant)
        types = tensor_types(converter, target)
        if MAIN_TENSOR_TYPE[quant] not in types:
            warnings.append(
                f"{target.name}: no {MAIN_TENSOR_TYPE[quant]} tensors ({types}); llama.cpp "
                "fell back to other types, usually because rows are too narrow"
            )
        entry = {
            "name": target.name,
            "quantization": quant,
            "bytes": target.stat().st_size,
            "sha256": sha256_file(target),
            "tensor_types": types,
        }
        files.append(entry)
        print(
            f"[quantize] {target.name}: {human_size(entry['bytes'])} "
            + " ".join(f"{k}={v}" for k, v in types.items()),
            flush=True,
        )
    return files, warnings


def human_size(n_bytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.2f} {unit}"
    return f"{n_bytes} B"
