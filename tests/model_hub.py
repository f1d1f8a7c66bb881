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


def safetensors_bytes(tensors: dict[str, list[int]], *, dtype: str = "BF16") -> bytes:
    """A valid safetensors file with zero weights."""
    width = {"BF16": 2, "F16": 2, "F32": 4}[dtype]
    header: dict[str, Any] = {}
    offset = 0
    for name, shape in tensors.items():
        size = width
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + bytes(offset)


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
        repo, _, rest = self.path.lstrip("/").partition("/resolve/")
        _, _, filename = rest.partition("/")
        body = hub.file(repo, filename)
        if body is None:
            return self._send(404, b"", {"X-Error-Code": "EntryNotFound"})
        headers = {"ETag": f'"{hash(body) & 0xFFFF:x}"', "X-Repo-Commit": COMMIT}
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

    do_GET = do_HEAD = _serve


class FakeModelHub:
    """``files``: ``{filename: bytes}`` served for any repo, or ``{"org/name": {...}}``."""

    def __init__(self, files: dict[str, Any] | None = None, *, hardware: Any = None) -> None:
        self.files: dict[str, Any] = dict(files or {})
        self.hardware = hardware or []
        self.fail = 0  # an HTTP status every request gets, when set
        self.seen: list[tuple[str, str, str | None]] = []  # method, path, Range
        handler = type("Handler", (_Handler,), {"hub": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

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
