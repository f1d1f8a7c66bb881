"""Run a test's subprocess the way a GitHub-hosted runner runs a step.

There a step runs as the non-root user ``runner``, and Ubuntu 24.04's AppArmor policy
refuses it unprivileged user namespaces, so ``bwrap`` and ``unshare -U`` fail. CI here
runs as root with user namespaces allowed, so a test recreates that world for one
subprocess tree: :func:`as_unprivileged` is a ``preexec_fn`` that installs a seccomp filter
refusing new user namespaces (``EPERM``, as AppArmor answers) and then drops to a uid
that owns nothing. The filter is inherited by every descendant and survives ``exec``;
``no_new_privs`` means no setuid binary (``sudo`` included) can lift it, as on a runner
whose sudo the test does not grant.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

RUNNER_UID = RUNNER_GID = 65534  # nobody: present on Debian and Ubuntu, owns nothing

# Linux ABI constants (linux/filter.h, linux/seccomp.h, linux/audit.h, asm/unistd_64.h).
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K
_CLONE_NEWUSER = 0x10000000
_ARCHES = {
    # machine: (AUDIT_ARCH, unshare, clone, clone3)
    "x86_64": (0xC000003E, 272, 56, 435),
    "aarch64": (0xC00000B7, 97, 220, 435),
}


def unprivileged_ids() -> tuple[int, int]:
    """The uid and gid a runner-like subprocess runs as."""
    return RUNNER_UID, RUNNER_GID


def _filter() -> bytes:
    """A classic-BPF program: new user namespaces fail with EPERM, clone3 with ENOSYS
    (its flags sit behind a pointer seccomp cannot read; libc then falls back to clone)."""
    arch, unshare_nr, clone_nr, clone3_nr = _ARCHES[platform.machine()]
    program = [  # (code, jump-if-true, jump-if-false, k); jumps count from the next one
        (_LD_W_ABS, 0, 0, 4),  # 0: seccomp_data.arch
        (_JEQ_K, 1, 0, arch),  # 1: → 3
        (_RET_K, 0, 0, _RET_ALLOW),  # 2: another ABI: not ours to judge
        (_LD_W_ABS, 0, 0, 0),  # 3: seccomp_data.nr
        (_JEQ_K, 0, 1, clone3_nr),  # 4: → 5, else → 6
        (_RET_K, 0, 0, _RET_ERRNO | errno.ENOSYS),  # 5
        (_JEQ_K, 2, 0, unshare_nr),  # 6: → 9
        (_JEQ_K, 1, 0, clone_nr),  # 7: → 9
        (_RET_K, 0, 0, _RET_ALLOW),  # 8
        (_LD_W_ABS, 0, 0, 16),  # 9: seccomp_data.args[0], low 32 bits: the flags
        (_JSET_K, 0, 1, _CLONE_NEWUSER),  # 10: → 11, else → 12
        (_RET_K, 0, 0, _RET_ERRNO | errno.EPERM),  # 11
        (_RET_K, 0, 0, _RET_ALLOW),  # 12
    ]
    return b"".join(struct.pack("HBBI", *ins) for ins in program)


def _install_filter(*, no_new_privs: bool = True) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    code = _filter()
    buffer = ctypes.create_string_buffer(code, len(code))

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = Prog(len(code) // 8, ctypes.addressof(buffer))
    if no_new_privs and libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def as_unprivileged(
    uid: int, gid: int, *, refuse_userns: bool = True, no_new_privs: bool = True
) -> Callable[[], None]:
    """A ``preexec_fn``: refuse user namespaces (optionally), then become ``uid:gid``.

    ``no_new_privs=False`` installs the filter while still root instead, so a setuid
    ``sudo`` still works, as on a GitHub-hosted runner (AppArmor refuses ``runner`` user
    namespaces, not sudo)."""

    def drop() -> None:
        if refuse_userns:
            _install_filter(no_new_privs=no_new_privs)
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    return drop


def userns_refused(preexec: Callable[[], None]) -> bool:
    """True when a process started with ``preexec`` cannot make a user namespace."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return True
    probe = subprocess.run([unshare, "-U", "true"], preexec_fn=preexec, capture_output=True)
    return probe.returncode != 0


def give_to(path: Path, uid: int, gid: int) -> None:
    """Make a tree the unprivileged user's own, as a runner's workspace is."""
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, uid, gid)
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)
