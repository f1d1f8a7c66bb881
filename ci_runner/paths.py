"""Where things live in a project checkout.

Reports and ledgers are committed (``training_reports/``); job logs, checkpoints,
the trackio store and built fixtures are local scratch (``.ci-runner/``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ci_runner.job_scripts import JobScript, locate

REPORTS_DIR = "training_reports"
STATE_DIR = ".ci-runner"  # local scratch: jobs, runs, trackio store, locks
LEDGER_SUFFIX = ".ledger.json"
INDEX_NAME = "README.md"


def slug(ref: str) -> str:
    """``Qwen/Qwen3-0.6B`` → ``qwen3-0.6b``; ``./data/chat.jsonl`` → ``chat``."""
    name = ref.rstrip("/").rsplit("/", 1)[-1]
    name = re.sub(r"\.(jsonl|json|parquet|csv|txt|arrow)$", "", name)
    return re.sub(r"[^a-z0-9.]+", "-", name.lower()).strip("-.") or "model"


def report_stem(base_model: str, dataset: str, method: str) -> str:
    return f"{slug(base_model)}-{slug(dataset)}-{method}"


@dataclass(frozen=True)
class Project:
    root: Path

    @property
    def reports_dir(self) -> Path:
        return self.root / REPORTS_DIR

    @property
    def state_dir(self) -> Path:
        """``.ci-runner/``: what this checkout keeps and never commits."""
        return self.root / STATE_DIR

    @property
    def jobs_dir(self) -> Path:
        return self.state_dir / "jobs"

    @property
    def runs_dir(self) -> Path:
        return self.state_dir / "runs"

    @property
    def trackio_dir(self) -> Path:
        return self.state_dir / "trackio"

    def job_script(self, name: str) -> JobScript:
        """The project's own ``job_scripts/<name>``, else the one shipped with ci-runner."""
        return locate(name, self.root)

    def ledger_path(self, stem: str) -> Path:
        return self.reports_dir / f"{stem}{LEDGER_SUFFIX}"

    def report_path(self, stem: str) -> Path:
        return self.reports_dir / f"{stem}.md"

    @property
    def index_path(self) -> Path:
        """The index across experiments (``report/index.py``)."""
        return self.reports_dir / INDEX_NAME

    def plot_path(self, stem: str, figure: str = "loss") -> Path:
        """A report's figure (``report/figures.py``): ``<stem>.loss.svg``, ``<stem>.<key>.svg``."""
        return self.reports_dir / f"{stem}.{figure}.svg"

    def ledger_paths(self) -> list[Path]:
        return sorted(self.reports_dir.glob(f"*{LEDGER_SUFFIX}"))

    def relative(self, path: Path) -> str:
        try:
            return str(path.resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(path)
