"""A loopback fake of a trackio 0.43 Space's HTTP API, over a directory of project DBs.

Point trackio's own client at it, or ci-runner's reader::

    from trackio.remote_client import RemoteClient

    with FakeTrackioSpace(trackio_dir) as space:          # dir of <project>.db files
        client = RemoteClient(space.url)                   # GET /version, then HTTP API
        client.predict("proj", "SELECT 1 AS x", api_name="/query_project")
        # {"project": "proj", "query": "SELECT 1 AS x", "columns": ["x"], "rows": [{"x": 1}], ...}

The data is whatever trackio itself wrote there (tests write it with trackio's
``SQLiteStorage``), so the fake only has to serve it the way the real server does.
Stdlib only. The wire format was read off the installed trackio 0.43.0
(``asgi_app.py``, ``server.py``, ``remote_client.py``, ``sqlite_storage.py``):

* ``GET  /version``          -> ``{"version": "0.43.0", "api_version": 1, "writes_paused": false,
  "api_transport": "http", "mcp_enabled": false, "mcp_path": null}``. ``RemoteClient`` uses the
  HTTP API when ``api_version == 1``, else falls back to ``gradio_client``.
* ``POST /api/<name>``       -> body ``{"args": [...], "kwargs": {...}}`` (what ``RemoteClient``
  sends; ``{"data": [...]}``, a bare object (kwargs) and a bare list (args) are also accepted);
  arguments bind to the function's parameters by name, then position. Answers
  ``200 {"data": <result>}`` (non-finite floats become ``null``), ``400 {"error": ...}`` for a
  missing parameter, ``404 {"error": "Unknown API: <name>"}``, ``500 {"error": str(exc)}`` for
  anything the function raised (an unknown project: ``"Project '<p>' not found."``).
  JSON is encoded like Starlette's ``JSONResponse`` (compact, UTF-8, no NaN).
* ``query_project(project, query)`` (``SQLiteStorage.query_project``): only statements starting
  with ``select``/``with``/``pragma``; a SQLite authorizer allows SELECT, READ, FUNCTION and a
  few read-only pragmas; more than 10,000 rows is an error; answers ``{"project", "query"
  (stripped of whitespace and trailing ``;``), "columns", "rows": [{column: value}],
  "row_count"}``.
* Any other GET is the dashboard's single-page-app fallback: ``200 text/html``.

Implemented read APIs: ``query_project``, ``get_all_projects``. Other trackio API names answer
``501`` so that a client drifting onto them fails loudly here rather than passing by accident.

Test controls: ``requests`` (each with the response that went back), ``requests_to``,
``fail_next`` (status and body), ``delay_next`` (slow), ``truncate_next`` (the body is cut
short and the connection closed), ``html_next`` (a 200 HTML page, as a sleeping or building
Space serves).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import socket
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.loopback import LoopbackFake, LoopbackHandler

TRACKIO_VERSION = "0.43.0"
QUERY_MAX_ROWS = 10_000
READ_ONLY_PREFIXES = ("select", "with", "pragma")
READ_ONLY_PRAGMAS = frozenset(
    {"table_info", "table_xinfo", "index_list", "index_info", "index_xinfo"}
)
READ_ONLY_VALUE_PRAGMAS = frozenset({"user_version"})

# trackio 0.43 ``server._api_registry()``: names the fake knows but does not serve.
KNOWN_APIS = frozenset(
    [
        "get_run_mutation_status",
        "upload_db_to_space",
        "bulk_upload_media",
        "check_artifact_blobs",
        "bulk_upload_artifact_blob",
        "artifact_log",
        "get_artifact_manifest",
        "get_artifacts",
        "list_artifacts",
        "get_run_artifacts",
        "get_run_artifact_counts",
        "get_artifact_consumers",
        "get_artifact_lineage",
        "log_artifact_use",
        "log",
        "bulk_log",
        "bulk_log_system",
        "bulk_alert",
        "get_alerts",
        "get_metric_values",
        "get_runs_for_project",
        "get_run_configs",
        "get_metrics_for_run",
        "get_all_projects",
        "get_project_summary",
        "get_run_summary",
        "get_system_metrics_for_run",
        "get_system_logs",
        "get_system_logs_batch",
        "get_snapshot",
        "get_logs",
        "get_logs_batch",
        "get_traces",
        "get_trace_steps",
        "query_project",
        "get_settings",
        "get_registry_buckets",
        "get_registries",
        "get_registry_details",
        "get_project_files",
        "get_tab_availability",
        "delete_run",
        "rename_run",
        "force_sync",
    ]
)
SPA_HTML = (
    b'<!DOCTYPE html>\n<html lang="en">\n  <head>\n    <meta charset="UTF-8" />\n'
    b"    <title>Trackio Dashboard</title>\n  </head>\n  <body></body>\n</html>\n"
)


class TrackioAPIError(Exception):
    """An error the real server answers with 400."""


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    json: Any
    raw_body: bytes = b""
    status: int | None = None
    response_body: bytes = b""


@dataclass
class _Rule:
    kind: str  # "fail" | "delay" | "truncate" | "html"
    pattern: re.Pattern[str]
    times: int
    status: int = 500
    body: Any = None
    seconds: float = 0.0
    content_type: str = "application/json"


def canonical_project_name(project: str) -> str:
    safe = "".join(c for c in project if c.isalnum() or c in ("-", "_")).rstrip()
    return safe or "default"


def json_safe(data: Any) -> Any:
    """``asgi_app._json_safe``: non-finite floats become null."""
    if data is None or isinstance(data, (str, bool, int)):
        return data
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: json_safe(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(v) for v in data]
    return str(data)


def _authorizer(action: int, arg1: str | None, arg2: str | None, *_: Any) -> int:
    """``SQLiteStorage._query_authorizer``."""
    if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION):
        return sqlite3.SQLITE_OK
    if action == getattr(sqlite3, "SQLITE_PRAGMA", None):
        name = (arg1 or "").lower()
        if name in READ_ONLY_PRAGMAS or (name in READ_ONLY_VALUE_PRAGMAS and arg2 is None):
            return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


class FakeTrackioSpace(LoopbackFake):
    """Threaded loopback fake of a trackio Space. Use as a context manager."""

    def __init__(self, trackio_dir: Path, *, version: str = TRACKIO_VERSION) -> None:
        super().__init__(_Handler)
        self.trackio_dir = Path(trackio_dir)
        self.version = version
        self.requests: list[RecordedRequest] = []
        self._rules: list[_Rule] = []

    # ------------------------------------------------------------------ test controls
    def fail_next(
        self,
        path_regex: str,
        status: int = 500,
        body: Any = None,
        times: int = 1,
        content_type: str = "application/json",
    ) -> None:
        """The next ``times`` matching requests get ``status``; ``body`` defaults to
        ``{"error": "Injected <status>"}``. A ``str`` body goes as text/plain, a ``bytes``
        body as ``content_type`` (e.g. the HTML error page of the Hub's proxy)."""
        rule = _Rule("fail", re.compile(path_regex), times, status=status, body=body)
        rule.content_type = content_type
        self._add(rule)

    def delay_next(self, path_regex: str, seconds: float, times: int = 1) -> None:
        """Hold the next ``times`` matching requests for ``seconds`` before answering."""
        self._add(_Rule("delay", re.compile(path_regex), times, seconds=seconds))

    def truncate_next(self, path_regex: str, times: int = 1) -> None:
        """Answer normally, but send only half the body, then close the connection."""
        self._add(_Rule("truncate", re.compile(path_regex), times))

    def html_next(self, path_regex: str, times: int = 1) -> None:
        """Answer ``200 text/html``, as a Space that sleeps or builds does."""
        self._add(_Rule("html", re.compile(path_regex), times))

    def requests_to(self, method: str, path_regex: str) -> list[RecordedRequest]:
        with self.lock:
            return [
                r
                for r in self.requests
                if r.method == method.upper() and re.search(path_regex, r.path)
            ]

    def _add(self, rule: _Rule) -> None:
        with self.lock:
            self._rules.append(rule)

    def _take_rule(self, kind: str, path: str) -> _Rule | None:
        with self.lock:
            for rule in self._rules:
                if rule.kind == kind and rule.pattern.search(path):
                    rule.times -= 1
                    if rule.times <= 0:
                        self._rules.remove(rule)
                    return rule
        return None

    # ------------------------------------------------------------------ the API
    def version_payload(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "api_version": 1,
            "writes_paused": False,
            "api_transport": "http",
            "mcp_enabled": False,
            "mcp_path": None,
        }

    def db_path(self, project: str) -> Path:
        return self.trackio_dir / f"{canonical_project_name(project)}.db"

    def query_project(self, project: str, query: str) -> dict[str, Any]:
        path = self.db_path(project)
        if not path.exists():
            raise FileNotFoundError(f"Project '{project}' not found.")
        normalized = query.strip().rstrip(";").strip()
        if not normalized:
            raise ValueError("Query cannot be empty.")
        if not normalized.lower().startswith(READ_ONLY_PREFIXES):
            raise ValueError("Only read-only SELECT, WITH, and safe PRAGMA queries are supported.")
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            conn.row_factory = sqlite3.Row
            conn.set_authorizer(_authorizer)
            try:
                cursor = conn.execute(normalized)
                columns = [c[0] for c in cursor.description or []]
                fetched = cursor.fetchmany(QUERY_MAX_ROWS + 1)
            except sqlite3.DatabaseError as exc:
                raise ValueError(str(exc)) from exc
            if len(fetched) > QUERY_MAX_ROWS:
                raise ValueError(
                    f"Query returned more than {QUERY_MAX_ROWS} rows. "
                    "Refine the query or add a LIMIT clause."
                )
            rows = [{c: _query_value(row[c]) for c in columns} for row in fetched]
        finally:
            conn.close()
        return {
            "project": project,
            "query": normalized,
            "columns": columns,
            "rows": rows,
            "row_count": len(rows),
        }

    def get_all_projects(self) -> list[str]:
        if not self.trackio_dir.exists():
            return []
        return sorted({p.stem for p in self.trackio_dir.glob("*.db")})

    def call(self, name: str, body: Any) -> tuple[int, dict[str, Any]]:
        """``asgi_app.run_api_request``: bind the body to the function, run it, wrap the result."""
        functions = {"query_project": self.query_project, "get_all_projects": self.get_all_projects}
        if name not in functions:
            if name in KNOWN_APIS:
                return 501, {"error": f"{name} is not implemented by the fake trackio Space"}
            return 404, {"error": f"Unknown API: {name}"}
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        if isinstance(body, dict):
            if "args" in body or "kwargs" in body:
                args, kwargs = body.get("args") or [], body.get("kwargs") or {}
            elif isinstance(body.get("data"), list):
                args = body["data"]
            else:
                kwargs = body
        elif isinstance(body, list):
            args = body
        elif body is not None:
            args = [body]
        args = args if isinstance(args, list) else [args]
        kwargs = kwargs if isinstance(kwargs, dict) else {}
        try:
            result = _invoke(functions[name], args, kwargs)
        except TrackioAPIError as exc:
            return 400, {"error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - the real server answers 500 with the message
            return 500, {"error": str(exc)}
        return 200, {"data": json_safe(result)}


def _query_value(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.hex()
    return value


def _invoke(fn: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """``asgi_app._invoke_handler`` for plain positional-or-keyword parameters."""
    import inspect

    positional: list[Any] = []
    keyword: dict[str, Any] = {}
    index = 0
    for param in inspect.signature(fn).parameters.values():
        if param.name in kwargs:
            keyword[param.name] = kwargs.pop(param.name)
        elif index < len(args):
            positional.append(args[index])
            index += 1
        elif param.default is inspect.Signature.empty:
            raise TrackioAPIError(f"Missing required parameter: {param.name}")
    return fn(*positional, **keyword)


def _encode(body: Any) -> bytes:
    """Starlette's ``JSONResponse.render``."""
    return json.dumps(
        body, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


API_RE = re.compile(r"^/api/(?P<name>[^/]+)$")


class _Handler(LoopbackHandler):
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        fake = self.server.fake
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        rec = RecordedRequest(
            method, path, {k.lower(): v for k, v in self.headers.items()}, parsed, raw
        )
        with fake.lock:
            fake.requests.append(rec)
        try:
            delay = fake._take_rule("delay", path)
            if delay is not None and fake._closing.wait(delay.seconds):
                self.close_connection = True
                return
            if (fail := fake._take_rule("fail", path)) is not None:
                body = fail.body if fail.body is not None else {"error": f"Injected {fail.status}"}
                return self._send(rec, fail.status, body, fail.content_type)
            if fake._take_rule("html", path) is not None:
                return self._send(rec, 200, SPA_HTML, "text/html; charset=utf-8")
            truncate = fake._take_rule("truncate", path) is not None
            self._route(rec, method, path, parsed, truncate)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _route(
        self, rec: RecordedRequest, method: str, path: str, body: Any, truncate: bool
    ) -> None:
        fake = self.server.fake
        if method == "GET" and path == "/version":
            return self._send(rec, 200, fake.version_payload(), truncate=truncate)
        if method == "GET":  # the dashboard's SPA fallback
            return self._send(rec, 200, SPA_HTML, "text/html; charset=utf-8", truncate=truncate)
        match = API_RE.match(path)
        if match is None:
            return self._send(rec, 404, b"Not Found", "text/plain; charset=utf-8")
        status, payload = fake.call(match["name"], body)
        self._send(rec, status, payload, truncate=truncate)

    def _send(
        self,
        rec: RecordedRequest,
        status: int,
        body: Any,
        content_type: str = "application/json",
        *,
        truncate: bool = False,
    ) -> None:
        if isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data, content_type = body.encode(), "text/plain; charset=utf-8"
        else:
            data = _encode(body)
        rec.status = status
        rec.response_body = data
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if truncate:
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(data)


_REAL_SERVER = """
import socket
import uvicorn
from trackio.server import build_starlette_app_only

app, _ = build_starlette_app_only()
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(64)
print(sock.getsockname()[1], flush=True)
uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
"""


@contextlib.contextmanager
def real_trackio_server(trackio_dir: Path, timeout_s: float = 60.0):
    """trackio's own dashboard server (Starlette under uvicorn) over ``trackio_dir``.

    Runs in a subprocess, because trackio fixes its store directory at import. Yields its
    base URL. For contract tests: whatever the fake answers, the real server must too.
    """
    import os
    import subprocess
    import sys

    env = {**os.environ, "TRACKIO_DIR": str(trackio_dir), "HF_HUB_OFFLINE": "1"}
    env.pop("SYSTEM", None)  # not "spaces": no Gradio shim, no Hub sync
    proc = subprocess.Popen(
        [sys.executable, "-c", _REAL_SERVER],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port: list[str] = []
        reader = threading.Thread(target=lambda: port.append(proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout_s)
        if not port or not port[0].strip().isdigit():
            proc.kill()
            raise RuntimeError(f"trackio's server did not start: {proc.stderr.read()[-2000:]}")
        yield f"http://127.0.0.1:{port[0].strip()}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
