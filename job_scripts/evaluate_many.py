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
"""Evaluate several models one after another in one process, each as evaluate.py would.

The local backend runs a run's base and final (and checkpoint) evaluations this way:
torch, transformers and lighteval load once instead of once per model, which is most
of an evaluation's time on a small model, and one CPU is not shared by two jobs.

    python evaluate_many.py --config batch.json      # {"evaluations": [eval config, ...]}

Each model runs as ``python evaluate.py --config <its EvalConfig>`` would, through the
same ``protocol.run_job``: each prints its own ``CI_RUNNER_SUMMARY`` line (with its
``model_label``) and writes its own ``<output_dir>/ci_runner_summary.json``; one model
failing does not stop the next. The exit code is 0 only if every model's evaluation
completed.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import sys

import evaluate  # the sibling entry script: this runs exactly what it runs
import protocol
from job_config import EvalBatchConfig, EvalConfig


def release_memory() -> None:
    """Let the next model have the memory the last one held (a GPU's above all)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def yield_to_training() -> None:
    """This job started beside a local training job, on the same cores: until training
    ends (``evaluate.py`` waits for it before the trained model), it takes one thread at
    a lower priority, so the base's evaluation fills the cores training leaves idle
    instead of slowing every step of it."""
    os.environ["OMP_NUM_THREADS"] = "1"  # torch is not imported yet: it reads it then
    with contextlib.suppress(OSError):
        os.nice(10)


def main(argv: list[str] | None = None) -> int:
    description = (__doc__ or "").splitlines()[0]
    try:
        document, name = protocol.read_config(argv, description=description)
        batch = EvalBatchConfig.from_json(document, source=name)
    except protocol.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    each = (evaluate.__doc__ or "").splitlines()[0]
    if any(config.after_job for config in batch.evaluations):
        yield_to_training()
    codes = []
    for index, one in enumerate(document["evaluations"]):
        if index:
            release_memory()
        codes.append(  # each as its own evaluate.py run: its own summary, its own failure
            protocol.run_job(
                evaluate.main,
                ["--config", json.dumps(one)],
                parse=EvalConfig.from_json,
                description=each,
                reported=evaluate.REPORTED,
                expected=evaluate.EXPECTED,
            )
        )
    return max(codes, default=2)


if __name__ == "__main__":
    code = main()
    # Everything is written: skip the collections over the whole ML stack at exit (~1 s).
    gc.freeze()
    sys.exit(code)
