"""job_scripts/export_gguf.py: merge, convert, quantize and smoke-test on the tiny Llama.

The end-to-end tests need llama-cpp-python (the ``gguf`` extra) and skip without it.
The first run also fetches the pinned llama-cpp-python sdist once, for its converter,
into ``~/.cache/ci-runner`` (or ``$CI_RUNNER_CACHE_DIR``).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ci_runner.runconfig import SUMMARY_PREFIX, ExportConfig
from tests.hub_server import COMMIT, FakeHub

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "job_scripts" / "export_gguf.py"
CHATML_TEXT = (
    "<|im_start|>system\nYou are a concise assistant.<|im_end|>\n"
    "<|im_start|>user\nWhat is 7 * 3?<|im_end|>\n"
    "<|im_start|>assistant\n7 * 3 = 21.<|im_end|>\n"
)


if str(SCRIPT.parent) not in sys.path:  # like a job: the script's siblings are top-level modules
    sys.path.insert(0, str(SCRIPT.parent))

import export_convert  # noqa: E402  (they import only the stdlib at the top)
import export_hub  # noqa: E402


def run_export(
    config: dict, tmp_path: Path, env: dict | None = None
) -> tuple[subprocess.CompletedProcess, dict]:
    """Run the script as the runner would, and parse its summary line."""
    path = tmp_path / "export.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith(SUMMARY_PREFIX)]
    assert lines, f"no summary line\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.stdout.rstrip().splitlines()[-1].startswith(SUMMARY_PREFIX), "summary not last"
    return result, json.loads(lines[-1][len(SUMMARY_PREFIX) :])


def export_config(output_dir: Path, model: Path | str, **fields) -> dict:
    """A validated ExportConfig, so the tests hold the script to the runner's contract."""
    config = ExportConfig(
        experiment="tiny-export",
        run_id="r1",
        model=str(model),
        output_dir=str(output_dir),
        **fields,
    )
    return config.model_dump(mode="json")


def need_llama_cpp() -> None:
    """Skip without llama-cpp-python, or without its converter (first run, offline)."""
    pytest.importorskip("llama_cpp")
    try:
        export_convert.ensure_converter()
    except export_convert.StageError as exc:
        pytest.skip(f"no llama.cpp converter: {exc}")


def gguf_tensors(path: Path) -> dict:
    """name -> ReaderTensor, read with the vendored gguf-py (not PyPI's older ``gguf``)."""
    gguf_py = str(export_convert.ensure_converter() / "gguf-py")
    if gguf_py not in sys.path:
        sys.path.insert(0, gguf_py)
    from gguf import GGUFReader

    return {tensor.name: tensor for tensor in GGUFReader(str(path)).tensors}


# --- model card (pure) --------------------------------------------------------

FILES = [
    {"name": "tiny-Q4_K_M.gguf", "quantization": "Q4_K_M", "bytes": 3_456_789, "sha256": "a" * 64},
    {"name": "tiny-Q8_0.gguf", "quantization": "Q8_0", "bytes": 987, "sha256": "b" * 64},
]


def test_readme_lists_files_sizes_and_usage():
    text = export_hub.gguf_readme(
        "acme/tiny-GGUF", FILES, model="acme/tiny-lora", base_model="meta/base-1B"
    )
    assert text.startswith("---\nbase_model: meta/base-1B\n")
    assert "- gguf" in text
    assert "[acme/tiny-lora](https://huggingface.co/acme/tiny-lora)" in text
    assert "[meta/base-1B](https://huggingface.co/meta/base-1B)" in text
    assert (
        "| [tiny-Q4_K_M.gguf](https://huggingface.co/acme/tiny-GGUF/blob/main/tiny-Q4_K_M.gguf)"
        " | Q4_K_M | 3.46 MB | `aaaaaaaaaaaaaaaa` |"
    ) in text
    assert "| Q8_0 | 987 B |" in text
    assert "llama-server -hf acme/tiny-GGUF:Q4_K_M" in text
    assert 'llama-cli -hf acme/tiny-GGUF:Q4_K_M -p "Hello"' in text
    assert 'filename="tiny-Q4_K_M.gguf"' in text
    assert export_convert.LLAMA_CPP_PYTHON_VERSION in text
    # Pure: same inputs, same text.
    assert text == export_hub.gguf_readme(
        "acme/tiny-GGUF", FILES, model="acme/tiny-lora", base_model="meta/base-1B"
    )


def test_readme_quantized_full_model_and_local_paths():
    full = export_hub.gguf_readme("acme/x-GGUF", FILES[:1], model="acme/x")
    assert "base_model: acme/x\nbase_model_relation: quantized\n" in full
    local = export_hub.gguf_readme(
        "acme/x-GGUF", FILES[:1], model="/tmp/run/output", base_model="./fixtures/tiny"
    )
    assert "base_model:" not in local  # local paths are never Hub links
    assert "/tmp/run/output" not in local and "fixtures/tiny" not in local


def test_readme_without_hub_repo_shows_local_use():
    text = export_hub.gguf_readme(None, FILES, title="tiny-export")
    assert "# tiny-export\n" in text
    assert "| [tiny-Q4_K_M.gguf](tiny-Q4_K_M.gguf) | Q4_K_M |" in text
    assert "llama-server -m tiny-Q4_K_M.gguf" in text
    assert "-hf" not in text and "huggingface.co" not in text


def test_hub_ids_may_pin_a_revision(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no folder by these names here
    sha = "0123456789abcdef0123456789abcdef01234567"
    for ok in ("acme/tiny", f"acme/tiny@{sha}", "acme/tiny@v1.0", "acme/tiny@refs/pr/1"):
        assert export_hub.is_hub_id(ok), ok
    for bad in ("tiny", "acme/tiny@", "acme@main", "acme/tiny@-x", "acme/tiny@a@b", "/a/b"):
        assert not export_hub.is_hub_id(bad), bad
    card = export_hub.gguf_readme("acme/x-GGUF", FILES[:1], model=f"acme/x@{sha}")
    assert "base_model: acme/x\n" in card and sha not in card  # the card links the repo


def test_sdist_pin_matches_version():
    assert export_convert.LLAMA_CPP_PYTHON_VERSION in export_convert.SDIST_SHA256
    header = SCRIPT.read_text(encoding="utf-8").split("# ///", 2)[1]
    assert f'"llama-cpp-python=={export_convert.LLAMA_CPP_PYTHON_VERSION}"' in header


def test_bad_quantization_fails_with_summary(tmp_path):
    config = export_config(tmp_path / "out", tmp_path, quantizations=["Q4_K_M", "Q3_XYZ"])
    result, summary = run_export(config, tmp_path)
    assert result.returncode == 1
    assert summary["status"] == "failed" and summary["stage"] == "config"
    assert "Q3_XYZ" in summary["error"]
    saved = json.loads((tmp_path / "out" / "ci_runner_summary.json").read_text())
    assert saved == summary


HUB_REPO = "ci-user/tiny-export-GGUF"


# --- end to end on the tiny model ---------------------------------------------


@pytest.fixture(scope="module")
def q4_export(tiny_fixtures, tmp_path_factory):
    """The tiny model exported once to Q4_K_M and pushed to a loopback Hub."""
    need_llama_cpp()
    tmp = tmp_path_factory.mktemp("gguf-q4")
    hub = FakeHub()
    try:
        config = export_config(tmp / "out", tiny_fixtures.model, hub_repo=HUB_REPO)
        env = {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_loopback"}
        result, summary = run_export(config, tmp, env)
    finally:
        hub.close()
    assert result.returncode == 0, result.stderr[-4000:]
    return summary, hub


@pytest.mark.training
def test_export_q4_k_m_summary(q4_export):
    summary, _ = q4_export
    assert summary["status"] == "completed"
    assert summary["merged"] is False and summary["warnings"] == []
    (entry,) = summary["files"]
    assert entry["name"] == "tiny-export-Q4_K_M.gguf"  # hub repo name, less "-GGUF"
    assert entry["quantization"] == "Q4_K_M"
    path = Path(summary["gguf_dir"]) / entry["name"]
    assert path.is_file() and path.stat().st_size == entry["bytes"]
    assert export_convert.sha256_file(path) == entry["sha256"]
    assert isinstance(summary["smoke_test"], str)
    assert not (Path(summary["output_dir"]) / "work").exists()
    readme = (Path(summary["gguf_dir"]) / "README.md").read_text(encoding="utf-8")
    assert entry["name"] in readme


@pytest.mark.training
def test_export_pushes_files_and_card(q4_export):
    summary, hub = q4_export
    assert summary["hub_repo"] == HUB_REPO
    assert summary["hub_url"] == f"{hub.url}/{HUB_REPO}"  # the client's endpoint, here loopback
    assert summary["hub_commit"] == COMMIT
    (create,) = hub.posts("/api/repos/create")
    request = json.loads(create)
    assert (request["organization"], request["name"]) == ("ci-user", "tiny-export-GGUF")
    assert request["visibility"] == "private"  # hub_private defaults to True
    (commit,) = hub.posts(f"/api/models/{HUB_REPO}/commit/main")
    lines = [json.loads(line) for line in commit.decode().splitlines() if line.strip()]
    files = {
        line["value"]["path"]: base64.b64decode(line["value"]["content"])
        for line in lines
        if line["key"] == "file"
    }
    assert sorted(files) == ["README.md", "tiny-export-Q4_K_M.gguf"]
    gguf_dir = Path(summary["gguf_dir"])
    assert files["tiny-export-Q4_K_M.gguf"] == (gguf_dir / "tiny-export-Q4_K_M.gguf").read_bytes()
    card = files["README.md"].decode()
    assert f"llama-server -hf {HUB_REPO}:Q4_K_M" in card
    assert f"llama-cli -hf {HUB_REPO}:Q4_K_M" in card
    assert "| Q4_K_M |" in card and "fixtures" not in card  # no local paths leak out


@pytest.mark.training
def test_export_really_quantizes_to_q4_k(q4_export):
    summary, _ = q4_export
    entry = summary["files"][0]
    tensors = gguf_tensors(Path(summary["gguf_dir"]) / entry["name"])
    types = {tensor.tensor_type.name for tensor in tensors.values()}
    assert "Q4_K" in types, types
    assert entry["tensor_types"].get("Q4_K", 0) >= 1
    assert sum(entry["tensor_types"].values()) == len(tensors)


@pytest.mark.training
def test_llama_cpp_tokenizes_like_transformers(q4_export, tiny_fixtures):
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    summary, _ = q4_export
    path = Path(summary["gguf_dir"]) / summary["files"][0]["name"]
    llm = Llama(model_path=str(path), n_ctx=256, verbose=False)
    try:
        ids = llm.tokenize(CHATML_TEXT.encode(), add_bos=False, special=True)
        eos = llm.token_eos()
    finally:
        llm.close()
    tokenizer = AutoTokenizer.from_pretrained(tiny_fixtures.model)
    expected = tokenizer(CHATML_TEXT, add_special_tokens=False).input_ids
    assert ids == expected
    # The ChatML markers are single special tokens on both sides, not text.
    assert tokenizer.convert_tokens_to_ids("<|im_start|>") in ids
    assert eos == tokenizer.convert_tokens_to_ids("<|im_end|>")


@pytest.mark.training
@pytest.mark.filterwarnings("ignore:.*gradient_checkpointing.*:FutureWarning")
def test_export_merges_lora_adapter(tiny_fixtures, tmp_path):
    need_llama_cpp()
    import numpy as np
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_fixtures.model)
    lora = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    peft_model = get_peft_model(base, lora)
    adapter_dir = tmp_path / "adapter"
    peft_model.save_pretrained(adapter_dir)
    merged = peft_model.merge_and_unload()
    expected_v = merged.model.layers[0].self_attn.v_proj.weight.detach().numpy()
    base_v = AutoModelForCausalLM.from_pretrained(tiny_fixtures.model).model.layers[0]
    base_v = base_v.self_attn.v_proj.weight.detach().numpy()
    assert not np.allclose(expected_v, base_v, atol=1e-3)  # the adapter really changes it

    out = tmp_path / "out"
    (out / "work" / "merged").mkdir(parents=True)
    (out / "work" / "merged" / "stale.safetensors").write_bytes(b"old")  # must not survive
    (out / "gguf").mkdir()
    (out / "gguf" / "old-Q2_K.gguf").write_bytes(b"old")  # must not be shipped
    config = export_config(
        out, adapter_dir, base_model=str(tiny_fixtures.model), quantizations=["Q4_K_M", "F16"]
    )
    result, summary = run_export(config, tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert summary["status"] == "completed" and summary["merged"] is True
    assert [f["quantization"] for f in summary["files"]] == ["Q4_K_M", "F16"]
    assert sorted(p.name for p in (out / "gguf").iterdir()) == [
        "README.md",
        "tiny-export-F16.gguf",
        "tiny-export-Q4_K_M.gguf",
    ]
    assert "Q4_K" in summary["files"][0]["tensor_types"]

    tensors = gguf_tensors(out / "gguf" / "tiny-export-F16.gguf")
    got_v = np.asarray(tensors["blk.0.attn_v.weight"].data, dtype=np.float32)
    assert got_v.shape == expected_v.shape
    np.testing.assert_allclose(got_v, expected_v, atol=2e-3)
