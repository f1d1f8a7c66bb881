"""Shared pytest fixtures. Keep each fixture self-contained: several files use this."""

from __future__ import annotations

import os
import socket
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

# Job scripts import their helpers (protocol, shaping, sandbox) as top-level siblings, as
# they do inside a job; tests that load a script as a module find them the same way.
sys.path.append(str(Path(__file__).resolve().parents[1] / "ci_runner" / "job_scripts"))

# Nothing in the suite may reach the real Hub: sizing a Hub model would otherwise
# retry against an unreachable huggingface.co. Tests of the HF API use a loopback fake.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


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
    from ci_runner.fixtures import build_fixtures

    paths = build_fixtures(tmp_path_factory.mktemp("tiny-fixtures"))
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
