"""Which waiting runs start now, and which never will. Pure: a ledger in, decisions out.

A run of a multi-run file waits (no job) while the stage before it is unfinished or
``max_parallel`` jobs are running. A stage whose predecessor failed or was canceled
never starts: the chain stops there, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ci_runner.ledger.model import Ledger, Run, RunStatus


@dataclass(frozen=True)
class Decisions:
    start: list[str] = field(default_factory=list)  # run ids, in ledger order
    stop: dict[str, str] = field(default_factory=dict)  # run id → why it will not start


def decide(ledger: Ledger) -> Decisions:
    decisions = Decisions()
    busy = sum(1 for run in ledger.runs if run.active and run.started)
    for run in ledger.runs:
        if not run.waiting:
            continue
        if run.depends_on:
            previous = ledger.run(run.depends_on)
            if previous is None or previous.active:
                continue
            if previous.status != RunStatus.COMPLETED:
                decisions.stop[run.run_id] = chain_stopped(previous)
                continue
        if busy >= (run.max_parallel or 1):
            continue
        decisions.start.append(run.run_id)
        busy += 1
    return decisions


def chain_stopped(previous: Run) -> str:
    stage = (
        f"stage {previous.stage_name} ({previous.run_id})"
        if previous.stage_name
        else previous.run_id
    )
    reason = f"not started: {stage} {previous.status.label.lower()}"
    return f"{reason}: {previous.error}" if previous.error else reason


def waiting_for(ledger: Ledger, run: Run) -> str:
    """What a waiting run waits for: the run it depends on, or a ``max_parallel`` slot."""
    previous = ledger.run(run.depends_on) if run.depends_on else None
    return run.depends_on if previous and previous.active and run.depends_on else "max_parallel"


def needs_submit(run: Run | None) -> bool:
    """Not recorded yet, or ended badly: submitting the file (again) starts it."""
    return run is None or run.status in (RunStatus.FAILED, RunStatus.CANCELED)
