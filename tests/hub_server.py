"""A loopback Hub for uploads: repo create, validate-yaml, preupload and commit.

The real huggingface_hub client's ``create_repo``/``upload_file``/``upload_folder``
work against it; it records every request so tests assert what was sent.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "c0ffee" * 6 + "c0ff"


class FakeHub:
    """Speaks ``POST /api/repos/create``, ``/api/validate-yaml``, ``.../preupload/main``
    and ``.../commit/main`` (NDJSON) like the Hub, and records what reached it.

    Preupload answers ``uploadMode: regular`` for every file, so the files travel
    base64-encoded inside the commit (LFS/Xet uploads cannot be faked on loopback).
    """

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def reply(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                fake.requests.append(("GET", self.path, b""))
                self.reply(404, {"error": "not here"})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.requests.append(("POST", self.path, body))
                if self.path == "/api/repos/create":
                    request = json.loads(body)
                    repo = f"{request['organization']}/{request['name']}"
                    self.reply(200, {"url": f"https://huggingface.co/{repo}"})
                elif self.path == "/api/validate-yaml":
                    self.reply(200, {})
                elif self.path.endswith("/preupload/main"):
                    files = [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                        for f in json.loads(body)["files"]
                    ]
                    self.reply(200, {"files": files})
                elif self.path.endswith("/commit/main"):
                    repo = self.path.split("/api/models/")[1].rsplit("/commit/", 1)[0]
                    url = f"https://huggingface.co/{repo}/commit/{COMMIT}"
                    self.reply(200, {"commitUrl": url, "commitOid": COMMIT})
                else:
                    self.reply(404, {"error": "not here"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def posts(self, suffix: str) -> list[bytes]:
        return [body for method, path, body in self.requests if path.endswith(suffix)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
