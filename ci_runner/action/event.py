"""Which experiment files a run acts on: the input's names and globs, else the files the
triggering push or pull request changed, else every ``experiments/*.yaml``."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def payload(env: Mapping[str, str]) -> dict[str, Any]:
    """The event that triggered the workflow ($GITHUB_EVENT_PATH); empty when absent."""
    path = env.get("GITHUB_EVENT_PATH")
    if not path or not Path(path).is_file():
        return {}
    data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8") or "{}")
    return data


def changed_in_push(event: dict[str, Any]) -> list[str]:
    """Experiment files a push added or modified (and did not remove afterwards)."""
    files: list[str] = []
    for commit in event.get("commits") or []:
        for path in (commit.get("added") or []) + (commit.get("modified") or []):
            if path not in files:
                files.append(path)
        files = [f for f in files if f not in (commit.get("removed") or [])]
    return files


def changed_in_pull_request(root: Path, event: dict[str, Any]) -> list[str] | None:
    base = (event.get("pull_request") or {}).get("base", {}).get("sha")
    if not base:
        return None
    proc = subprocess.run(
        ["git", "diff", "--name-only", "--diff-filter=d", f"{base}...HEAD", "--", "experiments"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    return proc.stdout.split() if proc.returncode == 0 else None


def is_experiment(path: str) -> bool:
    parts = Path(path).parts
    return len(parts) == 2 and parts[0] == "experiments" and path.endswith((".yaml", ".yml"))


def experiment_files(
    root: Path, specs: list[str], event_name: str, event: dict[str, Any]
) -> list[str]:
    """The files to act on: the input's paths and globs, else the files the event changed."""
    if specs:
        found: list[str] = []
        for spec in specs:
            if "/" not in spec and not spec.endswith((".yaml", ".yml")):
                spec = f"experiments/{spec}.yaml"  # an experiment name
            if Path(spec).is_absolute():
                matches = [spec]
            else:
                matches = sorted(str(p.relative_to(root)) for p in root.glob(spec)) or [spec]
            found += [m for m in matches if m not in found]
        return found
    changed = None
    if event_name == "push":
        changed = changed_in_push(event)
    elif event_name == "pull_request":
        changed = changed_in_pull_request(root, event)
    if changed is None:
        changed = [str(p.relative_to(root)) for p in sorted(root.glob("experiments/*.y*ml"))]
    return [f for f in changed if is_experiment(f) and (root / f).is_file()]


def from_fork(event: dict[str, Any], repository: str | None) -> bool:
    """A pull request whose head lives in another repository: its token cannot write."""
    pr = event.get("pull_request") or {}
    head_repo = ((pr.get("head") or {}).get("repo") or {}).get("full_name")
    return bool(head_repo) and head_repo != repository
