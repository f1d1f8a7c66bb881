"""One sandbox at a time: start it for a chosen plan, read its reports, tear it down.

Standard library only; part of the sandbox (``sandbox.py`` chooses the layers and
runs judge/candidate pairs through a :class:`Launcher`). Each sandbox ("box") is a
``sandbox_child.py launch`` process in its own cgroups, with its own uid and run
directory, that reports on a control pipe what it observes before it runs anything;
:meth:`Launcher.check_ready` holds that report to the plan. At the end every process
of the box is killed, through the cgroup, its PID namespace or its uid, and a
survivor is a :class:`SandboxError`.

Nothing a sandbox runs or reads is a file it could write: both stages run
``sandbox_child.py`` from the source this module read at import (``python -c``), a
run directory belongs to the evaluator (0711) and holds one file given to the
sandbox uid (0400). Its only writable places are bounded: bubblewrap's sized tmpfs,
or, without it, the host's world-writable folders, where the launch stage counts
what the sandbox uid holds against :data:`QUOTA_BYTES` and sweeps it at the end.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import math
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from processes import is_zombie, proc_uid
from sandbox_child import namespaces, remove_owned_by
from sandbox_host import Cgroup, Cgroups, SandboxError, UidPool

CHILD_SOURCE = Path(__file__).resolve().with_name("sandbox_child.py")
# Read once, before any sandbox runs: where a sandbox shares the evaluator's uid, the
# file on disk is within its reach, this copy is not.
CHILD_CODE = CHILD_SOURCE.read_text(encoding="utf-8")
TMPFS_BYTES = 64 << 20  # each writable tmpfs inside bubblewrap
QUOTA_BYTES = 64 << 20  # what a sandbox uid may hold in the host's shared folders
SETUP_TIMEOUT_S = 30.0
TEARDOWN_TIMEOUT_S = 5.0
SANDBOX_DIR = "/sandbox"  # the run's own directory, inside bubblewrap
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
PLACES_SEARCH_S = 30.0  # the longest the search for world-writable folders may take
UNWRITABLE_TREES = ("/proc", "/sys")  # kernel views: no files a sandbox could leave
# Folders any uid may write to on common Linux systems; world-writable mount points
# and folders found by walking the filesystem are added (:func:`shared_writable_places`).
SHARED_PLACES = (
    "/tmp",
    "/var/tmp",
    "/dev/shm",
    "/run/lock",
    "/var/lock",
    "/run/shm",
    "/dev/mqueue",
    "/var/crash",
    "/var/mail",
    "/var/spool/mail",
)


@dataclasses.dataclass
class Plan:
    mechanism: str  # "bwrap", "unshare" or "process"
    uid: bool
    pid_namespace: bool
    net_namespace: bool
    seccomp: bool
    cgroup_memory: bool
    cgroup_pids: bool
    interpreter: str
    sudo: bool = False  # the launch stage runs as root through `sudo -n`

    @property
    def isolated(self) -> bool:
        """Generated code cannot reach what judges it: another uid, or bubblewrap's view."""
        return self.uid or self.mechanism == "bwrap"

    def without(self, layer: str) -> Plan:
        off: dict[str, Any] = {layer: False}  # one of the bool layer fields
        return dataclasses.replace(self, **off)

    def cgroup_layers(self) -> set[str]:
        return {name for name in ("cgroup_memory", "cgroup_pids") if getattr(self, name)}


@dataclasses.dataclass
class Box:
    name: str
    role: str
    proc: subprocess.Popen
    ctl: int
    groups: list[Cgroup]
    uid: int | None
    log: Path
    buffer: bytes = b""
    observed: dict[str, Any] | None = None
    lifeline: socket.socket | None = None  # through sudo: closing it ends the sandbox


def shared_writable_places(
    candidates: tuple[str, ...] = SHARED_PLACES, limit_s: float = PLACES_SEARCH_S
) -> tuple[list[str], bool]:
    """The folders here any uid may write to: where a sandbox without bubblewrap can
    leave files (its own run directory is not writable). The usual ones and the mount
    points, then every world-writable folder another uid can reach (all its parents
    searchable), found by walking the filesystem; (folders, whether the walk finished
    within ``limit_s``)."""
    found: list[str] = []

    def add(path: str, mode: int) -> None:
        real = os.path.realpath(path)
        if stat.S_ISDIR(mode) and mode & 0o002 and real not in found:
            found.append(real)

    points = list(candidates)
    with contextlib.suppress(OSError, IndexError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            points.append(line.split()[4].replace("\\040", " "))
    for path in points:
        with contextlib.suppress(OSError):
            add(path, os.stat(path).st_mode)
    deadline = time.monotonic() + limit_s
    stack = ["/"]
    while stack:
        if time.monotonic() > deadline:
            return found, False
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.path in UNWRITABLE_TREES:
                continue
            with contextlib.suppress(OSError):
                if not entry.is_dir(follow_symlinks=False):
                    continue
                mode = entry.stat(follow_symlinks=False).st_mode
                add(entry.path, mode)
                if mode & 0o001:  # others may pass through it
                    stack.append(entry.path)
    return found, True


def under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


class Launcher:
    """Starts boxes under the layers the sandbox chose (its cgroups, uids, bubblewrap)."""

    def __init__(self, *, memory_bytes: int, pids_max: int, output_bytes: int, is_root: bool):
        self.memory_bytes, self.pids_max, self.output_bytes = memory_bytes, pids_max, output_bytes
        self.is_root = is_root
        self.host = namespaces()
        self.cgroups: Cgroups | None = None  # the sandbox sets these as it chooses its layers
        self.uids: UidPool | None = None
        self.bwrap: str | None = None
        self._places: tuple[list[str], bool] | None = None
        self._root: Path | None = None

    @property
    def places(self) -> list[str]:
        """The world-writable folders (searched once, when first needed)."""
        return self.find_places()

    def find_places(self) -> list[str]:
        if self._places is None:
            self._places = shared_writable_places()
        return self._places[0]

    @property
    def places_complete(self) -> bool:
        return self._places is None or self._places[1]

    @property
    def root(self) -> Path:
        """The folder holding every run directory (0711: sandboxes may not list it)."""
        if self._root is None:
            root = Path(tempfile.mkdtemp(prefix="ci-runner-sandbox-"))
            root.chmod(0o711)
            (root / "logs").mkdir(mode=0o700)
            self._root = root
            atexit.register(self.close)
        return self._root

    def close(self) -> None:
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def take_uid(self, plan: Plan, stack: contextlib.ExitStack) -> int | None:
        if not plan.uid or self.uids is None:
            return None
        uid = self.uids.acquire()
        stack.callback(self.uids.release, uid)
        return uid

    def run_dir(self, name: str, stack: contextlib.ExitStack) -> Path:
        """The evaluator's folder for one sandbox: enterable, not listable, not writable."""
        path = self.root / name
        path.mkdir(mode=0o711)
        path.chmod(0o711)
        stack.callback(shutil.rmtree, path, True)
        return path

    def write(self, path: Path, text: str, uid: int | None) -> None:
        """The sandbox's one file: its uid's alone (given by the launch stage via sudo).

        Text that is not UTF-8 (a lone surrogate) is written as such: the sandbox
        fails to read it, that problem fails, no other."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o400)
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8", errors="surrogatepass"))
        if uid is not None and self.is_root:
            os.chown(path, uid, uid)

    @staticmethod
    def inside(plan: Plan, run_dir: Path, name: str) -> str:
        return f"{SANDBOX_DIR}/{name}" if plan.mechanism == "bwrap" else str(run_dir / name)

    def _limits(self, uid: int | None, timeout_s: float) -> dict[str, int]:
        """RLIMIT_FSIZE caps each file; the quota (or tmpfs size) caps them all."""
        limits = {
            "RLIMIT_AS": self.memory_bytes,
            "RLIMIT_CPU": max(1, math.ceil(timeout_s)) + 1,
            "RLIMIT_NOFILE": 64,
            "RLIMIT_FSIZE": self.output_bytes,
            "RLIMIT_CORE": 0,
        }
        if uid is not None:  # a fresh uid: the count starts at this process
            limits["RLIMIT_NPROC"] = self.pids_max
        return limits

    def launch(
        self,
        plan: Plan,
        role: str,
        name: str,
        uid: int | None,
        run_dir: Path,
        timeout_s: float,
        fds: list[int],
        extra: dict[str, Any],
    ) -> Box:
        assert self.cgroups is not None
        groups = self.cgroups.create(
            f"ci-runner-sandbox-{os.getpid()}-{name}",
            self.memory_bytes,
            self.pids_max,
            plan.cgroup_layers(),
        )
        ctl_r, ctl_w = os.pipe()
        log_path = self.root / "logs" / f"{name}.log"
        bwrap = plan.mechanism == "bwrap"
        inner = {
            "role": role,
            "ctl_fd": ctl_w,
            "uid": uid,
            "gid": uid,
            "seccomp": plan.seccomp,
            "limits": self._limits(uid, timeout_s),
            "socket_seatbelt": not plan.net_namespace and not plan.seccomp,
            "cwd": SANDBOX_DIR if bwrap else str(run_dir),
            **extra,
        }
        # -u: prints reach the log; -c: the child's code as read at import, not a file
        run_argv = [plan.interpreter, "-I", "-S", "-u", "-c", CHILD_CODE, "run", json.dumps(inner)]
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": SANDBOX_DIR if bwrap else str(run_dir),  # read-only for the sandbox
            "TMPDIR": "/tmp",
            "OMP_NUM_THREADS": "1",
        }
        owned = [str(run_dir / extra["file"])] if "file" in extra else []
        outer: dict[str, Any] = {
            "ctl_fd": ctl_w,
            "mechanism": "bwrap" if bwrap else "unshare",
            "cgroups": [[g.layer, str(g.path / "cgroup.procs")] for g in groups],
            "net_namespace": plan.net_namespace,
            "pid_namespace": plan.pid_namespace,
            "run_argv": run_argv,
            "bwrap_argv": self._bwrap_argv(plan, run_dir, run_argv) if bwrap else None,
            "fds": [ctl_w, *fds],
            "uid": uid,
            "gid": uid,
            "places": [] if bwrap else self.places,
            "quota_bytes": QUOTA_BYTES,
        }
        if plan.sudo:  # sudo resets the environment, closes fds above 2 and cannot chown
            outer.update(receive_fds=True, env=env, own=owned, owner=os.geteuid())
        command = [plan.interpreter, "-I", "-S", "-c", CHILD_CODE, "launch", json.dumps(outer)]
        lifeline, their_end = socket.socketpair() if plan.sudo else (None, None)
        try:
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(
                    ["sudo", "-n", "--", *command] if plan.sudo else command,
                    stdin=their_end.fileno() if their_end is not None else subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=run_dir,
                    env=env,
                    pass_fds=[] if plan.sudo else [ctl_w, *fds],
                    start_new_session=True,
                )
            if lifeline is not None:
                socket.send_fds(lifeline, [b"f"], [ctl_w, *fds])
        except OSError as exc:
            os.close(ctl_r)
            if lifeline is not None:
                lifeline.close()
            for group in groups:
                self.cgroups.remove(group)
            raise SandboxError(f"cannot start {plan.interpreter}: {exc}") from exc
        finally:
            os.close(ctl_w)
            if their_end is not None:
                their_end.close()
        return Box(name, role, proc, ctl_r, groups, uid, log_path, lifeline=lifeline)

    def _bwrap_argv(self, plan: Plan, run_dir: Path, run_argv: list[str]) -> list[str]:
        assert self.bwrap is not None
        argv = [
            self.bwrap,
            "--unshare-pid",
            "--unshare-net",
            "--unshare-ipc",
            "--unshare-uts",
            "--die-with-parent",
            "--new-session",
            "--hostname",
            "sandbox",
        ]
        as_root = self.is_root or plan.sudo
        if not as_root:
            argv.append("--unshare-user")
        for top in SYSTEM_DIRS:
            if os.path.islink(top):
                argv += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                argv += ["--ro-bind", top, top]
        argv += ["--perms", "0755", "--dir", "/etc"]
        argv += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
        real = os.path.realpath(plan.interpreter)
        prefixes = {str(Path(real).parent.parent)}
        if real == os.path.realpath(getattr(sys, "_base_executable", "") or sys.executable):
            prefixes |= {os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix)}
        made: set[str] = set()
        for prefix in sorted(prefixes):
            if under(prefix, SYSTEM_DIRS) or not os.path.isdir(prefix):
                continue
            argv += self._bwrap_parents(prefix, made)
            argv += ["--ro-bind", prefix, prefix]
        argv += ["--ro-bind", str(run_dir), SANDBOX_DIR, "--proc", "/proc", "--dev", "/dev"]
        # The only writable places: a private, sized /tmp and /dev/shm any uid may use;
        # the rest (bubblewrap's own root and /dev included) is read-only. --chdir is left
        # to the run stage (as its uid).
        for place in ("/tmp", "/dev/shm"):
            argv += ["--perms", "01777", "--size", str(TMPFS_BYTES), "--tmpfs", place]
        argv += ["--remount-ro", "/dev", "--remount-ro", "/"]
        if as_root:
            argv += ["--cap-drop", "ALL"]
            if plan.uid:  # the run stage switches to the sandbox uid, then has none
                argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        return [*argv, "--", *run_argv]

    @staticmethod
    def _bwrap_parents(path: str, made: set[str]) -> list[str]:
        """bwrap copies a parent's mode (e.g. /root 0700): make them traversable."""
        argv = []
        for parent in reversed(Path(path).parents):
            text = str(parent)
            if text == "/" or text in made or under(text, SYSTEM_DIRS):
                continue
            made.add(text)
            argv += ["--perms", "0755", "--dir", text]
        return argv

    def read_message(self, box: Box, deadline: float) -> dict[str, Any] | str | None:
        """The next line on a control pipe: a dict, ``"timeout"``, or None at EOF."""
        while b"\n" not in box.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            readable, _, _ = select.select([box.ctl], [], [], left)
            if not readable:
                continue
            chunk = os.read(box.ctl, 65536)
            if not chunk:
                return None
            box.buffer += chunk
            if len(box.buffer) > 1 << 20:
                return None
        line, _, box.buffer = box.buffer.partition(b"\n")
        try:
            message = json.loads(line)
        except ValueError:
            return None
        return message if isinstance(message, dict) else None

    def expect_ready(self, plan: Plan, box: Box) -> None:
        message = self.read_message(box, time.monotonic() + SETUP_TIMEOUT_S)
        if isinstance(message, dict) and isinstance(message.get("ready"), dict):
            problem = self.check_ready(plan, box, message["ready"])
            if problem is None:
                return
            layer, detail = problem
        elif isinstance(message, dict) and "error" in message:
            layer, detail = message.get("layer", "setup"), message["error"]
        else:
            layer, detail = "setup", (tail(box.log).strip().splitlines() or ["no report"])[-1]
        raise SandboxError(f"{box.role} sandbox did not get its planned layers ({layer}): {detail}")

    def check_ready(self, plan: Plan, box: Box, observed: dict[str, Any]) -> tuple[str, str] | None:
        """Compare what the sandbox reports with the plan; a mismatch is an error."""
        box.observed = observed
        seen = observed.get("namespaces") or {}
        if box.uid is not None and observed.get("uid") != box.uid:
            return "uid", f"running as uid {observed.get('uid')}, not {box.uid}"
        if observed.get("cap_eff") or observed.get("cap_prm"):
            return "capabilities", "capabilities left after setup"
        if not observed.get("no_new_privs"):
            return "no_new_privs", "no_new_privs is not set"
        if plan.seccomp and observed.get("seccomp") != 2:
            return "seccomp", "no seccomp filter in place"
        for layer, kind in (("net_namespace", "net"), ("pid_namespace", "pid")):
            if getattr(plan, layer) and seen.get(kind) in (None, self.host[kind]):
                return layer, f"still in the evaluator's {kind} namespace"
        if plan.mechanism == "bwrap" and seen.get("mnt") in (None, self.host["mnt"]):
            return "bwrap", "still in the evaluator's mount namespace"
        return None

    def _members(self, boxes: list[Box]) -> set[int]:
        """Every live process that belongs to one of these sandboxes."""
        found: set[int] = set()
        scan_ns, scan_uid = set(), set()
        assert self.cgroups is not None
        for box in boxes:
            if box.proc.poll() is None:
                found.add(box.proc.pid)
            if box.groups:
                for group in box.groups:
                    found |= self.cgroups.members(group)
                continue
            pid_ns = (box.observed or {}).get("namespaces", {}).get("pid")
            if pid_ns and pid_ns != self.host["pid"]:
                scan_ns.add(pid_ns)
            if box.uid is not None:
                scan_uid.add(box.uid)
        if scan_ns or scan_uid:
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                if scan_uid and proc_uid(entry) in scan_uid:
                    found.add(int(entry))
                elif scan_ns:
                    with contextlib.suppress(OSError):
                        if os.readlink(f"/proc/{entry}/ns/pid") in scan_ns and not is_zombie(entry):
                            found.add(int(entry))
        found.discard(os.getpid())
        return found

    def teardown(self, boxes: list[Box], plan: Plan | None) -> None:
        """Kill every process of these sandboxes, check none is left, free their cgroups.

        ``plan`` is the sandbox's chosen plan (None while trial sandboxes choose it)."""
        assert self.cgroups is not None
        for box in boxes:  # through sudo: the root launch stage kills and sweeps on EOF
            if box.lifeline is not None:
                box.lifeline.close()
        for box in boxes:
            if box.lifeline is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    box.proc.wait(timeout=TEARDOWN_TIMEOUT_S)
        for box in boxes:
            with contextlib.suppress(OSError):
                os.killpg(box.proc.pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                box.proc.kill()
            for group in box.groups:
                self.cgroups.kill(group)
        deadline = time.monotonic() + TEARDOWN_TIMEOUT_S
        survivors: set[int] = set()
        while True:
            members = self._members(boxes)
            if not members:
                break
            if time.monotonic() > deadline:
                survivors = members
                break
            for pid in members:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)
        for box in boxes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                box.proc.wait(timeout=TEARDOWN_TIMEOUT_S)
            with contextlib.suppress(OSError):
                os.close(box.ctl)
            for group in box.groups:
                self.cgroups.remove(group)
            if box.uid is not None and not survivors and plan and plan.mechanism != "bwrap":
                # no private /tmp: clear what the (dead) sandbox uid left there (through
                # sudo, its launch stage did, as root)
                remove_owned_by(box.uid, self.places)
        if survivors:
            raise SandboxError(f"processes {sorted(survivors)} outlived their sandbox")


def tail(path: Path, size: int = 4096) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - size))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
