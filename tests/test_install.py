"""ci-runner as another repository uses it: installed (not editable, no extras) into a
fresh virtualenv, run in a git repo that holds nothing but ``experiments/x.yaml``.

``submit`` against the loopback HF Jobs server must start exactly one job, and that job
must carry train.py and its helpers from the installed package. The runner's own
dependencies come from this test environment (a path entry, so no network is needed);
ci-runner itself is the freshly built wheel, and the run must not import the ML stack.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from ci_runner.backend.hf_jobs import BUNDLE_ENV, CONFIG_ENV
from ci_runner.job_scripts import HELPERS, PACKAGE_DIR
from tests.conftest import HF_NAMESPACE, HF_TOKEN, copy_checkout
from tests.hf_jobs_server import unbundle
from tests.test_hf_jobs_backend import experiment_text

pytestmark = [pytest.mark.usefixtures("loopback_online"), pytest.mark.slow]

HEAVY = ("torch", "transformers", "trl", "datasets", "peft", "accelerate")


def run(*args: str | Path, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the checkout's wheel installed; dependencies on a path entry."""
    base = tmp_path_factory.mktemp("install")
    # Build from a copy of the files git knows: building in place would leave build/ and
    # an egg-info in the checkout (which pip then takes for an installed ci-runner).
    source = base / "source"
    copy_checkout(source)
    wheels = base / "wheels"
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    built = run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
        "-w", wheels, source, env=clean,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("ci_runner-*.whl")
    venv = base / "venv"
    assert run(sys.executable, "-m", "venv", "--without-pip", venv).returncode == 0
    site = Path(
        run(
            venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"
        ).stdout.strip()
    )
    # Dependencies (click, pydantic, huggingface_hub...) from this environment. A path
    # entry, not a site dir: its .pth files (the editable ci_runner among them) stay off.
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    pip = run(
        sys.executable, "-m", "pip", "--python", venv / "bin" / "python",
        "install", "--no-deps", "--no-index", wheel, env=clean,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr[-3000:]
    return venv


def test_a_repo_with_only_an_experiment_submits_one_job_carrying_train_py(installed, hf, tmp_path):
    repo = tmp_path / "their-repo"
    (repo / "experiments").mkdir(parents=True)
    (repo / "experiments" / "x.yaml").write_text(experiment_text("x"))
    for command in (
        ["git", "init", "-q"],
        ["git", "add", "."],
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "x"],
    ):
        assert run(*command, cwd=repo).returncode == 0
    probe = (
        "import atexit, runpy, sys\n"
        "import ci_runner\n"
        f"heavy = {HEAVY!r}\n"
        "atexit.register(lambda: print('PROBE', ci_runner.__file__, "
        "[m for m in heavy if m in sys.modules], file=sys.stderr))\n"
        "sys.argv = ['ci-runner', 'submit', 'experiments/x.yaml', '--json']\n"
        "runpy.run_module('ci_runner.cli', run_name='__main__')\n"
    )
    env = {
        **os.environ,
        "HF_TOKEN": HF_TOKEN,
        "HF_JOBS_NAMESPACE": HF_NAMESPACE,
        "PYTHONPATH": "",
        "HF_HUB_OFFLINE": "0",  # the loopback Hub and HF Jobs are reachable
    }
    result = run(installed / "bin" / "python", "-c", probe, cwd=repo, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    location, loaded = result.stderr.split("PROBE ", 1)[1].split(" ", 1)
    assert location.startswith(str(installed)), location  # the wheel, not this checkout
    assert loaded.strip() == "[]"  # no extras needed, no ML stack imported
    outcome = json.loads(result.stdout)
    creates = hf.requests_to("POST", rf"^/api/jobs/{HF_NAMESPACE}$")
    assert len(creates) == 1 and outcome["job_id"]
    environment = creates[0].json["environment"]
    shipped = unbundle(environment[BUNDLE_ENV])
    assert set(shipped) >= {"train.py", *HELPERS}
    assert shipped["train.py"] == (PACKAGE_DIR / "train.py").read_bytes()
    assert json.loads(environment[CONFIG_ENV])["method"] == "sft"
    assert not (repo / "job_scripts").exists()  # nothing copied into their repo
    again = run(installed / "bin" / "python", "-c", probe, cwd=repo, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(hf.requests_to("POST", rf"^/api/jobs/{HF_NAMESPACE}$")) == 1  # idempotent
