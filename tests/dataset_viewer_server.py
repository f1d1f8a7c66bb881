"""A loopback fake of the Hub's dataset viewer (datasets-server), for contract tests.

Point the real client at it::

    with FakeDatasetViewer() as fake:
        fake.add_dataset("org/name", {"default": {"train": rows, "test": rows}})
        viewer = ViewerClient(fake.url, token="hf_x", sleep=lambda s: None)
        viewer.first_rows("org/name", "default", "train")
        assert fake.requests[-1].path == "/first-rows?dataset=org%2Fname&config=default&split=train"

Stdlib only. The wire format follows the public docs (huggingface.co/docs/dataset-viewer)
and the server's own error classes (``libapi/exceptions.py``, ``libcommon/exceptions.py``):

* ``GET /splits?dataset=D``  -> ``{"splits": [{dataset, config, split}], "pending": [],
  "failed": []}``
* ``GET /first-rows?dataset=D&config=C&split=S`` -> ``{dataset, config, split, features:
  [{feature_idx, name, type}], rows: [{row_idx, row, truncated_cells}], truncated}``,
  at most 100 rows
* ``GET /size?dataset=D[&config=C]`` -> ``{"size": {"dataset"|"config": {..., num_rows},
  ["configs": [...]], "splits": [{dataset, config, split, num_rows, ...}]}, "pending": [],
  "failed": [], "partial": false}``
* errors: ``{"error": "..."}`` with an ``X-Error-Code`` header. An unknown or private
  dataset is 401 ``ExternalUnauthenticatedError`` without a token and 404
  ``ExternalAuthenticatedError`` with one; a missing parameter is 422; an unknown
  config/split on /first-rows is 404 ``ResponseNotFound``; a dataset the viewer can't
  process answers its cached error (e.g. 501 ``DatasetWithScriptNotSupportedError``).

Test controls (Python, not HTTP): ``add_dataset``, ``fail_next``, ``drop_next``,
``requests``, ``requests_to``.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

FIRST_ROWS_MAX = 100
UNAUTHENTICATED = (
    "The dataset does not exist, or is not accessible without authentication (private or "
    "gated). Please check the spelling of the dataset name or retry with authentication."
)
AUTHENTICATED = (
    "The dataset does not exist, or is not accessible with the current credentials (private "
    "or gated). Please check the spelling of the dataset name or retry with other "
    "authentication credentials."
)


@dataclass
class RecordedRequest:
    method: str
    path: str  # raw path and query, exactly as sent
    route: str  # path without the query: "/first-rows"
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    status: int = 0  # what the fake answered


@dataclass
class _Dataset:
    configs: dict[str, dict[str, list[dict[str, Any]]]]
    token: str | None = None
    features: dict[str, Any] | None = None
    error: tuple[int, str, str] | None = None  # status, X-Error-Code, message
    partial: bool = False
    num_rows: dict[tuple[str, str], int] = field(default_factory=dict)  # the real split sizes


@dataclass
class _Fault:
    pattern: re.Pattern[str]
    times: int
    status: int | None  # None: drop the connection without an answer
    code: str | None = None
    message: str = "Internal Server Error"
    headers: dict[str, str] = field(default_factory=dict)


class _Answer(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers


def _error(status: int, code: str, message: str) -> _Answer:
    return _Answer(status, {"error": message}, {"X-Error-Code": code})


def feature_type(value: Any) -> dict[str, Any]:
    """The ``datasets`` feature dict a column of such values gets (Value, List, struct)."""
    if isinstance(value, bool):
        return {"dtype": "bool", "_type": "Value"}
    if isinstance(value, int):
        return {"dtype": "int64", "_type": "Value"}
    if isinstance(value, float):
        return {"dtype": "float64", "_type": "Value"}
    if isinstance(value, list):
        inner = feature_type(value[0]) if value else {"dtype": "null", "_type": "Value"}
        return {"feature": inner, "_type": "List"}
    if isinstance(value, dict):
        return {key: feature_type(item) for key, item in value.items()}
    return {"dtype": "string", "_type": "Value"}


class FakeDatasetViewer:
    """The three routes a dataset check needs, over real HTTP on 127.0.0.1."""

    def __init__(self) -> None:
        self.datasets: dict[str, _Dataset] = {}
        self.requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> FakeDatasetViewer:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeDatasetViewer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        assert self._server is not None, "start the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- test controls --------------------------------------------------------------

    def add_dataset(
        self,
        name: str,
        configs: dict[str, dict[str, list[dict[str, Any]]]],
        *,
        token: str | None = None,
        features: dict[str, Any] | None = None,
        error: tuple[int, str, str] | None = None,
        partial: bool = False,
        num_rows: dict[tuple[str, str], int] | None = None,
    ) -> None:
        """Register ``{config: {split: rows}}``. ``token``: private, readable with it only.

        ``features``: ``{column: datasets type dict}`` as the real dataset declares them
        (default: guessed from the first row). ``num_rows``: ``{(config, split): n}``, the
        real split sizes /size reports (default: the rows given).

        ``error=(status, code, message)``: every route answers that cached error, as the
        viewer does for datasets it can't process (e.g. 501 DatasetWithScriptNotSupportedError).
        """
        self.datasets[name] = _Dataset(configs, token, features, error, partial, num_rows or {})

    def fail_next(
        self,
        path_regex: str,
        status: int,
        times: int = 1,
        *,
        code: str | None = None,
        message: str = "Internal Server Error",
        headers: dict[str, str] | None = None,
    ) -> None:
        """The next ``times`` requests whose raw path+query matches answer ``status``."""
        fault = _Fault(re.compile(path_regex), times, status, code, message, headers or {})
        with self._lock:
            self._faults.append(fault)

    def drop_next(self, path_regex: str, times: int = 1) -> None:
        """Close the connection without answering: the client sees a transport error."""
        with self._lock:
            self._faults.append(_Fault(re.compile(path_regex), times, None))

    def requests_to(self, path_regex: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if re.search(path_regex, r.path)]

    # -- serving --------------------------------------------------------------------

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and fault.pattern.search(path):
                    fault.times -= 1
                    return fault
        return None

    def answer(self, route: str, query: dict[str, list[str]], auth: str | None) -> _Answer:
        """The response for one request (raised or returned as an ``_Answer``)."""
        handlers = {"/splits": self._splits, "/first-rows": self._first_rows, "/size": self._size}
        if route not in handlers:
            return _error(404, "RouteNotFound", "Not Found")
        try:
            name = _param(query, "dataset")
            dataset = self._visible(name, auth)
            if dataset.error:
                status, code, message = dataset.error
                return _error(status, code, message)
            return _Answer(200, handlers[route](name, dataset, query), {})
        except _Answer as answer:
            return answer

    def _visible(self, name: str, auth: str | None) -> _Dataset:
        dataset = self.datasets.get(name)
        token = auth.removeprefix("Bearer ").strip() if auth else None
        if dataset is None or (dataset.token and token != dataset.token):
            if token:
                raise _error(404, "ExternalAuthenticatedError", AUTHENTICATED)
            raise _error(401, "ExternalUnauthenticatedError", UNAUTHENTICATED)
        return dataset

    def _splits(self, name: str, dataset: _Dataset, query: dict) -> dict[str, Any]:
        splits = [
            {"dataset": name, "config": config, "split": split}
            for config, by_split in dataset.configs.items()
            for split in by_split
        ]
        return {"splits": splits, "pending": [], "failed": []}

    def _first_rows(self, name: str, dataset: _Dataset, query: dict) -> dict[str, Any]:
        config, split = _param(query, "config"), _param(query, "split")
        rows = dataset.configs.get(config, {}).get(split)
        if rows is None:
            raise _error(404, "ResponseNotFound", "Not found.")
        types = dataset.features or {
            key: feature_type(value) for row in rows[:1] for key, value in row.items()
        }
        features = [
            {"feature_idx": i, "name": key, "type": value}
            for i, (key, value) in enumerate(types.items())
        ]
        shown = [
            {"row_idx": i, "row": row, "truncated_cells": []}
            for i, row in enumerate(rows[:FIRST_ROWS_MAX])
        ]
        return {
            "dataset": name,
            "config": config,
            "split": split,
            "features": features,
            "rows": shown,
            "truncated": False,
        }

    def _size(self, name: str, dataset: _Dataset, query: dict) -> dict[str, Any]:
        wanted = query.get("config", [None])[0]
        if wanted is not None and wanted not in dataset.configs:
            raise _error(404, "ResponseNotFound", "Not found.")
        splits = [
            _split_size(name, config, split, rows, dataset.num_rows.get((config, split)))
            for config, by_split in dataset.configs.items()
            if wanted in (None, config)
            for split, rows in by_split.items()
        ]
        configs = [
            _total(name, [s for s in splits if s["config"] == c], c) for c in dataset.configs
        ]
        if wanted is None:
            size = {"dataset": _total(name, splits), "configs": configs, "splits": splits}
        else:
            size = {"config": next(c for c in configs if c["config"] == wanted), "splits": splits}
        return {"size": size, "pending": [], "failed": [], "partial": dataset.partial}


def _param(query: dict[str, list[str]], name: str) -> str:
    values = query.get(name)
    if not values or not values[0]:
        raise _error(422, "MissingRequiredParameter", f"Parameter '{name}' is required")
    return values[0]


def _split_size(
    name: str, config: str, split: str, rows: list[dict], num_rows: int | None = None
) -> dict[str, Any]:
    num_bytes = len(json.dumps(rows, default=str).encode())
    return {
        "dataset": name,
        "config": config,
        "split": split,
        "num_bytes_parquet_files": num_bytes,
        "num_bytes_memory": num_bytes,
        "num_rows": len(rows) if num_rows is None else num_rows,
        "num_columns": len(rows[0]) if rows else 0,
    }


def _total(name: str, splits: list[dict[str, Any]], config: str | None = None) -> dict[str, Any]:
    total = {"dataset": name} if config is None else {"dataset": name, "config": config}
    nbytes = sum(s["num_bytes_parquet_files"] for s in splits)
    total.update(
        num_bytes_original_files=nbytes,
        num_bytes_parquet_files=nbytes,
        num_bytes_memory=nbytes,
        num_rows=sum(s["num_rows"] for s in splits),
    )
    if config is not None:
        total["num_columns"] = max((s["num_columns"] for s in splits), default=0)
    return total


def _handler_for(fake: FakeDatasetViewer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            parts = urlsplit(self.path)
            record = RecordedRequest(
                method="GET",
                path=self.path,
                route=parts.path,
                query=parse_qs(parts.query),
                headers={k.lower(): v for k, v in self.headers.items()},
            )
            with fake._lock:
                fake.requests.append(record)
            fault = fake._take_fault(self.path)
            if fault is not None and fault.status is None:
                self.close_connection = True
                return  # nothing sent: the client's read fails
            if fault is not None:
                answer = _error(fault.status, fault.code or "", fault.message)
                answer.headers = {**({"X-Error-Code": fault.code} if fault.code else {})}
                answer.headers.update(fault.headers)
            else:
                answer = fake.answer(record.route, record.query, self.headers.get("Authorization"))
            record.status = answer.status
            self._send(answer)

        def _send(self, answer: _Answer) -> None:
            body = json.dumps(answer.body).encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for key, value in answer.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler
