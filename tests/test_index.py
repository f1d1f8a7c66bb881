"""``training_reports/README.md``: the index across experiments.

A golden file from real ledgers, the committed empty state, ``ci-runner report`` writing
it once and then nothing, untrusted names made inert, and publishing two experiments to
a real bare repository, where merging one PR must leave the other mergeable.

Regenerate the golden after an intended layout change with
``UPDATE_GOLDEN=1 pytest tests/test_index.py`` and review the diff by eye.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from ci_runner.ledger.model import Evaluation, Ledger, Run
from ci_runner.ledger.store import save_ledger
from ci_runner.paths import Project
from ci_runner.publish.git import Git
from ci_runner.publish.reports import Target, publish_reports, restore_pending
from ci_runner.report.files import write_report
from ci_runner.report.index import Report, render_index
from tests.conftest import cli
from tests.publish_fixtures import EXPERIMENT, STEM, git, make_remote, make_run
from tests.report_ledgers import dpo_ledger, sweep_ledger

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden" / "index.md"
INDEX = "training_reports/README.md"
N = 164  # HumanEval's problems
OTHER = "qwen3-ultrachat-sft"
OTHER_STEM = "qwen3-0.6b-ultrachat-200k-sft"


def _passes(k: int, extra: int = 0) -> list[float]:
    """Per-problem results: the first ``k`` pass, then ``extra`` more after a gap of 20."""
    return [1.0 if i < k or 20 + k <= i < 20 + k + extra else 0.0 for i in range(N)]


def _scored(ev: Evaluation, samples: list[float]) -> Evaluation:
    return ev.model_copy(update={"samples": samples, "score": sum(samples) / len(samples)})


def codeforces_ledger(experiment: str = EXPERIMENT, gain: int = 12) -> Ledger:
    """The publishing fixture's HF Jobs run, finished and evaluated on every problem, with
    the job's billed span and price recorded."""
    run = make_run(step=100, loss=0.9, done=True, score=0.351)
    base, final = run.evaluations
    attempt = run.attempts[0].model_copy(
        update={"finished_at": "2026-11-20T10:02:39Z", "cost_usd": 1.2142}
    )
    run = run.model_copy(
        update={
            "run_id": run.run_id.replace(EXPERIMENT, experiment),
            "title": run.title.replace(EXPERIMENT, experiment),
            "attempts": [attempt],
            "usd_per_hour": 1.5,
            "evaluations": [_scored(base, _passes(50)), _scored(final, _passes(50, gain))],
        }
    )
    return Ledger(
        experiment=experiment,
        spec_path=f"experiments/{experiment}.yaml",
        report_path=f"training_reports/{STEM}.md",
        base_model=run.base_model,
        base_model_url=f"https://huggingface.co/{run.base_model}",
        dataset=run.dataset,
        method="sft",
        runs=[run],
    )


def sweep_with_samples() -> Ledger:
    """The learning-rate sweep, each final model scored on 100 problems: one clear winner."""
    sweep = sweep_ledger()
    passes = {0: 31, 1: 42, 2: 35, 3: 0}
    runs: list[Run] = []
    for i, run in enumerate(sweep.runs):
        k = passes.get(i)
        evaluations = (
            [_scored(ev, [1.0 if j < k else 0.0 for j in range(100)]) for ev in run.evaluations]
            if k is not None
            else run.evaluations
        )
        runs.append(run.model_copy(update={"evaluations": evaluations}))
    return sweep.model_copy(update={"runs": runs})


def demo_reports() -> list[Report]:
    return [
        Report("lr-sweep", sweep_with_samples()),
        Report(STEM, codeforces_ledger()),
        Report("qwen-dpo", dpo_ledger()),
    ]


def _table(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ")][1:]


# --- rendering ---------------------------------------------------------------------------


def test_index_matches_golden():
    text = render_index(demo_reports())
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.write_bytes(text.encode("utf-8"))
    assert text == GOLDEN.read_bytes().decode("utf-8")


def test_best_run_interval_delta_cost_wall_time_and_links():
    rows = _table(render_index(demo_reports()))
    by_experiment = {row.split(" | ")[0].removeprefix("| "): row for row in rows}
    qwen = by_experiment[f"[{EXPERIMENT}]({STEM}.md)"].split(" | ")
    assert qwen[1] == "humaneval pass@1"
    assert qwen[3].startswith("0.378 [") and qwen[4].startswith("+0.073 [")  # 62/164, +12
    assert qwen[5:7] == ["$1.21", "48m 30s"]
    assert "(https://huggingface.co/acme/qwen3-sft)" in qwen[7]
    assert "(https://huggingface.co/jobs/acme/6938272ec67c9f186cfe1ae3)" in qwen[7]
    sweep = by_experiment["[lr-sweep](lr-sweep.md)"]
    assert "`lr-sweep-1c0de2f4 " in sweep and "(best; beats `lr-sweep-9a8b7c6d`)" in sweep
    assert "no evaluations configured (2 completed)" in by_experiment["[qwen-dpo](qwen-dpo.md)"]


def test_a_leader_that_is_not_significant_is_not_called_best():
    close = codeforces_ledger()
    runner_up = close.runs[0].model_copy(
        update={
            "run_id": "second",
            "title": "second",
            "evaluations": [
                _scored(ev, _passes(50, 11)) if ev.model_label == "final" else ev
                for ev in close.runs[0].evaluations
            ],
        }
    )
    close = close.model_copy(update={"runs": [*close.runs, runner_up]})
    [row] = _table(render_index([Report(STEM, close)]))
    assert "(leads `second`; not significant)" in row
    assert "best" not in row


def test_order_is_by_experiment_whatever_order_the_ledgers_come_in():
    reports = demo_reports()
    assert render_index(reports) == render_index(list(reversed(reports)))
    names = [row.split("](")[0] for row in _table(render_index(reports))]
    assert names == sorted(names)


def test_the_committed_index_is_the_empty_state():
    committed = (ROOT / INDEX).read_text(encoding="utf-8")
    assert committed == render_index([])
    assert "No experiments yet" in committed and "ci-runner submit" in committed


def test_untrusted_names_are_inert():
    ledger = codeforces_ledger(experiment="x <!-- hide @octocat acme/models#1")
    run = ledger.runs[0].model_copy(update={"title": "t`` <img src=https://evil>"})
    text = render_index([Report("evil", ledger.model_copy(update={"runs": [run]}))])
    assert "&lt;!-- hide" in text and "<!-- hide" not in text
    assert "@octocat" not in text and "models#1" not in text  # no mention, no reference
    span = "``` t`` <img src=https://evil> ```"  # the title, in a code span it cannot close
    assert span in text and "<img" not in text.replace(span, "")


# --- ci-runner report ----------------------------------------------------------------------


def _save(root: Path, reports: list[Report]) -> None:
    for report in reports:
        save_ledger(Project(root).ledger_path(report.stem), report.ledger)


def test_report_writes_the_index_then_changes_nothing(tmp_path):
    _save(tmp_path, demo_reports())

    first = cli(tmp_path, "report", "--json")
    assert first.returncode == 0, first.stderr
    index = tmp_path / INDEX
    assert str(index) in json.loads(first.stdout)["changed"]
    assert index.read_bytes() == GOLDEN.read_bytes()
    stat = index.stat()

    again = cli(tmp_path, "report", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["changed"] == []
    assert (
        index.read_bytes() == GOLDEN.read_bytes() and index.stat().st_mtime_ns == stat.st_mtime_ns
    )


def test_report_with_no_ledgers_writes_the_empty_state(tmp_path):
    result = cli(tmp_path, "report")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / INDEX).read_text(encoding="utf-8") == render_index([])


# --- publish: two experiments, one merged, the other still mergeable ----------------------


def _write(work: Path, stem: str, ledger: Ledger) -> None:
    project = Project(work)
    save_ledger(project.ledger_path(stem), ledger)
    write_report(project, stem, ledger)


def _conflicts(bare: Path, ours: str, theirs: str) -> bool:
    proc = subprocess.run(
        ["git", "merge-tree", "--write-tree", "--name-only", ours, theirs],
        cwd=bare,
        capture_output=True,
        text=True,
    )
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode == 1


def _merge(tmp: Path, bare: Path, branch: str) -> None:
    """A person merges the PR on GitHub: a merge commit on main."""
    person = tmp / "person"
    if not person.exists():
        git(tmp, "clone", "--quiet", str(bare), str(person))
    git(person, "pull", "--quiet", "--ff-only", "origin", "main")
    git(person, "fetch", "--quiet", "origin", branch)
    git(person, "merge", "--quiet", "--no-ff", "-m", f"Merge {branch}", "FETCH_HEAD")
    git(person, "push", "--quiet", "origin", "main")


def test_two_experiments_publish_an_index_each_and_merge_without_conflicts(tmp_path):
    bare, work = make_remote(tmp_path)
    (work / "training_reports").mkdir()
    (work / INDEX).write_text(render_index([]))  # the committed empty state
    git(work, "add", INDEX)
    git(work, "commit", "--quiet", "-m", "training_reports: empty index")
    git(work, "push", "--quiet", "origin", "main")
    first, second = codeforces_ledger(), codeforces_ledger(OTHER, gain=30)
    _write(work, STEM, first)
    _write(work, OTHER_STEM, second)
    target = Target(None, "", "main")
    branch_a, branch_b = f"ci-runner/{EXPERIMENT}", f"ci-runner/{OTHER}"

    results = publish_reports(Project(work), Git(work), target)

    assert [r.committed for r in results] == [True, True]
    assert all(INDEX in r.files for r in results)
    both = render_index([Report(STEM, first), Report(OTHER_STEM, second)])
    assert (work / INDEX).read_text() == both  # the checkout's index: every ledger
    alone = git(bare, "show", f"{branch_a}:{INDEX}") + "\n"
    assert alone == render_index([Report(STEM, first)])  # the branch's: base + itself
    assert OTHER not in alone

    _merge(tmp_path, bare, branch_a)
    assert _conflicts(bare, "main", branch_b)  # as GitHub would see it before a publish

    tip_a = git(bare, "rev-parse", branch_a)
    again = publish_reports(Project(work), Git(work), target)

    assert [r.committed for r in again] == [False, True]
    assert git(bare, "rev-parse", branch_a) == tip_a  # merged, nothing new: untouched
    parents = git(bare, "rev-list", "--parents", "-n", "1", branch_b).split()[1:]
    assert parents[1] == git(bare, "rev-parse", "main")  # the base merged in
    assert not _conflicts(bare, "main", branch_b)
    assert git(bare, "show", f"{branch_b}:{INDEX}") + "\n" == both
    assert git(bare, "diff", "--name-only", f"main...{branch_b}").splitlines() == sorted(
        f"training_reports/{name}"
        for name in (
            "README.md",
            f"{OTHER_STEM}.ledger.json",
            f"{OTHER_STEM}.loss.svg",
            f"{OTHER_STEM}.md",
        )
    )

    tips = [git(bare, "rev-parse", b) for b in (branch_a, branch_b)]
    third = publish_reports(Project(work), Git(work), target)
    assert [r.committed for r in third] == [False, False]
    assert [git(bare, "rev-parse", b) for b in (branch_a, branch_b)] == tips

    _merge(tmp_path, bare, branch_b)
    assert git(bare, "show", f"main:{INDEX}") + "\n" == both


def test_restore_never_takes_the_index_from_a_branch(tmp_path):
    bare, work = make_remote(tmp_path)
    _write(work, STEM, codeforces_ledger())
    _write(work, OTHER_STEM, codeforces_ledger(OTHER))
    publish_reports(Project(work), Git(work), Target(None, "", "main"))
    fresh = tmp_path / "fresh"
    git(tmp_path, "clone", "--quiet", str(bare), str(fresh))

    restored = restore_pending(Project(fresh), Git(fresh))

    assert f"training_reports/{OTHER_STEM}.ledger.json" in restored
    assert INDEX not in restored and not (fresh / INDEX).exists()
    assert restore_pending(Project(fresh), Git(fresh)) == []
