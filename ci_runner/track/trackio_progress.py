"""Every run's latest progress in a trackio project, in one read.

Jobs log to trackio (``report_to="trackio"``): the Trainer's ``on_log`` writes one
row per log with keys such as ``train/loss``, ``train/learning_rate``,
``train/epoch``, ``eval/loss`` and always ``train/global_step`` (transformers 5.23,
``TrackioCallback``). trackio keeps one SQLite file per project (0.43,
``sqlite_storage.py``): table ``metrics(id, run_id, timestamp, run_name, step,
metrics, ...)`` where ``metrics`` is orjson-encoded JSON (stored as a BLOB) and
``step`` is trackio's own log counter, not the Trainer's step; table
``configs(id, run_id, run_name, config, created_at)`` holds the run config, which
carries ``TrainingArguments.max_steps`` (-1 unless the user set it).

One SQL statement (:func:`progress_sql`) turns that into one row per run: the
run's last :data:`PACE_WINDOW` logs (latest step, loss, learning rate, epoch, and
the pace from their timestamps), its loss logs thinned to at most
:data:`MAX_CURVE_POINTS` points, and ``max_steps`` from its config. Only those rows
are parsed as JSON, so the cost stays low for long runs. The same statement runs
in two places:

* locally, on ``<TRACKIO_DIR>/<project>.db`` through stdlib ``sqlite3`` opened
  read-only (``file:…?mode=ro``);
* on a trackio Space (HF Jobs with ``tracking.space``), through the Space's own
  read-only SQL endpoint, exactly as ``trackio query project --space`` calls it
  (``RemoteClient.predict(project, sql, api_name="/query_project")`` over the 0.43
  HTTP API)::

      POST https://<owner>-<space>.hf.space/api/query_project
      {"args": ["<project>", "<sql>"], "kwargs": {}}
      -> 200 {"data": {"project", "query", "columns", "rows": [{column: value}], "row_count"}}
      -> 4xx/5xx {"error": "<message>"}   (an unknown project: 500 "Project '<p>' not found.")

  One POST for any number of runs (trackio's client would first ``GET /version``;
  every 0.43 Space serves this API, so that probe is skipped). No retry: a failed
  read is reported as unavailable, with the reason, and the next poll tries again.

Nothing here imports trackio, pandas or torch: the runner stays light.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ci_runner.core.durations import parse_stamp
from ci_runner.job_scripts import curves
from ci_runner.track.log_progress import Progress

URL_ENV = "CI_RUNNER_TRACKIO_URL"  # stands in for every Space's URL (tests, self-hosted trackio)
MAX_CURVE_POINTS = curves.MAX_POINTS
PACE_WINDOW = 20  # the pace (seconds per step) comes from the run's last logs
DEFAULT_TIMEOUT_S = 10.0
QUERY_API = "query_project"

STEP_KEY = "train/global_step"
LOSS_KEY = "train/loss"
LR_KEY = "train/learning_rate"
EPOCH_KEY = "train/epoch"


@dataclass(frozen=True)
class RunProgress:
    """One run's latest logged state, as trackio holds it."""

    run_name: str
    step: int | None  # the Trainer's global step at the latest log (else trackio's own step)
    max_steps: int | None  # from the run's config, when the user set max_steps; else None
    loss: float | None  # the latest finite train/loss
    eta_s: float | None  # seconds left as of ``updated_at``; None without max_steps or a pace
    updated_at: str | None  # ISO time of the latest log (UTC, as trackio stores it)
    loss_curve: list[tuple[int, float]] = field(default_factory=list)  # <= MAX_CURVE_POINTS
    learning_rate: float | None = None
    epoch: float | None = None
    s_per_step: float | None = None  # recent pace, for an ETA from a max_steps known elsewhere
    num_logs: int = 0

    def eta_for(self, max_steps: int | None) -> float | None:
        """Seconds left at the recent pace, for a ``max_steps`` known from elsewhere."""
        if not max_steps or self.step is None or self.s_per_step is None:
            return None
        return max(0.0, (max_steps - self.step) * self.s_per_step)

    def to_progress(self) -> Progress:
        """The shape ``ledger.advance.metrics_from_progress`` folds into a run's metrics."""
        return Progress(
            step=self.step,
            max_steps=self.max_steps,
            loss=self.loss,
            learning_rate=self.learning_rate,
            eta_s=self.eta_s,
            loss_curve=list(self.loss_curve),
        )


@dataclass(frozen=True)
class TrackioProgress:
    """The answer of one read of one project.

    ``runs`` is None when the store could not be read this time (``reason`` says
    why): progress shown from earlier reads is then stale. A run that logged
    nothing yet is simply absent from ``runs``; so is every run of a project that
    has no store yet.
    """

    project: str
    source: str  # "sqlite" or "space"
    location: str  # the database path, or the Space's base URL
    runs: dict[str, RunProgress] | None
    reason: str | None = None
    requests: int = 0  # HTTP requests this read made

    @property
    def fresh(self) -> bool:
        return self.runs is not None


# -- the query ------------------------------------------------------------------


def _literal(text: str) -> str:
    if "\x00" in text:
        raise ValueError(f"a run name cannot contain NUL: {text!r}")
    return "'" + text.replace("'", "''") + "'"


def _keys(*keys: str) -> str:
    """The values under ``keys`` of the row's JSON, as one JSON array in their original text.

    One parse per row; numbers keep the exact text orjson wrote (rendering a SQL REAL
    would keep 15 digits only). A missing key is null; NaN comes as the string "NaN".
    """
    paths = ", ".join(f"'$.\"{key}\"'" for key in keys)
    return f"json(json_extract(j, {paths}))"


def progress_sql(run_names: Iterable[str]) -> str:
    """One read-only statement: one row per run among ``run_names`` that has logs.

    Only a few rows per run are parsed as JSON: the run's last :data:`PACE_WINDOW`
    logs and its loss logs thinned to at most :data:`MAX_CURVE_POINTS` (the last one
    kept); the other rows are only searched for the loss key. Columns:

    * ``run_name``, ``num_logs``, ``max_steps`` (the config's, -1 when unset);
    * ``curve``: JSON ``[[id, trackio_step, [global_step, loss]], …]``;
    * ``recent``: JSON ``[[id, trackio_step, timestamp, [global_step, loss, learning_rate,
      epoch]], …]``.

    ``metrics`` and ``config`` are cast to TEXT: trackio stores them as BLOBs, which
    SQLite >= 3.45 would otherwise take for JSONB.
    """
    names = ", ".join(_literal(name) for name in sorted(set(run_names)))
    every = MAX_CURVE_POINTS - 1
    stride = f"((r.loss_n + {every - 1}) / {every})"  # ceil(loss logs / 199)
    on_curve = f"r.has_loss AND ((r.loss_rn - 1) % {stride} = 0 OR r.loss_rn = r.loss_n)"
    curve = f"json_array(id, log_step, {_keys(STEP_KEY, LOSS_KEY)})"
    recent = f"json_array(id, log_step, timestamp, {_keys(STEP_KEY, LOSS_KEY, LR_KEY, EPOCH_KEY)})"
    return f"""
WITH marked AS (
  SELECT id, run_name, instr(CAST(metrics AS TEXT), '"{LOSS_KEY}"') > 0 AS has_loss
  FROM metrics WHERE run_name IN ({names})
),
ranked AS (
  SELECT id, run_name, has_loss,
    COUNT(*) OVER whole AS num_logs,
    ROW_NUMBER() OVER (PARTITION BY run_name ORDER BY id DESC) AS recent,
    SUM(has_loss) OVER (PARTITION BY run_name ORDER BY id) AS loss_rn,
    SUM(has_loss) OVER whole AS loss_n
  FROM marked
  WINDOW whole AS (PARTITION BY run_name)
),
picked AS (
  SELECT r.run_name, r.id, r.num_logs, r.recent <= {PACE_WINDOW} AS is_recent,
    {on_curve} AS on_curve,
    m.timestamp, m.step AS log_step, CAST(m.metrics AS TEXT) AS j
  FROM ranked AS r JOIN metrics AS m ON m.id = r.id
  WHERE r.recent <= {PACE_WINDOW} OR ({on_curve})
),
config AS (
  SELECT run_name, json_extract(CAST(config AS TEXT), '$.max_steps') AS max_steps
  FROM configs
  WHERE id IN (SELECT MAX(id) FROM configs WHERE run_name IN ({names}) GROUP BY run_name)
)
SELECT picked.run_name AS run_name, MAX(picked.num_logs) AS num_logs,
  MAX(config.max_steps) AS max_steps,
  json_group_array({curve}) FILTER (WHERE on_curve) AS curve,
  json_group_array({recent}) FILTER (WHERE is_recent) AS recent
FROM picked LEFT JOIN config ON config.run_name = picked.run_name
GROUP BY picked.run_name
ORDER BY picked.run_name
""".strip()


# -- rows -> RunProgress ----------------------------------------------------------


def finite_number(value: Any) -> float | None:
    """A finite int or float as a float; None for anything else (bools, NaN, text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return parse_stamp(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class _Log:
    """One parsed trackio log row."""

    id: int
    step: int  # the Trainer's global step, else trackio's own step
    has_global_step: bool
    loss: float | None
    timestamp: str | None = None
    learning_rate: float | None = None
    epoch: float | None = None


def _logs(text: Any, recent: bool) -> list[_Log]:
    """The ``curve`` or ``recent`` column: a JSON array of ``[id, step, (timestamp,) values]``."""
    if isinstance(text, str):
        try:
            items = json.loads(text)
        except ValueError:
            items = []
    else:
        items = []
    logs = []
    for item in items if isinstance(items, list) else []:
        width = 4 if recent else 3
        if not isinstance(item, list) or len(item) != width or not isinstance(item[-1], list):
            continue
        values = [*item[-1], None, None, None, None]
        log_id, log_step, global_step = _int(item[0]), _int(item[1]), _int(values[0])
        step = global_step if global_step is not None else log_step
        if log_id is None or step is None:
            continue
        logs.append(
            _Log(
                id=log_id,
                step=step,
                has_global_step=global_step is not None,
                loss=finite_number(values[1]),
                timestamp=item[2] if recent and isinstance(item[2], str) else None,
                learning_rate=finite_number(values[2]),
                epoch=finite_number(values[3]),
            )
        )
    return sorted(logs, key=lambda log: log.id)


def _curve(logs: list[_Log]) -> list[tuple[int, float]]:
    """Sorted (step, loss); a later log of the same step wins (a resumed attempt).

    Already thinned by :func:`progress_sql`; the ledger thins again with ``curves.downsample``.
    """
    points = {log.step: log.loss for log in logs if log.loss is not None}
    return sorted(points.items())


def _pace(recent: list[_Log]) -> float | None:
    """Seconds per step over the last logs, back to the last resume (where steps drop)."""
    timed = [
        (log.step, when)
        for log in reversed(recent)  # newest first
        if log.has_global_step and (when := _time(log.timestamp)) is not None
    ]
    if not timed:
        return None
    newest_step, newest_time = timed[0]
    oldest = None
    previous = newest_step
    for step, when in timed[1:]:
        if step > previous:
            break  # an earlier attempt, before a resume from a checkpoint
        previous = step
        if step < newest_step:
            oldest = (step, when)
    if oldest is None:
        return None
    # trackio stamps a batch of logs at flush time: equal stamps say nothing about pace.
    seconds = (newest_time - oldest[1]).total_seconds()
    return seconds / (newest_step - oldest[0]) if seconds > 0 else None


def _latest(logs: list[_Log], attribute: str) -> Any:
    return next((v for log in reversed(logs) if (v := getattr(log, attribute)) is not None), None)


def run_from_row(row: Mapping[str, Any]) -> RunProgress:
    """One row of :func:`progress_sql` (from sqlite3, or from the Space's JSON)."""
    curve = _logs(row.get("curve"), recent=False)
    recent = _logs(row.get("recent"), recent=True)
    stepped = [log for log in recent if log.has_global_step]
    latest = recent[-1] if recent else None
    max_steps = _int(row.get("max_steps"))
    progress = RunProgress(
        run_name=str(row["run_name"]),
        step=(stepped or recent)[-1].step if recent else None,
        max_steps=max_steps if max_steps is not None and max_steps > 0 else None,
        loss=_latest(sorted([*curve, *recent], key=lambda log: log.id), "loss"),
        eta_s=None,
        updated_at=latest.timestamp if latest else None,
        loss_curve=_curve(curve),
        learning_rate=_latest(recent, "learning_rate"),
        epoch=_latest(recent, "epoch"),
        s_per_step=_pace(recent),
        num_logs=_int(row.get("num_logs")) or 0,
    )
    eta = progress.eta_for(progress.max_steps)
    return progress if eta is None else replace(progress, eta_s=round(eta, 1))


def runs_from_rows(rows: Iterable[Mapping[str, Any]]) -> dict[str, RunProgress]:
    runs = [run_from_row(row) for row in rows if isinstance(row.get("run_name"), str)]
    return {run.run_name: run for run in runs}


# -- where the store is -----------------------------------------------------------


def canonical_project_name(project: str) -> str:
    """trackio 0.43's on-disk name of a project (``utils.canonical_project_name``)."""
    safe = "".join(c for c in project if c.isalnum() or c in ("-", "_")).rstrip()
    return safe or "default"


def default_trackio_dir() -> Path:
    """``$TRACKIO_DIR``, else ``$HF_HOME/trackio`` (trackio's own default)."""
    if os.environ.get("TRACKIO_DIR"):
        return Path(os.environ["TRACKIO_DIR"])
    cache = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    hf_home = os.environ.get("HF_HOME") or os.path.join(cache, "huggingface")
    return Path(hf_home).expanduser() / "trackio"


def project_db_path(project: str, trackio_dir: Path | None = None) -> Path:
    return (trackio_dir or default_trackio_dir()) / f"{canonical_project_name(project)}.db"


def space_url(space: str) -> str:
    """A Space's base URL, as trackio's ``RemoteClient`` derives it; a full URL is kept.

    ``$CI_RUNNER_TRACKIO_URL``, when set, stands in for every Space.
    """
    override = os.environ.get(URL_ENV)
    if override:
        return override if override.endswith("/") else override + "/"
    if space.startswith(("http://", "https://")):
        return space if space.endswith("/") else space + "/"
    if space.count("/") != 1 or not all(space.split("/")):
        raise ValueError(
            f"tracking.space {space!r} must be <owner>/<space> (or the Space's URL) to be read"
        )
    owner, name = space.split("/")
    subdomain = f"{owner}-{name}".lower().replace("_", "-").replace(".", "-")
    return f"https://{subdomain}.hf.space/"


def _is_hf_space(url: str) -> bool:
    return (urlsplit(url).hostname or "").lower().endswith(".hf.space")


# -- reading ------------------------------------------------------------------------


def read_local(
    project: str, run_names: Iterable[str], trackio_dir: Path | None = None
) -> TrackioProgress:
    """Read the project's SQLite store directly, read-only, in one statement."""
    names = set(run_names)
    path = project_db_path(project, trackio_dir)
    where = str(path)
    if not names or not path.is_file():
        return TrackioProgress(project, "sqlite", where, {})
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        return TrackioProgress(project, "sqlite", where, None, f"cannot open {path}: {exc}")
    try:
        conn.row_factory = sqlite3.Row
        rows = [dict(row) for row in conn.execute(progress_sql(names))]
    except sqlite3.Error as exc:
        if "no such table" in str(exc):  # created, tables not written yet
            return TrackioProgress(project, "sqlite", where, {})
        return TrackioProgress(project, "sqlite", where, None, f"cannot read {path}: {exc}")
    finally:
        conn.close()
    return TrackioProgress(project, "sqlite", where, runs_from_rows(rows))


def _request_headers(url: str, token: str | None) -> dict[str, str]:
    """trackio's own headers; the HF token goes only to ``*.hf.space`` (as trackio does)."""
    from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]

    if _is_hf_space(url):
        return build_hf_headers(token=token, library_name="ci-runner")
    return build_hf_headers(token=False, library_name="ci-runner")


def _error_text(response: Any) -> str:
    """trackio's ``{"error": ...}``, else a short, single-line hint at what came back."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        return error
    if "html" in response.headers.get("content-type", ""):
        return "an HTML page"
    text = " ".join((response.text or "").split())
    return text[:200] or response.reason_phrase


def read_space(
    project: str,
    run_names: Iterable[str],
    space: str,
    *,
    token: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> TrackioProgress:
    """One ``POST <space>/api/query_project`` for every run of the project."""
    names = set(run_names)
    try:
        base = space_url(space)
    except ValueError as exc:
        return TrackioProgress(project, "space", space, None, str(exc))
    if not names:
        return TrackioProgress(project, "space", base, {})

    import httpx2
    from huggingface_hub import get_session
    from huggingface_hub.errors import OfflineModeIsEnabled

    def unavailable(reason: str, requests: int = 1) -> TrackioProgress:
        return TrackioProgress(project, "space", base, None, reason, requests)

    url = f"{base}api/{QUERY_API}"
    payload = {"args": [project, progress_sql(names)], "kwargs": {}}
    try:
        response = get_session().post(
            url, json=payload, headers=_request_headers(base, token), timeout=timeout_s
        )
    except OfflineModeIsEnabled:
        return unavailable("HF_HUB_OFFLINE is set, so the trackio Space is not asked", 0)
    except httpx2.TimeoutException:
        return unavailable(f"the trackio Space did not answer within {timeout_s:g}s")
    except (httpx2.HTTPError, OSError) as exc:
        return unavailable(f"could not read the trackio Space ({type(exc).__name__})")

    if response.status_code != 200:
        message = _error_text(response)
        if response.status_code == 500 and message == f"Project '{project}' not found.":
            return TrackioProgress(project, "space", base, {}, None, 1)  # nothing logged yet
        if response.status_code == 404 and "Unknown API" not in message:
            message = "no trackio HTTP API here (an older, Gradio-based trackio, or no trackio)"
        return unavailable(f"the trackio Space answered HTTP {response.status_code}: {message}")
    try:
        body = response.json()
    except ValueError:
        kind = response.headers.get("content-type", "?").split(";")[0]
        return unavailable(f"the trackio Space sent no JSON ({kind}); is it asleep or building?")
    data = body.get("data") if isinstance(body, dict) else None
    if isinstance(body, dict) and body.get("error") is not None:
        return unavailable(f"the trackio Space refused the query: {body['error']}")
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        return unavailable("the trackio Space's answer has no rows")
    return TrackioProgress(project, "space", base, runs_from_rows(rows), None, 1)


def read_progress(
    project: str,
    run_names: Iterable[str],
    *,
    space: str | None = None,
    trackio_dir: Path | None = None,
    token: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> TrackioProgress:
    """The latest progress of ``run_names`` in ``project``: one read, wherever it lives.

    With ``space`` (``tracking.space``: jobs on HF Jobs log there), one HTTP request
    to the Space; without, the local store under ``trackio_dir`` (default
    ``$TRACKIO_DIR`` or ``$HF_HOME/trackio``).
    """
    if space:
        return read_space(project, run_names, space, token=token, timeout_s=timeout_s)
    return read_local(project, run_names, trackio_dir)
