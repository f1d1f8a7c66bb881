"""Several processes, for real: the tiny model trained by 2 processes on this CPU.

The job command of a multi-GPU flavor is ``accelerate launch`` with the arguments and
files ``ci_runner.backend.launcher`` builds. Here the same arguments and files start
train.py twice on a machine without a GPU: the Trainer finds no CUDA (``use_cpu``), so
the two ranks train data-parallel over gloo (``MULTI_CPU``). The DDP launch runs SFT;
the FSDP launch (generated accelerate config) runs DPO: accelerate accepts the config
and starts both ranks, but FSDP's sharding itself needs CUDA, so on CPU that run is
data-parallel too (train.py says so in its log).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ci_runner.backend.launcher import (
    ACCELERATE_CONFIG,
    REQUIREMENTS,
    accelerate_args,
    accelerate_config,
    launch_files,
)
from ci_runner.job_scripts import script_dependencies
from ci_runner.runconfig import SUMMARY_PREFIX, Launch
from tests.test_train_script import TRAIN_SCRIPT, Result, assert_trained, make_config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_train(config, launch: Launch, env: dict[str, str], cwd: Path) -> Result:
    """What a multi-GPU job runs, minus ``uv``: ``accelerate launch … train.py``."""
    files = launch_files(launch, script_dependencies(TRAIN_SCRIPT))
    for name, data in files.items():
        (cwd / name).write_bytes(data)
    (cwd / "run.json").write_text(config.model_dump_json(), encoding="utf-8")
    args = accelerate_args(launch, config_dir=str(cwd), main_process_port=free_port())
    assert args[:2] == ["accelerate", "launch"]
    command = [sys.executable, "-m", "accelerate.commands.launch", *args[2:]]
    proc = subprocess.run(
        [*command, str(TRAIN_SCRIPT), "--config", str(cwd / "run.json")],
        cwd=cwd,
        env={**env, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    summaries = [line for line in proc.stdout.splitlines() if line.startswith(SUMMARY_PREFIX)]
    assert len(summaries) <= 1, "only the main process reports"
    summary = json.loads(summaries[0][len(SUMMARY_PREFIX) :]) if summaries else None
    return Result(proc.returncode, proc.stdout + proc.stderr, summary)


@pytest.mark.training
@pytest.mark.parametrize(
    ("method", "strategy"),
    [("sft", "ddp"), ("dpo", "fsdp")],
)
def test_two_processes_train_the_tiny_model_on_cpu(
    tiny_fixtures, job_env, tmp_path, monkeypatch, method, strategy
):
    data = tiny_fixtures.sft_data if method == "sft" else tiny_fixtures.dpo_data
    config = make_config(
        tmp_path,
        tiny_fixtures.model,
        data,
        method,
        hyperparameters={"max_steps": 2, "per_device_train_batch_size": 2},
        launch=Launch(processes=2, strategy=strategy),
    )
    result = launch_train(config, config.launch, job_env, tmp_path)
    summary = assert_trained(result, config, job_env, monkeypatch)
    assert summary["processes"] == 2
    assert "processes=2 (multi_cpu)" in result.output  # two ranks, gloo
    # 2 steps × 2 per device × 2 processes = 8 of the 64 rows: both ranks took their share
    assert "epoch=0.125" in result.output
    assert result.output.count("ci-runner train:") == 1  # the banner comes from rank 0 only
    if strategy == "fsdp":
        assert (tmp_path / ACCELERATE_CONFIG).is_file()
        assert "FSDP needs CUDA GPUs" in result.output


def test_launch_files_and_arguments():
    deps = script_dependencies(TRAIN_SCRIPT)
    assert deps[0] == "torch==2.13.0" and "accelerate==1.15.0" in deps
    assert launch_files(Launch(), deps) == {}  # one process: uv reads the header itself
    ddp = launch_files(Launch(processes=4, strategy="ddp"), deps)
    assert ddp == {REQUIREMENTS: "".join(f"{d}\n" for d in deps).encode()}
    fsdp = launch_files(Launch(processes=8, strategy="fsdp", mixed_precision="bf16"), deps)
    assert fsdp[ACCELERATE_CONFIG].decode() == accelerate_config(
        Launch(processes=8, strategy="fsdp", mixed_precision="bf16")
    )
    text = fsdp[ACCELERATE_CONFIG].decode()
    assert "num_processes: 8" in text and "mixed_precision: 'bf16'" in text
    args = accelerate_args(Launch(processes=8, strategy="fsdp"), config_dir="/job")
    assert args[:4] == ["accelerate", "launch", "--num_processes", "8"]
    assert args[args.index("--config_file") + 1] == f"/job/{ACCELERATE_CONFIG}"
    assert "--multi_gpu" in accelerate_args(Launch(processes=2, strategy="ddp"), config_dir="/j")


@pytest.mark.slow
def test_the_generated_fsdp_config_is_one_accelerate_reads(tmp_path):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    path = tmp_path / ACCELERATE_CONFIG
    path.write_text(accelerate_config(Launch(processes=4, strategy="fsdp")))
    loaded = load_config_from_file(str(path))
    assert loaded.distributed_type == DistributedType.FSDP and loaded.num_processes == 4
    assert loaded.fsdp_config["fsdp_version"] == 2
    assert loaded.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    assert loaded.fsdp_config["fsdp_cpu_ram_efficient_loading"] is True
