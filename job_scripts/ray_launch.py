"""The driver of a Ray job: reserve N nodes, start the run's command once on each.

The Ray backend ships this file in the job's ``working_dir`` and makes it the job's
entrypoint; it runs on the cluster (where ``ray`` is installed), never in the runner.
``ray_launch.json`` beside it says what to start:

    {"nodes": 2, "bundle": {"CPU": 1, "GPU": 8}, "command": [...], "placement_timeout_s": 600}

A STRICT_SPREAD placement group holds one bundle per node, so no two ranks share a
machine. One actor per bundle reports its node, rank 0 picks a free port, and every
actor runs ``command`` with ``{machine_rank}``, ``{main_process_ip}``,
``{main_process_port}`` and ``{python}`` filled in (``ci_runner.backend.launcher``).
Each command runs in its own process group, and the actor kills that group when the
job is stopped (the driver gets SIGTERM), when a sibling rank fails, or when the actor
itself dies (its child gets SIGTERM from the kernel): a stopped job leaves no training
process behind on any node.

Exit code: the first failing rank's, or 0. A rank that outlives the others by
``STRAGGLER_GRACE_S`` after they all exited cleanly is stopped, not waited for forever.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SPEC_FILE = "ray_launch.json"
PREFIX = "[ci-runner]"
PR_SET_PDEATHSIG = 1
# A rank still running this long after another ended cleanly is stuck in teardown.
STRAGGLER_GRACE_S = 120
STOP_GRACE_S = 2  # Ray SIGKILLs a stopped driver after 3 s (RAY_JOB_STOP_WAIT_TIME_S)


def log(message: str) -> None:
    print(f"{PREFIX} {message}", flush=True)


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the thread that started it ends, which is
    the actor's (its threads live as long as it does): a killed actor takes its rank."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class NodeRank:
    """One node's share of the job: where it runs, and its command's process group."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.stopping = False

    def where(self) -> tuple[str, int, str]:
        import ray

        with socket.socket() as probe:
            probe.bind(("", 0))
            port = probe.getsockname()[1]
        context = ray.get_runtime_context()
        return ray.util.get_node_ip_address(), port, context.get_node_id()

    def run(self, command: list[str]) -> int:
        if self.stopping:
            return 143
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            command, env=env, start_new_session=True, preexec_fn=_die_with_parent
        )
        return self.process.wait()

    def stop(self) -> None:
        """SIGTERM the command's whole process group; SIGKILL what outlives the grace."""
        self.stopping = True
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def fill(command: list[str], rank: int, ip: str, port: int) -> list[str]:
    values = {
        "{machine_rank}": str(rank),
        "{main_process_ip}": ip,
        "{main_process_port}": str(port),
        "{python}": sys.executable,
    }
    return [values.get(arg, arg) for arg in command]


def main() -> int:
    spec = json.loads(Path(SPEC_FILE).read_text(encoding="utf-8"))
    # Each rank's lines reach this driver's log as they are, not folded into one.
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    import ray
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    ray.init(log_to_driver=True)
    nodes, bundle = int(spec["nodes"]), dict(spec["bundle"])
    group = placement_group([bundle] * nodes, strategy="STRICT_SPREAD")
    timeout = float(spec.get("placement_timeout_s", 600))
    if not group.wait(timeout_seconds=timeout):
        log(
            f"scheduling failed: the cluster has no {nodes} distinct nodes each free to hold "
            f"{bundle} after {timeout:.0f}s (STRICT_SPREAD: one bundle per node)"
        )
        return 3
    # Two calls at once: ``stop`` must reach an actor whose ``run`` is still waiting.
    actor_class = ray.remote(max_concurrency=2)(NodeRank)
    actors = [
        actor_class.options(
            num_cpus=bundle.get("CPU", 0),
            num_gpus=bundle.get("GPU", 0),
            scheduling_strategy=PlacementGroupSchedulingStrategy(
                placement_group=group, placement_group_bundle_index=rank
            ),
        ).remote()
        for rank in range(nodes)
    ]
    places = ray.get([actor.where.remote() for actor in actors])
    for rank, (ip, _, node_id) in enumerate(places):
        log(f"rank {rank} on node {node_id} ({ip})")
    main_ip, main_port, _ = places[0]

    def stop_all(*_: object) -> None:
        with contextlib.suppress(Exception):  # an actor already gone has nothing to stop
            ray.get([actor.stop.remote() for actor in actors], timeout=STOP_GRACE_S + 0.5)

    def on_term(signum: int, _frame: object) -> None:
        log("stopping: the job was stopped; ending every rank's processes")
        stop_all()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    command = spec["command"]
    pending = {
        actor.run.remote(fill(command, rank, main_ip, main_port)): rank
        for rank, actor in enumerate(actors)
    }
    code = 0
    finished_at = None
    while pending:
        wait = None if finished_at is None else finished_at + STRAGGLER_GRACE_S - time.monotonic()
        done, _ = ray.wait(
            list(pending), num_returns=1, timeout=None if wait is None else max(wait, 0.0)
        )
        if not done:  # the others finished long ago: a rank hung tearing down
            log(
                f"rank(s) {sorted(pending.values())} still running {STRAGGLER_GRACE_S}s after "
                "the others finished; stopping them"
            )
            stop_all()
            break
        finished_at = finished_at or time.monotonic()
        rank = pending.pop(done[0])
        rank_code = ray.get(done[0])
        if rank_code != 0 and code == 0:
            code = rank_code if rank_code > 0 else 128 - rank_code  # killed by a signal
            log(f"rank {rank} exited with code {rank_code}; stopping the other ranks")
            stop_all()
    return code


if __name__ == "__main__":
    sys.exit(main())
