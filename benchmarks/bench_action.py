"""What a scheduled poll costs before it polls: the action's install, then one poll.

Each repeat works in a fresh directory, as a GitHub-hosted runner does: a new venv made
by the action's own install commands (``uv venv`` + ``uv pip install ACTION_PATH``, read
from action.yml), then ``ci-runner poll --json`` in a fresh copy of a project with one
experiment. The uv cache is warmed once first (what setup-uv restores from the GitHub
Actions cache); ``--cold`` also times a repeat with an empty cache, and ``--pip`` the plain
``pip install`` the action used before, for the ratio.

    python benchmarks/bench_action.py [--repeats 3] [--cold] [--pip]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BenchError, load_average, print_table, progress  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 15.0
EXPERIMENT = (ROOT / "experiments" / "qwen3-codeforces-sft.yaml").read_text()


def install_script() -> str:
    """action.yml's install step, as it runs there."""
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    (step,) = [s for s in action["runs"]["steps"] if s.get("name", "").startswith("Install")]
    return str(step["run"])


def uv_binary() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if not found:
        raise BenchError("uv is not installed: pip install -e '.[dev]'")
    return found


def timed(args: list[str], *, env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(args[:3])}... failed:\n{proc.stdout}{proc.stderr}")
    return time.perf_counter() - started


def one_poll(work: Path, cache: Path, tools: Path, how: str) -> tuple[float, float]:
    """A fresh runner: install (``uv`` or ``pip``), then one poll. Seconds of each."""
    venv, project = work / "venv", work / "project"
    (project / "experiments").mkdir(parents=True)
    (project / "experiments" / "x.yaml").write_text(EXPERIMENT)
    python = str(Path(sys._base_executable).resolve())
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
        "PATH": f"{tools}:{os.environ.get('PATH', '')}",
        "UV_CACHE_DIR": str(cache),
        "PYTHON": python,
        "ACTION_PATH": str(ROOT),
        "EXTRAS": "",
        "VENV": str(venv),
        "HF_HUB_OFFLINE": "1",
    }
    if how == "uv":
        install = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", install_script()]
        install_s = timed(install, env=env, cwd=work)
    else:
        install_s = timed([python, "-m", "venv", str(venv)], env=env, cwd=work)
        install_s += timed(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(ROOT)],
            env=env,
            cwd=work,
        )
    poll = [str(venv / "bin" / "ci-runner"), "--root", str(project), "poll", "--json"]
    return install_s, timed(poll, env=env, cwd=project)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="also time an empty uv cache")
    parser.add_argument("--pip", action="store_true", help="also time plain pip (slow)")
    args = parser.parse_args()
    if not re.search(r"\buv pip install\b", install_script()):
        raise BenchError("action.yml no longer installs with uv: update this benchmark")
    print(f"load average before: {load_average()}")
    with tempfile.TemporaryDirectory(prefix="bench-action-") as tmp:
        base = Path(tmp)
        tools = base / "tools"
        tools.mkdir()
        (tools / "uv").symlink_to(uv_binary())
        cache = base / "uv-cache"
        rows, warm_totals = [], []
        progress("cold install (fills the uv cache, as the first run of a day does)")
        cold = one_poll(base / "cold", cache, tools, "uv")
        if args.cold:
            rows.append(["uv, empty cache", f"{cold[0]:.1f}", f"{cold[1]:.1f}", f"{sum(cold):.1f}"])
        for i in range(args.repeats):
            progress(f"warm repeat {i + 1}/{args.repeats}")
            install_s, poll_s = one_poll(base / f"warm-{i}", cache, tools, "uv")
            warm_totals.append(install_s + poll_s)
            rows.append(
                [f"uv, warm cache #{i + 1}", f"{install_s:.1f}", f"{poll_s:.1f}",
                 f"{install_s + poll_s:.1f}"]
            )  # fmt: skip
        pip_total = None
        if args.pip:
            progress("plain pip install (the action before)")
            install_s, poll_s = one_poll(base / "pip", base / "unused", tools, "pip")
            pip_total = install_s + poll_s
            rows.append(["pip, no cache", f"{install_s:.1f}", f"{poll_s:.1f}", f"{pip_total:.1f}"])
        print_table(
            "install, then one poll, in a fresh directory (seconds)",
            ["how", "install", "poll", "total"],
            rows,
        )
        median = statistics.median(warm_totals)
        print("\nratios")
        print(f"  warm install + poll / goal ({GOAL_S:.0f} s): {median / GOAL_S:.2f}")
        if pip_total is not None:
            print(f"  warm install + poll / plain pip: {median / pip_total:.2f}")
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    try:
        main()
    except BenchError as exc:
        sys.exit(f"error: {exc}")
