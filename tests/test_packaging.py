"""The runner stays light: no ML stack at import, and the console script is wired."""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "torch",
    "transformers",
    "trl",
    "peft",
    "datasets",
    "trackio",
    "sentencepiece",
    "matplotlib",  # only when a plot is drawn
    "numpy",
    "ray",  # the ray backend speaks HTTP to the cluster; only the cluster runs Ray
)


def test_cli_import_pulls_in_no_ml_stack():
    code = (
        "import sys, ci_runner.cli, ci_runner.flow.poll, ci_runner.flow.submit,"
        " ci_runner.backend.ray_jobs;"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_console_script_reports_version():
    out = subprocess.run(
        [sys.executable, "-m", "ci_runner.cli", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert out.stdout.startswith("ci-runner, version ")
