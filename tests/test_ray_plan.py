"""Plans and job files for the ray backend: N nodes × G GPUs, memory per GPU over all of them.

The 70B full fine-tune is sized from Llama-3.1-70B-Instruct's real safetensors headers
(through the loopback Hub, as in ``test_gpu_plans``), on 2 nodes of 8 GPUs: AdamW's
16 bytes per parameter come to ~78 GB per GPU over 16, so H200s (141 GB) hold it and
H100s (80 GB) do not.
"""

from __future__ import annotations

from typing import Any

import pytest

from ci_runner.backend.launcher import accelerate_config, node_command
from ci_runner.backend.ray_cluster import shape_of
from ci_runner.backend.ray_jobs import clean_line
from ci_runner.plan.estimate import make_plan
from ci_runner.plan.render import render_plan
from ci_runner.plan.resolve import resolve_run
from ci_runner.runconfig import Launch
from tests.test_gpu_plans import LLAMA70, experiment, hub, sized  # noqa: F401

pytestmark = pytest.mark.usefixtures("loopback_online")

# Full fine-tuning, the weights loaded in bf16.
FULL_70B_ON_2X8: dict[str, Any] = {
    "lora": "off",
    "hyperparameters": {
        "num_train_epochs": 1,
        "per_device_train_batch_size": 1,
        "gradient_accumulation_steps": 8,
        "max_length": 2048,
        "model_init_kwargs": {"dtype": "bfloat16"},
    },
    "backend": "ray",
    "nodes": 2,
    "ray": {"gpus_per_node": 8, "gpu": "H200"},
}


def test_70b_full_fine_tune_on_2x8_h200_fits_per_gpu(hub):  # noqa: F811
    exp = experiment(LLAMA70, **FULL_70B_ON_2X8)
    plan = make_plan(exp, size=sized(hub, LLAMA70), dataset_rows=None, mean_seq_len=None)
    print(render_plan(plan))
    assert (plan.flavor, plan.nodes, plan.gpus, plan.processes) == ("ray-2x8-H200", 2, 16, 16)
    assert plan.launcher == "fsdp" and plan.sharded and plan.fits is True
    assert plan.memory_gb is not None and plan.memory_gb > 141  # no single GPU holds it
    assert plan.memory_per_gpu_gb is not None and plan.memory_per_gpu_gb <= 141 * 0.85
    assert plan.est_seconds and plan.est_cost_usd is None  # no price in the file: no cost
    assert plan.flavor_usd_per_hour is None
    launch = resolve_run(exp, output_dir="/tmp/x", plan=plan).run_config.launch
    assert launch == Launch(processes=8, strategy="fsdp", mixed_precision="bf16", nodes=2)
    command = " ".join(node_command(launch, "train.py", "run_config.json"))
    assert (
        "accelerate.commands.launch --num_processes 16 --num_machines 2 "
        "--config_file ./accelerate_config.yaml --dynamo_backend no "
        "--machine_rank {machine_rank} --main_process_ip {main_process_ip} "
        "--main_process_port {main_process_port} train.py --config run_config.json"
    ) in command
    assert "num_machines: 2\nnum_processes: 16\n" in accelerate_config(launch)


def test_70b_full_fine_tune_on_2x8_h100_is_reported_as_not_fitting(hub):  # noqa: F811
    data = {**FULL_70B_ON_2X8, "ray": {"gpus_per_node": 8, "gpu": "H100"}}
    plan = make_plan(
        experiment(LLAMA70, **data), size=sized(hub, LLAMA70), dataset_rows=None, mean_seq_len=None
    )
    print(render_plan(plan))
    assert plan.fits is False and plan.memory_per_gpu_gb and plan.memory_per_gpu_gb > 68
    assert any("ray-2x8-H100 does not fit" in w for w in plan.warnings)


def test_cost_only_with_a_price_per_gpu_hour(hub):  # noqa: F811
    priced = {**FULL_70B_ON_2X8, "ray": {**FULL_70B_ON_2X8["ray"], "usd_per_gpu_hour": 2.0}}
    plan = make_plan(
        experiment(LLAMA70, **priced),
        size=sized(hub, LLAMA70),
        dataset_rows=None,
        mean_seq_len=None,
    )
    assert plan.flavor_usd_per_hour == 32.0  # 16 GPUs × $2
    assert plan.est_seconds is not None and plan.est_cost_usd is not None
    # billed per started minute, as HF Jobs bills
    assert plan.est_cost_usd == pytest.approx(plan.est_seconds / 3600 * 32.0, rel=0.05)


def node(node_id: str, gpus: int, accel: str | None, mib: int | None, alive: bool = True):
    """One entry of ``GET /nodes?view=summary`` as Ray 2.60's dashboard serves it."""
    resources: dict[str, float] = {"CPU": 96.0, "memory": 1.6e12}
    if gpus:
        resources["GPU"] = float(gpus)
    if accel:
        resources[f"accelerator_type:{accel}"] = 1.0
    return {
        "hostname": node_id,
        "raylet": {
            "nodeId": node_id,
            "state": "ALIVE" if alive else "DEAD",
            "resourcesTotal": resources,
            "isHeadNode": not gpus,
        },
        "gpus": [{"index": i, "memoryTotal": mib} for i in range(gpus)] if mib else [],
    }


def test_cluster_shape_is_read_from_the_dashboard_and_planned_on(hub):  # noqa: F811
    summary = [
        node("head", 0, None, None),
        node("w1", 8, "A100-80G", 81920),
        node("w2", 8, "A100-80G", 81920),
        node("w3", 8, "A100-80G", 81920, alive=False),
    ]
    shape = shape_of(summary)
    assert (shape.nodes, shape.gpus_per_node, shape.gpu, shape.total_nodes) == (
        2,
        8,
        "A100-80G",
        3,
    )
    assert shape.gpu_memory_gb == pytest.approx(85.9, abs=0.1)
    exp = experiment(LLAMA70, lora="off", backend="ray", nodes=2)
    plan = make_plan(
        exp, size=sized(hub, LLAMA70), dataset_rows=None, mean_seq_len=None, cluster=shape
    )
    assert plan.flavor == "ray-2x8-A100-80G" and plan.launcher == "fsdp"
    assert plan.flavor_vram_gb == 16 * 85  # the dashboard's 81,920 MiB per GPU
    assert any("cluster read from its dashboard: 3 live node(s)" in a for a in plan.assumptions)
    three = make_plan(
        experiment(LLAMA70, lora="off", backend="ray", nodes=3),
        size=sized(hub, LLAMA70),
        dataset_rows=None,
        mean_seq_len=None,
        cluster=shape,
    )
    assert any("waits for the autoscaler" in w for w in three.warnings)


def test_ray_log_prefixes_and_colours_are_stripped_before_parsing():
    raw = (
        '\x1b[36m(NodeRank pid=4242, ip=10.0.0.7)\x1b[0m CI_RUNNER_SUMMARY {"status": "completed"}'
    )
    assert clean_line(raw) == 'CI_RUNNER_SUMMARY {"status": "completed"}'
    assert clean_line("(pid=17) step 3") == "step 3"
    assert clean_line("plain (pid=17) text") == "plain (pid=17) text"


def test_pinned_environment_installs_the_scripts_pins_and_ships_the_driver(tmp_path):
    """What a Ray job carries, as submit sends it: no cluster needed to read it back."""
    import io
    import json
    import zipfile

    from ci_runner.backend.ray_jobs import RayJobsBackend
    from ci_runner.backend.ray_package import package
    from ci_runner.core.jobs import JobRequest
    from ci_runner.job_scripts import PACKAGE_DIR, script_dependencies
    from ci_runner.runconfig import RunConfig, Tracking

    config = RunConfig(
        experiment="x",
        run_id="x-1",
        method="sft",
        base_model="org/m",
        dataset={"path": "org/d"},
        output_dir="/tmp/x",
        tracking=Tracking(project="p", run_name="x-1"),
        launch=Launch(processes=8, strategy="fsdp", mixed_precision="bf16", nodes=2),
    )
    script = PACKAGE_DIR / "train.py"
    request = JobRequest(script, config, {"ci-runner.run": "x-1"}, flavor="ray-2x8-H200")
    ray = RayJobsBackend(None, address="http://head:8265", repo="r")
    files = ray.job_files(request)
    env = ray.runtime_env(request, package(files).uri)
    assert env["pip"]["packages"] == script_dependencies(script)
    assert env["working_dir"] == package(files).uri == package(dict(files)).uri  # reproducible
    spec = json.loads(files["ray_launch.json"])
    assert spec["nodes"] == 2 and spec["bundle"] == {"CPU": 1, "GPU": 8}
    assert {"train.py", "ray_launch.py", "run_config.json", "accelerate_config.yaml"} <= set(files)
    with zipfile.ZipFile(io.BytesIO(package(files).data)) as archive:
        assert sorted(archive.namelist()) == sorted(files)  # flat: the job's cwd is its root
    cluster_env = RayJobsBackend(None, address="http://h:8265", repo="r", environment="cluster")
    assert "pip" not in cluster_env.runtime_env(request, "gcs://x.zip")


NODES_ON_HF_JOBS = """name: too-many-nodes
base_model: org/model
method: sft
dataset: org/data
backend: hf-jobs
nodes: 2
output: {hub_model_id: alice/x}
"""


def test_nodes_on_a_one_machine_backend_is_refused_at_its_line(tmp_path):
    from ci_runner.errors import SpecError
    from ci_runner.spec.load import load_experiment

    path = tmp_path / "too-many-nodes.yaml"
    path.write_text(NODES_ON_HF_JOBS)
    with pytest.raises(SpecError) as refused:
        load_experiment(path)
    (issue,) = [i for i in refused.value.issues if i.field == "nodes"]
    assert issue.line == 6 and "backend: ray" in str(issue)


def test_cluster_address_from_ray_address_first_then_the_file(tmp_path, monkeypatch):
    from ci_runner.errors import BackendError
    from ci_runner.flow.workspace import Workspace
    from ci_runner.paths import Project

    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "on-ray.yaml").write_text(
        "name: on-ray\nbase_model: org/model\nmethod: sft\ndataset: org/data\n"
        "backend: ray\nray: {address: 'http://head.internal:8265', environment: cluster}\n"
    )
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    from_file = Workspace(Project(tmp_path)).backend("ray")  # a poll that loaded no file
    assert from_file.address == "http://head.internal:8265"  # type: ignore[attr-defined]
    assert from_file.environment == "cluster"  # type: ignore[attr-defined]
    monkeypatch.setenv("RAY_ADDRESS", "http://other:8265")
    assert Workspace(Project(tmp_path)).backend("ray").address == "http://other:8265"  # type: ignore[attr-defined]
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")  # the Ray Client port, not the API
    with pytest.raises(BackendError, match="dashboard"):
        Workspace(Project(tmp_path)).backend("ray")
