"""Publishing against a real bare git repository and a loopback GitHub REST API.

The real PyGithub talks to tests/github_server.py through ``base_url``; git pushes to a
bare repository in a temp dir. What is asserted is what reached them: commits, refs,
requests.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from ci_runner.cli.github import publish as publish_command
from ci_runner.paths import Project
from ci_runner.publish.git import BOT_EMAIL, BOT_NAME, Git
from ci_runner.publish.github import client, get_repo
from ci_runner.publish.reports import Target, publish_reports, restore_pending
from tests.github_server import FakeGitHub
from tests.publish_fixtures import EXPERIMENT, STEM, git, make_remote, make_run, write_results

BRANCH = f"ci-runner/{EXPERIMENT}"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def remote(tmp_path):
    bare, work = make_remote(tmp_path)
    with FakeGitHub(git_dir=bare) as fake:
        yield bare, work, fake


def publish_once(work: Path, fake: FakeGitHub):
    repo = get_repo(client(fake.token, fake.url, throttle=False), fake.full_name)
    target = Target(repo, fake.full_name, "main", "https://github.example")
    return publish_reports(Project(work), Git(work), target)


def test_publish_opens_then_updates_one_pr_and_reruns_write_nothing(remote):
    bare, work, fake = remote
    write_results(work, make_run(step=40, loss=1.6, done=False, score=None))

    [first] = publish_once(work, fake)
    assert first.committed and first.pr.action == "created"
    assert [(r.method, r.path) for r in fake.writes()] == [("POST", "/repos/acme/models/pulls")]
    post = fake.writes()[0].body
    assert post["head"] == BRANCH and post["base"] == "main"
    assert "humaneval pass@1" in post["body"] and "baseline" in post["body"]
    assert (
        f"(https://github.example/acme/models/blob/{first.commit}/training_reports/{STEM}.loss.svg?raw=true)"
        in post["body"]
    )
    assert "| Run | Status | Step | Loss |" in post["body"]  # the report's own overview
    log = git(bare, "log", "--format=%an <%ae>|%s", f"main..{BRANCH}").splitlines()
    assert log == [f"{BOT_NAME} <{BOT_EMAIL}>|ci-runner: update {EXPERIMENT} training report"]
    files = git(bare, "diff", "--name-only", f"main..{BRANCH}").splitlines()
    assert files == [
        "training_reports/README.md",  # the index, as it reads once this PR is merged
        *(f"training_reports/{STEM}{s}" for s in (".ledger.json", ".loss.svg", ".md")),
    ]

    # New results: one new commit, the same PR edited (PATCH), no second PR.
    fake.clear()
    write_results(work, make_run(step=100, loss=0.9, done=True, score=0.351))
    [second] = publish_once(work, fake)
    assert second.committed and second.pr.action == "updated"
    assert second.pr.number == first.pr.number
    assert [(r.method, r.path) for r in fake.writes()] == [("PATCH", "/repos/acme/models/pulls/1")]
    assert "+0.047" in fake.writes()[0].body["body"]  # delta against the base model
    assert git(bare, "rev-list", "--count", f"main..{BRANCH}") == "2"
    assert len(fake.pulls) == 1

    # Nothing new: no commit, no API write.
    fake.clear()
    [third] = publish_once(work, fake)
    assert not third.committed and third.pr.action == "unchanged"
    assert fake.writes() == []
    assert git(bare, "rev-parse", BRANCH) == second.commit


def test_checkout_is_left_alone(remote):
    _, work, fake = remote
    head = git(work, "rev-parse", "HEAD")
    write_results(work, make_run(step=40, loss=1.6, done=False, score=None))
    publish_once(work, fake)
    assert git(work, "rev-parse", "HEAD") == head
    assert git(work, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert git(work, "diff", "--cached", "--name-only") == ""


def _hook_other_writer(bare: Path, other: Path, marker: Path) -> None:
    """A pre-receive hook: on the first push only, another writer pushes first."""
    hook = bare / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\n"
        f'if [ -e "{marker}" ]; then exit 0; fi\n'
        f'touch "{marker}"\n'
        f'env -i PATH="$PATH" HOME="{other}" GIT_CONFIG_NOSYSTEM=1 '
        f'git -C "{other}" push -q origin HEAD:refs/heads/{BRANCH} >&2\n'
        "exit 0\n"
    )
    hook.chmod(hook.stat().st_mode | stat.S_IEXEC)


def test_concurrent_push_is_rebased_not_lost(remote, tmp_path):
    bare, work, fake = remote
    write_results(work, make_run(step=40, loss=1.6, done=False, score=None))
    publish_once(work, fake)

    # Another writer prepares a commit on the results branch...
    other = tmp_path / "other"
    git(tmp_path, "clone", "--quiet", "-b", BRANCH, str(bare), str(other))
    (other / "training_reports" / "NOTES.md").write_text("reviewed by a person\n")
    git(other, "add", ".")
    git(other, "commit", "--quiet", "-m", "notes from another writer")
    theirs = git(other, "rev-parse", "HEAD")
    # ...and pushes it while our publish is between its fetch and its push.
    _hook_other_writer(bare, other, tmp_path / "raced")

    write_results(work, make_run(step=100, loss=0.9, done=True, score=0.351))
    [result] = publish_once(work, fake)

    assert (tmp_path / "raced").exists(), "the other writer never got in between"
    assert result.committed
    tip = git(bare, "rev-parse", BRANCH)
    assert tip == result.commit
    assert git(bare, "rev-parse", f"{tip}^") == theirs  # rebased onto their commit
    assert git(bare, "show", f"{tip}:training_reports/NOTES.md") == "reviewed by a person"
    ledger = json.loads(git(bare, "show", f"{tip}:training_reports/{STEM}.ledger.json"))
    assert ledger["runs"][0]["status"] == "completed"
    assert len(fake.pulls) == 1


def test_restore_brings_unmerged_results_into_the_checkout(remote, tmp_path):
    bare, work, fake = remote
    write_results(work, make_run(step=40, loss=1.6, done=False, score=None))
    publish_once(work, fake)
    fresh = tmp_path / "fresh"  # the next scheduled poll: a new checkout of main
    git(tmp_path, "clone", "--quiet", str(bare), str(fresh))
    assert not (fresh / "training_reports").exists()

    restored = restore_pending(Project(fresh), Git(fresh))

    assert f"training_reports/{STEM}.ledger.json" in restored
    ledger = (fresh / "training_reports" / f"{STEM}.ledger.json").read_text()
    assert ledger == (work / "training_reports" / f"{STEM}.ledger.json").read_text()
    assert restore_pending(Project(fresh), Git(fresh)) == []  # idempotent


def test_ignored_reports_are_never_published(remote):
    bare, work, fake = remote
    (work / ".gitignore").write_text("training_reports/qwen3-*\n")
    write_results(work, make_run(step=40, loss=1.6, done=False, score=None))
    [result] = publish_once(work, fake)
    assert result.files == () and not result.committed
    assert fake.writes() == []
    assert git(bare, "branch", "--list", BRANCH) == ""


def test_cli_publish_honours_github_api_url(remote, monkeypatch):
    _, work, fake = remote
    write_results(work, make_run(step=40, loss=1.6, done=False, score=None))
    monkeypatch.setenv("GITHUB_API_URL", fake.url)
    monkeypatch.setenv("GITHUB_TOKEN", fake.token)
    monkeypatch.setenv("GITHUB_REPOSITORY", fake.full_name)
    result = CliRunner().invoke(publish_command, ["--json"], obj={"root": str(work)})
    assert result.exit_code == 0, result.output
    [item] = json.loads(result.output)
    assert item["pr"]["action"] == "created" and item["branch"] == BRANCH
    assert fake.requests[0].path == "/repos/acme/models"
    assert fake.token not in result.output


def test_cli_publish_without_token_is_a_usage_error(tmp_path, monkeypatch):
    for name in ("GITHUB_TOKEN", "GH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(publish_command, [], obj={"root": str(tmp_path)})
    assert result.exit_code == 2
    assert "GITHUB_TOKEN" in result.output


def test_bad_token_is_a_backend_error(remote):
    _, work, fake = remote
    with pytest.raises(Exception) as info:
        get_repo(client("ghs_wrong" + "0" * 30, fake.url, throttle=False), fake.full_name)
    assert info.value.exit_code == 6
    assert "ghs_wrong" not in str(info.value)


@pytest.fixture(autouse=True)
def _no_global_git_config(monkeypatch, tmp_path):
    """Publishing must not depend on the runner's git identity or config."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def test_propose_opens_a_pr_with_only_the_experiment_file(remote, tmp_path):
    from ci_runner.errors import SpecError
    from ci_runner.flow.workspace import Workspace
    from ci_runner.publish.propose import propose

    bare, work, fake = remote
    outbox = tmp_path / "agent-output"
    outbox.mkdir()
    spec = (ROOT / "experiments" / "qwen3-gsm8k-grpo.yaml").read_text()
    (outbox / "qwen3-gsm8k-grpo.yaml").write_text(spec)
    repo = get_repo(client(fake.token, fake.url, throttle=False), fake.full_name)
    target = Target(repo, fake.full_name, "main")

    result = propose(
        Workspace(Project(work)),
        Git(work),
        target,
        [outbox / "qwen3-gsm8k-grpo.yaml"],
        request="GRPO on gsm8k",
    )

    assert result.branch == "ci-runner-proposal/qwen3-gsm8k-grpo" and result.pr.action == "created"
    files = git(bare, "diff", "--name-only", f"main..{result.branch}").splitlines()
    assert files == ["experiments/qwen3-gsm8k-grpo.yaml"]
    body = fake.writes()[0].body["body"]
    assert "> GRPO on gsm8k" in body and "| Plan | |" in body and "Merging this PR submits" in body

    (outbox / "bad.yaml").write_text("name: Bad Name\n")
    with pytest.raises(SpecError):
        propose(Workspace(Project(work)), Git(work), target, [outbox / "bad.yaml"])


def test_pr_missing_after_a_crash_is_opened_but_a_closed_one_stays_closed(remote):
    _, work, fake = remote
    write_results(work, make_run(step=40, loss=1.6, done=False, score=None))
    publish_once(work, fake)
    fake.pulls.clear()  # the job died between its push and opening the PR
    [again] = publish_once(work, fake)
    assert not again.committed and again.pr.action == "created"

    fake.pulls[0]["state"] = "closed"  # a person closed it: same results, leave it closed
    fake.clear()
    [closed] = publish_once(work, fake)
    assert closed.pr is None and fake.writes() == []

    write_results(work, make_run(step=100, loss=0.9, done=True, score=0.351))
    [fresh] = publish_once(work, fake)  # new results reopen the conversation
    assert fresh.committed and fresh.pr.action == "created" and fresh.pr.number == 2
