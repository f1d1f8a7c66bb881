"""HumanEval for ``evaluate.py``: greedy completion, then pass@1 in the sandbox.

The ``openai/openai_humaneval`` format (lighteval has no HumanEval of its own). The
completion runs in one sandbox, the prompt and tests in another that decides the
verdict (``sandbox.py`` beside this file, which lists the layers). Standard library
only at import; lighteval is imported inside the functions that use it.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sandbox
from evaluate_tasks import generative_metric, generative_task, response_text, truncate_at_stops

HUMANEVAL_REPO = "openai/openai_humaneval"
# The stop sequences of the original HumanEval harness: a new top-level statement
# means the function body is over.
HUMANEVAL_STOP = ["\ndef", "\nclass", "\nif __name__", "\nprint"]
SANDBOX_TIMEOUT_S = 10.0
SANDBOX_WORKERS = max(1, min(8, os.cpu_count() or 1))


_FENCE = re.compile(r"```[ \t]*[\w+-]*[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def build_candidate(problem: dict[str, Any], completion: str) -> str:
    """The model's side of a HumanEval problem: the prompt completed by the model.

    Base models continue the prompt's function body. Chat models tend to answer
    with a fenced code block holding the whole function: that block then replaces
    the prompt's function, keeping what the prompt defines above it (imports,
    helpers).
    """
    entry_point = problem["entry_point"]
    fenced = _FENCE.search(completion)
    code = fenced.group(1) if fenced else completion
    defines_entry = re.search(rf"^def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE)
    if defines_entry:
        code = truncate_at_stops(code, ["\nif __name__"])
        return _prompt_header(problem["prompt"], entry_point) + code
    return problem["prompt"] + truncate_at_stops(code, HUMANEVAL_STOP)


def _prompt_header(prompt: str, entry_point: str) -> str:
    """The part of a HumanEval prompt above the entry point's ``def``."""
    match = re.search(rf"^def\s+{re.escape(entry_point)}\s*\(", prompt, re.MULTILINE)
    return prompt[: match.start()] if match else ""


def score_humaneval(
    problem: dict[str, Any], completion: str, timeout_s: float = SANDBOX_TIMEOUT_S
) -> float:
    """pass@1 of one greedy completion: 1.0 when ``check(entry_point)`` passes.

    The completion runs in one sandbox, the prompt and tests in another (the
    judge), which calls the candidate over a pipe and alone reports the verdict.
    """
    verdict = sandbox.run_tests(
        program=build_candidate(problem, completion),
        prompt=problem["prompt"],
        tests=problem["test"],
        entry_point=problem["entry_point"],
        timeout_s=timeout_s,
    )
    return 1.0 if verdict.passed else 0.0


def humaneval_prompt(line: dict[str, Any], task_name: str | None = None):
    from lighteval.tasks.requests import Doc

    problem = {key: line[key] for key in ("task_id", "prompt", "test", "entry_point")}
    return Doc(
        task_name=task_name,  # lighteval passes the task's name
        query=line["prompt"],
        choices=[line["canonical_solution"]],
        gold_index=0,
        specific=problem,
    )


def humaneval_metric(timeout_s: float = SANDBOX_TIMEOUT_S):
    """pass@1, computed for a whole task at once so the sandboxes run in parallel."""
    from lighteval.metrics.metrics_sample import SampleLevelComputation

    class HumanEvalPassAt1(SampleLevelComputation):
        def compute(self, responses=None, docs=None, **kwargs):
            jobs = [
                (doc.specific, response_text(r)) for doc, r in zip(docs, responses, strict=True)
            ]
            with ThreadPoolExecutor(max_workers=SANDBOX_WORKERS) as pool:
                return list(pool.map(lambda job: score_humaneval(job[0], job[1], timeout_s), jobs))

    return generative_metric("pass@1", HumanEvalPassAt1(), batched=True)


def humaneval_task():
    """The lighteval task: the test split (its only one), scored by :func:`humaneval_metric`."""
    return generative_task(
        "humaneval", humaneval_prompt, humaneval_metric(), HUMANEVAL_STOP, repo=HUMANEVAL_REPO
    )
