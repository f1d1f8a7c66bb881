"""Benchmark the offline demo and the cost of our training wrapper.

    .venv/bin/python benchmarks/bench_train.py [--repeats N] [--steps N]

(a) demo: wall seconds of ``ci-runner run experiments/tiny-sft.yaml`` end to end, in a
    throwaway copy of the project (never touches training_reports/, always trains
    fresh), split into its phases (check, plan and submit; the training job; the
    evaluation job(s); hand-offs; the final poll and report) with each one's share, and
    against the training job's own ``runtime_s``: the ratio wall/runtime is the overhead.
(b) wrapper: train tokens/s of ``job_scripts/train.py`` (trackio on, eval off) against
    ``benchmarks/plain_trl_sft.py`` (plain TRL, same model, data and hyperparameters);
    the ratio ours/plain is the throughput our wrapper keeps.

Needs the fixtures (``ci-runner fixtures``). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import BenchError, load_average, print_table, progress

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"  # what `ci-runner fixtures` builds; --fixtures picks another
MODEL, DATA = "tiny-llama", "data/tiny-chat.jsonl"  # inside it
EXPERIMENT = "experiments/tiny-sft.yaml"
TRAIN_SCRIPT = ROOT / "job_scripts" / "train.py"
PLAIN_SCRIPT = ROOT / "benchmarks" / "plain_trl_sft.py"
SUMMARY_PREFIX = "CI_RUNNER_SUMMARY "
ROOTS_ENV = "CI_RUNNER_ALLOWED_ROOTS"  # folders outside a project its files may read
# The settings (b) holds equal for both scripts; max_steps comes from --steps.
NOISY = 1.5  # max/min across repeats above which the result is flagged as noisy
BATCH_SIZE, LEARNING_RATE, MAX_LENGTH, LOGGING_STEPS, SEED = 4, 5e-4, 128, 1, 42
PHASES = ("train", "eval", "export")  # the demo's job kinds, in the order they run
DEMO_ROWS = (  # (label, key) of (a)'s phases, in the order they happen
    ("check, plan, submit", "submit_s"),
    ("training job", "train_s"),
    ("evaluation job(s)", "eval_s"),
    ("export job(s)", "export_s"),
    ("hand-offs", "handoff_s"),
    ("final poll, report", "report_s"),
)


def offline_env(**extra: str) -> dict[str, str]:
    """Offline, with the environment defaults the local backend gives every job (both
    scripts of (b) run as a local job would)."""
    from ci_runner.backend.local import JOB_ENV_DEFAULTS

    return {
        **JOB_ENV_DEFAULTS,
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def run_command(command: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    """Run to completion; return (wall seconds, stdout+stderr). Raise with the log's tail."""
    start = time.perf_counter()
    proc = subprocess.run(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-30:])
        raise BenchError(f"{' '.join(command)} exited with {proc.returncode}:\n{tail}")
    return wall, proc.stdout


def last_json(output: str, prefix: str = "") -> dict[str, Any]:
    """The last line starting with ``prefix`` (and then ``{``), parsed."""
    for line in reversed(output.splitlines()):
        if line.startswith(prefix) and line[len(prefix) :].lstrip().startswith("{"):
            return json.loads(line[len(prefix) :])
    raise BenchError(f"no JSON line{f' starting with {prefix!r}' if prefix else ''} in output")


# --- (a) the demo, end to end ----------------------------------------------------


def ci_runner_command() -> list[str]:
    script = Path(sys.executable).with_name("ci-runner")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ci_runner.cli"]


def bench_demo(scratch: Path, fixtures: Path, index: int) -> dict[str, float]:
    root = scratch / f"demo-{index}"
    root.mkdir()
    shutil.copytree(ROOT / "experiments", root / "experiments")
    (root / "fixtures").symlink_to(fixtures, target_is_directory=True)
    command = [*ci_runner_command(), "--root", str(root), "run", EXPERIMENT]
    started = time.time()  # wall clock, as the job files' mtimes are
    # The fixtures are linked in from this checkout: name their folder as a user would.
    allowed = os.pathsep.join(filter(None, [str(fixtures), os.environ.get(ROOTS_ENV)]))
    run_command(command, cwd=root, env=offline_env(**{ROOTS_ENV: allowed}))
    ended = time.time()
    spans = job_spans(root / ".ci-runner" / "jobs")
    if len(spans.get("train", [])) != 1:
        raise BenchError(
            f"expected one training job in {root}, found {len(spans.get('train', []))}"
        )
    log = root / ".ci-runner" / "jobs" / spans["train"][0][2] / "log.txt"
    summary = last_json(log.read_text(encoding="utf-8", errors="replace"), SUMMARY_PREFIX)
    if summary.get("status") != "completed":
        raise BenchError(f"demo job did not complete: {summary}")
    runtime = float(summary["runtime_s"])
    wall = ended - started
    return {
        "wall_s": wall,
        "runtime_s": runtime,
        "overhead": wall / runtime if runtime > 0 else float("nan"),
        "steps": summary["steps"],
        **phases(spans, started, ended),
    }


def job_spans(jobs_dir: Path) -> dict[str, list[tuple[float, float, str]]]:
    """Each local job's (submitted, ended, job id), by kind: train, eval or export.

    A job's request file is written as it starts and its exit file as it ends; evaluation
    and export jobs carry their phase in the ``ci-runner.stage`` label, training jobs do not.
    """
    spans: dict[str, list[tuple[float, float, str]]] = {}
    for request in sorted(jobs_dir.glob("*/request.json")):
        exit_file = request.with_name("exit.json")
        if not exit_file.exists():
            raise BenchError(f"job {request.parent.name} has not ended")
        phase = json.loads(request.read_text())["labels"].get("ci-runner.stage")
        kind = phase.split("-", 1)[0] if phase else "train"
        span = (request.stat().st_mtime, exit_file.stat().st_mtime, request.parent.name)
        spans.setdefault(kind, []).append(span)
    return spans


def phases(
    spans: dict[str, list[tuple[float, float, str]]], started: float, ended: float
) -> dict[str, float]:
    """Where the demo's wall time went: before the first job (check, plan, submit), each
    phase's jobs (first start to last end), after the last job (final poll and report),
    and the hand-offs between phases (the runner noticing a job ended, starting the next)."""
    kinds = {
        kind: (min(s[0] for s in group), max(s[1] for s in group)) for kind, group in spans.items()
    }
    # A phase's span starts no earlier than the one before it ended: an evaluation that
    # ran beside training (the base's) counts as training's time, so the phases still add
    # up to the wall time.
    previous_end = 0.0
    for kind in PHASES:
        if kind in kinds:
            begin, end = kinds[kind]
            begin = min(max(begin, previous_end), end)
            kinds[kind] = (begin, end)
            previous_end = max(previous_end, end)
    first = min(begin for begin, _ in kinds.values())
    last = max(end for _, end in kinds.values())
    result = {"submit_s": first - started, "report_s": ended - last}
    for kind in PHASES:
        begin, end = kinds.get(kind, (0.0, 0.0))
        result[f"{kind}_s"] = end - begin
    jobs = sum(result[f"{kind}_s"] for kind in PHASES)
    result["handoff_s"] = (ended - started) - result["submit_s"] - result["report_s"] - jobs
    return result


# --- (b) train.py versus plain TRL -------------------------------------------------


def hyperparameters(steps: int) -> dict[str, Any]:
    return {
        "max_steps": steps,
        "per_device_train_batch_size": BATCH_SIZE,
        "learning_rate": LEARNING_RATE,
        "max_length": MAX_LENGTH,
        "logging_steps": LOGGING_STEPS,
        "save_strategy": "no",  # checkpoints are a setting, not wrapper cost: off in both
    }


def train_py_config(out: Path, fixtures: Path, steps: int, index: int) -> dict[str, Any]:
    from ci_runner.runconfig import RunConfig  # validates against the contract

    run_id = f"bench-{index}"
    config = RunConfig(
        experiment="bench-train",
        run_id=run_id,
        method="sft",
        base_model=str(fixtures / MODEL),
        dataset={"path": str(fixtures / DATA)},  # no eval_fraction / eval_split: eval off
        hyperparameters=hyperparameters(steps),
        output_dir=str(out / "output"),
        tracking={"project": "bench-train", "run_name": run_id},
        seed=SEED,
    )
    return config.model_dump(mode="json")


def bench_ours(scratch: Path, fixtures: Path, steps: int, index: int) -> dict[str, float]:
    out = scratch / f"ours-{index}"
    out.mkdir()
    config_path = out / "run.json"
    config_path.write_text(json.dumps(train_py_config(out, fixtures, steps, index), indent=2))
    env = offline_env(TRACKIO_DIR=str(out / "trackio"))
    command = [sys.executable, str(TRAIN_SCRIPT), "--config", str(config_path)]
    wall, output = run_command(command, cwd=out, env=env)
    summary = last_json(output, SUMMARY_PREFIX)
    if summary.get("status") != "completed":
        raise BenchError(f"train.py did not complete: {summary}")
    return result_row(summary, wall, steps)


def bench_plain(scratch: Path, fixtures: Path, steps: int, index: int) -> dict[str, float]:
    out = scratch / f"plain-{index}"
    out.mkdir()
    command = [
        sys.executable,
        str(PLAIN_SCRIPT),
        *("--model", str(fixtures / MODEL), "--data", str(fixtures / DATA)),
        *("--output-dir", str(out / "output")),
        *("--max-steps", str(steps), "--batch-size", str(BATCH_SIZE)),
        *("--learning-rate", str(LEARNING_RATE), "--max-length", str(MAX_LENGTH)),
        *("--logging-steps", str(LOGGING_STEPS), "--seed", str(SEED)),
    ]
    wall, output = run_command(command, cwd=out, env=offline_env())
    return result_row(last_json(output), wall, steps)


def result_row(summary: dict[str, Any], wall: float, steps: int) -> dict[str, float]:
    if summary.get("steps") != steps:
        raise BenchError(f"expected {steps} steps, got {summary.get('steps')}")
    return {
        "tokens_per_s": float(summary["train_tokens_per_s"]),
        "train_tokens": summary["train_tokens"],
        "runtime_s": float(summary["runtime_s"]),
        "process_s": wall,
    }


# --- output ------------------------------------------------------------------------


def median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(row[key] for row in rows)


def share(rows: list[dict[str, float]], key: str) -> float:
    """The median, over runs, of the phase's part of that run's wall time."""
    return statistics.median(row[key] / row["wall_s"] for row in rows)


def spread(rows: list[dict[str, float]], key: str, fmt: str) -> str:
    values = [row[key] for row in rows]
    return f"{statistics.median(values):{fmt}}  [{min(values):{fmt}} – {max(values):{fmt}}]"


def print_environment() -> None:
    import torch
    import transformers
    import trl

    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    load = load_average()
    print("environment")
    print(f"  python {platform.python_version()}  torch {torch.__version__}  ", end="")
    print(f"transformers {transformers.__version__}  trl {trl.__version__}")
    print(f"  cpu cores {os.cpu_count()}  torch threads {torch.get_num_threads()}  cuda {cuda}")
    print(
        f"  load average {load} (1, 5, 15 min; well above 0 on an idle machine: the CPU is shared)"
    )
    sys.stdout.flush()  # before the progress lines on stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each (default 3)")
    parser.add_argument(
        "--steps",
        type=int,
        default=48,
        help="max_steps for (b) (default 48; the demo keeps its 12)",
    )
    parser.add_argument("--skip-demo", action="store_true", help="only run (b)")
    parser.add_argument(
        "--fixtures", default=str(FIXTURES), help="the built fixtures (default ./fixtures)"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.steps < 1:
        parser.error("--repeats and --steps must be at least 1")
    fixtures = Path(args.fixtures).resolve()
    if not (fixtures / MODEL / "config.json").exists() or not (fixtures / DATA).exists():
        print("error: fixtures missing; build them with `ci-runner fixtures`", file=sys.stderr)
        return 2

    print_environment()
    demo, ours, plain = [], [], []
    try:
        with tempfile.TemporaryDirectory(prefix="ci-runner-bench-") as tmp:
            scratch = Path(tmp)
            for i in range(args.repeats):
                if not args.skip_demo:
                    progress(f"(a) demo, run {i + 1}/{args.repeats}")
                    demo.append(bench_demo(scratch, fixtures, i))
                # Alternate which goes first so warm caches and drift favour neither.
                order = [("ours", bench_ours), ("plain", bench_plain)]
                for name, bench in order if i % 2 == 0 else order[::-1]:
                    progress(f"(b) {name}, {args.steps} steps, run {i + 1}/{args.repeats}")
                    row = bench(scratch, fixtures, args.steps, i)
                    (ours if name == "ours" else plain).append(row)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    n = f"median [min – max] of {args.repeats}"
    if demo:
        print_table(
            f"(a) offline demo end to end: ci-runner run {EXPERIMENT}"
            f" ({demo[0]['steps']} steps; {n})",
            ["phase", "wall s", "share of wall"],
            [["total", spread(demo, "wall_s", ".2f"), "100%"]]
            + [
                [label, spread(demo, key, ".2f"), f"{share(demo, key):.0%}"]
                for label, key in DEMO_ROWS
                if any(row[key] for row in demo)
            ],
        )
        print(
            f"  training's own train_runtime {spread(demo, 'runtime_s', '.2f')} s;"
            f" the rest of the training job is start-up, imports, loading and saving"
        )
    print_table(
        f"(b) SFT train throughput: {args.steps} steps, batch {BATCH_SIZE},"
        f" max_length {MAX_LENGTH} ({n})",
        ["script", "train tokens/s", "train runtime_s", "process wall s", "train tokens"],
        [
            [
                label,
                spread(rows, "tokens_per_s", ".0f"),
                spread(rows, "runtime_s", ".2f"),
                spread(rows, "process_s", ".2f"),
                str(int(median(rows, "train_tokens"))),
            ]
            for label, rows in (("train.py (ours)", ours), ("plain TRL", plain))
        ],
    )
    print_table(
        "each run (in the order run; a noisy run shows up here)",
        ["run", "demo wall s", "demo runtime_s", "ours tokens/s", "plain tokens/s", "ours/plain"],
        [
            [
                str(i + 1),
                f"{demo[i]['wall_s']:.2f}" if demo else "-",
                f"{demo[i]['runtime_s']:.2f}" if demo else "-",
                f"{ours[i]['tokens_per_s']:.0f}",
                f"{plain[i]['tokens_per_s']:.0f}",
                f"{ours[i]['tokens_per_s'] / plain[i]['tokens_per_s']:.3f}",
            ]
            for i in range(args.repeats)
        ],
    )
    ratio = median(ours, "tokens_per_s") / median(plain, "tokens_per_s")
    process_ratio = median(ours, "process_s") / median(plain, "process_s")
    print("\nratios")
    if demo:
        print(f"  demo overhead wall/runtime   {median(demo, 'overhead'):.1f}x")
    best = max(r["tokens_per_s"] for r in ours) / max(r["tokens_per_s"] for r in plain)
    print(f"  tokens/s ours/plain          {ratio:.3f}  (medians; 1.0 = wrapper costs nothing)")
    print(
        f"  tokens/s ours/plain, best    {best:.3f}  (fastest run of each; steadier on a busy CPU)"
    )
    print(f"  process wall ours/plain      {process_ratio:.3f}  (+ start-up, trackio finish, save)")
    if {row["train_tokens"] for row in ours} != {row["train_tokens"] for row in plain}:
        print(
            "  warning: the two scripts saw different token counts; the ratio is not like for like"
        )
    noisy = [
        label
        for label, rows, key in (
            ("demo", demo, "wall_s"),
            ("ours", ours, "tokens_per_s"),
            ("plain", plain, "tokens_per_s"),
        )
        if rows and max(r[key] for r in rows) > NOISY * min(r[key] for r in rows)
    ]
    if noisy:
        print(
            f"  warning: runs of {', '.join(noisy)} differ by more than {NOISY}x: the CPU was"
            " shared or busy; rerun on an idle machine or with more --repeats"
        )
    load = load_average()
    print(f"\nload average at the end {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
