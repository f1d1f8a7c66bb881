"""Every benchmark still runs end to end on a tiny setting and prints its figures.

These never assert that anything is fast: timings on a shared CPU are not test results.
"""

from __future__ import annotations

import json
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


@pytest.mark.slow
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


@pytest.mark.training
def test_bench_train_runs_the_demo_and_both_trainers_and_prints_its_figures(tiny_fixtures):
    pytest.importorskip("trl")
    fixtures = str(tiny_fixtures.model.parent)
    out = run_benchmark("bench_train.py", "--repeats", "1", "--steps", "2", "--fixtures", fixtures)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "load average" in out.stdout
    spread = r"\d+\.\d\d\s+\[\d+\.\d\d – \d+\.\d\d\]"
    phases = ("total", "check, plan, submit", "training job", r"evaluation job\(s\)")
    # no hand-offs: the evaluation job is already running when training ends (a row of
    # zeros is left out)
    assert not re.search(r"^\s+hand-offs\s", out.stdout, re.MULTILINE), out.stdout
    for phase in (*phases, "final poll, report"):
        assert re.search(rf"^\s+{phase}\s+-?{spread}\s+-?\d+%$", out.stdout, re.MULTILINE), (
            phase,
            out.stdout,
        )
    assert re.search(rf"training's own train_runtime {spread} s", out.stdout)
    for script in (r"train\.py \(ours\)", "plain TRL"):
        row = rf"^\s+{script}\s+\d+\s+\[\d+ – \d+\]\s+{spread}\s+{spread}\s+\d+$"
        assert re.search(row, out.stdout, re.MULTILINE), (script, out.stdout)
    assert re.search(r"tokens/s ours/plain\s+\d\.\d{3}", out.stdout)
    assert re.search(r"demo overhead wall/runtime\s+\d+\.\dx", out.stdout)


@pytest.mark.training
def test_bench_results_times_a_sweep_and_the_demo_against_its_floor(tiny_fixtures):
    pytest.importorskip("lighteval")
    fixtures = str(tiny_fixtures.model.parent)
    model_files = sorted(tiny_fixtures.model.rglob("*"))
    out = run_benchmark("bench_results.py", "--repeats", "1", "--fixtures", fixtures)
    assert out.returncode == 0, out.stdout + out.stderr
    # plain lighteval caches at cache_dir / model_name: the baseline keeps it elsewhere
    assert sorted(tiny_fixtures.model.rglob("*")) == model_files
    assert out.stdout.count("load average") == 2
    one = r"\d+\.\d\s+\[\d+\.\d – \d+\.\d\]"
    # two runs, one evaluation job each, one base evaluation (the second run reuses it)
    assert re.search(rf"^\s+after\s+{one}\s+2\s+1$", out.stdout, re.MULTILINE), out.stdout
    for row in ("demo \\(ci-runner run\\)", "plain TRL", "plain lighteval, 2 models", "floor"):
        assert re.search(rf"^\s+{row}.*\s+{one}$", out.stdout, re.MULTILINE), (row, out.stdout)
    assert re.search(r"^\s+demo / floor\s+\d+\.\d\d \[", out.stdout, re.MULTILINE)
    assert re.search(r"demo scores base 0\.000 → final 0\.\d{3}", out.stdout)


@pytest.mark.slow
def test_bench_poll_runs_and_prints_its_figures():
    pytest.importorskip("trackio")
    out = run_benchmark("bench_poll.py", "--files", "1", "--runs-per-file", "4", "--page-size", "2")
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"^runs submitted\s+4 \(1 files\)", out.stdout, re.MULTILINE)
    assert re.search(r"^poll wall time\s+\d+\.\d\ds", out.stdout, re.MULTILINE)
    assert re.search(r"^runs advanced to running\s+4$", out.stdout, re.MULTILINE)
    assert re.search(r"^requests in one poll\s+\d+: .*list 2", out.stdout, re.MULTILINE)
    assert re.search(r"^requests per run\s+\d\.\d{3}", out.stdout, re.MULTILINE)


def test_bench_action_installs_as_action_yml_does_then_polls():
    out = run_benchmark("bench_action.py", "--repeats", "1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"^  uv, warm cache #1\s+\d+\.\d\s+\d+\.\d\s+\d+\.\d$", out.stdout, re.M)
    assert re.search(r"warm install \+ poll / goal \(15 s\): \d+\.\d\d$", out.stdout, re.M)


def test_gpu_check_runs_a_tiny_config_on_cpu_with_each_saver_off(tmp_path):
    """The GPU check's code path on a tiny Llama config: the planned run, then each saver
    off, with the plan's estimate beside each; Liger (CUDA only) is reported as skipped."""
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 512,
        "max_position_embeddings": 256,
    }
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "config.json").write_text(json.dumps(config))
    common = ("--config-dir", str(tmp_path), "--models", "tiny", "--device", "cpu")
    out = run_benchmark("gpu_check.py", *common, "--steps", "1", "--seq", "32", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    results = {r["variant"]: r for r in json.loads(out.stdout)}
    assert list(results) == [
        "planned",
        "no liger_kernel",
        "no gradient_checkpointing",
        "no fused_lm_head",
    ]
    assert "CUDA" in results["no liger_kernel"]["skipped"]
    for variant in ("planned", "no gradient_checkpointing", "no fused_lm_head"):
        result = results[variant]
        assert result["skipped"] is None and result["tokens_per_s"] > 0
        assert result["plan_gb"] > 0 and result["plan_tokens_per_s"] > 0
        assert result["peak_gb"] is None  # measured on CUDA only
    # the plan's estimate follows the saver: checkpointing off keeps every layer's activations
    assert results["no gradient_checkpointing"]["plan_gb"] >= results["planned"]["plan_gb"]
    assert (
        results["planned"]["params"]
        == 64 * 512 + 2 * (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128 + 128) + 64
    )
