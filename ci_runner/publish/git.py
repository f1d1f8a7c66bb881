"""Git for publishing: commit generated files onto a remote branch, push, retry on a race.

Commits are built with a private index (``GIT_INDEX_FILE``) on top of the remote branch's
tip, so the job's checkout, HEAD and index stay untouched. When a push is rejected because
another writer got there first, we fetch again and rebuild the same files on the new tip:
a rebase of our one commit, in which the other writer's commits stay in history and our
generated files win only where they are ours.
"""

from __future__ import annotations

import base64
import os
import random
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ci_runner.errors import BackendError
from ci_runner.publish.redact import redact

BOT_NAME = "github-actions[bot]"
BOT_EMAIL = "41898282+github-actions[bot]@users.noreply.github.com"
PUSH_ATTEMPTS = 5


class GitError(BackendError):
    """A git command failed for a reason a retry will not fix (exit 6, like any backend)."""


def auth_env(token: str | None, server_url: str | None = None) -> dict[str, str]:
    """Git config, passed by environment, that sends ``token`` to the GitHub server only.

    The token never appears on a command line, in a remote URL or in ``.git/config``.
    """
    if not token:
        return {}
    server = (server_url or os.environ.get("GITHUB_SERVER_URL") or "https://github.com").rstrip("/")
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"http.{server}/.extraheader",
        "GIT_CONFIG_VALUE_0": f"AUTHORIZATION: basic {basic}",
    }


def bot_identity() -> dict[str, str]:
    return {
        "GIT_AUTHOR_NAME": BOT_NAME,
        "GIT_AUTHOR_EMAIL": BOT_EMAIL,
        "GIT_COMMITTER_NAME": BOT_NAME,
        "GIT_COMMITTER_EMAIL": BOT_EMAIL,
    }


@dataclass
class Git:
    """One checkout and its remote; every call runs ``git`` with a C locale and no prompts."""

    root: Path
    remote: str = "origin"
    env: Mapping[str, str] = field(default_factory=dict)

    def run(
        self,
        *args: str,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        full_env = {
            **os.environ,
            "LC_ALL": "C",
            "GIT_TERMINAL_PROMPT": "0",
            **self.env,
            **(env or {}),
        }
        proc = subprocess.run(
            ["git", *args], cwd=self.root, input=input, env=full_env, capture_output=True
        )
        if check and proc.returncode != 0:
            detail = redact(proc.stderr.decode(errors="replace").strip())
            raise GitError(f"git {args[0]} failed: {detail}")
        return proc

    def out(self, *args: str, **kwargs: Any) -> str:
        return self.run(*args, **kwargs).stdout.decode().strip()

    # -- reading ------------------------------------------------------------------

    def remote_tip(self, branch: str) -> str | None:
        """Fetch ``branch`` from the remote; its tip, or None when it does not exist."""
        if not self.out("ls-remote", "--heads", self.remote, f"refs/heads/{branch}"):
            return None
        ref = f"refs/remotes/{self.remote}/{branch}"
        self.run("fetch", "--no-tags", "--quiet", self.remote, f"+refs/heads/{branch}:{ref}")
        return self.out("rev-parse", ref)

    def read(self, rev: str, path: str) -> bytes | None:
        proc = self.run("cat-file", "blob", f"{rev}:{path}", check=False)
        return proc.stdout if proc.returncode == 0 else None

    def ignored(self, paths: list[str]) -> set[str]:
        """Which of ``paths`` the repository's ignore rules exclude."""
        if not paths:
            return set()
        proc = self.run("check-ignore", "--", *paths, check=False)
        return set(proc.stdout.decode().splitlines())

    def remote_branches(self, prefix: str) -> list[str]:
        """Fetch every remote branch under ``prefix``; their names."""
        refspec = f"+refs/heads/{prefix}*:refs/remotes/{self.remote}/{prefix}*"
        self.run("fetch", "--no-tags", "--quiet", self.remote, refspec)
        refs = self.out(
            "for-each-ref", "--format=%(refname)", f"refs/remotes/{self.remote}/{prefix}"
        )
        strip = f"refs/remotes/{self.remote}/"
        return [r.removeprefix(strip) for r in refs.splitlines() if r]

    def files_under(self, rev: str, under: str) -> list[str]:
        """Every file path under ``under`` in ``rev``'s tree."""
        return self.out("ls-tree", "-r", "--name-only", rev, "--", under).splitlines()

    def is_ancestor(self, ancestor: str, rev: str) -> bool:
        return self.run("merge-base", "--is-ancestor", ancestor, rev, check=False).returncode == 0

    def changed_between(self, old: str, new: str, paths: list[str]) -> list[str]:
        """Which of ``paths`` differ between two commits."""
        proc = self.run("diff", "--name-only", "--no-renames", old, new, "--", *paths)
        return [line for line in proc.stdout.decode().splitlines() if line]

    def changed_since_fork(self, base: str, rev: str, under: str) -> list[str]:
        """Files under ``under`` that ``rev`` changed since it forked from ``base``."""
        proc = self.run(
            "diff", "--name-only", "--no-renames", f"{base}...{rev}", "--", under, check=False
        )
        if proc.returncode != 0:  # shallow clone, no merge base: compare the trees
            proc = self.run("diff", "--name-only", "--no-renames", base, rev, "--", under)
        return [line for line in proc.stdout.decode().splitlines() if line]

    # -- writing ------------------------------------------------------------------

    def commit_onto(self, parent: str, files: Mapping[str, bytes], message: str) -> str | None:
        """A commit of ``files`` on top of ``parent``; None when they are already there."""
        with tempfile.TemporaryDirectory(prefix="ci-runner-index-") as tmp:
            index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            self.run("read-tree", parent, env=index)
            self._add_to_index(files, index)
            tree = self.out("write-tree", env=index)
        if tree == self.out("rev-parse", f"{parent}^{{tree}}"):
            return None
        return self.out(
            "commit-tree", tree, "-p", parent, "-m", redact(message), env=bot_identity()
        )

    def merge_onto(
        self, tip: str, other: str, files: Mapping[str, bytes], message: str
    ) -> str | None:
        """A merge of ``other`` into ``tip`` whose conflicts lie only in ``files``, which
        win; None when another file conflicts (or git predates ``merge-tree --write-tree``).
        """
        proc = self.run(
            "merge-tree", "--write-tree", "--name-only", "--no-messages", tip, other, check=False
        )
        if proc.returncode not in (0, 1):
            return None
        tree, *conflicted = proc.stdout.decode().splitlines()
        if not set(filter(None, conflicted)) <= set(files):
            return None
        with tempfile.TemporaryDirectory(prefix="ci-runner-index-") as tmp:
            index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            self.run("read-tree", tree, env=index)
            self._add_to_index(files, index)
            merged = self.out("write-tree", env=index)
        return self.out(
            "commit-tree",
            merged,
            "-p",
            tip,
            "-p",
            other,
            "-m",
            redact(message),
            env=bot_identity(),
        )

    def _add_to_index(self, files: Mapping[str, bytes], index: Mapping[str, str]) -> None:
        for path, data in sorted(files.items()):
            blob = self.out("hash-object", "-w", "--stdin", input=data)
            self.run("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=index)

    def push(self, sha: str, branch: str) -> tuple[bool, str]:
        """Push ``sha`` as ``branch`` (fast-forward only); (pushed, why not)."""
        proc = self.run(
            "push", "--porcelain", self.remote, f"{sha}:refs/heads/{branch}", check=False
        )
        why = (proc.stdout + proc.stderr).decode(errors="replace").strip()
        return proc.returncode == 0, redact(why)


def _base_touched(git: Git, tip: str, base_tip: str, paths: list[str]) -> bool:
    """Has the base changed any of ``paths`` since ``tip`` forked from it (or last merged it)?"""
    if git.is_ancestor(base_tip, tip):
        return False
    fork = git.run("merge-base", tip, base_tip, check=False).stdout.decode().strip()
    return bool(fork) and bool(git.changed_between(fork, base_tip, paths))


@dataclass(frozen=True)
class Pushed:
    sha: str | None  # the branch's tip after publishing; None: no branch, nothing to publish
    committed: bool  # a new commit was pushed
    attempts: int = 1


def push_files(
    git: Git,
    *,
    branch: str,
    base: str,
    files: Mapping[str, bytes],
    message: str,
    attempts: int = PUSH_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> Pushed:
    """Commit ``files`` onto ``branch`` (created from ``base``) and push; fetch-rebase-retry.

    Nothing is committed when the branch (or, before it exists, the base) already holds
    these bytes, so a re-run with no new results makes no commit. When the base has
    since changed one of ``files`` (another experiment's merged PR rewrote the index),
    the commit merges the base in, our files winning, so the PR stays mergeable.
    """
    last = ""
    for attempt in range(1, attempts + 1):
        tip = git.remote_tip(branch)
        base_tip = git.remote_tip(base)
        parent = tip or base_tip
        if parent is None:
            raise GitError(f"base branch {base!r} not found on {git.remote}")
        sha = git.commit_onto(parent, files, message)
        if sha is None:
            return Pushed(tip, False, attempt)
        if tip and base_tip and _base_touched(git, tip, base_tip, list(files)):
            sha = git.merge_onto(tip, base_tip, files, message) or sha
        pushed, last = git.push(sha, branch)
        if pushed:
            return Pushed(sha, True, attempt)
        if attempt < attempts:  # someone else pushed first: fetch, rebuild on their tip, retry
            sleep(min(8.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.0))
    raise GitError(f"could not push {branch} after {attempts} attempts: {last}")
