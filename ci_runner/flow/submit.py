"""Submitting, the ``submit`` command: record a file's runs in its ledger, then start
those whose turn it is (``flow.start``), which launches their jobs (``flow.launch``).

One path for every file: a file without ``stages:`` or ``matrix:`` is a file of one run.
Runs already recorded are left alone (resubmitting starts nothing), failed or canceled ones
are queued again (resumed if they had begun), and the ledger records each intent before a
job is started, so a crash in between is repaired by the next ``submit`` or ``poll``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ci_runner.errors import NotReadyError
from ci_runner.flow import schedule
from ci_runner.flow.isolation import check_isolation
from ci_runner.flow.launch import resolve
from ci_runner.flow.pins import PinCache, Pins
from ci_runner.flow.preflight import (
    DataChecks,
    check_inputs,
    check_runs_data,
    plan_runs,
    require_plannable,
    sizing_problems,
)
from ci_runner.flow.records import methods_of, new_ledger, new_run
from ci_runner.flow.start import requeue, start_runs
from ci_runner.flow.workspace import Workspace
from ci_runner.ledger.model import Ledger, Run
from ci_runner.ledger.repository import replace_run, stem_for
from ci_runner.ledger.store import load_ledger, save_ledger
from ci_runner.plan.estimate import Plan
from ci_runner.plan.total import FilePlan
from ci_runner.report.files import write_index, write_report
from ci_runner.spec.expand import (
    ReplicateKey,
    RunSpec,
    expand,
    max_parallel,
    replicate_key,
    rerun_of,
)


def reruns(ledger: Ledger, runs: list[RunSpec]) -> tuple[list[RunSpec], dict[str, Pins]]:
    """A fresh replicate of every recorded run (of each replicate group, once): the next
    free seed of its group, the same pinned inputs. A run not recorded yet is submitted
    as it is."""
    fresh: list[RunSpec] = []
    pins: dict[str, Pins] = {}
    groups_done: set[ReplicateKey] = set()
    for spec in runs:
        original = ledger.run(spec.run_id)
        if original is None:
            fresh.append(spec)
            continue
        key = replicate_key(spec.matrix, spec.stage_name)
        if key is not None and key in groups_done:
            continue  # a replicate group gets one more seed, not one per member
        if key is not None:
            groups_done.add(key)
        group = [
            r
            for r in ledger.runs
            if r.run_id == spec.run_id
            or r.replicate_of == spec.run_id
            or (key is not None and replicate_key(r.matrix, r.stage_name) == key)
        ]
        seeds = {spec.experiment.seed} | {
            r.matrix["seed"] for r in group if r.matrix and isinstance(r.matrix.get("seed"), int)
        }
        number = 2 + sum(1 for r in ledger.runs if r.replicate_of == spec.run_id)
        copy = rerun_of(spec, number, seed=max(seeds) + 1)
        fresh.append(copy)
        pins[copy.run_id] = Pins(original.base_model_revision, original.dataset_revision)
    return fresh, pins


@dataclass(frozen=True)
class RunOutcome:
    """One run of a multi-run file, after submit."""

    run_id: str
    title: str
    status: str  # submitted | already submitted | waiting | not started
    job_id: str | None = None
    job_url: str | None = None
    waiting_for: str | None = None  # the run it depends on, or "max_parallel"


@dataclass(frozen=True)
class SubmitOutcome:
    experiment: str
    run_id: str
    job_id: str
    job_url: str
    created: bool  # False: the run already had a job, nothing was submitted
    report: Path
    plan: Plan | None  # None when nothing was submitted (or the file has several runs)
    warnings: list[str] = field(default_factory=list)
    # A file with `stages:` or `matrix:`: every run, and the plan of them all.
    runs: list[RunOutcome] = field(default_factory=list)
    file_plan: FilePlan | None = None


def submit(
    ws: Workspace,
    spec_path: Path,
    *,
    allow_over_budget: bool = False,
    check_data: bool = True,
    rerun: bool = False,
    backend: str | None = None,
) -> SubmitOutcome:
    """``rerun``: start a fresh replicate of each recorded run (same inputs, next seed)."""
    warnings: list[str] = []
    experiment = ws.load(spec_path, backend=backend, warnings=warnings)
    runs = expand(experiment)
    if rerun and experiment.stages:
        raise NotReadyError(
            f"{spec_path}: --rerun repeats single runs, not pipelines; to see the spread of "
            "a pipeline, add `replicates: N` to the file"
        )
    for spec in runs:
        check_inputs(spec.experiment)
        check_isolation(spec.experiment, str(spec_path))
    assert runs[0].experiment.dataset is not None  # the loader requires one of every run
    stem = stem_for(
        ws.project,
        experiment=experiment.name,
        spec_path=spec_path,
        base_model=experiment.base_model,
        dataset=runs[0].experiment.dataset.path,
        method="-".join(methods_of(runs)),
    )
    ledger_path = ws.project.ledger_path(stem)
    multi = experiment.is_multi_run
    limit = max_parallel(experiment) if multi else None
    with ws.lock(stem):
        ledger = load_ledger(ledger_path) or new_ledger(
            experiment,
            runs,
            spec_path=ws.project.relative(spec_path),
            report_path=ws.project.relative(ws.project.report_path(stem)),
        )
        recorded_pins: dict[str, Pins] = {}
        if rerun:
            runs, recorded_pins = reruns(ledger, runs)
        before = {r.run_id: r.last_attempt.job_id if r.last_attempt else None for r in ledger.runs}
        todo = [spec for spec in runs if schedule.needs_submit(ledger.run(spec.run_id))]
        file_plan = None
        if todo:
            pinning = PinCache(ws.root, token=ws.hf_token())  # a missing repo refuses, too
            pins = {
                spec.run_id: recorded_pins.get(spec.run_id)
                or pinning.pins(
                    spec.experiment, spec_path=str(spec_path), pin_model=not spec.base_from
                )
                for spec in todo
                if ledger.run(spec.run_id) is None
            }
            warnings += pinning.warnings
            # The rows checked are the rows the job loads: the pinned commit, when the
            # dataset has moved on since (or the file names an older revision).
            by_id = {spec.run_id: spec for spec in runs}
            revisions = {
                run_id: pinning.older_dataset_revision(by_id[run_id].experiment, pin.dataset)
                for run_id, pin in pins.items()
            }
            data = check_runs_data(ws, runs, revisions=revisions) if check_data else DataChecks()
            for check in data.misfits:
                check.require_fit(str(spec_path))
            warnings += [*data.warnings, *data.run_warnings()]
            file_plan = plan_runs(ws, experiment, runs, data.by_run)
            require_plannable(
                file_plan,
                runs,
                str(spec_path),
                allow_over_budget=allow_over_budget,
                unsized=sizing_problems(ws, file_plan, runs),
            )
            plans = {r.run_id: r.plan for r in file_plan.runs}
            for spec in todo:  # a backend that cannot be reached refuses before any record
                ws.backend(spec.experiment.backend)
            for spec in todo:
                run = ledger.run(spec.run_id)
                if run is None:
                    resolved = resolve(
                        ws,
                        spec.experiment,
                        plans[spec.run_id],
                        run_id=spec.run_id,
                        pins=pins[spec.run_id],
                    )
                    run = new_run(
                        spec,
                        resolved,
                        now=ws.now(),
                        limit=limit,
                        waiting=multi,
                        pins=pins[spec.run_id],
                    )
                    ledger = ledger.model_copy(update={"runs": [*ledger.runs, run]})
                else:
                    ledger = replace_run(ledger, requeue(ws, run, limit))
            save_ledger(ledger_path, ledger)  # intent first: a crash after this is recoverable
            ledger = start_runs(ws, ledger, {s.run_id: s for s in runs}, plans)
        elif not multi:  # a crash between recording and launching: launch it now
            ledger = start_runs(ws, ledger, {s.run_id: s for s in runs})
        save_ledger(ledger_path, ledger)
        write_report(ws.project, stem, ledger)
    write_index(ws.project)
    report = ws.project.report_path(stem)
    outcomes = [_outcome(ledger, ledger.run(s.run_id), before.get(s.run_id)) for s in runs]
    warnings = list(dict.fromkeys(warnings))
    if not multi:
        (only,) = outcomes
        plan = file_plan.runs[0].plan if file_plan and only.status == "submitted" else None
        created = only.status == "submitted"
        return SubmitOutcome(
            experiment.name,
            only.run_id,
            only.job_id or "",
            only.job_url or "",
            created,
            report,
            plan,
            warnings,
        )
    started = [o for o in outcomes if o.status == "submitted"]
    first = started[0] if started else outcomes[0]
    return SubmitOutcome(
        experiment.name,
        first.run_id,
        first.job_id or "",
        first.job_url or "",
        bool(started),
        report,
        None,
        warnings,
        outcomes,
        file_plan,
    )


def _outcome(ledger: Ledger, run: Run | None, job_before: str | None) -> RunOutcome:
    assert run is not None, "every run of the file was recorded"
    attempt = run.last_attempt
    if run.started and attempt is not None:
        status = "already submitted" if attempt.job_id == job_before else "submitted"
        return RunOutcome(run.run_id, run.title, status, attempt.job_id, attempt.job_url)
    if run.waiting:
        return RunOutcome(
            run.run_id, run.title, "waiting", waiting_for=schedule.waiting_for(ledger, run)
        )
    return RunOutcome(run.run_id, run.title, "not started")
