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
``ci_runner/runconfig.py``, read into ``job_config.EvalConfig``), given as

    python evaluate.py --config eval.json        # a path, or inline JSON
    CI_RUNNER_RUN_CONFIG=eval.json python evaluate.py

Two benchmarks ship with this file, in its sibling modules:

* ``humaneval`` (openai/openai_humaneval format, ``evaluate_humaneval.py``): greedy
  completion, then pass@1: the completion runs in one sandbox, the prompt and tests
  in another that decides the verdict (``sandbox.py``; lighteval has no HumanEval of
  its own). Before any generated code runs, the evaluator drops its secrets
  (``HF_TOKEN``, the token file) and seals the answers (data, model and caches out of
  other uids' reach); where the code cannot be isolated it refuses, unless the config
  says ``allow_unisolated_code`` (those scores then carry ``isolated: false``). The
  summary's ``sandbox`` entry records which isolation layers were active.
* ``gsm8k`` (openai/gsm8k format, few-shot from ``train``, ``evaluate_gsm8k.py``):
  exact match of the final number.

Any other name is looked up among lighteval's built-in tasks (``evaluate_tasks.py``).
``dataset`` in a benchmark points a task at another Hub id or a local folder of data
files in the same format; ``max_samples`` caps its rows. A LoRA adapter
(``base_model`` set) is merged into its base in memory first. lighteval is driven
from Python, never through its CLI (``evaluate_pipeline.py`` says why).

Output: lighteval's results JSON under ``<output_dir>/lighteval/``, its per-sample
details under ``<output_dir>/details/``, and a last line
``CI_RUNNER_SUMMARY {json}`` (also ``<output_dir>/ci_runner_summary.json``) with
one score per benchmark. On failure the summary has ``status: "failed"`` and the
exit code is non-zero.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import protocol  # helper modules beside this script (job_scripts/), shipped with it
import sandbox
from evaluate_pipeline import (
    RESULTS_DIRNAME,
    build_pipeline,
    build_scores,
    evaluation_tracker,
    make_registry_class,
    newest_results_file,
    resolve_tasks,
    split_revision,
)
from job_config import EvalConfig
from protocol import ConfigError

# The config keys a failure summary repeats, to say which evaluation failed.
REPORTED = ("experiment", "run_id", "eval_id", "model", "model_label")
CODE_BENCHMARKS = {"humaneval"}  # benchmarks whose completions run (in sandboxes)
# Errors whose message is the whole story (no traceback): a bad config, a refusal.
EXPECTED = (ConfigError, sandbox.UnisolatedError)


def check_eval_config(config: EvalConfig) -> EvalConfig:
    """Fail fast, before any heavy import, on what the types alone let through."""
    if not config.benchmarks:
        raise ConfigError("eval config lists no benchmarks")
    for spec in config.benchmarks:
        if not spec.benchmark:
            raise ConfigError(f"each benchmark needs a 'benchmark' name, got {spec!r}")
        if "|" in spec.benchmark:
            raise ConfigError(
                f"benchmark {spec.benchmark!r}: give the name alone and set 'fewshot'"
            )
    return config


def quiet_libraries() -> None:
    """Keep job logs readable: warnings and our own progress lines, few progress bars."""
    import logging

    os.environ.setdefault("TQDM_MININTERVAL", "15")  # before tqdm is imported: it reads it then
    protocol.quiet_libraries(verbosity=logging.ERROR, ignore_future="")
    logging.getLogger("lighteval").setLevel(logging.WARNING)


def _format_score(entry: dict[str, Any]) -> str:
    score = "n/a" if entry["score"] is None else f"{entry['score']:.4f}"
    stderr = "" if entry["stderr"] is None else f" ±{entry['stderr']:.4f}"
    return f"{entry['task']:<24} {entry['metric']}={score}{stderr} ({entry['samples']} samples)"


def answer_paths(config: EvalConfig, configs: dict[str, Any]) -> list[str]:
    """Where the benchmarks' rows (answers included), the model and the caches holding
    either live on disk: no sandbox may read them (:func:`sandbox.seal_answers`)."""
    paths = [str(getattr(task, "hf_repo", "") or "") for task in configs.values()]
    for model in (config.model, config.base_model):
        if model:
            paths.append(split_revision(model)[0])
    paths.append(config.output_dir)  # earlier results and details
    for module, names in (
        ("huggingface_hub.constants", ("HF_HOME", "HF_HUB_CACHE")),
        ("datasets.config", ("HF_DATASETS_CACHE",)),
    ):
        found = sys.modules.get(module)
        paths += [str(getattr(found, name, "") or "") for name in names] if found else []
    for name in ("HF_HOME", "HF_HUB_CACHE", "HF_DATASETS_CACHE", "TRANSFORMERS_CACHE"):
        paths.append(os.environ.get(name, ""))
    return [path for path in dict.fromkeys(paths) if path and os.path.exists(path)]


def guard_generated_code(
    config: EvalConfig, configs: dict[str, Any], extra_paths: Sequence[str] = ()
) -> dict[str, Any]:
    """Before the first completion runs: drop the secrets, seal the answers, probe the
    sandbox (which refuses to run unisolated unless the experiment opted in)."""
    dropped = sandbox.drop_secrets()
    sealed = sandbox.seal_answers([*answer_paths(config, configs), *extra_paths])
    print(
        f"secrets dropped before running generated code: {len(dropped['env'])} "
        f"environment variable(s), {len(dropped['token_files'])} token file(s) moved "
        f"until the evaluation ends; {len(sealed['sealed'])} path(s) of data, model and "
        "caches out of other users' reach",
        flush=True,
    )
    return sandbox.prepare(sys.stderr, allow_unisolated=config.allow_unisolated_code)


def run_lighteval(
    config: EvalConfig, configs, task_strings, limits, tracker, runs_code: bool
) -> tuple[dict[str, int], bool]:
    """Build the pipeline, run it, save its results: (samples per task, chat template on).

    With ``runs_code`` (HumanEval), generated code runs only after the model and data are
    loaded and the secrets are dropped; they come back once every sandbox is torn down.
    """
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
        try:
            if runs_code:  # model and data are loaded, no generated code ran yet
                guard_generated_code(config, configs, [scratch])
            pipeline.evaluate()
        finally:
            if runs_code:  # every sandbox is torn down (and checked) at the end of its run
                sandbox.restore_secrets()
        pipeline.save_and_push_results()
    return doc_counts, chat


def main(config: EvalConfig) -> dict[str, Any]:
    """Resolve tasks, load the model, run lighteval, save results; return the summary."""
    check_eval_config(config)
    started = time.monotonic()
    quiet_libraries()
    import torch
    import transformers

    if config.after_job:  # a local run's final model: evaluated once training ended
        import lighteval.pipeline  # noqa: F401  - loaded while the model trains

        protocol.wait_for_job(config.after_job)
        torch.set_num_threads(len(os.sched_getaffinity(0)))  # training's cores are free
    transformers.set_seed(config.seed)
    output_dir = Path(config.output_dir).expanduser().resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    max_new_tokens = config.max_new_tokens
    configs, task_strings, limits = resolve_tasks(config.benchmarks, max_new_tokens)
    backend = config.inference_backend
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(
        f"ci-runner evaluate: {config.model} ({config.model_label})"
        + (f" adapter on {config.base_model}" if config.base_model else "")
        + f" | tasks {', '.join(task_strings)} | backend={backend} device={device}"
        + f" | max_new_tokens={max_new_tokens}",
        flush=True,
    )
    tracker = evaluation_tracker(output_dir)
    runs_code = bool(CODE_BENCHMARKS & set(configs))  # their completions run in sandboxes
    doc_counts, chat = run_lighteval(config, configs, task_strings, limits, tracker, runs_code)

    results_file = newest_results_file(output_dir / RESULTS_DIRNAME)
    results = json.loads(results_file.read_text(encoding="utf-8"))["results"]
    details = tracker.details_logger.details  # per-sample metrics: the report's intervals
    scores = build_scores(config, configs, task_strings, results, doc_counts, details)
    report = sandbox.summary() if runs_code else None
    if report is not None and not report["isolated"]:  # the experiment's opt-in
        for entry in scores:
            if entry["benchmark"] in CODE_BENCHMARKS:
                entry["isolated"] = False
    for entry in scores:
        print(_format_score(entry), flush=True)
    return {
        "status": "completed",
        "experiment": config.experiment,
        "run_id": config.run_id,
        "eval_id": config.eval_id,
        "model": config.model,
        "model_label": config.model_label,
        "base_model": config.base_model,
        "inference_backend": backend,
        "device": device,
        "chat_template": chat,
        "max_new_tokens": max_new_tokens,
        "scores": scores,
        "results_file": str(results_file),
        "details_dir": str(output_dir / "details"),
        "output_dir": str(output_dir),
        "sandbox": report,
        "runtime_s": round(time.monotonic() - started, 3),
    }


if __name__ == "__main__":
    sys.exit(
        protocol.run_job(
            main,
            None,
            parse=EvalConfig.from_json,
            description=__doc__.splitlines()[0],
            reported=REPORTED,
            expected=EXPECTED,
        )
    )
