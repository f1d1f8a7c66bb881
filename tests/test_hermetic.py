"""The suite never sees the user's caches or stores: a model config cached in
``~/.cache/huggingface`` once turned a plan's "size unknown" into a sized one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = "qwen3-codeforces-sft.yaml"
STORE_ENV = (
    "HF_HOME",
    "HF_HUB_CACHE",
    "HF_DATASETS_CACHE",
    "TRACKIO_DIR",
    "MLFLOW_TRACKING_URI",
)


def poisoned_home(home: Path) -> Path:
    """A home whose Hugging Face cache holds Qwen3-0.6B's real config.json."""
    repo = home / ".cache" / "huggingface" / "hub" / "models--Qwen--Qwen3-0.6B"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    shutil.copy(
        ROOT / "tests" / "model_configs" / "Qwen3-0.6B" / "config.json", repo / "snapshots" / commit
    )
    return home


def plan(project: Path, env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "ci_runner.cli", "plan", f"experiments/{EXAMPLE}"]
        + ["--skip-data-check", "--json"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["plan"]


def test_a_test_never_sees_the_users_hugging_face_cache(tmp_path):
    project = tmp_path / "project"
    (project / "experiments").mkdir(parents=True)
    shutil.copy(ROOT / "experiments" / EXAMPLE, project / "experiments")
    home = poisoned_home(tmp_path / "home")
    env = {**os.environ, "HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("XDG_CACHE_HOME", None)

    # Without the suite's own stores, the cached config sizes the model...
    bare = {k: v for k, v in env.items() if k not in STORE_ENV}
    assert plan(project, bare)["params_source"] == "Hub config.json"
    # ...with them (what every test and the processes it starts inherit), it is unknown.
    assert plan(project, env)["params"] is None


def test_each_test_has_its_own_stores(own_stores):
    from huggingface_hub import constants

    home = Path.home().resolve()
    for key in STORE_ENV:
        assert os.environ[key] == own_stores[key]
        location = Path(own_stores[key].removeprefix("sqlite:///")).resolve()
        assert home not in location.parents, key
    assert own_stores["HF_HUB_CACHE"] == constants.HF_HUB_CACHE  # in this process too


def test_the_next_test_gets_other_stores(own_stores):
    """Stores are per test: nothing one test caches or logs reaches the next."""
    assert Path(own_stores["HF_HOME"]).parent.name.startswith("stores")
    assert not Path(own_stores["HF_HOME"]).exists()
