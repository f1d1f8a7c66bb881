"""The export's Hub side: models fetched from the Hub, the GGUF repo's card, the push.

Standard library only at import; ``huggingface_hub`` is imported inside the
functions. Part of ``export_gguf.py`` (stage 5, push, and fetching what it exports).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from export_convert import LLAMA_CPP_PYTHON_VERSION
from export_quantize import human_size
from protocol import ConfigError

# owner/name, optionally @revision (a branch, tag or commit, as ci_runner.core.hub reads it)
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(?:@[A-Za-z0-9][A-Za-z0-9._/-]{0,127})?")


def is_hub_id(value: str | None) -> bool:
    """A Hub repo id (``owner/name``, or ``owner/name@revision``) rather than a folder on
    this machine."""
    if not value:
        return False
    return not Path(value).exists() and bool(_HUB_ID.fullmatch(value))


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
        if not value or value.startswith(("/", ".", "~")) or not _HUB_ID.fullmatch(value):
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
    lines += ["", "## Usage", "", *_usage(repo_id, tag, first)]
    return "\n".join(lines) + "\n"


# --- push -------------------------------------------------------------------


def _usage(repo_id: str | None, tag: str, first: str) -> list[str]:
    """How to run the files: from the Hub repo by tag when pushed, else the local file."""
    if repo_id:
        intro = [f"Pick a file by its quantization tag (here `{tag}`):", ""]
        shell = [
            f"llama-server -hf {repo_id}:{tag}",
            f'llama-cli -hf {repo_id}:{tag} -p "Hello"',
            f"ollama run hf.co/{repo_id}:{tag}",
        ]
        load = f'llm = Llama.from_pretrained(repo_id="{repo_id}", filename="{first}")'
    else:
        intro = []
        shell = [f"llama-server -m {first}", f'llama-cli -m {first} -p "Hello"']
        load = f'llm = Llama(model_path="{first}")'
    python = ["from llama_cpp import Llama", "", load]
    return [
        *intro,
        "```bash",
        *shell,
        "```",
        "",
        "From Python (llama-cpp-python):",
        "",
        "```python",
        *python,
        "```",
    ]


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
