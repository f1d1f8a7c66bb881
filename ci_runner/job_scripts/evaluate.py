# /// script
# requires-python = ">=3.10"
# dependencies = [
#     "torch==2.13.0",
#     "transformers==5.23.0",
#     "peft==0.21.2",
#     "datasets==5.2.0",
#     "accelerate==1.15.0",
#     "huggingface_hub==2.4.0",
#     "sentencepiece>=0.2",
#     "lighteval==0.13.0",
#     "xxhash<4",
# ]
# ///
"""Evaluate one model on a few benchmarks with lighteval: HumanEval, GSM8K or built-ins.

Runs inside a job (HF Jobs or the local backend) and knows nothing about
experiments: everything comes from one eval config (JSON, ``EvalConfig`` in
``ci_runner/runconfig.py``), given as

    python evaluate.py --config eval.json        # a path, or inline JSON
    CI_RUNNER_RUN_CONFIG=eval.json python evaluate.py

Two benchmarks ship with this file (HumanEval's sandbox in its sibling modules):

* ``humaneval`` (openai/openai_humaneval format): greedy completion, then pass@1:
  the completion runs in one sandbox, the prompt and tests in another that
  decides the verdict (``sandbox.py`` beside this file; lighteval has no
  HumanEval of its own). Before any generated code runs, the evaluator drops
  its secrets (``HF_TOKEN``, the token file); the summary's ``sandbox`` entry
  records which isolation layers were active.
* ``gsm8k`` (openai/gsm8k format, few-shot from ``train``): exact match of the
  final number.

Any other name is looked up among lighteval's built-in tasks. ``dataset`` in a
benchmark points a task at another Hub id or a local folder of data files in the
same format; ``max_samples`` caps its rows. A LoRA adapter (``base_model`` set)
is merged into its base in memory first.

lighteval is driven from Python, never through its CLI: the CLI (and lighteval's
own task registry) imports every built-in task, and some of those reach the
network or call removed huggingface_hub arguments at import time. Only the tasks
named in the config are registered.

Output: lighteval's results JSON under ``<output_dir>/lighteval/``, its per-sample
details under ``<output_dir>/details/``, and a last line
``CI_RUNNER_SUMMARY {json}`` (also ``<output_dir>/ci_runner_summary.json``) with
one score per benchmark. On failure the summary has ``status: "failed"`` and the
exit code is non-zero.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import json
import math
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import protocol  # helper modules beside this script (ci_runner/job_scripts), shipped with it
import sandbox
from protocol import ConfigError

RESULTS_DIRNAME = "lighteval"

HUMANEVAL_REPO = "openai/openai_humaneval"
GSM8K_REPO, GSM8K_SUBSET = "openai/gsm8k", "main"
# The stop sequences of the original HumanEval harness: a new top-level statement
# means the function body is over.
HUMANEVAL_STOP = ["\ndef", "\nclass", "\nif __name__", "\nprint"]
GSM8K_STOP = ["Question:"]
GSM8K_PROMPT = "Question: {question}\nAnswer:"

SANDBOX_TIMEOUT_S = 10.0
SANDBOX_WORKERS = max(1, min(8, os.cpu_count() or 1))
CPU_BATCH_SIZE = 8


# --- eval config --------------------------------------------------------------


def check_eval_config(config: dict[str, Any]) -> None:
    """Fail fast, before any heavy import, on a config the runner should not have sent."""
    missing = [key for key in ("model", "benchmarks", "output_dir") if key not in config]
    if missing:
        raise ConfigError(f"eval config lacks {missing}")
    if not config["benchmarks"]:
        raise ConfigError("eval config lists no benchmarks")
    for spec in config["benchmarks"]:
        if not isinstance(spec, dict) or not spec.get("benchmark"):
            raise ConfigError(f"each benchmark needs a 'benchmark' name, got {spec!r}")
        if "|" in spec["benchmark"]:
            raise ConfigError(
                f"benchmark {spec['benchmark']!r}: give the name alone and set 'fewshot'"
            )
    backend = config.get("inference_backend", "accelerate")
    if backend not in ("accelerate", "vllm"):
        raise ConfigError(f"inference_backend must be accelerate or vllm, not {backend!r}")


# --- HumanEval: sandboxed execution -------------------------------------------
# The sandbox lives in the sibling modules sandbox.py (evaluator side) and
# sandbox_child.py (what runs inside); see sandbox.py for the layers.


def truncate_at_stops(text: str, stops: list[str]) -> str:
    """Cut ``text`` at the first stop sequence (models often generate past them)."""
    cut = len(text)
    for stop in stops:
        index = text.find(stop)
        if index != -1:
            cut = min(cut, index)
    return text[:cut]


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


def build_program(problem: dict[str, Any], completion: str) -> str:
    """The whole program as the original harness runs it: candidate + test + ``check``.

    For reading and debugging: scoring runs the candidate and the tests in two
    separate sandboxes (:func:`score_humaneval`).
    """
    body = build_candidate(problem, completion)
    return f"{body}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


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


# --- GSM8K: final-number exact match -------------------------------------------

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_ANSWER_PHRASE = re.compile(r"answer is\s*:?\s*\$?\s*(-?\d[\d,]*(?:\.\d+)?)", re.IGNORECASE)


def extract_final_number(text: Any) -> float | None:
    """The answer a GSM8K response gives: after ``####``, in ``<answer>``, else the last number."""
    if text is None:
        return None
    text = str(text)
    for marker in ("####", "ANSWER:"):
        if marker in text:
            found = _NUMBER.findall(text.split(marker, 1)[1])
            if found:
                return _to_float(found[0])
    blocks = _ANSWER_TAG.findall(text)
    if blocks and _NUMBER.findall(blocks[-1]):
        return _to_float(_NUMBER.findall(blocks[-1])[0])
    phrase = _ANSWER_PHRASE.findall(text)
    if phrase:
        return _to_float(phrase[-1])
    numbers = _NUMBER.findall(text)
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
    hit = expected is not None and predicted is not None
    return 1.0 if hit and math.isclose(predicted, expected, abs_tol=1e-6) else 0.0


# --- lighteval tasks ------------------------------------------------------------


def response_text(response: Any) -> str:
    """The first generation, after lighteval's reasoning-tag removal when it ran."""
    texts = response.text_post_processed or response.text
    return texts[0] if texts else ""


def humaneval_prompt(line: dict[str, Any], task_name: str | None = None):
    from lighteval.tasks.requests import Doc

    problem = {key: line[key] for key in ("task_id", "prompt", "test", "entry_point")}
    return Doc(
        task_name=task_name,
        query=line["prompt"],
        choices=[line["canonical_solution"]],
        gold_index=0,
        specific=problem,
    )


def gsm8k_prompt(line: dict[str, Any], task_name: str | None = None):
    from lighteval.tasks.requests import Doc

    return Doc(
        task_name=task_name,
        query=GSM8K_PROMPT.format(question=line["question"]),
        choices=[f" {line['answer']}"],
        gold_index=0,
        specific={"answer": line["answer"]},
    )


def humaneval_metric(timeout_s: float = SANDBOX_TIMEOUT_S):
    """pass@1, computed for a whole task at once so the sandboxes run in parallel."""
    import numpy as np
    from lighteval.metrics.metrics_sample import SampleLevelComputation
    from lighteval.metrics.utils.metric_utils import SampleLevelMetric
    from lighteval.tasks.requests import SamplingMethod

    class HumanEvalPassAt1(SampleLevelComputation):
        def compute(self, responses=None, docs=None, **kwargs):
            jobs = [
                (doc.specific, response_text(r)) for doc, r in zip(docs, responses, strict=True)
            ]
            with ThreadPoolExecutor(max_workers=SANDBOX_WORKERS) as pool:
                return list(pool.map(lambda job: score_humaneval(*job, timeout_s), jobs))

    return SampleLevelMetric(
        metric_name="pass@1",
        higher_is_better=True,
        category=SamplingMethod.GENERATIVE,
        sample_level_fn=HumanEvalPassAt1(),
        corpus_level_fn=np.mean,
        batched_compute=True,
    )


def gsm8k_metric():
    import numpy as np
    from lighteval.metrics.metrics_sample import SampleLevelComputation
    from lighteval.metrics.utils.metric_utils import SampleLevelMetric
    from lighteval.tasks.requests import SamplingMethod

    class FinalNumberMatch(SampleLevelComputation):
        def compute(self, doc=None, model_response=None, **kwargs):
            return score_gsm8k(doc.specific["answer"], response_text(model_response))

    return SampleLevelMetric(
        metric_name="exact_match",
        higher_is_better=True,
        category=SamplingMethod.GENERATIVE,
        sample_level_fn=FinalNumberMatch(),
        corpus_level_fn=np.mean,
    )


def ci_runner_task_config(name: str, max_new_tokens: int):
    """ci-runner's own task configs, or None for a name lighteval should provide."""
    from lighteval.tasks.lighteval_task import LightevalTaskConfig

    if name == "humaneval":
        return LightevalTaskConfig(
            name="humaneval",
            prompt_function=humaneval_prompt,
            hf_repo=HUMANEVAL_REPO,
            hf_subset=None,
            hf_avail_splits=["test"],
            evaluation_splits=["test"],
            few_shots_split="test",  # HumanEval has one split; few-shot is rarely wanted
            metrics=[humaneval_metric()],
            generation_size=max_new_tokens,
            stop_sequence=HUMANEVAL_STOP,
        )
    if name == "gsm8k":
        return LightevalTaskConfig(
            name="gsm8k",
            prompt_function=gsm8k_prompt,
            hf_repo=GSM8K_REPO,
            hf_subset=GSM8K_SUBSET,
            hf_avail_splits=["train", "test"],
            evaluation_splits=["test"],
            few_shots_split="train",
            few_shots_select="random_sampling_from_train",
            metrics=[gsm8k_metric()],
            generation_size=max_new_tokens,
            stop_sequence=GSM8K_STOP,
        )
    return None


def lighteval_task_configs(name: str) -> dict[str, Any]:
    """Configs for a lighteval built-in task (or superset), importing as little as possible.

    lighteval's registry imports all ~100 task modules, some of which download
    files or break at import. Here only modules that mention the name are
    imported, the one named after it first, and import failures are skipped.
    """
    import lighteval.tasks.tasks as package

    base = name.split(":")[0]
    root = Path(next(iter(package.__path__)))  # a namespace package: no __file__
    files = sorted(p for p in root.glob("*.py") if p.name != "__init__.py")
    files += sorted(p / "main.py" for p in root.iterdir() if (p / "main.py").is_file())

    def module_name(path: Path) -> str:
        rel = path.relative_to(root).with_suffix("")
        return f"{package.__name__}." + ".".join(rel.parts)

    named = [p for p in files if base in (p.stem, p.parent.name)]
    mentioned = [p for p in files if p not in named and base in p.read_text(encoding="utf-8")]
    found: dict[str, Any] = {}
    failures: list[str] = []
    for path in named + mentioned:
        try:
            module = importlib.import_module(module_name(path))
        except Exception as exc:  # a broken neighbour must not hide the task asked for
            failures.append(f"{module_name(path)}: {type(exc).__name__}: {exc}"[:300])
            continue
        for config in getattr(module, "TASKS_TABLE", []):
            if config.name == name or config.name.startswith(f"{name}:"):
                found[config.name] = config
        if found:
            return found
    hint = "; ".join(failures) if failures else "no module defines it"
    raise ConfigError(
        f"unknown benchmark {name!r}: not a ci-runner task (humaneval, gsm8k) and not a "
        f"lighteval built-in task that loads here ({hint})"
    )


def resolve_tasks(benchmarks: list[dict[str, Any]], max_new_tokens: int):
    """(task configs by name, lighteval task strings, sample limit per task string)."""
    configs: dict[str, Any] = {}
    datasets: dict[str, str | None] = {}
    task_strings: list[str] = []
    limits: dict[str, int | None] = {}
    for spec in benchmarks:
        name, fewshot = spec["benchmark"], int(spec.get("fewshot") or 0)
        dataset = spec.get("dataset")
        if name in datasets and datasets[name] != dataset:
            raise ConfigError(f"benchmark {name!r} is listed twice with different datasets")
        datasets[name] = dataset
        own = ci_runner_task_config(name, max_new_tokens)
        found = {name: own} if own is not None else lighteval_task_configs(name)
        for task_name, config in found.items():
            config = override_dataset(copy.deepcopy(config), dataset)
            config.generation_size = max_new_tokens  # unused by log-likelihood tasks
            configs[task_name] = config
            limits[f"{task_name}|{fewshot}"] = spec.get("max_samples")
        task = f"{name}|{fewshot}"
        if task not in task_strings:
            task_strings.append(task)
    return configs, task_strings, limits


def override_dataset(config: Any, dataset: str | None) -> Any:
    """Point a task at another copy of its data: a Hub id or a local folder of data files."""
    if not dataset:
        return config
    local = Path(dataset).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ConfigError(f"dataset {dataset}: give the folder holding the split files")
        config.hf_repo, config.hf_subset = str(local.resolve()), None
    else:
        config.hf_repo = dataset  # same format, so the same subset name
    return config


def make_registry_class(configs: dict[str, Any], limits: dict[str, int | None]):
    """A lighteval Registry holding only ``configs``, whose tasks honour ``limits``.

    lighteval's ``max_samples`` is one number for the whole pipeline; each
    benchmark here has its own.
    """
    from lighteval.tasks.lighteval_task import LightevalTask
    from lighteval.tasks.registry import Registry

    class LimitedTask(LightevalTask):
        def get_docs(self, max_samples: int | None = None):
            return super().get_docs(limits.get(self.full_name) or max_samples)

    class OnlyTheseTasks(Registry):
        def __init__(self, tasks=None, load_multilingual=False, custom_tasks=None):
            # Registry.__init__ would import every built-in task module.
            self.tasks_list = self._get_full_task_list_from_input_string(tasks)
            self._load_multilingual = False
            self._custom_tasks = None
            self._task_registry = dict(configs)
            self.task_to_configs = self._update_task_configs()

        def load_tasks(self):
            return {
                config.full_name: LimitedTask(config=config)
                for task_configs in self.task_to_configs.values()
                for config in task_configs
            }

    return OnlyTheseTasks


# --- model --------------------------------------------------------------------


def split_revision(model: str) -> tuple[str, str | None]:
    """``repo@revision`` → (repo, revision); local paths and plain ids have none."""
    if Path(model).expanduser().exists() or "@" not in model:
        return model, None
    repo, _, revision = model.rpartition("@")
    return repo, revision or None


def model_display_name(model: str) -> str:
    """A relative name for lighteval's result paths: ``org/repo`` or ``parent/folder``.

    lighteval joins it onto its cache and details folders, so an absolute path
    would write into the model's own folder.
    """
    repo, _ = split_revision(model)
    local = Path(repo).expanduser()
    if local.exists():
        local = local.resolve()
        return f"{local.parent.name}/{local.name}".strip("/") or "model"
    return repo


def pick_dtype():
    import torch

    if not torch.cuda.is_available():
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def has_tokenizer(repo: str, revision: str | None) -> bool:
    from transformers import AutoTokenizer

    try:
        AutoTokenizer.from_pretrained(repo, revision=revision)
    except Exception:  # missing files surface as OSError, ValueError or TypeError
        return False
    return True


def load_model(config: dict[str, Any]):
    """(model, tokenizer repo, tokenizer revision); an adapter is merged into its base."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    repo, revision = split_revision(config["model"])
    dtype = pick_dtype()
    if not config.get("base_model"):
        model = AutoModelForCausalLM.from_pretrained(repo, revision=revision, dtype=dtype)
        return model, repo, revision

    from peft import PeftModel

    base_repo, base_revision = split_revision(config["base_model"])
    tokenizer_source = (repo, revision)
    if not has_tokenizer(repo, revision):
        tokenizer_source = (base_repo, base_revision)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source[0], revision=tokenizer_source[1])
    base = AutoModelForCausalLM.from_pretrained(base_repo, revision=base_revision, dtype=dtype)
    if len(tokenizer) > base.get_input_embeddings().weight.shape[0]:
        base.resize_token_embeddings(len(tokenizer))  # the adapter was trained with added tokens
    model = PeftModel.from_pretrained(base, repo, revision=revision).merge_and_unload()
    return model, *tokenizer_source


# --- pipeline -----------------------------------------------------------------


def generation_parameters(config: dict[str, Any]):
    """Greedy decoding. The token budget is set per task (``generation_size``), not here:
    with the transformers backend, ``max_new_tokens`` here also truncates every
    prompt to that many tokens (lighteval 0.13)."""
    from lighteval.models.model_input import GenerationParameters

    return GenerationParameters(temperature=0.0, seed=int(config.get("seed", 42)))


def build_pipeline(config, task_strings, registry_class, tracker, cache_dir, work_dir):
    """A lighteval Pipeline on the accelerate (transformers) or vLLM backend."""
    from unittest import mock

    import lighteval.pipeline
    from lighteval.pipeline import ParallelismManager, Pipeline, PipelineParameters

    backend = config.get("inference_backend", "accelerate")
    launcher = ParallelismManager.VLLM if backend == "vllm" else ParallelismManager.ACCELERATE
    params = PipelineParameters(launcher_type=launcher)
    model, model_config = None, None
    if backend == "vllm":
        model_config = vllm_model_config(config, cache_dir, work_dir)
    else:
        model, model_config = accelerate_model(config, cache_dir)

    # Pipeline builds its Registry by name from its own module: swap in ours.
    with mock.patch.object(lighteval.pipeline, "Registry", registry_class):
        pipeline = Pipeline(
            tasks=",".join(task_strings),
            pipeline_parameters=params,
            evaluation_tracker=tracker,
            model_config=model_config,
            model=model,
        )
    disable_sample_cache(pipeline, cache_dir)
    return pipeline


def accelerate_model(config: dict[str, Any], cache_dir: Path):
    """The merged/loaded transformers model and the lighteval config wrapping it."""
    import torch
    from lighteval.models.transformers.transformers_model import TransformersModelConfig

    model, tokenizer_repo, tokenizer_revision = load_model(config)
    cuda = torch.cuda.is_available()
    model_config = TransformersModelConfig(
        model_name=model_display_name(config["model"]),
        tokenizer=tokenizer_repo,
        revision=tokenizer_revision or "main",
        batch_size=None if cuda else CPU_BATCH_SIZE,  # None: lighteval finds the largest
        device="cuda" if cuda else "cpu",
        generation_parameters=generation_parameters(config),
        cache_dir=str(cache_dir),
    )
    return model, model_config


def vllm_model_config(config: dict[str, Any], cache_dir: Path, work_dir: Path):
    """vLLM loads from a path or repo, so an adapter is merged and saved first."""
    from lighteval.models.vllm.vllm_model import VLLMModelConfig

    repo, revision = split_revision(config["model"])
    tokenizer = None
    if config.get("base_model"):
        model, tokenizer_repo, tokenizer_revision = load_model(config)
        merged = work_dir / "merged-model"
        model.save_pretrained(merged)
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(tokenizer_repo, revision=tokenizer_revision).save_pretrained(
            merged
        )
        repo, revision, tokenizer = str(merged), None, str(merged)
        del model
    return VLLMModelConfig(
        model_name=repo,
        tokenizer=tokenizer,
        revision=revision or "main",
        seed=int(config.get("seed", 42)),
        generation_parameters=generation_parameters(config),
        cache_dir=str(cache_dir),
    )


def disable_sample_cache(pipeline, cache_dir: Path) -> None:
    """Turn off lighteval's on-disk prediction cache.

    It is keyed by the model's name and config, not its weights: a checkpoint
    folder retrained in place would be scored from stale predictions. Its
    folder is created eagerly, inside the model's folder when the name is an
    absolute path (vLLM); remove it there if it is still empty.
    """
    model = pipeline.model
    cache = getattr(model, "_cache", None)
    model._cache = None
    folder = getattr(cache, "cache_dir", None)
    if folder is not None and cache_dir not in Path(folder).parents:
        with contextlib.suppress(OSError):
            Path(folder).rmdir()


# --- results and summary --------------------------------------------------------


def primary_metric(config: Any) -> str:
    names = config.metrics[0].metric_name
    return names[0] if isinstance(names, list) else names


def task_results(results: dict[str, Any], task: str) -> dict[str, Any] | None:
    """A task's scores; lighteval writes ``name|k``, its final dict ``name:k``."""
    return results.get(task) or results.get(task.replace("|", ":"))


def build_scores(config, configs, task_strings, results, doc_counts) -> list[dict[str, Any]]:
    """One entry per benchmark: its main metric, stderr and sample count.

    A superset (e.g. ``mmlu``) is the plain mean over its sub-tasks.
    """
    scores = []
    for spec, task in zip(unique_specs(config["benchmarks"]), task_strings, strict=True):
        name, fewshot = task.split("|")
        members = [n for n in configs if n == name or n.startswith(f"{name}:")]
        metric = primary_metric(configs[members[0]])
        values, stderrs, samples = [], [], 0
        for member in members:
            entry = task_results(results, f"{member}|{fewshot}") or {}
            if metric in entry:
                values.append(float(entry[metric]))
                stderrs.append(entry.get(f"{metric}_stderr"))
            samples += doc_counts.get(f"{member}|{fewshot}", 0)
        score = sum(values) / len(values) if values else None
        stderr = stderrs[0] if len(stderrs) == 1 else None
        scores.append(
            {
                "benchmark": spec["benchmark"],
                "fewshot": int(fewshot),
                "metric": metric,
                "score": score,
                "stderr": float(stderr) if isinstance(stderr, (int, float)) else None,
                "task": task,
                "samples": samples,
                "dataset": spec.get("dataset"),
            }
        )
    return scores


def unique_specs(benchmarks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The benchmark specs in order, one per task string (duplicates dropped)."""
    seen, specs = set(), []
    for spec in benchmarks:
        key = (spec["benchmark"], int(spec.get("fewshot") or 0))
        if key not in seen:
            seen.add(key)
            specs.append(spec)
    return specs


def newest_results_file(folder: Path) -> Path:
    files = sorted(folder.glob("results_*.json"), key=lambda p: p.stat().st_mtime_ns)
    if not files:
        raise RuntimeError(f"lighteval wrote no results file under {folder}")
    return files[-1]


def quiet_libraries() -> None:
    """Keep job logs readable: warnings and our own progress lines, few progress bars."""
    import logging
    import warnings

    os.environ.setdefault("TQDM_MININTERVAL", "15")
    import datasets
    import transformers
    from huggingface_hub.utils import disable_progress_bars

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    disable_progress_bars()
    logging.getLogger("lighteval").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning)


def _format_score(entry: dict[str, Any]) -> str:
    score = "n/a" if entry["score"] is None else f"{entry['score']:.4f}"
    stderr = "" if entry["stderr"] is None else f" ±{entry['stderr']:.4f}"
    return f"{entry['task']:<24} {entry['metric']}={score}{stderr} ({entry['samples']} samples)"


# --- main -----------------------------------------------------------------------


def evaluate(config: dict[str, Any]) -> dict[str, Any]:
    """Resolve tasks, load the model, run lighteval, save results; return the summary."""
    started = time.monotonic()
    quiet_libraries()
    import torch
    import transformers
    from lighteval.logging.evaluation_tracker import EvaluationTracker

    transformers.set_seed(int(config.get("seed", 42)))
    output_dir = Path(config["output_dir"]).expanduser().resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    max_new_tokens = int(config.get("max_new_tokens") or 256)
    configs, task_strings, limits = resolve_tasks(config["benchmarks"], max_new_tokens)
    backend = config.get("inference_backend", "accelerate")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(
        f"ci-runner evaluate: {config['model']} ({config.get('model_label', 'model')})"
        + (f" adapter on {config['base_model']}" if config.get("base_model") else "")
        + f" | tasks {', '.join(task_strings)} | backend={backend} device={device}"
        + f" | max_new_tokens={max_new_tokens}",
        flush=True,
    )

    results_dir = output_dir / RESULTS_DIRNAME
    tracker = EvaluationTracker(
        output_dir=str(output_dir),
        # A template without placeholders: the file lands in results_dir, not under
        # results/<model name>/ (braces escaped for str.format).
        results_path_template=str(results_dir).replace("{", "{{").replace("}", "}}"),
        save_details=True,
    )
    with tempfile.TemporaryDirectory(prefix="ci-runner-eval-") as scratch:
        cache_dir, work_dir = Path(scratch, "cache"), Path(scratch)
        registry_class = make_registry_class(configs, limits)
        pipeline = build_pipeline(
            config, task_strings, registry_class, tracker, cache_dir, work_dir
        )
        doc_counts = {task: len(docs) for task, docs in pipeline.documents_dict.items()}
        chat = bool(getattr(pipeline.model, "use_chat_template", False))
        print(
            "loaded model and data: "
            + ", ".join(f"{task} {count} samples" for task, count in doc_counts.items())
            + f" | chat_template={'on' if chat else 'off'}",
            flush=True,
        )
        runs_code = "humaneval" in configs
        if runs_code:  # secrets first: model and data are loaded, no generated code ran yet
            dropped = sandbox.drop_secrets()
            print(
                f"secrets dropped before running generated code: {len(dropped['env'])} "
                f"environment variable(s), {len(dropped['token_files'])} token file(s) moved "
                "until the evaluation ends",
                flush=True,
            )
            sandbox.prepare(sys.stderr)
        try:
            pipeline.evaluate()
        finally:
            if runs_code:  # every sandbox is torn down (and checked) at the end of its run
                sandbox.restore_secrets()
        pipeline.save_and_push_results()

    results_file = newest_results_file(results_dir)
    results = json.loads(results_file.read_text(encoding="utf-8"))["results"]
    scores = build_scores(config, configs, task_strings, results, doc_counts)
    for entry in scores:
        print(_format_score(entry), flush=True)
    return {
        "status": "completed",
        "experiment": config.get("experiment"),
        "run_id": config.get("run_id"),
        "eval_id": config.get("eval_id"),
        "model": config["model"],
        "model_label": config.get("model_label"),
        "base_model": config.get("base_model"),
        "inference_backend": backend,
        "device": device,
        "chat_template": chat,
        "max_new_tokens": max_new_tokens,
        "scores": scores,
        "results_file": str(results_file),
        "details_dir": str(output_dir / "details"),
        "output_dir": str(output_dir),
        "sandbox": sandbox.summary() if runs_code else None,
        "runtime_s": round(time.monotonic() - started, 3),
    }


def main(argv: list[str] | None = None) -> int:
    def run(config: dict[str, Any]) -> dict[str, Any]:
        check_eval_config(config)  # after reading: a failure summary can use output_dir
        return evaluate(config)

    return protocol.run_job(
        run,
        argv,
        description=__doc__.splitlines()[0],
        reported=("experiment", "run_id", "eval_id", "model", "model_label"),
    )


if __name__ == "__main__":
    sys.exit(main())
