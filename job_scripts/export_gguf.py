# /// script
# requires-python = ">=3.10"
# dependencies = [
#     "torch==2.13.0",
#     "transformers==5.23.0",
#     "peft==0.21.2",
#     "huggingface_hub==2.4.0",
#     "llama-cpp-python==0.3.36",
#     "safetensors>=0.4",
#     "sentencepiece>=0.2",
#     "numpy>=2.2.6",
#     "pyyaml>=5.1",
#     "tqdm>=4.27",
#     "requests>=2.25",
# ]
# ///
"""Export one model to GGUF: merge a LoRA adapter, convert, quantize, smoke-test, push.

Runs inside a job (HF Jobs or the local backend) and knows nothing about
experiments: everything comes from one export config (JSON, ``ExportConfig`` in
``ci_runner/runconfig.py``, read into ``job_config.ExportConfig``), given as

    python export_gguf.py --config export.json      # a path, or inline JSON
    CI_RUNNER_RUN_CONFIG=export.json python export_gguf.py

Stages, each printed as it runs:

1. merge    if ``base_model`` is set (or ``model`` is a LoRA adapter folder), load the
            base, apply the adapter, ``merge_and_unload()`` and save into a fresh folder;
2. convert  to GGUF f16 with llama.cpp's ``convert_hf_to_gguf.py``, taken from the
            same pinned llama-cpp-python sdist as the library (see ``ensure_converter``);
3. quantize to each requested type with ``llama_cpp.llama_model_quantize``;
4. smoke    load every file with ``llama_cpp.Llama`` and generate a few tokens;
5. push     if ``hub_repo`` is set: the .gguf files plus a generated model card.

Stage 1 and the main flow live here; the others in the sibling modules
``export_convert.py`` (2), ``export_quantize.py`` (3, 4) and ``export_hub.py`` (5).
It always ends with a single ``CI_RUNNER_SUMMARY {json}`` line (also written to
``<output_dir>/ci_runner_summary.json``). On failure the summary has
``status: "failed"`` and the ``stage`` that failed, and the exit code is non-zero.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import protocol  # helper modules beside this script (job_scripts/), shipped with it
from export_convert import (
    LLAMA_CPP_PYTHON_VERSION,
    StageError,
    convert_to_f16,
    ensure_converter,
    stage,
)
from export_hub import fetch_model, gguf_readme, is_hub_id, push
from export_quantize import FTYPES, quantize_all, smoke_test
from job_config import ExportConfig
from protocol import ConfigError

TOKENIZER_FILES = (
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "vocab.json",
    "merges.txt",
)


# --- export config ----------------------------------------------------------


def validate_export_config(config: ExportConfig) -> ExportConfig:
    """Check what the types alone let through; normalise the quantization names."""
    missing = [name for name in ("model", "output_dir") if not getattr(config, name)]
    if missing:
        raise ConfigError(f"export config has an empty {' and '.join(missing)}")
    quants = [q.upper() for q in config.quantizations or ("Q4_K_M",)]
    unknown = sorted(set(quants) - set(FTYPES))
    if unknown:
        raise ConfigError(f"unsupported quantization(s) {unknown}: use {', '.join(FTYPES)}")
    # keep order, drop repeats
    return dataclasses.replace(config, quantizations=tuple(dict.fromkeys(quants)))


# --- merge --------------------------------------------------------------------


def fresh_dir(path: Path) -> Path:
    """An empty folder: ``save_pretrained`` and the uploader would keep stale files."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def merge_adapter(adapter: str, base: str, out_dir: Path) -> Path:
    """Base + LoRA adapter -> ``merge_and_unload()`` -> a full model in a fresh folder."""
    protocol.quiet_libraries()
    adapter_dir = fetch_model(adapter)
    base_dir = fetch_model(base)
    model = protocol.merge_lora(base_dir, adapter_dir, dtype="auto")
    fresh_dir(out_dir)
    model.save_pretrained(out_dir)
    copy_tokenizer_files(base_dir, adapter_dir, out_dir)
    return out_dir


def copy_tokenizer_files(base_dir: Path, adapter_dir: Path, out_dir: Path) -> None:
    """The tokenizer as stored, not re-saved: the base's files, overlaid by the adapter's.

    Re-saving through transformers 5 drops ``tokenizer.model`` and
    ``added_tokens_decoder``, after which llama.cpp reads ChatML tokens as text. An
    adapter's own tokenizer (TRL may set a chat template) wins, but keeps the
    base's ``added_tokens_decoder`` when it lacks one.
    """
    for folder in (base_dir, adapter_dir):
        for name in TOKENIZER_FILES:
            if (folder / name).is_file():
                shutil.copyfile(folder / name, out_dir / name)
    base_config, merged_config = (
        base_dir / "tokenizer_config.json",
        out_dir / "tokenizer_config.json",
    )
    if base_config.is_file() and merged_config.is_file():
        merged = json.loads(merged_config.read_text(encoding="utf-8"))
        decoder = json.loads(base_config.read_text(encoding="utf-8")).get("added_tokens_decoder")
        if decoder and not merged.get("added_tokens_decoder"):
            merged["added_tokens_decoder"] = decoder
            merged_config.write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")


def adapter_base(model_dir: Path) -> str | None:
    """The base model an adapter folder names, if ``model_dir`` is an adapter."""
    config_path = model_dir / "adapter_config.json"
    if not config_path.is_file():
        return None
    return json.loads(config_path.read_text(encoding="utf-8")).get("base_model_name_or_path")


# --- main ---------------------------------------------------------------------


def file_stem(config: ExportConfig) -> str:
    """``<stem>-<QUANT>.gguf``: the Hub repo's name, the model's, or the experiment's."""
    if config.hub_repo:
        name = re.sub(r"[-_.]gguf$", "", config.hub_repo.split("/")[-1], flags=re.I)
    elif is_hub_id(config.model):
        name = config.model.partition("@")[0].split("/")[-1]
    else:
        name = config.experiment or Path(config.model).name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "model"


def main(config: ExportConfig) -> dict[str, Any]:
    """Merge, convert, quantize, smoke-test and push; return the summary."""
    config = validate_export_config(config)
    output_dir = Path(config.output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    work_dir = fresh_dir(output_dir / "work")
    gguf_dir = fresh_dir(output_dir / "gguf")
    quants = list(config.quantizations)
    timings: dict[str, float] = {}
    stem = file_stem(config)
    model, base = config.model, config.base_model
    named = adapter_base(Path(model)) if not base and Path(model).is_dir() else None
    if named:
        base = named
        print(f"note: {model} is a LoRA adapter; merging it into {base}")
    print(
        f"ci-runner export: {model}{' + ' + base if base else ''} -> {', '.join(quants)}"
        f" | llama-cpp-python {LLAMA_CPP_PYTHON_VERSION}"
        f" | hub={config.hub_repo or 'off'}",
        flush=True,
    )

    with stage("merge" if base else "fetch", timings):
        if base:
            print("[merge] loading base + adapter, merge_and_unload()", flush=True)
            model_dir = merge_adapter(model, base, work_dir / "merged")
        else:
            model_dir = fetch_model(model)
    with stage("convert", timings):
        converter = ensure_converter(LLAMA_CPP_PYTHON_VERSION)
        f16_path = work_dir / f"{stem}-F16.gguf"
        print(f"[convert] {model_dir} -> {f16_path.name}", flush=True)
        convert_to_f16(converter, model_dir, f16_path)
    with stage("quantize", timings):
        files, warnings = quantize_all(converter, f16_path, gguf_dir, stem, quants)
    for warning in warnings:
        print(f"warning: {warning}", flush=True)
    with stage("smoke", timings):
        for entry in files:
            entry["smoke_test"] = smoke_test(gguf_dir / entry["name"])
            print(f"[smoke] {entry['name']}: {entry['smoke_test']!r}", flush=True)

    hub_repo, hub_url, hub_commit = config.hub_repo, None, None
    readme = gguf_readme(
        hub_repo,
        files,
        title=hub_repo.split("/")[-1] if hub_repo else stem,
        model=model if is_hub_id(model) else None,
        base_model=base if is_hub_id(base) else None,
    )
    (gguf_dir / "README.md").write_text(readme, encoding="utf-8")
    if hub_repo:
        with stage("push", timings):
            hub_url, hub_commit = push(
                gguf_dir, hub_repo, config.hub_private, config.run_id or stem
            )
        print(f"[push] {hub_url}", flush=True)

    shutil.rmtree(work_dir, ignore_errors=True)  # the merged copy and f16 are re-creatable
    return {
        "status": "completed",
        "experiment": config.experiment,
        "run_id": config.run_id,
        "model": model,
        "base_model": base,
        "merged": bool(base),
        "files": files,
        "gguf_dir": str(gguf_dir),
        "hub_repo": hub_repo,
        "hub_url": hub_url,
        "hub_commit": hub_commit,
        "smoke_test": files[0]["smoke_test"] if files else None,
        "warnings": warnings,
        "llama_cpp_python": LLAMA_CPP_PYTHON_VERSION,
        "timings_s": timings,
        "output_dir": str(output_dir),
    }


def _stage_of(exc: BaseException, config: ExportConfig | None) -> dict[str, Any]:
    return {"stage": getattr(exc, "stage", "config" if isinstance(exc, ConfigError) else None)}


if __name__ == "__main__":
    sys.exit(
        protocol.run_job(
            main,
            None,
            parse=ExportConfig.from_json,
            description=__doc__.splitlines()[0],
            reported=("model", "hub_repo"),
            expected=(ConfigError, StageError),
            on_failure=_stage_of,
        )
    )
