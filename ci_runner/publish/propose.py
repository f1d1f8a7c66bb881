"""Propose experiment files as a pull request (what the Codex workflow does with its output).

Only valid ``experiments/*.yaml`` files are taken, whatever else the agent touched, and
they go on ``ci-runner-proposal/<name>`` with the plan in the PR body: nothing is
submitted until a person merges it (the push to the default branch then submits).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ci_runner.core.inert import quote
from ci_runner.errors import SpecError, SpecIssue
from ci_runner.flow.workspace import Workspace
from ci_runner.publish.comment import render_plan_summary
from ci_runner.publish.git import Git, push_files
from ci_runner.publish.github import upsert_pull
from ci_runner.publish.plans import plan_entry
from ci_runner.publish.reports import Published, Target, repo_path

PROPOSAL_PREFIX = "ci-runner-proposal/"
PROPOSAL_MARKER = "<!-- ci-runner:proposal -->"


def _place(ws: Workspace, file: Path) -> Path:
    """Copy ``file`` to ``experiments/<name>`` (if it is not there) and return that path."""
    if file.suffix not in (".yaml", ".yml") or not file.is_file():
        issue = SpecIssue(str(file), None, "", "only .yaml experiment files can be proposed")
        raise SpecError([issue])
    dest = ws.root / "experiments" / file.name
    if file.resolve() != dest.resolve():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, dest)
    return dest


def render_proposal_body(summary: str, request: str | None) -> str:
    blocks = [PROPOSAL_MARKER, "Proposed experiment file(s), planned but not run.", summary]
    if request:
        blocks.insert(2, f"Request:\n\n{quote(request)}")
    blocks.append("_Merging this PR submits the experiments (the push runs `ci-runner submit`)._")
    return "\n\n".join(blocks) + "\n"


def propose(
    ws: Workspace, git: Git, target: Target, files: list[Path], *, request: str | None = None
) -> Published:
    """Commit the experiment files on one proposal branch and open or update its PR."""
    if not files:
        raise SpecError([SpecIssue("experiments/", None, "", "no experiment files to propose")])
    entries, files = [], [_place(ws, f) for f in files]
    for file in files:
        entry = plan_entry(ws, file)
        if entry.error and entry.exit_code == SpecError.exit_code:
            raise SpecError([SpecIssue(entry.file, None, "", entry.error)])
        entries.append(entry)
    names = sorted(e.name for e in entries if e.name)
    branch = PROPOSAL_PREFIX + "-".join(names)
    contents = {repo_path(git, f): f.read_bytes() for f in files}
    message = f"experiments: propose {', '.join(names)}\n"
    pushed = push_files(git, branch=branch, base=target.base, files=contents, message=message)
    result = Published(
        ", ".join(names), branch, tuple(sorted(contents)), pushed.sha, pushed.committed
    )
    if target.repo is None or pushed.sha is None:
        return result
    body = render_proposal_body(render_plan_summary(entries, heading="Plan"), request)
    pr = upsert_pull(
        target.repo,
        branch=branch,
        base=target.base,
        title=f"experiments: {', '.join(names)}",
        body=body,
        head_sha=pushed.sha,
        new_commit=pushed.committed,
    )
    return Published(**{**vars(result), "pr": pr})
