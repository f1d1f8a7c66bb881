"""Hardware for a ``backend: ray`` run: N nodes of G GPUs, as the cluster or the file says.

A Ray run has no catalog flavor: it gets the GPUs of ``nodes`` machines of the cluster
(one STRICT_SPREAD bundle each). The plan sizes memory per GPU over all N × G GPUs:
DDP when one GPU holds a replica, else FSDP2 sharded over every GPU of every node.
Time uses the GPU's peak and MFU as for HF Jobs; cost only when the file gives a price
per GPU-hour (a cluster has no list price).
"""

from __future__ import annotations

from dataclasses import dataclass

from ci_runner.backend.ray_cluster import ClusterShape
from ci_runner.backend.ray_jobs import flavor_name
from ci_runner.core.flavors import ACCELERATORS, FLAVORS, Flavor
from ci_runner.plan.hardware import (
    DDP,
    FSDP,
    SINGLE,
    FlavorChoice,
    Sizer,
    _explicit_option,
    usable_gb,
)
from ci_runner.spec.model import Experiment, RaySpec

# Per-GPU (memory GB, dense bf16 TFLOP/s) by Ray's accelerator name: the HF catalog's
# GPUs, plus the H100 (SXM) most multi-node clusters have.
GPUS: dict[str, tuple[float, float]] = {
    **{f.accelerator: (float(f.vram_gb), f.peak_tflops) for f in FLAVORS if f.accelerator},
    "H100": (80.0, 989.0),
}


@dataclass(frozen=True)
class RayHardware:
    choice: FlavorChoice
    warnings: list[str]
    notes: list[str]
    usd_per_hour: float | None  # the whole slice: nodes × GPUs × the file's $/GPU-hour


def _gpu_facts(name: str | None, memory_gb: float | None) -> tuple[str, float, float] | None:
    """(accelerator, GB per GPU, peak TFLOP/s) for a Ray accelerator type such as
    ``A100-80G``: the family names the speed, a suffix or the file the memory."""
    if name is None:
        return None
    family, _, variant = name.partition("-")
    if family not in GPUS or family not in ACCELERATORS:
        return None
    vram, tflops = GPUS[family]
    if variant.endswith("G") and variant[:-1].isdigit():
        vram = float(variant[:-1])
    return family, memory_gb or vram, tflops


def ray_hardware(
    experiment: Experiment, sizer: Sizer, cluster: ClusterShape | None, quantize: str
) -> RayHardware:
    spec = experiment.ray or RaySpec()
    nodes = experiment.nodes
    warnings: list[str] = []
    notes: list[str] = []
    gpus = spec.gpus_per_node if spec.gpus_per_node is not None else None
    if gpus is None and cluster is not None:
        gpus = cluster.gpus_per_node
        notes.append(
            f"cluster read from its dashboard: {cluster.total_nodes} live node(s), "
            f"{cluster.nodes} with {cluster.gpus_per_node} × {cluster.gpu or 'no GPU'}"
        )
    if gpus is None:
        precision = sizer(None, False, False)[0]
        warnings.append(
            "the Ray cluster's GPUs are unknown (not reachable at plan time): set "
            "`ray.gpus_per_node` and `ray.gpu` in the file, or RAY_ADDRESS"
        )
        return RayHardware(FlavorChoice(None, False, None, precision=precision), warnings, [], None)
    if cluster is not None and cluster.nodes < nodes and (gpus == cluster.gpus_per_node):
        warnings.append(
            f"nodes: {nodes} but the cluster has {cluster.nodes} such node(s) now: the job "
            "waits for the autoscaler (STRICT_SPREAD needs one node per rank)"
        )
    gpu_name = spec.gpu or (cluster.gpu if cluster else None)
    price = spec.usd_per_gpu_hour
    slice_price = price * nodes * max(gpus, 1) if price is not None else None
    name = flavor_name(nodes, gpus, gpu_name)
    if gpus == 0:
        flavor = Flavor(name, None, 0, 0, 0.0, slice_price or 0.0)
        precision, memory = sizer(flavor, False, False)
        launcher = DDP if nodes > 1 else SINGLE
        choice = FlavorChoice(flavor, False, None, precision, (), memory, launcher, nodes)
        notes.append(
            f"{name}: CPU nodes; one process per node over gloo"
            if nodes > 1
            else f"{name}: one CPU process"
        )
        return RayHardware(choice, warnings, notes, slice_price)
    facts = _gpu_facts(gpu_name, spec.gpu_memory_gb or (cluster.gpu_memory_gb if cluster else None))
    if facts is None:
        precision = sizer(None, False, False)[0]
        warnings.append(
            f"GPU {gpu_name or 'type unknown'}: memory and speed not known; set `ray.gpu` to "
            f"one of {', '.join(sorted(GPUS))} (and `ray.gpu_memory_gb`)"
        )
        return RayHardware(
            FlavorChoice(None, False, None, precision=precision), warnings, notes, slice_price
        )
    accelerator, vram, tflops = facts
    flavor = Flavor(name, accelerator, nodes * gpus, int(vram), tflops, slice_price or 0.0)
    option = _explicit_option(flavor, sizer, quantize)
    choice = FlavorChoice.of(option)
    total = nodes * gpus
    how = {
        SINGLE: "one process",
        DDP: "DDP: each GPU holds a full replica",
        FSDP: f"FSDP2 shards weights, gradients and optimizer states over all {total} GPUs",
    }[option.launcher]
    notes.append(
        f"{name}: {nodes} node(s) × {gpus} {accelerator} ({vram:g} GB), one `accelerate "
        f"launch` per node (STRICT_SPREAD placement group), {choice.processes} process(es); "
        f"{how}"
    )
    if option.fits is False and option.per_gpu_gb is not None:
        warnings.append(
            f"{name} does not fit: needs ~{option.per_gpu_gb:.1f} GB per GPU, "
            f"{usable_gb(flavor):.1f} of {vram:g} GB usable; add nodes, or turn LoRA on"
        )
    if price is None:
        notes.append("cost not estimated: set `ray.usd_per_gpu_hour` to see it")
    return RayHardware(choice, warnings, notes, slice_price)
