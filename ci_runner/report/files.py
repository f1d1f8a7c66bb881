"""The report files beside each ledger (markdown and plots) and the index across them,
written only when changed."""

from __future__ import annotations

from pathlib import Path

from ci_runner.core.files import write_atomic
from ci_runner.ledger.model import Ledger
from ci_runner.ledger.repository import stem_of
from ci_runner.ledger.store import scan
from ci_runner.paths import Project
from ci_runner.report.figures import figures
from ci_runner.report.index import Report, render_index
from ci_runner.report.plot import render_svg, unchanged
from ci_runner.report.render import render_report


def write_report(project: Project, stem: str, ledger: Ledger) -> list[Path]:
    """Render the report and plots from the ledger alone; return the files that changed.

    A plot whose data did not change is not drawn again (its file carries a fingerprint
    of the data), which keeps a poll cheap.
    """
    shown = figures(ledger)
    paths = {figure.key: project.plot_path(stem, figure.key) for figure in shown}
    markdown = render_report(ledger, plots={key: path.name for key, path in paths.items()})
    changed = []
    if write_atomic(project.report_path(stem), markdown):
        changed.append(project.report_path(stem))
    for figure in shown:
        path = paths[figure.key]
        existing = path.read_text(encoding="utf-8") if path.exists() else None
        if not unchanged(figure, existing) and write_atomic(path, render_svg(figure)):
            changed.append(path)
    return changed


def write_index(project: Project) -> list[Path]:
    """``training_reports/README.md`` from every readable ledger; [] when unchanged.

    Called once per command, after its reports are written, since it reads every ledger.
    """
    found = scan(project.ledger_paths()).found
    text = render_index([Report(stem_of(path), ledger) for path, ledger in found])
    return [project.index_path] if write_atomic(project.index_path, text) else []


def write_all(project: Project) -> list[Path]:
    """Every report re-rendered from its ledger, then the index (``ci-runner report``);
    an unreadable ledger is skipped, its report left as it was."""
    changed: list[Path] = []
    for path, ledger in scan(project.ledger_paths()).found:
        changed += write_report(project, stem_of(path), ledger)
    return changed + write_index(project)
