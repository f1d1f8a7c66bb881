"""One process at a time creates a local MLflow store (a SQLite file).

MLflow's ``SqlAlchemyStore`` (3.17) checks whether its tables exist and, if not, creates
them and runs the Alembic migrations, without a lock. Two processes that open the same
fresh store at once (two local jobs of a sweep, or a job and ``poll`` reading its
progress) both migrate, and one of them fails with ``table _alembic_tmp_... already
exists``. Whoever opens a store here first does so under an exclusive lock on a file
beside the database, and so is its only initialiser: the others wait, then find the
tables made.

A helper shipped beside ``train.py``, and used by the runner's MLflow reader: only the
standard library at the top; MLflow is imported when a store is opened.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

SQLITE = "sqlite:///"
LOCK_SUFFIX = ".init-lock"
DEFAULT_WAIT_S = 120.0  # a migration takes seconds; a holder stuck this long is broken


def sqlite_file(uri: str | None) -> Path | None:
    """The database file of a ``sqlite:///`` URI; None for a tracking server."""
    if not uri or not uri.startswith(SQLITE):
        return None
    return Path(uri[len(SQLITE) :])


@contextlib.contextmanager
def init_lock(database: Path, *, wait_s: float = DEFAULT_WAIT_S) -> Iterator[None]:
    """Hold the exclusive lock on ``database``'s initialisation; TimeoutError after
    ``wait_s`` seconds. The lock is the kernel's (``flock``): a holder that dies frees it."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; MLflow's own behaviour, unlocked
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(database.with_name(database.name + LOCK_SUFFIX), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"another process has been creating the MLflow store {database} "
                        f"for over {wait_s:.0f} s"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def open_store(uri: str, *, wait_s: float = DEFAULT_WAIT_S) -> None:
    """Make sure the store at ``uri`` exists with all its tables, creating it under the
    lock if it does not; a tracking server (any other URI) is left alone."""
    database = sqlite_file(uri)
    if database is None:
        return
    from mlflow.tracking import MlflowClient

    with init_lock(database, wait_s=wait_s):
        # The first call opens the store, which creates and migrates the tables if needed.
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
