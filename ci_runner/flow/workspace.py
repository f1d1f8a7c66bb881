"""One project as the flow sees it: its files, its backends, its clock, its locks."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ci_runner.core.durations import utc_now
from ci_runner.core.files import locked
from ci_runner.core.jobs import Backend, BackendName
from ci_runner.errors import BackendError, SpecIssue
from ci_runner.ledger.model import Ledger, Run
from ci_runner.paths import Project
from ci_runner.spec.load import load_experiment
from ci_runner.spec.model import Experiment, RaySpec

# Called when a run's evaluation closes; returns the run with what it did recorded.
# ``publish`` supplies the model-card push, so the flow never imports publish.
EvaluatedHook = Callable[[Ledger, Run], Run]


@dataclass
class Workspace:
    project: Project
    backends: dict[str, Backend] = field(default_factory=dict)
    now: Callable[[], str] = utc_now
    on_evaluated: EvaluatedHook | None = None
    # The `ray:` settings of the last file loaded that runs on Ray: its address (unless
    # RAY_ADDRESS names one) and how its jobs get their environment.
    ray: RaySpec | None = None

    @property
    def root(self) -> Path:
        return self.project.root

    def backend(self, name: str) -> Backend:
        """The named backend, built on first use (HF Jobs needs a token then, not before)."""
        if name not in self.backends:
            if name == BackendName.LOCAL:
                from ci_runner.backend.local import LocalBackend

                env = {"TRACKIO_DIR": str(self.project.trackio_dir)}
                self.backends[name] = LocalBackend(
                    self.project.jobs_dir, cwd=self.project.root, env=env
                )
            elif name == BackendName.HF_JOBS:
                from ci_runner.backend.hf_jobs import from_environment

                self.backends[name] = from_environment(self.project.root)
            elif name == BackendName.RAY:
                from ci_runner.backend import ray_jobs

                ray = self.ray or self._ray_from_files()
                self.backends[name] = ray_jobs.from_environment(
                    self.project.root, address=ray.address, environment=ray.environment
                )
            else:
                raise BackendError(f"unknown backend {name!r}; use local, hf-jobs or ray")
        return self.backends[name]

    def _ray_from_files(self) -> RaySpec:
        """A poll that loaded no file still finds the cluster a file names."""
        for path in sorted((self.root / "experiments").glob("*.y*ml")):
            text = path.read_text(encoding="utf-8", errors="replace")
            if "ray" not in text:
                continue
            with contextlib.suppress(Exception):
                experiment = load_experiment(path, None, root=self.project.root, warnings=[])
                if experiment.backend == BackendName.RAY.value and experiment.ray is not None:
                    return experiment.ray
        return RaySpec()

    def wait_for_news(self, runs: list[Run], timeout_s: float) -> None:
        """Sleep until one of the runs' local jobs ends, or ``timeout_s``.

        Local jobs tell us through their files, so a demo never waits out a whole poll
        interval; runs elsewhere are simply waited for.
        """
        from ci_runner.flow.poll import live_job_ids

        local = [j for r in runs if r.backend == BackendName.LOCAL for j in live_job_ids(r)]
        if not local:
            time.sleep(timeout_s)
            return
        backend = self.backend(BackendName.LOCAL)
        wait = getattr(backend, "wait", None)
        if wait is None:
            time.sleep(timeout_s)
        else:
            wait(local, timeout_s)

    def hf_token(self) -> str | None:
        """The token for private trackio Spaces (the same one HF Jobs uses)."""
        import os

        return os.environ.get("HF_TOKEN") or None

    @contextlib.contextmanager
    def lock(self, stem: str) -> Iterator[None]:
        """Held while an experiment's ledger is read, acted on and written."""
        with locked(self.project.state_dir / "locks" / f"{stem}.lock"):
            yield

    def load(
        self,
        spec_path: Path | str,
        *,
        backend: str | None = None,
        warnings: list[str] | None = None,
    ) -> Experiment:
        """An experiment file, checked against this project (paths, reward code)."""
        found: list[SpecIssue] = []
        experiment = load_experiment(
            spec_path,
            {"backend": backend} if backend else None,
            root=self.project.root,
            warnings=found,
        )
        if warnings is not None:
            warnings += [str(w) for w in found]
        if experiment.backend == BackendName.RAY.value:
            self.ray = experiment.ray or RaySpec()
            built = self.backends.get(BackendName.RAY)
            if built is not None and hasattr(built, "environment"):
                built.environment = self.ray.environment
        return experiment
