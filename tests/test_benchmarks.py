"""Every benchmark still runs end to end on a tiny setting and prints its figures.

These never assert that anything is fast: timings on a shared CPU are not test results.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

BENCHMARKS = ROOT / "benchmarks"
SECONDS = r"\d+\.\d{3}"


def run_benchmark(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_bench_cli_runs_and_prints_its_figures():
    for module in ("torch", "transformers", "sentencepiece"):  # to build the fixtures
        pytest.importorskip(module)
    out = run_benchmark("bench_cli.py", "--repeats", "1", "--warmup", "0")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "load average" in out.stdout
    for command in ("hf --help", *(f"ci-runner {c}" for c in ("validate", "check-data", "plan"))):
        row = (
            rf"^\s+{re.escape(command)}\s+{SECONDS}\s+\[{SECONDS} – {SECONDS}\]\s+\d+\.\d\dx\s+\d+$"
        )
        assert re.search(row, out.stdout, re.MULTILINE), (command, out.stdout)
    assert re.search(rf"ci-runner status\s+{SECONDS}", out.stdout)
    assert re.search(r"^check-data peak RSS \d+ MiB", out.stdout, re.MULTILINE)
    assert "check-data counted: Lengths over 64 sampled examples, tokens (" in out.stdout
