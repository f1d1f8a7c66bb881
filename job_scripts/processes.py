"""Live processes on Linux, read from ``/proc``: is a pid alive, whose is it, is it a zombie.

Standard library only. Shared by the sandbox (``sandbox_host.py``, ``sandbox_launch.py``)
and ci-runner's local backend, which checks its job supervisors the same way.
"""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """Does ``pid`` exist? (A process of another user counts: we may not signal it.)"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def proc_uid(pid: str) -> int | None:
    """The real uid of a live process; None for zombies (they hold nothing)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("State:") and line.split()[1] in ("Z", "X"):
                    return None
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def is_zombie(pid: str) -> bool:
    """Dead but not reaped (or gone): it holds nothing."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True
