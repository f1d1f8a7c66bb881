"""What a Ray cluster's nodes hold, read from its dashboard for the plan.

``GET /nodes?view=summary`` lists every node with its raylet's ``resourcesTotal``
(``GPU``, and ``accelerator_type:<name>`` as Ray detected it) and, where the dashboard
agent sees NVIDIA GPUs, each GPU's ``memoryTotal`` in MiB. Only live nodes count.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

ACCELERATOR_PREFIX = "accelerator_type:"
MIB_PER_GB = 1000**3 / 1024**2


@dataclass(frozen=True)
class ClusterShape:
    nodes: int  # live nodes of the most common kind below
    gpus_per_node: int
    gpu: str | None  # Ray's accelerator type: H100, A100-80G, L40S ...
    gpu_memory_gb: float | None
    total_nodes: int  # every live node (the head often has no GPU)


def shape_of(summary: list[dict[str, Any]]) -> ClusterShape:
    """The cluster's worker kind: the most common (GPUs, accelerator) among live nodes,
    preferring nodes with GPUs."""
    kinds: Counter[tuple[int, str | None]] = Counter()
    memory: dict[tuple[int, str | None], float] = {}
    live = [n for n in summary if (n.get("raylet") or {}).get("state") == "ALIVE"]
    for node in live:
        resources = node["raylet"].get("resourcesTotal") or {}
        gpus = int(resources.get("GPU", 0))
        names = [
            k[len(ACCELERATOR_PREFIX) :] for k in resources if k.startswith(ACCELERATOR_PREFIX)
        ]
        kind = (gpus, names[0] if names else None)
        kinds[kind] += 1
        sizes = [g.get("memoryTotal") for g in node.get("gpus") or [] if g.get("memoryTotal")]
        if sizes:
            memory[kind] = round(min(sizes) / MIB_PER_GB, 1)
    if not kinds:
        return ClusterShape(0, 0, None, None, 0)
    (gpus, gpu), count = max(kinds.items(), key=lambda item: (item[0][0] > 0, item[1]))
    return ClusterShape(count, gpus, gpu, memory.get((gpus, gpu)), len(live))
