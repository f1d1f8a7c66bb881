"""A corrupt ledger (a truncated write, a bad merge, a hand edit) costs only its own
experiment, and says which file it is and how to get it back.

Two experiments run on HF Jobs (the loopback server); one ledger is then damaged, and
every command is run as CI and people run it: a fresh ``ci-runner`` process, the MCP
server over stdio, and ``publish`` into a real bare repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ci_runner.errors import ExitCode
from ci_runner.paths import Project
from tests.dataset_viewer_server import FakeDatasetViewer
from tests.hf_jobs_server import FakeHFJobs
from tests.publish_fixtures import GIT_ENV, git, make_remote

NS = "alice"
TOKEN = "hf_TOPSECRET_token_never_printed_0042"
ROWS = [
    {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
    for i in range(20)
]


def experiment(name: str, dataset: str) -> str:
    return (
        f"name: {name}\nbase_model: Qwen/Qwen3-0.6B\nmethod: sft\ndataset: {dataset}\n"
        "hyperparameters:\n  max_steps: 100\nhardware: t4-small\ntimeout: 90m\n"
        f"output:\n  hub_model_id: {NS}/{name}\nbackend: hf-jobs\n"
    )


def truncate(text: str) -> str:
    return text[: len(text) // 2]


def wrong_types(text: str) -> str:
    data = json.loads(text)
    data["runs"][0]["attempts"] = "lost"
    data["runs"][0]["status"] = 42
    return json.dumps(data, indent=2)


@pytest.fixture
def servers():
    with (
        FakeHFJobs(namespace=NS, token=TOKEN, stream_idle_close_s=0.05) as hf,
        FakeDatasetViewer() as viewer,
    ):
        viewer.add_dataset("trl-lib/Capybara", {"default": {"train": ROWS}})
        viewer.add_dataset("trl-lib/ultrachat", {"default": {"train": ROWS}})
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        env.update(
            HF_TOKEN=TOKEN,
            HF_ENDPOINT=hf.url,
            HF_DATASETS_SERVER=viewer.url,
            HF_HUB_OFFLINE="0",
            HF_JOBS_NAMESPACE=NS,
        )
        yield hf, env


def run_cli(root: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ci_runner.cli", "--root", str(root), *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def two_experiments(root: Path, hf: FakeHFJobs, env: dict) -> dict[str, str]:
    """alpha and beta submitted and running; their job ids."""
    (root / "experiments").mkdir(exist_ok=True)
    jobs = {}
    for name, dataset in (("alpha", "trl-lib/Capybara"), ("beta", "trl-lib/ultrachat")):
        (root / "experiments" / f"{name}.yaml").write_text(experiment(name, dataset))
        submitted = run_cli(root, env, "submit", f"experiments/{name}.yaml", "--json")
        assert submitted.returncode == 0, submitted.stderr
        jobs[name] = json.loads(submitted.stdout)["job_id"]
        hf.set_stage(jobs[name], "RUNNING")
        hf.add_logs(jobs[name], ["[step 10/100] loss=2.0"])
    return jobs


def ledger_of(root: Path, dataset_slug: str) -> Path:
    (path,) = Project(root).reports_dir.glob(f"*{dataset_slug}*.ledger.json")
    return path


def assert_named(stderr: str, beta: Path) -> None:
    """The file, what is wrong, and the remedy; no traceback, no pydantic dump."""
    shown = f"training_reports/{beta.name}"
    assert f"{shown}: unreadable ledger (" in stderr
    assert f"git checkout -- {shown}" in stderr
    assert "Traceback" not in stderr and "pydantic" not in stderr


@pytest.mark.parametrize("damage", [truncate, wrong_types], ids=["truncated", "wrong-types"])
def test_a_corrupt_ledger_is_named_and_every_other_experiment_keeps_working(
    servers, tmp_path, damage
):
    hf, env = servers
    root = tmp_path
    jobs = two_experiments(root, hf, env)
    alpha, beta = ledger_of(root, "capybara"), ledger_of(root, "ultrachat")
    beta.write_text(damage(beta.read_text()))
    damaged = beta.read_bytes()
    creates = len(hf.requests_to("POST", rf"^/api/jobs/{NS}$"))

    status = run_cli(root, env, "status", "--json")
    assert status.returncode == ExitCode.LEDGER_CORRUPT, status.stderr
    assert [doc["experiment"] for doc in json.loads(status.stdout)] == ["alpha"]
    assert_named(status.stderr, beta)

    hf.set_stage(jobs["alpha"], "COMPLETED")
    polled = run_cli(root, env, "poll", "--json")
    assert polled.returncode == ExitCode.LEDGER_CORRUPT, polled.stderr
    assert_named(polled.stderr, beta)
    assert json.loads(alpha.read_text())["runs"][0]["status"] != "running"  # alpha advanced

    Project(root).report_path(alpha.name.removesuffix(".ledger.json")).unlink()
    reported = run_cli(root, env, "report", "--json")
    assert reported.returncode == ExitCode.LEDGER_CORRUPT, reported.stderr
    assert any("capybara" in path for path in json.loads(reported.stdout)["changed"])
    assert_named(reported.stderr, beta)

    # Commands about beta itself say why they cannot answer, and change nothing.
    for args in (("logs", "beta"), ("cancel", "beta"), ("submit", "experiments/beta.yaml")):
        result = run_cli(root, env, *args)
        assert result.returncode == ExitCode.LEDGER_CORRUPT, (args, result.stderr)
        assert_named(result.stderr, beta)
    assert beta.read_bytes() == damaged  # nothing recorded was written over
    assert len(hf.requests_to("POST", rf"^/api/jobs/{NS}$")) == creates
    assert not hf.requests_to("POST", rf"^/api/jobs/{NS}/{jobs['beta']}/cancel$")


def test_publish_pushes_the_other_experiments_and_names_the_corrupt_ledger(servers, tmp_path):
    hf, env = servers
    bare, work = make_remote(tmp_path)
    two_experiments(work, hf, env)
    beta = ledger_of(work, "ultrachat")
    beta.write_text(truncate(beta.read_text()))
    published = run_cli(work, {**env, **GIT_ENV}, "publish", "--git-only", "--json")
    assert published.returncode == ExitCode.LEDGER_CORRUPT, published.stderr
    assert [r["experiment"] for r in json.loads(published.stdout)] == ["alpha"]
    assert_named(published.stderr, beta)
    only_beta = run_cli(work, {**env, **GIT_ENV}, "publish", "--git-only", "--experiment", "beta")
    assert only_beta.returncode == ExitCode.LEDGER_CORRUPT, only_beta.stderr
    assert_named(only_beta.stderr, beta)
    branches = git(bare, "branch", "--list", "ci-runner/*")
    assert "ci-runner/alpha" in branches and "ci-runner/beta" not in branches


def test_the_mcp_status_tool_answers_for_the_others_and_names_the_file(servers, tmp_path):
    pytest.importorskip("mcp")
    import anyio

    from tests.mcp_client import connect, document, exit_code

    hf, env = servers
    two_experiments(tmp_path, hf, env)
    beta = ledger_of(tmp_path, "ultrachat")
    beta.write_text(truncate(beta.read_text()))

    async def call():
        async with connect(tmp_path, env=env) as session:
            return await session.call_tool("status", {}), await session.call_tool("report", {})

    status, report = anyio.run(call)
    assert [doc["experiment"] for doc in document(status)] == ["alpha"]
    for result in (status, report):
        assert exit_code(result) == ExitCode.LEDGER_CORRUPT
        assert "unreadable ledger" in result.content[-1].text
        assert f"git checkout -- training_reports/{beta.name}" in result.content[-1].text
