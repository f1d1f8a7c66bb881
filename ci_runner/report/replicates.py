"""Seed replicates: runs of one configuration under several seeds (``replicates: N``,
``seeds: [...]`` or ``submit --rerun``), shown as mean ± spread so a reviewer can see
how much of a difference the seed alone makes."""

from __future__ import annotations

from collections.abc import Hashable

from ci_runner.core import stats
from ci_runner.ledger.model import Run
from ci_runner.report.evaluations import is_final
from ci_runner.report.figures import matrix_label
from ci_runner.report.markdown import code, table
from ci_runner.spec.expand import replicate_key


def replicate_groups(runs: list[Run]) -> list[list[Run]]:
    """Groups of two or more runs that differ only in their seed, in ledger order."""
    keys: dict[str, Hashable] = {}
    for run in runs:
        key = replicate_key(run.matrix, run.stage_name)
        if key is not None and not run.replicate_of:
            keys[run.run_id] = key
    for run in runs:  # a rerun joins its original's group, or starts one with it
        if run.replicate_of:
            shared = keys.get(run.replicate_of, ("rerun of", run.replicate_of))
            keys[run.run_id] = keys[run.replicate_of] = shared
    groups: dict[Hashable, list[Run]] = {}
    for run in runs:
        if run.run_id in keys:
            groups.setdefault(keys[run.run_id], []).append(run)
    return [group for group in groups.values() if len(group) > 1]


def _label(group: list[Run]) -> str:
    first = group[0]
    rest = {k: v for k, v in (first.matrix or {}).items() if k != "seed"}
    parts = [p for p in (first.stage_name, matrix_label(rest) if rest else None) if p]
    if parts:
        return ", ".join(parts)
    return first.replicate_of or first.experiment  # the file's only setting


def _seed(run: Run) -> str:
    seed = (run.matrix or {}).get("seed")
    return str(seed) if seed is not None else "file's"


def replicates_table(runs: list[Run]) -> str | None:
    """One row per group: seeds, final loss and each final score as mean ± std (n)."""
    groups = replicate_groups(runs)
    if not groups:
        return None
    benchmarks = list(
        dict.fromkeys(ev.benchmark for g in groups for r in g for ev in r.evaluations)
    )
    header = ["Configuration", "Seeds", "Final loss", *benchmarks]
    rows = []
    for group in groups:
        losses = [
            r.metrics.final_loss for r in group if r.metrics and r.metrics.final_loss is not None
        ]
        row = [
            code(_label(group)),
            ", ".join(_seed(r) for r in group),
            _spread(losses, 4),
        ]
        for benchmark in benchmarks:
            scores = [
                ev.score
                for r in group
                for ev in r.evaluations
                if ev.benchmark == benchmark and is_final(ev) and ev.score is not None
            ]
            row.append(_spread(scores, 3))
        rows.append(row)
    note = (
        "Mean ± sample standard deviation over the seeds that finished (n); the spread is "
        "what the seed alone moves a number by."
    )
    return table(header, rows) + "\n\n" + note


def _spread(values: list[float], digits: int) -> str:
    if not values:
        return "TBD"
    return stats.format_spread(stats.replicate_summary(values), digits)
