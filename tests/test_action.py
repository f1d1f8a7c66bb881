"""action.yml, step by step, in a simulated GitHub runner (tests/action_harness.py).

validate and plan run over the example experiments: the tiny ones against the built
offline fixtures, the Hub ones offline (their plan says the model size is unknown).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ci_runner.action.event import changed_in_push, experiment_files
from tests.action_harness import ROOT, load_action, run_action
from tests.conftest import make_project
from tests.github_server import FakeGitHub
from tests.publish_fixtures import make_run, write_results

EXAMPLES = sorted(p.name for p in (ROOT / "experiments").glob("*.yaml"))
NAMES = sorted(Path(n).stem for n in EXAMPLES)
HF_TOKEN = "hf_" + "A1b2C3d4" * 5
HUB = "qwen3-codeforces-sft"  # plans offline in a second (no tokenizer to load)


@pytest.fixture
def workspace(tmp_path, tiny_fixtures):
    return make_project(tmp_path / "ws", tiny_fixtures.model.parent, *EXAMPLES)


def test_action_yml_passes_inputs_through_env_only():
    action = load_action()
    assert action["runs"]["using"] == "composite"
    for step in action["runs"]["steps"]:
        assert "${{" not in step.get("run", ""), step.get("name")
        if "uses" in step:  # third-party actions pinned to a full commit SHA
            ref = step["uses"].split("@", 1)[1]
            assert len(ref) == 40 and int(ref, 16) >= 0
    assert set(action["inputs"]) >= {
        "command",
        "experiments",
        "backend",
        "hf-token",
        "github-token",
        "python-version",
        "dry-run",
        "working-directory",
    }
    assert {"job-ids", "report-paths", "pr-url"} <= set(action["outputs"])


def test_validate_examples(workspace, tmp_path):
    run = run_action(
        {"command": "validate", "experiments": "experiments/*.yaml", "hf-token": HF_TOKEN},
        workspace=workspace,
        tmp=tmp_path,
    )
    assert run.exit_code == 0, run.log
    assert run.skipped == [
        "actions/setup-python@ece7cb06caefa5fff74198d8649806c4678c61a1",
        "astral-sh/setup-uv@20cfd1bf945f4377ade1205e4dbc17946fc9a30d",
    ]  # noted, not run
    venv = tmp_path / "runner-temp" / "ci-runner-venv"
    assert run.pip_installs == [f"install --quiet --python {venv}/bin/python {ROOT}"]
    assert json.loads(run.outputs["experiments"]) == NAMES
    assert run.outputs["exit-code"] == "0"
    assert json.loads(run.outputs["job-ids"]) == []
    assert "## ci-runner validate" in run.summary
    for name in NAMES:
        assert f"| `experiments/{name}.yaml` | `{name}` |" in run.summary
    assert run.summary.count("| ok |") == len(NAMES)
    # The token is masked before anything else runs, and shows up nowhere else.
    assert set(run.masked) == {HF_TOKEN}
    assert run.log.count(HF_TOKEN) == run.log.count(f"::add-mask::{HF_TOKEN}")
    assert HF_TOKEN not in run.summary + json.dumps(run.outputs)


def test_validate_reports_an_invalid_file(workspace, tmp_path):
    shutil.copy(ROOT / "tests" / "malformed" / "hardware_typo.yaml", workspace / "experiments")
    run = run_action(
        {"command": "validate", "experiments": "experiments/hardware_typo.yaml tiny-sft"},
        workspace=workspace,
        tmp=tmp_path,
    )
    assert run.exit_code == 3
    assert run.outputs["exit-code"] == "3"
    assert json.loads(run.outputs["experiments"]) == ["tiny-sft"]  # the valid one, by name
    assert "| invalid |" in run.summary
    assert "experiments/hardware_typo.yaml:" in run.summary  # file:line: field: message


def test_plan_examples_offline(workspace, tmp_path):
    run = run_action(
        {"command": "plan", "experiments": "experiments/*.yaml"},
        workspace=workspace,
        tmp=tmp_path,
    )
    assert run.exit_code == 0, run.log + run.summary
    assert json.loads(run.outputs["experiments"]) == NAMES
    assert run.outputs["comment-url"] == ""  # not a pull request: no comment
    summary = run.summary
    assert "## ci-runner plan" in summary
    assert f"{len(NAMES)}/{len(NAMES)} experiment file(s) ready" in summary
    assert summary.count("| Plan | |") == len(NAMES)
    assert "| Hardware | local (this machine) |" in summary  # the tiny ones
    assert "Qwen/Qwen3-0.6B: size unknown" in summary  # the Hub ones, offline
    assert "Data check: **READY**" in summary


def test_plan_on_a_pull_request_keeps_one_comment(workspace, tmp_path):
    event = {
        "number": 7,
        "pull_request": {
            "number": 7,
            "base": {"sha": "0" * 40},
            "head": {"repo": {"full_name": "acme/models"}},
        },
    }
    with FakeGitHub() as fake:
        fake.add_pull(7, "add-tiny-sft")
        env = {"GITHUB_API_URL": fake.url}
        inputs = {"command": "plan", "experiments": HUB, "github-token": fake.token}
        first = run_action(
            inputs,
            workspace=workspace,
            tmp=tmp_path / "1",
            event_name="pull_request",
            event=event,
            env=env,
        )
        second = run_action(
            inputs,
            workspace=workspace,
            tmp=tmp_path / "2",
            event_name="pull_request",
            event=event,
            env=env,
        )
        writes = fake.writes()
    assert first.exit_code == 0 and second.exit_code == 0, first.log + second.log
    assert [(w.method, w.path) for w in writes] == [
        ("POST", "/repos/acme/models/issues/7/comments")
    ]
    body = writes[0].body["body"]
    assert body.startswith("<!-- ci-runner:plan -->")
    assert "| Plan | |" in body and "estimated cost" in body
    assert first.outputs["comment-url"].endswith("#issuecomment-5000")
    assert second.outputs["comment-url"] == first.outputs["comment-url"]
    assert fake.token not in body and fake.token not in first.summary
    assert set(first.masked) == {fake.token}


def test_plan_on_a_fork_pull_request_comments_nothing(workspace, tmp_path):
    event = {"pull_request": {"number": 8, "head": {"repo": {"full_name": "stranger/models"}}}}
    with FakeGitHub() as fake:
        run = run_action(
            {"command": "plan", "experiments": HUB, "github-token": fake.token},
            workspace=workspace,
            tmp=tmp_path,
            event_name="pull_request",
            event=event,
            env={"GITHUB_API_URL": fake.url},
        )
        assert fake.requests == []
    assert run.exit_code == 0
    assert "pull request from a fork" in run.log
    assert "| Plan | |" in run.summary


def test_submit_dry_run_only_plans(workspace, tmp_path):
    run = run_action(
        {"command": "submit", "experiments": HUB, "dry-run": "true"},
        workspace=workspace,
        tmp=tmp_path,
    )
    assert run.exit_code == 0, run.log
    assert json.loads(run.outputs["job-ids"]) == []
    assert "## ci-runner plan (dry run)" in run.summary
    assert not (workspace / "training_reports").exists()


def test_submit_needs_named_experiments_outside_a_push(workspace, tmp_path):
    run = run_action({"command": "submit"}, workspace=workspace, tmp=tmp_path)
    assert run.exit_code == 2
    assert "name the experiments" in run.summary


def test_poll_summary_has_status_and_eval_tables(tmp_path):
    workspace = tmp_path / "ws"
    (workspace / "experiments").mkdir(parents=True)
    write_results(workspace, make_run(step=100, loss=0.9, done=True, score=0.351))
    run = run_action({"command": "poll"}, workspace=workspace, tmp=tmp_path)
    assert run.exit_code == 0, run.log
    assert "## ci-runner poll" in run.summary
    # the report's own overview: the experiment, its runs and their checks, the evaluations
    assert "### `qwen3-codeforces-sft`: SFT (TRL) of `Qwen/Qwen3-0.6B`" in run.summary
    assert "| Run | Status | Step | Loss | Wall time (submit → finish) |" in run.summary
    assert "| Completed | 100/100 | 0.9000 |" in run.summary and "| ok |" in run.summary
    assert "Δ vs base" in run.summary and "+0.047" in run.summary
    assert run.outputs["pr-url"] == ""  # no token: nothing published


def test_changed_files_of_a_push():
    payload = {
        "commits": [
            {"added": ["experiments/a.yaml", "README.md"], "modified": [], "removed": []},
            {"added": [], "modified": ["experiments/b.yaml"], "removed": ["experiments/a.yaml"]},
        ]
    }
    assert changed_in_push(payload) == ["README.md", "experiments/b.yaml"]


def test_experiment_files_from_event_and_names(tmp_path):
    (tmp_path / "experiments").mkdir()
    for name in ("a", "b"):
        (tmp_path / "experiments" / f"{name}.yaml").write_text("")
    push = {"commits": [{"added": ["experiments/b.yaml", "docs/x.yaml"], "modified": []}]}
    assert experiment_files(tmp_path, [], "push", push) == ["experiments/b.yaml"]
    assert experiment_files(tmp_path, [], "schedule", {}) == [
        "experiments/a.yaml",
        "experiments/b.yaml",
    ]
    assert experiment_files(tmp_path, ["a", "experiments/*.yaml"], "", {}) == [
        "experiments/a.yaml",
        "experiments/b.yaml",
    ]


def test_poll_publishes_results_and_outputs_the_pr(tmp_path):
    from tests.publish_fixtures import make_remote

    bare, work = make_remote(tmp_path)
    write_results(work, make_run(step=100, loss=0.9, done=True, score=0.351))
    with FakeGitHub(git_dir=bare) as fake:
        inputs = {"command": "poll", "github-token": fake.token}
        env = {"GITHUB_API_URL": fake.url, "GIT_CONFIG_GLOBAL": "/dev/null"}
        first = run_action(
            inputs, workspace=work, tmp=tmp_path / "1", event_name="schedule", env=env
        )
        fresh = tmp_path / "fresh"  # the next scheduled run starts from a clean checkout
        shutil.copytree(work, fresh)
        shutil.rmtree(fresh / "training_reports")
        fake.clear()
        second = run_action(
            inputs, workspace=fresh, tmp=tmp_path / "2", event_name="schedule", env=env
        )
        assert fake.writes() == []  # restored from the branch, nothing new: nothing written
    assert first.exit_code == 0, first.log + first.summary
    assert first.outputs["pr-url"] == "https://github.example/acme/models/pull/1"
    assert json.loads(first.outputs["pr-urls"]) == [first.outputs["pr-url"]]
    assert "PR created" in first.summary
    assert second.exit_code == 0, second.log + second.summary
    assert "Restored from unmerged result branches" in second.summary
    assert second.outputs["pr-url"] == first.outputs["pr-url"]


def test_extras_reach_the_install_and_nothing_else(workspace, tmp_path):
    run = run_action(
        {"command": "validate", "experiments": "tiny-sft", "extras": "train,mlflow"},
        workspace=workspace,
        tmp=tmp_path,
    )
    assert run.exit_code == 0, run.log
    venv = tmp_path / "runner-temp" / "ci-runner-venv"
    assert run.pip_installs == [f"install --quiet --python {venv}/bin/python {ROOT}[train,mlflow]"]
    crafted = run_action(
        {"command": "validate", "extras": "train] /etc/passwd ["},
        workspace=workspace,
        tmp=tmp_path / "crafted",
    )
    assert crafted.exit_code == 2
    assert crafted.pip_installs == []  # refused before anything is installed
    assert "input extras must be extra names" in crafted.log
