"""The ledgers of a project: list them, find a run, name a new report."""

from __future__ import annotations

from pathlib import Path

from ci_runner.errors import NotReadyError
from ci_runner.ledger.model import Ledger, Run
from ci_runner.ledger.store import CorruptLedgerError, LedgerScan, load_ledger, scan
from ci_runner.paths import LEDGER_SUFFIX, Project, report_stem


class UnknownRunError(NotReadyError):
    """No recorded run or experiment has that name (exit 4)."""


def stem_of(path: Path) -> str:
    return path.name.removesuffix(LEDGER_SUFFIX)


def scan_project(project: Project) -> LedgerScan:
    """Every ledger of the project that loads, and every one that does not."""
    return scan(project.ledger_paths())


def ledgers(project: Project) -> list[Ledger]:
    """The ledgers that load; an unreadable one is left out (``corrupt_ledgers`` names it)."""
    return scan_project(project).ledgers


def corrupt_ledgers(project: Project) -> list[CorruptLedgerError]:
    return scan_project(project).corrupt


def find_run(project: Project, run_id: str) -> tuple[Ledger, Run]:
    """By run id, else an experiment's latest run, else a unique run id prefix."""
    return find_run_in(ledgers(project), run_id)


def find_run_in(all_ledgers: list[Ledger], run_id: str) -> tuple[Ledger, Run]:
    """``find_run`` over ledgers already loaded."""
    for ledger in all_ledgers:
        for run in ledger.runs:
            if run.run_id == run_id:
                return ledger, run
    for ledger in all_ledgers:
        if ledger.experiment == run_id and ledger.runs:
            return ledger, ledger.runs[-1]
    matches = [(led, r) for led in all_ledgers for r in led.runs if r.run_id.startswith(run_id)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        names = ", ".join(r.run_id for _, r in matches)
        raise NotReadyError(f"{run_id!r} matches several runs ({names}); give more of the id")
    raise UnknownRunError(f"no run or experiment named {run_id!r}; see `ci-runner status`")


def runs_of(project: Project, name: str) -> list[Run]:
    """An experiment's runs, or the one run a run id (prefix) names."""
    for ledger in ledgers(project):
        if ledger.experiment == name:
            return list(ledger.runs)
    return [find_run(project, name)[1]]


def stem_for(
    project: Project,
    *,
    experiment: str,
    spec_path: Path,
    base_model: str,
    dataset: str,
    method: str,
) -> str:
    """The report a file's runs share: found again by experiment and file, else
    ``<model>-<dataset>-<method>``, suffixed with the experiment when another owns that."""
    relative = project.relative(spec_path)
    for path, ledger in scan_project(project).found:
        if ledger.experiment == experiment and ledger.spec_path == relative:
            return stem_of(path)
    stem = report_stem(base_model, dataset, method)
    # An unreadable ledger where this file's could be is raised, never written over.
    load_ledger(project.ledger_path(f"{stem}-{experiment}"))
    existing = load_ledger(project.ledger_path(stem))
    if existing is not None and existing.experiment != experiment:
        stem = f"{stem}-{experiment}"
    return stem


def replace_run(ledger: Ledger, run: Run) -> Ledger:
    return ledger.model_copy(
        update={"runs": [run if r.run_id == run.run_id else r for r in ledger.runs]}
    )
