"""Publish each experiment's ledger, report and plot: one branch and one PR per experiment.

Only files under ``training_reports/`` that belong to the experiment are committed, on
``ci-runner/<experiment>``, and only when their bytes differ from the branch (or, before
the branch exists, from the base). The PR body is rendered from the same ledger, so a
re-run with nothing new makes no commit and no API write.

The index (``training_reports/README.md``) goes with them, rendered from the ledgers the
base branch holds plus this experiment's: the page as it will read once this PR alone is
merged. It does not depend on other unmerged experiments, so one experiment's progress
never adds commits to another's branch; and when another PR's merge rewrites the index
on the base, the next publish merges the base into the branch (``push_files``), so the
PR stays free of conflicts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from ci_runner.ledger.model import Ledger
from ci_runner.ledger.repository import stem_of
from ci_runner.ledger.store import scan
from ci_runner.paths import LEDGER_SUFFIX, Project
from ci_runner.publish.git import Git, push_files
from ci_runner.publish.github import Written, upsert_pull
from ci_runner.publish.pr_body import Links, pr_title, render_pr_body
from ci_runner.publish.redact import redact
from ci_runner.report.figures import figures
from ci_runner.report.files import write_index
from ci_runner.report.index import Report, render_index

if TYPE_CHECKING:
    from github.Repository import Repository

BRANCH_PREFIX = "ci-runner/"


@dataclass(frozen=True)
class Target:
    """Where results go: the GitHub repository (None: git only) and its web address."""

    repo: Repository | None
    full_name: str
    base: str
    server_url: str = "https://github.com"

    def blob(self, sha: str, path: str) -> str:
        return f"{self.server_url.rstrip('/')}/{self.full_name}/blob/{sha}/{path}"


@dataclass(frozen=True)
class Published:
    experiment: str
    branch: str
    files: tuple[str, ...]
    commit: str | None  # the branch tip; None when the branch does not exist
    committed: bool
    pr: Written | None = None


def branch_for(experiment: str) -> str:
    return f"{BRANCH_PREFIX}{experiment}"


def repo_path(git: Git, path: Path) -> str:
    """``path`` relative to the repository's top level, as git names it."""
    top = Path(git.out("rev-parse", "--show-toplevel")).resolve()
    return path.resolve().relative_to(top).as_posix()


def experiment_files(git: Git, paths: Iterable[Path]) -> dict[str, bytes]:
    """The experiment's files among ``paths`` (its ledger, report and plots) that exist,
    keyed by repository path.

    Files the repository ignores (the offline demo's reports) are never published, and
    token values are masked in what is.
    """
    # A backend's error text could carry a token; it must not reach a commit.
    files = {repo_path(git, p): redact(p.read_text("utf-8")).encode() for p in paths if p.exists()}
    ignored = git.ignored(list(files))
    return {p: data for p, data in files.items() if p not in ignored}


def commit_message(ledger: Ledger) -> str:
    lines = [f"ci-runner: update {ledger.experiment} training report", ""]
    for run in ledger.runs:
        m = run.metrics
        loss = f", loss {m.final_loss:.4f}" if m and m.final_loss is not None else ""
        lines.append(f"- {run.run_id}: {run.status.label}{loss}")
    return "\n".join(lines).rstrip() + "\n"


def branch_index(git: Git, project: Project, base: str, stem: str, ledger: Ledger) -> bytes:
    """The index once this experiment's branch is merged: the base's ledgers, this
    experiment's as it is now (an unreadable ledger on the base is left out)."""
    reports = {stem: Report(stem, ledger)}
    base_tip = git.remote_tip(base)
    if base_tip is not None:
        for path in git.files_under(base_tip, repo_path(git, project.reports_dir)):
            name = path.rsplit("/", 1)[-1]
            other = name.removesuffix(LEDGER_SUFFIX)
            if other == name or other in reports:
                continue
            try:
                found = Ledger.model_validate_json(git.read(base_tip, path) or b"")
            except ValidationError:
                continue
            reports[other] = Report(other, found)
    return render_index(list(reports.values())).encode()


def _same_as_base(git: Git, base: str, files: dict[str, bytes]) -> bool:
    base_tip = git.remote_tip(base)
    return base_tip is not None and all(git.read(base_tip, p) == d for p, d in files.items())


def publish_experiment(
    project: Project, git: Git, target: Target, ledger_path: Path, ledger: Ledger
) -> Published:
    """Push the experiment's files to its branch and open or update its PR; ``ledger`` is
    what ``ledger_path`` holds (the caller has read it)."""
    branch = branch_for(ledger.experiment)
    stem = stem_of(ledger_path)
    report_path = project.report_path(stem)
    plot_paths = {figure.key: project.plot_path(stem, figure.key) for figure in figures(ledger)}
    files = experiment_files(git, [ledger_path, report_path, *plot_paths.values()])
    if not files:
        return Published(ledger.experiment, branch, (), None, False)
    index = repo_path(git, project.index_path)
    if not git.ignored([index]):
        files[index] = branch_index(git, project, target.base, stem, ledger)
    pushed = push_files(
        git, branch=branch, base=target.base, files=files, message=commit_message(ledger)
    )
    result = Published(
        ledger.experiment, branch, tuple(sorted(files)), pushed.sha, pushed.committed
    )
    if target.repo is None or pushed.sha is None:
        return result
    if not pushed.committed and _same_as_base(git, target.base, files):
        return result  # already on the base branch: nothing to review
    plots = {
        key: target.blob(pushed.sha, repo_path(git, path)) + "?raw=true"
        for key, path in plot_paths.items()
        if path.exists()
    }
    links = Links(
        report=target.blob(pushed.sha, repo_path(git, report_path)),
        ledger=target.blob(pushed.sha, repo_path(git, ledger_path)),
        plots=plots,
    )
    pr = upsert_pull(
        target.repo,
        branch=branch,
        base=target.base,
        title=pr_title(ledger),
        body=render_pr_body(ledger, links),
        head_sha=pushed.sha,
        new_commit=pushed.committed,
    )
    return Published(**{**vars(result), "pr": pr})


def publish_reports(
    project: Project, git: Git, target: Target, experiments: set[str] | None = None
) -> list[Published]:
    """Publish every experiment with a ledger (or only those named), after bringing the
    checkout's index up to date.

    An unreadable ledger is not published: its branch keeps the last good copy, and the
    command that reads ledgers names the file (``repository.corrupt_ledgers``).
    """
    write_index(project)
    results = []
    for path, ledger in scan(project.ledger_paths()).found:
        if experiments and ledger.experiment not in experiments:
            continue
        results.append(publish_experiment(project, git, target, path, ledger))
    return results


def restore_pending(project: Project, git: Git, base: str = "HEAD") -> list[str]:
    """Bring results that wait in unmerged ``ci-runner/*`` branches into the checkout.

    ``poll`` runs on the default branch, where a run submitted since the last merge has no
    ledger yet; without this it would never be polled. The index is not taken from a
    branch: each branch's index leaves out the other branches, and the next ``report``
    or ``poll`` renders it here from every ledger.
    """
    under = repo_path(git, project.reports_dir)
    index = repo_path(git, project.index_path)
    top = Path(git.out("rev-parse", "--show-toplevel"))
    restored = []
    for branch in git.remote_branches(BRANCH_PREFIX):
        ref = f"refs/remotes/{git.remote}/{branch}"
        for path in git.changed_since_fork(base, ref, under):
            if path == index:
                continue
            data = git.read(ref, path)
            if data is None:
                continue
            target = top / path
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists() or target.read_bytes() != data:
                target.write_bytes(data)
                restored.append(path)
    return sorted(restored)
