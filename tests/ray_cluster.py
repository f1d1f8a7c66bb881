"""A real two-node Ray cluster on this host, for the Ray backend's tests.

``ray start --head`` and a second ``ray start --address …`` each get their own ports
and share one temp dir, so the suite's cluster never meets a cluster a person started.
Both are started with ``--block`` as our own children: stopping them is a signal to
their PIDs (``ray start --block`` stops its node's processes when it is told to), never
``ray stop``, which would stop every Ray process of this user on the host.

    python tests/ray_cluster.py      # start one by hand; Ctrl-C stops it
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")
START_TIMEOUT_S = 90
# Each node needs a dozen ports (GCS, raylet, object manager, agents, workers): taken from
# one free block so two test sessions on one host never collide.
PORTS_PER_NODE = 12
WORKER_PORTS = 40


def _free_block(size: int) -> int:
    """The first port of ``size`` consecutive ports that are free right now."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            start = probe.getsockname()[1]
        if start + size >= 65000:
            continue
        taken = False
        for port in range(start, start + size):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    taken = True
                    break
        if not taken:
            return start
    raise RuntimeError("no free block of ports for a Ray cluster")


@dataclass
class RayNode:
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class RayCluster:
    temp_dir: Path
    gcs_port: int
    dashboard_port: int
    base_port: int
    nodes: list[RayNode] = field(default_factory=list)
    # Token authentication on, as an exposed cluster must run: every request needs it.
    token: str = field(default_factory=lambda: f"raytest_{secrets.token_hex(16)}")

    @property
    def address(self) -> str:
        """The dashboard's HTTP address: what ``RAY_ADDRESS`` names for the Jobs API."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    # -- start ------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("RAY_ADDRESS", None)
        env.update(
            RAY_USAGE_STATS_ENABLED="0",
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN=self.token,
            RAY_DISABLE_DOCKER_CPU_WARNING="1",
            # The job's workers run with this interpreter and see ray from its site-packages.
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        )
        return env

    def _start_node(self, index: int, head: bool) -> None:
        base = self.base_port + index * PORTS_PER_NODE
        worker_base = self.base_port + 2 * PORTS_PER_NODE + index * WORKER_PORTS
        common = [
            "--block",
            "--num-cpus=1",
            "--num-gpus=0",
            f"--node-manager-port={base + 1}",
            f"--object-manager-port={base + 2}",
            f"--dashboard-agent-listen-port={base + 3}",
            f"--dashboard-agent-grpc-port={base + 4}",
            f"--runtime-env-agent-port={base + 5}",
            f"--metrics-export-port={base + 6}",
            f"--min-worker-port={worker_base}",
            f"--max-worker-port={worker_base + WORKER_PORTS - 1}",
            "--node-ip-address=127.0.0.1",
            "--object-store-memory=100000000",
        ]
        if head:
            args = [
                "--head",
                f"--port={self.gcs_port}",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard_port}",
                f"--ray-client-server-port={base + 7}",
                f"--temp-dir={self.temp_dir}",
                "--disable-usage-stats",
            ]
        else:
            # A temp dir of its own: two log monitors tailing one session's worker logs
            # would forward every line to the driver twice.
            own = self.temp_dir.parent / f"node{index}"
            own.mkdir(exist_ok=True)
            args = [f"--address={self.gcs_address}", f"--temp-dir={own}"]
        log = self.temp_dir.parent / f"ray-start-{index}.log"
        out = log.open("ab")
        process = subprocess.Popen(
            [RAY, "start", *args, *common],
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        self.nodes.append(RayNode(process, log))

    def start(self) -> RayCluster:
        self._start_node(0, head=True)
        self._wait(lambda nodes: nodes >= 1)
        self._start_node(1, head=False)
        self._wait(lambda nodes: nodes >= 2)
        return self

    def restart_head(self) -> None:
        """Stop the head node and start a fresh one on the same ports: the new head's GCS
        knows none of the old jobs (no external Redis), as after a real head pod restart."""
        worker = self.nodes.pop()
        head = self.nodes.pop()
        for node in (worker, head):
            _stop(node)
        self._start_node(0, head=True)
        self._wait(lambda nodes: nodes >= 1)
        self._start_node(1, head=False)
        self._wait(lambda nodes: nodes >= 2)

    def alive_nodes(self) -> list[dict[str, object]]:
        """The cluster's live nodes, as the dashboard lists them."""
        with urllib.request.urlopen(self._get("/nodes?view=summary"), timeout=5) as r:
            body = json.load(r)
        summary = body["data"]["summary"]
        return [n for n in summary if n.get("raylet", {}).get("state") == "ALIVE"]

    def _wait(self, ready: object) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        last: Exception | None = None
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.process.poll() is not None:
                    raise RuntimeError(f"ray start exited:\n{node.log.read_text()[-3000:]}")
            try:
                if ready(len(self.alive_nodes())) and self._jobs_api_up():  # type: ignore[operator]
                    return
            except OSError as exc:
                last = exc
            time.sleep(0.5)
        raise RuntimeError(f"the Ray cluster did not come up in {START_TIMEOUT_S}s: {last}")

    def _jobs_api_up(self) -> bool:
        with urllib.request.urlopen(self._get("/api/jobs/"), timeout=5) as r:
            return r.status == 200

    def _get(self, path: str) -> urllib.request.Request:
        headers = {"Authorization": f"Bearer {self.token}"}
        return urllib.request.Request(f"{self.address}{path}", headers=headers)

    # -- stop -------------------------------------------------------------------

    def stop(self) -> None:
        while self.nodes:
            _stop(self.nodes.pop())


def _stop(node: RayNode) -> None:
    """Stop one node by its PID: ``ray start --block`` stops its own processes on SIGTERM.

    What it started (raylet, GCS, agents, workers) lives in its session: a straggler that
    outlives it is signalled by process group as a last resort.
    """
    process = node.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def start_cluster(root: Path | None = None) -> RayCluster:
    # Ray's socket paths must stay under 107 bytes: a short temp dir, not pytest's tmp_path.
    temp_dir = Path(tempfile.mkdtemp(prefix="rayt-", dir=str(root) if root else "/tmp")) / "ray"
    temp_dir.mkdir()
    base = _free_block(2 * PORTS_PER_NODE + 2 * WORKER_PORTS + 2)
    gcs, dashboard = base + 2 * PORTS_PER_NODE + 2 * WORKER_PORTS, base + 8
    cluster = RayCluster(temp_dir, gcs_port=gcs, dashboard_port=dashboard, base_port=base)
    try:
        return cluster.start()
    except BaseException:
        cluster.stop()
        raise


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `finally` stops the nodes
    started = start_cluster()
    print(f"RAY_ADDRESS={started.address}  (gcs {started.gcs_address})", flush=True)
    print("RAY_AUTH_TOKEN: see the token attribute (not printed)", flush=True)
    try:
        signal.pause()
    finally:
        started.stop()
