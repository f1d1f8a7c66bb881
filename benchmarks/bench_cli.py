"""Benchmark the reading commands a person or CI waits on, against `hf --help`.

    .venv/bin/python benchmarks/bench_cli.py [--repeats N] [--warmup N]

Times ``ci-runner validate``, ``check-data``, ``plan`` and ``status`` on the offline demo
(``experiments/tiny-sft.yaml``) in a throwaway project, each in a fresh process, and
``hf --help`` (huggingface_hub's CLI, a Python CLI that does next to nothing) as the
yardstick: medians, their ratio to the yardstick, and each command's peak RSS.

Builds its own fixtures (``ci-runner fixtures``, needs the train extra). See
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import BenchError, load_average, print_table, progress

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENT = "experiments/tiny-sft.yaml"
YARDSTICK = "hf --help"
NOISY = 1.5  # max/min across repeats above which a command is flagged as noisy


@dataclass(frozen=True)
class Sample:
    wall_s: float
    peak_rss_mib: float
    output: str  # stdout and stderr together


def offline_env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def console_script(name: str) -> str:
    """The venv's own script (next to this interpreter), else the one on PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise BenchError(f"`{name}` not found next to {sys.executable} or on PATH")
    return found


def run_once(command: list[str], *, cwd: Path) -> Sample:
    """Run to completion in a fresh process: wall seconds and that process's peak RSS.

    ``os.wait4`` gives the child's own resource usage, so each run's ``ru_maxrss`` is
    its own (``RUSAGE_CHILDREN`` would keep the largest child so far).
    """
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(command, cwd=cwd, env=offline_env(), stdout=out, stderr=out)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        output = out.read().decode(errors="replace")
    if proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-20:])
        raise BenchError(f"{' '.join(command)} exited with {proc.returncode}:\n{tail}")
    # Linux reports KiB, macOS bytes.
    rss = usage.ru_maxrss / (1024 * 1024) if sys.platform == "darwin" else usage.ru_maxrss / 1024
    return Sample(wall, rss, output)


def make_project(scratch: Path) -> Path:
    """A fresh project: the demo experiment, fixtures built by ci-runner, one ledger."""
    root = scratch / "project"
    (root / "experiments").mkdir(parents=True)
    shutil.copy(ROOT / EXPERIMENT, root / EXPERIMENT)
    command = [console_script("ci-runner"), "--root", str(root), "fixtures"]
    proc = subprocess.run(command, cwd=root, env=offline_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchError(
            f"`ci-runner fixtures` failed (is the train extra installed?):\n{proc.stderr[-2000:]}"
        )
    seed_ledger(root)
    return root


def seed_ledger(root: Path) -> None:
    """One completed run of the demo, so ``status`` has a ledger to read (no training)."""
    from ci_runner.ledger.model import Attempt, JobState, Ledger, Run, RunStatus, TrainMetrics
    from ci_runner.ledger.store import save_ledger
    from ci_runner.paths import Project, report_stem
    from ci_runner.spec.load import load_experiment

    experiment = load_experiment(root / EXPERIMENT, root=root)
    project = Project(root)
    stem = report_stem(experiment.base_model, experiment.dataset.path, experiment.method)
    steps = int(experiment.hyperparameters.get("max_steps", 12))
    run = Run(
        run_id=f"{experiment.name}-bench",
        experiment=experiment.name,
        title=experiment.name,
        method=experiment.method,
        spec_hash="bench",
        created_at="2026-01-01T00:00:00Z",
        status=RunStatus.COMPLETED,
        backend="local",
        hardware="local",
        base_model=experiment.base_model,
        dataset=experiment.dataset.path,
        dataset_split=experiment.dataset.split,
        hyperparameters=dict(experiment.hyperparameters),
        output_dir=str(project.runs_dir / "bench"),
        tracking_project=experiment.name,
        tracking_run="bench",
        attempts=[
            Attempt(
                number=1,
                backend="local",
                job_id="local-bench",
                submitted_at="2026-01-01T00:00:00Z",
                finished_at="2026-01-01T00:00:30Z",
                state=JobState.COMPLETED,
                exit_code=0,
            )
        ],
        metrics=TrainMetrics(
            step=steps,
            max_steps=steps,
            final_loss=5.5,
            loss_curve=[(s, 6.3 - s / steps) for s in range(1, steps + 1)],
        ),
        phase="done",
    )
    ledger = Ledger(
        experiment=experiment.name,
        spec_path=EXPERIMENT,
        report_path=project.relative(project.report_path(stem)),
        base_model=experiment.base_model,
        dataset=experiment.dataset.path,
        method=experiment.method,
        runs=[run],
    )
    save_ledger(project.ledger_path(stem), ledger)


def commands(root: Path) -> dict[str, list[str]]:
    ci = [console_script("ci-runner"), "--root", str(root)]
    return {
        YARDSTICK: [console_script("hf"), "--help"],
        "validate": [*ci, "validate", EXPERIMENT],
        "check-data": [*ci, "check-data", EXPERIMENT],
        "plan": [*ci, "plan", EXPERIMENT],
        "status": [*ci, "status"],
    }


# --- output ------------------------------------------------------------------------


def print_environment() -> None:
    from importlib.metadata import version

    print("environment")
    print(
        f"  python {platform.python_version()}  ci-runner {version('ci-runner')}  "
        f"huggingface_hub {version('huggingface_hub')}"
    )
    print(f"  cpu cores {os.cpu_count()}  load average {load_average()} (1, 5, 15 min)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each (default 5)")
    parser.add_argument(
        "--warmup", type=int, default=1, help="untimed runs of each first (default 1)"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be at least 1 and --warmup at least 0")
    sys.stdout.reconfigure(line_buffering=True)  # keep stdout in step with progress on stderr

    print_environment()
    samples: dict[str, list[Sample]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="ci-runner-bench-cli-") as tmp:
            progress("building the fixtures and a project")
            root = make_project(Path(tmp))
            todo = commands(root)
            samples = {name: [] for name in todo}
            for i in range(args.warmup + args.repeats):
                timed = i >= args.warmup
                label = f"run {i - args.warmup + 1}/{args.repeats}" if timed else "warm-up"
                progress(label)
                # Round-robin, so drift in the machine's load touches every command alike.
                for name, command in todo.items():
                    sample = run_once(command, cwd=root)
                    if timed:
                        samples[name].append(sample)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    yard = statistics.median(s.wall_s for s in samples[YARDSTICK])
    rows = []
    for name, runs in samples.items():
        walls = [s.wall_s for s in runs]
        wall = statistics.median(walls)
        rows.append(
            [
                name if name == YARDSTICK else f"ci-runner {name}",
                f"{wall:.3f}",
                f"[{min(walls):.3f} – {max(walls):.3f}]",
                f"{wall / yard:.2f}x",
                f"{statistics.median(s.peak_rss_mib for s in runs):.0f}",
            ]
        )
    print_table(
        f"wall seconds per command, fresh process each, {EXPERIMENT} "
        f"(median of {args.repeats}, after {args.warmup} warm-up)",
        ["command", "median s", "[min – max]", f"vs {YARDSTICK}", "peak RSS MiB"],
        rows,
    )
    check = samples["check-data"]
    print(f"\ncheck-data peak RSS {max(s.peak_rss_mib for s in check):.0f} MiB (max of runs)")
    # How it counted: "tokens (model tokenizer)" or "tokens (estimated at 4 chars/token)".
    lengths = [line for line in check[-1].output.splitlines() if line.startswith("Lengths ")]
    print(f"check-data counted: {lengths[0] if lengths else 'no length line (unexpected)'}")
    noisy = [
        name
        for name, runs in samples.items()
        if max(s.wall_s for s in runs) > NOISY * min(s.wall_s for s in runs)
    ]
    if noisy:
        print(
            f"warning: runs of {', '.join(noisy)} differ by more than {NOISY}x: the CPU was"
            " shared or busy; rerun on an idle machine or with more --repeats"
        )
    print(f"load average at the end {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
