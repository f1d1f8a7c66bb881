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
``ci_runner/runconfig.py``), given as

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

It always ends with a single ``CI_RUNNER_SUMMARY {json}`` line (also written to
``<output_dir>/ci_runner_summary.json``). On failure the summary has
``status: "failed"`` and the ``stage`` that failed, and the exit code is non-zero.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import protocol  # a helper module beside this script, shipped with it
from protocol import ConfigError

# The converter must match the llama.cpp that llama-cpp-python compiled: both come
# from this one sdist. Bump the version here and in the PEP 723 header together, and
# record the new sdist's sha256 (PyPI's simple index lists it).
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
SDIST_SHA256 = {
    "0.3.36": "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e",
}
# Only these parts of vendor/llama.cpp are needed to run convert_hf_to_gguf.py.
CONVERTER_PARTS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "models/templates/")
CACHE_ENV = "CI_RUNNER_CACHE_DIR"  # default: $XDG_CACHE_HOME/ci-runner or ~/.cache/ci-runner
SDIST_ENV = "CI_RUNNER_LLAMA_CPP_SDIST"  # optional: a local copy of the sdist tarball

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
SMOKE_PROMPT = "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"
SMOKE_TOKENS = 8
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class StageError(RuntimeError):
    """A stage failed; ``stage`` tells the runner which one."""

    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage


@contextlib.contextmanager
def stage(name: str):
    """Label any crash inside the block with the stage it happened in."""
    try:
        yield
    except (ConfigError, StageError):
        raise
    except Exception as exc:
        raise StageError(name, f"{type(exc).__name__}: {exc}") from exc


# --- export config ----------------------------------------------------------


def validate_export_config(config: dict[str, Any]) -> dict[str, Any]:
    """Check the fields this script needs; normalise the quantization names."""
    missing = [key for key in ("model", "output_dir") if not config.get(key)]
    if missing:
        raise ConfigError(f"export config lacks {missing}")
    quants = [str(q).upper() for q in (config.get("quantizations") or ["Q4_K_M"])]
    unknown = sorted(set(quants) - set(FTYPES))
    if unknown:
        raise ConfigError(f"unsupported quantization(s) {unknown}: use {', '.join(FTYPES)}")
    config["quantizations"] = list(dict.fromkeys(quants))  # keep order, drop repeats
    return config


# --- the converter, from the pinned sdist -----------------------------------


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ci-runner"


def ensure_converter(version: str = LLAMA_CPP_PYTHON_VERSION) -> Path:
    """The folder holding ``convert_hf_to_gguf.py``, ``conversion/`` and ``gguf-py/``.

    The pip-installed llama_cpp package ships only the compiled library, not the
    converter, so the converter comes from the *same* sdist, pinned by version and
    sha256: it is downloaded once (from the pip index, as pip would), checked, and
    only the converter's parts are kept in ``<cache>/llama.cpp-<version>/``.
    Run it with that folder's ``gguf-py`` first on the path, never PyPI's older ``gguf``.
    """
    target = cache_root() / f"llama.cpp-{version}"
    if (target / "convert_hf_to_gguf.py").is_file() and (target / ".complete").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".llama.cpp-{version}-", dir=target.parent) as tmp:
        sdist = _obtain_sdist(version, Path(tmp))
        staging = Path(tmp) / "converter"
        _extract_converter(sdist, version, staging)
        (staging / ".complete").write_text(_sha256(sdist) + "\n", encoding="utf-8")
        try:
            staging.rename(target)  # atomic: a concurrent run either wins or finds ours
        except OSError:
            if not (target / ".complete").is_file():
                shutil.rmtree(target, ignore_errors=True)
                staging.rename(target)
    return target


def _obtain_sdist(version: str, work: Path) -> Path:
    """The sdist tarball: a local copy if given, else from the package index."""
    expected = SDIST_SHA256.get(version)
    local = os.environ.get(SDIST_ENV)
    candidates = []
    if local:
        candidates.append(("local copy", lambda: Path(local)))
    candidates.append(("package index", lambda: _download_sdist_simple(version, work)))
    candidates.append(("pip download", lambda: _download_sdist_pip(version, work)))
    errors = []
    for how, get in candidates:
        try:
            path = get()
        except Exception as exc:  # try the next source; report all if none works
            errors.append(f"{how}: {exc}")
            continue
        digest = _sha256(path)
        if expected and digest != expected:
            errors.append(f"{how}: sha256 {digest} is not the pinned {expected}")
            continue
        print(f"converter: llama-cpp-python {version} sdist from {how} ({digest[:12]})")
        return path
    raise StageError(
        "convert", f"cannot obtain llama-cpp-python {version} sdist: " + "; ".join(errors)
    )


def _index_url() -> str:
    for name in ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL"):
        if os.environ.get(name):
            return os.environ[name].rstrip("/")
    return "https://pypi.org/simple"


def _download_sdist_simple(version: str, work: Path) -> Path:
    """Fetch the sdist through the index's JSON simple API (PEP 691), hash-checked."""
    filename = f"llama_cpp_python-{version}.tar.gz"
    request = urllib.request.Request(
        f"{_index_url()}/llama-cpp-python/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        files = json.load(response)["files"]
    entry = next((f for f in files if f["filename"] == filename), None)
    if entry is None:
        raise FileNotFoundError(f"{filename} is not on {_index_url()}")
    published = entry.get("hashes", {}).get("sha256")
    pinned = SDIST_SHA256.get(version)
    if pinned and published and published != pinned:
        raise ValueError(f"the index lists sha256 {published}, pinned is {pinned}")
    path = work / filename
    with urllib.request.urlopen(entry["url"], timeout=300) as response, path.open("wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)
    if published and _sha256(path) != published:
        raise ValueError("download does not match the index's sha256")
    return path


def _download_sdist_pip(version: str, work: Path) -> Path:
    """Fallback: let pip resolve the pinned sdist (honours pip.conf mirrors)."""
    command = [sys.executable, "-m", "pip", "download", f"llama-cpp-python=={version}"]
    command += ["--no-deps", "--no-binary", ":all:", "--quiet", "--dest", str(work)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"pip exited with {result.returncode}")
    return next(work.glob(f"llama_cpp_python-{version}.tar.gz"))


def _extract_converter(sdist: Path, version: str, dest: Path) -> None:
    """Copy only the converter's parts out of ``vendor/llama.cpp/`` (and its licence)."""
    prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
    wanted = (*CONVERTER_PARTS, "LICENSE")
    count = 0
    with tarfile.open(sdist, "r:gz") as archive:
        for member in archive:
            if not member.name.startswith(prefix) or not member.isfile():
                continue
            relative = member.name[len(prefix) :]
            if not any(relative == w or relative.startswith(w) for w in wanted if w):
                continue
            if ".." in Path(relative).parts:
                continue
            target = dest / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.extractfile(member) as source, target.open("wb") as out:
                shutil.copyfileobj(source, out)
            count += 1
    if not (dest / "convert_hf_to_gguf.py").is_file() or not (dest / "gguf-py").is_dir():
        raise StageError("convert", f"{sdist.name} has no vendor/llama.cpp converter")
    print(f"converter: kept {count} files in {dest.name}", flush=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- merge --------------------------------------------------------------------


def is_hub_id(value: str | None) -> bool:
    """A Hub repo id (``owner/name``) rather than a folder on this machine."""
    return bool(value) and not Path(value).exists() and bool(_HUB_ID.match(value))


def fetch_model(source: str, patterns: list[str] | None = None) -> Path:
    """A local folder for ``source``: itself, or a Hub snapshot of the needed files."""
    if Path(source).is_dir():
        return Path(source)
    if not is_hub_id(source):
        raise ConfigError(f"{source} is neither a folder nor a Hub repo id")
    from huggingface_hub import snapshot_download

    repo, _, revision = source.partition("@")
    patterns = patterns or ["*.json", "*.safetensors", "*.jinja", "*.txt", "tokenizer.model"]
    return Path(snapshot_download(repo, revision=revision or None, allow_patterns=patterns))


def fresh_dir(path: Path) -> Path:
    """An empty folder: ``save_pretrained`` and the uploader would keep stale files."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def merge_adapter(adapter: str, base: str, out_dir: Path) -> Path:
    """Base + LoRA adapter -> ``merge_and_unload()`` -> a full model in a fresh folder."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    quiet_libraries()
    adapter_dir = fetch_model(adapter)
    base_dir = fetch_model(base)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype="auto")
    model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
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


def quiet_libraries() -> None:
    """Progress bars and deprecation chatter turn job logs into noise."""
    import warnings

    import transformers
    from huggingface_hub.utils import disable_progress_bars

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_warning()
    disable_progress_bars()
    # peft still calls the pre-5.23 gradient-checkpointing names; nothing to act on.
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*", category=FutureWarning)


def adapter_base(model_dir: Path) -> str | None:
    """The base model an adapter folder names, if ``model_dir`` is an adapter."""
    config_path = model_dir / "adapter_config.json"
    if not config_path.is_file():
        return None
    return json.loads(config_path.read_text(encoding="utf-8")).get("base_model_name_or_path")


# --- convert, quantize, inspect ----------------------------------------------


def convert_to_f16(converter: Path, model_dir: Path, outfile: Path) -> None:
    """Run the vendored ``convert_hf_to_gguf.py`` with the vendored ``gguf-py``."""
    env = dict(os.environ)
    env.pop("NO_LOCAL_GGUF", None)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(converter / "gguf-py")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    command = [sys.executable, str(converter / "convert_hf_to_gguf.py"), str(model_dir)]
    command += ["--outfile", str(outfile), "--outtype", "f16"]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    # Keep what a terminal would show: the last frame of each progress-bar line.
    log = [line.split("\r")[-1] for line in (result.stdout + result.stderr).split("\n")]
    log = [line for line in log if line.strip()]
    if result.returncode != 0 or not outfile.is_file():
        tail = "\n".join(log[-40:])
        print(tail, file=sys.stderr)
        last = log[-1] if log else f"exit code {result.returncode}"
        raise StageError("convert", f"convert_hf_to_gguf.py failed: {last}")
    done = [line for line in log if "successfully exported" in line] or log[-1:]
    print(f"  {done[-1].strip()}", flush=True)


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

    @llama_cpp.llama_log_callback
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
        return output["choices"][0]["text"]
    finally:
        with contextlib.suppress(Exception):
            llm.close()


# --- model card ---------------------------------------------------------------


def human_size(n_bytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.2f} {unit}"
    return f"{n_bytes} B"


def gguf_readme(
    repo_id: str | None,
    files: list[dict[str, Any]],
    *,
    title: str | None = None,
    model: str | None = None,
    base_model: str | None = None,
    converter_version: str = LLAMA_CPP_PYTHON_VERSION,
) -> str:
    """The model card for a GGUF repo. Pure: the same inputs give the same text.

    ``files`` are summary entries (``name``, ``quantization``, ``bytes``, ``sha256``).
    ``model`` is what was exported (a full model, or the adapter when ``base_model``
    is set); either is linked only when it is a Hub id, never a local path. Without
    ``repo_id`` (nothing pushed) the card links the files relatively and shows local use.
    """

    def hub(value: str | None) -> str | None:
        if not value or value.startswith(("/", ".", "~")) or not _HUB_ID.match(value):
            return None
        return value.partition("@")[0]

    def link(repo: str) -> str:
        return f"[{repo}](https://huggingface.co/{repo})"

    model_id, base_id = hub(model), hub(base_model)
    parent = base_id or model_id
    front = ["---"]
    if parent:
        front.append(f"base_model: {parent}")
        if not base_id:
            front.append("base_model_relation: quantized")
    front += ["library_name: gguf", "tags:", "- gguf", "- llama.cpp", "- ci-runner", "---"]

    if model_id and base_id:
        origin = f"the LoRA adapter {link(model_id)} merged into {link(base_id)}"
    elif base_id:
        origin = f"a LoRA adapter merged into {link(base_id)}"
    elif model_id:
        origin = link(model_id)
    else:
        origin = "a fine-tuned model"
    heading = title or (repo_id.split("/")[-1] if repo_id else "GGUF export")
    lines = [
        *front,
        "",
        f"# {heading}",
        "",
        f"GGUF files of {origin}, for llama.cpp and the tools built on it.",
        "Converted and quantized with the llama.cpp vendored in llama-cpp-python "
        f"{converter_version}.",
        "",
        "| File | Quantization | Size | SHA256 |",
        "|---|---|---|---|",
    ]
    for entry in files:
        name = entry["name"]
        url = f"https://huggingface.co/{repo_id}/blob/main/{name}" if repo_id else name
        lines.append(
            f"| [{name}]({url}) | {entry['quantization']} | "
            f"{human_size(int(entry['bytes']))} | `{entry['sha256'][:16]}` |"
        )
    tag = files[0]["quantization"] if files else "Q4_K_M"
    first = files[0]["name"] if files else f"model-{tag}.gguf"
    lines += ["", "## Usage", ""]
    if repo_id:
        lines += [
            f"Pick a file by its quantization tag (here `{tag}`):",
            "",
            "```bash",
            f"llama-server -hf {repo_id}:{tag}",
            f'llama-cli -hf {repo_id}:{tag} -p "Hello"',
            f"ollama run hf.co/{repo_id}:{tag}",
            "```",
            "",
            "From Python (llama-cpp-python):",
            "",
            "```python",
            "from llama_cpp import Llama",
            "",
            f'llm = Llama.from_pretrained(repo_id="{repo_id}", filename="{first}")',
            "```",
        ]
    else:
        lines += [
            "```bash",
            f"llama-server -m {first}",
            f'llama-cli -m {first} -p "Hello"',
            "```",
            "",
            "From Python (llama-cpp-python):",
            "",
            "```python",
            "from llama_cpp import Llama",
            "",
            f'llm = Llama(model_path="{first}")',
            "```",
        ]
    return "\n".join(lines) + "\n"


# --- push -------------------------------------------------------------------


def push(folder: Path, repo_id: str, private: bool, run_label: str) -> tuple[str, str]:
    """Create the repo if needed and commit the .gguf files and the card: (url, commit)."""
    from huggingface_hub import HfApi

    api = HfApi()
    url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    commit = api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type="model",
        allow_patterns=["*.gguf", "README.md"],
        commit_message=f"GGUF export ({run_label})",
    )
    return str(url), commit.oid


# --- main ---------------------------------------------------------------------


def file_stem(config: dict[str, Any]) -> str:
    """``<stem>-<QUANT>.gguf``: the Hub repo's name, the model's, or the experiment's."""
    if config.get("hub_repo"):
        name = re.sub(r"[-_.]gguf$", "", config["hub_repo"].split("/")[-1], flags=re.I)
    elif is_hub_id(config["model"]):
        name = config["model"].partition("@")[0].split("/")[-1]
    else:
        name = config.get("experiment") or Path(config["model"]).name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "model"


def export(config: dict[str, Any]) -> dict[str, Any]:
    """Merge, convert, quantize, smoke-test and push; return the summary."""
    output_dir = Path(config["output_dir"]).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    work_dir = fresh_dir(output_dir / "work")
    gguf_dir = fresh_dir(output_dir / "gguf")
    quants: list[str] = config["quantizations"]
    timings: dict[str, float] = {}
    stem = file_stem(config)
    model, base = config["model"], config.get("base_model")
    if not base and Path(model).is_dir() and adapter_base(Path(model)):
        base = adapter_base(Path(model))
        print(f"note: {model} is a LoRA adapter; merging it into {base}")
    print(
        f"ci-runner export: {model}{' + ' + base if base else ''} -> {', '.join(quants)}"
        f" | llama-cpp-python {LLAMA_CPP_PYTHON_VERSION}"
        f" | hub={config.get('hub_repo') or 'off'}",
        flush=True,
    )

    started = time.monotonic()
    with stage("merge" if base else "fetch"):
        if base:
            print("[merge] loading base + adapter, merge_and_unload()", flush=True)
            model_dir = merge_adapter(model, base, work_dir / "merged")
        else:
            model_dir = fetch_model(model)
    timings["merge" if base else "fetch"] = round(time.monotonic() - started, 2)

    started = time.monotonic()
    with stage("convert"):
        converter = ensure_converter(LLAMA_CPP_PYTHON_VERSION)
        f16_path = work_dir / f"{stem}-F16.gguf"
        print(f"[convert] {model_dir} -> {f16_path.name}", flush=True)
        convert_to_f16(converter, model_dir, f16_path)
    timings["convert"] = round(time.monotonic() - started, 2)

    started = time.monotonic()
    with stage("quantize"):
        files, warnings = quantize_all(converter, f16_path, gguf_dir, stem, quants)
    timings["quantize"] = round(time.monotonic() - started, 2)
    for warning in warnings:
        print(f"warning: {warning}", flush=True)

    started = time.monotonic()
    for entry in files:
        with stage("smoke"):
            entry["smoke_test"] = smoke_test(gguf_dir / entry["name"])
        print(f"[smoke] {entry['name']}: {entry['smoke_test']!r}", flush=True)
    timings["smoke"] = round(time.monotonic() - started, 2)

    hub_repo, hub_url, hub_commit = config.get("hub_repo"), None, None
    readme = gguf_readme(
        hub_repo,
        files,
        title=hub_repo.split("/")[-1] if hub_repo else stem,
        model=model if is_hub_id(model) else None,
        base_model=base if is_hub_id(base) else None,
    )
    (gguf_dir / "README.md").write_text(readme, encoding="utf-8")
    if hub_repo:
        started = time.monotonic()
        with stage("push"):
            private = config.get("hub_private", True)
            hub_url, hub_commit = push(gguf_dir, hub_repo, private, config.get("run_id") or stem)
        timings["push"] = round(time.monotonic() - started, 2)
        print(f"[push] {hub_url}", flush=True)

    shutil.rmtree(work_dir, ignore_errors=True)  # the merged copy and f16 are re-creatable
    return {
        "status": "completed",
        "experiment": config.get("experiment"),
        "run_id": config.get("run_id"),
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
            "sha256": _sha256(target),
            "tensor_types": types,
        }
        files.append(entry)
        print(
            f"[quantize] {target.name}: {human_size(entry['bytes'])} "
            + " ".join(f"{k}={v}" for k, v in types.items()),
            flush=True,
        )
    return files, warnings


def _stage_of(exc: BaseException, config: dict[str, Any]) -> dict[str, Any]:
    return {"stage": getattr(exc, "stage", "config" if isinstance(exc, ConfigError) else None)}


def main(argv: list[str] | None = None) -> int:
    return protocol.run_job(
        lambda config: export(validate_export_config(config)),
        argv,
        description=__doc__.splitlines()[0],
        reported=("model", "hub_repo"),
        expected=(ConfigError, StageError),
        on_failure=_stage_of,
    )


if __name__ == "__main__":
    sys.exit(main())
