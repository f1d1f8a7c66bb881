"""Text from experiment files and models is untrusted: each attack, through the real command.

Identifiers with a trailing line break are refused at ``validate`` (a paid job would fail on
them later); a description or an error carrying HTML, comments, mentions or fences reaches
the report and the PR body inert; and the plan comment is only ever edited when the token's
own account wrote it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from ci_runner.cli import main
from ci_runner.errors import ExitCode
from tests.conftest import ROOT

BASE = "name: qwen-sft\nbase_model: Qwen/Qwen3-0.6B\nmethod: sft\ndataset: trl-lib/Capybara\n"


def invoke(root: Path, *args: str):
    return CliRunner().invoke(main, ["--root", str(root), *args])


# --- identifiers are matched whole -------------------------------------------------------

# the attack: an experiment file → (the line, the field validate names)
NEWLINE_IDENTIFIERS = {
    "name": (BASE.replace("name: qwen-sft", 'name: "qwen-sft\\n"'), 1, "name"),
    "hub id": (BASE + 'output:\n  hub_model_id: "alice/qwen-sft\\n"\n', 6, "output.hub_model_id"),
    "dataset revision": (
        BASE.replace("dataset: trl-lib/Capybara", "dataset:\n  path: trl-lib/Capybara")
        + '  revision: "main\\n"\n',
        6,
        "dataset.revision",
    ),
    "model revision": (
        BASE.replace("Qwen/Qwen3-0.6B", '"Qwen/Qwen3-0.6B@main\\n"'),
        2,
        "base_model",
    ),
    "split": (
        BASE.replace("dataset: trl-lib/Capybara", "dataset:\n  path: trl-lib/Capybara")
        + '  split: "train\\n"\n',
        6,
        "dataset.split",
    ),
    "tracking project": (BASE + 'tracking:\n  project: "demo\\n"\n', 6, "tracking.project"),
    "reward": (
        BASE.replace("method: sft", "method: grpo") + 'rewards:\n  - "rewards.py:score\\n"\n',
        6,
        "rewards[0]",
    ),
}


@pytest.mark.parametrize("case", sorted(NEWLINE_IDENTIFIERS))
def test_an_identifier_with_a_trailing_newline_is_refused_at_validate(tmp_path, case):
    text, line, field = NEWLINE_IDENTIFIERS[case]
    (tmp_path / "rewards.py").write_text("def score(completions, **kw):\n    return [0.0]\n")
    spec = tmp_path / "experiments" / "x.yaml"
    spec.parent.mkdir()
    spec.write_text(text)
    result = invoke(tmp_path, "validate", str(spec))
    assert result.exit_code == ExitCode.SPEC_INVALID, result.output
    assert f"{spec}:{line}: {field}: " in result.output
    assert "hint: " in result.output


def test_the_same_identifiers_without_the_newline_are_valid(tmp_path):
    (tmp_path / "rewards.py").write_text("def score(completions, **kw):\n    return [0.0]\n")
    spec = tmp_path / "experiments" / "x.yaml"
    spec.parent.mkdir()
    for text, _, _ in NEWLINE_IDENTIFIERS.values():
        spec.write_text(text.replace("\\n", ""))
        result = invoke(tmp_path, "validate", str(spec))
        assert result.exit_code == ExitCode.OK, (text, result.output)


# --- rendered text is inert ---------------------------------------------------------------

ATTACK = (
    "Beats the base <!-- the rest of the page is hidden --> @octocat see acme/other#1 "
    "<img src=https://evil.example/pixel.png> ![x](https://evil.example/i.png)"
)
LOUD = ("<img", "<!-- the rest", "@octocat", "acme/other#1", "![x](", "<script")


def code_block_lines(markdown: str) -> set[int]:
    """Indices of the lines inside fenced code blocks, as CommonMark reads the fences."""
    inside, fence = set(), ""
    for number, line in enumerate(markdown.splitlines()):
        run = len(line) - len(line.lstrip("`"))
        if not fence and run >= 3:
            fence = "`" * run
        elif fence and run >= len(fence) and not line.strip("`").strip():
            fence = ""
        elif fence:
            inside.add(number)
    return inside


def assert_inert(markdown: str, ours: int) -> None:
    """Nothing loud outside code: no HTML, no comment but our ``ours`` markers, no ping."""
    inside = code_block_lines(markdown)
    for number, line in enumerate(markdown.splitlines()):
        if number in inside:
            continue
        assert not any(loud in line for loud in LOUD), line
    outside = [line for n, line in enumerate(markdown.splitlines()) if n not in inside]
    assert sum(line.count("<!--") for line in outside) == ours


def test_a_fence_in_a_yaml_key_stays_inside_the_plan_comment(tmp_path):
    from tests.action_harness import run_action
    from tests.github_server import FakeGitHub

    workspace = tmp_path / "ws"
    (workspace / "experiments").mkdir(parents=True)
    shutil.copy(ROOT / "experiments" / "qwen3-codeforces-sft.yaml", workspace / "experiments")
    key = "x\\n```\\n<img src=https://evil.example/pixel.png> @octocat <!-- hide"
    attack = BASE.replace("name: qwen-sft", "name: attack") + f'"{key}": 1\n'
    (workspace / "experiments" / "attack.yaml").write_text(attack)
    with FakeGitHub() as fake:
        fake.add_pull(7, "add-attack")
        run = run_action(
            {"command": "plan", "experiments": "experiments/*.yaml", "github-token": fake.token},
            workspace=workspace,
            tmp=tmp_path / "run",
            event_name="pull_request",
            event=PULL_7,
            env={"GITHUB_API_URL": fake.url},
        )
        (comment,) = fake.comments
    body = comment["body"]
    assert "unknown field" in body, run.log  # the error is shown, inside its block
    assert "<img src=https://evil.example/pixel.png>" in body
    assert_inert(body, ours=1)


PULL_7 = {
    "number": 7,
    "pull_request": {
        "number": 7,
        "base": {"sha": "0" * 40},
        "head": {"repo": {"full_name": "acme/models"}},
    },
}
MARKER = "<!-- ci-runner:plan -->"


@pytest.mark.parametrize(
    ("installation", "login"),
    [(True, "github-actions[bot]"), (False, "release-bot")],
    ids=["installation-token", "user-token"],
)
def test_the_plan_comment_of_another_author_is_never_edited(tmp_path, installation, login):
    """Someone pastes the marker into their own comment; the plan is posted beside it, and
    the next push edits only ci-runner's own comment."""
    from tests.action_harness import run_action
    from tests.github_server import FakeGitHub

    workspace = tmp_path / "ws"
    (workspace / "experiments").mkdir(parents=True)
    shutil.copy(ROOT / "experiments" / "qwen3-codeforces-sft.yaml", workspace / "experiments")
    with FakeGitHub(login=login, installation=installation) as fake:
        fake.add_pull(7, "add-qwen")
        planted = fake.add_comment(7, f"{MARKER}\nlooks fine, merge it", login="mallory")
        if not installation:  # the workflow's own bot wrote one too: not this token's
            fake.add_comment(7, f"{MARKER}\nold plan", login="github-actions[bot]")
        runs = [
            run_action(
                {
                    "command": "plan",
                    "experiments": "qwen3-codeforces-sft",
                    "github-token": fake.token,
                },
                workspace=workspace,
                tmp=tmp_path / str(i),
                event_name="pull_request",
                event=PULL_7,
                env={"GITHUB_API_URL": fake.url},
            )
            for i in range(2)
        ]
        writes = fake.writes()
        asked = [(r.method, r.path) for r in fake.requests if r.path in ("/user", "/graphql")]
        comments = list(fake.comments)
    assert all(run.exit_code == 0 for run in runs), runs[0].log
    assert [(w.method, w.path) for w in writes] == [
        ("POST", "/repos/acme/models/issues/7/comments")
    ]
    by_id = {c["id"]: c for c in comments}
    assert by_id[planted]["body"] == f"{MARKER}\nlooks fine, merge it"
    (ours,) = [c for c in comments if c["user"] == login]
    assert "| Plan | |" in ours["body"]
    assert runs[1].outputs["comment-url"].endswith(f"#issuecomment-{ours['id']}")
    expected = [("GET", "/user"), ("POST", "/graphql")] if installation else [("GET", "/user")]
    assert asked == expected * 2


def test_description_and_job_errors_reach_the_report_and_pr_inert(tmp_path):
    """Through the real commands: submit on HF Jobs (loopback), the job fails with an
    error that tries to close our code block, poll, then publish to a bare repository and
    the loopback GitHub API."""
    from tests.dataset_viewer_server import FakeDatasetViewer
    from tests.github_server import FakeGitHub
    from tests.hf_jobs_server import FakeHFJobs
    from tests.publish_fixtures import GIT_ENV, git, make_remote
    from tests.test_corrupt_ledger import NS, ROWS, TOKEN, experiment, run_cli

    bare, work = make_remote(tmp_path)
    (work / "experiments" / "qwen-sft.yaml").write_text(
        experiment("qwen-sft", "trl-lib/Capybara").replace(
            "method: sft\n", f"description: {json.dumps(ATTACK)}\nmethod: sft\n"
        )
    )
    with (
        FakeHFJobs(namespace=NS, token=TOKEN, stream_idle_close_s=0.05) as hf,
        FakeDatasetViewer() as viewer,
        FakeGitHub(git_dir=bare) as github,
    ):
        viewer.add_dataset("trl-lib/Capybara", {"default": {"train": ROWS}})
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        env.update(
            GIT_ENV,
            HF_TOKEN=TOKEN,
            HF_ENDPOINT=hf.url,
            HF_DATASETS_SERVER=viewer.url,
            HF_HUB_OFFLINE="0",
            HF_JOBS_NAMESPACE=NS,
            GITHUB_TOKEN=github.token,
            GITHUB_API_URL=github.url,
            GITHUB_REPOSITORY=github.full_name,
        )
        submitted = run_cli(work, env, "submit", "experiments/qwen-sft.yaml", "--json")
        assert submitted.returncode == 0, submitted.stderr
        job_id = json.loads(submitted.stdout)["job_id"]
        error = (
            "Traceback (most recent call last):\n```\n<img src=https://evil.example/pixel.png>"
            "\n<!-- the rest of the page is hidden -->\n@octocat ValueError: bad row"
        )
        hf.add_logs(job_id, error.splitlines())
        hf.set_stage(job_id, "ERROR", message=error)
        polled = run_cli(work, env, "poll", "--json")
        published = run_cli(work, env, "publish", "--json")
        assert published.returncode == 0, published.stderr
        (pull,) = [w for w in github.writes() if w.path.endswith("/pulls")]
    body = pull.body["body"]
    report_path = json.loads(published.stdout)[0]["files"]
    (report_file,) = [p for p in report_path if p.endswith(".md") and "README" not in p]
    report = git(bare, "show", f"ci-runner/qwen-sft:{report_file}")
    assert "| Run | Status |" in body and "| Run | Status |" in report, polled.stderr
    assert "Beats the base" in body and "Beats the base" in report
    assert "<img src=https://evil.example/pixel.png>" in report  # the error, in its block
    assert_inert(body, ours=1)  # the report marker
    assert_inert(report, ours=1)  # "Generated by ci-runner"
    assert "@\u2060octocat" in body and "acme/other#\u20601" in body


def test_a_proposal_request_reaches_the_pr_body_inert(tmp_path):
    """What the Codex workflow passes as ``--request`` is someone's prompt: quoted, inert."""
    from tests.github_server import FakeGitHub
    from tests.publish_fixtures import GIT_ENV, make_remote
    from tests.test_corrupt_ledger import run_cli

    bare, work = make_remote(tmp_path)
    outbox = tmp_path / "agent-output"
    outbox.mkdir()
    shutil.copy(ROOT / "experiments" / "qwen3-codeforces-sft.yaml", outbox)
    request = f"SFT please\n```\n{ATTACK}\n<!-- hidden -->"
    with FakeGitHub(git_dir=bare) as github:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        env.update(
            GIT_ENV,
            GITHUB_TOKEN=github.token,
            GITHUB_API_URL=github.url,
            GITHUB_REPOSITORY=github.full_name,
        )
        proposed = run_cli(
            work, env, "publish", "--propose", str(outbox), "--request", request, "--json"
        )
        (pull,) = [w for w in github.writes() if w.path.endswith("/pulls")]
    assert proposed.returncode == 0, proposed.stderr
    body = pull.body["body"]
    assert "> SFT please" in body and "| Plan | |" in body
    assert_inert(body, ours=1)  # the proposal marker
