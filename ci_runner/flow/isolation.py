"""Will generated code be isolated where the local backend runs it? Asked before submit.

HumanEval completions run in ``job_scripts/sandbox.py``'s sandboxes. On a laptop or a
GitHub-hosted runner the evaluator is not root, and may be refused user namespaces:
unless ``sudo -n`` works there, generated code could only run as the evaluator's own
uid, able to rewrite its judge and read the answers. The evaluation job refuses that
itself; this check says so before anything is trained, with its own exit code.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from typing import Any

from ci_runner.core.jobs import BackendName
from ci_runner.errors import UnisolatedCodeError
from ci_runner.job_scripts import PACKAGE_DIR
from ci_runner.spec.model import Experiment

CODE_BENCHMARKS = {"humaneval"}  # benchmarks whose completions run as code
PROBE_TIMEOUT_S = 120


def runs_generated_code(experiment: Experiment) -> bool:
    evaluation = experiment.evaluation
    return evaluation is not None and any(
        b.benchmark in CODE_BENCHMARKS for b in evaluation.benchmarks
    )


@functools.cache
def probe(python: str = sys.executable) -> dict[str, Any]:
    """The sandbox's own probe, run as the local backend's jobs run (this user, ``python``)."""
    try:
        done = subprocess.run(
            [python, str(PACKAGE_DIR / "sandbox.py"), "probe"],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
        report = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        return {"isolated": False, "refused": f"the sandbox probe failed: {exc}"}
    return report if isinstance(report, dict) else {"isolated": False, "refused": "no report"}


def check_isolation(experiment: Experiment, file: str) -> None:
    """Refuse (exit 8) a local evaluation whose generated code would run unisolated,
    unless the file opts in with ``evaluation.allow_unisolated_code: true``."""
    if experiment.backend != BackendName.LOCAL.value or not runs_generated_code(experiment):
        return
    assert experiment.evaluation is not None
    if experiment.evaluation.allow_unisolated_code:
        return
    report = probe()
    if report.get("isolated") is True:
        return
    raise UnisolatedCodeError(
        f"{file}: evaluation: {report.get('refused') or 'the sandbox cannot isolate here'}"
        "\n  hint: add `allow_unisolated_code: true` under `evaluation:` only if you accept "
        "scores the evaluated model's code could have forged"
    )
