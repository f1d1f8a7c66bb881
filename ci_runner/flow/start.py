"""Starting: choosing which recorded runs get a job now (a run's first attempt, a resumed
attempt, a waiting pipeline stage or ``max_parallel`` run whose turn came) and launching
each one's training (``flow.launch``). Shared by ``submit`` (right away) and ``poll``
(later)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ci_runner.flow import schedule
from ci_runner.flow.base_eval import start_base_evaluation
from ci_runner.flow.launch import launch_training, new_attempt, resolve, with_base, with_job
from ci_runner.flow.pins import Pins
from ci_runner.flow.preflight import plan_run
from ci_runner.flow.records import new_run
from ci_runner.flow.workspace import Workspace
from ci_runner.ledger.model import Ledger, Run, RunStatus
from ci_runner.ledger.repository import replace_run
from ci_runner.plan.estimate import Plan
from ci_runner.spec.expand import RunSpec, expand, rerun_of


def specs_for(ws: Workspace, ledger: Ledger, backend: str) -> dict[str, RunSpec]:
    """The runs the ledger's experiment file describes now, by run id ({} if unreadable)."""
    try:
        experiment = ws.load(ws.root / ledger.spec_path, backend=backend)
    except Exception:  # noqa: BLE001 - any failure here means we cannot rebuild the runs
        return {}
    specs = {spec.run_id: spec for spec in expand(experiment)}
    for run in ledger.runs:  # reruns (``submit --rerun``) repeat a run the file describes
        original = specs.get(run.replicate_of or "")
        seed = (run.matrix or {}).get("seed")
        if original is not None and isinstance(seed, int):
            number = int(run.run_id.rsplit("-r", 1)[1])
            specs[run.run_id] = rerun_of(original, number, seed=seed)
    return specs


def requeue(ws: Workspace, run: Run, limit: int | None) -> Run:
    """Submitting a failed or canceled run again queues it: resumed if it had begun."""
    if any(a.job_id for a in run.attempts):
        run = new_attempt(ws, run)
        return run.model_copy(update={"max_parallel": limit})
    return run.model_copy(update={"status": RunStatus.QUEUED, "error": None, "max_parallel": limit})


def start_runs(
    ws: Workspace,
    ledger: Ledger,
    specs: Mapping[str, RunSpec] | None = None,
    plans: Mapping[str, Plan] | None = None,
) -> Ledger:
    """Start every run that should have a job now.

    First the runs recorded with an attempt but no job (a fresh single run, a resumed
    attempt, a crash between recording and launching), then the waiting runs whose turn
    has come. ``specs``/``plans``: what the caller already has (else rebuilt from the file).
    """
    cache: dict[str, dict[str, RunSpec]] = {}
    sizing: dict[Any, Any] = {}  # plan_run's model sizes and prices, shared by the starts

    def known(run: Run) -> Mapping[str, RunSpec]:
        if specs is not None:
            return specs
        if run.backend not in cache:
            cache[run.backend] = specs_for(ws, ledger, run.backend)
        return cache[run.backend]

    for run in list(ledger.active_runs):
        if not run.waiting and run.last_attempt is not None and run.last_attempt.job_id is None:
            started = _start(ws, ledger, run, known(run), plans or {}, sizing)
            ledger = replace_run(ledger, started)
    decisions = schedule.decide(ledger)
    for run_id, reason in decisions.stop.items():
        stopped = ledger.run(run_id)
        if stopped is not None:
            update = {"status": RunStatus.CANCELED, "error": reason}
            ledger = replace_run(ledger, stopped.model_copy(update=update))
    for run_id in decisions.start:
        waiting = ledger.run(run_id)
        if waiting is not None:
            started = _start(ws, ledger, waiting, known(waiting), plans or {}, sizing)
            ledger = replace_run(ledger, started)
    return ledger


def _start(
    ws: Workspace,
    ledger: Ledger,
    run: Run,
    specs: Mapping[str, RunSpec],
    plans: Mapping[str, Plan],
    sizing: dict[Any, Any],
) -> Run:
    """One run's training job launched, its record brought up to date, and its base
    evaluation beside it; a run its file no longer describes fails with the remedy."""
    spec = specs.get(run.run_id)
    if spec is None:
        what = f"attempt {run.last_attempt.number}" if run.last_attempt else "the run"
        return run.model_copy(
            update={
                "status": RunStatus.FAILED,
                "error": f"cannot start {what}: {ledger.spec_path} no longer describes this run; "
                "submit it again",
            }
        )
    experiment = with_base(ledger, spec)
    plan = plans.get(run.run_id) or plan_run(ws, spec.experiment, cache=sizing)
    pins = Pins(run.base_model_revision, run.dataset_revision)  # as submit pinned them
    resolved = resolve(ws, experiment, plan, run_id=run.run_id, pins=pins)
    if not run.attempts:  # a waiting run's first start: record it as it starts now
        fresh = new_run(
            spec, resolved, now=ws.now(), experiment=experiment, limit=run.max_parallel, pins=pins
        )
        run = fresh.model_copy(update={"created_at": run.created_at})
    run = with_job(run, launch_training(ws, experiment, resolved, run))
    return start_base_evaluation(ws, ledger, run)  # beside training, or reused


def cancel_waiting(ws: Workspace, ledger: Ledger, run_id: str) -> Ledger | None:
    """Cancel a run that has no job yet (waiting for its pipeline stage or its turn)."""
    run = ledger.run(run_id)
    if run is None or not run.waiting:
        return None
    update = {"status": RunStatus.CANCELED, "error": "canceled before it started"}
    return replace_run(ledger, run.model_copy(update=update))
