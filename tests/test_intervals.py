"""Eval scores a reviewer can trust: 95% intervals on every score, paired intervals on
every change from the base, and "best" only when the data can tell the models apart, in
the report, the PR body and the step summary alike.

Per-sample results here are synthetic 164-problem pass/fail vectors (HumanEval's size):
one gain large enough to be real, one that is about one standard error (the blog posts'
0.306 → 0.342), so one is significant and one is not.
"""

from __future__ import annotations

import json

from ci_runner.ledger.model import Evaluation, Ledger, RunStatus
from ci_runner.ledger.ranking import Candidate, verdict
from ci_runner.publish.pr_body import summary_block
from ci_runner.report.evaluations import evaluations_table
from ci_runner.report.render import render_report
from tests.report_ledgers import TINY, _ledger, _run, sweep_ledger

N = 164


def outcomes(passed: set[int]) -> list[float]:
    return [1.0 if i in passed else 0.0 for i in range(N)]


BASE = outcomes(set(range(50)))  # 50/164 = 0.305
SMALL_GAIN = outcomes(set(range(6, 62)))  # 56/164 = 0.341: loses 6, gains 12
BIG_GAIN = outcomes(set(range(80)))  # 80/164 = 0.488: keeps every base pass, gains 30


def ledger_with(final: list[float]) -> Ledger:
    def ev(label: str, model: str, samples: list[float]) -> Evaluation:
        return Evaluation(
            benchmark="humaneval",
            metric="pass@1",
            model_label=label,
            model=model,
            score=sum(samples) / len(samples),
            status=RunStatus.COMPLETED,
            samples=samples,
        )

    run = _run(
        "tiny-sft-d170db51",
        "sft",
        "./fixtures/data/tiny-chat.jsonl",
        evaluations=[ev("base", TINY, BASE), ev("final", "./out", final)],
    )
    return _ledger("tiny-sft", "sft", "./fixtures/data/tiny-chat.jsonl", [run])


def test_a_one_standard_error_gain_is_reported_as_no_significant_difference():
    report = render_report(ledger_with(SMALL_GAIN))
    assert "| humaneval pass@1 | `./fixtures/tiny-llama` (local) | 0.305 [0.238, 0.378] |" in report
    # paired: 12 problems gained, 6 lost; SE of the mean difference ≈ 0.026
    assert "| 0.341 [0.268, 0.415] | +0.037 [-0.012, +0.085] |" in report
    sentence = (
        "`tiny-sft-d170db51`: final vs base on humaneval pass@1: Δ +0.037 [-0.012, +0.085], "
        "no significant difference (n=164)"
    )
    assert sentence in report
    view = summary_block(ledger_with(SMALL_GAIN))  # the PR body and the step summary
    assert sentence in view and "| 0.341 [0.268, 0.415] | +0.037 [-0.012, +0.085] |" in view


def test_a_large_paired_gain_is_significant():
    table = evaluations_table(ledger_with(BIG_GAIN), with_delta=True)
    # 30 problems gained, none lost: SE ≈ 0.030, so about ±0.059
    assert "| 0.488 [0.409, 0.561] | +0.183 [+0.128, +0.244] |" in table
    assert "Δ +0.183 [+0.128, +0.244], a significant gain (n=164)" in table


def test_intervals_are_the_same_bytes_every_time():
    first = render_report(ledger_with(SMALL_GAIN))
    assert all(render_report(ledger_with(SMALL_GAIN)) == first for _ in range(3))


def test_per_sample_results_survive_the_ledger_compactly():
    ledger = ledger_with(BIG_GAIN)
    data = json.loads(ledger.model_dump_json())
    stored = data["runs"][0]["evaluations"][1]["samples"]
    assert stored == "1" * 80 + "0" * 84  # pass/fail as one string
    again = Ledger.model_validate(data)
    assert again.runs[0].evaluations[1].samples == BIG_GAIN
    assert render_report(again) == render_report(ledger)


def with_samples(ledger: Ledger, vectors: list[list[float]]) -> Ledger:
    runs = []
    for run, samples in zip(ledger.runs, vectors, strict=True):
        evs = [
            ev.model_copy(update={"samples": samples, "score": sum(samples) / len(samples)})
            for ev in run.evaluations
        ]
        runs.append(run.model_copy(update={"evaluations": evs}))
    return ledger.model_copy(update={"runs": runs})


def test_a_sweep_names_a_best_run_only_when_it_beats_the_runner_up_significantly():
    none = outcomes(set())
    close = with_samples(sweep_ledger(), [BASE, SMALL_GAIN, BASE, none, none])
    table = evaluations_table(close)
    assert "(best)" not in table
    assert "no significant difference" in table and "the interval includes 0" in table
    clear = with_samples(sweep_ledger(), [BASE, BIG_GAIN, SMALL_GAIN, none, none])
    table = evaluations_table(clear)
    assert table.count("(best)") == 1 and "**0.488 [0.409, 0.561]** (best)" in table
    assert "best: lr-sweep-1c0de2f4" in table


def test_no_best_on_a_tie_even_without_samples():
    assert verdict([Candidate("a", 0.0), Candidate("b", 0.0)]).best is None
    tied = verdict([Candidate("a", 0.5, BASE), Candidate("b", 0.5, BASE)])
    assert tied.best is None and tied.tested
    assert verdict([Candidate("a", 0.4, BIG_GAIN), Candidate("b", 0.3, BASE)]).best == "a"
