"""Pull requests and comments through the GitHub REST API, with PyGithub.

One PR per experiment, found by its head branch, and one plan comment per PR, found by
its hidden marker and its author: both are edited in place and only when their text
changes, so a re-run that changed nothing writes nothing. A comment that carries the
marker but was written by anyone other than the token's own account is never edited
(anyone can paste the marker). Every text is redacted before it is sent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ci_runner.errors import BackendError
from ci_runner.publish.redact import redact

if TYPE_CHECKING:
    from github import Github
    from github.Repository import Repository

DEFAULT_API_URL = "https://api.github.com"


class GitHubError(BackendError):
    """The GitHub API refused or failed (exit 6)."""


def client(token: str, base_url: str | None = None, *, throttle: bool = True) -> Github:
    """A PyGithub client for ``GITHUB_API_URL`` (GitHub Enterprise Server included).

    ``throttle`` keeps PyGithub's pause between writes (GitHub's secondary rate limit);
    tests against a loopback server turn it off.
    """
    from github import Auth, Github, GithubRetry

    url = base_url or os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL
    pauses: dict[str, Any] = (
        {} if throttle else {"seconds_between_requests": None, "seconds_between_writes": None}
    )
    retry = GithubRetry(total=3, backoff_factor=0.5 if throttle else 0)
    return Github(auth=Auth.Token(token), base_url=url, timeout=30, retry=retry, **pauses)


def get_repo(gh: Github, full_name: str) -> Repository:
    from github import GithubException

    try:
        return gh.get_repo(full_name)
    except GithubException as exc:
        raise GitHubError(f"GitHub: cannot read {full_name}: HTTP {exc.status}") from None


@dataclass(frozen=True)
class Written:
    """What happened to a PR or comment: created, updated or unchanged."""

    action: str
    number: int
    url: str


def upsert_pull(
    repo: Repository,
    *,
    branch: str,
    base: str,
    title: str,
    body: str,
    head_sha: str,
    new_commit: bool,
) -> Written | None:
    """Update the open PR from ``branch``, or open one; None when we leave it closed.

    A PR that a person closed (or that was merged) at this very commit stays closed; new
    results reopen the conversation with a new PR. A push whose PR was never opened (the
    job died in between) gets its PR on the next run.
    """
    from github import GithubException

    title, body = redact(title), redact(body)
    try:
        head = f"{repo.owner.login}:{branch}"
        pulls = list(repo.get_pulls(state="all", head=head, base=base))
        pr = next((p for p in pulls if p.state == "open"), None)
        if pr is not None:
            if pr.title == title and (pr.body or "") == body:
                return Written("unchanged", pr.number, pr.html_url)
            pr.edit(title=title, body=body)
            return Written("updated", pr.number, pr.html_url)
        if not new_commit and any(p.head.sha == head_sha for p in pulls):
            return None
        pr = repo.create_pull(base=base, head=branch, title=title, body=body)
        return Written("created", pr.number, pr.html_url)
    except GithubException as exc:
        raise GitHubError(f"GitHub: pull request for {branch}: HTTP {exc.status}") from None


VIEWER_QUERY = "query { viewer { login } }"


def token_login(repo: Repository) -> str:
    """The account the token acts as.

    ``GET /user`` answers for a person's token. A GitHub App installation token (the
    Actions ``GITHUB_TOKEN`` is one) gets 403 there; GraphQL's ``viewer`` answers for
    it, with the app's bot login (``github-actions[bot]``, ``<app>[bot]``).
    """
    from github import GithubException

    requester = repo.requester
    try:
        _, user = requester.requestJsonAndCheck("GET", "/user")
        return str(user["login"])
    except GithubException as exc:
        if exc.status not in (401, 403, 404):
            raise
    try:
        _, data = requester.graphql_query(VIEWER_QUERY, {})
        return str(data["data"]["viewer"]["login"])
    except (GithubException, KeyError, TypeError):
        raise GitHubError(
            "GitHub: cannot tell which account this token is (GET /user and the GraphQL "
            "viewer both refused it), so no comment is edited; give the token read access "
            "to its own user, or use the workflow's GITHUB_TOKEN"
        ) from None


def upsert_comment(repo: Repository, number: int, *, marker: str, body: str) -> Written:
    """Edit the comment on issue/PR ``number`` that carries ``marker`` and that the
    token's own account wrote, or post it once."""
    from github import GithubException

    body = redact(body if marker in body else f"{marker}\n{body}")
    try:
        login = token_login(repo).lower()
        issue = repo.get_issue(number)
        mine = next(
            (
                c
                for c in issue.get_comments()
                if marker in (c.body or "") and c.user is not None and c.user.login.lower() == login
            ),
            None,
        )
        if mine is None:
            comment = issue.create_comment(body)
            return Written("created", comment.id, comment.html_url)
        if mine.body == body:
            return Written("unchanged", mine.id, mine.html_url)
        mine.edit(body)
        return Written("updated", mine.id, mine.html_url)
    except GithubException as exc:
        raise GitHubError(f"GitHub: comment on #{number}: HTTP {exc.status}") from None
