"""The plans ci-runner makes for published model configs: flavor, memory, savers, cost.

Sizes each model in ``tests/model_configs/`` from its ``config.json`` (no network) for one
SFT experiment (per-device batch 1 × 8 accumulation, ``max_length`` 2048, 1,000 examples,
one epoch, on HF Jobs, LoRA and hardware ``auto``) and prints one markdown row per model:
the training flavor, its memory, the savers applied, the price and the cost, then every
job of the run (training, evaluations, export) with the total. ``--grpo`` plans GRPO.

    python benchmarks/plan_table.py [--grpo] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, os.environ.get("CI_RUNNER_SRC", str(ROOT)))

from ci_runner.plan.estimate import Plan, make_plan  # noqa: E402
from ci_runner.plan.model_size import model_size  # noqa: E402
from ci_runner.spec.model import Experiment  # noqa: E402

CONFIGS = ROOT / "tests" / "model_configs"
MODELS = (  # (label, folder, Hub id)
    ("0.6B", "Qwen3-0.6B", "Qwen/Qwen3-0.6B"),
    ("2.6B (256k vocab)", "gemma-2-2b-it", "google/gemma-2-2b-it"),
    ("7B", "Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-7B-Instruct"),
    ("14B", "Qwen2.5-14B-Instruct", "Qwen/Qwen2.5-14B-Instruct"),
    ("30B MoE (3B active)", "Qwen3-30B-A3B", "Qwen/Qwen3-30B-A3B"),
    ("70B", "Llama-3.1-70B-Instruct", "meta-llama/Llama-3.1-70B-Instruct"),
)


def experiment(repo: str, grpo: bool) -> Experiment:
    hp: dict[str, Any] = {
        "num_train_epochs": 1,
        "per_device_train_batch_size": 1 if not grpo else 8,
        "gradient_accumulation_steps": 8 if not grpo else 1,
        "max_length": 2048,
    }
    data: dict[str, Any] = {
        "name": "table",
        "base_model": repo,
        "method": "grpo" if grpo else "sft",
        "dataset": {"path": "trl-lib/Capybara", "max_samples": 1000},
        "hyperparameters": hp,
        "output": {"hub_model_id": "alice/table", "merge": True},
        "evaluation": {"benchmarks": [{"benchmark": "gsm8k", "max_samples": 200}]},
        "export": {"gguf": {"quantizations": ["Q4_K_M"]}},
        "backend": "hf-jobs",
        "timeout": "12h",
    }
    if grpo:
        data["rewards"] = ["accuracy"]
    return Experiment.model_validate(data)


def plan_for(folder: str, repo: str, grpo: bool) -> Plan:
    size = model_size(f"./{folder}", root=CONFIGS, api=None)
    return make_plan(experiment(repo, grpo), size=size, dataset_rows=None, mean_seq_len=None)


def _savers(plan: Plan) -> str:
    savers = getattr(plan, "savers", None)
    if savers is None:
        return "(none: before savers)"
    on = [s for s in savers if s.on]
    return (
        ", ".join(f"{s.name} −{s.saves_gb:.1f} GB" if s.saves_gb else s.name for s in on) or "none"
    )


def _jobs(plan: Plan) -> str:
    jobs = getattr(plan, "jobs", None)
    if not jobs:
        return "(training only)"
    parts = [
        f"{j.key}: {j.flavor} ${j.est_cost_usd:.2f}" for j in jobs if j.est_cost_usd is not None
    ]
    return "; ".join(parts)


def row(label: str, plan: Plan) -> str:
    memory = plan.memory_per_gpu_gb if plan.memory_per_gpu_gb is not None else plan.memory_gb
    total = getattr(plan, "total_cost_usd", None)
    total_text = f"${total:.2f}" if total is not None else "—"
    return (
        f"| {label} | {plan.flavor} | {memory:.1f} GB | {plan.dtype}"
        f"{' 4-bit' if plan.quantization else ''} | {_savers(plan)} | "
        f"${plan.flavor_usd_per_hour:.2f} | ${plan.est_cost_usd:.2f} | {_jobs(plan)} "
        f"| {total_text} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grpo", action="store_true", help="plan GRPO instead of SFT")
    parser.add_argument("--json", action="store_true", help="print the plans as JSON")
    args = parser.parse_args()
    plans = [(label, plan_for(folder, repo, args.grpo)) for label, folder, repo in MODELS]
    if args.json:
        print(json.dumps({label: p.model_dump(mode="json") for label, p in plans}, indent=2))
        return
    print(
        "| model | flavor | memory/GPU | weights | savers (effect) | $/h | train cost "
        "| other jobs | run total |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for label, plan in plans:
        print(row(label, plan))


if __name__ == "__main__":
    main()
