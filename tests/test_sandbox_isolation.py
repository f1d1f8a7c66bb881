"""The HumanEval sandbox where users run it: every attack goes through the real path.

One evaluator process per mode does what ``evaluate.py`` does once lighteval has loaded
the benchmark: it reads the problems, calls ``evaluate.guard_generated_code`` (drop the
secrets, seal the answers, probe the sandbox, refuse when unisolated), then scores the
completions with lighteval's HumanEval metric (``humaneval_metric``, whose ``pool.map``
runs the sandboxes). The completions are the attacks, met in turn by one evaluator, as
one bad model's completions would reach it; each attack is scored by its own metric call.

Modes: root with everything this machine grants (bubblewrap when installed), root without
bubblewrap (``unshare`` and a uid per sandbox), root with no namespaces at all (a uid
per sandbox only), a laptop (non-root, user namespaces allowed, no sudo), and a
runner-like evaluator: non-root, user namespaces refused, no sudo
(``tests/unprivileged.py``), by default and with the experiment's opt-in; and the
same user granted passwordless sudo, as GitHub-hosted runners grant ``runner`` (a
sudoers drop-in for the test's duration, where sudo is installed and the tests run as
root). Each test judges by what the evaluator's report says it got, so it passes with
and without bubblewrap.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import site
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from ci_runner.demo import humaneval_rows
from tests.unprivileged import as_unprivileged, give_to, unprivileged_ids, userns_refused

REPO = Path(__file__).resolve().parents[1]
JOB_SCRIPTS = REPO / "job_scripts"
ADD = next(p for p in humaneval_rows() if p["entry_point"] == "add")
TIMEOUT_S = 15.0
OPT_IN = "evaluation.allow_unisolated_code"

MODES: dict[str, dict[str, Any]] = {
    "root": {},
    "root-no-bwrap": {"disable": "bwrap"},
    "root-no-namespaces": {"disable": "namespaces"},
    "runner": {"unprivileged": True},
    "runner-opted-in": {"unprivileged": True, "allow": True},
    "runner-with-sudo": {"unprivileged": True, "sudo": True},
    # A laptop: non-root, user namespaces allowed (bubblewrap isolates), no sudo rights.
    "laptop-with-userns": {"unprivileged": True, "userns": True},
}
MODES["runner-with-sudo-no-bwrap"] = {"unprivileged": True, "sudo": True, "disable": "bwrap"}
SUPERVISED = [
    "root",
    "root-no-bwrap",
    "root-no-namespaces",
    "runner-with-sudo",
    "runner-with-sudo-no-bwrap",
]

EVALUATOR = """
import json, os, sys, types
params = json.load(open(sys.argv[1], encoding="utf-8"))
sys.path[:0] = [params["job_scripts"], *params["site"]]
import evaluate, evaluate_humaneval as humaneval, sandbox
from lighteval.models.model_output import ModelResponse

# What lighteval has done by now: the benchmark is read, before any sandbox starts.
with open(params["data_file"], encoding="utf-8") as handle:
    problems = [json.loads(line) for line in handle]
config = evaluate.EvalConfig.from_json({
    "experiment": "sandbox",
    "run_id": "sandbox-1",
    "eval_id": "sandbox-1-final",
    "model_label": "final",
    "model": params["model"],
    "output_dir": params["output_dir"],
    "benchmarks": [{"benchmark": "humaneval", "dataset": params["data_dir"]}],
    "allow_unisolated_code": params["allow"],
})
try:
    evaluate.guard_generated_code(
        config, {"humaneval": types.SimpleNamespace(hf_repo=params["data_dir"])}
    )
except sandbox.UnisolatedError as exc:
    sandbox.restore_secrets()
    print("RESULT " + json.dumps({"refused": str(exc)}), flush=True)
    raise SystemExit(0)
metric = humaneval.humaneval_metric(timeout_s=params["timeout"])
scores = {}
for name, case in params["cases"].items():  # one attack after another, in this order
    docs = [humaneval.humaneval_prompt(problems[i], "humaneval|0") for i in case["order"]]
    responses = [ModelResponse(text=[text]) for text in case["completions"]]
    if case["one_by_one"]:  # later problems run after earlier ones are done
        scores[name] = [
            metric.compute_sample(docs=[doc], responses=[response])["pass@1"][0]
            for doc, response in zip(docs, responses)
        ]
    else:
        scores[name] = metric.compute_sample(docs=docs, responses=responses)["pass@1"]
summary = sandbox.summary()
sandbox.restore_secrets()
print("RESULT " + json.dumps({"scores": scores, "summary": summary}), flush=True)
"""


def as_runner_with_sudo(uid: int, gid: int):
    """The runner-like user, whose setuid ``sudo`` still works."""
    return as_unprivileged(uid, gid, no_new_privs=False)


@contextlib.contextmanager
def sudo_granted(uid: int):
    """Passwordless sudo for ``uid`` while the block runs (a sudoers drop-in)."""
    if os.geteuid() != 0 or not shutil.which("sudo") or not os.path.isdir("/etc/sudoers.d"):
        pytest.skip("sudo is not installed here (.ci/run installs it), or not root to grant it")
    grant = Path(f"/etc/sudoers.d/ci-runner-test-{uid}-{os.getpid()}")  # no dot: read
    grant.write_text(f"#{uid} ALL=(ALL:ALL) NOPASSWD: ALL\n")
    grant.chmod(0o440)
    try:
        yield
    finally:
        grant.unlink(missing_ok=True)


def _python_for(preexec) -> str | None:
    """An interpreter the unprivileged user may run (this one may live under /root)."""
    for candidate in (sys.executable, os.path.realpath(sys.executable), "/usr/bin/python3"):
        try:
            probe = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info[:2])"],
                preexec_fn=preexec,
                capture_output=True,
                text=True,
            )
        except OSError:  # not even executable for that user
            continue
        if probe.returncode == 0 and probe.stdout.strip() == str(tuple(sys.version_info[:2])):
            return candidate
    return None


class World:
    """A world-readable place for one evaluator: data, model, job scripts, the evaluator."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="ci-runner-isolation-"))
        self.base.chmod(0o755)
        self.data_dir = self.base / "humaneval"
        self.data_dir.mkdir()
        self.model = self.base / "model"
        self.model.mkdir()
        self.scripts = self.base / "job_scripts"  # a checkout's copy (the runner owns its own)
        shutil.copytree(JOB_SCRIPTS, self.scripts, ignore=shutil.ignore_patterns("__pycache__"))

    def write_problems(self, problems: list[dict[str, Any]]) -> Path:
        data_file = self.data_dir / "test.jsonl"
        data_file.write_text("".join(json.dumps(p) + "\n" for p in problems), encoding="utf-8")
        return data_file

    def close(self) -> None:
        subprocess.run(["rm", "-rf", str(self.base)], check=False)


@pytest.fixture
def world():
    made = World()
    yield made
    made.close()


def case(completions: list[str], order: list[int], *, one_by_one: bool = False) -> dict:
    """One attack: its completions, the problem each answers, one metric call or one each."""
    return {"completions": completions, "order": order, "one_by_one": one_by_one}


def evaluate(
    world: World,
    mode: str,
    problems: list[dict[str, Any]],
    cases: dict[str, dict[str, Any]],
    *,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run the evaluator in ``mode`` under a parent shell holding ``env`` (as ``uv run`` or
    a runner's step does); its RESULT: ``{"refused": ...}``, or ``{"scores", "summary"}``
    with the scores of each case by name."""
    pytest.importorskip("lighteval")
    settings = MODES[mode]
    preexec = None
    python = sys.executable
    if settings.get("unprivileged"):
        uid, gid = unprivileged_ids()
        preexec = as_unprivileged(uid, gid, refuse_userns=not settings.get("userns"))
        if settings.get("sudo"):
            preexec = as_runner_with_sudo(uid, gid)
        if not settings.get("userns") and not userns_refused(preexec):
            pytest.skip("user namespaces are not refused under the seccomp filter here")
        found = _python_for(preexec)
        if found is None:
            pytest.skip("no interpreter the unprivileged user may run")
        python = found
    data_file = world.write_problems(problems)
    (world.model / "config.json").write_text('{"model_type": "llama"}')
    output_dir = world.base / "out"
    output_dir.mkdir(exist_ok=True)
    params = {
        "job_scripts": str(world.scripts),
        "site": site.getsitepackages(),
        "data_file": str(data_file),
        "data_dir": str(world.data_dir),
        "model": str(world.model),
        "output_dir": str(output_dir),
        "allow": bool(settings.get("allow")),
        "cases": cases,
        "timeout": TIMEOUT_S,
    }
    (world.base / "params.json").write_text(json.dumps(params))
    (world.base / "evaluator.py").write_text(EVALUATOR)
    for path in (world.base / "params.json", world.base / "evaluator.py"):
        path.chmod(0o644)
    if settings.get("unprivileged"):
        give_to(world.base, *unprivileged_ids())
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(world.base),
        "HF_HOME": str(world.base / "hf"),
        **(env or {}),
    }
    if settings.get("disable"):
        environment["CI_RUNNER_SANDBOX_DISABLE"] = settings["disable"]
    # A shell that waits (no exec) keeps its environment, tokens included, all along.
    command = [
        "/bin/sh",
        "-c",
        '"$0" "$1" "$2"; exit $?',
        python,
        str(world.base / "evaluator.py"),
        str(world.base / "params.json"),
    ]
    granted = sudo_granted(unprivileged_ids()[0]) if settings.get("sudo") else None
    with granted or contextlib.nullcontext():
        proc = subprocess.run(
            command,
            env=environment,
            cwd=world.base,
            preexec_fn=preexec,
            capture_output=True,
            text=True,
            timeout=600,
        )
    found = [line[7:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and found, (proc.stdout + proc.stderr)[-4000:]
    result = json.loads(found[0])
    result["log"] = proc.stdout + proc.stderr
    return result


def body(code: str) -> str:
    """A completion: ``code`` as ADD's function body."""
    return "".join(f"    {line}\n" for line in code.strip("\n").splitlines())


def refused_or_isolated(result: dict[str, Any], mode: str) -> bool:
    """True when the generated code ran isolated; for a refusal, checks it says how to opt in
    (and that nothing ran); for an opted-in run, that the scores are marked unisolated."""
    if "refused" in result:
        assert not MODES[mode].get("allow"), result["refused"]
        assert OPT_IN in result["refused"] and "sudo" in result["refused"], result["refused"]
        return False
    summary = result["summary"]
    assert summary["via_sudo"] is bool(MODES[mode].get("sudo")), summary
    if MODES[mode].get("userns"):  # same uid: only bubblewrap's own view isolates it
        assert summary["mechanism"] == "bwrap" and summary["layers"]["uid"] == str(
            unprivileged_ids()[0]
        ), summary
    if not summary["isolated"]:
        assert MODES[mode].get("allow"), summary
        assert summary["degraded"][0].startswith("answers_sealed") or any(
            line.startswith("isolation: none") for line in summary["degraded"]
        )
    return bool(summary["isolated"])


# --- the attacks: each a completion, or a few, scored by one metric call ------------------

# Rewrite the judge's code, then every later problem passes.
REWRITE_THE_JUDGE = """
import glob, os, sys
forged = (
    "import json, os, sys\\n"
    "def main():\\n"
    "    config = json.loads(sys.argv[-1])\\n"
    "    fd = config.get('ctl_fd')\\n"
    "    os.write(fd, b'{\\"ready\\": {}}\\\\n{\\"verdict\\": {\\"passed\\": true}}\\\\n')\\n"
    "main()\\n"
)
targets = glob.glob('/tmp/ci-runner-sandbox-*/lib/sandbox_child.py')
targets += glob.glob(SCRIPTS + '/sandbox*.py')
rewritten = 0
for path in targets:
    try:
        with open(path, 'w') as handle:
            handle.write(forged)
        rewritten += 1
    except OSError:
        pass
return a + b if rewritten else 0
"""

# Read HF_TOKEN / GITHUB_TOKEN from the parents' environment.
READ_TOKENS = """
import os
secrets = [s[::-1] for s in SECRETS]  # reversed in the program text: no false hits
found = any(s in '\\0'.join(os.environ.values()) for s in secrets)
pid = os.getpid()
while pid > 1 and not found:
    try:
        with open(f'/proc/{pid}/environ', 'rb') as handle:
            data = handle.read()
        found = any(s.encode() in data for s in secrets)
    except OSError:
        pass
    try:
        with open(f'/proc/{pid}/stat') as handle:
            pid = int(handle.read().rsplit(')', 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        break
return a + b if found else 0
"""

# Walk the filesystem to the benchmark's answers and run the one it finds.
FIND_THE_ANSWER = """
import json, os
task = TASK
for top in ROOTS:
    for folder, dirs, names in os.walk(top):
        if folder.count('/') - top.count('/') >= 3:
            dirs[:] = []
        for name in names:
            try:
                with open(os.path.join(folder, name), encoding='utf-8') as handle:
                    lines = handle.read(1 << 20).splitlines()
            except (OSError, UnicodeDecodeError):
                continue
            for line in lines:
                if '"canonical_solution"' in line and task in line:
                    row = json.loads(line)
                    space = {}
                    exec(row['prompt'] + row['canonical_solution'], space)
                    return space[row['entry_point']](a, b)
return 0
"""

# Take the metric down from one problem: fill the disk, crash, or return bad text.
FILL_THE_DISK = """
import os, tempfile
wrote = 0
for place in (tempfile.gettempdir(), '/var/tmp', '/dev/shm', '/run/lock'):
    for index in range(1024):  # up to 1 GiB a place, 1 MiB a file (RLIMIT_FSIZE)
        try:
            with open(os.path.join(place, f'fill-{os.getpid()}-{index}'), 'wb') as handle:
                handle.write(b'x' * (1 << 20))
            wrote += 1
        except OSError:
            break
return 0
"""
CRASH = "import ctypes\nreturn ctypes.string_at(0)"

# Leave files behind in every world-writable place.
LEAVE_FILES = """
import os
for place in PLACES:
    try:
        with open(os.path.join(place, 'left-' + TAG), 'w') as handle:
            handle.write('x')
    except OSError:
        pass
return a + b
"""


def secret_problem() -> dict[str, Any]:
    """A problem only its canonical solution passes: the answer is nowhere else."""
    secret = uuid.uuid4().int % 10**9
    return {
        "task_id": f"Secret/{uuid.uuid4().hex}",
        "prompt": ADD["prompt"],
        "canonical_solution": f"    return a + b + {secret}\n",
        "test": f"def check(candidate):\n    assert candidate(2, 3) == {5 + secret}\n",
        "entry_point": "add",
    }


@pytest.mark.slow  # the evaluator imports lighteval
@pytest.mark.parametrize("mode", list(MODES))
def test_every_attack_fails(world, mode):
    """One evaluator meets each attack in turn; each must fail where the code ran isolated,
    and be refused, or run and be marked unisolated, where it could not be isolated:

    - tokens: the completion scores only if it finds HF_TOKEN or GITHUB_TOKEN in its own or
      any ancestor's environment (the evaluator, the shell above it);
    - answers: it walks the folders holding the data file (world-readable, as a checkout
      is) and runs the canonical solution it finds;
    - alone (supervised modes): a disk filler, a lone surrogate, a null byte and a
      segfault, each between good neighbours, in one parallel metric call: those four
      fail, the neighbours pass, and nothing filled stays on disk;
    - teardown (supervised modes): files left in /run/lock, /var/tmp, /dev/shm, /tmp and a
      world-writable folder of another user are gone once the problem is scored;
    - judge (last): problem 1 rewrites every sandbox_child.py it can reach (the old copy
      in the sandbox root, the checkout's job scripts); problem 2 answers 42 and must
      still fail.
    """
    secrets = [f"hf_{uuid.uuid4().hex}", f"ghs_{uuid.uuid4().hex}"]
    hidden = secret_problem()
    shared = world.base / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    tag = uuid.uuid4().hex
    places = [p for p in ("/run/lock", "/var/tmp", "/dev/shm", "/tmp") if os.path.isdir(p)]
    places.append(str(shared))
    roots = [str(world.base), "/tmp", str(world.data_dir)]
    good = ADD["canonical_solution"]
    cases = {
        "tokens": case(
            [body(READ_TOKENS.replace("SECRETS", repr([s[::-1] for s in secrets])))], [0]
        ),
        "answers": case(
            [
                body(
                    FIND_THE_ANSWER.replace("TASK", repr(hidden["task_id"])).replace(
                        "ROOTS", repr(roots)
                    )
                )
            ],
            [1],
        ),
    }
    if mode in SUPERVISED:
        bad = [
            body(FILL_THE_DISK),
            "    return a + b  # \ud800\n",
            "    return a + b\x00\n",
            body(CRASH),
        ]
        cases["alone"] = case([text for attack in bad for text in (attack, good)], [0] * 8)
        cases["teardown"] = case(
            [body(LEAVE_FILES.replace("PLACES", repr(places)).replace("TAG", repr(tag)))], [0]
        )
    rewrite = body(REWRITE_THE_JUDGE.replace("SCRIPTS", repr(str(world.scripts))))
    cases["judge"] = case([rewrite, body("return 42")], [0, 0], one_by_one=True)
    before = (world.scripts / "sandbox_child.py").read_bytes()

    result = evaluate(
        world, mode, [ADD, hidden], cases, env={"HF_TOKEN": secrets[0], "GITHUB_TOKEN": secrets[1]}
    )

    after = (world.scripts / "sandbox_child.py").read_bytes()
    log = result["log"][-3000:]
    assert not any(secret in result["log"] for secret in secrets), "tokens: printed"
    isolated = refused_or_isolated(result, mode)
    if mode in SUPERVISED:
        assert isolated, "supervised modes isolate the code"
    if "refused" in result:
        assert after == before, "judge: nothing runs once refused"
        return
    scores = result["scores"]
    if isolated:
        assert scores["tokens"] == [0.0], ("tokens", log)
        assert scores["answers"] == [0.0], ("answers", log)
        assert str(world.data_dir) in result["summary"]["answers"]["sealed"], "answers"
        assert (scores["judge"][0], after) == (0.0, before), ("judge: nothing it could write", log)
    else:  # opted in, same uid: the shell above still holds the tokens, the data is the
        # evaluator's, and the checkout's copy of the judge is rewritten (the attacks are real)
        assert scores["tokens"] == [1.0], ("tokens", log)
        assert "a parent that still holds HF_TOKEN" in " ".join(result["summary"]["degraded"])
        assert scores["answers"] == [1.0], ("answers", log)
        assert scores["judge"][0] == 1.0 and after != before, ("judge", log)
    # ... and the judge still runs the code the evaluator read before any sandbox started.
    assert scores["judge"][1] == 0.0, ("judge: a later problem passed", log)
    if mode in SUPERVISED:
        assert scores["alone"] == [0.0, 1.0] * 4, ("alone", log)
        for place in ("/tmp", "/var/tmp", "/dev/shm"):
            assert not list(Path(place).glob("fill-*")), f"alone: disk filler left in {place}"
        assert scores["teardown"] == [1.0], ("teardown: it ran to its end", log)
        left = [p for p in places if os.path.exists(os.path.join(p, f"left-{tag}"))]
        assert left == [], "teardown: files left behind"


# --- the refusal, where a user meets it ---------------------------------------------------


@pytest.mark.slow
def test_submit_refuses_unisolated_generated_code(tmp_path, tiny_fixtures, monkeypatch):
    """An evaluator that could not isolate generated code (every layer off, as root: no
    uid switch, no bubblewrap) refuses at submit, exit 8, before anything is trained."""
    from tests.conftest import cli, make_project

    root = make_project(tmp_path / "project", tiny_fixtures.model.parent, "tiny-sft.yaml")
    spec = root / "experiments" / "tiny-sft.yaml"
    gsm8k = "    - {benchmark: gsm8k, dataset: ./fixtures/data/tiny-shop}\n"
    humaneval = "    - {benchmark: humaneval, max_samples: 4}\n"
    spec.write_text(spec.read_text().replace(gsm8k, gsm8k + humaneval))
    monkeypatch.setenv("CI_RUNNER_SANDBOX_DISABLE", "all")
    done = cli(root, "submit", "experiments/tiny-sft.yaml")
    assert done.returncode == 8, done.stdout + done.stderr
    assert "experiments/tiny-sft.yaml: evaluation: refusing to run generated code" in done.stderr
    assert "allow_unisolated_code: true" in done.stderr
    assert not (root / ".ci-runner" / "jobs").exists() or not any(
        (root / ".ci-runner" / "jobs").iterdir()
    )


def test_opted_in_scores_are_marked_unisolated_in_the_ledger_and_the_report():
    """An eval summary whose HumanEval score ran unisolated: the ledger keeps the mark
    (and only there), the report shows it beside the score and says what it means."""
    from ci_runner.core.jobs import JobStatus
    from ci_runner.job_scripts.protocol import EvalSummary
    from ci_runner.ledger.model import JobState, Ledger, PhaseJob
    from ci_runner.ledger.phases import apply_phase_status
    from ci_runner.report.evaluations import UNISOLATED_MARK, UNISOLATED_NOTE
    from ci_runner.report.render import render_report
    from tests.report_ledgers import sft_ledger

    ledger = sft_ledger()
    assert "unisolated" not in render_report(ledger)  # isolated scores carry no mark
    run = ledger.runs[0]
    job = PhaseJob(
        kind="eval",
        key="final",
        model=run.output_dir,
        job_id="j",
        submitted_at="2026-12-07T00:00:00Z",
    )
    summary = EvalSummary.from_dict(
        {
            "status": "completed",
            "scores": [
                {
                    "benchmark": "humaneval",
                    "metric": "pass@1",
                    "score": 0.5,
                    "isolated": False,
                    "values": [1.0, 0.0],
                },
            ],
        }
    )
    run = apply_phase_status(
        run.model_copy(update={"phase_jobs": [job]}),
        job,
        JobStatus("j", JobState.COMPLETED),
        summary,
    )
    ledger = Ledger.model_validate_json(ledger.model_copy(update={"runs": [run]}).model_dump_json())
    marked = [ev for ev in ledger.runs[0].evaluations if ev.unisolated]
    assert [(ev.model_label, ev.score) for ev in marked] == [("final", 0.5)]
    assert [ev.unisolated for ev in ledger.runs[0].evaluations if ev.model_label == "base"] == [
        False
    ]
    report = render_report(ledger)
    assert "0.500 [" in report and f"] {UNISOLATED_MARK}" in report
    assert UNISOLATED_NOTE in report


def test_the_opt_in_is_a_validated_field_of_the_evaluation():
    from ci_runner.errors import SpecError
    from ci_runner.spec.load import parse_experiment

    text = (
        "name: x\nbase_model: org/model\nmethod: sft\ndataset: org/data\n"
        "evaluation:\n  benchmarks: [{{benchmark: humaneval}}]\n  allow_unisolated_code: {}\n"
    )
    parsed = parse_experiment(text.format("true"), "f.yaml")
    assert parsed.evaluation is not None and parsed.evaluation.allow_unisolated_code is True
    assert (
        parse_experiment(text.format("false"), "f.yaml").evaluation.allow_unisolated_code is False
    )
    with pytest.raises(SpecError) as info:
        parse_experiment(text.format("maybe"), "f.yaml")
    [issue] = info.value.issues
    assert (issue.line, issue.field) == (7, "evaluation.allow_unisolated_code")
