"""lighteval's pipeline for ``evaluate.py``: tasks, model, backend, results.

lighteval is driven from Python, never through its CLI: the CLI (and lighteval's own
task registry) imports every built-in task, and some of those reach the network or
call removed huggingface_hub arguments at import time. Only the tasks named in the
config are registered (:func:`make_registry_class`). Standard library only at
import; lighteval, transformers and torch are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from evaluate_gsm8k import gsm8k_task
from evaluate_humaneval import humaneval_task
from evaluate_tasks import lighteval_task_configs, override_dataset
from job_config import BenchmarkSpec, EvalConfig
from protocol import ConfigError, merge_lora

T = TypeVar("T")
RESULTS_DIRNAME = "lighteval"
CPU_BATCH_SIZE = 8
# ci-runner's own tasks; any other name is a lighteval built-in.
OWN_TASKS = {"humaneval": humaneval_task, "gsm8k": gsm8k_task}


# --- tasks --------------------------------------------------------------------


def resolve_tasks(benchmarks: Sequence[BenchmarkSpec], max_new_tokens: int):
    """(task configs by name, lighteval task strings, sample limit per task string)."""
    configs: dict[str, Any] = {}
    datasets: dict[str, str | None] = {}
    task_strings: list[str] = []
    limits: dict[str, int | None] = {}
    for spec in benchmarks:
        name, fewshot, dataset = spec.benchmark, spec.fewshot, spec.dataset
        if name in datasets and datasets[name] != dataset:
            raise ConfigError(f"benchmark {name!r} is listed twice with different datasets")
        datasets[name] = dataset
        own = OWN_TASKS.get(name)
        found = {name: own()} if own else lighteval_task_configs(name)
        for task_name, config in found.items():
            config = override_dataset(copy.deepcopy(config), dataset)
            config.generation_size = max_new_tokens  # unused by log-likelihood tasks
            configs[task_name] = config
            limits[f"{task_name}|{fewshot}"] = spec.max_samples
        task = f"{name}|{fewshot}"
        if task not in task_strings:
            task_strings.append(task)
    return configs, task_strings, limits


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
                # lighteval annotates one config per task; each value is a list of them
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


def load_tokenizer(config: EvalConfig):
    """(tokenizer, its repo, its revision): an adapter's own, else its base's."""
    from transformers import AutoTokenizer

    repo, revision = split_revision(config.model)
    try:
        return AutoTokenizer.from_pretrained(repo, revision=revision), repo, revision
    except Exception:  # missing files surface as OSError, ValueError or TypeError
        if config.base_model is None:
            raise
        base_repo, base_revision = split_revision(config.base_model)
        tokenizer = AutoTokenizer.from_pretrained(base_repo, revision=base_revision)
        return tokenizer, base_repo, base_revision


def load_model(config: EvalConfig):
    """(model, tokenizer or None, tokenizer repo, tokenizer revision); an adapter is merged
    into its base, with the tokenizer it was trained with (None: a full model's own)."""
    from transformers import AutoModelForCausalLM

    repo, revision = split_revision(config.model)
    placement = placement_kwargs(config)
    if not config.base_model:
        model = AutoModelForCausalLM.from_pretrained(repo, revision=revision, **placement)
        return model, None, repo, revision

    base_repo, base_revision = split_revision(config.base_model)
    tokenizer, tokenizer_repo, tokenizer_revision = load_tokenizer(config)
    model = merge_lora(
        base_repo,
        repo,
        tokenizer=tokenizer,  # the adapter may have been trained with added tokens
        adapter_revision=revision,
        revision=base_revision,
        **placement,
    )
    return model, tokenizer, tokenizer_repo, tokenizer_revision


def placed(config: EvalConfig) -> bool:
    """The plan placed the model itself: 4-bit, or spread over the GPUs by device_map."""
    return bool(config.quantize or config.device_map)


def placement_kwargs(config: EvalConfig) -> dict[str, Any]:
    """``from_pretrained`` arguments for how the plan sized the evaluation: the dtype, and
    for a 4-bit or multi-GPU evaluation the bitsandbytes config and a device map, so the
    weights load straight onto the GPUs (never whole into host memory)."""
    kwargs: dict[str, Any] = {"dtype": pick_dtype()}
    if not placed(config):
        return kwargs
    kwargs["device_map"] = config.device_map or "auto"
    if config.quantize == "4bit":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=kwargs["dtype"],
        )
    return kwargs


# --- pipeline -----------------------------------------------------------------


def generation_parameters(config: EvalConfig):
    """Greedy decoding. The token budget is set per task (``generation_size``), not here:
    with the transformers backend, ``max_new_tokens`` here also truncates every
    prompt to that many tokens (lighteval 0.13)."""
    from lighteval.models.model_input import GenerationParameters

    return GenerationParameters(temperature=0.0, seed=config.seed)


def build_pipeline(config: EvalConfig, task_strings, registry_class, tracker, cache_dir, work_dir):
    """A lighteval Pipeline on the accelerate (transformers) or vLLM backend."""
    from unittest import mock

    import lighteval.pipeline
    from lighteval.pipeline import ParallelismManager, Pipeline, PipelineParameters

    backend = config.inference_backend
    launcher = ParallelismManager.VLLM if backend == "vllm" else ParallelismManager.ACCELERATE
    if backend != "vllm" and placed(config):
        # lighteval's accelerate launcher moves the model onto one device (``.to``), which a
        # 4-bit or device-mapped model refuses or cannot hold: keep it where it loaded
        launcher = ParallelismManager.NONE
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


def accelerate_model(config: EvalConfig, cache_dir: Path):
    """The merged/loaded transformers model and the lighteval config wrapping it."""
    import torch
    from lighteval.models.transformers.transformers_model import TransformersModelConfig

    model, _, tokenizer_repo, tokenizer_revision = load_model(config)
    cuda = torch.cuda.is_available()
    model_config = TransformersModelConfig(
        model_name=model_display_name(config.model),
        tokenizer=tokenizer_repo,
        revision=tokenizer_revision or "main",
        batch_size=None if cuda else CPU_BATCH_SIZE,  # None: lighteval finds the largest
        device="cuda" if cuda else "cpu",
        generation_parameters=generation_parameters(config),
        cache_dir=str(cache_dir),
    )
    return model, model_config


def vllm_model_config(config: EvalConfig, cache_dir: Path, work_dir: Path):
    """vLLM loads from a path or repo, so an adapter is merged and saved first."""
    from lighteval.models.vllm.vllm_model import VLLMModelConfig

    repo, revision = split_revision(config.model)
    tokenizer = None
    if config.base_model:
        model, loaded_tokenizer, _, _ = load_model(config)
        merged = work_dir / "merged-model"
        model.save_pretrained(merged)
        loaded_tokenizer.save_pretrained(merged)
        repo, revision, tokenizer = str(merged), None, str(merged)
        del model
    return VLLMModelConfig(
        model_name=repo,
        tokenizer=tokenizer,
        revision=revision or "main",
        seed=config.seed,
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


def task_results(results: dict[str, T], task: str) -> T | None:
    """A task's scores; lighteval writes ``name|k``, its final dict ``name:k``."""
    return results.get(task) or results.get(task.replace("|", ":"))


def sample_values(details: dict[str, list[Any]], task: str, metric: str) -> list[float] | None:
    """A task's per-sample values of ``metric``, in doc order: what the report bootstraps
    its intervals over. None when lighteval kept no details for it."""
    rows = task_results(details, task)
    if not rows:
        return None
    ordered = sorted(rows, key=lambda d: _doc_order(getattr(d.doc, "id", "")))
    values = [d.metric.get(metric) for d in ordered]
    if any(not isinstance(v, (int, float)) or isinstance(v, bool) for v in values):
        return None
    return [round(float(v), 6) for v in values]


def _doc_order(doc_id: Any) -> tuple[int, str]:
    text = str(doc_id)
    return (int(text), "") if text.isdigit() else (0, text)


def build_scores(
    config: EvalConfig, configs, task_strings, results, doc_counts, details=None
) -> list[dict[str, Any]]:
    """One entry per benchmark: its main metric, stderr, sample count and per-sample values.

    A superset (e.g. ``mmlu``) is the plain mean over its sub-tasks (no per-sample values:
    their plain mean would not be its score).
    """
    scores = []
    for spec, task in zip(unique_specs(config.benchmarks), task_strings, strict=True):
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
                "benchmark": spec.benchmark,
                "fewshot": int(fewshot),
                "metric": metric,
                "score": score,
                "stderr": float(stderr) if isinstance(stderr, (int, float)) else None,
                "task": task,
                "samples": samples,
                "dataset": spec.dataset,
                "values": (
                    sample_values(details or {}, f"{members[0]}|{fewshot}", metric)
                    if len(members) == 1
                    else None
                ),
            }
        )
    return scores


def unique_specs(benchmarks: Sequence[BenchmarkSpec]) -> list[BenchmarkSpec]:
    """The benchmark specs in order, one per task string (duplicates dropped)."""
    seen, specs = set(), []
    for spec in benchmarks:
        key = (spec.benchmark, spec.fewshot)
        if key not in seen:
            seen.add(key)
            specs.append(spec)
    return specs


def evaluation_tracker(output_dir: Path):
    """lighteval's tracker, writing results under ``<output_dir>/lighteval/``, details too."""
    from lighteval.logging.evaluation_tracker import EvaluationTracker

    results_dir = output_dir / RESULTS_DIRNAME
    return EvaluationTracker(
        output_dir=str(output_dir),
        # A template without placeholders: the file lands in results_dir, not under
        # results/<model name>/ (braces escaped for str.format).
        results_path_template=str(results_dir).replace("{", "{{").replace("}", "}}"),
        save_details=True,
    )


def newest_results_file(folder: Path) -> Path:
    files = sorted(folder.glob("results_*.json"), key=lambda p: p.stat().st_mtime_ns)
    if not files:
        raise RuntimeError(f"lighteval wrote no results file under {folder}")
    return files[-1]
