"""Time to results, and the demo against its floor.

    .venv/bin/python benchmarks/bench_results.py [--repeats N] [--baseline DIR]

(a) time to results: wall seconds from ``ci-runner run`` of a 2-run sweep (the demo's
    experiment with a two-value learning-rate matrix) until it exits, every run with its
    base and final scores in the report. ``--baseline DIR`` runs the same file with
    another checkout's ``ci_runner`` first on ``PYTHONPATH`` (``before``, e.g. main) beside
    this one's (``after``), alternating, in the same call.
(b) demo / floor: ``ci-runner run experiments/tiny-sft.yaml`` in a fresh project against
    its floor, each a fresh process in the same repeat: ``plain_trl_sft.py`` (the same
    steps, data and hyperparameters) plus ``plain_lighteval.py`` evaluating the same two
    models (the base, and the model the demo trained) on the same benchmark.

Needs the fixtures (``ci-runner fixtures``). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from bench_train import ROOTS_ENV, ci_runner_command, last_json, offline_env, run_command
from common import BenchError, load_average, print_table, progress

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
EXPERIMENT = "experiments/tiny-sft.yaml"
SWEEP = "experiments/tiny-sweep.yaml"
SWEEP_RATES = [5.0e-3, 3.0e-3]
PLAIN_TRL = ROOT / "benchmarks" / "plain_trl_sft.py"
PLAIN_LIGHTEVAL = ROOT / "benchmarks" / "plain_lighteval.py"


def project(scratch: Path, fixtures: Path, name: str) -> Path:
    """A fresh copy of the project: every run trains from scratch, no ledger to find."""
    root = scratch / name
    root.mkdir()
    shutil.copytree(ROOT / "experiments", root / "experiments")
    (root / "fixtures").symlink_to(fixtures, target_is_directory=True)
    demo = yaml.safe_load((ROOT / EXPERIMENT).read_text(encoding="utf-8"))
    sweep = {**demo, "name": "tiny-sweep", "matrix": {"hyperparameters.learning_rate": SWEEP_RATES}}
    (root / SWEEP).write_text(yaml.safe_dump(sweep, sort_keys=False), encoding="utf-8")
    return root


def ci_runner(root: Path, fixtures: Path, src: Path, *args: str) -> float:
    """``ci-runner --root ROOT ARGS`` with ``src``'s ci_runner imported: wall seconds."""
    allowed = os.pathsep.join(filter(None, [str(fixtures), os.environ.get(ROOTS_ENV)]))
    env = offline_env(**{ROOTS_ENV: allowed, "PYTHONPATH": str(src)})
    wall, _ = run_command([*ci_runner_command(), "--root", str(root), *args], cwd=root, env=env)
    return wall


def ledger_of(root: Path, experiment: str) -> dict[str, Any]:
    for path in (root / "training_reports").glob("*.ledger.json"):
        ledger = json.loads(path.read_text(encoding="utf-8"))
        if ledger["experiment"] == experiment:
            return ledger
    raise BenchError(f"no ledger for {experiment} under {root}")


def scored(run: dict[str, Any]) -> set[str]:
    return {e["model_label"] for e in run.get("evaluations", []) if e.get("score") is not None}


# --- (a) time to results -------------------------------------------------------------


def bench_sweep(scratch: Path, fixtures: Path, src: Path, name: str) -> dict[str, float]:
    root = project(scratch, fixtures, name)
    wall = ci_runner(root, fixtures, src, "run", SWEEP)
    ledger = ledger_of(root, "tiny-sweep")
    runs = ledger["runs"]
    if len(runs) != 2 or any(not {"base", "final"} <= scored(r) for r in runs):
        raise BenchError(f"{name}: the report lacks a run's base or final scores")
    jobs = [p.parent for p in (root / ".ci-runner" / "jobs").glob("*/request.json")]
    evals = [
        j
        for j in jobs
        if json.loads((j / "request.json").read_text())["labels"].get("ci-runner.stage")
    ]
    bases = sum(
        1
        for j in evals
        if "base" in json.loads((j / "request.json").read_text())["labels"]["ci-runner.stage"]
    )
    return {"wall_s": wall, "eval_jobs": len(evals), "base_evaluations": bases}


# --- (b) the demo and its floor ------------------------------------------------------


def bench_floor(scratch: Path, fixtures: Path, index: int) -> dict[str, float]:
    root = project(scratch, fixtures, f"demo-{index}")
    demo_s = ci_runner(root, fixtures, ROOT, "run", EXPERIMENT)
    (run,) = ledger_of(root, "tiny-sft")["runs"]
    final = root / run["output_dir"]
    spec = yaml.safe_load((ROOT / EXPERIMENT).read_text(encoding="utf-8"))
    hp, data = spec["hyperparameters"], spec["dataset"]
    (benchmark,) = spec["evaluation"]["benchmarks"]
    env = offline_env()
    trl_s, out = run_command(
        [
            sys.executable,
            str(PLAIN_TRL),
            "--model",
            str(fixtures / "tiny-llama"),
            "--data",
            str(root / data["path"]),
            "--output-dir",
            str(scratch / f"plain-{index}"),
            "--max-steps",
            str(hp["max_steps"]),
            "--batch-size",
            str(hp["per_device_train_batch_size"]),
            "--learning-rate",
            str(hp["learning_rate"]),
            "--max-length",
            str(hp["max_length"]),
        ],
        cwd=root,
        env=env,
    )
    steps = last_json(out)["steps"]
    lighteval_s, out = run_command(
        [
            sys.executable,
            str(PLAIN_LIGHTEVAL),
            "--models",
            str(fixtures / "tiny-llama"),
            str(final),
            "--data",
            str(root / benchmark["dataset"]),
        ],
        cwd=root,
        env=env,
    )
    plain_scores = [v["exact_match"] for v in last_json(out).values()]
    ours = {e["model_label"]: e["score"] for e in run["evaluations"]}
    floor = trl_s + lighteval_s
    return {
        "demo_s": demo_s,
        "trl_s": trl_s,
        "lighteval_s": lighteval_s,
        "floor_s": floor,
        "ratio": demo_s / floor,
        "steps": steps,
        "base": ours.get("base"),
        "final": ours.get("final"),
        "plain_final": plain_scores[-1],
    }


# --- output --------------------------------------------------------------------------


def spread(values: list[float], digits: int = 1) -> str:
    return (
        f"{statistics.median(values):.{digits}f} "
        f"[{min(values):.{digits}f} – {max(values):.{digits}f}]"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--baseline", type=Path, help="another checkout: (a) before vs after")
    parser.add_argument("--fixtures", type=Path, default=FIXTURES)
    parser.add_argument("--skip-sweep", action="store_true", help="(b) only")
    parser.add_argument("--skip-floor", action="store_true", help="(a) only")
    args = parser.parse_args(argv)
    fixtures = args.fixtures.resolve()
    if not (fixtures / "tiny-llama" / "config.json").is_file():
        raise SystemExit(f"no fixtures in {fixtures}: run `ci-runner fixtures` first")
    print(f"load average at start: {load_average()} ({os.cpu_count()} CPUs)")
    sources = [("after", ROOT)]
    if args.baseline:
        sources.insert(0, ("before", args.baseline.resolve()))
    sweeps: dict[str, list[dict[str, float]]] = {label: [] for label, _ in sources}
    floors: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-results-") as tmp:
        scratch = Path(tmp)
        for index in range(args.repeats):
            order = sources if index % 2 == 0 else sources[::-1]
            for label, src in [] if args.skip_sweep else order:
                progress(f"sweep {label} {index + 1}/{args.repeats}")
                started = time.perf_counter()
                sweeps[label].append(bench_sweep(scratch, fixtures, src, f"{label}-{index}"))
                progress(f"  {time.perf_counter() - started:.1f} s")
            if not args.skip_floor:
                progress(f"demo and floor {index + 1}/{args.repeats}")
                floors.append(bench_floor(scratch, fixtures, index))
    if not args.skip_sweep:
        rows = [
            [
                label,
                spread([r["wall_s"] for r in results]),
                str(results[0]["eval_jobs"]),
                str(results[0]["base_evaluations"]),
            ]
            for label, results in sweeps.items()
        ]
        print_table(
            "(a) time to results, 2-run sweep: submit → report with base and final scores",
            ["code", "wall s median [min – max]", "eval jobs", "base evaluations"],
            rows,
        )
        if args.baseline:
            before = statistics.median(r["wall_s"] for r in sweeps["before"])
            after = statistics.median(r["wall_s"] for r in sweeps["after"])
            print(f"  after/before: {after / before:.2f} (medians)")
    if floors:
        rows = [
            ["demo (ci-runner run)", spread([f["demo_s"] for f in floors])],
            ["plain TRL", spread([f["trl_s"] for f in floors])],
            ["plain lighteval, 2 models", spread([f["lighteval_s"] for f in floors])],
            ["floor (TRL + lighteval)", spread([f["floor_s"] for f in floors])],
            ["demo / floor", spread([f["ratio"] for f in floors], 2)],
        ]
        print_table("(b) the demo against its floor (fresh processes)", ["", "s"], rows)
        last = floors[-1]
        print(
            f"  {last['steps']} steps; demo scores base {last['base']:.3f} → final "
            f"{last['final']:.3f}; plain lighteval on the same final model: "
            f"{last['plain_final']:.3f}"
        )
    print(f"\nload average at end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
