"""job_scripts/sandbox.py against known attacks, one named test per row.

Each attack is a HumanEval completion of ``add`` whose body does the damage and
then (mostly) returns the right answer, so a passing verdict proves the attack
really ran. Each test runs under several layer sets: everything this machine
grants, and with layers switched off through ``disable=`` (as a container that
refuses ``unshare`` would). Where a layer set cannot stop an attack, the test
asserts that the report records the missing layer instead.
"""

from __future__ import annotations

import functools
import json
import os
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
JOB_SCRIPTS = REPO / "job_scripts"
if str(JOB_SCRIPTS) not in sys.path:
    sys.path.insert(0, str(JOB_SCRIPTS))

import sandbox  # noqa: E402  (a job script's sibling module, not a package)

from ci_runner.demo import humaneval_rows  # noqa: E402

ADD = next(p for p in humaneval_rows() if p["entry_point"] == "add")
TIMEOUT_S = 15.0  # runs that should pass: generous, for a loaded machine
SHORT_TIMEOUT_S = 2.0  # runs that must be cut off

# Layer sets: what the machine grants; "unshare refused" (no bwrap, no PID or network
# namespace); that and no cgroups; nothing but secrets-first and a separate judge.
FULL, NO_NS, NO_NS_CG, NONE = (), ("namespaces",), ("namespaces", "cgroups"), ("all",)
CONFIGS = {"full": FULL, "no-unshare": NO_NS, "no-unshare-no-cgroups": NO_NS_CG, "none": NONE}


@functools.cache
def box(disable: tuple[str, ...] = FULL, **limits: int) -> sandbox.Sandbox:
    """One probed sandbox per layer set (probing runs trial sandboxes)."""
    made = sandbox.Sandbox(disable=disable, allow_unisolated=True, **limits)
    made.probe()
    return made


def configs(*names: str):
    return pytest.mark.parametrize("disable", [CONFIGS[n] for n in names], ids=list(names))


def attack(body: str) -> str:
    """The model's program: ADD's prompt completed by ``body`` (indented into the function)."""
    return ADD["prompt"] + "".join(f"    {line}\n" for line in body.strip("\n").splitlines())


def run(target: sandbox.Sandbox, body: str, timeout_s: float = TIMEOUT_S) -> sandbox.Verdict:
    return target.run_tests(
        program=attack(body),
        prompt=ADD["prompt"],
        tests=ADD["test"],
        entry_point="add",
        timeout_s=timeout_s,
    )


def layers(target: sandbox.Sandbox) -> dict[str, Any]:
    return target.report()["layers"]


def uid_switched(target: sandbox.Sandbox) -> bool:
    return layers(target)["uid"] != str(os.geteuid())


def degraded(target: sandbox.Sandbox, layer: str) -> str:
    """The recorded reason a layer is missing ('' when it is active)."""
    reasons = [r for r in target.report()["degraded"] if r.startswith(f"{layer}:")]
    return reasons[0] if reasons else ""


def lines(output: str, prefix: str) -> list[str]:
    return [line[len(prefix) :].strip() for line in output.splitlines() if line.startswith(prefix)]


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                found.append(int(entry))
    return found


EVALUATOR = """
import json, os, sys
sys.path.insert(0, {job_scripts!r})
import sandbox
if {drop!r}:
    sandbox.drop_secrets()
box = sandbox.Sandbox(disable={disable!r}, allow_unisolated=True)
verdict = box.run_tests(program={program!r}, prompt={prompt!r}, tests={tests!r},
                        entry_point="add", timeout_s={timeout!r})
restored = sandbox.restore_secrets()
print("RESULT " + json.dumps({{"passed": verdict.passed, "reason": verdict.reason,
    "output": verdict.candidate_output, "summary": sandbox.summary(box), "restored": restored,
    "pid": os.getpid()}}))
"""


def run_evaluator(body: str, disable, env: dict[str, str], drop: bool = True, parent=False):
    """An evaluator in its own process (it may be attacked); (exit code, result, stdout).

    With ``parent``, a shell holding the same environment sits between us and the
    evaluator, as ``uv run`` does on HF Jobs.
    """
    script = EVALUATOR.format(
        job_scripts=str(JOB_SCRIPTS),
        drop=drop,
        disable=list(disable),
        program=attack(body),
        prompt=ADD["prompt"],
        tests=ADD["test"],
        timeout=TIMEOUT_S,
    )
    command = [sys.executable, "-"]  # the script on stdin: out of /proc/<pid>/cmdline
    if parent:  # a shell that waits (no exec): it keeps its environment all along
        command = ["/bin/sh", "-c", '"$0" -; status=$?; exit $status', sys.executable]
    proc = subprocess.run(
        command, input=script, env=env, capture_output=True, text=True, timeout=120
    )
    found = lines(proc.stdout, "RESULT ")
    return proc.returncode, (json.loads(found[0]) if found else None), proc.stdout + proc.stderr


@pytest.fixture
def world_readable_tmp():
    """A folder that any uid may enter (pytest's tmp_path is 0700), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="ci-runner-sandbox-test-"))
    folder.chmod(0o755)
    yield folder
    subprocess.run(["rm", "-rf", str(folder)], check=False)


# --- row: generated code reads files outside its temp dir, writes outside it ----------------------


@configs("full", "no-unshare", "none")
def test_files_outside_the_sandbox_are_out_of_reach(disable, world_readable_tmp):
    """/etc/shadow, a 0600 token file, the project's files; writes outside the sandbox."""
    target = box(disable)
    token = world_readable_tmp / "hf" / "token"
    token.parent.mkdir(mode=0o755)
    token.write_text("hf_fake_token_for_the_sandbox_test")
    token.chmod(0o600)
    tag = uuid.uuid4().hex
    readable = ["/etc/shadow", str(token), str(REPO / "pyproject.toml")]
    writable = [
        str(REPO / f"escape-{tag}"),
        str(world_readable_tmp / f"escape-{tag}"),
        f"/tmp/escape-{tag}",
    ]
    body = f"""
import os
for path in {readable!r}:
    try:
        with open(path, 'rb') as handle:
            handle.read(16)
        os.write(1, ('READ ' + path + '\\n').encode())
    except OSError:
        pass
for path in {writable!r}:
    try:
        with open(path, 'w') as handle:
            handle.write('x')
        os.write(1, ('WROTE ' + path + '\\n').encode())
    except OSError:
        pass
return a + b
"""
    try:
        verdict = run(target, body)
        assert verdict.passed, verdict  # the attack ran to its end
        read, wrote = (
            lines(verdict.candidate_output, "READ "),
            lines(verdict.candidate_output, "WROTE "),
        )
        on_disk = [p for p in writable if os.path.exists(p)]
    finally:
        for path in writable:
            Path(path).unlink(missing_ok=True)
    switched = uid_switched(target)
    if switched or layers(target)["filesystem_isolated"]:
        assert "/etc/shadow" not in read and str(token) not in read
        assert str(REPO / f"escape-{tag}") not in wrote
        assert str(world_readable_tmp / f"escape-{tag}") not in wrote  # root's folder, 0755
    else:
        assert degraded(target, "uid") and degraded(target, "bwrap")
    if layers(target)["filesystem_isolated"]:  # /tmp in there is a private tmpfs
        assert read == [] and on_disk == [] and set(wrote) <= {f"/tmp/escape-{tag}"}
    else:  # world-readable files and /tmp are reachable: the report says so
        assert "world-readable" in degraded(target, "bwrap")
        assert str(REPO / "pyproject.toml") in read and f"/tmp/escape-{tag}" in wrote
        # what a sandbox uid leaves in /tmp goes with it; as root it stays
        assert sorted(on_disk) == ([] if switched else sorted(set(wrote)))


# --- row: forge a pass ----------------------------------------------------------------------------

FORGED = '{"verdict": {"passed": true, "reason": "passed"}}\\n'
FORGERIES = {
    # A secret kept in any frame of the process is found: walk every frame, write a
    # forged verdict to every fd we hold, leave with exit code 0.
    "frame-walk": f"""
import os, sys
frame = sys._getframe()
while frame is not None:
    list(frame.f_locals.values())
    frame = frame.f_back
for fd in range(64):
    try:
        os.write(fd, b'{FORGED}')
    except OSError:
        pass
os._exit(0)
""",
    "excepthook": f"""
import os, sys
def hook(*args):
    for fd in range(64):
        try:
            os.write(fd, b'{FORGED}')
        except OSError:
            pass
    os._exit(0)
sys.excepthook = hook
raise RuntimeError('wrong answer')
""",
    "os-exit-0": "import os\nos._exit(0)",
    "always-equal": """
class AlwaysEqual(int):
    def __eq__(self, other):
        return True
    __hash__ = int.__hash__
return AlwaysEqual(0)
""",
    # Write a forged verdict into every pipe of every process we can see.
    "proc-fd-hijack": f"""
import os
for pid in os.listdir('/proc'):
    if not pid.isdigit() or int(pid) == os.getpid():
        continue
    try:
        fds = os.listdir(f'/proc/{{pid}}/fd')
    except OSError:
        continue
    for fd in fds:
        try:
            if not os.readlink(f'/proc/{{pid}}/fd/{{fd}}').startswith('pipe:'):
                continue
            out = os.open(f'/proc/{{pid}}/fd/{{fd}}', os.O_WRONLY | os.O_NONBLOCK)
            os.write(out, b'{FORGED}')
            os.close(out)
            os.write(1, f'HIJACKED {{pid}}/{{fd}}\\n'.encode())
        except OSError:
            pass
return a - b
""",
}


@pytest.mark.parametrize("forgery", list(FORGERIES), ids=list(FORGERIES))
@configs("full", "no-unshare", "none")
@pytest.mark.slow
def test_forged_pass_scores_zero(disable, forgery):
    target = box(disable)
    if forgery == "proc-fd-hijack" and not (uid_switched(target) or layers(target)["bwrap"]):
        # As the evaluator's uid with the host's /proc it would write into the pipes
        # of this machine's other processes of that uid (those without capabilities):
        # not run; the report records why it would not be stopped.
        assert degraded(target, "uid") and degraded(target, "bwrap")
        return
    verdict = run(target, FORGERIES[forgery])
    assert not verdict.passed, verdict
    assert "HIJACKED" not in verdict.candidate_output


def test_the_judge_still_passes_a_correct_answer_next_to_forgery_attempts():
    """Control for the test above: frame walking and an excepthook around a right
    answer still pass (writing into the candidate's own pipe would break it)."""
    body = FORGERIES["excepthook"].replace("raise RuntimeError('wrong answer')", "")
    body = body.replace("import os, sys", FORGERIES["frame-walk"].split("for fd")[0])
    assert run(box(), body + "return a + b\n").passed


# --- row: outlive the timeout ---------------------------------------------------------------------


@pytest.mark.parametrize("ending", ["timeout", "returns"])
@configs("full", "no-unshare", "no-unshare-no-cgroups", "none")
@pytest.mark.slow
def test_double_fork_setsid_grandchild_does_not_survive(disable, ending):
    target = box(disable)
    found_by = ("pid_namespace", "cgroup_memory", "cgroup_pids")
    if not (any(layers(target)[n] for n in found_by) or uid_switched(target)):
        # no PID namespace, cgroup or uid to find it by
        assert "setsid() can outlive the timeout" in degraded(target, "pid_namespace")
        return
    marker = f"ci-runner-survivor-{uuid.uuid4().hex}"
    body = f"""
import os, posix, sys, time
if not hasattr(sys, 'forked'):  # the body runs once per call: fork on the first
    sys.forked = True
    if posix.fork() == 0:
        os.setsid()
        if posix.fork() == 0:
            argv = [sys.executable, '-c', 'import time; time.sleep(60)', {marker!r}]
            os.execv(sys.executable, argv)
        os._exit(0)
    time.sleep(0.5)
{"time.sleep(60)" if ending == "timeout" else "return a + b"}
"""
    seen: list[int] = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            seen.extend(processes_with(marker))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        verdict = run(target, body, SHORT_TIMEOUT_S if ending == "timeout" else TIMEOUT_S)
        survivors = processes_with(marker)
    finally:
        done.set()
        watcher.join()
        for pid in processes_with(marker):  # ours: leave nothing behind if this fails
            os.kill(pid, 9)
    assert seen, "the grandchild never started: the test proves nothing"
    assert verdict.passed is (ending == "returns"), verdict
    assert survivors == []


# --- row: kill the evaluator ----------------------------------------------------------------------

KILL_PARENTS = """
import os, signal
targets = [os.getppid()]
try:
    with open(f'/proc/{targets[0]}/stat') as handle:
        targets.append(int(handle.read().rsplit(')', 1)[1].split()[1]))
except (OSError, ValueError, IndexError):
    pass
for pid in targets:
    if pid > 1 and pid != GUARD:
        try:
            os.kill(pid, signal.SIGKILL)
            os.write(1, f'KILLED {pid}\\n'.encode())
        except OSError as exc:
            os.write(1, f'REFUSED {pid} {exc.errno}\\n'.encode())
return a + b
"""


@pytest.mark.parametrize(
    "disable",
    [FULL, NO_NS, ("namespaces", "uid"), ("namespaces", "seccomp")],
    ids=["full", "no-unshare", "no-unshare-no-uid", "no-unshare-no-seccomp"],
)
@pytest.mark.slow
def test_kill_getppid_does_not_reach_the_evaluator(disable):
    """kill(getppid(), SIGKILL), then the grandparent too; any one layer of PID
    namespace, uid or seccomp suffices, each is tried alone."""
    target = box(disable)  # the same layers as the evaluator below will get
    if not (layers(target)["pid_namespace"] or uid_switched(target) or layers(target)["seccomp"]):
        assert "signals to same-uid processes" in degraded(target, "seccomp")
        return
    body = KILL_PARENTS.replace("GUARD", str(os.getpid()))
    code, result, output = run_evaluator(body, disable, dict(os.environ), drop=False)
    assert code == 0 and result is not None, output[-3000:]
    assert result["passed"], result
    assert lines(result["output"], "KILLED ") == []


def test_kill_getppid_without_uid_seccomp_or_namespaces_is_recorded():
    target = box(NONE)
    assert "signals to same-uid processes" in degraded(target, "seccomp")
    assert degraded(target, "uid") and degraded(target, "pid_namespace")


# --- row: fork bomb as root -----------------------------------------------------------------------

FORK_BOMB = """
import os, posix, sys, time
if hasattr(sys, 'forked'):  # the body runs once per call: attack on the first
    return a + b
sys.forked = True
forked = 0
for _ in range(300):
    try:
        if posix.fork() == 0:
            time.sleep(30)
            os._exit(0)
        forked += 1
    except OSError:
        break
os.write(1, f'FORKED {forked}\\n'.encode())
return a + b
"""


@configs("full", "no-unshare-no-cgroups", "none")
def test_fork_bomb_is_bounded(disable):
    target = box(disable, pids_max=32)
    if not (layers(target)["cgroup_pids"] or uid_switched(target)):
        assert "forks are unbounded" in degraded(target, "cgroup_pids")
        return
    verdict = run(target, FORK_BOMB)
    assert verdict.passed, verdict
    [forked] = lines(verdict.candidate_output, "FORKED ")
    assert int(forked) < 32  # not 300: the pids cgroup or RLIMIT_NPROC of the sandbox uid
    if not layers(target)["cgroup_pids"]:
        assert "RLIMIT_NPROC" in degraded(target, "cgroup_pids")


# --- row: memory across children ------------------------------------------------------------------

MEMORY_HOG = """
import os, posix, select, sys, time
if hasattr(sys, 'forked'):  # the body runs once per call: attack on the first
    return a + b
sys.forked = True
children = []
for _ in range(3):  # one after the other: each holds 150 MiB before the next starts
    ready, done = os.pipe()
    pid = posix.fork()
    if pid == 0:
        blob = bytearray(150 << 20)
        for i in range(0, len(blob), 4096):
            blob[i] = 1
        os.write(done, b'1')
        time.sleep(30)
        os._exit(0)
    os.close(done)
    select.select([ready], [], [], 5)
    os.write(1, b'HELD\\n' if os.read(ready, 1) == b'1' else b'KILLED\\n')
    os.close(ready)
    children.append(pid)
time.sleep(0.3)
alive = sum(os.waitpid(pid, os.WNOHANG) == (0, 0) for pid in children)
os.write(1, f'ALIVE {alive}\\n'.encode())
return a + b
"""


@configs("full", "no-unshare-no-cgroups")
@pytest.mark.slow
def test_memory_is_capped_across_children(disable):
    """3 children x 150 MiB, each under the per-process cap, against a 256 MiB tree cap."""
    target = box(disable, memory_bytes=256 << 20)
    verdict = run(target, MEMORY_HOG)
    assert verdict.passed, verdict
    held = verdict.candidate_output.count("HELD")
    [alive] = lines(verdict.candidate_output, "ALIVE ")
    if layers(target)["cgroup_memory"]:
        assert held >= 1 and int(alive) <= 1, verdict  # one fits; never two at once
    else:
        assert held == 3 and alive == "3", verdict  # the per-process cap lets all through ...
        assert "capped per process only" in degraded(target, "cgroup_memory")  # ... and says so


# --- row: where unshare is refused ----------------------------------------------------------------

SCAN_ANCESTORS = """
import os
secrets = [s[::-1] for s in SECRETS]  # reversed in the program text: no false hits
found, scanned = [], 0
pid, seen = os.getppid(), set()
while pid > 1 and pid not in seen:
    seen.add(pid)
    for name in ('environ', 'cmdline'):
        try:
            with open(f'/proc/{pid}/{name}', 'rb') as handle:
                data = handle.read()
        except OSError:
            continue
        scanned += 1
        found += [f'{pid}/{name}' for s in secrets if s.encode() in data]
    try:  # the process's memory: heap and anonymous mappings
        with open(f'/proc/{pid}/maps') as maps, open(f'/proc/{pid}/mem', 'rb') as mem:
            for line in maps:
                fields = line.split()
                if 'rw' not in fields[1] or (len(fields) > 5 and fields[5] != '[heap]'):
                    continue
                start, end = (int(x, 16) for x in fields[0].split('-'))
                try:
                    mem.seek(start)
                    data = mem.read(min(end - start, 64 << 20))
                except OSError:
                    continue
                scanned += 1
                found += [f'{pid}/mem' for s in secrets if s.encode() in data]
    except OSError:
        pass
    try:
        with open(f'/proc/{pid}/stat') as handle:
            pid = int(handle.read().rsplit(')', 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        break
for path in TOKEN_FILES:
    try:
        with open(path, 'rb') as handle:
            data = handle.read()
        found += [path for s in secrets if s.encode() in data]
    except OSError:
        pass
os.write(1, f'SCANNED {scanned}\\n'.encode())
for where in found:
    os.write(1, f'LEAK {where}\\n'.encode())
return a + b
"""


@pytest.mark.parametrize("parent", [False, True], ids=["evaluator", "parent-holds-token"])
@configs("no-unshare", "none")
@pytest.mark.slow
def test_without_unshare_no_secret_is_readable(disable, parent, world_readable_tmp):
    """/proc/$PPID/environ (and every ancestor's environ, cmdline and memory) and the
    token file hold no secret: secrets-first holds with every other layer off."""
    env_secret = f"hf_env{uuid.uuid4().hex}"
    file_secret = f"hf_file{uuid.uuid4().hex}"
    hf_home = world_readable_tmp / "hf"
    hf_home.mkdir(mode=0o755)
    token = hf_home / "token"
    token.write_text(file_secret)
    token.chmod(0o600)
    env = {
        **os.environ,
        "HF_TOKEN": env_secret,
        "OTHER_API_KEY": env_secret,
        "HF_HOME": str(hf_home),
    }
    body = SCAN_ANCESTORS.replace("SECRETS", repr([env_secret[::-1], file_secret[::-1]]))
    body = body.replace("TOKEN_FILES", repr([str(token)]))
    code, result, output = run_evaluator(body, disable, env, parent=parent)
    assert code == 0 and result is not None, output[-3000:]
    assert result["passed"], result
    leaks = lines(result["output"], "LEAK ")
    if parent and disable == NONE and os.geteuid() != 0:
        # Same uid, no private /proc and no capabilities to lack: the shell above the
        # evaluator still holds HF_TOKEN in its environment. Only that leaks, and the
        # report says so. (As root, dropping capabilities keeps the shell out of reach.)
        assert all(
            leak.endswith("/environ") and not leak.startswith(f"{result['pid']}/") for leak in leaks
        ), leaks
        assert "a parent that still holds HF_TOKEN" in " ".join(result["summary"]["degraded"])
        leaks = []
    assert leaks == []
    if disable == NONE:  # root without capabilities: the launcher's files are readable
        assert int(lines(result["output"], "SCANNED ")[0]) > 0, result["output"]
    summary = result["summary"]
    assert summary["layers"]["secrets_dropped"] is True
    assert summary["secrets"]["env"] == ["HF_TOKEN", "OTHER_API_KEY"]
    assert summary["secrets"]["token_files"] == [str(token)]
    assert summary["secrets"]["environ_scrubbed"] and summary["layers"]["evaluator_nondumpable"]
    for layer in ("pid_namespace", "net_namespace", "bwrap"):
        assert any(r.startswith(f"{layer}: disabled") for r in summary["degraded"]), summary
    assert env_secret not in output and file_secret not in output
    # Put back once no sandbox is left, with its mode.
    assert result["restored"] == [str(token)]
    assert token.read_text() == file_secret and stat.S_IMODE(token.stat().st_mode) == 0o600


LOOPBACK_VIA_CTYPES = """
import ctypes, os, struct
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.socket(2, 1, 0)  # AF_INET, SOCK_STREAM, straight to the syscall
if fd < 0:
    os.write(1, f'SOCKET errno {ctypes.get_errno()}\\n'.encode())
else:
    address = struct.pack('=H', 2) + struct.pack('!H', PORT) + bytes([127, 0, 0, 1]) + bytes(8)
    result = libc.connect(fd, address, len(address))
    os.write(1, f'CONNECT {result} errno {ctypes.get_errno()}\\n'.encode())
return a + b
"""


@configs("full", "no-unshare", "none")
def test_loopback_via_ctypes_is_unreachable(disable, listener):
    port, accepted = listener
    target = box(disable)
    verdict = run(target, LOOPBACK_VIA_CTYPES.replace("PORT", str(port)))
    assert verdict.passed, verdict
    time.sleep(0.3)  # let the server thread see a late connection, if any
    if layers(target)["net_namespace"] or layers(target)["seccomp"]:
        assert accepted == []
    else:
        assert "the network is reachable" in degraded(target, "net_namespace")
        assert degraded(target, "seccomp")


# --- row: two sandboxes at once -------------------------------------------------------------------


@configs("full", "no-unshare", "none")
def test_two_sandboxes_cannot_read_each_other(disable):
    target = box(disable)
    if not (uid_switched(target) or layers(target)["filesystem_isolated"]):
        assert "concurrent sandboxes can read each other's files" in degraded(target, "uid")
        return
    tag = uuid.uuid4().hex
    # It holds its files open until the test writes `release` into its folder (or 45 s,
    # inside its timeout), so the reader always looks while it runs, however loaded the CPU.
    sleeper = f"""
# other-run-{tag}
import os, sys, time
if not hasattr(sys, 'slept'):  # the body runs once per call: wait on the first
    sys.slept = end = time.monotonic() + 45
    while time.monotonic() < end and not os.path.exists('release'):
        time.sleep(0.05)
return a + b
"""
    # The reader builds the marker at run time, so its own program does not contain it.
    reader = f"""
import os
marker = ('other-run-' + {tag!r}).encode()
root = {str(target.root)!r}
paths = [os.path.join(root, f'{{n}}-{{role}}', name)
         for n in range(200) for role in ('candidate', 'judge')
         for name in ('candidate.py', 'judge.json')]
paths.append('candidate.py')  # its own, in its working directory (not listable)
for top in (root, '/tmp', '/sandbox'):  # three levels: a sandbox's files, not every clone in /tmp
    for folder, dirs, names in os.walk(top):
        if folder.count('/') - top.count('/') >= 3:
            dirs[:] = []
        paths += [os.path.join(folder, name) for name in names]
opened = 0
for path in paths:
    try:
        with open(path, 'rb') as handle:
            data = handle.read(1 << 20)
    except OSError:
        continue
    opened += 1
    if marker in data:
        os.write(1, f'FOUND {{path}}\\n'.encode())
os.write(1, f'OPENED {{opened}}\\n'.encode())
return a + b
"""
    results: dict[str, sandbox.Verdict] = {}
    other = threading.Thread(target=lambda: results.update(sleeper=run(target, sleeper, 60)))
    other.start()
    deadline = time.monotonic() + 10
    while not (
        folders := [
            p.parent for p in target.root.glob("*-candidate/candidate.py") if tag in p.read_text()
        ]
    ):
        assert time.monotonic() < deadline, "the other sandbox never started"
        time.sleep(0.02)
    verdict = run(target, reader)
    assert other.is_alive(), "the other sandbox ended before the reader looked"
    (folders[0] / "release").write_text("")
    other.join()
    assert verdict.passed and results["sleeper"].passed, (verdict, results)
    assert lines(verdict.candidate_output, "FOUND ") == []
    assert int(lines(verdict.candidate_output, "OPENED ")[0]) >= 1  # it did read (its own files)


# --- the judge/candidate channel -----------------------------------------------------------------


def test_plain_data_crosses_between_judge_and_candidate():
    """Arguments and answers cross as tagged JSON: builtin types round-trip exactly."""
    prompt = 'def echo(x):\n    """Return x."""\n'
    value = {"a": (1, 2.5, None), 3: frozenset({"s"}), (4, 5): [b"\x00", {6}, 1 + 2j, True]}
    tests = (
        f"def check(candidate):\n    value = {value!r}\n"
        "    got = candidate(value)\n"
        "    assert got == value and type(got[(4, 5)][1]) is set and type(got['a']) is tuple\n"
        "    assert candidate(float('inf')) == float('inf') and candidate(10 ** 40) == 10 ** 40\n"
        "    assert candidate(x='kw') == 'kw'\n"
    )
    verdict = box().run_tests(
        program=prompt + "    return x\n",
        prompt=prompt,
        tests=tests,
        entry_point="echo",
        timeout_s=TIMEOUT_S,
    )
    assert verdict.passed, verdict


@pytest.mark.parametrize(
    "message",
    [[1, 2], {"list": 5}, {"a": 1, "b": 2}, {"object": []}, {"dict": [[1]]}, {"set": [[1]]}],
    ids=["bare-list", "bad-payload", "two-tags", "unknown-tag", "bad-pair", "unhashable"],
)
def test_the_judge_decodes_nothing_but_plain_data(message):
    import sandbox_child

    with pytest.raises((ValueError, TypeError)):
        sandbox_child.decode(message)


# --- the report -----------------------------------------------------------------------------------


def test_drop_secrets_scrubs_the_environment_block():
    """Not only os.environ: the bytes /proc/<pid>/environ shows are overwritten too."""
    secret = f"hf_{uuid.uuid4().hex}"
    script = f"""
import os, sys
sys.path.insert(0, {str(JOB_SCRIPTS)!r})
import sandbox
secret = {secret[::-1]!r}[::-1]
def visible():
    with open('/proc/self/environ', 'rb') as handle:
        return secret.encode() in handle.read()
before = visible()
record = sandbox.drop_secrets()
print(before, visible(), 'HF_TOKEN' in os.environ, 'TOKENIZERS_PARALLELISM' in os.environ,
      sorted(record['env']))
"""
    env = {**os.environ, "HF_TOKEN": secret, "GITHUB_TOKEN": secret}
    env.update(TOKENIZERS_PARALLELISM="false", HF_HOME=tempfile.gettempdir() + "/no-such-hf")
    proc = subprocess.run(
        [sys.executable, "-"], input=script, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split(" ", 4)[:4] == ["True", "False", "False", "True"], proc.stdout
    assert "'GITHUB_TOKEN', 'HF_TOKEN'" in proc.stdout and secret not in proc.stdout


def test_layers_are_probed_recorded_and_printed():
    full, none = box(FULL), box(NONE)
    report = full.report()
    assert set(report["layers"]) >= {
        "bwrap",
        "uid",
        "pid_namespace",
        "net_namespace",
        "cgroup_memory",
        "cgroup_pids",
        "seccomp",
        "separate_judge",
    }
    for layer in sandbox.LAYER_NAMES:  # what is missing on this machine says why
        active = report["layers"][layer]
        assert (active not in (False, str(os.geteuid()))) or degraded(full, layer), layer
    assert full.report()["isolated"] is True
    assert none.report()["isolated"] is False  # root without its uid switch or bubblewrap
    assert none.report()["degraded"][0].startswith("isolation: none")
    assert len(none.report()["degraded"]) == 1 + len(sandbox.LAYER_NAMES)
    described = none.describe()
    assert described[0].startswith("sandbox: process | uid ")
    assert len([line for line in described if line.startswith("warning: sandbox degraded:")]) == 8
    summary = sandbox.summary(none)
    assert summary["layers"]["secrets_dropped"] is False  # not called in this process
    assert summary["degraded"][0].startswith("secrets_dropped:")


def test_unknown_layer_name_is_refused():
    with pytest.raises(sandbox.SandboxError, match="unknown layer 'netns'"):
        sandbox.Sandbox(disable=["netns"])


def test_the_sandbox_ships_with_the_evaluate_job():
    """HF Jobs receives evaluate.py with its helpers; sandbox.py reads sandbox_child.py."""
    from ci_runner.job_scripts import PACKAGE_DIR, bundle_files

    shipped = bundle_files(PACKAGE_DIR / "evaluate.py")
    for name in ("sandbox.py", "sandbox_child.py"):
        assert shipped[name] == (JOB_SCRIPTS / name).read_bytes()
    assert sandbox.CHILD_SOURCE == JOB_SCRIPTS / "sandbox_child.py"


def test_bubblewrap_is_used_when_installed():
    """CI installs bubblewrap (.ci/run); without it the report must say so."""
    target = box(FULL)
    if layers(target)["bwrap"]:
        assert layers(target)["filesystem_isolated"] and target.report()["mechanism"] == "bwrap"
    else:
        assert degraded(target, "bwrap")


# --- row: fill the disk ---------------------------------------------------------------------------

FILL_TMP = """
import os, sys, tempfile
if hasattr(sys, 'filled'):  # the body runs once per call: attack on the first
    return a + b
sys.filled = True
for index in range(2048):  # up to 2 GiB, 1 MiB a file (RLIMIT_FSIZE)
    try:
        with open(os.path.join(tempfile.gettempdir(), f'fill-{os.getpid()}-{index}'), 'wb') as out:
            out.write(b'x' * (1 << 20))
    except OSError as exc:
        os.write(1, f'STOPPED {index} {exc.errno}\\n'.encode())
        break
    os.write(1, f'WROTE {index + 1}\\n'.encode())
return a + b
"""


@configs("full", "no-unshare")
def test_a_sandbox_writes_no_more_than_its_quota(disable):
    """1 MiB files into its temp folder until stopped: bubblewrap's tmpfs fills (ENOSPC),
    or, on the host's /tmp, the launch stage kills the sandbox past its quota."""
    target = box(disable)
    verdict = run(target, FILL_TMP)
    wrote = [int(n) for n in lines(verdict.candidate_output, "WROTE ")]
    assert wrote, verdict  # it did write
    quota_mib = sandbox.QUOTA_BYTES >> 20
    if layers(target)["filesystem_isolated"]:
        assert verdict.passed and lines(verdict.candidate_output, "STOPPED ")
        assert max(wrote) <= quota_mib
    else:
        assert uid_switched(target)
        assert not verdict.passed and "killed: it wrote more than" in verdict.candidate_output
        assert max(wrote) < 2048, max(wrote)  # stopped long before its 2 GiB
    assert not list(Path(tempfile.gettempdir()).glob("fill-*"))  # swept, or never on the host


def test_a_sandbox_that_breaks_fails_its_problem_not_the_caller():
    """The evaluator's own folder vanishes (a tmp cleaner): that problem fails with the
    reason, nothing is raised, and the summary counts it."""
    target = sandbox.Sandbox(allow_unisolated=True)
    target.probe()
    try:
        subprocess.run(["rm", "-rf", str(target.root)], check=True)
        verdict = run(target, "return a + b")
        assert not verdict.passed and verdict.reason.startswith("the sandbox failed: ")
        assert target.report()["sandbox_failures"] == 1
    finally:
        target.close()
