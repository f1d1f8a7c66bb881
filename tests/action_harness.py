"""Run action.yml's steps in order, in a simulated GitHub Actions runner.

What is real: the ``run:`` scripts, run as GitHub runs them (``bash --noprofile --norc
-eo pipefail``, in $GITHUB_WORKSPACE, with the step's ``env:``), and the files the runner
provides ($GITHUB_OUTPUT per step, $GITHUB_STEP_SUMMARY, $GITHUB_EVENT_PATH,
$RUNNER_TEMP). ``uses:`` steps are noted in ``skipped`` and answered as they would be:
actions/setup-python with an interpreter, astral-sh/setup-uv with ``uv`` on the PATH and
its cache directory in ``UV_CACHE_DIR``.

Two installs: by default ``uv`` is a stand-in that records its arguments and makes a venv
whose ``python`` is this test's (fast, for tests of the commands). ``install="real"``
runs the real uv against the package index into a real venv from ``action_path``, as a
GitHub-hosted runner does (the runner-like tests); ``preexec`` then runs every step as
another user (tests/unprivileged.py).

The log is read as the runner reads it: :func:`live_commands` lists the lines the runner
would take as workflow commands, honouring ``::stop-commands::``.

Expressions are evaluated for the contexts an action may use here (inputs, github,
runner, steps, env); any other expression fails the test, so action.yml cannot grow one
this harness does not understand.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ACTION = ROOT / "action.yml"
EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")

# Stands in for uv: `uv venv ... DIR` makes DIR/bin/python this test's Python; `uv pip
# install` is recorded, not run.
UV_SHIM = """#!/usr/bin/env bash
if [ "$1" = "venv" ]; then
  dir="${@: -1}"
  mkdir -p "$dir/bin"
  cat > "$dir/bin/python" <<'PY'
#!/usr/bin/env bash
exec "%(python)s" "$@"
PY
  chmod +x "$dir/bin/python"
  exit 0
fi
if [ "$1" = "pip" ]; then
  echo "${*:2}" >> "%(log)s"
  echo "[harness] uv $* (simulated)"
  exit 0
fi
echo "[harness] the uv stand-in does not know: $*" >&2
exit 1
"""
SETUP_PYTHON = "actions/setup-python@"
SETUP_UV = "astral-sh/setup-uv@"


@dataclass
class ActionRun:
    exit_code: int
    outputs: dict[str, str]
    summary: str
    log: str
    skipped: list[str] = field(default_factory=list)
    pip_installs: list[str] = field(default_factory=list)
    masked: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # lines the runner takes as commands
    step_seconds: list[float] = field(default_factory=list)


def live_commands(log: str) -> list[str]:
    """The log lines a GitHub runner would execute as workflow commands."""
    live, stopped_until = [], None
    for line in log.splitlines():
        if not line.startswith("::"):
            continue
        if stopped_until is not None:
            if line == f"::{stopped_until}::":
                stopped_until = None
            continue
        if m := re.fullmatch(r"::stop-commands::(.+)", line):
            stopped_until = m[1]
            continue
        live.append(line)
    return live


def load_action(action_path: Path = ROOT) -> dict:
    return yaml.safe_load((action_path / "action.yml").read_text())


def parse_output_file(text: str) -> dict[str, str]:
    """GITHUB_OUTPUT: ``name=value`` lines and ``name<<DELIM`` heredocs."""
    outputs: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            end = lines.index(delim, i + 1)
            outputs[name] = "\n".join(lines[i + 1 : end])
            i = end + 1
            continue
        if "=" in line:
            name, value = line.split("=", 1)
            outputs[name] = value
        i += 1
    return outputs


class Context:
    def __init__(self, inputs: dict[str, str], env: dict[str, str], temp: Path, action: Path):
        self.inputs, self.env, self.temp, self.action = inputs, env, temp, action
        self.steps: dict[str, dict[str, str]] = {}

    def value(self, expr: str) -> str:
        if m := re.fullmatch(r"inputs\.([\w-]+)|inputs\['([\w-]+)'\]", expr):
            return self.inputs[m[1] or m[2]]
        if expr == "github.action_path":
            return str(self.action)
        if expr == "runner.temp":
            return str(self.temp)
        if m := re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", expr):
            return self.steps.get(m[1], {}).get(m[2], "")
        if m := re.fullmatch(r"env\.(\w+)", expr):
            return self.env.get(m[1], "")
        raise AssertionError(f"action.yml uses an expression the harness does not know: {expr}")

    def sub(self, text: str) -> str:
        return EXPR.sub(lambda m: self.value(m[1]), str(text))


def run_action(
    inputs: dict[str, str],
    *,
    workspace: Path,
    tmp: Path,
    event_name: str = "workflow_dispatch",
    event: dict | None = None,
    env: dict[str, str] | None = None,
    install: str = "simulated",
    action_path: Path = ROOT,
    uv_cache: Path | None = None,
    preexec: Callable[[], None] | None = None,
    repository: str = "acme/models",
    python: str | None = None,
    uv: Path | None = None,
) -> ActionRun:
    """Run action.yml's steps with these inputs, for this event, in ``workspace``."""
    action = load_action(action_path)
    given = {}
    for name, spec in action["inputs"].items():
        if name in inputs:
            given[name] = inputs[name]
        elif spec.get("required"):
            raise AssertionError(f"required input {name} not given")
        else:
            given[name] = str(spec.get("default", ""))
    unknown = set(inputs) - set(given)
    assert not unknown, f"inputs not declared in action.yml: {unknown}"

    tmp.mkdir(parents=True, exist_ok=True)
    temp = tmp / "runner-temp"
    temp.mkdir(parents=True, exist_ok=True)
    event_path = tmp / "event.json"
    event_path.write_text(json.dumps(event or {}))
    summary = tmp / "step-summary.md"
    summary.touch()
    tools = tmp / "tools"  # what setup-uv puts on the PATH
    tools.mkdir(exist_ok=True)
    pip_log = tmp / "uv-installs.txt"
    if install == "real":
        (tools / "uv").symlink_to(uv or Path(sys.executable).parent / "uv")
        python = python or str(Path(sys._base_executable).resolve())  # a real one, no venv
    else:
        shim = tools / "uv"
        shim.write_text(UV_SHIM % {"log": pip_log, "python": sys.executable})
        shim.chmod(0o755)
        python = sys.executable
    cache = uv_cache or tmp / "uv-cache"
    cache.mkdir(parents=True, exist_ok=True)
    for path in (tmp, temp, event_path, summary, cache):
        path.chmod(0o777 if path.is_dir() else 0o666)

    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_"))}
    base_env.update(
        {
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_WORKSPACE": str(workspace),
            "GITHUB_EVENT_NAME": event_name,
            "GITHUB_EVENT_PATH": str(event_path),
            "GITHUB_STEP_SUMMARY": str(summary),
            "GITHUB_REPOSITORY": repository,
            "GITHUB_SERVER_URL": "https://github.example",
            "GITHUB_API_URL": "https://api.github.example",
            "GITHUB_ACTION_PATH": str(action_path),
            "RUNNER_TEMP": str(temp),
            "RUNNER_OS": "Linux",
            **(env or {}),
        }
    )
    ctx = Context(given, base_env, temp, action_path)
    run = ActionRun(exit_code=0, outputs={}, summary="", log="")
    for index, step in enumerate(action["runs"]["steps"]):
        assert "if" not in step, "the harness does not evaluate step conditions"
        step_id = step.get("id", f"step{index}")
        if "uses" in step:
            run.skipped.append(step["uses"])
            for value in (step.get("with") or {}).values():
                ctx.sub(value)  # every expression must be one the harness knows
            if step["uses"].startswith(SETUP_PYTHON):
                ctx.steps[step_id] = {"python-path": python, "python-version": "3.11"}
            elif step["uses"].startswith(SETUP_UV):
                base_env["PATH"] = f"{tools}:{base_env.get('PATH', '')}"
                base_env["UV_CACHE_DIR"] = str(cache)
            continue
        assert step.get("shell") == "bash", "composite run steps must name their shell"
        assert "${{" not in step["run"], f"step {step_id}: expression interpolated into run:"
        output_file = tmp / f"output-{index}"
        output_file.write_text("")
        output_file.chmod(0o666)
        script = tmp / f"step-{index}.sh"
        script.write_text(step["run"])
        script.chmod(0o644)
        step_env = {k: ctx.sub(v) for k, v in (step.get("env") or {}).items()}
        started = time.monotonic()
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=workspace,
            env={**base_env, **step_env, "GITHUB_OUTPUT": str(output_file)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=600,
            preexec_fn=preexec,
        )
        run.step_seconds.append(time.monotonic() - started)
        run.log += proc.stdout
        ctx.steps[step_id] = parse_output_file(output_file.read_text())
        if proc.returncode != 0:
            run.exit_code = proc.returncode
            break
    run.outputs = {name: ctx.sub(spec["value"]) for name, spec in action["outputs"].items()}
    run.summary = summary.read_text()
    run.pip_installs = pip_log.read_text().splitlines() if pip_log.exists() else []
    run.masked = re.findall(r"^::add-mask::(.*)$", run.log, flags=re.M)
    run.commands = live_commands(run.log)
    return run
