"""Run action.yml's steps in order, in a simulated GitHub Actions runner.

What is real: the ``run:`` scripts, run as GitHub runs them (``bash --noprofile --norc
-eo pipefail``, in $GITHUB_WORKSPACE, with the step's ``env:``), and the files the runner
provides ($GITHUB_OUTPUT per step, $GITHUB_STEP_SUMMARY, $GITHUB_EVENT_PATH,
$RUNNER_TEMP). What is simulated, and noted in ``skipped``: ``uses:`` steps
(actions/setup-python answers with an interpreter that is this test's Python), and
``pip install``, which the interpreter records instead of downloading.

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
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ACTION = ROOT / "action.yml"
EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")

# Stands in for setup-python's interpreter and for the venv made from it.
PYTHON_SHIM = """#!/usr/bin/env bash
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  mkdir -p "$3/bin" && cp "$0" "$3/bin/python" && exit 0
fi
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
  echo "${*:3}" >> "%(log)s"
  echo "[harness] pip ${*:3} (simulated)"
  exit 0
fi
exec "%(python)s" "$@"
"""


@dataclass
class ActionRun:
    exit_code: int
    outputs: dict[str, str]
    summary: str
    log: str
    skipped: list[str] = field(default_factory=list)
    pip_installs: list[str] = field(default_factory=list)
    masked: list[str] = field(default_factory=list)


def load_action() -> dict:
    return yaml.safe_load(ACTION.read_text())


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
    def __init__(self, inputs: dict[str, str], env: dict[str, str], temp: Path):
        self.inputs, self.env, self.temp = inputs, env, temp
        self.steps: dict[str, dict[str, str]] = {}

    def value(self, expr: str) -> str:
        if m := re.fullmatch(r"inputs\.([\w-]+)|inputs\['([\w-]+)'\]", expr):
            return self.inputs[m[1] or m[2]]
        if expr == "github.action_path":
            return str(ROOT)
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
) -> ActionRun:
    action = load_action()
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

    temp = tmp / "runner-temp"
    temp.mkdir(parents=True, exist_ok=True)
    event_path = tmp / "event.json"
    event_path.write_text(json.dumps(event or {}))
    summary = tmp / "step-summary.md"
    summary.touch()
    pip_log = tmp / "pip-installs.txt"
    shim = tmp / "python-shim"
    shim.write_text(PYTHON_SHIM % {"log": pip_log, "python": sys.executable})
    shim.chmod(0o755)

    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_"))}
    base_env.update(
        {
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_WORKSPACE": str(workspace),
            "GITHUB_EVENT_NAME": event_name,
            "GITHUB_EVENT_PATH": str(event_path),
            "GITHUB_STEP_SUMMARY": str(summary),
            "GITHUB_REPOSITORY": "acme/models",
            "GITHUB_SERVER_URL": "https://github.example",
            "GITHUB_API_URL": "https://api.github.example",
            "GITHUB_ACTION_PATH": str(ROOT),
            "RUNNER_TEMP": str(temp),
            "RUNNER_OS": "Linux",
            **(env or {}),
        }
    )
    ctx = Context(given, base_env, temp)
    run = ActionRun(exit_code=0, outputs={}, summary="", log="")
    for index, step in enumerate(action["runs"]["steps"]):
        assert "if" not in step, "the harness does not evaluate step conditions"
        step_id = step.get("id", f"step{index}")
        if "uses" in step:
            run.skipped.append(step["uses"])
            if step["uses"].startswith("actions/setup-python@"):
                ctx.steps[step_id] = {"python-path": str(shim), "python-version": "3.11"}
            continue
        assert step.get("shell") == "bash", "composite run steps must name their shell"
        assert "${{" not in step["run"], f"step {step_id}: expression interpolated into run:"
        output_file = tmp / f"output-{index}"
        output_file.write_text("")
        script = tmp / f"step-{index}.sh"
        script.write_text(step["run"])
        step_env = {k: ctx.sub(v) for k, v in (step.get("env") or {}).items()}
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=workspace,
            env={**base_env, **step_env, "GITHUB_OUTPUT": str(output_file)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        run.log += proc.stdout + proc.stderr
        ctx.steps[step_id] = parse_output_file(output_file.read_text())
        if proc.returncode != 0:
            run.exit_code = proc.returncode
            break
    run.outputs = {name: ctx.sub(spec["value"]) for name, spec in action["outputs"].items()}
    run.summary = summary.read_text()
    run.pip_installs = pip_log.read_text().splitlines() if pip_log.exists() else []
    run.masked = re.findall(r"^::add-mask::(.*)$", run.log, flags=re.M)
    return run
