"""Pinning a run's inputs at submit, so a rerun trains on exactly the same bytes.

A Hub model or dataset is pinned to the commit sha its revision (default: the newest)
points at now: one ``model_info``/``dataset_info`` call per repo and file. The job loads
that sha, and the ledger and report record it. A local model or data file is pinned to a
hash of its content (``sha256:…``), which is recorded, not passed: the job reads the
path as it is.

A repo or revision the Hub says does not exist refuses the submit (exit 4, at the file's
line). A Hub that cannot be reached (offline, a mirror down) leaves the run unpinned,
with a warning: the job then loads the newest revision, as before pinning existed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ci_runner.core.hub import (
    CONTENT_HASH_PREFIX,
    hub_api,
    is_hub_commit,
    is_local_path,
    local_path,
)
from ci_runner.errors import SpecError, SpecIssue
from ci_runner.spec.model import Experiment

# Local models: what identifies the weights without reading gigabytes twice. Files under
# this size are hashed whole; larger ones by name, size and their safetensors header.
WHOLE_FILE_LIMIT = 256 * 2**20
MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors.index.json")


@dataclass(frozen=True)
class Pins:
    """What a run's inputs were pinned to: a Hub commit sha, or a local content hash."""

    base_model: str | None = None
    dataset: str | None = None

    def for_job(self) -> dict[str, Any]:
        """The revisions a job passes to ``from_pretrained``/``load_dataset``: Hub shas."""
        return {
            "base_model_revision": self.base_model if is_hub_commit(self.base_model) else None,
            "dataset_revision": self.dataset if is_hub_commit(self.dataset) else None,
        }


class PinCache:
    """One Hub call per repo and revision for a whole file (a matrix shares its model)."""

    def __init__(self, root: Path, api: Any | None = None, token: str | None = None) -> None:
        self.root = root
        self._api = api
        self._token = token
        self._known: dict[tuple[str, str, str | None], str | None] = {}
        self.warnings: list[str] = []

    @property
    def api(self) -> Any:
        if self._api is None:
            self._api = hub_api(self._token)
        return self._api

    def pins(self, experiment: Experiment, *, spec_path: str, pin_model: bool = True) -> Pins:
        """``pin_model`` False: the base is another run's output, pinned by that run."""
        model = None
        if pin_model:
            model = self._pin(
                "model", experiment.base_model, experiment.base_model_revision, spec_path
            )
        dataset = None
        if experiment.dataset is not None:
            ds = experiment.dataset
            dataset = self._pin("dataset", ds.path, ds.revision, spec_path)
        return Pins(model, dataset)

    def older_dataset_revision(self, experiment: Experiment, pinned: str | None) -> str | None:
        """The dataset commit the job will load, when it is not the newest one (which is
        all the dataset viewer serves); None when the newest is what the job loads."""
        ds = experiment.dataset
        if ds is None or pinned is None or is_local_path(ds.path) or not is_hub_commit(pinned):
            return None
        key = ("dataset", ds.path, None)
        if key not in self._known:  # known already when the pin was just taken from it
            self._known[key] = self._hub_sha("dataset", ds.path, None, "")
        return None if self._known[key] == pinned else pinned

    def _pin(self, kind: str, ref: str, revision: str | None, spec_path: str) -> str | None:
        key = (kind, ref, revision)
        if key not in self._known:
            if is_local_path(ref):
                self._known[key] = content_hash(local_path(ref, self.root), model=kind == "model")
            else:
                self._known[key] = self._hub_sha(kind, ref, revision, spec_path)
        return self._known[key]

    def _hub_sha(self, kind: str, repo: str, revision: str | None, spec_path: str) -> str | None:
        from huggingface_hub.errors import (
            GatedRepoError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        info = self.api.model_info if kind == "model" else self.api.dataset_info
        try:
            sha = info(repo, revision=revision).sha
        except RevisionNotFoundError:
            raise _not_found(spec_path, kind, f"{repo} has no revision {revision!r}") from None
        except GatedRepoError:
            raise _not_found(
                spec_path, kind, f"{repo} is gated: accept its terms on the Hub, set HF_TOKEN"
            ) from None
        except RepositoryNotFoundError:
            raise _not_found(
                spec_path, kind, f"no {kind} {repo} on the Hub (or it is private: set HF_TOKEN)"
            ) from None
        except Exception as exc:  # noqa: BLE001 - unreachable: train unpinned, say so
            self.warnings.append(
                f"could not pin {kind} {repo} ({type(exc).__name__}); the job loads its "
                "newest revision. Name one to pin it: "
                + ("base_model: org/name@<commit>" if kind == "model" else "dataset.revision")
            )
            return None
        return str(sha) if sha else None


def _not_found(spec_path: str, kind: str, message: str) -> SpecError:
    field = "base_model" if kind == "model" else "dataset.path"
    from ci_runner.spec.load import field_line

    issue = SpecIssue(
        spec_path,
        field_line(Path(spec_path), field),
        field,
        message,
        "check the spelling on the Hub; a revision is a branch, tag or commit sha",
    )
    return SpecError([issue], missing_inputs=True)


def content_hash(path: Path, *, model: bool = False) -> str | None:
    """A local input's pin: its files' bytes (a model: its config and weights)."""
    if not path.exists():
        return None
    digest = hashlib.sha256()
    if path.is_file():
        files = [path]
    elif model:
        files = sorted(
            p for p in path.iterdir() if p.name in MODEL_FILES or p.suffix == ".safetensors"
        )
    else:
        files = sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(f"{file.relative_to(path) if file != path else file.name}\0".encode())
        digest.update(_file_digest(file))
    return f"{CONTENT_HASH_PREFIX}{digest.hexdigest()[:16]}"


def _file_digest(file: Path) -> bytes:
    size = file.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with file.open("rb") as handle:
        if size <= WHOLE_FILE_LIMIT:
            for block in iter(lambda: handle.read(2**20), b""):
                digest.update(block)
        else:  # a large weights file: its safetensors header (names, shapes, offsets)
            digest.update(handle.read(2**20))
    return digest.digest()
