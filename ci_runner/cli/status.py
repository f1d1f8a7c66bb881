"""``ci-runner status``, and ``run``'s live view: a table in the spirit of ``hf jobs ps``.

Rendered with rich, which colours only a terminal and honours ``NO_COLOR``; piped output
is plain text. Machines read ``status --json`` instead.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import click

from ci_runner import commands as cmd
from ci_runner.cli.options import JSON_OPTION, ROOT_OPTION, workspace
from ci_runner.cli.output import echo, echo_findings, emit_json, end_if_unreadable, warn
from ci_runner.core.durations import parse_stamp, short
from ci_runner.core.jobs import Phase
from ci_runner.documents import ledgers_json
from ci_runner.ledger.model import Ledger, Run, RunStatus
from ci_runner.report.health import check_run

STYLES = {
    RunStatus.COMPLETED: "green",
    RunStatus.FAILED: "bold red",
    RunStatus.CANCELED: "yellow",
    RunStatus.RUNNING: "cyan",
    RunStatus.QUEUED: "dim",
}
COLUMNS = ("Run", "Job", "Where", "Status", "Step", "Loss", "Elapsed", "ETA", "Cost")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def elapsed_s(run: Run, now: datetime) -> float | None:
    """Wall time of the run so far: its first submission to its end (or now)."""
    if not run.attempts:
        return None
    start = parse_stamp(run.attempts[0].submitted_at)
    ends = [a.finished_at for a in run.attempts if a.finished_at]
    end = parse_stamp(ends[-1]) if ends and not run.active else now
    return max(0.0, (end - start).total_seconds())


def cost_so_far(run: Run, now: datetime) -> float | None:
    """Ended attempts' recorded cost, plus the running one's wall time at the flavor's price."""
    if not run.usd_per_hour:
        return None
    total = sum(a.cost_usd or 0.0 for a in run.attempts)
    attempt = run.last_attempt
    if attempt and attempt.job_id and not attempt.state.terminal:
        seconds = (now - parse_stamp(attempt.submitted_at)).total_seconds()
        total += max(0.0, seconds) / 3600 * run.usd_per_hour
    return total


def status_text(run: Run) -> str:
    """The run's status, and while it evaluates or exports, how many of those jobs are done."""
    text = run.status.label
    if run.waiting:
        return f"{text} (waiting for {run.depends_on or 'a slot'})"
    if run.active and run.phase in (Phase.EVAL, Phase.EXPORT):
        jobs = run.current_phase_jobs
        done = sum(j.done for j in jobs)
        return f"{text} · {'eval' if run.phase == Phase.EVAL else 'export'} {done}/{len(jobs)}"
    return text


def row(run: Run, now: datetime) -> list[str]:
    m = run.metrics
    attempt = run.last_attempt
    where = str(run.backend) if run.backend == "local" else f"{run.backend}/{run.hardware}"
    step = f"{m.step}/{m.max_steps or '?'}" if m and m.step is not None else ""
    loss = f"{m.final_loss:.4f}" if m and m.final_loss is not None else ""
    eta = ""
    if run.active and m and m.eta_s is not None:
        eta = short(m.eta_s) + (" (stale)" if m.stale else "")
    elif run.active and m and m.stale:
        eta = "stale"
    elapsed = elapsed_s(run, now)
    cost = cost_so_far(run, now)
    return [
        run.run_id,
        (attempt.job_id or "") if attempt else "",
        where,
        status_text(run),
        step,
        loss,
        short(elapsed) if elapsed is not None else "",
        eta,
        f"${cost:.2f}" if cost is not None else "",
    ]


def status_table(ledgers: list[Ledger], now: datetime | None = None) -> Any:
    """A rich ``Table`` of every run: what ``ci-runner status`` prints."""
    from rich.table import Table

    now = now or _now()
    table = Table(*COLUMNS, box=None, pad_edge=False, header_style="bold")
    for ledger in ledgers:
        for run in ledger.runs:
            table.add_row(*row(run, now), style=STYLES.get(run.status))
            if run.error and not run.active:
                table.add_row(f"  {run.error}", *([""] * (len(COLUMNS) - 1)), style="dim")
            findings = check_run(run)
            if findings:  # the remedies follow the table (``echo_findings``)
                marks = "⚠ " + ", ".join(f.title for f in findings)
                table.add_row(f"  {marks}", *([""] * (len(COLUMNS) - 1)), style="yellow")
    return table


def console(*, stderr: bool = False) -> Any:
    """A terminal keeps its own width; piped output is wide enough never to cut an id."""
    from rich.console import Console

    probe = Console(stderr=stderr)
    width = None if probe.is_terminal else 240
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


def progress_bar(run: Run, width: int = 20) -> str:
    """``[#####-----] 5/12 loss 2.3451 · ETA 1m``: ``run``'s one line on a terminal."""
    m = run.metrics
    parts = [f"{run.run_id}: {status_text(run)}"]
    if m and m.step is not None and m.max_steps:
        filled = round(width * min(m.step, m.max_steps) / m.max_steps)
        parts.append(f"[{'#' * filled}{'-' * (width - filled)}] {m.step}/{m.max_steps}")
    if m and m.final_loss is not None:
        parts.append(f"loss {m.final_loss:.4f}")
    if run.active and m and m.eta_s is not None:
        parts.append(f"ETA {short(m.eta_s)}")
    return " · ".join(parts)


@click.command()
@click.argument("names", nargs=-1)
@ROOT_OPTION
@click.option(
    "--watch",
    type=float,
    is_flag=False,
    flag_value=5.0,
    default=None,
    metavar="[SECONDS]",
    help="Refresh in place every SECONDS (default 5) until interrupted.",
)
@JSON_OPTION
@click.pass_context
def status(
    ctx: click.Context, names: tuple[str, ...], root: str | None, watch: float | None, as_json: bool
) -> None:
    """Every run, or the runs of NAMES (run ids, prefixes or experiment names), as the
    backends see them now: one bulk status call per backend, one progress read per project.

    Reads the live state without writing anything; `poll` is what records it.
    """
    ws = workspace(ctx, root)

    warnings: list[str] = []

    def current() -> list[Ledger]:
        return cmd.status_ledgers(ws, names, warnings)

    if as_json:
        emit_json(ledgers_json(current()))
        end_if_unreadable([] if names else cmd.unreadable_ledgers(ws))
        return
    out = console()
    ledgers = current()
    for warning in dict.fromkeys(warnings):
        warn(warning)
    unreadable = [] if names else cmd.unreadable_ledgers(ws)
    if not ledgers and not unreadable:
        echo("no experiments submitted yet; try `ci-runner submit experiments/<name>.yaml`")
        return
    if watch is None:
        out.print(status_table(ledgers))
        for ledger in ledgers:
            for run in ledger.runs:
                echo_findings(run)
        end_if_unreadable(unreadable)
        return
    from rich.live import Live

    try:
        with Live(status_table(ledgers), console=out, auto_refresh=False) as live:
            while True:
                time.sleep(watch)
                live.update(status_table(current()), refresh=True)
    except KeyboardInterrupt:
        return
