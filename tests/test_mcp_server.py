"""``ci-runner mcp`` through the MCP SDK's own client over stdio, as Codex or Claude Code
would drive it: the tool list, results shaped as ``--json``, structured errors, the
read-only default, the offline demo end to end, and HF Jobs on the loopback server."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("mcp")  # the [mcp] extra

from ci_runner.errors import ExitCode  # noqa: E402
from ci_runner.mcp_server import TOOL_NAMES  # noqa: E402
from tests.conftest import ROOT, cli, make_project  # noqa: E402
from tests.mcp_client import connect, document, error, exit_code, server_env  # noqa: E402

pytestmark = pytest.mark.anyio

TOKEN = "hf_TOPSECRET_token_never_printed_0042"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def small_project(tmp_path: Path) -> Path:
    (tmp_path / "experiments").mkdir()
    shutil.copy(ROOT / "tests" / "malformed" / "renamed_trl_field.yaml", tmp_path / "experiments")
    return tmp_path


def test_importing_the_cli_does_not_import_the_sdk():
    code = "import sys, ci_runner.cli; sys.exit('mcp' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


async def test_lists_the_nine_tools_and_says_what_costs_money(tmp_path):
    async with connect(small_project(tmp_path)) as session:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    assert (
        set(tools)
        == set(TOOL_NAMES)
        == {
            "validate",
            "check_data",
            "plan",
            "submit",
            "status",
            "logs",
            "cancel",
            "wait",
            "report",
        }
    )
    assert "COSTS MONEY" in tools["submit"].description
    assert "--allow-submit" in tools["submit"].description
    assert "Free" in tools["plan"].description and "est_cost_usd" in tools["plan"].description
    assert tools["plan"].annotations.read_only_hint is True
    assert tools["submit"].annotations.read_only_hint is False
    assert tools["cancel"].annotations.destructive_hint is True
    assert tools["wait"].input_schema["properties"]["timeout_s"]["default"] == 60


async def test_an_invalid_file_is_a_document_for_validate_and_a_structured_error_for_plan(
    tmp_path,
):
    root = small_project(tmp_path)
    file = "experiments/renamed_trl_field.yaml"
    async with connect(root) as session:
        validated = await session.call_tool("validate", {"files": [file]})
        planned = await session.call_tool("plan", {"file": file})
    # validate answers with its --json document, byte for byte, and the CLI's exit code.
    expected = cli(root, "validate", file, "--json")
    assert validated.content[0].text == expected.stdout.rstrip("\n")
    assert exit_code(validated) == expected.returncode == ExitCode.SPEC_INVALID
    (entry,) = document(validated)
    assert entry["valid"] is False and entry["errors"][0]["line"] == 7
    # plan has no document for a broken file: a tool error with the exit code and file:line.
    err = error(planned)
    assert err["exit_code"] == ExitCode.SPEC_INVALID
    assert "experiment file is invalid" in err["meaning"]
    assert f"{file}:7: hyperparameters.max_seq_length" in err["message"]
    assert "max_length" in err["message"]  # the hint
    assert err["issues"][0]["field"] == "hyperparameters.max_seq_length"
    assert exit_code(planned) == ExitCode.SPEC_INVALID


async def test_errors_are_redacted(tmp_path):
    root = small_project(tmp_path)
    (root / "experiments" / "leaky.yaml").write_text(
        "name: leaky\nbase_model: Qwen/Qwen3-0.6B\nmethod: sft\n"
        f"dataset: ./data/{TOKEN}.jsonl\nbackend: local\n"
    )
    async with connect(root, env=server_env(HF_TOKEN=TOKEN)) as session:
        results = [
            await session.call_tool("plan", {"file": "experiments/leaky.yaml"}),
            await session.call_tool("validate", {"files": ["experiments/leaky.yaml"]}),
        ]
    assert error(results[0])["exit_code"] in (ExitCode.SPEC_INVALID, ExitCode.NOT_READY)
    for result in results:
        dumped = result.model_dump_json()
        assert TOKEN not in dumped and "***" in dumped


async def test_a_read_only_server_refuses_submit_and_cancel(tmp_path):
    root = small_project(tmp_path)
    async with connect(root) as session:
        submitted = await session.call_tool(
            "submit", {"file": "experiments/renamed_trl_field.yaml"}
        )
        canceled = await session.call_tool("cancel", {"run": "anything"})
        remote = await session.call_tool(
            "check_data", {"dataset": "trl-lib/Capybara", "remote": True}
        )
    refusal = error(submitted)
    assert refusal["exit_code"] == ExitCode.USAGE
    assert "read-only" in refusal["message"] and "--allow-submit" in refusal["message"]
    assert "--allow-cancel" in error(canceled)["message"]
    assert "--allow-submit" in error(remote)["message"]
    assert not (root / ".ci-runner").exists() and not (root / "training_reports").exists()


# --- the documented setup and calls, on the offline demo --------------------------------


def docs_text() -> str:
    return (ROOT / "AGENTS.md").read_text() + (ROOT / "README.md").read_text()


def documented_codex_servers() -> list[dict]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    blocks = re.findall(r"```toml\n(.*?)```", docs_text(), re.S)
    servers = [tomllib.loads(b)["mcp_servers"]["ci-runner"] for b in blocks if "mcp_servers" in b]
    assert len(servers) == 2, "AGENTS.md and README.md each show the Codex config"
    return servers


def test_documented_codex_and_claude_registrations_run_this_server():
    for server in documented_codex_servers():
        assert server["command"] == "ci-runner"
        assert server["args"][0] == "--root" and server["args"][2:] == ["mcp"]
        assert server["env_vars"] == ["HF_TOKEN"]  # forwarded, never written in the file
        assert server["tool_timeout_sec"] >= 900  # the example `wait` blocks up to 900 s
    claude = re.findall(r"^claude mcp add (.*)$", docs_text(), re.M)
    assert claude and all(line == 'ci-runner -- ci-runner --root "$PWD" mcp' for line in claude)
    # What both launch exists: the console script's `mcp` command.
    help_text = subprocess.run(
        [sys.executable, "-m", "ci_runner.cli", "mcp", "--help"], capture_output=True, text=True
    ).stdout
    assert "--allow-submit" in help_text


def documented_calls() -> list[dict]:
    text = (ROOT / "AGENTS.md").read_text()
    return json.loads(re.search(r"```json mcp-calls\n(.*?)```", text, re.S)[1])


@pytest.mark.training
async def test_documented_calls_run_the_offline_demo_end_to_end(tiny_fixtures, tmp_path):
    """AGENTS.md's example calls, in order, through the server as its Codex config starts
    it (the console script, ``--root``, ``mcp``, plus ``--allow-submit``)."""
    root = make_project(tmp_path / "demo", tiny_fixtures.model.parent, "tiny-sft.yaml")
    (server,) = documented_codex_servers()[:1]
    script = Path(sys.executable).with_name(server["command"])
    args = [str(root) if arg.startswith("/path/") else arg for arg in server["args"]]
    calls = documented_calls()
    assert [c["tool"] for c in calls] == [
        "validate",
        "check_data",
        "plan",
        "submit",
        "wait",
        "status",
        "logs",
    ]
    results = {}
    async with connect(root, command=[str(script), *args, "--allow-submit"]) as session:
        for call in calls:
            results[call["tool"]] = await session.call_tool(call["tool"], call["arguments"])

    (validated,) = document(results["validate"])
    assert validated["valid"] is True and validated["name"] == "tiny-sft"
    verdicts = {c["method"]: c["verdict"] for c in document(results["check_data"])["checks"]}
    assert verdicts["sft"] == "READY"
    plan = document(results["plan"])["plan"]
    assert plan["backend"] == "local" and plan["over_budget"] is False
    submitted = document(results["submit"])
    assert submitted["created"] is True and submitted["run_id"].startswith("tiny-sft-")
    waited = document(results["wait"])
    assert waited["exit_code"] == exit_code(results["wait"]) == 0
    assert [r["status"] for r in waited["runs"]] == ["completed"]
    (experiment,) = document(results["status"])
    (run,) = experiment["runs"]
    assert run["run_id"] == submitted["run_id"] and run["status"] == "completed"
    demo = yaml.safe_load((ROOT / "experiments" / "tiny-sft.yaml").read_text())
    assert run["metrics"]["step"] == demo["hyperparameters"]["max_steps"] and run["evaluations"]
    log = document(results["logs"])
    assert log["run_id"] == run["run_id"] and log["job_id"] == submitted["job_id"]
    assert len(log["lines"]) == 20 and log["lines"][-1].startswith("CI_RUNNER_SUMMARY ")

    # The same documents as the CLI's --json, now that the ledger is final.
    assert results["status"].content[0].text == cli(root, "status", "--json").stdout.rstrip()
    tail = cli(root, "logs", "tiny-sft", "--tail", "20", "--json")
    assert results["logs"].content[0].text == tail.stdout.rstrip()
    # Submitting again through a read-write server starts nothing.
    async with connect(root, "--allow-submit") as session:
        again = await session.call_tool("submit", {"file": "experiments/tiny-sft.yaml"})
        report = await session.call_tool("report", {})
    assert document(again)["created"] is False
    assert document(report) == {"changed": []}


# --- HF Jobs, on the loopback server ------------------------------------------------------


async def test_submit_logs_and_cancel_on_hf_jobs_through_the_loopback_server(tmp_path):
    from tests.dataset_viewer_server import FakeDatasetViewer
    from tests.hf_jobs_server import FakeHFJobs
    from tests.test_hf_jobs_backend import CAPYBARA, NS, experiment_text

    root = small_project(tmp_path)
    (root / "experiments" / "qwen-sft.yaml").write_text(experiment_text("qwen-sft"))
    with (
        FakeHFJobs(namespace=NS, token=TOKEN, stream_idle_close_s=0.05) as hf,
        FakeDatasetViewer() as viewer,
    ):
        viewer.add_dataset("trl-lib/Capybara", {"default": {"train": CAPYBARA}})
        env = server_env(
            HF_TOKEN=TOKEN,
            HF_ENDPOINT=hf.url,
            HF_DATASETS_SERVER=viewer.url,
            HF_HUB_OFFLINE="0",
            HF_JOBS_NAMESPACE=NS,
        )
        async with connect(root, "--allow-submit", env=env) as session:
            planned = await session.call_tool("plan", {"file": "experiments/qwen-sft.yaml"})
            submitted = await session.call_tool("submit", {"file": "experiments/qwen-sft.yaml"})
            job_id = document(submitted)["job_id"]
            hf.set_stage(job_id, "RUNNING")
            hf.add_logs(job_id, ["[step 1/100] loss=2.0", "[step 2/100] loss=1.9"])
            logs = await session.call_tool("logs", {"run": "qwen-sft", "tail": 5})
            canceled = await session.call_tool("cancel", {"run": "qwen-sft"})
            status = await session.call_tool("status", {})

    assert document(planned)["plan"]["flavor"] == "t4-small"
    assert exit_code(planned) == ExitCode.OK
    (create,) = hf.requests_to("POST", rf"^/api/jobs/{NS}$")
    assert create.json["labels"]["ci-runner.experiment"] == "qwen-sft"
    assert create.json["flavor"] == "t4-small"
    assert document(submitted)["job_url"] == f"{hf.url}/jobs/{NS}/{job_id}"
    assert document(logs)["lines"] == ["[step 1/100] loss=2.0", "[step 2/100] loss=1.9"]
    assert document(canceled) | {"message": ""} == {
        "run_id": document(submitted)["run_id"],
        "canceled": True,
        "job_id": job_id,
        "status": "canceled",
        "message": "",
    }
    assert hf.requests_to("POST", rf"^/api/jobs/{NS}/{job_id}/cancel$")
    (experiment,) = document(status)
    assert experiment["runs"][0]["status"] == "canceled"
    for result in (planned, submitted, logs, canceled, status):
        assert TOKEN not in result.model_dump_json()


@pytest.mark.slow
async def test_submit_refuses_a_plan_over_budget_exactly_as_the_cli_does(tmp_path, monkeypatch):
    from tests.model_hub import config_files, model_hub

    root = small_project(tmp_path)
    (root / "experiments" / "big.yaml").write_text(
        "name: big\nbase_model: Qwen/Qwen2.5-7B\nmethod: sft\ndataset: trl-lib/Capybara\n"
        "hyperparameters: {max_steps: 300, per_device_train_batch_size: 8, max_length: 2048}\n"
        "output: {hub_model_id: alice/big}\nbackend: hf-jobs\nbudget: {max_cost_usd: 0.01}\n"
    )
    # The loopback Hub sizes the model and prices the flavors; it runs no jobs, so a submit
    # that got past the budget would fail with exit 6, not 5.
    with model_hub(tmp_path, monkeypatch, config_files("Qwen2.5-7B")) as hub:
        env = server_env(
            HF_TOKEN=TOKEN,
            HF_ENDPOINT=hub.url,
            HF_HUB_OFFLINE="0",
            HF_HOME=str(tmp_path / "hf-home"),
            HF_JOBS_NAMESPACE="alice",
        )
        args = ["submit", "experiments/big.yaml", "--skip-data-check"]
        async with connect(root, "--allow-submit", env=env) as session:
            result = await session.call_tool(
                "submit", {"file": "experiments/big.yaml", "skip_data_check": True}
            )
        by_cli = subprocess.run(
            [sys.executable, "-m", "ci_runner.cli", "--root", str(root), *args],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
        )
    refused = error(result)
    assert refused["exit_code"] == by_cli.returncode == ExitCode.OVER_BUDGET
    assert "over budget.max_cost_usd $0.01" in refused["message"]
    assert f"error: {refused['message']}" in by_cli.stderr
    assert not (root / "training_reports").exists()
