"""Experiment files and datasets are untrusted: attacks on the inputs, each refused safely.

Each test is one attack: a YAML bomb, a dataset that
links to /proc/self/environ, reward code outside the project, remote code, a path-valued
TRL setting pointing at /etc, two polls racing to start the same evaluation, and report
files written 0600.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ci_runner.backend.local import LocalBackend
from ci_runner.cli import main
from ci_runner.errors import ExitCode, SpecError
from ci_runner.flow.poll import poll as poll_once
from ci_runner.flow.submit import submit as submit_file
from ci_runner.flow.workspace import Workspace
from ci_runner.ledger.store import STALE_TEMP_S, load_ledger, write_atomic
from ci_runner.paths import Project
from ci_runner.spec.load import MAX_FILE_BYTES, parse_experiment
from tests.conftest import make_project

SECRET = "hf_" + "S3cr3tT0kenValue" * 2
HEAD = "name: x\nbase_model: Qwen/Qwen3-0.6B\nmethod: sft\ndataset: trl-lib/Capybara\n"


def invoke(root: Path, *args: str):
    return CliRunner().invoke(main, ["--root", str(root), *args])


# --- the experiment file ---------------------------------------------------------------------

BILLION_LAUGHS = """\
name: bomb
base_model: Qwen/Qwen3-0.6B
method: sft
dataset: trl-lib/Capybara
hyperparameters:
  model_init_kwargs:
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_a_yaml_bomb_is_refused_fast_with_file_and_line(tmp_path):
    spec = tmp_path / "bomb.yaml"
    spec.write_text(BILLION_LAUGHS)
    assert len(BILLION_LAUGHS.encode()) < 600
    started = time.monotonic()
    result = invoke(tmp_path, "validate", str(spec))
    elapsed = time.monotonic() - started
    assert result.exit_code == ExitCode.SPEC_INVALID
    assert elapsed < 1.0
    assert f"{spec}:13: more than 50 aliases (*name)" in result.output


def test_a_few_aliases_that_expand_hugely_are_refused_too():
    doubling = "".join(
        f"    l{i + 1}: &l{i + 1} [*l{i}, *l{i}]\n" for i in range(24)
    )  # 48 aliases, 2**24 values
    text = HEAD + "hyperparameters:\n  model_init_kwargs:\n    l0: &l0 [1]\n" + doubling
    started = time.monotonic()
    with pytest.raises(SpecError) as err:
        parse_experiment(text, "double.yaml")
    assert time.monotonic() - started < 1.0
    (issue,) = err.value.issues
    assert "expands to more than 20,000 values through its aliases" in issue.message


def test_an_oversized_file_is_refused_before_it_is_read(tmp_path):
    spec = tmp_path / "big.yaml"
    spec.write_text(HEAD + "description: " + "x" * MAX_FILE_BYTES + "\n")
    result = invoke(tmp_path, "validate", str(spec))
    assert result.exit_code == ExitCode.SPEC_INVALID
    assert f"{spec}: larger than 1 MiB" in result.output


# --- local data that reads outside the project ----------------------------------------------


@pytest.fixture
def env_link(tmp_path, monkeypatch):
    """A project whose dataset is a link to this process's environment, holding a secret."""
    monkeypatch.setenv("OTHER_SECRET", SECRET)
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "data" / "env.csv").symlink_to("/proc/self/environ")
    (root / "folder").mkdir()
    (root / "folder" / "train.csv").write_text("text\nhello\n")
    (root / "folder" / "more.csv").symlink_to("/proc/self/environ")
    return root


def test_a_dataset_linked_to_proc_environ_prints_nothing_of_it(env_link):
    checked = invoke(env_link, "check-data", "--dataset", "data/env.csv")
    assert checked.exit_code == ExitCode.DATA
    assert "reads /proc/" in checked.output and "outside the project" in checked.output
    assert SECRET not in checked.output and "OTHER_SECRET" not in checked.output

    spec = env_link / "x.yaml"
    spec.write_text(HEAD.replace("trl-lib/Capybara", "data/env.csv"))
    for command in (["validate"], ["check-data"], ["plan", "--skip-data-check"]):
        result = invoke(env_link, *command, str(spec))
        assert result.exit_code == ExitCode.SPEC_INVALID, result.output
        assert "dataset: 'data/env.csv' reads /proc/" in result.output
        assert SECRET not in result.output and "OTHER_SECRET" not in result.output


def test_a_link_inside_a_dataset_folder_is_refused(env_link):
    spec = env_link / "x.yaml"
    spec.write_text(HEAD.replace("trl-lib/Capybara", "./folder"))
    result = invoke(env_link, "validate", str(spec))
    assert result.exit_code == ExitCode.SPEC_INVALID
    assert f"reads {env_link / 'folder' / 'more.csv'}, which is outside the project" in (
        result.output
    )
    checked = invoke(env_link, "check-data", "--dataset", "folder")
    assert checked.exit_code == ExitCode.DATA and SECRET not in checked.output


def test_an_allowed_root_lets_data_live_outside_the_project(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "chat.jsonl").write_text(json.dumps({"text": "hello"}) + "\n")
    root = tmp_path / "project"
    root.mkdir()
    spec = root / "x.yaml"
    spec.write_text(HEAD.replace("trl-lib/Capybara", str(shared / "chat.jsonl")))
    assert invoke(root, "validate", str(spec)).exit_code == ExitCode.SPEC_INVALID
    monkeypatch.setenv("CI_RUNNER_ALLOWED_ROOTS", str(shared))
    result = invoke(root, "validate", str(spec))
    assert result.exit_code == 0, result.output


def test_reward_code_outside_the_project_is_refused_and_never_runs(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    marker = tmp_path / "ran"
    (outside / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\ndef reward(completions, **kw):\n    return []\n"
    )
    root = tmp_path / "project"
    root.mkdir()
    spec = root / "x.yaml"
    spec.write_text(
        HEAD.replace("method: sft", "method: grpo") + "rewards: [../outside/evil.py:reward]\n"
    )
    result = invoke(root, "validate", str(spec))
    assert result.exit_code == ExitCode.SPEC_INVALID
    assert "rewards[0]: '../outside/evil.py' is outside the project" in result.output
    assert not marker.exists()


def test_remote_code_needs_an_explicit_opt_in_that_the_plan_shows(tmp_path):
    remote = HEAD + "hyperparameters:\n  model_init_kwargs: {trust_remote_code: true}\n"
    with pytest.raises(SpecError) as err:
        parse_experiment(remote, "r.yaml", root=tmp_path)
    (issue,) = err.value.issues
    assert (issue.line, issue.field) == (6, "hyperparameters.model_init_kwargs.trust_remote_code")
    assert "allow_remote_code: true" in issue.hint
    spec = tmp_path / "r.yaml"
    spec.write_text("allow_remote_code: true\n" + remote)
    planned = invoke(tmp_path, "plan", "--json", "--skip-data-check", str(spec))
    assert planned.exit_code == 0, planned.output
    warnings = json.loads(planned.stdout)["plan"]["warnings"]
    assert any(
        w.startswith("allow_remote_code: true: the job runs Python code from") for w in warnings
    )


@pytest.mark.parametrize(
    ("setting", "line"),
    [
        ("chat_template_path: /etc/shadow", "hyperparameters.chat_template_path: '/etc/shadow'"),
        (
            "model_init_kwargs: {cache_dir: /root/.cache/huggingface}",
            "hyperparameters.model_init_kwargs.cache_dir",
        ),
    ],
)
def test_path_valued_trl_settings_stay_inside_the_project(tmp_path, setting, line):
    Path("/root/.cache/huggingface").mkdir(parents=True, exist_ok=True)
    text = HEAD + f"hyperparameters:\n  {setting}\n"
    with pytest.raises(SpecError) as err:
        parse_experiment(text, "p.yaml", root=tmp_path)
    (issue,) = err.value.issues
    assert str(issue).startswith(f"p.yaml:6: {line}")
    assert "outside the project" in issue.message


# --- files ci-runner writes -------------------------------------------------------------------


def test_reports_get_the_umask_mode_and_stale_temp_files_go(tmp_path):
    old = os.umask(0o022)
    try:
        report = tmp_path / "training_reports" / "x.md"
        stale = report.parent / ".x.md.abc123.tmp"
        report.parent.mkdir()
        stale.write_text("left by a writer killed mid-write")
        past = time.time() - STALE_TEMP_S - 5
        os.utime(stale, (past, past))
        assert write_atomic(report, "# report\n")
        assert stat.S_IMODE(report.stat().st_mode) == 0o644
        assert not stale.exists()
    finally:
        os.umask(old)


# --- two polls at once --------------------------------------------------------------------


class SlowLocalBackend(LocalBackend):
    """The real local backend, slow to start a job: widens the window two polls race in."""

    def launch(self, request):
        time.sleep(0.5)
        return super().launch(request)


@pytest.mark.training
def test_two_polls_at_once_start_each_evaluation_once(tiny_fixtures, tmp_path):
    root = make_project(tmp_path, tiny_fixtures.model.parent)
    spec = root / "experiments" / "race.yaml"
    spec.write_text(
        "name: race\nbase_model: ./fixtures/tiny-llama\nmethod: sft\n"
        "dataset: {path: ./fixtures/data/tiny-chat.jsonl, max_samples: 8}\n"
        "hyperparameters: {max_steps: 1, per_device_train_batch_size: 4, max_length: 64}\n"
        "lora: off\nevaluation:\n  benchmarks:\n"
        "    - {benchmark: gsm8k, dataset: ./fixtures/data/tiny-gsm8k, max_samples: 1}\n"
    )
    project = Project(root)
    submitted = submit_file(Workspace(project), spec, check_data=False)
    train_dir = project.jobs_dir / submitted.job_id
    deadline = time.monotonic() + 300
    while not (train_dir / "exit.json").exists():
        assert time.monotonic() < deadline, (train_dir / "log.txt").read_text()
        time.sleep(0.2)

    def backend():
        env = {"TRACKIO_DIR": str(project.trackio_dir)}
        return {"local": SlowLocalBackend(project.jobs_dir, cwd=root, env=env)}

    runners = [Workspace(project, backends=backend()) for _ in range(2)]
    threads = [threading.Thread(target=poll_once, args=(r,)) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    eval_jobs = [
        d
        for d in project.jobs_dir.iterdir()
        if '"ci-runner.stage"' in (d / "request.json").read_text()
    ]
    (ledger_path,) = project.ledger_paths()
    run = load_ledger(ledger_path).runs[0]
    recorded = [j.job_id for j in run.phase_jobs if j.kind == "eval"]
    assert [d.name for d in eval_jobs] == recorded[:1]  # started once, by one of the polls
    assert len(recorded) == 2 and len(set(recorded)) == 1  # base and final share it
    for d in project.jobs_dir.iterdir():  # let the evaluations finish before cleanup
        while not (d / "exit.json").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
