"""A loopback Hub that serves model files the way huggingface.co does, for sizing and pinning.

The real ``huggingface_hub`` client reads from it: ``HEAD``/``GET`` on
``/<repo>/resolve/<revision>/<file>`` (with ``Range`` for safetensors headers), plus
``GET /api/jobs/hardware``. Every request is recorded, so tests assert what reached it
(and that nothing did, for local paths).
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

COMMIT = "a" * 40
CONFIGS = Path(__file__).parent / "model_configs"


WIDTH = {"BF16": 2, "F16": 2, "F32": 4}


def _nbytes(shape: list[int], dtype: str) -> int:
    size = WIDTH[dtype]
    for dim in shape:
        size *= dim
    return size


def safetensors_header(tensors: dict[str, list[int]], *, dtype: str = "BF16") -> tuple[bytes, int]:
    """The 8-byte length and JSON header of a safetensors file, and its data's size."""
    header: dict[str, Any] = {}
    offset = 0
    for name, shape in tensors.items():
        size = _nbytes(shape, dtype)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw, offset


def safetensors_bytes(tensors: dict[str, list[int]], *, dtype: str = "BF16") -> bytes:
    """A valid safetensors file with zero weights."""
    header, data = safetensors_header(tensors, dtype=dtype)
    return header + bytes(data)


def checkpoint_tensors(config: dict[str, Any]) -> dict[str, list[int]]:
    """Tensor names and shapes of a Llama/Qwen2/Qwen3 checkpoint, in state-dict order.

    Per layer: attention q/k/v/o (Qwen2: q/k/v biases; Qwen3: q/k norms), MLP gate/up/
    down, the two RMSNorms; then the final norm and, untied, ``lm_head``.
    """
    h, layers = config["hidden_size"], config["num_hidden_layers"]
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or h // heads
    q, kv = heads * head_dim, config.get("num_key_value_heads", heads) * head_dim
    inter, vocab = config["intermediate_size"], config["vocab_size"]
    qwen2 = config["model_type"] == "qwen2"
    tensors = {"model.embed_tokens.weight": [vocab, h]}
    for i in range(layers):
        p = f"model.layers.{i}"
        for name, out in (("q_proj", q), ("k_proj", kv), ("v_proj", kv)):
            tensors[f"{p}.self_attn.{name}.weight"] = [out, h]
            if qwen2:
                tensors[f"{p}.self_attn.{name}.bias"] = [out]
        tensors[f"{p}.self_attn.o_proj.weight"] = [h, q]
        if config["model_type"] == "qwen3":
            tensors[f"{p}.self_attn.q_norm.weight"] = [head_dim]
            tensors[f"{p}.self_attn.k_norm.weight"] = [head_dim]
        tensors[f"{p}.mlp.gate_proj.weight"] = [inter, h]
        tensors[f"{p}.mlp.up_proj.weight"] = [inter, h]
        tensors[f"{p}.mlp.down_proj.weight"] = [h, inter]
        tensors[f"{p}.input_layernorm.weight"] = [h]
        tensors[f"{p}.post_attention_layernorm.weight"] = [h]
    tensors["model.norm.weight"] = [h]
    if not config.get("tie_word_embeddings", True):
        tensors["lm_head.weight"] = [vocab, h]
    return tensors


def sharded_checkpoint(
    config: dict[str, Any], *, max_shard_bytes: int, dtype: str = "BF16"
) -> dict[str, bytes]:
    """``model.safetensors.index.json`` plus every shard's *header* (no weights), split the
    way ``save_pretrained(max_shard_size=...)`` splits: tensors in state-dict order, a new
    shard when the next tensor would pass the limit. The shards are only as long as their
    headers: ``get_safetensors_metadata`` reads nothing else (a ranged GET per shard)."""
    shards: list[dict[str, list[int]]] = [{}]
    filled = 0
    for name, shape in checkpoint_tensors(config).items():
        size = _nbytes(shape, dtype)
        if filled and filled + size > max_shard_bytes:
            shards.append({})
            filled = 0
        shards[-1][name] = shape
        filled += size
    files: dict[str, bytes] = {}
    weight_map: dict[str, str] = {}
    total = 0
    for number, tensors in enumerate(shards, 1):
        filename = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        header, data = safetensors_header(tensors, dtype=dtype)
        files[filename] = header
        total += data
        weight_map.update(dict.fromkeys(tensors, filename))
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    files["model.safetensors.index.json"] = json.dumps(index, indent=2).encode()
    return files


class _Handler(BaseHTTPRequestHandler):
    hub: FakeModelHub

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _serve(self) -> None:
        hub = self.hub
        hub.seen.append((self.command, self.path, self.headers.get("range")))
        if hub.fail:
            return self._send(hub.fail, b"{}", {"Content-Type": "application/json"})
        if self.path == "/api/jobs/hardware":
            return self._send(200, json.dumps(hub.hardware).encode(), {})
        if self.path.startswith(("/api/datasets/", "/datasets/")):
            return self._serve_dataset()
        repo, _, rest = self.path.lstrip("/").partition("/resolve/")
        revision, _, filename = rest.partition("/")
        refused = hub.errors.get(repo) or hub.errors.get(f"{repo}@{revision}")
        if refused:  # as huggingface.co answers: a status and the error's name in a header
            status, error = refused
            body = json.dumps({"error": error}).encode()
            return self._send(status, body, {"X-Error-Code": error, "X-Error-Message": error})
        body = hub.file(repo, filename)
        if body is None:
            return self._send(404, b"", {"X-Error-Code": "EntryNotFound"})
        # A commit sha names itself; a branch (main) points at ``hub.main_commit``.
        commit = revision if len(revision) == 40 and revision.isalnum() else hub.main_commit
        headers = {"ETag": f'"{hash(body) & 0xFFFF:x}"', "X-Repo-Commit": commit}
        if self.command == "HEAD":
            headers["Content-Length"] = str(len(body))
            self.send_response(200)
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            return None
        status, rng = 200, self.headers.get("range")
        if rng:
            start, end = (int(x) for x in rng.removeprefix("bytes=").split("-"))
            body, status = body[start : end + 1], 206
        return self._send(status, body, headers)

    def _serve_dataset(self) -> None:
        """A dataset repo at a revision: its info (the commit a revision names), its file
        tree, and its files, as ``datasets`` and ``HfApi.dataset_info`` ask for them."""
        hub = self.hub
        path, _, _query = self.path.partition("?")
        repo_of = path.removeprefix("/api").removeprefix("/datasets/").split("/")[:2]
        if "/".join(repo_of) not in hub.datasets:  # no such dataset here: as before
            return self._send(404, b"", {"X-Error-Code": "EntryNotFound"})
        if path.startswith("/api/datasets/"):
            rest = path.removeprefix("/api/datasets/")
            if "/revision/" in rest or rest.count("/") == 1:
                repo, _, revision = rest.partition("/revision/")
                revision = revision or "main"
                found = hub.dataset_revision(repo, revision)
                if found is None:
                    return self._send(404, b"{}", {"X-Error-Code": "RevisionNotFound"})
                sha, files = found
                info = {
                    "id": repo,
                    "sha": sha,
                    "private": False,
                    "gated": False,
                    "disabled": False,
                    "siblings": [{"rfilename": name} for name in files],
                    "cardData": {},
                    "tags": [],
                }
                return self._send(200, json.dumps(info).encode(), {})
            if "/tree/" in rest:
                repo, _, tail = rest.partition("/tree/")
                revision, _, folder = tail.partition("/")
                found = hub.dataset_revision(repo, revision)
                if found is None:
                    return self._send(404, b"{}", {"X-Error-Code": "RevisionNotFound"})
                _, files = found
                prefix = f"{folder.rstrip('/')}/" if folder else ""
                entries = [
                    {"type": "file", "path": name, "size": len(body), "oid": f"{hash(body):x}"}
                    for name, body in files.items()
                    if name.startswith(prefix)
                ]
                dirs = {
                    name[len(prefix) :].split("/")[0] for name in files if name.startswith(prefix)
                }
                entries += [
                    {"type": "directory", "path": prefix + d, "oid": "0" * 40}
                    for d in sorted(dirs)
                    if f"{prefix}{d}" not in files
                ]
                return self._send(200, json.dumps(entries).encode(), {})
            return self._send(404, b"{}", {"X-Error-Code": "EntryNotFound"})
        repo, _, rest = path.removeprefix("/datasets/").partition("/resolve/")
        revision, _, filename = rest.partition("/")
        found = hub.dataset_revision(repo, revision)
        body = found[1].get(filename) if found else None
        if found is None or body is None:
            return self._send(404, b"", {"X-Error-Code": "EntryNotFound"})
        headers = {"ETag": f'"{hash(body) & 0xFFFF:x}"', "X-Repo-Commit": found[0]}
        status, rng = 200, self.headers.get("range")
        if rng and self.command == "GET":
            start, end = (x for x in rng.removeprefix("bytes=").split("-"))
            stop = int(end) if end else len(body) - 1
            body, status = body[int(start) : stop + 1], 206
        if self.command == "HEAD":
            self.send_response(200)
            for key, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(key, value)
            self.end_headers()
            return None
        return self._send(status, body, headers)

    do_GET = do_HEAD = _serve


class FakeModelHub:
    """``files``: ``{filename: bytes}`` served for any repo, or ``{"org/name": {...}}``."""

    def __init__(self, files: dict[str, Any] | None = None, *, hardware: Any = None) -> None:
        self.files: dict[str, Any] = dict(files or {})
        self.hardware = hardware or []
        self.fail = 0  # an HTTP status every request gets, when set
        # "org/name" or "org/name@revision" → (status, X-Error-Code), e.g. (401, "GatedRepo")
        self.errors: dict[str, tuple[int, str]] = {}
        # Dataset repos: {"org/name": {commit: {filename: bytes}}}; ``dataset_heads`` names
        # the commit each repo's main points at, ``dataset_tags`` other named revisions.
        self.datasets: dict[str, dict[str, dict[str, bytes]]] = {}
        self.dataset_heads: dict[str, str] = {}
        self.dataset_tags: dict[str, str] = {}  # "org/name@tag" → commit
        self.main_commit = COMMIT  # where `main` points; set another to say it moved on
        self.seen: list[tuple[str, str, str | None]] = []  # method, path, Range
        handler = type("Handler", (_Handler,), {"hub": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def dataset_revision(self, repo: str, revision: str) -> tuple[str, dict[str, bytes]] | None:
        """(commit, files) a revision of a dataset repo names, or None."""
        commits = self.datasets.get(repo)
        if commits is None:
            return None
        sha = {"main": self.dataset_heads.get(repo)}.get(revision) or self.dataset_tags.get(
            f"{repo}@{revision}", revision
        )
        return (sha, commits[sha]) if sha in commits else None

    def file(self, repo: str, filename: str) -> bytes | None:
        own = self.files.get(repo)
        if isinstance(own, dict):
            return own.get(filename)
        value = self.files.get(filename)
        return value if isinstance(value, bytes) else None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def model_hub(
    tmp_path: Path, monkeypatch: Any, files: dict[str, Any] | None = None, **state: Any
) -> Iterator[FakeModelHub]:
    """A running fake Hub, with huggingface_hub's cache kept in ``tmp_path``."""
    from huggingface_hub import constants

    hub = FakeModelHub(files)
    for key, value in state.items():
        setattr(hub, key, value)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    try:
        yield hub
    finally:
        hub.close()


def config_files(name: str) -> dict[str, bytes]:
    """The real ``config.json`` kept under tests/model_configs/<name>."""
    return {"config.json": (CONFIGS / name / "config.json").read_bytes()}


# Hub repos served with their real config.json and sharded safetensors headers: the shard
# limit each was saved with reproduces the official repos' shard counts and total_size
# (Llama-3.1-70B: 30 shards, 141,107,412,992 bytes; Qwen2.5-14B: 8; Qwen2.5-7B: 4,
# 15,231,233,024 bytes). See tests/model_configs/README.md for where the configs come from.
SHARDED_MODELS = {
    "meta-llama/Llama-3.1-70B-Instruct": ("Llama-3.1-70B-Instruct", 5_000_000_000),
    "Qwen/Qwen2.5-14B-Instruct": ("Qwen2.5-14B-Instruct", 4_000_000_000),
    "Qwen/Qwen2.5-7B-Instruct": ("Qwen2.5-7B-Instruct", 4_000_000_000),
}


# Served as one model.safetensors header. Qwen3-0.6B's file stores lm_head.weight although
# its embeddings are tied (1.5 GB: 751,632,384 parameters counted, 596,049,920 unique).
SINGLE_FILE_MODELS = {"Qwen/Qwen3-0.6B": "Qwen3-0.6B"}


def hub_model_files(repo_id: str) -> dict[str, bytes]:
    """What the loopback Hub serves for one of ``SHARDED_MODELS`` or ``SINGLE_FILE_MODELS``."""
    if repo_id in SINGLE_FILE_MODELS:
        files = config_files(SINGLE_FILE_MODELS[repo_id])
        config = json.loads(files["config.json"])
        tensors = checkpoint_tensors(config)
        tensors["lm_head.weight"] = [config["vocab_size"], config["hidden_size"]]
        files["model.safetensors"] = safetensors_header(tensors)[0]
        return files
    name, max_shard = SHARDED_MODELS[repo_id]
    files = config_files(name)
    files.update(sharded_checkpoint(json.loads(files["config.json"]), max_shard_bytes=max_shard))
    return files
