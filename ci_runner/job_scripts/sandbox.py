"""Run untrusted Python (model-generated HumanEval code) in layered isolation.

Standard library only. ``evaluate.py`` imports it as a sibling module
(``import sandbox``); the code that runs inside the sandbox is the sibling
file ``sandbox_child.py``. The API ``evaluate.py`` uses:

* :func:`drop_secrets` once the model and datasets are loaded, before any
  generated code runs, and :func:`restore_secrets` when no sandbox is left;
* :func:`prepare` to probe the layers and print them (and every degradation)
  to the job log;
* :func:`run_tests` per problem, which returns a :class:`Verdict`;
* :func:`summary` for the eval summary's ``sandbox`` entry.

Design
------
**Secrets first.** :func:`drop_secrets` removes credential-looking variables
from the environment, overwrites them in the process's initial environment
block (what ``/proc/<pid>/environ`` shows), moves the Hugging Face token files
off disk (kept in memory, written back by :func:`restore_secrets` after every
sandbox is gone) and makes the evaluator non-dumpable, so a process of the same
uid without ``CAP_SYS_PTRACE`` cannot read its memory, environment or fds. This
holds with no other layer.

**A verdict the candidate cannot forge.** Each problem runs as two sandboxes:
the *candidate* holds only the model's program and answers calls to its entry
point over a pipe pair; the *judge* runs the benchmark's prompt and tests,
calling the candidate through a proxy that exchanges plain data (tagged JSON,
never pickle). Only the judge holds the pipe to the evaluator that carries the
verdict; the two are separate sandboxes (separate uids and namespaces where those
layers exist) and both are non-dumpable, so the candidate cannot reach the
judge's pipes through ``/proc``. No nonce, nothing in the candidate's memory
decides the result, and an object whose ``__eq__`` always returns True cannot
cross the pipe.

**Isolation, layered** (each probed at start with a real trial sandbox, each
sandbox's report checked against the plan, and every missing layer recorded
in :func:`summary` and printed as a warning, never silently skipped):

* bubblewrap (``bwrap``, Debian's ``bubblewrap``) when installed and allowed:
  new PID, network, IPC and UTS namespaces and a filesystem that holds only
  ``/usr``, the interpreter and the sandbox's own directory; otherwise the
  same namespaces through ``unshare(2)`` (no private filesystem view);
* a uid that owns nothing, one per sandbox (from ``UID_BASE``), in a 0700
  directory of its own, with ``RLIMIT_NPROC`` binding;
* cgroup (v1 or v2) memory and pids limits on each sandbox's whole tree;
* a seccomp filter: no sockets, no signals, no ptrace, no keyring, no System V
  IPC, no new namespaces or mounts;
* no capabilities, ``no_new_privs``, rlimits (address space, CPU, files,
  file size, core dumps).

At the end of a run everything the sandbox started is killed: through the
cgroup, or its PID namespace, or its uid, and the evaluator checks that none
survived (a survivor is a :class:`SandboxError`, not a quiet leak).

``CI_RUNNER_SANDBOX_DISABLE`` (comma-separated layer names, or ``namespaces``,
``cgroups``, ``all``) switches layers off, to see and test the degraded paths.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import dataclasses
import fcntl
import grp
import itertools
import json
import math
import os
import platform
import pwd
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CHILD_SOURCE = Path(__file__).resolve().with_name("sandbox_child.py")
DISABLE_ENV = "CI_RUNNER_SANDBOX_DISABLE"
LAYER_NAMES = (
    "bwrap",
    "uid",
    "pid_namespace",
    "net_namespace",
    "cgroup_memory",
    "cgroup_pids",
    "seccomp",
)
ALIASES = {
    "namespaces": ("bwrap", "pid_namespace", "net_namespace"),
    "cgroups": ("cgroup_memory", "cgroup_pids"),
    "all": LAYER_NAMES,
}

MEMORY_BYTES = 2 << 30  # per sandbox tree (cgroup) and per process (RLIMIT_AS)
PIDS_MAX = 64
OUTPUT_BYTES = 1 << 20
TMPFS_BYTES = 64 << 20
UID_BASE, UID_SLOTS = 61000, 512
SETUP_TIMEOUT_S = 30.0
TEARDOWN_TIMEOUT_S = 5.0
SECCOMP_MACHINES = ("x86_64", "aarch64")
SANDBOX_DIR = "/sandbox"  # the run's own directory, inside bubblewrap
CHILD_DIR = "/opt/ci-runner-sandbox"  # sandbox_child.py, inside bubblewrap
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


class SandboxError(RuntimeError):
    """The sandbox itself failed (setup or teardown), as opposed to the program."""


@dataclasses.dataclass
class Verdict:
    passed: bool
    reason: str
    candidate_output: str = ""
    judge_output: str = ""


# --- secrets first ----------------------------------------------------------------

SECRET_NAME = re.compile(
    r"(?:^|_)(?:TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIALS?)(?:_|$)",
    re.IGNORECASE,
)
_secrets_lock = threading.Lock()
_secrets: dict[str, Any] | None = None
_stash: list[tuple[Path, str, bytes, int]] = []


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


def drop_secrets(extra_files: list[str | Path] = ()) -> dict[str, Any]:
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
        record["evaluator_nondumpable"] = _set_dumpable(False)
        if _secrets is None:
            atexit.register(restore_secrets)
        _secrets = record
        return dict(record)


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


def restore_secrets() -> list[str]:
    """Put the token files back (call only once no sandbox is running)."""
    restored = []
    with _secrets_lock:
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


def _set_dumpable(dumpable: bool) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(4, int(dumpable), 0, 0, 0) == 0  # PR_SET_DUMPABLE
    except (OSError, AttributeError):
        return False


# --- layers: cgroups and uids -------------------------------------------------------


@dataclasses.dataclass
class _Group:
    layer: str
    version: int
    controller: str
    path: Path


class _Cgroups:
    """memory and pids controllers (v1 or v2) where this process may create groups."""

    def __init__(self, disabled: set[str]):
        self.parents: dict[str, tuple[int, Path]] = {}
        self.reasons: dict[str, str] = {}
        for controller, layer in (("memory", "cgroup_memory"), ("pids", "cgroup_pids")):
            if layer in disabled:
                self.reasons[layer] = f"disabled by {DISABLE_ENV}"
                continue
            try:
                version, parent = self._find(controller)
                self._clean_stale(version, parent)
                probe = parent / f"ci-runner-sandbox-{os.getpid()}-probe"
                group = _Group(layer, version, controller, probe)
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
    def _limit(group: _Group, memory_bytes: int, pids_max: int) -> None:
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
            if not match or _alive(int(match.group(1))):
                continue
            group = _Group("", version, "", entry)
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
                group = _Group(layer, version, controller, parent / name)
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
    def members(group: _Group) -> set[int]:
        try:
            text = (group.path / "cgroup.procs").read_text()
        except OSError:
            return set()
        return {int(pid) for pid in text.split()}

    @staticmethod
    def kill(group: _Group) -> None:
        if group.version == 2:
            with contextlib.suppress(OSError):
                (group.path / "cgroup.kill").write_text("1")

    def remove(self, group: _Group) -> None:
        for _ in range(100):
            try:
                group.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.01)


class _UidPool:
    """Numeric uids that own nothing, one per live sandbox, across processes too."""

    def __init__(self, base: int = UID_BASE, slots: int = UID_SLOTS):
        self.base, self.slots = base, slots
        self.folder = Path(tempfile.gettempdir(), "ci-runner-sandbox-uids")
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _namespaces(pid: int | str = "self") -> dict[str, str | None]:
    found = {}
    for kind in ("net", "pid", "mnt", "user", "ipc"):
        try:
            found[kind] = os.readlink(f"/proc/{pid}/ns/{kind}")
        except OSError:
            found[kind] = None
    return found


def _proc_uid(pid: str) -> int | None:
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


def _zombie(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


# --- the sandbox --------------------------------------------------------------------


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

    def without(self, layer: str) -> Plan:
        return dataclasses.replace(self, **{layer: False})

    def cgroup_layers(self) -> set[str]:
        return {name for name in ("cgroup_memory", "cgroup_pids") if getattr(self, name)}


@dataclasses.dataclass
class _Box:
    name: str
    role: str
    proc: subprocess.Popen
    ctl: int
    groups: list[_Group]
    uid: int | None
    log: Path
    buffer: bytes = b""
    observed: dict[str, Any] | None = None


def _parse_disable(text: str) -> set[str]:
    names: set[str] = set()
    for raw in re.split(r"[\s,]+", text.strip()):
        if not raw:
            continue
        if raw in ALIASES:
            names.update(ALIASES[raw])
        elif raw in LAYER_NAMES:
            names.add(raw)
        else:
            raise SandboxError(f"{DISABLE_ENV}: unknown layer {raw!r} (one of {LAYER_NAMES})")
    return names


def _interpreters() -> list[str]:
    """Interpreters to run sandboxed code with: this one's base first, then the system's."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    found: list[str] = []
    for path in (base, sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        real = os.path.realpath(path)
        if os.path.isfile(real) and os.access(real, os.X_OK) and real not in found:
            found.append(real)
    return found


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


class Sandbox:
    """Probes the isolation layers once, then runs judge/candidate pairs."""

    def __init__(
        self,
        *,
        memory_bytes: int = MEMORY_BYTES,
        pids_max: int = PIDS_MAX,
        output_bytes: int = OUTPUT_BYTES,
        disable: tuple[str, ...] | list[str] | set[str] = (),
    ):
        self.memory_bytes, self.pids_max, self.output_bytes = memory_bytes, pids_max, output_bytes
        self.disabled = _parse_disable(os.environ.get(DISABLE_ENV, ""))
        self.disabled |= _parse_disable(",".join(disable))
        self.is_root = os.geteuid() == 0
        self._lock = threading.Lock()
        self._plan: Plan | None = None
        self._reasons: dict[str, str] = {}
        self._counter = itertools.count()
        self._host = _namespaces()
        self._root: Path | None = None
        self._uids: _UidPool | None = None
        self._cgroups: _Cgroups | None = None
        self._bwrap: str | None = None
        self._nondumpable = False

    # --- public --------------------------------------------------------------------

    @property
    def root(self) -> Path:
        """The folder holding every run directory (0711: sandboxes may not list it)."""
        if self._root is None:
            root = Path(tempfile.mkdtemp(prefix="ci-runner-sandbox-"))
            root.chmod(0o711)
            (root / "lib").mkdir(mode=0o755)
            (root / "lib").chmod(0o755)
            shutil.copyfile(CHILD_SOURCE, root / "lib" / CHILD_SOURCE.name)
            (root / "lib" / CHILD_SOURCE.name).chmod(0o644)
            (root / "logs").mkdir(mode=0o700)
            self._root = root
            atexit.register(self.close)
        return self._root

    def probe(self) -> dict[str, Any]:
        """Choose the layers (once; trial sandboxes verify each) and report them."""
        return self.report()

    @property
    def plan(self) -> Plan:
        with self._lock:
            if self._plan is None:
                self._plan = self._choose()
            return self._plan

    def report(self) -> dict[str, Any]:
        """Which layers are active, and each missing one with why and what it means."""
        plan = self.plan
        layers = {
            "bwrap": plan.mechanism == "bwrap",
            "filesystem_isolated": plan.mechanism == "bwrap",
            "uid": f"{UID_BASE}-{UID_BASE + UID_SLOTS - 1}" if plan.uid else str(os.geteuid()),
            "pid_namespace": plan.pid_namespace,
            "net_namespace": plan.net_namespace,
            "cgroup_memory": plan.cgroup_memory,
            "cgroup_pids": plan.cgroup_pids,
            "seccomp": plan.seccomp,
            "no_new_privs": True,
            "capabilities_dropped": True,
            "evaluator_nondumpable": self._nondumpable,
            "rlimits": True,
            "separate_judge": True,
        }
        return {
            "mechanism": plan.mechanism,
            "layers": layers,
            "degraded": self._degraded(plan),
            "interpreter": plan.interpreter,
            "limits": {
                "memory_bytes": self.memory_bytes,
                "pids": self.pids_max,
                "output_bytes": self.output_bytes,
            },
        }

    def describe(self) -> list[str]:
        """Job-log lines: the layers in use, then one warning per degradation."""
        report = self.report()
        layers = report["layers"]
        active = [name for name in LAYER_NAMES if name != "uid" and layers[name] is True]
        uid = f"uid {layers['uid']}" + ("" if self.plan.uid else " (not switched)")
        lines = [
            f"sandbox: {report['mechanism']} | {uid} | "
            + (", ".join(active) or "no namespaces, cgroups or seccomp")
            + " | judge and candidate in separate processes"
        ]
        lines += [f"warning: sandbox degraded: {reason}" for reason in report["degraded"]]
        return lines

    def run_tests(
        self, *, program: str, prompt: str, tests: str, entry_point: str, timeout_s: float
    ) -> Verdict:
        """Run ``check(candidate)`` from ``prompt`` + ``tests`` against ``program``'s
        ``entry_point``, each side in its own sandbox; the judge decides."""
        plan = self.plan
        index = next(self._counter)
        with contextlib.ExitStack() as stack:
            calls_r, calls_w = os.pipe()  # judge -> candidate: arguments
            answers_r, answers_w = os.pipe()  # candidate -> judge: results
            sides = [  # role, its file and content, its pipe ends
                ("judge", "judge.json", json.dumps([prompt, tests]), calls_w, answers_r),
                ("candidate", "candidate.py", program, answers_w, calls_r),
            ]
            boxes: list[_Box] = []
            try:
                places = []
                for role, filename, content, _, _ in sides:
                    uid = self._take_uid(plan, stack)
                    folder = self._run_dir(f"{index}-{role}", uid, stack)
                    self._write(folder / filename, content, uid)
                    places.append((uid, folder))
                stack.callback(self._teardown, boxes)  # runs first: before folders and uids go
                for (role, filename, _, rpc_out, rpc_in), (uid, folder) in zip(
                    sides, places, strict=True
                ):
                    extra = {
                        "rpc_out": rpc_out,
                        "rpc_in": rpc_in,
                        "program": self._inside(plan, folder, filename),
                        "entry_point": entry_point,
                    }
                    name, fds = f"{index}-{role}", [rpc_out, rpc_in]
                    boxes.append(self._launch(plan, role, name, uid, folder, timeout_s, fds, extra))
            finally:
                for fd in (calls_r, calls_w, answers_r, answers_w):
                    os.close(fd)
            for box in boxes:
                self._expect_ready(plan, box)
            message = self._read_message(boxes[0], time.monotonic() + timeout_s)
            if message == "timeout":
                verdict = Verdict(False, f"timed out after {timeout_s:g}s")
            elif isinstance(message, dict) and isinstance(message.get("verdict"), dict):
                found = message["verdict"]
                verdict = Verdict(found.get("passed") is True, str(found.get("reason", ""))[:300])
            else:
                verdict = Verdict(False, "the judge exited without a verdict")
            stack.close()  # teardown first: the logs are complete once every process is gone
            verdict.judge_output = _tail(boxes[0].log)
            verdict.candidate_output = _tail(boxes[1].log)
            for box in boxes:
                box.log.unlink(missing_ok=True)
            if not verdict.passed and verdict.reason == "the judge exited without a verdict":
                last = verdict.judge_output.strip().splitlines()
                verdict.reason += f": {last[-1]}" if last else ""
            return verdict

    def close(self) -> None:
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    # --- choosing the layers -----------------------------------------------------------

    def _choose(self) -> Plan:
        reasons = self._reasons
        disabled = self.disabled
        off = f"disabled by {DISABLE_ENV}"
        # Untrusted code may end up running as our own uid: keep /proc/<our pid>/{mem,
        # environ,fd} from it (and from anything else without CAP_SYS_PTRACE).
        self._nondumpable = _set_dumpable(False)
        self._cgroups = _Cgroups(disabled)
        reasons.update(self._cgroups.reasons)
        uid = self.is_root and "uid" not in disabled
        if "uid" in disabled:
            reasons["uid"] = off
        elif not self.is_root:
            reasons["uid"] = f"the evaluator is not root (uid {os.geteuid()}): cannot switch"
        if uid:
            self._uids = _UidPool()
        seccomp = "seccomp" not in disabled and platform.machine() in SECCOMP_MACHINES
        if "seccomp" in disabled:
            reasons["seccomp"] = off
        elif not seccomp:
            reasons["seccomp"] = f"no syscall table for {platform.machine()}"
        interpreters = _interpreters()
        base = Plan(
            mechanism="bwrap",
            uid=uid,
            pid_namespace=True,
            net_namespace=True,
            seccomp=seccomp,
            cgroup_memory="cgroup_memory" in self._cgroups.parents_layers(),
            cgroup_pids="cgroup_pids" in self._cgroups.parents_layers(),
            interpreter=interpreters[0],
        )
        plan = None
        if "bwrap" in disabled:
            reasons["bwrap"] = off
        elif {"pid_namespace", "net_namespace"} & disabled:
            reasons["bwrap"] = f"not used: namespaces {off}"
        elif not shutil.which("bwrap"):
            reasons["bwrap"] = "bubblewrap is not installed (apt-get install bubblewrap)"
        else:
            self._bwrap = shutil.which("bwrap")
            plan = self._settle(base, [], bwrap=True)
        if plan is None:
            native = dataclasses.replace(
                base,
                mechanism="unshare",
                pid_namespace="pid_namespace" not in disabled,
                net_namespace="net_namespace" not in disabled,
            )
            for layer in ("pid_namespace", "net_namespace"):
                if layer in disabled:
                    reasons[layer] = off
            plan = self._settle(native, interpreters[1:], bwrap=False)
        if plan is None:
            raise SandboxError("the sandbox cannot start: " + "; ".join(reasons.values()))
        if plan.mechanism != "bwrap" and not (plan.pid_namespace or plan.net_namespace):
            plan.mechanism = "process"
        return plan

    def _settle(self, plan: Plan, spare: list[str], *, bwrap: bool) -> Plan | None:
        """Trial sandboxes until one starts, dropping each layer that is refused."""
        reasons = self._reasons
        spare = list(spare)
        droppable = {"uid", "seccomp", "cgroup_memory", "cgroup_pids"}
        if not bwrap:
            droppable |= {"pid_namespace", "net_namespace"}
        for _ in range(16):
            problem = self._trial(plan)
            if problem is None:
                return plan
            layer, message = problem
            if layer in ("interpreter", "setup") and spare:
                plan = dataclasses.replace(plan, interpreter=spare.pop(0))
            elif layer == "interpreter" and plan.uid:
                reasons["uid"] = f"no interpreter a fresh uid can read ({message})"
                plan = plan.without("uid")
                spare = [p for p in _interpreters() if p != plan.interpreter]
            elif layer == "namespaces" and not bwrap:
                for name in ("pid_namespace", "net_namespace"):
                    reasons[name] = message
                    plan = plan.without(name)
            elif layer in droppable and getattr(plan, layer):
                reasons[layer] = message
                plan = plan.without(layer)
            elif bwrap:
                reasons["bwrap"] = f"refused here ({layer}: {message})"
                return None
            else:
                raise SandboxError(f"the sandbox cannot start ({layer}): {message}")
        return None

    def _trial(self, plan: Plan) -> tuple[str, str] | None:
        name = f"probe-{next(self._counter)}"
        with contextlib.ExitStack() as stack:
            uid = self._take_uid(plan, stack)
            run_dir = self._run_dir(name, uid, stack)
            boxes: list[_Box] = []
            stack.callback((self.root / "logs" / f"{name}.log").unlink, missing_ok=True)
            stack.callback(self._teardown, boxes)
            try:
                boxes.append(self._launch(plan, "probe", name, uid, run_dir, 5.0, [], {}))
            except SandboxError as exc:
                layer = "cgroup_memory" if plan.cgroup_memory else "cgroup_pids"
                return layer, str(exc)
            message = self._read_message(boxes[0], time.monotonic() + SETUP_TIMEOUT_S)
            if isinstance(message, dict) and "error" in message:
                return str(message.get("layer", "setup")), str(message["error"])
            if not isinstance(message, dict) or not isinstance(message.get("ready"), dict):
                boxes[0].proc.wait()
                tail = _tail(boxes[0].log).strip().splitlines()
                return "setup", tail[-1] if tail else f"exit code {boxes[0].proc.returncode}"
            return self._check_ready(plan, boxes[0], message["ready"])

    def _degraded(self, plan: Plan) -> list[str]:
        reasons = self._reasons
        mem = f"{self.memory_bytes / (1 << 30):g} GiB"
        consequences = {
            "bwrap": "no private filesystem view: generated code can read world-readable "
            "files (the project, packages) and write to world-writable folders such as /tmp",
            "uid": f"sandboxes run as uid {os.geteuid()} without capabilities"
            + (
                " inside bubblewrap: an escape from it would act as that uid"
                if plan.mechanism == "bwrap"
                else ": files that uid owns are readable (processes holding capabilities stay "
                "out of reach), and concurrent sandboxes can read each other's files"
                if self.is_root
                else ": what that uid owns is readable (its files, and the environment of its "
                "other processes, e.g. a parent that still holds HF_TOKEN), and concurrent "
                "sandboxes can read each other's files"
            ),
            "pid_namespace": (
                "descendants are still found and killed through "
                + ("the cgroup" if plan.cgroup_pids or plan.cgroup_memory else "their uid")
                if plan.cgroup_pids or plan.cgroup_memory or plan.uid
                else "a descendant that calls setsid() can outlive the timeout"
            ),
            "net_namespace": "sockets are refused by seccomp instead"
            if plan.seccomp
            else "the network is reachable (only Python-level socket stubs)",
            "cgroup_memory": f"memory is capped per process only (RLIMIT_AS {mem}): "
            "several processes can each use that much",
            "cgroup_pids": f"forks are bounded by RLIMIT_NPROC ({self.pids_max}) for its uid"
            if plan.uid
            else "forks are unbounded (RLIMIT_NPROC does not bind root)"
            if self.is_root
            else "forks are bounded only by this user's own process limit",
            "seccomp": "no syscall filter: sockets (without a network namespace), signals to "
            "same-uid processes, ptrace and the keyring are left to the other layers",
        }
        active = {
            "bwrap": plan.mechanism == "bwrap",
            "uid": plan.uid,
            "pid_namespace": plan.pid_namespace,
            "net_namespace": plan.net_namespace,
            "cgroup_memory": plan.cgroup_memory,
            "cgroup_pids": plan.cgroup_pids,
            "seccomp": plan.seccomp,
        }
        lines = []
        for layer in LAYER_NAMES:
            if not active[layer]:
                why = reasons.get(layer, "unavailable")
                lines.append(f"{layer}: {why}; {consequences[layer]}")
        return lines

    # --- one sandbox ---------------------------------------------------------------------

    def _take_uid(self, plan: Plan, stack: contextlib.ExitStack) -> int | None:
        if not plan.uid or self._uids is None:
            return None
        uid = self._uids.acquire()
        stack.callback(self._uids.release, uid)
        return uid

    def _run_dir(self, name: str, uid: int | None, stack: contextlib.ExitStack) -> Path:
        path = self.root / name
        path.mkdir(mode=0o700)
        path.chmod(0o700)
        if uid is not None:
            os.chown(path, uid, uid)
        stack.callback(shutil.rmtree, path, True)
        return path

    @staticmethod
    def _write(path: Path, text: str, uid: int | None) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        if uid is not None:
            os.chown(path, uid, uid)

    @staticmethod
    def _inside(plan: Plan, run_dir: Path, name: str) -> str:
        return f"{SANDBOX_DIR}/{name}" if plan.mechanism == "bwrap" else str(run_dir / name)

    def _limits(self, uid: int | None, timeout_s: float) -> dict[str, int]:
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

    def _launch(
        self,
        plan: Plan,
        role: str,
        name: str,
        uid: int | None,
        run_dir: Path,
        timeout_s: float,
        fds: list[int],
        extra: dict[str, Any],
    ) -> _Box:
        assert self._cgroups is not None
        groups = self._cgroups.create(
            f"ci-runner-sandbox-{os.getpid()}-{name}",
            self.memory_bytes,
            self.pids_max,
            plan.cgroup_layers(),
        )
        ctl_r, ctl_w = os.pipe()
        log_path = self.root / "logs" / f"{name}.log"
        bwrap = plan.mechanism == "bwrap"
        child = (
            f"{CHILD_DIR}/{CHILD_SOURCE.name}"
            if bwrap
            else str(self.root / "lib" / CHILD_SOURCE.name)
        )
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
        run_argv = [
            plan.interpreter,
            "-I",
            "-S",
            "-u",
            child,
            "run",
            json.dumps(inner),
        ]  # -u: prints reach the log
        outer = {
            "ctl_fd": ctl_w,
            "mechanism": "bwrap" if bwrap else "unshare",
            "cgroups": [[g.layer, str(g.path / "cgroup.procs")] for g in groups],
            "net_namespace": plan.net_namespace,
            "pid_namespace": plan.pid_namespace,
            "run_argv": run_argv,
            "bwrap_argv": self._bwrap_argv(plan, run_dir, run_argv) if bwrap else None,
            "fds": [ctl_w, *fds],
        }
        home = SANDBOX_DIR if bwrap else str(run_dir)
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": home,
            "TMPDIR": "/tmp" if bwrap else home,
            "OMP_NUM_THREADS": "1",
        }
        command = [plan.interpreter, "-I", "-S", str(self.root / "lib" / CHILD_SOURCE.name)]
        try:
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(
                    [*command, "launch", json.dumps(outer)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=run_dir,
                    env=env,
                    pass_fds=[ctl_w, *fds],
                    start_new_session=True,
                )
        except OSError as exc:
            os.close(ctl_r)
            for group in groups:
                self._cgroups.remove(group)
            raise SandboxError(f"cannot start {plan.interpreter}: {exc}") from exc
        finally:
            os.close(ctl_w)
        return _Box(name, role, proc, ctl_r, groups, uid, log_path)

    def _bwrap_argv(self, plan: Plan, run_dir: Path, run_argv: list[str]) -> list[str]:
        assert self._bwrap is not None
        argv = [
            self._bwrap,
            "--unshare-pid",
            "--unshare-net",
            "--unshare-ipc",
            "--unshare-uts",
            "--die-with-parent",
            "--new-session",
            "--hostname",
            "sandbox",
        ]
        if not self.is_root:
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
            if _under(prefix, SYSTEM_DIRS) or not os.path.isdir(prefix):
                continue
            argv += self._bwrap_parents(prefix, made)
            argv += ["--ro-bind", prefix, prefix]
        argv += self._bwrap_parents(CHILD_DIR, made)
        argv += ["--ro-bind", str(self.root / "lib"), CHILD_DIR]
        argv += ["--bind", str(run_dir), SANDBOX_DIR, "--proc", "/proc", "--dev", "/dev"]
        # A private /tmp any uid may use; --chdir is left to the run stage (as its uid).
        argv += ["--perms", "01777", "--size", str(TMPFS_BYTES), "--tmpfs", "/tmp"]
        if self.is_root:
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
            if text == "/" or text in made or _under(text, SYSTEM_DIRS):
                continue
            made.add(text)
            argv += ["--perms", "0755", "--dir", text]
        return argv

    def _read_message(self, box: _Box, deadline: float) -> dict[str, Any] | str | None:
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

    def _expect_ready(self, plan: Plan, box: _Box) -> None:
        message = self._read_message(box, time.monotonic() + SETUP_TIMEOUT_S)
        if isinstance(message, dict) and isinstance(message.get("ready"), dict):
            problem = self._check_ready(plan, box, message["ready"])
            if problem is None:
                return
            layer, detail = problem
        elif isinstance(message, dict) and "error" in message:
            layer, detail = message.get("layer", "setup"), message["error"]
        else:
            layer, detail = "setup", (_tail(box.log).strip().splitlines() or ["no report"])[-1]
        raise SandboxError(f"{box.role} sandbox did not get its planned layers ({layer}): {detail}")

    def _check_ready(
        self, plan: Plan, box: _Box, observed: dict[str, Any]
    ) -> tuple[str, str] | None:
        """Compare what the sandbox reports with the plan; a mismatch is an error."""
        box.observed = observed
        namespaces = observed.get("namespaces") or {}
        if box.uid is not None and observed.get("uid") != box.uid:
            return "uid", f"running as uid {observed.get('uid')}, not {box.uid}"
        if observed.get("cap_eff") or observed.get("cap_prm"):
            return "capabilities", "capabilities left after setup"
        if not observed.get("no_new_privs"):
            return "no_new_privs", "no_new_privs is not set"
        if plan.seccomp and observed.get("seccomp") != 2:
            return "seccomp", "no seccomp filter in place"
        for layer, kind in (("net_namespace", "net"), ("pid_namespace", "pid")):
            if getattr(plan, layer) and namespaces.get(kind) in (None, self._host[kind]):
                return layer, f"still in the evaluator's {kind} namespace"
        if plan.mechanism == "bwrap" and namespaces.get("mnt") in (None, self._host["mnt"]):
            return "bwrap", "still in the evaluator's mount namespace"
        return None

    # --- teardown ------------------------------------------------------------------------

    def _members(self, boxes: list[_Box]) -> set[int]:
        """Every live process that belongs to one of these sandboxes."""
        found: set[int] = set()
        scan_ns, scan_uid = set(), set()
        assert self._cgroups is not None
        for box in boxes:
            if box.proc.poll() is None:
                found.add(box.proc.pid)
            if box.groups:
                for group in box.groups:
                    found |= self._cgroups.members(group)
                continue
            pid_ns = (box.observed or {}).get("namespaces", {}).get("pid")
            if pid_ns and pid_ns != self._host["pid"]:
                scan_ns.add(pid_ns)
            if box.uid is not None:
                scan_uid.add(box.uid)
        if scan_ns or scan_uid:
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                if scan_uid and _proc_uid(entry) in scan_uid:
                    found.add(int(entry))
                elif scan_ns:
                    with contextlib.suppress(OSError):
                        if os.readlink(f"/proc/{entry}/ns/pid") in scan_ns and not _zombie(entry):
                            found.add(int(entry))
        found.discard(os.getpid())
        return found

    def _teardown(self, boxes: list[_Box]) -> None:
        """Kill every process of these sandboxes, check none is left, free their cgroups."""
        assert self._cgroups is not None
        for box in boxes:
            with contextlib.suppress(OSError):
                os.killpg(box.proc.pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                box.proc.kill()
            for group in box.groups:
                self._cgroups.kill(group)
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
                self._cgroups.remove(group)
            plan = self._plan
            if box.uid is not None and not survivors and plan and plan.mechanism != "bwrap":
                # no private /tmp: clear what the (dead) sandbox uid left there
                _remove_owned_by(box.uid, ("/tmp", "/var/tmp", "/dev/shm"))
        if survivors:
            raise SandboxError(f"processes {sorted(survivors)} outlived their sandbox")


def _remove_owned_by(uid: int, folders: tuple[str, ...]) -> None:
    """Remove what a sandbox uid left in shared world-writable folders (it is dead)."""
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)


def _tail(path: Path, size: int = 4096) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - size))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


# --- module-level default, for evaluate.py ------------------------------------------

_default: Sandbox | None = None
_default_lock = threading.Lock()


def default_sandbox() -> Sandbox:
    global _default
    with _default_lock:
        if _default is None:
            _default = Sandbox()
        return _default


def prepare(stream=None) -> dict[str, Any]:
    """Probe the layers now (not on the first problem) and print them to the job log."""
    box = default_sandbox()
    box.probe()
    stream = stream or sys.stderr
    for line in box.describe():
        print(line, file=stream, flush=True)
    if _secrets is None:
        print(
            "warning: sandbox degraded: secrets were not dropped before generated code runs",
            file=stream,
            flush=True,
        )
    return summary()


def run_tests(
    *, program: str, prompt: str, tests: str, entry_point: str, timeout_s: float
) -> Verdict:
    """:meth:`Sandbox.run_tests` on the default sandbox."""
    return default_sandbox().run_tests(
        program=program, prompt=prompt, tests=tests, entry_point=entry_point, timeout_s=timeout_s
    )


def summary(box: Sandbox | None = None) -> dict[str, Any]:
    """The eval summary's ``sandbox`` entry: layers, degradations, secrets handling."""
    report = (box or default_sandbox()).report()
    secrets = dict(_secrets) if _secrets is not None else None
    dropped = bool(secrets) and not secrets["token_files_left"]
    report["layers"] = {"secrets_dropped": dropped, **report["layers"]}
    report["secrets"] = secrets
    if secrets is None:
        report["degraded"].insert(0, "secrets_dropped: drop_secrets() was not called")
    elif secrets["token_files_left"]:
        report["degraded"].insert(
            0, f"secrets_dropped: could not move {secrets['token_files_left']} (made mode 000)"
        )
    return report


__all__ = [
    "DISABLE_ENV",
    "Sandbox",
    "SandboxError",
    "Verdict",
    "drop_secrets",
    "prepare",
    "restore_secrets",
    "run_tests",
    "summary",
]
