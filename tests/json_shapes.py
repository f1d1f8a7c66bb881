"""The shapes of what ``--json`` prints, for checking that a refactor changed none.

``collect`` drives the CLI in a subprocess (any checkout of ci-runner, via
``PYTHONPATH``) through one HF Jobs run on the loopback server: validate, check-data,
plan, submit, poll (running, then completed) and status. A shape keeps every key and the
type of every value, not the values. ``tests/golden/json_shapes.json`` holds the shapes
the CLI printed before the flow refactor (commit e87549c), written by::

    python -m tests.json_shapes OLD_CHECKOUT tests/golden/json_shapes.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.conftest import HF_NAMESPACE, HF_TOKEN
from tests.dataset_viewer_server import FakeDatasetViewer
from tests.hf_jobs_server import FakeHFJobs
from tests.test_hf_jobs_backend import CAPYBARA, experiment_text, summary_line

SPEC = experiment_text("shapes").replace("tracking:\n  space: alice/trackio\n", "")


# A run's train → eval → export step is its phase (ledger schema version 2).
RENAMED = {"stage": "phase", "stage_jobs": "phase_jobs", "stage_hardware": "phase_hardware"}


def renamed(old: Any) -> Any:
    """Recorded shapes under the keys the CLI prints now."""
    if isinstance(old, dict):
        return {RENAMED.get(key, key): renamed(value) for key, value in old.items()}
    if isinstance(old, list):
        return [renamed(item) for item in old]
    return old


def shape(value: Any) -> Any:
    """Keys and value types; a list is the union of its items' shapes."""
    if isinstance(value, dict):
        return {key: shape(v) for key, v in sorted(value.items())}
    if isinstance(value, list):
        shapes = []
        for item in value:
            s = shape(item)
            if s not in shapes:
                shapes.append(s)
        return ["list", *shapes]
    if value is None:
        return "null"
    return type(value).__name__


def missing(old: Any, new: Any, where: str = "") -> list[str]:
    """What ``old`` has that ``new`` lacks or types differently; added keys are fine, and
    a value that was null may now be set (and the reverse, where a field is optional)."""
    if old == new or "null" in (old, new):
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key, value in old.items():
            if key not in new:
                out.append(f"{where}.{key}: gone")
            else:
                out += missing(value, new[key], f"{where}.{key}")
        return out
    if isinstance(old, list) and isinstance(new, list):
        out = []
        for item in old[1:]:
            if not any(not missing(item, candidate, where) for candidate in new[1:]):
                out.append(f"{where}[]: no item of shape {json.dumps(item)[:200]}")
        return out
    return [f"{where}: was {json.dumps(old)[:120]}, now {json.dumps(new)[:120]}"]


def collect(code_root: Path) -> dict[str, Any]:
    """Each command's ``--json`` shape, from the ci-runner checkout at ``code_root``."""
    shapes: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeHFJobs(namespace=HF_NAMESPACE, token=HF_TOKEN) as hf,
        FakeDatasetViewer() as viewer,
    ):
        viewer.add_dataset("trl-lib/Capybara", {"default": {"train": CAPYBARA}})
        root = Path(tmp)
        (root / "experiments").mkdir()
        (root / "experiments" / "shapes.yaml").write_text(SPEC)
        env = {
            **os.environ,
            "PYTHONPATH": str(code_root),
            "HF_ENDPOINT": hf.url,
            "HF_DATASETS_SERVER": viewer.url,
            "HF_TOKEN": HF_TOKEN,
            "HF_JOBS_NAMESPACE": HF_NAMESPACE,
            "HF_HUB_OFFLINE": "0",
        }

        def cli(name: str, *args: str) -> None:
            proc = subprocess.run(
                [sys.executable, "-m", "ci_runner.cli", "--root", str(root), *args, "--json"],
                capture_output=True,
                text=True,
                env=env,
                cwd=root,
                timeout=300,
            )
            if proc.returncode not in (0, 12):
                raise RuntimeError(
                    f"{name}: exit {proc.returncode}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
                )
            shapes[name] = shape(json.loads(proc.stdout))

        spec = "experiments/shapes.yaml"
        cli("validate", "validate", spec)
        cli("check-data", "check-data", spec)
        cli("plan", "plan", spec)
        cli("submit", "submit", spec)
        (job_id,) = list(hf.jobs)
        hf.set_stage(job_id, "RUNNING")
        hf.add_logs(job_id, ["[step 50/100] loss=1.2000 eta_s=60"])
        cli("poll (running)", "poll")
        hf.add_logs(job_id, [summary_line(train_tokens_per_s=None)])
        hf.set_stage(job_id, "COMPLETED")
        cli("poll (completed)", "poll")
        cli("status", "status")
    return shapes


if __name__ == "__main__":
    checkout, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
    out.write_text(json.dumps(collect(checkout), indent=1, sort_keys=True) + "\n")
