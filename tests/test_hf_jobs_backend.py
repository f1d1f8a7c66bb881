"""The HF Jobs backend through the real huggingface_hub client, against the loopback API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ci_runner.backend.hf_jobs import (
    BUNDLE_ENV,
    CONFIG_ENV,
    REPO_LABEL,
    UV_IMAGE,
    HfJobsBackend,
    RetryPolicy,
    job_command,
)
from ci_runner.backend.launcher import ACCELERATE_CONFIG, REQUIREMENTS
from ci_runner.errors import BackendError, ExitCode
from ci_runner.flow.poll import poll as poll_once
from ci_runner.flow.submit import submit as submit_file
from ci_runner.flow.workspace import Workspace
from ci_runner.job_scripts import ENTRY_SCRIPTS, HELPERS, PACKAGE_DIR, bundle_b64, locate
from ci_runner.ledger.model import RunStatus
from ci_runner.ledger.repository import find_run
from ci_runner.ledger.store import load_ledger
from ci_runner.paths import Project
from ci_runner.runconfig import BITSANDBYTES, Launch
from tests.conftest import ROOT
from tests.hf_jobs_server import FakeHFJobs, unbundle
from tests.model_hub import hub_model_files, model_hub

NS = "alice"
TOKEN = "hf_TOPSECRET_token_never_printed_0042"


pytestmark = pytest.mark.usefixtures("loopback_online")


CAPYBARA = [
    {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
    for i in range(20)
]


def experiment_text(name: str, extra: str = "") -> str:
    return (
        f"name: {name}\n"
        "base_model: Qwen/Qwen3-0.6B\n"
        "method: sft\n"
        "dataset: trl-lib/Capybara\n"
        "hyperparameters:\n  max_steps: 100\n"
        "hardware: t4-small\n"
        "timeout: 90m\n"
        f"output:\n  hub_model_id: {NS}/{name}\n"
        "tracking:\n  space: alice/trackio\n"
        "backend: hf-jobs\n" + extra
    )


def write(project: Project, name: str, extra: str = "") -> Path:
    path = project.root / "experiments" / f"{name}.yaml"
    path.write_text(experiment_text(name, extra))
    return path


def make_runner(project: Project, hf: FakeHFJobs, backend_cls=HfJobsBackend) -> Workspace:
    backend = backend_cls(
        hf.api(TOKEN),
        namespace=NS,
        token=TOKEN,
        repo="acme-experiments",
        retry=RetryPolicy(attempts=3, base_delay_s=0),
        sleep=lambda s: None,
    )
    return Workspace(project, backends={"hf-jobs": backend})


def creates(hf: FakeHFJobs):
    return hf.requests_to("POST", rf"^/api/jobs/{NS}$")


def summary_line(**fields) -> str:
    data = {
        "status": "completed",
        "method": "sft",
        "steps": 100,
        "max_steps": 100,
        "final_loss": 0.9,
        "min_loss": 0.85,
        "runtime_s": 600.0,
        "train_tokens_per_s": 1800.0,
        "loss_history": [[50, 1.2], [100, 0.9]],
    } | fields
    return "CI_RUNNER_SUMMARY " + json.dumps(data)


def test_submit_sends_script_config_secret_labels_flavor_and_timeout(project, hf):
    outcome = submit_file(make_runner(project, hf), write(project, "qwen-sft"))
    (request,) = creates(hf)
    body = request.json
    assert body["dockerImage"] == UV_IMAGE
    assert body["flavor"] == "t4-small"
    assert body["timeoutSeconds"] == 5400
    assert body["secrets"] == {"HF_TOKEN": TOKEN}
    assert TOKEN not in json.dumps(body["environment"])
    assert body["labels"][REPO_LABEL] == "acme-experiments"
    assert body["labels"]["ci-runner.experiment"] == "qwen-sft"
    assert body["labels"]["ci-runner.run"] == outcome.run_id
    shipped = unbundle(body["environment"][BUNDLE_ENV])
    scripts = ROOT / "job_scripts"
    assert shipped["train.py"] == (scripts / "train.py").read_bytes()
    assert shipped["shaping.py"] == (scripts / "shaping.py").read_bytes()
    assert shipped["curves.py"] == (scripts / "curves.py").read_bytes()
    config = json.loads(body["environment"][CONFIG_ENV])
    assert config["hub_model_id"] == f"{NS}/qwen-sft" and config["run_id"] == outcome.run_id
    assert body["command"][:2] == ["bash", "-c"] and "uv run" in body["command"][2]
    assert TOKEN.encode() not in request.response_body
    assert outcome.job_url == f"{hf.url}/jobs/{NS}/{outcome.job_id}"


def test_a_projects_own_job_script_and_helper_ship_with_ours(project, hf):
    """The override rule (job_scripts/README.md): a project's ``job_scripts/train.py``
    replaces ours, a helper beside it replaces ours, every other helper is ours."""
    scripts = ROOT / "job_scripts"
    own = project.root / "job_scripts"
    own.mkdir()
    tuned = (scripts / "train.py").read_bytes() + b"\n# our lab's tweak\n"
    (own / "train.py").write_bytes(tuned)
    (own / "curves.py").write_bytes(b"REWARD_FUNCTION = 'ours'\n")
    submit_file(make_runner(project, hf), write(project, "qwen-sft"))
    (request,) = creates(hf)
    shipped = unbundle(request.json["environment"][BUNDLE_ENV])
    assert shipped["train.py"] == tuned
    assert shipped["curves.py"] == b"REWARD_FUNCTION = 'ours'\n"
    assert shipped["shaping.py"] == (scripts / "shaping.py").read_bytes()
    assert locate("train.py", project.root).origin == "project (job_scripts/train.py)"


def test_ci_runners_own_checkout_runs_its_scripts_without_overriding_them():
    """This repository keeps the packaged scripts at the top level: they are not an override."""
    found = locate("train.py", ROOT)
    assert not found.overridden and found.origin == "ci-runner"
    assert found.path == ROOT / "job_scripts" / "train.py" == PACKAGE_DIR / "train.py"


@pytest.mark.parametrize("script", ENTRY_SCRIPTS)
@pytest.mark.slow
def test_each_job_script_runs_from_its_bundle_alone(script, tmp_path):
    """What a job unpacks is enough: the script imports every helper it needs from the
    bundle, with nothing but the standard library (heavy imports wait inside functions)."""
    shipped = unbundle(bundle_b64(PACKAGE_DIR / script))
    assert set(shipped) == {script, *HELPERS}
    for name, data in shipped.items():
        assert data == (PACKAGE_DIR / name).read_bytes(), name
        (tmp_path / name).write_bytes(data)
    module, folder = script.removesuffix(".py"), str(tmp_path)
    probe = (
        f"import sys; sys.path.insert(0, {folder!r}); import {module}; "
        "print(' '.join(n for n, m in sys.modules.items() "
        f"if (getattr(m, '__file__', None) or '').startswith({folder!r})))"
    )
    # -I -S: no site-packages, no PYTHONPATH: only the stdlib and the unpacked bundle
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    imported = {f"{name}.py" for name in proc.stdout.split()}
    assert module + ".py" in imported and imported <= set(shipped)
    if script == "evaluate.py":
        assert {"evaluate_humaneval.py", "sandbox.py", "sandbox_child.py"} <= imported
    if script == "export_gguf.py":
        assert {"export_convert.py", "export_quantize.py", "export_hub.py"} <= imported


def test_job_command_starts_one_process_per_gpu_through_accelerate_launch():
    single = job_command("a10g-large", "train.py")[2]
    assert single.endswith("&& exec uv run /tmp/ci-runner-job/train.py")
    ddp = job_command("a100x4", "train.py", Launch(processes=4, strategy="ddp"))[2]
    assert (
        "exec uv run --no-project --with-requirements /tmp/ci-runner-job/requirements.txt -- "
        "accelerate launch --num_processes 4 --num_machines 1 --multi_gpu --mixed_precision no "
        "--dynamo_backend no /tmp/ci-runner-job/train.py"
    ) in ddp
    fsdp = job_command("h200x2", "train.py", Launch(processes=2, strategy="fsdp"))[2]
    assert (
        "accelerate launch --num_processes 2 --num_machines 1 "
        "--config_file /tmp/ci-runner-job/accelerate_config.yaml"
    ) in fsdp
    qlora = job_command("a100-large", "train.py", packages=(BITSANDBYTES,))[2]
    assert qlora.endswith("exec uv run --with bitsandbytes==0.50.2 /tmp/ci-runner-job/train.py")
    # evaluation and export jobs run one process whatever the flavor
    assert "accelerate" not in job_command("a100x4", "evaluate.py")[2]
    with pytest.raises(BackendError, match="planned for 4 processes but a100x8 has 8"):
        job_command("a100x8", "train.py", Launch(processes=4, strategy="ddp"))


def test_poll_follows_a_job_to_completion_and_reports_links(project, hf):
    runner = make_runner(project, hf)
    outcome = submit_file(runner, write(project, "qwen-sft"))
    hf.set_stage(outcome.job_id, "RUNNING")
    hf.add_logs(outcome.job_id, ["[step 10/100] loss=1.9 learning_rate=2e-05"])
    poll_once(runner)
    _, run = find_run(runner.project, outcome.run_id)
    assert run.status == RunStatus.RUNNING and run.metrics.step == 10
    hf.add_logs(outcome.job_id, ["[step 100/100] loss=0.9 learning_rate=0", summary_line()])
    hf.set_stage(outcome.job_id, "COMPLETED")
    poll_once(runner)
    ledger, run = find_run(runner.project, outcome.run_id)
    assert run.status == RunStatus.COMPLETED
    assert run.metrics.final_loss == 0.9 and run.metrics.step == 100
    report = (project.root / ledger.report_path).read_text()
    assert f"[{NS}/qwen-sft](https://huggingface.co/{NS}/qwen-sft)" in report
    assert f"[Job {outcome.job_id}]({hf.url}/jobs/{NS}/{outcome.job_id})" in report
    assert "https://huggingface.co/spaces/alice/trackio?project=qwen-sft" in report
    changed = poll_once(runner)  # nothing active: a second poll is a no-op
    assert changed.changed == []


def test_oom_error_is_diagnosed_in_the_report(project, hf):
    runner = make_runner(project, hf)
    outcome = submit_file(runner, write(project, "qwen-oom"))
    hf.add_logs(
        outcome.job_id,
        [
            "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
            'CI_RUNNER_SUMMARY {"status": "failed", "error_type": "OutOfMemoryError", '
            '"error": "CUDA out of memory. Tried to allocate 2.00 GiB"}',
        ],
    )
    hf.set_stage(outcome.job_id, "ERROR", message="Job failed with exit code: 1")
    poll_once(runner)
    ledger, run = find_run(runner.project, outcome.run_id)
    assert run.status == RunStatus.FAILED
    report = (project.root / ledger.report_path).read_text()
    assert "OutOfMemoryError: CUDA out of memory" in report
    assert "gradient_checkpointing" in report


def test_cancel_reaches_the_api_and_is_recorded(project, hf):
    runner = make_runner(project, hf)
    outcome = submit_file(runner, write(project, "qwen-cancel"))
    runner.backend("hf-jobs").cancel(outcome.job_id)
    assert hf.requests_to("POST", rf"/api/jobs/{NS}/{outcome.job_id}/cancel")
    poll_once(runner)
    _, run = find_run(runner.project, outcome.run_id)
    assert run.status == RunStatus.CANCELED


def test_500_on_create_twice_still_gives_exactly_one_job(project, hf):
    hf.fail_next("POST", rf"^/api/jobs/{NS}$", status=500, times=2)
    outcome = submit_file(make_runner(project, hf), write(project, "qwen-flaky"))
    assert len(hf.jobs) == 1 and outcome.job_id in hf.jobs
    assert [r.status for r in creates(hf)] == [500, 500, 200]


def test_create_that_keeps_failing_gives_a_clear_error_and_no_job(project, hf):
    hf.fail_next("POST", rf"^/api/jobs/{NS}$", status=503, times=10)
    with pytest.raises(BackendError, match="kept failing to create the job"):
        submit_file(make_runner(project, hf), write(project, "qwen-down"))
    assert hf.jobs == {}


class CrashAfterCreate(HfJobsBackend):
    def launch(self, request):
        super().launch(request)
        raise KeyboardInterrupt("runner killed between create and ledger write")


def test_crash_after_create_is_adopted_by_the_next_poll(project, hf):
    spec = write(project, "qwen-crash")
    with pytest.raises(KeyboardInterrupt):
        submit_file(make_runner(project, hf, CrashAfterCreate), spec)
    runner = make_runner(project, hf)
    poll_once(runner)
    (job_id,) = hf.jobs
    _, run = find_run(runner.project, "qwen-crash")
    assert run.last_attempt.job_id == job_id
    assert submit_file(runner, spec).created is False
    assert len(creates(hf)) == 1


def test_429_storm_on_list_fails_clearly_and_leaves_the_ledger_alone(project, hf, monkeypatch):
    runner = make_runner(project, hf)
    submit_file(runner, write(project, "qwen-busy"))
    (ledger_path,) = project.ledger_paths()
    before = ledger_path.read_bytes()
    monkeypatch.setattr("huggingface_hub.utils._http.time.sleep", lambda s: None)
    hf.fail_next("GET", rf"^/api/jobs/{NS}$", status=429, times=100, retry_after=0)
    with pytest.raises(BackendError, match="429"):
        poll_once(runner)
    assert ledger_path.read_bytes() == before
    assert len(hf.requests_to("GET", rf"^/api/jobs/{NS}$")) <= 10  # bounded


def test_auth_errors_name_the_fix(project, hf):
    runner = make_runner(project, hf)
    hf.fail_next("POST", rf"^/api/jobs/{NS}$", status=403, times=1)
    with pytest.raises(BackendError, match="write access"):
        submit_file(runner, write(project, "qwen-forbidden"))


def test_poll_of_many_runs_uses_one_paginated_list_and_no_inspects(project, hf):
    runner = make_runner(project, hf)
    for i in range(5):
        submit_file(runner, write(project, f"qwen-bulk-{i}"))
    hf.requests.clear()
    poll_once(runner)
    lists = hf.requests_to("GET", rf"^/api/jobs/{NS}$")
    inspects = hf.requests_to("GET", rf"^/api/jobs/{NS}/[0-9a-f]+$")
    assert len(lists) == 3  # 5 jobs at 2 per page
    assert inspects == []


@pytest.mark.slow
def test_token_never_reaches_files_or_output(project, hf, monkeypatch):
    write(project, "qwen-secret")
    env = {
        **__import__("os").environ,
        "HF_TOKEN": TOKEN,
        "HF_ENDPOINT": hf.url,
        "HF_HUB_OFFLINE": "0",
        "GITHUB_REPOSITORY": "acme/experiments",
    }
    outputs = []
    for args in (
        ["submit", "experiments/qwen-secret.yaml"],
        ["poll"],
        ["status", "--json"],
        ["logs", "qwen-secret"],
        ["cancel", "qwen-secret"],
        ["report"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "ci_runner.cli", "--root", str(project.root), *args],
            cwd=project.root,
            env=env,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout + result.stderr)
    assert hf.jobs, "the job was submitted"
    assert next(iter(hf.jobs.values()))["labels"][REPO_LABEL] == "acme-experiments"
    assert all(TOKEN not in out for out in outputs)
    for path in project.root.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


@pytest.mark.slow
def test_missing_token_is_a_clear_backend_error(project, monkeypatch, tmp_path):
    write(project, "qwen-notoken")
    env = {k: v for k, v in __import__("os").environ.items() if k != "HF_TOKEN"}
    env["HF_HOME"] = str(tmp_path / "hf-home")  # no saved token either
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ci_runner.cli",
            "--root",
            str(project.root),
            "submit",
            "experiments/qwen-notoken.yaml",
        ],
        cwd=project.root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == ExitCode.BACKEND
    assert "HF_TOKEN" in result.stderr
    assert load_ledger(project.ledger_path("qwen3-0.6b-capybara-sft")) is None


def test_evaluation_jobs_install_bubblewrap_for_the_sandbox_first():
    command = job_command("a10g-large", "evaluate.py")[2]
    assert command.index("apt-get install") < command.index("uv run /tmp/ci-runner-job/evaluate.py")
    assert "apt-get" not in job_command("a10g-large", "train.py")[2]


# --- jobs that run as planned: the precision, QLoRA and the launch reach the job spec ------


def hub_experiment(name: str, model: str, extra: str = "") -> str:
    return (
        f"name: {name}\n"
        f"base_model: {model}\n"
        "method: sft\n"
        "dataset: trl-lib/Capybara\n"
        "hyperparameters:\n  max_steps: 100\n  per_device_train_batch_size: 1\n"
        "  gradient_accumulation_steps: 8\n  max_length: 2048\n"
        "timeout: 4h\n"
        f"output:\n  hub_model_id: {NS}/{name}\n"
        "backend: hf-jobs\n" + extra
    )


@pytest.fixture
def model_hub_endpoint(hf, tmp_path, monkeypatch):
    """A loopback Hub serving real configs and sharded safetensors headers, for sizing."""
    repos = ("meta-llama/Llama-3.1-70B-Instruct", "Qwen/Qwen2.5-7B-Instruct")
    files = {repo: hub_model_files(repo) for repo in repos}
    with model_hub(tmp_path, monkeypatch, files) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        yield hub


def submitted(project, hf, name, text):
    path = project.root / "experiments" / f"{name}.yaml"
    path.write_text(text)
    outcome = submit_file(make_runner(project, hf), path)
    (request,) = creates(hf)
    body = request.json
    return outcome, body, json.loads(body["environment"][CONFIG_ENV])


def test_x4_flavor_job_starts_4_processes(project, hf, model_hub_endpoint):
    text = hub_experiment("qwen7-x4", "Qwen/Qwen2.5-7B-Instruct", "hardware: a100x4\n")
    outcome, body, config = submitted(project, hf, "qwen7-x4", text)
    assert outcome.plan.launcher == "ddp" and outcome.plan.processes == 4
    assert body["flavor"] == "a100x4"
    command = body["command"][2]
    assert "accelerate launch --num_processes 4 --num_machines 1 --multi_gpu" in command
    assert command.endswith(" /tmp/ci-runner-job/train.py")
    assert "bitsandbytes" not in command  # no 4-bit base, no bitsandbytes
    assert config["launch"] == {"processes": 4, "strategy": "ddp", "mixed_precision": "bf16"}
    assert config["hyperparameters"]["model_init_kwargs"] == {"dtype": "bfloat16"}
    shipped = unbundle(body["environment"][BUNDLE_ENV])
    requirements = shipped[REQUIREMENTS].decode().splitlines()
    assert "torch==2.13.0" in requirements and "accelerate==1.15.0" in requirements
    assert ACCELERATE_CONFIG not in shipped  # DDP needs none


def test_70b_lora_runs_qlora_on_one_gpu_with_bitsandbytes_added(project, hf, model_hub_endpoint):
    text = hub_experiment("llama70-lora", "meta-llama/Llama-3.1-70B-Instruct")
    outcome, body, config = submitted(project, hf, "llama70-lora", text)
    assert (body["flavor"], outcome.plan.quantization) == ("a100-large", "4bit")
    assert outcome.plan.flavor_usd_per_hour <= 5
    command = body["command"][2]
    run = (
        "exec uv run --with bitsandbytes==0.50.2 --with liger-kernel==0.8.5 "
        "/tmp/ci-runner-job/train.py"
    )
    assert command.endswith(f"&& {run}")
    assert config["hyperparameters"]["use_liger_kernel"] is True
    assert config["lora"]["quantize"] == "4bit"
    assert config["hyperparameters"]["model_init_kwargs"] == {"dtype": "bfloat16"}
    assert config["launch"]["processes"] == 1
    shipped = unbundle(body["environment"][BUNDLE_ENV])
    header = shipped["train.py"].split(b"\n# ///\n", 1)[0]
    assert b"bitsandbytes" not in header  # the PEP 723 header stays the one set of pins
    assert REQUIREMENTS not in shipped


def test_70b_in_16_bits_is_sharded_with_fsdp_and_its_config_ships(project, hf, model_hub_endpoint):
    extra = "lora:\n  quantize: none\n"
    text = hub_experiment("llama70-fsdp", "meta-llama/Llama-3.1-70B-Instruct", extra)
    outcome, body, config = submitted(project, hf, "llama70-fsdp", text)
    plan = outcome.plan
    assert (plan.launcher, plan.quantization, plan.fits) == ("fsdp", None, True)
    flavor = body["flavor"]
    assert flavor == plan.flavor == "rtx-pro-6000x2" and plan.processes == 2
    command = body["command"][2]
    assert (
        "accelerate launch --num_processes 2 --num_machines 1 "
        "--config_file /tmp/ci-runner-job/accelerate_config.yaml --dynamo_backend no "
        "/tmp/ci-runner-job/train.py"
    ) in command
    assert config["launch"] == {"processes": 2, "strategy": "fsdp", "mixed_precision": "bf16"}
    accelerate = unbundle(body["environment"][BUNDLE_ENV])[ACCELERATE_CONFIG].decode()
    assert "distributed_type: FSDP" in accelerate and "num_processes: 2" in accelerate
    assert "fsdp_version: 2" in accelerate and "FULL_STATE_DICT" in accelerate


def test_a_70b_pipeline_runs_each_job_on_the_flavor_it_was_planned_for(
    project, hf, model_hub_endpoint
):
    """Training (QLoRA on a100-large), both evaluations in 4 bits on one GPU with
    bitsandbytes added, then the GGUF export on a CPU flavor whose RAM holds the 16-bit
    merge: every job of the run is sent where the plan sized it, with a timeout."""
    extra = (
        "evaluation:\n  benchmarks:\n    - benchmark: gsm8k\n      max_samples: 50\n"
        "export:\n  gguf:\n    quantizations: [Q4_K_M]\n"
        "output:\n  hub_model_id: alice/llama70-pipe\n  merge: true\n"
    )
    text = hub_experiment("llama70-pipe", "meta-llama/Llama-3.1-70B-Instruct").replace(
        "output:\n  hub_model_id: alice/llama70-pipe\n", ""
    )
    runner = make_runner(project, hf)
    path = project.root / "experiments" / "llama70-pipe.yaml"
    path.write_text(text + extra)
    outcome = submit_file(runner, path)
    plan = outcome.plan
    planned = {job.key: job for job in plan.jobs}
    assert [j.key for j in plan.jobs] == ["train", "base", "final", "gguf"]
    assert plan.total_cost_usd == pytest.approx(sum(j.est_cost_usd for j in plan.jobs), abs=1e-3)
    train, base = creates(hf)  # the base is evaluated beside training
    train_config = json.loads(train.json["environment"][CONFIG_ENV])
    assert train.json["flavor"] == "a100-large"
    # a100-large's 142 GB of RAM cannot reload the 141 GB base in 16 bits: no merge there
    assert plan.merge_in_training is False and train_config["merge_lora"] is False
    hf.add_logs(outcome.job_id, [summary_line()])
    hf.set_stage(outcome.job_id, "COMPLETED")
    poll_once(runner)
    evals = [base, *creates(hf)[2:]]
    assert len(evals) == 2
    for request in evals:
        body = request.json
        config = json.loads(body["environment"][CONFIG_ENV])
        job = planned[config["model_label"]]
        assert (body["flavor"], job.flavor) == ("a100-large", "a100-large")
        assert config["quantize"] == "4bit" and job.quantize == "4bit"
        assert "--with bitsandbytes==0.50.2" in body["command"][2]
        assert body["timeoutSeconds"] == job.timeout_s
    entry = {"benchmark": "gsm8k", "fewshot": 0, "metric": "exact_match", "score": 0.5}
    for request in evals:
        label = json.loads(request.json["environment"][CONFIG_ENV])["model_label"]
        job_id = json.loads(request.response_body)["id"]
        hf.add_logs(job_id, [summary_line(model_label=label, scores=[entry])])
        hf.set_stage(job_id, "COMPLETED")
    poll_once(runner)
    (export,) = creates(hf)[3:]
    assert export.json["flavor"] == planned["gguf"].flavor == "cpu-performance"
    export_config = json.loads(export.json["environment"][CONFIG_ENV])
    assert export_config["base_model"]  # the adapter is merged by the export job


@pytest.mark.parametrize("server_honours_tail", [True, False])
def test_logs_tail_keeps_the_last_lines_on_hf_jobs(project, hf, server_honours_tail):
    """``logs --tail N`` gives N lines, as on the local backend: the Hub's ``?tail=`` also
    counts its own "Job started" notice, and a server may replay the whole history."""
    from ci_runner import commands as cmd

    runner = make_runner(project, hf)
    outcome = submit_file(runner, write(project, "qwen-tail"))
    hf.ignore_tail = not server_honours_tail
    hf.add_logs(outcome.job_id, ["===== Job started at 2026-12-07 =====", "a", "b", "c", "d"])
    log = cmd.logs(runner, outcome.run_id, tail=2)
    assert log.lines == ["c", "d"]
    asked = hf.requests_to("GET", rf"/api/jobs/{NS}/{outcome.job_id}/logs")
    assert asked[-1].query["tail"] == ["2"]
    assert cmd.logs(runner, outcome.run_id).lines == ["a", "b", "c", "d"]
