"""ci-runner where its users run it: someone else's repository, on a GitHub-hosted runner.

The world of these tests, and what stands in for what:

* **the user's repository** holds only ``experiments/`` and the workflow the README tells
  users to copy (extracted from the README), pushed to a real bare git remote;
* **the runner**: every action step runs as a user that is not root (``nobody`` when the
  suite runs as root), with user namespaces refused (tests/unprivileged.py), in a fresh
  clone of the remote per workflow run, as ``actions/checkout`` leaves it;
* **the install** is action.yml's own step: the real ``uv`` builds the action's files (a
  copy of this checkout's tracked files, as GitHub unpacks ``uses: OWNER/ci-runner@sha``)
  into a fresh venv, dependencies from the package index, warm from a uv cache;
* **the workflow**: each event's payload picks the README workflow's job by its ``if:``,
  and that job's ``with:`` (secrets only for jobs in the ``training`` environment) are the
  action's inputs;
* **GitHub and HF Jobs** are the loopback servers, driven by the real PyGithub and
  huggingface_hub clients inside the installed package.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.action_harness import ActionRun, run_action
from tests.conftest import HF_NAMESPACE, HF_TOKEN, _store_env, copy_checkout
from tests.github_server import FakeGitHub
from tests.readme_workflow import readme_workflow
from tests.test_hf_jobs_backend import summary_line
from tests.unprivileged import as_unprivileged, give_to, unprivileged_ids, userns_refused

pytestmark = [pytest.mark.usefixtures("loopback_online"), pytest.mark.slow]

EXPERIMENT = """\
name: my-sft
description: SFT on Capybara, from a repository that holds nothing else.
base_model: Qwen/Qwen3-0.6B
method: sft
dataset: trl-lib/Capybara
hyperparameters:
  max_steps: 100
lora: off
hardware: t4-small
timeout: 90m
output:
  hub_model_id: alice/my-sft
backend: hf-jobs
"""
REPORT = "training_reports/qwen3-0.6b-capybara-sft.md"
OWNER_ACTION = re.compile(r"^[\w.-]+/ci-runner@[0-9a-f]{40}$")
ALLOWED_COMMANDS = re.compile(r"^::(add-mask|stop-commands)::|^::[0-9a-f]{32}::$")


# --- the runner: a user that is not root, without user namespaces -------------------------


@dataclass(frozen=True)
class Runner:
    uid: int
    gid: int
    preexec: Callable[[], None]
    home: Path
    python: str  # what actions/setup-python gives this user
    stores: dict[str, str]  # the runner's own caches: a runner starts with none

    def git(self, cwd: Path, *args: str) -> str:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            preexec_fn=self.preexec,
            env=self.env(),
            timeout=60,
        )
        assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
        return proc.stdout

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.home),
            "USER": "runner",
            "LOGNAME": "runner",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_AUTHOR_NAME": "Ada",
            "GIT_AUTHOR_EMAIL": "ada@example.com",
            "GIT_COMMITTER_NAME": "Ada",
            "GIT_COMMITTER_EMAIL": "ada@example.com",
            **self.stores,
        }


@pytest.fixture(scope="module")
def runner_root() -> Iterator[Path]:
    """A folder the runner's user can reach (pytest's own tmp is private to root)."""
    root = Path(tempfile.mkdtemp(prefix="ci-runner-runner-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def runner(runner_root) -> Runner:
    uid, gid = unprivileged_ids() if os.geteuid() == 0 else (os.getuid(), os.getgid())
    home = runner_root / "home"
    home.mkdir()
    stores = _store_env(home / "stores")
    give_to(home, uid, gid)
    preexec = as_unprivileged(uid, gid)
    assert userns_refused(preexec), "the runner-like user can still make user namespaces"
    return Runner(uid, gid, preexec, home, python_for(preexec), stores)


def python_for(preexec: Callable[[], None]) -> str:
    """An interpreter (3.10+) the runner's user can run: setup-python's part."""
    candidates = [str(Path(sys._base_executable).resolve()), "/usr/bin/python3"]
    for python in candidates:
        try:
            probe = subprocess.run(
                [python, "-c", "import sys; assert sys.version_info >= (3, 10)"],
                preexec_fn=preexec,
                capture_output=True,
            )
        except OSError:  # not reachable by this user
            continue
        if probe.returncode == 0:
            return python
    pytest.skip(f"no Python 3.10+ this user can run among {candidates}")


@pytest.fixture(autouse=True)
def git_trusts_the_runners_repos(monkeypatch):
    """The loopback GitHub reads the bare repository the runner's user owns."""
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "safe.directory")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "*")


@pytest.fixture(scope="module")
def action_dir(runner_root, runner) -> Path:
    """The action as GitHub unpacks ``uses: OWNER/ci-runner@sha``: its tracked files only."""
    target = runner_root / "actions" / "ci-runner"
    copy_checkout(target)
    give_to(target.parent, runner.uid, runner.gid)
    return target


@pytest.fixture(scope="module")
def uv(runner_root) -> Path:
    """What setup-uv puts on the PATH: the uv the dev extra pins, where the user reaches it."""
    source = Path(sys.executable).parent / "uv"
    if not source.exists():
        pytest.skip("uv is not installed (pip install -e '.[dev]')")
    target = runner_root / "uv-bin" / "uv"
    target.parent.mkdir()
    shutil.copy2(source, target)
    target.parent.chmod(0o755)
    return target


@pytest.fixture(scope="module")
def uv_cache(runner_root, runner) -> Path:
    cache = runner_root / "uv-cache"
    cache.mkdir()
    give_to(cache, runner.uid, runner.gid)
    return cache


# --- the user's repository and the workflow they copied -----------------------------------


class Workflow:
    """The README's workflow, read as GitHub reads it for one event."""

    def __init__(self) -> None:
        path, text = readme_workflow()
        self.path, self.text = path, text
        self.doc = yaml.safe_load(text)

    def jobs_for(self, event_name: str) -> list[tuple[str, dict]]:
        picked = []
        for name, job in self.doc["jobs"].items():
            condition = job.get("if", "")
            m = re.fullmatch(r"github\.event_name == '(\w+)'", condition)
            assert m, f"job {name}: a condition this test cannot read: {condition!r}"
            if m[1] == event_name:
                picked.append((name, job))
        return picked

    def action_inputs(
        self, event_name: str, *, token: str, dispatch: dict[str, str] | None = None
    ) -> dict[str, str]:
        """The ``with:`` of the one job this event runs, its expressions evaluated."""
        (name, job), *more = self.jobs_for(event_name)
        assert not more, f"{event_name} runs several jobs"
        (step,) = [s for s in job["steps"] if OWNER_ACTION.match(s.get("uses", ""))]
        secrets = {"HF_TOKEN": HF_TOKEN} if job.get("environment") == "training" else {}
        declared = self.doc[True]["workflow_dispatch"]["inputs"]  # YAML reads `on:` as True
        inputs = {k: str(v.get("default", "")) for k, v in declared.items()} | (dispatch or {})

        def value(expr: str) -> str:
            if expr == "github.token":
                return token
            if m := re.fullmatch(r"secrets\.(\w+)", expr):
                return secrets.get(m[1], "")
            if m := re.fullmatch(r"inputs\.([\w-]+)", expr):
                return inputs[m[1]]
            raise AssertionError(f"job {name}: an expression this test cannot read: {expr}")

        pattern = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
        return {k: pattern.sub(lambda m: value(m[1]), str(v)) for k, v in step["with"].items()}


@dataclass
class Repo:
    """The user's repository: a bare remote and the runner's checkouts of it."""

    bare: Path
    root: Path
    runner: Runner
    count: int = 0

    def checkout(self, ref: str = "main") -> Path:
        self.count += 1
        work = self.root / f"checkout-{self.count}"
        self.runner.git(self.root, "clone", "--quiet", str(self.bare), str(work))
        if ref != "main":
            self.runner.git(work, "checkout", "--quiet", ref)
        return work

    def branches(self) -> dict[str, str]:
        out = self.runner.git(self.bare, "for-each-ref", "--format=%(refname:short) %(objectname)")
        return dict(line.split() for line in out.splitlines())

    def files_at(self, ref: str) -> list[str]:
        return self.runner.git(self.bare, "ls-tree", "-r", "--name-only", ref).split()


@pytest.fixture
def repo(request, runner_root, runner) -> Repo:
    root = runner_root / request.node.name / "user"
    root.mkdir(parents=True)
    give_to(root, runner.uid, runner.gid)
    bare = root / "models.git"
    runner.git(root, "init", "--quiet", "--bare", "-b", "main", str(bare))
    seed = root / "seed"
    runner.git(root, "init", "--quiet", "-b", "main", str(seed))
    workflow = Workflow()
    for path, text in {
        "experiments/my-sft.yaml": EXPERIMENT,
        workflow.path: workflow.text,
    }.items():
        (seed / path).parent.mkdir(parents=True, exist_ok=True)
        (seed / path).write_text(text)
    give_to(seed, runner.uid, runner.gid)
    runner.git(seed, "add", ".")
    runner.git(seed, "commit", "--quiet", "-m", "Add my-sft")
    runner.git(seed, "push", "--quiet", str(bare), "main")
    assert sorted(Repo(bare, root, runner).files_at("main")) == sorted(
        ["experiments/my-sft.yaml", workflow.path]
    )
    return Repo(bare, root, runner)


# --- one workflow run ------------------------------------------------------------------------


@dataclass
class World:
    runner: Runner
    action: Path
    uv_cache: Path
    uv: Path
    repo: Repo
    github: FakeGitHub
    hf: object
    tmp: Path
    runs: int = 0

    def trigger(
        self, event_name: str, event: dict, *, ref: str = "main", dispatch: dict | None = None
    ) -> ActionRun:
        """One workflow run: a fresh checkout, the README job's inputs, action.yml's steps."""
        self.runs += 1
        workspace = self.repo.checkout(ref)
        inputs = Workflow().action_inputs(event_name, token=self.github.token, dispatch=dispatch)
        tmp = self.tmp / f"run-{self.runs}"
        tmp.mkdir()
        give_to(tmp, self.runner.uid, self.runner.gid)
        run = run_action(
            inputs,
            workspace=workspace,
            tmp=tmp,
            event_name=event_name,
            event=event,
            env={
                **self.runner.env(),
                "GITHUB_API_URL": self.github.url,
                "HF_HUB_OFFLINE": "0",  # the loopback Hub and HF Jobs are reachable
            },
            install="real",
            action_path=self.action,
            uv_cache=self.uv_cache,
            preexec=self.runner.preexec,
            repository=self.github.full_name,
            python=self.runner.python,
            uv=self.uv,
        )
        stray = [c for c in run.commands if not ALLOWED_COMMANDS.match(c)]
        assert not stray, f"workflow commands from ci-runner's output: {stray}"
        printed = "\n".join(
            line for line in run.log.splitlines() if not line.startswith("::add-mask::")
        )
        for secret in (HF_TOKEN, self.github.token):
            assert secret not in printed + run.summary + json.dumps(run.outputs)
        return run


@pytest.fixture
def world(runner, action_dir, uv_cache, uv, repo, hf) -> Iterator[World]:
    with FakeGitHub(git_dir=repo.bare) as github:
        yield World(runner, action_dir, uv_cache, uv, repo, github, hf, repo.root.parent)


def outputs(run: ActionRun) -> dict[str, object]:
    return {k: json.loads(v) if v.startswith("[") else v for k, v in run.outputs.items()}


def push_event(*added: str) -> dict:
    return {
        "ref": "refs/heads/main",
        "commits": [{"added": list(added), "modified": [], "removed": []}],
    }


# --- the tests ---------------------------------------------------------------------------------


def test_push_then_schedule_submits_polls_and_publishes_as_a_non_root_runner(world):
    hf, github, repo = world.hf, world.github, world.repo

    pushed = world.trigger("push", push_event("experiments/my-sft.yaml"))
    assert pushed.exit_code == 0, pushed.log + pushed.summary
    (created,) = hf.requests_to("POST", rf"^/api/jobs/{HF_NAMESPACE}$")
    (job_id,) = hf.jobs
    out = outputs(pushed)
    assert out["exit-code"] == "0"
    assert out["experiments"] == ["my-sft"]
    (run_id,) = out["run-ids"]
    assert run_id.startswith("my-sft-")
    assert out["job-ids"] == [job_id]
    assert out["report-paths"] == [REPORT]
    assert out["pr-url"] == "https://github.example/acme/models/pull/1"
    assert "## ci-runner submit" in pushed.summary and f"Submitted `{run_id}`" in pushed.summary
    branches = repo.branches()
    assert "ci-runner/my-sft" in branches
    assert REPORT in repo.files_at("ci-runner/my-sft")
    (pr,) = github.pulls
    assert pr["head"] == "ci-runner/my-sft" and pr["base"] == "main"
    assert created.json["secrets"] == {"HF_TOKEN": HF_TOKEN}  # a secret, never in env

    hf.set_stage(job_id, "RUNNING")
    hf.add_logs(job_id, ["[step 100/100] loss=0.9 learning_rate=0", summary_line()])
    hf.set_stage(job_id, "COMPLETED")

    polled = world.trigger("schedule", {"schedule": "*/15 * * * *"})
    assert polled.exit_code == 0, polled.log + polled.summary
    out = outputs(polled)
    assert out["experiments"] == ["my-sft"]
    assert out["run-ids"] == [run_id] and out["job-ids"] == [job_id]
    assert out["report-paths"] == [REPORT]
    assert out["pr-url"] == pr_url(github)
    assert "Restored from unmerged result branches" in polled.summary
    assert "Completed" in polled.summary
    after_poll = repo.branches()["ci-runner/my-sft"]
    assert after_poll != branches["ci-runner/my-sft"]  # the completed run was committed
    report = repo.runner.git(repo.bare, "show", f"ci-runner/my-sft:{REPORT}")
    assert "Completed" in report and job_id in report
    assert "Completed" in github.pulls[0]["body"]

    github.clear()
    again = world.trigger("schedule", {"schedule": "*/15 * * * *"})
    assert again.exit_code == 0, again.log + again.summary
    assert repo.branches()["ci-runner/my-sft"] == after_poll  # nothing new: no commit
    assert github.writes() == []  # and nothing written to GitHub
    assert outputs(again)["pr-url"] == pr_url(github)
    assert len(hf.requests_to("POST", rf"^/api/jobs/{HF_NAMESPACE}$")) == 1  # never resubmitted

    # The install is the action's own step, cached: report how long it took here.
    install_s = pushed.step_seconds[1], polled.step_seconds[1], again.step_seconds[1]
    print(f"install step (uv, warm cache): {', '.join(f'{s:.1f}s' for s in install_s)}")


def pr_url(github: FakeGitHub) -> str:
    return f"https://github.example/{github.full_name}/pull/{github.pulls[0]['number']}"


def test_a_pull_request_gets_its_plan_as_a_comment(world):
    repo, github = world.repo, world.github
    work = repo.checkout()
    base = repo.runner.git(work, "rev-parse", "HEAD").strip()
    repo.runner.git(work, "checkout", "--quiet", "-b", "try-lr")
    (work / "experiments" / "try-lr.yaml").write_text(
        EXPERIMENT.replace("my-sft", "try-lr").replace("max_steps: 100", "max_steps: 50")
    )
    repo.runner.git(work, "add", ".")
    repo.runner.git(work, "commit", "--quiet", "-m", "Try another learning rate")
    repo.runner.git(work, "push", "--quiet", "origin", "try-lr")
    head = repo.runner.git(work, "rev-parse", "HEAD").strip()
    github.add_pull(7, head="try-lr")
    event = {
        "number": 7,
        "pull_request": {
            "number": 7,
            "base": {"sha": base, "ref": "main"},
            "head": {"sha": head, "ref": "try-lr", "repo": {"full_name": github.full_name}},
        },
    }

    planned = world.trigger("pull_request", event, ref="try-lr")

    assert planned.exit_code == 0, planned.log + planned.summary
    out = outputs(planned)
    assert out["experiments"] == ["try-lr"]  # only the file the pull request changed
    (run_id,) = out["run-ids"]
    assert run_id.startswith("try-lr-")
    assert out["job-ids"] == [] and out["pr-url"] == ""  # planning starts nothing
    assert out["comment-url"].endswith(tuple(f"#issuecomment-{c['id']}" for c in github.comments))
    (comment,) = github.comments
    assert "t4-small" in comment["body"] and "try-lr" in comment["body"]
    assert "t4-small" in planned.summary
    assert world.hf.requests_to("POST", rf"^/api/jobs/{HF_NAMESPACE}$") == []
    assert set(planned.masked) == {github.token}  # the plan job is outside `training`


def test_dispatching_a_local_run_is_refused_with_the_remedy(world):
    local = EXPERIMENT.replace("name: my-sft", "name: on-runner").replace(
        "backend: hf-jobs", "backend: local"
    )
    work = world.repo.checkout()
    (work / "experiments" / "on-runner.yaml").write_text(local)
    world.repo.runner.git(work, "add", ".")
    world.repo.runner.git(work, "commit", "--quiet", "-m", "A run on the runner")
    world.repo.runner.git(work, "push", "--quiet", "origin", "main")

    submitted = world.trigger(
        "workflow_dispatch", {}, dispatch={"command": "submit", "experiment": "on-runner"}
    )
    assert submitted.exit_code == 4, submitted.log + submitted.summary
    assert "refused in the GitHub Action" in submitted.summary
    assert "`command: run` on a self-hosted runner" in submitted.summary
    assert "backend: hf-jobs" in submitted.summary
    assert outputs(submitted)["job-ids"] == []
    assert world.hf.requests_to("POST", rf"^/api/jobs/{HF_NAMESPACE}$") == []
    assert "ci-runner/on-runner" not in world.repo.branches()  # nothing published


def test_run_with_the_local_backend_needs_the_train_extra_and_says_which_input(world):
    """A GitHub-hosted runner installs no training stack unless `extras: train` asks."""
    local = EXPERIMENT.replace("name: my-sft", "name: on-runner").replace(
        "backend: hf-jobs", "backend: local"
    )
    work = world.repo.checkout()
    (work / "experiments" / "on-runner.yaml").write_text(local)
    tmp = world.tmp / "run-local"
    tmp.mkdir()
    give_to(tmp, world.runner.uid, world.runner.gid)
    give_to(work, world.runner.uid, world.runner.gid)

    ran = run_action(
        {"command": "run", "experiments": "on-runner"},
        workspace=work,
        tmp=tmp,
        env={**world.runner.env(), "HF_HUB_OFFLINE": "0"},
        install="real",
        action_path=world.action,
        uv_cache=world.uv_cache,
        preexec=world.runner.preexec,
        python=world.runner.python,
        uv=world.uv,
    )

    assert ran.exit_code == 4, ran.log + ran.summary
    assert "`extras: train`" in ran.summary
    assert outputs(ran)["job-ids"] == []
    assert not (work / ".ci-runner" / "jobs").exists()  # nothing started

    # Generated code on this runner: no user namespaces, no sudo. The installed package's
    # own sandbox probe refuses it, and a HumanEval experiment is stopped with exit 8.
    humaneval = work / "experiments" / "code.yaml"
    humaneval.write_text(
        local.replace("name: on-runner", "name: code")
        + "evaluation:\n  benchmarks:\n    - benchmark: humaneval\n"
    )
    give_to(work, world.runner.uid, world.runner.gid)
    venv_python = tmp / "runner-temp" / "ci-runner-venv" / "bin" / "python"
    check = (
        "import sys\n"
        "from ci_runner.commands import open_workspace\n"
        "from ci_runner.errors import CiRunnerError\n"
        "from ci_runner.flow.isolation import check_isolation, probe\n"
        "print(probe())\n"
        "try:\n"
        "    check_isolation(open_workspace('.').load('experiments/code.yaml'), 'code.yaml')\n"
        "except CiRunnerError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(exc.exit_code)\n"
    )
    refused = subprocess.run(
        [str(venv_python), "-c", check],
        cwd=work,
        env=world.runner.env(),
        preexec_fn=world.runner.preexec,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 8, refused.stdout + refused.stderr
    assert "'isolated': False" in refused.stdout
    assert "allow_unisolated_code: true" in refused.stdout
