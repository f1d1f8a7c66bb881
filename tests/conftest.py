"""Shared pytest fixtures. Keep each fixture self-contained: several files use this."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

# Job scripts import their helpers (protocol, shaping, sandbox) as top-level siblings, as
# they do inside a job; tests that load a script as a module find them the same way.
sys.path.append(str(Path(__file__).resolve().parents[1] / "job_scripts"))

# Nothing in the suite may reach the real Hub: sizing a Hub model would otherwise
# retry against an unreachable huggingface.co. Tests of the HF API use a loopback fake.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _store_env(home: Path) -> dict[str, str]:
    """Every cache and tracking store a test could read or write, under ``home``: never
    the user's ``~/.cache/huggingface`` (a cached model config changes a plan), trackio
    database or MLflow store."""
    (home / "mlflow").mkdir(parents=True, exist_ok=True)
    return {
        "HF_HOME": str(home / "hf-home"),
        "HF_HUB_CACHE": str(home / "hf-home" / "hub"),
        "HF_DATASETS_CACHE": str(home / "hf-home" / "datasets"),
        "TRACKIO_DIR": str(home / "trackio"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
    }


# Libraries read some of these once, at import (huggingface_hub's constants, datasets'
# config, trackio's storage): set them before any test imports one, for the session...
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="ci-runner-tests-"))
atexit.register(shutil.rmtree, _SESSION_HOME, ignore_errors=True)
os.environ.update(_store_env(_SESSION_HOME))
os.environ.pop("HF_TOKEN_PATH", None)


@pytest.fixture(autouse=True)
def own_stores(tmp_path_factory, monkeypatch):
    """...and give each test its own, which the processes it starts inherit; the
    module-level copies of libraries already imported are pointed there too."""
    env = _store_env(tmp_path_factory.mktemp("stores"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        hf_home = Path(env["HF_HOME"])
        for name, value in {
            "HF_HOME": hf_home,
            "HF_HUB_CACHE": env["HF_HUB_CACHE"],
            "HUGGINGFACE_HUB_CACHE": env["HF_HUB_CACHE"],
            "HF_ASSETS_CACHE": hf_home / "assets",
            "HUGGINGFACE_ASSETS_CACHE": hf_home / "assets",
            "HF_XET_CACHE": hf_home / "xet",
            "HF_TOKEN_PATH": hf_home / "token",
            "HF_STORED_TOKENS_PATH": hf_home / "stored_tokens",
        }.items():
            if hasattr(constants, name):
                monkeypatch.setattr(constants, name, str(value))
    for module in ("trackio.sqlite_storage", "trackio.utils"):
        loaded = sys.modules.get(module)
        if loaded is not None and hasattr(loaded, "TRACKIO_DIR"):
            monkeypatch.setattr(loaded, "TRACKIO_DIR", Path(env["TRACKIO_DIR"]))
    return env


@pytest.fixture
def loopback_online(monkeypatch):
    """Let huggingface_hub make requests again, for tests whose Hub is a loopback fake."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture(scope="session")
def tiny_fixtures(tmp_path_factory):
    """The offline tiny Llama and its three datasets, built once per test session (~4 s).

    Skips when the train extra (torch, transformers, sentencepiece) is not installed.
    """
    for module in ("torch", "transformers", "sentencepiece"):
        pytest.importorskip(module)
    from ci_runner.demo import build_demo

    paths = build_demo(tmp_path_factory.mktemp("tiny-fixtures"))
    # Projects link these fixtures in from outside their root: name it as a user would.
    os.environ["CI_RUNNER_ALLOWED_ROOTS"] = str(paths.model.parent)
    return paths


@pytest.fixture(scope="module")
def job_env(tmp_path_factory) -> dict[str, str]:
    """Offline env for the script, with trackio and HF caches kept in a temp dir."""
    root = tmp_path_factory.mktemp("train-env")
    env = dict(os.environ)
    env.pop("CI_RUNNER_RUN_CONFIG", None)
    env.update(
        TRACKIO_DIR=str(root / "trackio"),
        HF_HOME=str(root / "hf-home"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def copy_checkout(target) -> None:
    """The files git knows (tracked, or new and not ignored) copied to ``target``, links
    kept as links, as GitHub unpacks an action or a checkout: nothing built, no venv."""
    import os
    import shutil
    import subprocess

    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "-z"],
        capture_output=True,
        text=True,
        check=True,
    )
    for name in filter(None, listed.stdout.split("\0")):
        source, copy = ROOT / name, target / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the work tree, not yet in the index
        copy.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            copy.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, copy)


def make_project(root, fixtures_dir, *experiments: str):
    """A throwaway project checkout: its own experiments, reports and workspace.

    The built fixtures are linked in, not copied; job scripts come with the package.
    """
    import shutil

    (root / "experiments").mkdir(parents=True)
    (root / "fixtures").symlink_to(fixtures_dir)
    for name in experiments:
        shutil.copy(ROOT / "experiments" / name, root / "experiments" / name)
    return root


def cli(root, *args: str):
    """``ci-runner --root ROOT ARGS`` in a fresh process, as a user or CI would run it."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "ci_runner.cli", "--root", str(root), *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def hf(monkeypatch):
    """A loopback HF Jobs API (namespace ``alice``) and dataset viewer serving a small
    Capybara-shaped dataset, with huggingface_hub pointed at them."""
    from tests.dataset_viewer_server import FakeDatasetViewer
    from tests.hf_jobs_server import FakeHFJobs

    rows = [
        {
            "messages": [
                {"role": "user", "content": f"q{i}"},
                {"role": "assistant", "content": f"a{i}"},
            ]
        }
        for i in range(20)
    ]
    with (
        FakeHFJobs(
            namespace=HF_NAMESPACE, page_size=2, token=HF_TOKEN, stream_idle_close_s=0.05
        ) as server,
        FakeDatasetViewer() as viewer,
    ):
        viewer.add_dataset("trl-lib/Capybara", {"default": {"train": rows}})
        monkeypatch.setenv("HF_ENDPOINT", server.url)  # model sizing asks the fake too (404)
        monkeypatch.setenv("HF_DATASETS_SERVER", viewer.url)  # the pre-submit data check
        yield server


@pytest.fixture
def project(tmp_path):
    """An empty project checkout with its experiments/ folder."""
    from ci_runner.paths import Project

    (tmp_path / "experiments").mkdir()
    return Project(tmp_path)


HF_NAMESPACE = "alice"
HF_TOKEN = "hf_TOPSECRET_token_never_printed_0042"


@pytest.fixture
def listener():
    """A TCP server on loopback that records every connection it accepts."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    accepted: list[Any] = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            accepted.append(conn)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join(timeout=2)
    server.close()
