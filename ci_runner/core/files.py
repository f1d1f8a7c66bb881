"""Files ci-runner writes for people: atomically, with the umask's mode, and locks.

Files land with the user's umask (``mkstemp`` makes them 0600, which a teammate's
checkout of a committed report would inherit), and a temp file a killed writer left
behind is removed by the next write.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

STALE_TEMP_S = 60.0  # a temp file this old belongs to a writer that died
_umask_lock = threading.Lock()


def _file_mode() -> int:
    """What ``open()`` would give a new file: 0666 less the process umask."""
    with _umask_lock:
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def _remove_stale_temps(path: Path) -> None:
    now = time.time()
    for temp in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(OSError):
            if now - temp.stat().st_mtime > STALE_TEMP_S:
                temp.unlink()


def write_atomic(path: Path, text: str) -> bool:
    """Write via a temp file + rename, so a crash never leaves half a file.

    Returns False (and leaves the file untouched) when the content is the same,
    which keeps ``poll`` from producing empty commits.
    """
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


@contextlib.contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """One process at a time per experiment: two ``poll``s must not start a job twice.

    An advisory ``flock`` on a file in the state folder (``.ci-runner/``); the kernel drops
    it if the holder dies, so a killed poll never leaves the experiment locked.
    """
    import fcntl

    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
