"""The child side of ``sandbox.py``: the code that runs inside a sandbox.

Standard library only, and kept runnable by any Python 3.8+ (the sandbox may use
the system interpreter rather than the evaluator's). Two stages in one file:

``launch``
    Starts as the evaluator's user (root on HF Jobs), or as root through
    ``sudo -n`` for an evaluator that is not root, outside any namespace.
    Joins the run's cgroups, then either execs bubblewrap (which makes the
    namespaces and the filesystem) or enters new namespaces itself with
    ``unshare(2)`` and forks the ``run`` stage. Either way the evaluator is never
    the direct parent of untrusted code. Where it forks (or came through sudo)
    it stays as the sandbox's supervisor: it counts the bytes the sandbox uid
    holds in the world-writable folders it can reach and kills the sandbox over
    its quota, and at the end kills every process of that uid and removes what
    it left there (:func:`supervise`).

``run``
    Drops what can be dropped: the uid (to one that owns nothing), capabilities,
    new privileges; sets rlimits, makes itself non-dumpable and installs a
    seccomp filter. It then reports what it *observes* (uid, namespaces,
    seccomp mode, capabilities) on the control fd, and only then runs
    untrusted code, in one of two roles:

    * ``candidate``: the model's program. It serves calls to its entry point
      over a pipe pair and holds nothing else: its control fd is closed first.
    * ``judge``: the benchmark's prompt and tests. ``check(candidate)`` runs
      here, with ``candidate`` a proxy that sends plain-data arguments to the
      candidate process and decodes plain-data results (no pickle, no objects:
      an answer whose ``__eq__`` always returns True cannot cross). The verdict
      goes to the judge's control fd, which the candidate never holds.

Errors before the report are written to the control fd as
``{"error": ..., "layer": ...}`` with exit code 90, so the evaluator can tell
a refused layer from a failing program.
"""

from __future__ import annotations

import builtins
import contextlib
import ctypes
import json
import numbers
import os
import platform
import resource
import select
import shutil
import signal
import socket
import stat
import struct
import sys
import time
from typing import Any

EXIT_SETUP = 90
# How often the launch stage counts what its sandbox holds on disk: it may write past
# its quota for that long (a few hundred MiB on a fast disk), not more.
QUOTA_POLL_S = 0.05
MAX_FRAME = 16 << 20
MAX_DEPTH = 64

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NEW_NAMESPACES = (
    CLONE_NEWNS
    | CLONE_NEWCGROUP
    | CLONE_NEWUTS
    | CLONE_NEWIPC
    | CLONE_NEWUSER
    | CLONE_NEWPID
    | CLONE_NEWNET
)

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2

# seccomp: syscalls untrusted code never needs, refused with an errno. The
# kernel enforces them, so ctypes or raw syscalls do not get around them.
# (execve stays allowed: the filter and no_new_privs carry over to any program.)
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
EPERM, ENOSYS = 1, 38
SYSCALLS = {  # name: (x86_64, aarch64)
    "socket": (41, 198),  # no sockets at all: the network, abstract unix sockets
    "ptrace": (101, 117),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "kill": (62, 129),  # no signals to anyone: the evaluator, the judge, other runs
    "tkill": (200, 130),
    "tgkill": (234, 131),
    "rt_sigqueueinfo": (129, 138),
    "rt_tgsigqueueinfo": (297, 240),
    "pidfd_open": (434, 434),
    "pidfd_send_signal": (424, 424),
    "pidfd_getfd": (438, 438),
    "keyctl": (250, 219),  # the kernel keyring can hold credentials
    "add_key": (248, 217),
    "request_key": (249, 218),
    "bpf": (321, 280),
    "perf_event_open": (298, 241),
    "userfaultfd": (323, 282),
    "io_uring_setup": (425, 425),  # io_uring can open sockets without socket(2)
    "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427),
    "unshare": (272, 97),
    "setns": (308, 268),
    "mount": (165, 40),
    "umount2": (166, 39),
    "pivot_root": (155, 41),
    "chroot": (161, 51),
    "open_tree": (428, 428),
    "move_mount": (429, 429),
    "fsopen": (430, 430),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "fspick": (433, 433),
    "mount_setattr": (442, 442),
    "name_to_handle_at": (303, 264),
    "open_by_handle_at": (304, 265),
    "shmget": (29, 194),  # System V IPC and message queues outlive the process
    "semget": (64, 190),
    "msgget": (68, 186),
    "mq_open": (240, 180),
}
CLONE = (56, 220)  # allowed, but not with namespace flags
CLONE3 = (435, 435)  # flags live in memory seccomp cannot read: ENOSYS, glibc falls back


class SetupError(Exception):
    """A layer that could not be set up; reported before any untrusted code runs."""

    def __init__(self, layer: str, message: str):
        super().__init__(message)
        self.layer = layer


# --- small system helpers ---------------------------------------------------------

_LIBC = None


def libc():
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


def _check(result: int) -> int:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return result


def prctl(option: int, arg2: int = 0, arg3: int = 0) -> int:
    function = libc().prctl
    function.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    return _check(function(option, arg2, arg3, 0, 0))


def unshare(flags: int) -> None:
    function = libc().unshare
    function.argtypes = [ctypes.c_int]
    _check(function(flags))


def write_file(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def write_line(fd: int, message: dict) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(fd, data) :]


def fail_setup(fd: int, error: SetupError) -> None:
    try:
        write_line(fd, {"error": str(error)[:500], "layer": error.layer})
    finally:
        os._exit(EXIT_SETUP)


# --- what a sandbox uid holds in shared folders --------------------------------------


def owned_entries(uid: int, folders, depth: int = 4):
    """Paths under ``folders`` owned by ``uid``, looking inside world-writable folders of
    others too (a sandbox may create files in them), never following symlinks."""
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if info.st_uid == uid:
                yield entry.path, info
            elif depth > 1 and stat.S_ISDIR(info.st_mode) and info.st_mode & 0o002:
                yield from owned_entries(uid, [entry.path], depth - 1)


def bytes_owned(uid: int, folders) -> int:
    """Bytes of the files ``uid`` holds under ``folders`` (what it wrote there)."""
    total = 0
    for path, info in owned_entries(uid, folders):
        if stat.S_ISDIR(info.st_mode):
            for top, _, names in os.walk(path):
                for name in names:
                    with contextlib.suppress(OSError):
                        total += os.lstat(os.path.join(top, name)).st_blocks * 512
        else:
            total += info.st_blocks * 512
    return total


def remove_owned_by(uid: int, folders) -> None:
    """Remove what a (dead) sandbox uid left in shared world-writable folders."""
    for path, info in list(owned_entries(uid, folders)):
        with contextlib.suppress(OSError):
            if stat.S_ISDIR(info.st_mode):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)


def uid_processes(uid: int) -> list:
    """Live processes whose real uid is ``uid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/status") as handle:
                fields = dict(line.split(":", 1) for line in handle if ":" in line)
        except (OSError, ValueError):
            continue
        if fields.get("State", "").split()[:1] in (["Z"], ["X"]):
            continue
        if int(fields.get("Uid", "-1").split()[0]) == uid:
            found.append(int(entry))
    return found


def kill_uid(uid: int, timeout_s: float = 5.0) -> bool:
    """SIGKILL every process of ``uid`` until none is left; False if some outlived it."""
    deadline = time.monotonic() + timeout_s
    while True:
        pids = uid_processes(uid)
        if not pids:
            return True
        if time.monotonic() > deadline:
            return False
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.005)


# --- stage 1: launch --------------------------------------------------------------


def receive_fds(config: dict) -> socket.socket:
    """sudo closes every fd above 2: the evaluator sends the pipes over the socket on
    stdin (SCM_RIGHTS). They are put at the numbers the config names; the socket stays
    open as the lifeline (EOF: the evaluator tore the sandbox down, or died)."""
    lifeline = socket.socket(fileno=fcntl_dupfd(0))  # above the numbers the pipes take
    wanted = config["fds"]
    size = socket.CMSG_LEN(len(wanted) * 4)
    _, ancillary, _, _ = lifeline.recvmsg(1, size)
    received = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            received += list(struct.unpack(f"{len(data) // 4}i", data[: len(data) // 4 * 4]))
    if len(received) != len(wanted):
        raise SetupError("sudo", f"received {len(received)} fds, expected {len(wanted)}")
    high = [fcntl_dupfd(fd) for fd in received]
    for fd in received:
        os.close(fd)
    for index, target in enumerate(wanted):  # (no zip(strict=): Python 3.8 runs this)
        os.dup2(high[index], target)
        os.close(high[index])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    return lifeline


def fcntl_dupfd(fd: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 200)


def supervise(config: dict, pid: int, lifeline) -> int:
    """Wait for the run stage, holding the sandbox to its disk quota; then (as root) kill
    every process of its uid and remove what it left in the shared folders."""
    uid, places = config.get("uid"), config.get("places") or []
    quota = config.get("quota_bytes") if uid is not None else None
    status = None
    while status is None:
        done, found = os.waitpid(pid, os.WNOHANG)
        if done:
            status = found
            break
        if lifeline is not None:
            ready, _, _ = select.select([lifeline], [], [], QUOTA_POLL_S)
            if ready and not lifeline.recv(1):
                break
        else:
            time.sleep(QUOTA_POLL_S)
        if quota and uid is not None and bytes_owned(uid, places) > quota:
            print(
                f"sandbox: killed: it wrote more than {quota >> 20} MiB to {', '.join(places)}",
                flush=True,
            )
            break
    if uid is not None and os.geteuid() == 0:
        kill_uid(uid)
    else:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    if status is None:
        _, status = os.waitpid(pid, 0)
    if uid is not None and os.geteuid() == 0:
        remove_owned_by(uid, places)
    if lifeline is not None:  # through sudo: the evaluator cannot chmod the sandbox's files
        for path in config.get("own", []):
            with contextlib.suppress(OSError):
                os.chown(path, config["owner"], config["owner"])
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 128 + (os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0)


def launch(config: dict) -> None:
    os.umask(0o022)
    if config.get("env") is not None:  # sudo resets the environment
        os.environ.clear()
        os.environ.update(config["env"])
    ctl = config["ctl_fd"]
    lifeline = None
    try:
        if config.get("receive_fds"):
            lifeline = receive_fds(config)
        for path in config.get("own", []):  # through sudo: the evaluator could not chown
            try:
                os.chown(path, config["uid"], config["gid"])
            except OSError as exc:
                message = f"cannot give {path} to uid {config['uid']}: {exc}"
                raise SetupError("uid", message) from exc
        for layer, procs in config.get("cgroups", []):
            try:
                write_file(procs, str(os.getpid()))
            except OSError as exc:
                raise SetupError(layer, f"cannot join {procs}: {exc}") from exc
        bwrap = config["mechanism"] == "bwrap"
        argv = config["bwrap_argv"] if bwrap else config["run_argv"]
        if bwrap and lifeline is None:  # bubblewrap's own tmpfs bounds what it writes
            try:
                os.execv(argv[0], argv)
            except OSError as exc:
                raise SetupError("bwrap", f"cannot run {argv[0]}: {exc}") from exc
        if not bwrap:
            enter_namespaces(config)
    except SetupError as error:
        fail_setup(ctl, error)

    pid = os.fork()
    if pid == 0:
        try:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            os.execv(argv[0], argv)
        except OSError as exc:
            fail_setup(ctl, SetupError("interpreter", f"cannot run {argv[0]}: {exc}"))
    # The launcher keeps no pipe ends: EOF must mean the sandbox is gone.
    for fd in config.get("fds", []):
        os.close(fd)
    os._exit(supervise(config, pid, lifeline))


def enter_namespaces(config: dict) -> None:
    """New network/IPC/UTS and PID namespaces, as the plan asks (no bubblewrap)."""
    if not (config["net_namespace"] or config["pid_namespace"]):
        return
    if os.geteuid() != 0:  # unprivileged: a user namespace first, mapping only ourselves
        uid, gid = os.getuid(), os.getgid()
        try:
            unshare(CLONE_NEWUSER)
            write_file("/proc/self/setgroups", "deny")
            write_file("/proc/self/uid_map", f"{uid} {uid} 1")
            write_file("/proc/self/gid_map", f"{gid} {gid} 1")
        except OSError as exc:
            raise SetupError("namespaces", f"unshare(CLONE_NEWUSER) refused: {exc}") from exc
    if config["net_namespace"]:
        try:
            unshare(CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)
        except OSError as exc:
            raise SetupError("net_namespace", f"unshare(CLONE_NEWNET) refused: {exc}") from exc
    if config["pid_namespace"]:
        try:
            unshare(CLONE_NEWPID)
        except OSError as exc:
            raise SetupError("pid_namespace", f"unshare(CLONE_NEWPID) refused: {exc}") from exc


# --- stage 2: run -----------------------------------------------------------------


def drop_privileges(config: dict) -> None:
    uid, gid = config.get("uid"), config.get("gid")
    if uid is not None:
        if gid is None:
            raise SetupError("uid", f"switching to uid {uid} needs a gid")
        try:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
        except OSError as exc:
            raise SetupError("uid", f"cannot switch to uid {uid}: {exc}") from exc
        if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
            raise SetupError("uid", f"still uid {os.getresuid()} after switching to {uid}")
    drop_capabilities()


def drop_capabilities() -> None:
    """No capabilities now, and none regained on exec (root included)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as handle:
            last = int(handle.read())
    except (OSError, ValueError):
        last = 40
    for cap in range(last + 1):
        try:
            prctl(PR_CAPBSET_DROP, cap)
        except OSError:
            break  # needs CAP_SETPCAP; no_new_privs still stops exec from regaining any
    with contextlib.suppress(OSError):
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [(name, ctypes.c_uint32) for name in ("effective", "permitted", "inheritable")]

    header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3
    try:
        _check(libc().capset(ctypes.byref(header), ctypes.byref(data)))
    except OSError as exc:
        raise SetupError("capabilities", f"capset refused: {exc}") from exc


def set_limits(limits: dict) -> None:
    for name, value in limits.items():
        kind = getattr(resource, name)
        _, hard = resource.getrlimit(kind)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        try:
            resource.setrlimit(kind, (value, value))
        except (ValueError, OSError) as exc:
            raise SetupError("rlimits", f"setrlimit({name}, {value}) refused: {exc}") from exc


def seccomp_program(machine: str) -> bytes:
    """A classic-BPF seccomp filter refusing SYSCALLS on this architecture."""
    if machine not in AUDIT_ARCH:
        raise SetupError("seccomp", f"no syscall table for {machine}")
    column = 0 if machine == "x86_64" else 1
    ld_abs, ret = 0x20, 0x06  # BPF_LD|BPF_W|BPF_ABS, BPF_RET|BPF_K
    jeq, jge, jset = 0x15, 0x35, 0x45  # BPF_JMP|BPF_{JEQ,JGE,JSET}|BPF_K
    code = []

    def op(opcode: int, k: int, jt: int = 0, jf: int = 0) -> None:
        code.append(struct.pack("=HBBI", opcode, jt, jf, k))

    op(ld_abs, 4)  # seccomp_data.arch
    op(jeq, AUDIT_ARCH[machine], 1, 0)
    op(ret, SECCOMP_RET_KILL_PROCESS)  # another ABI (i386, x32 via arch): no
    op(ld_abs, 0)  # seccomp_data.nr
    if machine == "x86_64":
        op(jge, 0x40000000, 0, 1)  # the x32 ABI shares the arch value
        op(ret, SECCOMP_RET_ERRNO | EPERM)
    for numbers_ in SYSCALLS.values():
        op(jeq, numbers_[column], 0, 1)
        op(ret, SECCOMP_RET_ERRNO | EPERM)
    op(jeq, CLONE3[column], 0, 1)
    op(ret, SECCOMP_RET_ERRNO | ENOSYS)
    op(jeq, CLONE[column], 0, 3)
    op(ld_abs, 16)  # low half of args[0]: clone's flags
    op(jset, NEW_NAMESPACES, 0, 1)
    op(ret, SECCOMP_RET_ERRNO | EPERM)
    op(ret, SECCOMP_RET_ALLOW)
    return b"".join(code)


def install_seccomp() -> None:
    program = seccomp_program(platform.machine())
    buffer = ctypes.create_string_buffer(program, len(program))

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = Program(len(program) // 8, ctypes.addressof(buffer))
    try:
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog))
    except OSError as exc:
        raise SetupError("seccomp", f"prctl(PR_SET_SECCOMP) refused: {exc}") from exc


def check_interpreter() -> None:
    """The interpreter's own files must be readable under the new uid."""
    import importlib

    for name in ("decimal", "fractions", "statistics", "string"):
        if name not in sys.modules:
            try:
                importlib.import_module(name)
            except ImportError as exc:
                raise SetupError("interpreter", f"{sys.executable}: {exc}") from exc
            return


def namespaces() -> dict:
    """This process's namespaces (the evaluator reads its own with this function too)."""
    found: dict[str, str | None] = {}
    for kind in ("net", "pid", "mnt", "user", "ipc"):
        try:
            found[kind] = os.readlink(f"/proc/self/ns/{kind}")
        except OSError:
            found[kind] = None
    return found


def observe() -> dict:
    """What this process really got, for the evaluator to check against its plan."""
    status = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            status[key] = value.strip()
    return {
        "uid": os.getuid(),
        "euid": os.geteuid(),
        "cap_eff": int(status.get("CapEff", "0"), 16),
        "cap_prm": int(status.get("CapPrm", "0"), 16),
        "no_new_privs": status.get("NoNewPrivs") == "1",
        "seccomp": int(status.get("Seccomp", "0")),
        "namespaces": namespaces(),
    }


def run(config: dict) -> None:
    ctl = config["ctl_fd"]
    try:
        drop_privileges(config)
        try:
            prctl(PR_SET_NO_NEW_PRIVS, 1)
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # reset by the uid change
            prctl(PR_SET_DUMPABLE, 0)  # /proc/<pid>/{mem,environ,fd}: not for same-uid peers
        except OSError as exc:
            raise SetupError("prctl", f"prctl refused: {exc}") from exc
        set_limits(config["limits"])
        if config["seccomp"]:
            install_seccomp()
        check_interpreter()
        if config.get("cwd"):
            os.chdir(config["cwd"])
        observed = observe()
    except SetupError as error:
        fail_setup(ctl, error)
    except Exception as exc:  # a bug or an unusable interpreter: still before untrusted code
        fail_setup(ctl, SetupError("setup", f"{type(exc).__name__}: {exc}"))
    write_line(ctl, {"ready": observed})

    role = config["role"]
    if role == "probe":
        os._exit(0)
    if config.get("socket_seatbelt"):
        block_sockets()
    if role == "candidate":
        os.close(ctl)
        serve_candidate(config)
    elif role == "judge":
        judge(config, ctl)
    for stream in (sys.stdout, sys.stderr):  # what it printed, for the evaluator's log
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


def block_sockets() -> None:
    """Python-level socket stubs: a seatbelt used only when neither a network
    namespace nor seccomp is available (ctypes gets around it)."""
    import _socket
    import socket

    def refuse(*args, **kwargs):
        raise PermissionError(13, "network access is disabled in the sandbox")

    class Refused(_socket.socket):
        def __init__(self, *args, **kwargs):
            refuse()

    for module in (socket, _socket):
        for name in ("socket", "SocketType"):
            setattr(module, name, Refused)
        for name in ("socketpair", "fromfd", "create_connection", "getaddrinfo"):
            if hasattr(module, name):
                setattr(module, name, refuse)


# --- plain-data encoding between judge and candidate ------------------------------


def encode(value, depth: int = 0):
    """Plain data to JSON-able tagged form (the candidate's side: a convenience,
    not a trust boundary; the judge's ``decode`` is the boundary)."""
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    if value is None or isinstance(value, bool):
        return None if value is None else bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return {"float": repr(float(value))}
    if isinstance(value, numbers.Complex):
        return {"complex": [repr(float(value.real)), repr(float(value.imag))]}
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": bytes(value).hex()}
    kinds = ((list, "list"), (tuple, "tuple"), (frozenset, "frozenset"), (set, "set"))
    for kind, tag in kinds:
        if isinstance(value, kind):
            return {tag: [encode(item, depth + 1) for item in value]}
    if isinstance(value, dict):
        return {"dict": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    raise TypeError(f"a {type(value).__name__} is not plain data")


def decode(value, depth: int = 0):
    """Tagged JSON back to plain builtins only: nothing from the candidate runs here."""
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    if value is None or type(value) in (bool, int, str):
        return value
    if type(value) is dict and len(value) == 1:
        ((tag, payload),) = value.items()
        if tag == "float" and type(payload) is str:
            return float(payload)
        if tag == "complex" and type(payload) is list and len(payload) == 2:
            return complex(float(payload[0]), float(payload[1]))
        if tag == "bytes" and type(payload) is str:
            return bytes.fromhex(payload)
        pairs = type(payload) is list and all(type(p) is list and len(p) == 2 for p in payload)
        if tag == "dict" and pairs:
            return {decode(k, depth + 1): decode(v, depth + 1) for k, v in payload}
        kinds = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}
        if tag in kinds and type(payload) is list:
            return kinds[tag](decode(item, depth + 1) for item in payload)
    raise ValueError("the candidate sent something that is not plain data")


def read_exact(fd: int, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int):
    header = read_exact(fd, 4)
    if header is None:
        return None
    (size,) = struct.unpack(">I", header)
    if size > MAX_FRAME:
        raise ValueError(f"message of {size} bytes is over the {MAX_FRAME} limit")
    body = read_exact(fd, size)
    if body is None:
        return None
    return json.loads(body.decode("utf-8"))


def write_frame(fd: int, message) -> None:
    body = json.dumps(message).encode("utf-8")
    data = struct.pack(">I", len(body)) + body
    while data:
        data = data[os.write(fd, data) :]


def describe(exc: BaseException) -> dict:
    return {"type": type(exc).__name__, "message": str(exc)[:300]}


# --- roles ------------------------------------------------------------------------


def serve_candidate(config: dict) -> None:
    """Load the model's program, then answer calls to its entry point until EOF."""
    calls, answers = config["rpc_in"], config["rpc_out"]
    with open(config["program"], encoding="utf-8") as handle:
        source = handle.read()
    namespace: dict[str, Any] = {"__name__": "__candidate__", "__builtins__": builtins}
    function: Any = None
    error = None
    try:
        exec(compile(source, "candidate.py", "exec"), namespace)
        function = namespace.get(config["entry_point"])
        if not callable(function):
            error = {"type": "NameError", "message": f"no function {config['entry_point']}"}
    except BaseException as exc:  # SystemExit too: the program did not load
        error = describe(exc)
    while True:
        request = read_frame(calls)
        if request is None:
            return
        if error is not None:
            write_frame(answers, {"error": error})
            continue
        try:
            args = [decode(arg) for arg in request["args"]]
            kwargs = {key: decode(arg) for key, arg in request["kwargs"].items()}
            reply = {"ok": encode(function(*args, **kwargs))}
        except BaseException as exc:
            reply = {"error": describe(exc)}
        write_frame(answers, reply)


class CandidateGone(Exception):
    """The candidate process exited or broke the protocol."""


def exception_from(error) -> BaseException:
    name = error.get("type") if isinstance(error, dict) else None
    message = str(error.get("message", "")) if isinstance(error, dict) else ""
    kind = getattr(builtins, name, None) if isinstance(name, str) else None
    if isinstance(kind, type) and issubclass(kind, Exception):
        try:
            return kind(message)
        except Exception:
            pass
    return RuntimeError(f"{name}: {message}")


def judge(config: dict, ctl: int) -> None:
    """Run the tests against a proxy of the candidate; report the verdict on ``ctl``."""
    calls, answers = config["rpc_out"], config["rpc_in"]
    entry_point = config["entry_point"]

    def candidate(*args, **kwargs):
        try:
            write_frame(
                calls,
                {
                    "args": [encode(a) for a in args],
                    "kwargs": {str(k): encode(v) for k, v in kwargs.items()},
                },
            )
            reply = read_frame(answers)
        except (OSError, ValueError) as exc:
            raise CandidateGone(f"the candidate broke the protocol: {exc}") from None
        if reply is None:
            raise CandidateGone("the candidate exited before answering")
        if type(reply) is not dict:
            raise CandidateGone("the candidate sent a malformed reply")
        if "error" in reply:
            raise exception_from(reply["error"])
        if "ok" not in reply:
            raise CandidateGone("the candidate sent a malformed reply")
        try:
            return decode(reply["ok"])
        except (ValueError, TypeError, RecursionError) as exc:
            raise CandidateGone(str(exc)) from None

    candidate.__name__ = entry_point
    with open(config["program"], encoding="utf-8") as handle:
        prompt, tests = json.load(handle)
    namespace: dict[str, Any] = {"__name__": "__judge__", "__builtins__": builtins}
    try:
        exec(compile(prompt, "prompt.py", "exec"), namespace)  # helpers the tests use
        namespace[entry_point] = candidate
        exec(compile(tests, "tests.py", "exec"), namespace)
        namespace["check"](candidate)
        verdict = {"passed": True, "reason": "passed"}
    except BaseException as exc:
        detail = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
        verdict = {"passed": False, "reason": detail.splitlines()[0][:300] if detail else "failed"}
    sys.stdout.flush()
    write_line(ctl, {"verdict": verdict})


def main() -> None:
    stage, config = sys.argv[1], json.loads(sys.argv[2])
    if stage == "launch":
        launch(config)
    elif stage == "run":
        run(config)
    else:
        raise SystemExit(f"unknown stage {stage!r}")


if __name__ == "__main__":
    main()
