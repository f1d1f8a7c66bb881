"""Run untrusted Python (model-generated HumanEval code) in layered isolation.

Standard library only. ``evaluate.py`` imports it as a sibling module
(``import sandbox``); the code that runs inside the sandbox is the sibling
file ``sandbox_child.py``. This module chooses the layers and runs judge/candidate
pairs; its siblings hold the parts:

* ``sandbox_secrets.py``: secrets first (:func:`drop_secrets`, :func:`restore_secrets`);
* ``sandbox_host.py``: the host's layers, cgroups and a pool of unused uids;
* ``sandbox_launch.py``: one sandbox started for a plan, checked, torn down;
* ``processes.py``: live processes read from ``/proc``.

The API ``evaluate.py`` uses:

* :func:`drop_secrets` and :func:`seal_answers` once the model and datasets are
  loaded, before any generated code runs, and :func:`restore_secrets` when no
  sandbox is left;
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
  new PID, network, IPC and UTS namespaces and a read-only filesystem that holds
  only ``/usr``, the interpreter and the sandbox's own directory, with a sized
  private ``/tmp`` and ``/dev/shm``; otherwise the same namespaces through
  ``unshare(2)`` (no private filesystem view);
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

**Isolated, or refused.** Generated code must not reach what judges it (the
judge's code, the interpreter's files) nor the answers: that takes another uid, or
bubblewrap's own filesystem view. An evaluator that is neither root nor allowed
user namespaces (a laptop, a GitHub-hosted runner) gets the uid switch through
``sudo -n`` where that works (GitHub-hosted runners grant it): the launch stage runs
as root and supervises the sandbox. Failing that, :class:`UnisolatedError` refuses
to run generated code, unless the experiment opted in
(``evaluation.allow_unisolated_code``); then the summary says ``isolated: false``
and the report marks those scores.

**One problem, one failure.** A sandbox writes only to bounded places (bubblewrap's
sized tmpfs; without it the host's world-writable folders, under a per-sandbox quota
counted by uid, and RLIMIT_FSIZE per file) and everything its uid left there is
swept at the end. Whatever goes wrong while one problem runs (a full disk, text
that is not UTF-8, a sandbox that fails) fails that problem, with the reason, and
never the metric.

``CI_RUNNER_SANDBOX_DISABLE`` (comma-separated layer names, ``sudo``, or
``namespaces``, ``cgroups``, ``all``) switches layers off, to see and test the
degraded paths.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import sandbox_secrets
from sandbox_host import UID_BASE, UID_SLOTS, Cgroups, SandboxError, UidPool, UnisolatedError
from sandbox_launch import (
    CHILD_SOURCE,
    PLACES_SEARCH_S,
    QUOTA_BYTES,
    SETUP_TIMEOUT_S,
    TEARDOWN_TIMEOUT_S,
    Box,
    Launcher,
    Plan,
    tail,
)
from sandbox_secrets import drop_secrets, restore_secrets, seal_answers

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
ROUTES = ("sudo",)  # other ways to get a layer: `sudo -n` for the uid switch
ALIASES = {
    "namespaces": ("bwrap", "pid_namespace", "net_namespace"),
    "cgroups": ("cgroup_memory", "cgroup_pids"),
    "all": LAYER_NAMES + ROUTES,
}
OPT_IN = "evaluation.allow_unisolated_code"
SUDO_PROBE_TIMEOUT_S = 10.0

MEMORY_BYTES = 2 << 30  # per sandbox tree (cgroup) and per process (RLIMIT_AS)
PIDS_MAX = 64
OUTPUT_BYTES = 1 << 20
SECCOMP_MACHINES = ("x86_64", "aarch64")


@dataclasses.dataclass
class Verdict:
    passed: bool
    reason: str
    candidate_output: str = ""
    judge_output: str = ""


def _parse_disable(text: str) -> set[str]:
    names: set[str] = set()
    for raw in re.split(r"[\s,]+", text.strip()):
        if not raw:
            continue
        if raw in ALIASES:
            names.update(ALIASES[raw])
        elif raw in LAYER_NAMES + ROUTES:
            names.add(raw)
        else:
            raise SandboxError(
                f"{DISABLE_ENV}: unknown layer {raw!r} (one of {LAYER_NAMES + ROUTES})"
            )
    return names


def sudo_works() -> tuple[bool, str]:
    """Can this (non-root) process become root without a password? (why not, if not)"""
    path = shutil.which("sudo")
    if path is None:
        return False, "sudo is not installed"
    try:
        probe = subprocess.run(
            [path, "-n", "--", "true"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SUDO_PROBE_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"`sudo -n true` failed: {exc}"
    if probe.returncode != 0:
        said = (probe.stderr.strip().splitlines() or [f"exit code {probe.returncode}"])[-1]
        return False, f"`sudo -n true` refused: {said}"
    return True, ""


def _interpreters() -> list[str]:
    """Interpreters to run sandboxed code with: this one's base first, then the system's."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    found: list[str] = []
    for path in (base, sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        real = os.path.realpath(path)
        if os.path.isfile(real) and os.access(real, os.X_OK) and real not in found:
            found.append(real)
    return found


class Sandbox:
    """Probes the isolation layers once, then runs judge/candidate pairs."""

    def __init__(
        self,
        *,
        memory_bytes: int = MEMORY_BYTES,
        pids_max: int = PIDS_MAX,
        output_bytes: int = OUTPUT_BYTES,
        disable: tuple[str, ...] | list[str] | set[str] = (),
        allow_unisolated: bool = False,
    ):
        self.memory_bytes, self.pids_max, self.output_bytes = memory_bytes, pids_max, output_bytes
        self.allow_unisolated = allow_unisolated
        self.disabled = _parse_disable(os.environ.get(DISABLE_ENV, ""))
        self.disabled |= _parse_disable(",".join(disable))
        self.is_root = os.geteuid() == 0
        self._lock = threading.Lock()
        self._plan: Plan | None = None
        self._reasons: dict[str, str] = {}
        self._counter = itertools.count()
        self._launcher = Launcher(
            memory_bytes=memory_bytes,
            pids_max=pids_max,
            output_bytes=output_bytes,
            is_root=self.is_root,
        )
        self._nondumpable = False
        self.failures = 0  # problems failed by the sandbox itself, not by their program

    # --- public --------------------------------------------------------------------

    @property
    def root(self) -> Path:
        """The folder holding every run directory (0711: sandboxes may not list it)."""
        return self._launcher.root

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
            "isolated": plan.isolated,
            "via_sudo": plan.sudo,
            "sandbox_failures": self.failures,
            "layers": layers,
            "degraded": self._degraded(plan),
            "interpreter": plan.interpreter,
            "limits": {
                "memory_bytes": self.memory_bytes,
                "pids": self.pids_max,
                "output_bytes": self.output_bytes,
                "disk_bytes": QUOTA_BYTES,
            },
        }

    def describe(self) -> list[str]:
        """Job-log lines: the layers in use, then one warning per degradation."""
        report = self.report()
        layers = report["layers"]
        active = [name for name in LAYER_NAMES if name != "uid" and layers[name] is True]
        uid = f"uid {layers['uid']}" + (
            " (through sudo)" if self.plan.sudo else "" if self.plan.uid else " (not switched)"
        )
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
        ``entry_point``, each side in its own sandbox; the judge decides.

        Anything that goes wrong on the way fails this problem (the reason says what),
        never the caller: a full disk, text that is not UTF-8, a sandbox that broke."""
        plan = self.plan  # a refusal (UnisolatedError) is for the whole evaluation
        try:
            return self._run_pair(plan, program, prompt, tests, entry_point, timeout_s)
        except Exception as exc:  # noqa: BLE001 - one problem's failure, recorded as such
            with self._lock:
                self.failures += 1
            detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            print(f"warning: a problem failed in the sandbox itself: {detail}", file=sys.stderr)
            return Verdict(False, f"the sandbox failed: {detail}")

    def _run_pair(
        self, plan: Plan, program: str, prompt: str, tests: str, entry_point: str, timeout_s: float
    ) -> Verdict:
        launcher = self._launcher
        index = next(self._counter)
        with contextlib.ExitStack() as stack:
            calls_r, calls_w = os.pipe()  # judge -> candidate: arguments
            answers_r, answers_w = os.pipe()  # candidate -> judge: results
            sides = [  # role, its file and content, its pipe ends
                ("judge", "judge.json", json.dumps([prompt, tests]), calls_w, answers_r),
                ("candidate", "candidate.py", program, answers_w, calls_r),
            ]
            boxes: list[Box] = []
            try:
                places = []
                for role, filename, content, _, _ in sides:
                    uid = launcher.take_uid(plan, stack)
                    folder = launcher.run_dir(f"{index}-{role}", stack)
                    launcher.write(folder / filename, content, uid)
                    places.append((uid, folder))
                # runs first: before the folders and uids go
                stack.callback(launcher.teardown, boxes, plan)
                for (role, filename, _, rpc_out, rpc_in), (uid, folder) in zip(
                    sides, places, strict=True
                ):
                    extra = {
                        "rpc_out": rpc_out,
                        "rpc_in": rpc_in,
                        "program": launcher.inside(plan, folder, filename),
                        "file": filename,
                        "entry_point": entry_point,
                    }
                    name, fds = f"{index}-{role}", [rpc_out, rpc_in]
                    box = launcher.launch(plan, role, name, uid, folder, timeout_s, fds, extra)
                    boxes.append(box)
            finally:
                for fd in (calls_r, calls_w, answers_r, answers_w):
                    os.close(fd)
            for box in boxes:
                launcher.expect_ready(plan, box)
            message = launcher.read_message(boxes[0], time.monotonic() + timeout_s)
            if message == "timeout":
                verdict = Verdict(False, f"timed out after {timeout_s:g}s")
            elif isinstance(message, dict) and isinstance(message.get("verdict"), dict):
                found = message["verdict"]
                verdict = Verdict(found.get("passed") is True, str(found.get("reason", ""))[:300])
            else:
                verdict = Verdict(False, "the judge exited without a verdict")
            stack.close()  # teardown first: the logs are complete once every process is gone
            verdict.judge_output = tail(boxes[0].log)
            verdict.candidate_output = tail(boxes[1].log)
            for box in boxes:
                box.log.unlink(missing_ok=True)
            if not verdict.passed and verdict.reason == "the judge exited without a verdict":
                last = verdict.judge_output.strip().splitlines()
                verdict.reason += f": {last[-1]}" if last else ""
            return verdict

    def close(self) -> None:
        self._launcher.close()

    # --- choosing the layers -----------------------------------------------------------

    def _choose(self) -> Plan:
        reasons = self._reasons
        disabled = self.disabled
        off = f"disabled by {DISABLE_ENV}"
        # Untrusted code may end up running as our own uid: keep /proc/<our pid>/{mem,
        # environ,fd} from it (and from anything else without CAP_SYS_PTRACE).
        self._nondumpable = sandbox_secrets.set_dumpable(False)
        cgroups = self._launcher.cgroups = Cgroups(disabled, off)
        reasons.update(cgroups.reasons)
        uid = self.is_root and "uid" not in disabled
        if "uid" in disabled:
            reasons["uid"] = off
        elif not self.is_root:
            reasons["uid"] = f"the evaluator is not root (uid {os.geteuid()}): cannot switch"
        if uid:
            self._launcher.uids = UidPool()
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
            cgroup_memory="cgroup_memory" in cgroups.parents_layers(),
            cgroup_pids="cgroup_pids" in cgroups.parents_layers(),
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
            self._launcher.bwrap = shutil.which("bwrap")
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
        if plan is not None and not plan.isolated and not self.is_root:
            plan = self._through_sudo(base, plan)
        if plan is None:
            raise SandboxError("the sandbox cannot start: " + "; ".join(reasons.values()))
        if plan.mechanism != "bwrap" and not (plan.pid_namespace or plan.net_namespace):
            plan.mechanism = "process"
        if not plan.isolated and not self.allow_unisolated:
            raise UnisolatedError(self._refusal())
        if plan.uid and plan.mechanism != "bwrap":  # searched now, not on the first problem
            self._launcher.find_places()
        return plan

    def _through_sudo(self, base: Plan, fallback: Plan) -> Plan:
        """Where this user may neither switch uid nor make namespaces, `sudo -n` may: the
        launch stage then runs as root, as on HF Jobs. The fallback plan otherwise."""
        if "sudo" in self.disabled:
            self._reasons["sudo"] = f"disabled by {DISABLE_ENV}"
            return fallback
        works, why = sudo_works()
        if not works:
            self._reasons["sudo"] = why
            return fallback
        self._launcher.uids = UidPool()
        routes = []
        if self._launcher.bwrap and "bwrap" not in self.disabled:
            routes.append(dataclasses.replace(base, uid=True, sudo=True))
        routes.append(
            dataclasses.replace(
                base,
                mechanism="unshare",
                uid=True,
                sudo=True,
                pid_namespace="pid_namespace" not in self.disabled,
                net_namespace="net_namespace" not in self.disabled,
            )
        )
        for route in routes:
            try:
                plan = self._settle(route, [], bwrap=route.mechanism == "bwrap")
            except SandboxError as exc:
                self._reasons["sudo"] = str(exc)
                continue
            if plan is not None and plan.isolated:
                self._reasons.pop("uid", None)
                return plan
        self._reasons.setdefault("sudo", "sandboxes started through sudo did not switch uid")
        return fallback

    def _refusal(self) -> str:
        """Why generated code may not run here, and the ways out (the opt-in last)."""
        why = "; ".join(
            f"{layer}: {self._reasons[layer]}"
            for layer in ("uid", "bwrap", "sudo")
            if layer in self._reasons
        )
        return (
            "refusing to run generated code without isolation: it would run as this "
            f"evaluator's uid ({os.geteuid()}) with the host's filesystem, where it can "
            "rewrite how it is judged and read the benchmark's answers and the model files "
            f"({why}). Run the evaluation as root, or where `sudo -n` works (GitHub-hosted "
            "runners), or where bubblewrap may make user namespaces (apt-get install "
            "bubblewrap; on Ubuntu 24.04: sudo sysctl -w "
            "kernel.apparmor_restrict_unprivileged_userns=0); or accept scores that "
            f"generated code could have forged with `{OPT_IN}: true` in the experiment file "
            "(the report marks them unisolated)"
        )

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
            uid = self._launcher.take_uid(plan, stack)
            run_dir = self._launcher.run_dir(name, stack)
            boxes: list[Box] = []
            stack.callback((self.root / "logs" / f"{name}.log").unlink, missing_ok=True)
            stack.callback(self._launcher.teardown, boxes, self._plan)  # None: choosing
            try:
                boxes.append(self._launcher.launch(plan, "probe", name, uid, run_dir, 5.0, [], {}))
            except SandboxError as exc:
                layer = "cgroup_memory" if plan.cgroup_memory else "cgroup_pids"
                return layer, str(exc)
            message = self._launcher.read_message(boxes[0], time.monotonic() + SETUP_TIMEOUT_S)
            if isinstance(message, dict) and "error" in message:
                return str(message.get("layer", "setup")), str(message["error"])
            if not isinstance(message, dict) or not isinstance(message.get("ready"), dict):
                # Let it exit and finish its log; one that hangs is left to the teardown.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    boxes[0].proc.wait(timeout=TEARDOWN_TIMEOUT_S)
                last = tail(boxes[0].log).strip().splitlines()
                if last:
                    return "setup", last[-1]
                if boxes[0].proc.returncode is None:
                    return "setup", "no ready report, and it did not exit"
                return "setup", f"exit code {boxes[0].proc.returncode}"
            return self._launcher.check_ready(plan, boxes[0], message["ready"])

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
        if not plan.isolated:
            lines.append(
                f"isolation: none ({OPT_IN}: true): generated code runs as the evaluator's "
                "uid with the host's filesystem, where it can rewrite how later problems "
                "are judged and read the benchmark's answers; these scores are unisolated"
            )
        for layer in LAYER_NAMES:
            if not active[layer]:
                why = reasons.get(layer, "unavailable")
                lines.append(f"{layer}: {why}; {consequences[layer]}")
        if not self._launcher.places_complete:
            lines.append(
                "sweep: the search for world-writable folders stopped after "
                f"{PLACES_SEARCH_S:g}s; files a sandbox leaves in one it did not reach stay, "
                "and count against no quota"
            )
        return lines

    # --- one sandbox ---------------------------------------------------------------------


# --- module-level default, for evaluate.py ------------------------------------------

_default: Sandbox | None = None
_default_lock = threading.Lock()


def default_sandbox(*, allow_unisolated: bool | None = None) -> Sandbox:
    """The evaluation's sandbox; ``allow_unisolated`` (the experiment's opt-in) is taken
    when it is first made."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Sandbox(allow_unisolated=bool(allow_unisolated))
        elif allow_unisolated is not None and allow_unisolated != _default.allow_unisolated:
            _default.close()
            _default = Sandbox(allow_unisolated=allow_unisolated)
        return _default


def prepare(stream=None, *, allow_unisolated: bool = False) -> dict[str, Any]:
    """Probe the layers now (not on the first problem) and print them to the job log.

    Raises :class:`UnisolatedError` where generated code could not be isolated and
    ``allow_unisolated`` (the experiment's opt-in) is not given."""
    box = default_sandbox(allow_unisolated=allow_unisolated)
    box.probe()
    stream = stream or sys.stderr
    for line in box.describe():
        print(line, file=stream, flush=True)
    if sandbox_secrets.dropped() is None:
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
    secrets = sandbox_secrets.dropped()
    dropped = bool(secrets) and not secrets["token_files_left"]
    answers = sandbox_secrets.sealed()
    report["layers"] = {
        "secrets_dropped": dropped,
        "answers_sealed": bool(answers) and not answers["left"],
        **report["layers"],
    }
    report["secrets"] = secrets
    report["answers"] = answers
    if answers is None:
        report["degraded"].insert(0, "answers_sealed: seal_answers() was not called")
    elif answers["left"]:
        report["degraded"].insert(
            0, f"answers_sealed: could not restrict {answers['left']} (not this user's)"
        )
    if secrets is None:
        report["degraded"].insert(0, "secrets_dropped: drop_secrets() was not called")
    elif secrets["token_files_left"]:
        report["degraded"].insert(
            0, f"secrets_dropped: could not move {secrets['token_files_left']} (made mode 000)"
        )
    return report


def probe_main(argv: list[str]) -> int:
    """``python sandbox.py probe``: choose the layers here, print the report as JSON.

    Exit 0 when generated code would be isolated, 3 when only unisolated (the report
    says why), 4 with ``{"refused": reason}`` when it would be refused. The runner asks
    this before it submits a local evaluation."""
    if argv[1:] != ["probe"]:
        print("usage: sandbox.py probe", file=sys.stderr)
        return 2
    box = Sandbox(allow_unisolated=True)
    try:
        report = box.report()
    except SandboxError as exc:
        print(json.dumps({"refused": str(exc)}))
        return 4
    finally:
        box.close()
    if not report["isolated"]:
        box.allow_unisolated = False
        report["refused"] = box._refusal()
    print(json.dumps(report))
    return 0 if report["isolated"] else 3


__all__ = [
    "CHILD_SOURCE",
    "DISABLE_ENV",
    "Sandbox",
    "SandboxError",
    "UnisolatedError",
    "Verdict",
    "drop_secrets",
    "prepare",
    "restore_secrets",
    "run_tests",
    "seal_answers",
    "summary",
]


if __name__ == "__main__":
    sys.exit(probe_main(sys.argv))
