"""The code that runs inside a job, shipped with ci-runner: see README.md in this folder.

The repository keeps it at the top level (``job_scripts/``); ``ci_runner/job_scripts`` links
here, so the wheel carries it as ``ci_runner.job_scripts`` and the runner imports the
protocol and shaping helpers the jobs use. Helpers import only the standard library at the
top (heavy libraries inside functions): the runner imports them without the ML stack.
"""

from __future__ import annotations

import base64
import gzip
import io
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = "job_scripts"  # a project's own overrides, relative to its root
ENTRY_SCRIPTS = ("train.py", "evaluate.py", "export_gguf.py", "check_data.py")
LOCAL_SCRIPTS = ("evaluate_many.py",)  # entry scripts that import an entry script beside them
HELPERS = (
    "protocol.py",
    "job_config.py",
    "shaping.py",
    "curves.py",
    "train_data.py",
    "train_args.py",
    "mlflow_store.py",
    "rewards.py",
    "evaluate_tasks.py",
    "evaluate_humaneval.py",
    "evaluate_gsm8k.py",
    "evaluate_pipeline.py",
    "export_convert.py",
    "export_quantize.py",
    "export_hub.py",
    "processes.py",
    "sandbox.py",
    "sandbox_secrets.py",
    "sandbox_host.py",
    "sandbox_launch.py",
    "sandbox_child.py",
)


@dataclass(frozen=True)
class JobScript:
    """An entry script, and whether it is the project's own copy or the packaged one."""

    name: str
    path: Path
    overridden: bool

    @property
    def origin(self) -> str:
        return f"project ({PROJECT_DIR}/{self.name})" if self.overridden else "ci-runner"


def locate(name: str, root: Path | None = None) -> JobScript:
    """The project's ``job_scripts/<name>`` if it has one, else the packaged script."""
    known = (*ENTRY_SCRIPTS, *LOCAL_SCRIPTS)
    if name not in known:
        raise ValueError(f"unknown job script {name!r}; known: {', '.join(known)}")
    packaged = PACKAGE_DIR / name
    own = root / PROJECT_DIR / name if root is not None else None
    # ci-runner's own checkout keeps these very files in job_scripts/: not an override
    if own is not None and own.is_file() and own.resolve() != packaged.resolve():
        return JobScript(name, own, overridden=True)
    return JobScript(name, packaged, overridden=False)


def bundle_files(script: Path) -> dict[str, bytes]:
    """The script and the helpers it imports: the script's siblings win over ours."""
    files = {script.name: script.read_bytes()}
    for helper in HELPERS:
        own = script.parent / helper
        files[helper] = (own if own.is_file() else PACKAGE_DIR / helper).read_bytes()
    return files


_HEADER = re.compile(r"^# /// script\n(?P<body>(?:#.*\n)*?)# ///\s*$", re.MULTILINE)
_DEPENDENCIES = re.compile(r"dependencies\s*=\s*\[(?P<items>.*?)\]", re.DOTALL)


def script_dependencies(script: Path) -> list[str]:
    """The ``dependencies`` of a script's PEP 723 header, in order (``uv`` reads the same)."""
    header = _HEADER.search(script.read_text(encoding="utf-8"))
    if header is None:
        return []
    body = "\n".join(line[1:].strip() for line in header["body"].splitlines())
    listed = _DEPENDENCIES.search(body)
    return re.findall(r'"([^"]+)"', listed["items"]) if listed else []


def bundle_b64(script: Path, extra: Mapping[str, bytes] | None = None) -> str:
    """A reproducible ``tar.gz`` of ``bundle_files`` (plus ``extra`` files, e.g. a launch
    config), base64-encoded for a job's env."""
    files = {**bundle_files(script), **(extra or {})}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    packed = gzip.compress(raw.getvalue(), mtime=0)
    return base64.b64encode(packed).decode()
