"""Secrets first: the evaluator holds no credential, and no answer lies within reach,
before generated code runs.

Standard library only; part of the sandbox (``sandbox.py`` re-exports
:func:`drop_secrets` and :func:`restore_secrets`). :func:`drop_secrets` removes
credential-looking variables from the environment, overwrites them in the
process's initial environment block (what ``/proc/<pid>/environ`` shows), moves
the Hugging Face token files off disk (kept in memory, written back by
:func:`restore_secrets` after every sandbox is gone) and makes the evaluator
non-dumpable, so a process of the same uid without ``CAP_SYS_PTRACE`` cannot read
its memory, environment or fds. This holds with no other layer.

:func:`seal_answers` takes the benchmark's files (data, caches, the model) out of
reach of every other uid once the evaluator has read them: each named path loses
its group and other permissions (a folder then cannot be entered) until
:func:`restore_secrets`. A sandbox runs as another uid, or inside bubblewrap where
these paths do not exist at all.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import stat
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sandbox_child import PR_SET_DUMPABLE, prctl

SECRET_NAME = re.compile(
    r"(?:^|_)(?:TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIALS?)(?:_|$)",
    re.IGNORECASE,
)
_secrets_lock = threading.Lock()
_secrets: dict[str, Any] | None = None
_stash: list[tuple[Path, str, bytes, int]] = []
_sealed: list[tuple[Path, int]] = []  # path, its mode before sealing
_seal_record: dict[str, list[str]] | None = None


def hf_token_files(environ: dict[str, str] | os._Environ) -> list[Path]:
    """Where huggingface_hub keeps tokens on disk."""
    home = Path.home()
    cache = Path(environ.get("XDG_CACHE_HOME") or home / ".cache")
    hf_home = Path(environ.get("HF_HOME") or cache / "huggingface").expanduser()
    paths = [
        environ.get("HF_TOKEN_PATH"),
        hf_home / "token",
        hf_home / "stored_tokens",
        home / ".cache" / "huggingface" / "token",
        home / ".cache" / "huggingface" / "stored_tokens",
        home / ".huggingface" / "token",
    ]
    unique: list[Path] = []
    for path in paths:
        if path and Path(path).expanduser() not in unique:
            unique.append(Path(path).expanduser())
    return unique


def drop_secrets(extra_files: Sequence[str | Path] = ()) -> dict[str, Any]:
    """Leave the evaluator holding no secret before generated code runs.

    * credential-looking variables (``HF_TOKEN``, ``*_API_KEY``, ...) leave
      ``os.environ`` and are overwritten in the initial environment block;
    * the Hugging Face token files are moved off disk; their bytes stay in this
      (non-dumpable) process until :func:`restore_secrets`;
    * the process becomes non-dumpable (``PR_SET_DUMPABLE`` 0).

    Call it after the model and datasets are loaded. Returns what was done
    (names and paths, never values); calling it again adds to the record.
    """
    global _secrets
    with _secrets_lock:
        files = hf_token_files(os.environ) + [Path(p) for p in extra_files]
        names = sorted(name for name in os.environ if SECRET_NAME.search(name))
        for name in names:
            os.environ.pop(name, None)
        moved, kept = [], []
        for path in files:
            outcome = _stash_file(path)
            if outcome == "moved":
                moved.append(str(path))
            elif outcome == "kept":
                kept.append(str(path))
        record = _secrets or {
            "env": [],
            "token_files": [],
            "token_files_left": [],
            "environ_scrubbed": False,
            "evaluator_nondumpable": False,
        }
        record["env"] = sorted(set(record["env"]) | set(names))
        record["token_files"] = sorted(set(record["token_files"]) | set(moved))
        record["token_files_left"] = sorted(kept)
        record["environ_scrubbed"] = _scrub_initial_environ()
        record["evaluator_nondumpable"] = set_dumpable(False)
        if _secrets is None:
            atexit.register(restore_secrets)
        _secrets = record
        return dict(record)


def dropped() -> dict[str, Any] | None:
    """What :func:`drop_secrets` did so far (a copy), or None when it was never called."""
    with _secrets_lock:
        return dict(_secrets) if _secrets is not None else None


def _stash_file(path: Path) -> str:
    try:
        info = path.lstat()
    except OSError:
        return "absent"
    try:
        if stat.S_ISLNK(info.st_mode):
            target = os.readlink(path)
            path.unlink()
            _stash.append((path, "link", target.encode(), 0))
        elif stat.S_ISREG(info.st_mode):
            data = path.read_bytes()
            path.unlink()
            _stash.append((path, "file", data, stat.S_IMODE(info.st_mode)))
        else:
            return "absent"
    except OSError:
        with contextlib.suppress(OSError):
            path.chmod(0)  # cannot move it: at least no one but root may read it
        return "kept"
    return "moved"


def seal_answers(paths: Sequence[str | Path]) -> dict[str, list[str]]:
    """Take these paths (and all below them) out of reach of every uid but their owner's.

    Call it once the benchmark, the model and the data are loaded, before generated
    code runs; :func:`restore_secrets` gives the modes back. Returns what was sealed,
    and what could not be (not this user's to change)."""
    global _seal_record
    with _secrets_lock:
        record = _seal_record or {"sealed": [], "left": []}
        for raw in paths:
            path = Path(raw).expanduser()
            try:
                path = path.resolve(strict=True)
                mode = stat.S_IMODE(path.stat().st_mode)
            except (OSError, RuntimeError):
                continue  # absent: nothing to reach
            if any(path == done for done, _ in _sealed):
                continue
            try:
                if mode & 0o077:
                    path.chmod(mode & ~0o077)
                    _sealed.append((path, mode))
            except OSError:
                record["left"] = sorted({*record["left"], str(path)})
            else:
                record["sealed"] = sorted({*record["sealed"], str(path)})
        if _seal_record is None:
            atexit.register(restore_secrets)
        _seal_record = record
        return {key: list(value) for key, value in record.items()}


def sealed() -> dict[str, list[str]] | None:
    """What :func:`seal_answers` did so far, or None when it was never called."""
    with _secrets_lock:
        if _seal_record is None:
            return None
        return {key: list(value) for key, value in _seal_record.items()}


def restore_secrets() -> list[str]:
    """Put the token files back and the sealed paths' modes (once no sandbox is running)."""
    restored = []
    with _secrets_lock:
        while _sealed:
            path, mode = _sealed.pop()
            try:
                path.chmod(mode)
            except OSError as exc:
                print(f"warning: could not restore the mode of {path}: {exc}", file=sys.stderr)
        while _stash:
            path, kind, data, mode = _stash.pop()
            try:
                if kind == "link":
                    os.symlink(data.decode(), path)
                else:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode or 0o600)
                    with os.fdopen(fd, "wb") as handle:
                        handle.write(data)
                restored.append(str(path))
            except OSError as exc:
                print(f"warning: could not restore {path}: {exc}", file=sys.stderr)
    return restored


def _scrub_initial_environ() -> bool:
    """Overwrite credential entries in the stack block ``/proc/self/environ`` reads.

    ``unsetenv`` only drops the pointer; the bytes stay where the kernel put
    them at exec and remain visible to anyone who may read our ``environ``.
    """
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start, end = int(fields[47]), int(fields[48])  # env_start, env_end (fields 50, 51)
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            block = bytearray(mem.read(end - start))
            offset, changed = 0, False
            for entry in bytes(block).split(b"\0"):
                name = entry.split(b"=", 1)[0].decode("utf-8", "replace")
                if b"=" in entry and SECRET_NAME.search(name):
                    block[offset : offset + len(entry)] = b"\0" * len(entry)
                    changed = True
                offset += len(entry) + 1
            if changed:
                mem.seek(start)
                mem.write(bytes(block))
        return True
    except (OSError, ValueError, IndexError):
        return False


def set_dumpable(dumpable: bool) -> bool:
    """``PR_SET_DUMPABLE``: False keeps same-uid processes out of our memory, environ, fds."""
    try:
        prctl(PR_SET_DUMPABLE, int(dumpable))
    except (OSError, AttributeError):  # refused, or no prctl (not Linux)
        return False
    return True
