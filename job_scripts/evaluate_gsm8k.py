"""GSM8K for ``evaluate.py``: few-shot from ``train``, exact match of the final number.

The ``openai/gsm8k`` format. Standard library only at import; lighteval is imported
inside the functions that use it.
"""

from __future__ import annotations

import math
import re
from typing import Any

from evaluate_tasks import generative_metric, generative_task, response_text, truncate_at_stops
from rewards import ANSWER_TAG, NUMBER  # the same number and <answer> block as the rewards

GSM8K_REPO, GSM8K_SUBSET = "openai/gsm8k", "main"
GSM8K_STOP = ["Question:"]
GSM8K_PROMPT = "Question: {question}\nAnswer:"

_ANSWER_PHRASE = re.compile(r"answer is\s*:?\s*\$?\s*(-?\d[\d,]*(?:\.\d+)?)", re.IGNORECASE)


def extract_final_number(text: Any) -> float | None:
    """The answer a GSM8K response gives: after ``####``, in ``<answer>``, else the last number."""
    if text is None:
        return None
    text = str(text)
    for marker in ("####", "ANSWER:"):
        if marker in text:
            found = NUMBER.findall(text.split(marker, 1)[1])
            if found:
                return _to_float(found[0])
    blocks = ANSWER_TAG.findall(text)
    if blocks and NUMBER.findall(blocks[-1]):
        return _to_float(NUMBER.findall(blocks[-1])[0])
    phrase = _ANSWER_PHRASE.findall(text)
    if phrase:
        return _to_float(phrase[-1])
    numbers = NUMBER.findall(text)
    return _to_float(numbers[-1]) if numbers else None


def _to_float(value: str) -> float | None:
    try:
        return float(value.replace(",", "").rstrip("."))
    except ValueError:
        return None


def score_gsm8k(gold_answer: str, completion: str) -> float:
    """1.0 when the completion's final number equals the one after ``####`` in the gold answer."""
    expected = extract_final_number(gold_answer)
    predicted = extract_final_number(truncate_at_stops(completion, GSM8K_STOP))
    hit = (
        expected is not None
        and predicted is not None
        and math.isclose(predicted, expected, abs_tol=1e-6)
    )
    return 1.0 if hit else 0.0


def gsm8k_prompt(line: dict[str, Any], task_name: str | None = None):
    from lighteval.tasks.requests import Doc

    return Doc(
        task_name=task_name,  # lighteval passes the task's name
        query=GSM8K_PROMPT.format(question=line["question"]),
        choices=[f" {line['answer']}"],
        gold_index=0,
        specific={"answer": line["answer"]},
    )


def gsm8k_metric():
    from lighteval.metrics.metrics_sample import SampleLevelComputation

    class FinalNumberMatch(SampleLevelComputation):
        def compute(self, doc=None, model_response=None, **kwargs):
            return score_gsm8k(doc.specific["answer"], response_text(model_response))

    return generative_metric("exact_match", FinalNumberMatch())


def gsm8k_task():
    """The lighteval task: the test split, few-shot examples drawn from train."""
    return generative_task(
        "gsm8k",
        gsm8k_prompt,
        gsm8k_metric(),
        GSM8K_STOP,
        repo=GSM8K_REPO,
        subset=GSM8K_SUBSET,
        few_shots_split="train",
    )
