"""The report files beside each ledger: markdown and loss plot, written only when changed."""

from __future__ import annotations

from pathlib import Path

from ci_runner.ledger.model import Ledger
from ci_runner.ledger.repository import stem_of
from ci_runner.ledger.store import load_ledger, write_atomic
from ci_runner.paths import Project
from ci_runner.report.plot import render_loss_svg
from ci_runner.report.render import loss_series, render_report


def write_report(project: Project, stem: str, ledger: Ledger) -> list[Path]:
    """Render the report (and plot) from the ledger alone; return the files that changed."""
    curves = loss_series(ledger)
    plot = project.plot_path(stem)
    markdown = render_report(ledger, plot_name=plot.name if curves else None)
    changed = []
    if write_atomic(project.report_path(stem), markdown):
        changed.append(project.report_path(stem))
    if curves and write_atomic(plot, render_loss_svg(curves)):
        changed.append(plot)
    return changed


def write_all(project: Project) -> list[Path]:
    """Every report re-rendered from its ledger (``ci-runner report``)."""
    changed: list[Path] = []
    for path in project.ledger_paths():
        ledger = load_ledger(path)
        if ledger is not None:
            changed += write_report(project, stem_of(path), ledger)
    return changed
