"""GitHub commands: ``ci-runner publish`` and ``ci-runner action``.

The token comes from ``GITHUB_TOKEN`` (or ``GH_TOKEN``) only, never from an option, so it
never shows up in a process list or a shell history.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ci_runner.action.main import action
from ci_runner.cli.output import end_if_unreadable
from ci_runner.flow.workspace import Workspace
from ci_runner.ledger import repository
from ci_runner.ledger.store import CorruptLedgerError
from ci_runner.paths import Project

__all__ = ["action", "publish"]


def _yaml_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
    return [path]


def _token() -> str | None:
    return os.environ.get("GITHUB_TOKEN") or os.environ.get("GH_TOKEN") or None


@click.command()
@click.option("--experiment", "experiments", multiple=True, help="Only this experiment (repeat).")
@click.option(
    "--propose",
    "proposals",
    multiple=True,
    type=click.Path(exists=True),
    help="Open a PR proposing this experiment file, or a folder's *.yaml (repeat).",
)
@click.option("--request", default=None, help="With --propose: what was asked for (PR body).")
@click.option("--repo", envvar="GITHUB_REPOSITORY", help="owner/name [env: GITHUB_REPOSITORY].")
@click.option("--base", default=None, help="Base branch (default: the repository's default).")
@click.option("--remote", default="origin", show_default=True)
@click.option("--git-only", is_flag=True, help="Commit and push, but call no GitHub API.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.pass_context
def publish(
    ctx: click.Context,
    experiments: tuple[str, ...],
    proposals: tuple[str, ...],
    request: str | None,
    repo: str | None,
    base: str | None,
    remote: str,
    git_only: bool,
    as_json: bool,
) -> None:
    """Commit changed reports, ledgers and plots; open or update one PR per experiment.

    Each experiment's files go to branch ci-runner/<experiment>; nothing is committed or
    written to GitHub when nothing changed. Needs GITHUB_TOKEN unless --git-only
    (GITHUB_API_URL and GITHUB_SERVER_URL point at GitHub Enterprise Server).
    """
    from ci_runner.publish.git import Git, auth_env
    from ci_runner.publish.github import client, get_repo
    from ci_runner.publish.reports import Target, publish_reports

    project = Project(Path((ctx.obj or {}).get("root", ".")).resolve())
    token = _token()
    if not git_only and not (token and repo):
        raise click.UsageError("set GITHUB_TOKEN and --repo/GITHUB_REPOSITORY, or pass --git-only")
    server = os.environ.get("GITHUB_SERVER_URL", "https://github.com")
    gh_repo = None if git_only or not (token and repo) else get_repo(client(token), repo)
    base = base or (gh_repo.default_branch if gh_repo else "main")
    target = Target(gh_repo, repo or "", base, server)
    git = Git(project.root, remote=remote, env=auth_env(token, server))
    unreadable: list[CorruptLedgerError] = []
    if proposals:
        from ci_runner.publish.propose import propose

        files = [f for p in map(Path, proposals) for f in _yaml_files(p)]
        results = [propose(Workspace(project), git, target, files, request=request)]
    else:
        results = publish_reports(project, git, target, set(experiments) or None)
        missing = set(experiments) - {r.experiment for r in results}
        unreadable = repository.corrupt_ledgers(project) if missing or not experiments else []
    if as_json:
        data = [vars(r) | {"pr": vars(r.pr) if r.pr else None} for r in results]
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        if not results:
            click.echo("nothing to publish")
        for r in results:
            state = "new commit" if r.committed else "no change"
            pr = f"; PR {r.pr.action}: {r.pr.url}" if r.pr else ""
            click.echo(f"{r.experiment}: {r.branch} ({state}){pr}")
    end_if_unreadable(unreadable)
