"""A loopback fake of the Hugging Face Jobs HTTP API, for contract tests.

Point the *real* client at it::

    from huggingface_hub import HfApi

    with FakeHFJobs(namespace="alice", page_size=50) as hf:
        api = HfApi(endpoint=hf.url, token=hf.token)   # or hf.api()
        job = api.run_job(image="ghcr.io/astral-sh/uv:python3.12-bookworm",
                          command=["uv", "run", "train.py"], namespace="alice")
        hf.set_stage(job.id, "RUNNING")
        hf.add_logs(job.id, ["step 1", "step 2"])
        hf.set_stage(job.id, "COMPLETED")
        assert list(api.fetch_job_logs(job_id=job.id, namespace="alice")) == ["step 1", "step 2"]

Stdlib only.  The wire format was read off the installed ``huggingface_hub`` 2.x client
(``hf_api.py``, ``_jobs_api.py``, ``utils/_pagination.py``, ``utils/_http.py``):

* ``GET  /api/whoami-v2``                    -> user dict (``name``, ``orgs``, ``auth``...)
* ``GET  /api/jobs/hardware``                -> ``[{name, prettyName, cpu, ram, ephemeralStorage,
  accelerator{type, model, quantity, vram, manufacturer} | null, unitCostMicroUSD, unitCostUSD,
  unitLabel}]`` (all but ``ephemeralStorage``/``accelerator`` are required by the client)
* ``POST /api/jobs/{ns}``                    -> create; body ``{dockerImage|spaceId, command,
  arguments, environment, secrets?, flavor, timeoutSeconds?, attempts?, labels?, ...}``
* ``GET  /api/jobs/{ns}?stage=S&label=k=v``  -> list; repeated ``stage`` = OR, repeated
  ``label`` = AND; paginated with ``Link: <absolute url>; rel="next"`` (the client follows that
  URL verbatim and sends no params of its own, so the link carries the filters and a ``cursor``)
* ``GET  /api/jobs/{ns}/{id}``               -> job
* ``GET  /api/jobs/{ns}/{id}/logs[?tail=N]`` -> SSE, one ``data: {"data": ..., "timestamp": ...}``
  event per line; ends (terminating chunk) once the job is in a terminal stage, stays open while
  it is not (``: keep-alive`` comment every ``keepalive_s``, 30 s like the Hub)
* ``POST /api/jobs/{ns}/{id}/cancel``        -> stage CANCELED
* ``GET  /api/{models|datasets}/{repo}[/revision/{rev}]`` -> repo info (``id``, ``sha``...), what
  ``model_info``/``dataset_info`` read when submit pins revisions; ``404`` with
  ``X-Error-Code: RepoNotFound`` / ``RevisionNotFound`` for ``missing_repos`` / ``revisions``
  that don't exist (``revisions`` maps ``(kind, repo, rev)`` to a sha; by default any
  revision of any repo exists, its sha derived from its name)

Job JSON never contains an ``endpoint`` key: the client calls ``JobInfo(**json, endpoint=...)``
and a duplicate keyword would crash it.  Secret *values* never leave the server: responses carry
the secret names only (``{"HF_TOKEN": null}``), or no ``secrets`` key with
``secrets_in_response="omit"``.
The stored records in ``hf.jobs`` keep the values that were sent, so tests can check them.

Test controls (Python, not HTTP): ``jobs``, ``logs``, ``requests`` (each with the response that
went back), ``set_stage``, ``add_logs``, ``fail_next``, ``delay_next``, ``cut_logs_after``,
``on_create``.
"""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import io
import json
import re
import secrets as _secrets
import socket
import tarfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from tests.loopback import LoopbackFake, LoopbackHandler

TERMINAL_STAGES = frozenset({"COMPLETED", "CANCELED", "ERROR", "DELETED"})
LABEL_RE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
LABEL_VALUE_RE = re.compile(r"^[A-Za-z0-9._-]{0,100}$")
INVALID_TOKEN_MESSAGE = "Invalid credentials in Authorization header"

# name | prettyName | vCPU | RAM GB | disk GB | GPU model x count x VRAM GB (total) | $/hour.
# Prices: DESIGN.md table (hub-docs jobs-pricing, Aug 2026). Specs are illustrative.
_HARDWARE_TABLE = """
cpu-basic       | CPU Basic               |   2 |   16 |    20 |                      | 0.01
cpu-upgrade     | CPU Upgrade             |   8 |   32 |    50 |                      | 0.03
cpu-performance | CPU Performance         |  32 |  256 |    50 |                      | 1.90
cpu-xl          | CPU XL                  |  16 |  124 |    50 |                      | 1.00
t4-small        | Nvidia T4 - small       |   4 |   15 |    50 | T4 x 1 x 16          | 0.40
t4-medium       | Nvidia T4 - medium      |   8 |   30 |   100 | T4 x 1 x 16          | 0.60
l4x1            | 1x Nvidia L4            |   8 |   30 |   400 | L4 x 1 x 24          | 0.80
l4x4            | 4x Nvidia L4            |  48 |  186 |  3200 | L4 x 4 x 96          | 3.80
l40sx1          | 1x Nvidia L40S          |   8 |   62 |   380 | L40S x 1 x 48        | 1.80
l40sx4          | 4x Nvidia L40S          |  48 |  382 |  3200 | L40S x 4 x 192       | 8.30
l40sx8          | 8x Nvidia L40S          | 192 | 1534 |  6500 | L40S x 8 x 384       | 23.50
a10g-small      | Nvidia A10G - small     |   4 |   15 |   110 | A10G x 1 x 24        | 1.00
a10g-large      | Nvidia A10G - large     |  12 |   46 |   200 | A10G x 1 x 24        | 1.50
a10g-largex2    | 2x Nvidia A10G - large  |  24 |   92 |  1000 | A10G x 2 x 48        | 3.00
a10g-largex4    | 4x Nvidia A10G - large  |  48 |  184 |  2000 | A10G x 4 x 96        | 5.00
a100-large      | Nvidia A100 - large     |  12 |  142 |  1000 | A100 x 1 x 80        | 2.50
a100x4          | 4x Nvidia A100          |  48 |  568 |  3000 | A100 x 4 x 320       | 10.00
a100x8          | 8x Nvidia A100          |  96 | 1136 |  6000 | A100 x 8 x 640       | 20.00
h200            | Nvidia H200             |  23 |  256 |  3000 | H200 x 1 x 141       | 5.00
h200x2          | 2x Nvidia H200          |  46 |  512 |  6000 | H200 x 2 x 282       | 10.00
h200x4          | 4x Nvidia H200          |  92 | 1024 | 12000 | H200 x 4 x 564       | 20.00
h200x8          | 8x Nvidia H200          | 184 | 2048 | 24000 | H200 x 8 x 1128      | 40.00
rtx-pro-6000    | Nvidia RTX PRO 6000     |  23 |  184 |  1000 | RTX PRO 6000 x 1 x 96  | 2.75
rtx-pro-6000x2  | 2x Nvidia RTX PRO 6000  |  46 |  368 |  2000 | RTX PRO 6000 x 2 x 192 | 5.50
rtx-pro-6000x4  | 4x Nvidia RTX PRO 6000  |  92 |  736 |  4000 | RTX PRO 6000 x 4 x 384 | 11.00
rtx-pro-6000x8  | 8x Nvidia RTX PRO 6000  | 184 | 1472 |  8000 | RTX PRO 6000 x 8 x 768 | 22.00
"""


def default_hardware() -> list[dict[str, Any]]:
    """The ``GET /api/jobs/hardware`` payload: per-minute prices, as the Hub bills."""
    out = []
    for row in _HARDWARE_TABLE.strip().splitlines():
        name, pretty, cpu, ram, disk, gpu, usd_per_hour = (c.strip() for c in row.split("|"))
        micro = round(float(usd_per_hour) * 1_000_000 / 60)
        accelerator = None
        if gpu:
            model, quantity, vram = gpu.split(" x ")
            accelerator = {
                "type": "gpu",
                "model": model,
                "quantity": quantity,
                "vram": f"{vram} GB",
                "manufacturer": "Nvidia",
            }
        out.append(
            {
                "name": name,
                "prettyName": pretty,
                "cpu": f"{cpu} vCPU",
                "ram": f"{ram} GB",
                "ephemeralStorage": f"{disk} GB",
                "accelerator": accelerator,
                "unitCostMicroUSD": micro,
                "unitCostUSD": micro / 1_000_000,
                "unitLabel": "minute",
            }
        )
    return out


def iso_now() -> str:
    """The Hub's timestamp format: ``2025-07-16T20:35:12.808Z`` (ms, UTC, ``Z``)."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _object_id() -> str:
    """A 24-hex id shaped like a Mongo ObjectId (time-prefixed, so ids sort by creation)."""
    return f"{int(time.time()):08x}{_secrets.token_hex(8)}"


@dataclass
class RecordedRequest:
    """One request as it reached the server, and what went back."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    json: Any
    raw_body: bytes = b""
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytes = b""  # for SSE: everything that was streamed

    @property
    def url_path_and_query(self) -> str:
        return self.path + ("?" + urlencode(self.query, doseq=True) if self.query else "")


@dataclass
class _Rule:
    kind: str  # "fail" | "delay"
    method: str
    pattern: re.Pattern[str]
    times: int
    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        return (self.method in ("*", method)) and self.pattern.search(path) is not None


class _ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class FakeHFJobs(LoopbackFake):
    """Threaded loopback fake of the HF Jobs API. Use as a context manager.

    Args:
        namespace: the user the token belongs to (``whoami()["name"]``).
        page_size: jobs per page of ``GET /api/jobs/{ns}``.
        token: the one valid token (``Authorization: Bearer <token>``).
        accept_any_token: accept any ``hf_...`` bearer token instead.
        orgs: organisations the user belongs to (extra namespaces they may use).
        hardware: override the ``/api/jobs/hardware`` payload (also the set of valid flavors).
        secrets_in_response: ``"names"`` (``{"NAME": null}``) or ``"omit"`` (no ``secrets`` key).
        keepalive_s: seconds between ``: keep-alive`` comments on a live log stream (Hub: 30).
        stream_idle_close_s: if set, a live (non-terminal) log stream ends cleanly after this many
            seconds without a new event, as the Hub's stream sometimes does before the job ends.
    """

    def __init__(
        self,
        namespace: str = "alice",
        page_size: int = 50,
        *,
        token: str = "hf_test_token_0123456789",
        accept_any_token: bool = False,
        orgs: Iterable[str] = (),
        hardware: list[dict[str, Any]] | None = None,
        secrets_in_response: str = "names",
        keepalive_s: float = 30.0,
        stream_idle_close_s: float | None = None,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        if secrets_in_response not in ("names", "omit"):
            raise ValueError("secrets_in_response must be 'names' or 'omit'")
        self.namespace = namespace
        self.page_size = page_size
        self.token = token
        self.accept_any_token = accept_any_token
        self.user_id = _secrets.token_hex(12)
        self.orgs = {name: _secrets.token_hex(12) for name in orgs}
        self.hardware = hardware if hardware is not None else default_hardware()
        self.secrets_in_response = secrets_in_response
        self.keepalive_s = keepalive_s
        self.stream_idle_close_s = stream_idle_close_s

        super().__init__(_Handler)
        self._cond = threading.Condition(self.lock)
        self.jobs: dict[str, dict[str, Any]] = {}  # id -> stored record (raw secrets kept)
        self.logs: dict[str, list[dict[str, str]]] = {}  # id -> [{"data", "timestamp"}]
        self.requests: list[RecordedRequest] = []
        self._rules: list[_Rule] = []
        self._cuts: dict[str, list[int]] = {}
        self._on_create: list[Callable[[dict[str, Any]], None]] = []
        self.missing_repos: set[tuple[str, str]] = set()  # (models|datasets, repo)
        self.revisions: dict[tuple[str, str, str], str | None] = {}  # None: no such revision

    def wake_handlers(self) -> None:
        with self._cond:  # live log streams wait on it
            self._cond.notify_all()

    def api(self, token: str | None = None):
        """A real ``huggingface_hub.HfApi`` pointed at this fake."""
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.url, token=token or self.token)

    # ------------------------------------------------------------------ test controls
    def set_stage(self, job_id: str, stage: str, message: str | None = None) -> None:
        """Move a job to ``stage`` (any string: unknown ones like UPDATING are allowed)."""
        with self._cond:
            job = self._job_or_keyerror(job_id)
            now = iso_now()
            job["status"] = {"stage": stage, "message": message}
            if stage == "RUNNING" and not job.get("startedAt"):
                job["startedAt"] = now
            if stage in TERMINAL_STAGES and not job.get("finishedAt"):
                job["finishedAt"] = now
            self._cond.notify_all()

    def add_logs(
        self, job_id: str, lines: str | Iterable[str], timestamp: str | None = None
    ) -> None:
        """Append log lines (each one SSE event). ``timestamp`` defaults to now."""
        if isinstance(lines, str):
            lines = [lines]
        with self._cond:
            self._job_or_keyerror(job_id)
            for line in lines:
                self.logs[job_id].append({"data": line, "timestamp": timestamp or iso_now()})
            self._cond.notify_all()

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int = 500,
        times: int = 1,
        body: Any = None,
        headers: dict[str, str] | None = None,
        retry_after: int | str | None = None,
    ) -> None:
        """The next ``times`` matching requests get ``status`` (auth and routing are skipped).

        ``path_regex`` is searched in the path (no query string). ``method`` may be ``"*"``.
        ``body`` defaults to ``{"error": "Injected <status>"}``; a ``bytes``/``str`` body is sent
        as-is. ``retry_after`` adds a ``Retry-After`` header (use it with 429/503).
        """
        extra = dict(headers or {})
        if retry_after is not None:
            extra["Retry-After"] = str(retry_after)
        with self.lock:
            self._rules.append(
                _Rule("fail", method.upper(), re.compile(path_regex), times, status, body, extra)
            )

    def delay_next(self, method: str, path_regex: str, seconds: float, times: int = 1) -> None:
        """Hold the next ``times`` matching requests for ``seconds`` before answering them."""
        with self.lock:
            self._rules.append(
                _Rule("delay", method.upper(), re.compile(path_regex), times, seconds=seconds)
            )

    def cut_logs_after(self, job_id: str, n_lines: int, times: int = 1) -> None:
        """The next ``times`` log streams of this job send ``n_lines`` events, then the socket is
        closed without the terminating chunk (the client sees an incomplete chunked body)."""
        with self.lock:
            self._cuts.setdefault(job_id, []).extend([n_lines] * times)

    def on_create(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call ``callback(stored_job)`` after each create, outside the lock (it may call
        ``set_stage``/``add_logs``). An exception in it turns the create into a 500."""
        with self.lock:
            self._on_create.append(callback)

    def requests_to(self, method: str, path_regex: str) -> list[RecordedRequest]:
        with self.lock:
            return [
                r
                for r in self.requests
                if r.method == method.upper() and re.search(path_regex, r.path)
            ]

    def public_job(self, job_id: str) -> dict[str, Any]:
        """The job exactly as the API would return it."""
        with self.lock:
            return self._public(self._job_or_keyerror(job_id))

    # ------------------------------------------------------------------ internals
    def _job_or_keyerror(self, job_id: str) -> dict[str, Any]:
        try:
            return self.jobs[job_id]
        except KeyError:
            raise KeyError(f"no such job: {job_id}") from None

    def _public(self, job: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(job)
        raw = out.pop("secrets", None)
        if self.secrets_in_response == "names" and raw is not None:
            out["secrets"] = dict.fromkeys(raw)
        return out

    def _take_rule(self, kind: str, method: str, path: str) -> _Rule | None:
        with self.lock:
            for rule in self._rules:
                if rule.kind == kind and rule.matches(method, path):
                    rule.times -= 1
                    if rule.times <= 0:
                        self._rules.remove(rule)
                    return rule
        return None

    def _take_cut(self, job_id: str) -> int | None:
        with self.lock:
            pending = self._cuts.get(job_id)
            if pending:
                return pending.pop(0)
        return None

    def _check_auth(self, headers: dict[str, str]) -> None:
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            raise _ApiError(401, INVALID_TOKEN_MESSAGE)
        token = auth[len("Bearer ") :].strip()
        ok = token.startswith("hf_") if self.accept_any_token else token == self.token
        if not ok:
            raise _ApiError(401, INVALID_TOKEN_MESSAGE)

    def _owner(self, ns: str) -> dict[str, str]:
        if ns == self.namespace:
            return {"id": self.user_id, "name": ns, "type": "user"}
        if ns in self.orgs:
            return {"id": self.orgs[ns], "name": ns, "type": "org"}
        raise _ApiError(403, f"You don't have access to namespace '{ns}'")

    def repo_info(self, kind: str, repo: str, revision: str) -> tuple[int, Any, dict[str, str]]:
        """``model_info``/``dataset_info``: the repo at ``revision``, as its commit sha."""
        if (kind, repo) in self.missing_repos:
            return 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
        sha = self.revisions.get((kind, repo, revision), self.default_sha(kind, repo, revision))
        if sha is None:
            error = f"Invalid rev id: {revision}"
            return 404, {"error": error}, {"X-Error-Code": "RevisionNotFound"}
        return 200, {"_id": "0" * 24, "id": repo, "sha": sha, "private": False}, {}

    @staticmethod
    def default_sha(kind: str, repo: str, revision: str) -> str:
        """A stable 40-hex commit per repo and revision (a sha names itself)."""
        if re.fullmatch(r"[0-9a-f]{40}", revision):
            return revision
        return hashlib.sha1(f"{kind}/{repo}@{revision}".encode()).hexdigest()

    def whoami_payload(self) -> dict[str, Any]:
        return {
            "type": "user",
            "id": self.user_id,
            "name": self.namespace,
            "fullname": self.namespace.title(),
            "email": f"{self.namespace}@example.com",
            "emailVerified": True,
            "canPay": True,
            "isPro": False,
            "periodEnd": None,
            "avatarUrl": "",
            "orgs": [
                {"type": "org", "id": oid, "name": name, "fullname": name, "roleInOrg": "write"}
                for name, oid in self.orgs.items()
            ],
            "auth": {
                "type": "access_token",
                "accessToken": {"displayName": "ci-runner-test", "role": "write"},
            },
        }

    def _validate_create(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _ApiError(400, "Request body must be a JSON object")
        image, space = body.get("dockerImage"), body.get("spaceId")
        if (image is None) == (space is None):
            raise _ApiError(400, "Exactly one of 'dockerImage' or 'spaceId' is required")
        source = image if image is not None else space
        if not isinstance(source, str) or not source.strip():
            raise _ApiError(400, "'dockerImage'/'spaceId' must be a non-empty string")
        command = body.get("command")
        if not _is_str_list(command) or (image is not None and not command):
            raise _ApiError(400, "'command' must be a non-empty list of strings")
        arguments = body.get("arguments", [])
        if not _is_str_list(arguments):
            raise _ApiError(400, "'arguments' must be a list of strings")
        for key in ("environment", "secrets"):
            value = body.get(key, {})
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise _ApiError(400, f"'{key}' must be an object of string values")
        if "environment" not in body:
            raise _ApiError(400, "'environment' is required")
        flavor = body.get("flavor")
        if flavor not in {hw["name"] for hw in self.hardware}:
            raise _ApiError(400, f"Invalid flavor: {flavor!r}")
        timeout = body.get("timeoutSeconds")
        if timeout is not None and (
            not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0
        ):
            raise _ApiError(400, "'timeoutSeconds' must be a positive integer")
        attempts = body.get("attempts")
        if attempts is not None and (not isinstance(attempts, int) or attempts < 1):
            raise _ApiError(400, "'attempts' must be a positive integer")
        labels = body.get("labels", {})
        if not isinstance(labels, dict):
            raise _ApiError(400, "'labels' must be an object")
        for k, v in labels.items():
            if not isinstance(v, str) or not LABEL_RE.match(k) or not LABEL_VALUE_RE.match(v):
                raise _ApiError(
                    400,
                    f"Invalid label {k!r}={v!r}: keys and values are at most 100 characters "
                    "of [A-Za-z0-9._-]",
                )
        return body

    def _create(self, ns: str, body: Any) -> dict[str, Any]:
        owner = self._owner(ns)
        spec = self._validate_create(body)
        job: dict[str, Any] = {
            "id": _object_id(),
            "createdAt": iso_now(),
            "command": list(spec["command"]),
            "arguments": list(spec.get("arguments", [])),
            "environment": dict(spec["environment"]),
            "secrets": dict(spec.get("secrets", {})),
            "flavor": spec["flavor"],
            "labels": dict(spec.get("labels", {})) or None,
            "status": {"stage": "SCHEDULING", "message": None},
            "owner": owner,
            "initiator": {"type": "user", "id": self.user_id, "name": self.namespace},
        }
        if "dockerImage" in spec:
            job["dockerImage"] = spec["dockerImage"]
        else:
            job["spaceId"] = spec["spaceId"]
        if spec.get("timeoutSeconds") is not None:
            job["timeout"] = spec["timeoutSeconds"]
        if spec.get("attempts") is not None:
            job["retry"] = spec["attempts"] - 1
        for key in ("volumes", "expose", "network", "resourceGroupId"):
            if key in spec:
                job[key] = copy.deepcopy(spec[key])
        with self._cond:
            self.jobs[job["id"]] = job
            self.logs[job["id"]] = []
            callbacks = list(self._on_create)
        for cb in callbacks:
            cb(job)
        with self.lock:
            return self._public(job)

    def _get(self, ns: str, job_id: str) -> dict[str, Any]:
        self._owner(ns)
        job = self.jobs.get(job_id)
        if job is None or job["owner"]["name"] != ns:
            raise _ApiError(404, f"Job {job_id} not found")
        return job

    def _list_page(self, ns: str, query: dict[str, list[str]]) -> tuple[list[dict], str | None]:
        self._owner(ns)
        stages = {s.upper() for s in query.get("stage", [])}
        label_filters = []
        for item in query.get("label", []):
            key, sep, value = item.partition("=")
            label_filters.append((key, value if sep else None))
        try:
            cursor = int(query.get("cursor", ["0"])[0])
        except ValueError:
            raise _ApiError(400, "Invalid cursor") from None
        with self.lock:
            matching = []
            for job in self.jobs.values():  # creation order
                if job["owner"]["name"] != ns:
                    continue
                if stages and job["status"]["stage"] not in stages:
                    continue
                labels = job.get("labels") or {}
                if any(
                    k not in labels or (v is not None and labels[k] != v) for k, v in label_filters
                ):
                    continue
                matching.append(job)
            page = [self._public(j) for j in matching[cursor : cursor + self.page_size]]
        next_url = None
        if cursor + self.page_size < len(matching):
            params = [(k, v) for k, vs in query.items() if k != "cursor" for v in vs]
            params.append(("cursor", str(cursor + self.page_size)))
            next_url = f"{self.url}/api/jobs/{ns}?{urlencode(params)}"
        return page, next_url

    def _cancel(self, ns: str, job_id: str) -> dict[str, Any]:
        with self._cond:
            job = self._get(ns, job_id)
            if job["status"]["stage"] not in TERMINAL_STAGES:  # terminal: no-op, 200
                job["status"] = {"stage": "CANCELED", "message": None}
                job["finishedAt"] = iso_now()
                self._cond.notify_all()
            return self._public(job)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(x, str) for x in value)


_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(r"^/api/whoami-v2$"), "whoami"),
    ("GET", re.compile(r"^/api/jobs/hardware$"), "hardware"),
    ("POST", re.compile(r"^/api/jobs/(?P<ns>[^/]+)$"), "create"),
    ("GET", re.compile(r"^/api/jobs/(?P<ns>[^/]+)$"), "list"),
    ("GET", re.compile(r"^/api/jobs/(?P<ns>[^/]+)/(?P<id>[^/]+)$"), "inspect"),
    ("GET", re.compile(r"^/api/jobs/(?P<ns>[^/]+)/(?P<id>[^/]+)/logs$"), "logs"),
    ("POST", re.compile(r"^/api/jobs/(?P<ns>[^/]+)/(?P<id>[^/]+)/cancel$"), "cancel"),
    (
        "GET",
        re.compile(
            r"^/api/(?P<kind>models|datasets)/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+))?$"
        ),
        "repo_info",
    ),
]


def _match_route(method: str, path: str) -> tuple[str, dict[str, str]]:
    for route_method, pattern, name in _ROUTES:
        m = pattern.match(path)
        if m and route_method == method:
            return name, m.groupdict()
    raise _ApiError(404, f"Not Found: {method} {path}")


class _Handler(LoopbackHandler):
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -------------------------------------------------------------- plumbing
    def _dispatch(self, method: str) -> None:
        fake = self.server.fake
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        parsed: Any = None
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
        rec = RecordedRequest(
            method=method,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            json=parsed,
            raw_body=raw,
        )
        with fake.lock:
            fake.requests.append(rec)
        try:
            delay = fake._take_rule("delay", method, rec.path)
            if delay is not None and fake._closing.wait(delay.seconds):
                self.close_connection = True
                return
            fail = fake._take_rule("fail", method, rec.path)
            if fail is not None:
                body = fail.body if fail.body is not None else {"error": f"Injected {fail.status}"}
                self._send(rec, fail.status, body, fail.headers)
                return
            self._route(rec, method, raw, parsed)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _route(self, rec: RecordedRequest, method: str, raw: bytes, body: Any) -> None:
        fake = self.server.fake
        try:
            name, params = _match_route(method, rec.path)
            if name != "repo_info" or "authorization" in rec.headers:  # public repos: anyone
                fake._check_auth(rec.headers)
            ns, job_id = params.get("ns"), params.get("id")
            if name == "whoami":
                self._send(rec, 200, fake.whoami_payload())
            elif name == "repo_info":
                status, payload, headers = fake.repo_info(
                    params["kind"], params["repo"], unquote(params.get("rev") or "main")
                )
                self._send(rec, status, payload, headers)
            elif name == "hardware":
                self._send(rec, 200, fake.hardware)
            elif name == "create":
                if raw and body is None:
                    raise _ApiError(400, "Request body is not valid JSON")
                try:
                    self._send(rec, 200, fake._create(ns, body))
                except _ApiError:
                    raise
                except Exception as exc:  # an on_create callback blew up
                    raise _ApiError(500, f"create hook failed: {exc!r}") from exc
            elif name == "list":
                page, next_url = fake._list_page(ns, rec.query)
                headers = {"Link": f'<{next_url}>; rel="next"'} if next_url else {}
                self._send(rec, 200, page, headers)
            elif name == "inspect":
                with fake.lock:
                    job = fake._public(fake._get(ns, job_id))
                self._send(rec, 200, job)
            elif name == "cancel":
                self._send(rec, 200, fake._cancel(ns, job_id))
            elif name == "logs":
                with fake.lock:
                    fake._get(ns, job_id)
                tail = rec.query.get("tail", [None])[0]
                self._stream_logs(rec, job_id, int(tail) if tail else None)
        except _ApiError as err:
            self._send(rec, err.status, {"error": err.message})

    def _send(
        self,
        rec: RecordedRequest,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        if isinstance(body, bytes):
            data, ctype = body, "application/octet-stream"
        elif isinstance(body, str):
            data, ctype = body.encode(), "text/plain; charset=utf-8"
        else:
            data, ctype = json.dumps(body).encode(), "application/json; charset=utf-8"
        rec.status = status
        rec.response_body = data
        self.send_response(status)
        sent = {"Content-Type": ctype, "Content-Length": str(len(data)), **(headers or {})}
        for k, v in sent.items():
            self.send_header(k, v)
        rec.response_headers = sent
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, rec: RecordedRequest, data: bytes) -> None:
        rec.response_body += data
        self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))

    def _stream_logs(self, rec: RecordedRequest, job_id: str, tail: int | None) -> None:
        fake = self.server.fake
        rec.status = 200
        rec.response_headers = {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"}
        self.send_response(200)
        for k, v in rec.response_headers.items():
            self.send_header(k, v)
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()

        cut = fake._take_cut(job_id)
        with fake.lock:
            logs = fake.logs[job_id]  # append-only, shared
            idx = max(0, len(logs) - tail) if tail is not None else 0
        sent = 0
        last_write = last_event = time.monotonic()
        while True:
            with fake._cond:
                while True:
                    pending = logs[idx:]
                    done = fake.jobs[job_id]["status"]["stage"] in TERMINAL_STAGES
                    if pending or done or fake._closing.is_set():
                        break
                    now = time.monotonic()
                    waits = [last_write + fake.keepalive_s - now]
                    if fake.stream_idle_close_s is not None:
                        waits.append(last_event + fake.stream_idle_close_s - now)
                    if min(waits) <= 0:
                        break
                    fake._cond.wait(min(min(waits), 0.5))
            for event in pending:
                if cut is not None and sent >= cut:
                    return self._abort()
                line = b"data: " + json.dumps(event).encode() + b"\n\n"
                self._chunk(rec, line)
                sent += 1
                idx += 1
                last_write = last_event = time.monotonic()
            if pending:
                continue  # re-check for more before deciding to end
            now = time.monotonic()
            idle_close = (
                fake.stream_idle_close_s is not None
                and now - last_event >= fake.stream_idle_close_s
            )
            if done or fake._closing.is_set() or idle_close:
                if cut is not None:
                    return self._abort()
                self.wfile.write(b"0\r\n\r\n")
                return
            if now - last_write >= fake.keepalive_s:
                self._chunk(rec, b": keep-alive\n\n")
                last_write = now

    def _abort(self) -> None:
        """Close the socket mid-body: no terminating chunk."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def unbundle(encoded: str) -> dict[str, bytes]:
    """The files a job spec's bundle (``ci_runner.job_scripts.bundle_b64``) unpacks to."""
    data = gzip.decompress(base64.b64decode(encoded))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
