"""The host's side of the sandbox layers: cgroups, a pool of uids that own nothing.

Standard library only; part of the sandbox (see ``sandbox.py`` for the layers).
Both work where this process may use them and say why not where it may not:
:class:`Cgroups` finds memory and pids controllers (v1 or v2) it may create groups
under, :class:`UidPool` hands out one unused uid per live sandbox, across processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import grp
import os
import pwd
import re
import signal
import stat
import tempfile
import threading
import time
from pathlib import Path

from processes import pid_alive

UID_BASE, UID_SLOTS = 61000, 512


class SandboxError(RuntimeError):
    """The sandbox itself failed (setup or teardown), as opposed to the program."""


class UnisolatedError(SandboxError):
    """Generated code would run where it can reach what judges it: refused (no opt-in)."""


@dataclasses.dataclass
class Cgroup:
    layer: str
    version: int
    controller: str
    path: Path


class Cgroups:
    """memory and pids controllers (v1 or v2) where this process may create groups.

    ``reasons`` says why a layer is missing: ``off`` for those in ``disabled``.
    """

    def __init__(self, disabled: set[str], off: str):
        self.parents: dict[str, tuple[int, Path]] = {}
        self.reasons: dict[str, str] = {}
        for controller, layer in (("memory", "cgroup_memory"), ("pids", "cgroup_pids")):
            if layer in disabled:
                self.reasons[layer] = off
                continue
            try:
                version, parent = self._find(controller)
                self._clean_stale(version, parent)
                probe = parent / f"ci-runner-sandbox-{os.getpid()}-probe"
                group = Cgroup(layer, version, controller, probe)
                probe.mkdir()
                try:
                    self._limit(group, 64 << 20, 8)
                finally:
                    probe.rmdir()
                self.parents[controller] = (version, parent)
            except (OSError, LookupError) as exc:
                self.reasons[layer] = f"no writable {controller} cgroup here ({exc})"

    @staticmethod
    def _find(controller: str) -> tuple[int, Path]:
        mounts = []  # (fstype, root, mount point, super options)
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
                mounts.append((tail[0], fields[3], fields[4], tail[2].split(",")))
        memberships = {}
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            hierarchy, controllers, path = line.split(":", 2)
            if hierarchy == "0" and not controllers:
                memberships["cgroup2"] = path
            for name in controllers.split(","):
                memberships[name] = path

        def under(root: str, point: str, path: str) -> Path:
            relative = os.path.relpath(path, root) if path.startswith(root) else None
            if relative is None or relative.startswith(".."):
                raise LookupError(f"cgroup {path} is outside the mount at {point}")
            return Path(point, relative).resolve()

        for fstype, root, point, _ in mounts:
            if fstype == "cgroup2" and "cgroup2" in memberships:
                parent = under(root, point, memberships["cgroup2"])
                available = (parent / "cgroup.controllers").read_text().split()
                if controller not in available:
                    continue
                enabled = (parent / "cgroup.subtree_control").read_text().split()
                if controller not in enabled:
                    (parent / "cgroup.subtree_control").write_text(f"+{controller}")
                return 2, parent
        for fstype, root, point, options in mounts:
            if fstype == "cgroup" and controller in options and controller in memberships:
                return 1, under(root, point, memberships[controller])
        raise LookupError(f"no {controller} controller mounted")

    @staticmethod
    def _limit(group: Cgroup, memory_bytes: int, pids_max: int) -> None:
        if group.controller == "pids":
            (group.path / "pids.max").write_text(str(pids_max))
        elif group.version == 1:
            (group.path / "memory.limit_in_bytes").write_text(str(memory_bytes))
            with contextlib.suppress(OSError):  # absent without swap accounting
                (group.path / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
        else:
            (group.path / "memory.max").write_text(str(memory_bytes))
            with contextlib.suppress(OSError):
                (group.path / "memory.swap.max").write_text("0")

    def _clean_stale(self, version: int, parent: Path) -> None:
        """Groups left by an evaluator that was killed: empty them and remove them."""
        for entry in parent.glob("ci-runner-sandbox-*"):
            match = re.match(r"ci-runner-sandbox-(\d+)-", entry.name)
            if not match or pid_alive(int(match.group(1))):
                continue
            group = Cgroup("", version, "", entry)
            for pid in self.members(group):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                entry.rmdir()

    def create(self, name: str, memory_bytes: int, pids_max: int, layers: set[str]):
        groups = []
        try:
            for controller, (version, parent) in self.parents.items():
                layer = "cgroup_memory" if controller == "memory" else "cgroup_pids"
                if layer not in layers:
                    continue
                group = Cgroup(layer, version, controller, parent / name)
                group.path.mkdir()
                groups.append(group)
                self._limit(group, memory_bytes, pids_max)
        except OSError as exc:
            for group in groups:
                self.remove(group)
            raise SandboxError(f"cannot create cgroup {name}: {exc}") from exc
        return groups

    def parents_layers(self) -> set[str]:
        return {"cgroup_memory" if c == "memory" else "cgroup_pids" for c in self.parents}

    @staticmethod
    def members(group: Cgroup) -> set[int]:
        try:
            text = (group.path / "cgroup.procs").read_text()
        except OSError:
            return set()
        return {int(pid) for pid in text.split()}

    @staticmethod
    def kill(group: Cgroup) -> None:
        if group.version == 2:
            with contextlib.suppress(OSError):
                (group.path / "cgroup.kill").write_text("1")

    def remove(self, group: Cgroup) -> None:
        for _ in range(100):
            try:
                group.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.01)


class UidPool:
    """Numeric uids that own nothing, one per live sandbox, across processes too."""

    def __init__(self, base: int = UID_BASE, slots: int = UID_SLOTS):
        self.base, self.slots = base, slots
        name = "ci-runner-sandbox-uids" + ("" if os.geteuid() == 0 else f"-{os.geteuid()}")
        self.folder = Path(tempfile.gettempdir(), name)
        with contextlib.suppress(FileExistsError):
            self.folder.mkdir(mode=0o700)
        info = self.folder.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
            raise SandboxError(f"{self.folder} is not a private directory of this user")
        self._held: dict[int, int] = {}
        self._lock = threading.Lock()
        self._next = os.getpid() % slots

    @staticmethod
    def _taken(uid: int) -> bool:
        for lookup in (pwd.getpwuid, grp.getgrgid):
            try:
                lookup(uid)
                return True
            except KeyError:
                pass
        return False

    def acquire(self) -> int:
        with self._lock:
            for step in range(self.slots):
                uid = self.base + (self._next + step) % self.slots
                if uid in self._held or self._taken(uid):
                    continue
                flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
                fd = os.open(self.folder / f"{uid}.lock", flags, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    continue
                self._held[uid] = fd
                self._next = (self._next + step + 1) % self.slots
                return uid
        raise SandboxError(f"all {self.slots} sandbox uids from {self.base} are in use")

    def release(self, uid: int) -> None:
        with self._lock:
            fd = self._held.pop(uid, None)
        if fd is not None:
            os.close(fd)  # closing drops the flock
