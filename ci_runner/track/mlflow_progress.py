"""Every run's latest progress in an MLflow experiment, from MLflow's own client.

Jobs with ``tracking.backend: mlflow`` log through transformers' ``MLflowCallback``
(5.23): one MLflow run per attempt, in the experiment ``tracking.experiment`` (else
``tracking.project``, else the ci-runner experiment's name), with the Trainer's logs as
metrics keyed ``loss``, ``learning_rate``, ``epoch``, ``grad_norm``, ``eval_loss``... at
``step=state.global_step``, and every ``TrainingArguments`` field as a param (so
``max_steps``, ``-1`` unless set). ``train.py`` tags each run ``ci-runner.run=<run id>``
(``MLFLOW_TAGS``): that tag, not MLflow's run name, is how a run is found.

One read is one ``MlflowClient.search_runs`` call for the experiment (plus, the first
time a process asks about an experiment, ``get_experiment_by_name`` for its id, which is
then kept). A search result carries each metric's *latest* value with its step and time,
and the run's params and tags, which is enough for the step, the loss, the learning rate,
``max_steps`` and an ETA. It does not carry metric histories: each read adds one point
to the loss curve (the ledger merges curves across reads, as it does for log tails), and
the full curve arrives with the job's summary.

The pace behind the ETA is the run's average since MLflow started it (model loading
included), since one call sees only the latest log: an upper bound early in a run.

Same contract as :func:`ci_runner.track.trackio_progress.read_progress`: runs keyed by
ci-runner run id, as ``RunProgress``; ``runs`` None with a ``reason`` when the store
could not be read (then the next read tries again). MLflow (the ``[mlflow]`` extra) is
imported only here, when a read happens.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ci_runner.job_scripts.mlflow_store import init_lock, sqlite_file
from ci_runner.track.trackio_progress import RunProgress, finite_number

RUN_TAG = "ci-runner.run"
LOSS_KEY = "loss"
LR_KEY = "learning_rate"
EPOCH_KEY = "epoch"
DEFAULT_TIMEOUT_S = 10.0
MAX_RESULTS = 1000  # runs per search_runs page; more pages only for larger experiments
MAX_PAGES = 10

_experiment_ids: dict[tuple[str, str], str] = {}
_env_lock = threading.Lock()


@dataclass(frozen=True)
class MlflowProgress:
    """The answer of one read of one MLflow experiment (fields as ``TrackioProgress``)."""

    project: str  # the MLflow experiment's name
    source: str  # "mlflow"
    location: str  # the tracking URI read
    runs: dict[str, RunProgress] | None
    reason: str | None = None
    requests: int = 0  # MLflow client calls this read made
    experiment_id: str | None = None

    @property
    def fresh(self) -> bool:
        return self.runs is not None


def resolve_uri(uri: str, root: Path | None = None) -> str:
    """A relative ``sqlite:///`` path is relative to the project root (a local job's
    working directory), not to wherever the runner was started."""
    prefix = "sqlite:///"
    if root is not None and uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str((root / uri[len(prefix) :]).resolve())
    return uri


def _store_missing(uri: str) -> bool:
    """A local store not created yet: nothing logged, and a read must not create it."""
    database = sqlite_file(uri)
    return database is not None and not database.is_file()


@contextlib.contextmanager
def _bounded_http(timeout_s: float) -> Iterator[None]:
    """MLflow's REST client retries 7 times over minutes by default; a poll must not."""
    settings = {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, math.ceil(timeout_s))),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    }
    with _env_lock:
        saved = {key: os.environ.get(key) for key in settings}
        os.environ.update(settings)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


# -- MLflow runs -> RunProgress -----------------------------------------------------


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat()


def run_progress(run: Any, name: str) -> RunProgress:
    """One MLflow ``Run`` (from ``search_runs``) as the runner's ``RunProgress``."""
    # A search result keeps each metric's latest value with its step and timestamp in
    # ``RunData._metric_objs`` (``RunData.metrics`` has the values only).
    latest = {m.key: m for m in getattr(run.data, "_metric_objs", []) or []}
    loss = latest.get(LOSS_KEY)
    logged = [m for m in latest.values() if m.key in (LOSS_KEY, LR_KEY, EPOCH_KEY)]
    step = max((int(m.step) for m in logged), default=None)
    updated_ms = max((int(m.timestamp) for m in logged), default=None)
    try:
        max_steps: int | None = int(run.data.params.get("max_steps", ""))
    except ValueError:
        max_steps = None
    pace = None
    if step and updated_ms is not None and run.info.start_time:
        seconds = (updated_ms - int(run.info.start_time)) / 1000
        pace = seconds / step if seconds > 0 else None
    loss_value = finite_number(loss.value) if loss is not None else None
    progress = RunProgress(
        run_name=name,
        step=step,
        max_steps=max_steps if max_steps is not None and max_steps > 0 else None,
        loss=loss_value,
        eta_s=None,
        updated_at=_iso(updated_ms),
        loss_curve=[(int(loss.step), loss_value)] if loss and loss_value is not None else [],
        learning_rate=finite_number(run.data.metrics.get(LR_KEY)),
        epoch=finite_number(run.data.metrics.get(EPOCH_KEY)),
        s_per_step=pace,
        num_logs=0,  # not known from one search
    )
    eta = progress.eta_for(progress.max_steps)
    return progress if eta is None else replace(progress, eta_s=round(eta, 1))


def runs_by_name(mlflow_runs: Iterable[Any], names: set[str]) -> dict[str, RunProgress]:
    """Per ci-runner run, its newest MLflow run (a resumed attempt starts a new one);
    earlier attempts' last losses stay on the curve."""
    found: dict[str, list[Any]] = {}
    for run in mlflow_runs:
        name = run.data.tags.get(RUN_TAG) or run.info.run_name
        if name in names:
            found.setdefault(name, []).append(run)
    result = {}
    for name, runs in found.items():
        runs.sort(key=lambda r: (r.info.start_time or 0, r.info.run_id))
        newest = run_progress(runs[-1], name)
        curve = dict(point for r in runs for point in run_progress(r, name).loss_curve)
        result[name] = replace(newest, loss_curve=sorted(curve.items()))
    return result


# -- reading ---------------------------------------------------------------------------


def _filter(names: set[str]) -> str:
    if len(names) == 1:
        (name,) = names
        return f"tags.`{RUN_TAG}` = '{name.replace(chr(39), chr(39) * 2)}'"
    return f"tags.`{RUN_TAG}` LIKE '%'"  # every run ci-runner started in the experiment


def read_progress(
    experiment: str,
    run_names: Iterable[str],
    *,
    tracking_uri: str | None = None,
    root: Path | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> MlflowProgress:
    """The latest progress of ``run_names`` (ci-runner run ids) in the MLflow experiment
    ``experiment`` at ``tracking_uri`` (default: ``$MLFLOW_TRACKING_URI``, else MLflow's
    own default). ``root`` resolves a relative ``sqlite:///`` store, as local jobs wrote it.
    """
    names = set(run_names)
    uri = resolve_uri(tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", ""), root)

    def answer(runs: dict[str, RunProgress] | None, **fields: Any) -> MlflowProgress:
        return MlflowProgress(experiment, "mlflow", uri or "default", runs, **fields)

    if not names or (uri and _store_missing(uri)):
        return answer({})
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        return answer(None, reason="mlflow is not installed: pip install 'ci-runner[mlflow]'")

    # A local store a job is still creating: wait for it, and never create it twice.
    database = sqlite_file(uri)
    one_initialiser = (
        init_lock(database, wait_s=timeout_s) if database is not None else contextlib.nullcontext()
    )
    requests = 0
    try:
        with _bounded_http(timeout_s), one_initialiser:
            client = MlflowClient(tracking_uri=uri or None)
            key = (uri, experiment)
            experiment_id = _experiment_ids.get(key)
            if experiment_id is None:
                requests += 1
                found = client.get_experiment_by_name(experiment)
                if found is None:  # nothing logged yet
                    return answer({}, requests=requests)
                experiment_id = _experiment_ids[key] = str(found.experiment_id)
            runs: list[Any] = []
            token = None
            for _ in range(MAX_PAGES):
                requests += 1
                page = client.search_runs(
                    [experiment_id],
                    filter_string=_filter(names),
                    max_results=MAX_RESULTS,
                    page_token=token,
                )
                runs += list(page)
                token = page.token
                if not token:
                    break
    except Exception as exc:  # noqa: BLE001 - any failure: unavailable this time, say why
        _experiment_ids.pop((uri, experiment), None)  # deleted and made again, perhaps
        text = " ".join(str(exc).split())[:300]
        return answer(
            None,
            reason=f"could not read MLflow at {uri or 'default'}: {type(exc).__name__}: {text}",
            requests=requests,
        )
    return answer(runs_by_name(runs, names), requests=requests, experiment_id=experiment_id)
