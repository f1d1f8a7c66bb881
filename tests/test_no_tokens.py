"""No token value ever reaches a PR body, a plan comment, a commit or an action output.

Tokens are planted where they could plausibly leak from: the environment (as in CI) and
backend error text recorded in the ledger. What reached the loopback GitHub API and the
bare repository is then searched for them.
"""

from __future__ import annotations

import json

import pytest

from ci_runner.paths import Project
from ci_runner.publish.comment import PLAN_MARKER, PlanEntry, render_plan_comment
from ci_runner.publish.git import Git
from ci_runner.publish.github import client, get_repo, upsert_comment
from ci_runner.publish.redact import redact
from ci_runner.publish.reports import Target, publish_reports
from tests.github_server import FakeGitHub
from tests.publish_fixtures import git, make_remote, make_run, write_results

HF_TOKEN = "hf_" + "Zq9Xw8Vu7" * 4
OPENAI_KEY = "sk-proj-" + "abcDEF123_" * 3
STRAY = "ghp_" + "0123456789abcdefghij" * 2  # someone else's token, pasted into a log


@pytest.fixture
def secrets(monkeypatch):
    with FakeGitHub() as fake:
        monkeypatch.setenv("GITHUB_TOKEN", fake.token)
        monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
        monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
        yield fake, (fake.token, HF_TOKEN, OPENAI_KEY, STRAY)


def _sent(fake: FakeGitHub) -> str:
    return json.dumps([[r.path, r.query, r.body] for r in fake.requests])


def test_pr_body_and_commits_carry_no_token(tmp_path, secrets):
    fake, tokens = secrets
    bare, work = make_remote(tmp_path)
    fake.git_dir = bare
    error = f"401 Unauthorized: Authorization: Bearer {HF_TOKEN}\nretrying with {STRAY}"
    write_results(work, make_run(step=10, loss=1.9, done=False, score=None, error=error))

    repo = get_repo(client(fake.token, fake.url, throttle=False), fake.full_name)
    [result] = publish_reports(Project(work), Git(work), Target(repo, fake.full_name, "main"))

    assert result.pr.action == "created"
    body = fake.writes()[0].body["body"]
    assert "401 Unauthorized: Authorization: Bearer ***" in body  # the error is still shown
    sent = _sent(fake)
    committed = git(bare, "log", "-p", "--format=%B", result.branch)
    for token in tokens:
        assert token not in sent
        assert token not in committed


def test_plan_comment_carries_no_token(secrets):
    fake, tokens = secrets
    fake.add_pull(3, "feature")
    entry = PlanEntry(
        file="experiments/x.yaml",
        name="x",
        error=f"dataset viewer refused token {HF_TOKEN} (and {STRAY}); key {OPENAI_KEY}",
        exit_code=6,
    )
    body = render_plan_comment([entry])
    repo = get_repo(client(fake.token, fake.url, throttle=False), fake.full_name)
    upsert_comment(repo, 3, marker=PLAN_MARKER, body=body)
    sent = _sent(fake)
    assert "dataset viewer refused token ***" in sent
    for token in tokens:
        assert token not in sent


def test_redact_masks_env_values_and_token_shapes(secrets):
    _, tokens = secrets
    text = " ".join(tokens) + " hf_short x"
    assert redact(text) == "*** *** *** *** hf_short x"
