"""Local path or Hub repo? Decided once, here, and spelled explicitly from then on.

Users write ``base_model: fixtures/tiny-llama`` as often as ``./fixtures/tiny-llama``. A
value that exists on disk under the project root is local whatever its spelling, and
``resolve_ref`` rewrites it as ``./…`` so every later step (sizing, data check, job,
report links) sees the same answer through ``is_local_path``. A value shaped like a Hub
id that also exists locally is local too, with a warning saying so.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from huggingface_hub import HfApi

HUB = "https://huggingface.co"
HUB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")
# Names no Hub repo carries: a value ending in one is a local file that is missing.
DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".arrow", ".txt", ".py")


class RefKind(str, Enum):
    LOCAL = "local"
    HUB = "hub"


def is_local_path(ref: str) -> bool:
    """Explicitly local: ``./``, ``../``, ``/`` or ``~``. Loaded files are spelled this way."""
    return ref.startswith(("./", "../", "/", "~")) or ref in (".", "..")


def looks_like_hub_id(ref: str) -> bool:
    return bool(HUB_ID_RE.fullmatch(ref)) and not ref.lower().endswith(DATA_SUFFIXES)


@dataclass(frozen=True)
class Ref:
    """A model or dataset reference, resolved against the project root."""

    written: str  # as the file spells it
    kind: RefKind
    value: str  # what the rest of ci-runner uses: ``./…`` for a relative local path
    path: Path | None = None  # local only: the absolute path (it may not exist)
    exists: bool = False
    shadows_hub_id: bool = False  # Hub-id shaped, but a local folder or file of that name won

    @property
    def local(self) -> bool:
        return self.kind is RefKind.LOCAL


def local_path(ref: str, root: Path | None) -> Path:
    """A local reference as a path: ``~`` expanded, a relative one under ``root``
    (left relative without a ``root``)."""
    path = Path(ref).expanduser()
    return path if path.is_absolute() or root is None else root / path


def resolve_ref(ref: str, root: Path | None) -> Ref:
    """Local when spelled so or present on disk under ``root``; else a Hub id if it can be one.

    Without ``root`` nothing is looked up on disk (pure parsing of a file's text).
    """
    if is_local_path(ref):
        path = local_path(ref, root)
        return Ref(ref, RefKind.LOCAL, ref, path, root is not None and path.exists())
    on_disk = root / ref if root is not None else None
    if on_disk is not None and on_disk.exists():
        return Ref(ref, RefKind.LOCAL, f"./{ref}", on_disk, True, looks_like_hub_id(ref))
    if looks_like_hub_id(ref):
        return Ref(ref, RefKind.HUB, ref)
    return Ref(ref, RefKind.LOCAL, f"./{ref}", on_disk, False)


def missing_path_hint(path: Path | None) -> str:
    """Did-you-mean among the siblings of a missing path, else where it was looked for."""
    if path is None:
        return "relative paths start at the project root"
    parent = path.parent
    if not parent.is_dir():
        return f"{parent} does not exist either; relative paths start at the project root"
    siblings = sorted(p.name for p in parent.iterdir() if not p.name.startswith("."))
    close = difflib.get_close_matches(path.name, siblings, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    shown = ", ".join(siblings[:8]) + (" ..." if len(siblings) > 8 else "")
    return f"{parent} holds: {shown or 'nothing'}"


def label_value(text: str) -> str:
    """HF Jobs labels allow 100 chars of ``[A-Za-z0-9._-]``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:100] or "unknown"


def trackio_url(space: str | None, project: str, run: str) -> str | None:
    """The run's page on its trackio Space; None when metrics stay local."""
    if not space:
        return None
    return f"{HUB}/spaces/{space}?project={project}&runs={run}&metrics=train/loss"


MLFLOW_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves a local store by default


def mlflow_store_is_local(uri: str | None) -> bool:
    """A store on this machine's disk (``sqlite:``, ``file:``, a path), not a server."""
    from urllib.parse import urlsplit

    if not uri:
        return True
    if uri.lower().startswith("databricks"):
        return False
    return urlsplit(uri).scheme.lower() in ("sqlite", "file", "")


def mlflow_run_url(uri: str | None, experiment_id: str | None, run_id: str | None) -> str | None:
    """The MLflow run's page: on its tracking server, or for a store on disk (sqlite,
    file) in ``mlflow ui --backend-store-uri <uri>`` at its default address. None for
    Databricks (the workspace's host is not in the URI) or while the run is unknown."""
    if not run_id or not experiment_id:
        return None
    if mlflow_store_is_local(uri):
        base = MLFLOW_UI
    elif uri and uri.lower().startswith(("http://", "https://")):
        base = uri.rstrip("/")
    else:
        return None
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


def hub_api(token: str | None = None) -> HfApi:
    """An ``HfApi`` on ``HF_ENDPOINT`` when set (a mirror, or a loopback Hub in tests)."""
    import os

    from huggingface_hub import HfApi

    return HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)


def hub_url(ref: str | None, kind: str = "model") -> str | None:
    """The Hub page of a repo id; None for a local path, which has no page."""
    if not ref or is_local_path(ref) or not looks_like_hub_id(ref):
        return None
    return f"{HUB}/datasets/{ref}" if kind == "dataset" else f"{HUB}/{ref}"


REVISION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}")  # a branch, tag or commit
CONTENT_HASH_PREFIX = "sha256:"  # a local input's pin: a hash of its files, not a Hub commit


def split_revision(ref: str) -> tuple[str, str | None]:
    """``org/name@rev`` → (``org/name``, ``rev``); local paths and plain ids have none."""
    if is_local_path(ref) or "@" not in ref:
        return ref, None
    repo, _, revision = ref.rpartition("@")
    return repo, revision or None


def is_hub_commit(revision: str | None) -> bool:
    return bool(revision) and not str(revision).startswith(CONTENT_HASH_PREFIX)


def revision_url(ref: str | None, revision: str | None, kind: str = "model") -> str | None:
    """The Hub page of a repo at one commit; None for local inputs (hashed, no page)."""
    page = hub_url(ref, kind)
    if page is None or not is_hub_commit(revision):
        return None
    return f"{page}/tree/{revision}"
