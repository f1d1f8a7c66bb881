"""Minimal plain lighteval: the evaluation half of the demo's floor (benchmarks/bench_results.py).

Evaluates each model given, one after another in this one process, on a GSM8K-format
folder (``question``/``answer`` rows ending ``#### N``, split ``test``) with lighteval's
own Pipeline and the transformers backend: greedy, the answer's final number matched
exactly. No sandbox, no summary, no per-sample bookkeeping, no ci-runner import: only
what any lighteval user would write. lighteval's registry would import every built-in
task (some reach the network at import), so the one task is registered alone, as the
lighteval docs do for custom tasks. lighteval keeps its sample cache at
``cache_dir / model_name``, which is the model's own folder when the name is an absolute
path; each run gets a throwaway cache_dir and a relative model path so nothing is written
beside the weights. The last line printed is JSON with each model's score.
"""

import argparse
import json
import os
import re
import tempfile
import time
from unittest import mock

import lighteval.pipeline
import numpy as np
from lighteval.logging.evaluation_tracker import EvaluationTracker
from lighteval.metrics.metrics_sample import SampleLevelComputation
from lighteval.metrics.utils.metric_utils import SampleLevelMetric
from lighteval.models.model_input import GenerationParameters
from lighteval.models.transformers.transformers_model import TransformersModelConfig
from lighteval.pipeline import ParallelismManager, Pipeline, PipelineParameters
from lighteval.tasks.lighteval_task import LightevalTask, LightevalTaskConfig
from lighteval.tasks.registry import Registry
from lighteval.tasks.requests import Doc, SamplingMethod

parser = argparse.ArgumentParser()
parser.add_argument("--models", nargs="+", required=True)
parser.add_argument("--data", required=True, help="folder with test.jsonl (GSM8K format)")
parser.add_argument("--max-samples", type=int, default=None)
parser.add_argument("--max-new-tokens", type=int, default=256)
args = parser.parse_args()

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def final_number(text: str) -> str | None:
    marked = "####" in text
    found = NUMBER.findall(text.split("####", 1)[1] if marked else text)
    return found[0 if marked else -1].replace(",", "") if found else None


def prompt(line, task_name=None):
    return Doc(
        task_name=task_name,
        query=f"Question: {line['question']}\nAnswer:",
        choices=[line["answer"]],
        gold_index=0,
    )


class FinalNumber(SampleLevelComputation):
    def compute(self, doc=None, model_response=None, **kwargs):
        said = final_number(model_response.text[0].split("Question:")[0])
        return float(said is not None and said == final_number(doc.choices[0]))


task = LightevalTaskConfig(
    name="tiny",
    prompt_function=prompt,
    hf_repo=args.data,
    hf_subset=None,
    hf_avail_splits=["test"],
    evaluation_splits=["test"],
    few_shots_split=None,
    few_shots_select=None,
    metrics=[
        SampleLevelMetric(
            metric_name="exact_match",
            higher_is_better=True,
            category=SamplingMethod.GENERATIVE,
            sample_level_fn=FinalNumber(),
            corpus_level_fn=np.mean,
        )
    ],
    stop_sequence=["Question:"],
    generation_size=args.max_new_tokens,
)


class OneTask(Registry):
    def __init__(self, tasks=None, load_multilingual=False, custom_tasks=None):
        self.tasks_list = self._get_full_task_list_from_input_string(tasks)
        self._load_multilingual = False
        self._custom_tasks = None
        self._task_registry = {"tiny": task}
        self.task_to_configs = self._update_task_configs()

    def load_tasks(self):
        return {
            config.full_name: LightevalTask(config=config)
            for configs in self.task_to_configs.values()
            for config in configs
        }


scores = {}
for model in args.models:
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory() as out,
        mock.patch.object(lighteval.pipeline, "Registry", OneTask),
    ):
        pipeline = Pipeline(
            tasks="tiny|0",
            pipeline_parameters=PipelineParameters(
                launcher_type=ParallelismManager.ACCELERATE, max_samples=args.max_samples
            ),
            evaluation_tracker=EvaluationTracker(output_dir=out),
            model_config=TransformersModelConfig(
                model_name=os.path.relpath(model),
                cache_dir=out,
                device="cpu",
                batch_size=8,
                generation_parameters=GenerationParameters(temperature=0.0),
            ),
        )
        pipeline.evaluate()
        results = pipeline.get_results()["results"]
    score = next(v["exact_match"] for k, v in results.items() if k != "all")
    scores[model] = {"exact_match": score, "seconds": round(time.perf_counter() - started, 2)}
print(json.dumps(scores), flush=True)
