# /// script
# requires-python = ">=3.10"
# dependencies = [
#     "torch==2.13.0",
#     "transformers==5.23.0",
#     "trl==1.16.0",
#     "peft==0.21.2",
#     "datasets==5.2.0",
#     "accelerate==1.15.0",
#     "trackio==0.43.0",
#     "huggingface_hub==2.4.0",
#     "sentencepiece>=0.2",
# ]
# ///
"""Train one run: SFT, DPO or GRPO with TRL, optional LoRA, trackio or MLflow logging.

Runs inside a job (HF Jobs or the local backend) and knows nothing about
experiments: everything comes from one resolved run config (JSON, built by
``ci_runner/runconfig.py``, read into ``job_config.RunConfig``), given as

    python train.py --config run.json        # a path, or inline JSON
    CI_RUNNER_RUN_CONFIG=run.json python train.py

It prints a short banner and one line per logging step, and always ends with a
single ``CI_RUNNER_SUMMARY {json}`` line (also written to
``<output_dir>/ci_runner_summary.json``) that the runner parses. On failure the
summary has ``status: "failed"`` and the exit code is non-zero.

Under ``accelerate launch`` (several GPUs: DDP or FSDP) every process runs this
script; only the main one (rank 0) prints the banner, the progress and the summary.
QLoRA (``lora.quantize: 4bit``) loads the base through bitsandbytes, which the runner
adds to the job's environment (``uv run --with bitsandbytes``).

Modelled on ``trl/scripts/sft.py``: ``train`` reads top-down (arguments, datasets,
trainer, train, save and push, summary) and the helpers follow it.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import curves  # sibling helper modules, shipped with this script
import protocol
from job_config import Method, RunConfig
from protocol import ConfigError
from rewards import resolve_rewards
from train_args import (
    build_peft_config,
    build_training_args,
    fsdp_launched,
    parallelism,
    quantization_config,
    resolve_checkpoint,
    torch_dtype,
    tracker_summary,
    trainer_classes,
)
from train_data import load_datasets

_LIVE_UNTIL_EXIT: list[Any] = []  # what a multi-process run must not free: see train()


def train(config: RunConfig) -> dict[str, Any] | None:
    """Load, configure, train, save (and push); return the summary (None on the other
    processes of a multi-process launch: the main one reports)."""
    # Arguments: the typed run config (checked before this runs), TRL's config from it.
    protocol.quiet_libraries()
    rewards, reward_columns = method_rewards(config)
    train_set, eval_set, data_notes = load_datasets(config, reward_columns)
    args = build_training_args(config, has_eval=eval_set is not None)
    peft_config = build_peft_config(config.lora)
    quantization = quantization_config(config)
    checkpoint = resolve_checkpoint(config)
    main_process = args.process_index == 0
    if main_process:
        print_banner(config, args, train_set, eval_set, peft_config, quantization)

    # Trainer
    from transformers import PrinterCallback

    _, trainer_cls = trainer_classes(config.method)
    kwargs: dict[str, Any] = {"reward_funcs": rewards} if config.method is Method.GRPO else {}
    if quantization is not None:  # TRL adds it to model_init_kwargs for from_pretrained
        kwargs["quantization_config"] = quantization
    progress = make_progress_callback()
    trainer = trainer_cls(
        model=config.base_model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        peft_config=peft_config,
        callbacks=[progress],
        **kwargs,
    )
    trainer.remove_callback(PrinterCallback)  # ours prints the same logs, compactly

    # Train
    if checkpoint and main_process:
        where = "the newest checkpoint in the output dir" if checkpoint is True else checkpoint
        print(f"resuming from {where}", flush=True)
    train_output = trainer.train(resume_from_checkpoint=checkpoint)

    # Save and push. Every process takes part in saving (FSDP gathers the full state
    # dict); rank 0 writes.
    trainer.save_model(args.output_dir)  # for LoRA this writes the adapter only
    if main_process:
        print(f"saved {'adapter' if peft_config else 'model'} to {args.output_dir}", flush=True)
    merged_dir = None
    if peft_config and config.merge_lora and main_process:
        merged_dir = save_merged(trainer, config, args.output_dir)
    if args.push_to_hub:
        push(trainer, config, merged_dir)

    # Summary
    summary = build_summary(config, trainer, train_output, progress.tokens_at_start)
    summary["processes"] = args.world_size
    if data_notes:
        summary["data"] = data_notes
    if args.world_size > 1:
        trainer.accelerator.wait_for_everyone()
        # Never free the DDP model: its reducer's destructor joins gloo's worker thread
        # while holding the GIL, and that thread needs the GIL to drop the last
        # collective's tensors, so a rank hung at exit (seen on CPU, on one machine and
        # on two nodes). The trainer lives until the process leaves through os._exit.
        _LIVE_UNTIL_EXIT.append(trainer)
    if hasattr(trainer, "end"):  # transformers >= 5.18: finish trackers (trackio)
        trainer.end()
    tracking = tracker_summary(config)
    if tracking:
        summary["tracking"] = tracking
    return summary if main_process else None


def main(argv: list[str] | None = None) -> int:
    return protocol.run_job(
        train,
        argv,
        parse=RunConfig.from_json,
        description=__doc__.splitlines()[0],
        reported=("method",),
        on_failure=_on_failure,
    )


# --- arguments ----------------------------------------------------------------


def method_rewards(config: RunConfig) -> tuple[list[Any], set[str]]:
    """GRPO's reward functions and the dataset columns they read; none for the others."""
    if config.method is not Method.GRPO:
        if config.rewards:
            print(f"note: rewards are only used by GRPO; ignoring them for {config.method.value}")
        return [], set()
    rewards, reward_columns = resolve_rewards(list(config.rewards))
    if not rewards:
        raise ConfigError("GRPO needs at least one reward, e.g. rewards: [accuracy]")
    return rewards, reward_columns


def print_banner(config: RunConfig, args, train_set, eval_set, peft_config, quantization) -> None:
    """One line saying what trains on what, where; the main process prints it."""
    dtype = (args.model_init_kwargs or {}).get("dtype", "float32")
    print(
        f"ci-runner train: {config.method.value.upper()} {config.base_model} on "
        f"{config.dataset.path}"
        f" | rows train={len(train_set)} eval={len(eval_set) if eval_set is not None else 0}"
        f" | lora={'r=' + str(peft_config.r) if peft_config else 'off'}"
        f" | base={'4-bit NF4, ' + str(dtype) + ' compute' if quantization else dtype}"
        f" | device={'cpu' if args.use_cpu else args.device}"
        f" | processes={args.world_size} ({parallelism(args)})"
        f" | run={config.tracking.project}/{config.tracking.run_name}",
        flush=True,
    )
    if fsdp_launched() and args.use_cpu:
        print(
            f"note: launched with an FSDP config, but FSDP needs CUDA GPUs: the "
            f"{args.world_size} processes train data-parallel instead",
            flush=True,
        )


# --- save and push ------------------------------------------------------------


def save_merged(trainer, config: RunConfig, output_dir: str) -> str:
    """Fold the LoRA adapter into the base weights, in a fresh folder (no stale files).

    A 4-bit base, or one sharded over several processes, cannot take the adapter in
    place: the saved adapter is applied to a 16-bit reload of the base on the CPU.
    """
    merged_dir = Path(output_dir) / "merged"
    if merged_dir.exists():
        import shutil

        shutil.rmtree(merged_dir)
    quantized = bool(getattr(trainer.model, "is_loaded_in_4bit", False))
    if quantized or trainer.args.world_size > 1:
        model = reload_merged(trainer, config, output_dir)
    else:
        model = trainer.model.merge_and_unload()
    model.save_pretrained(merged_dir)
    trainer.processing_class.save_pretrained(merged_dir)
    print(f"saved the merged model to {merged_dir}", flush=True)
    return str(merged_dir)


def reload_merged(trainer, config: RunConfig, adapter_dir: str) -> Any:
    """The base as the trainer loaded it (``model_init_kwargs``: the pinned revision, remote
    code), but in its 16-bit (or float32) dtype on the CPU, with the saved adapter merged."""
    kwargs = trainer.args.model_init_kwargs or {}
    pinned = {"revision": kwargs["revision"]} if kwargs.get("revision") else {}
    return protocol.merge_lora(
        config.base_model,
        adapter_dir,
        dtype=torch_dtype(kwargs, "float32"),
        device_map="cpu",
        # As TRL's trainers load it: the config's own flag unless model_init_kwargs sets one.
        trust_remote_code=kwargs.get("trust_remote_code", trainer.args.trust_remote_code),
        **pinned,
    )


def push(trainer, config: RunConfig, merged_dir: str | None) -> None:
    """The adapter (or model) and checkpoints go up with the Trainer; a merged model
    replaces them."""
    dataset = config.dataset.path
    trainer.push_to_hub(dataset_name=None if Path(dataset).exists() else dataset)
    if merged_dir:
        from huggingface_hub import HfApi

        HfApi().upload_folder(
            repo_id=trainer.args.hub_model_id,
            folder_path=merged_dir,
            commit_message="ci-runner: merged LoRA weights",
        )
    print(f"pushed to https://huggingface.co/{trainer.args.hub_model_id}", flush=True)


# --- progress and summary -----------------------------------------------------

# Keys worth a place on the one-line progress report, in this order.
PROGRESS_KEYS = (
    "loss",
    "eval_loss",
    "reward",
    "reward_std",
    "completions/mean_length",
    "kl",
    "mean_token_accuracy",
    "eval_mean_token_accuracy",
    "rewards/chosen",
    "rewards/accuracies",
    "rewards/margins",
    "grad_norm",
    "learning_rate",
    "num_tokens",
    "epoch",
    "train_loss",
)


def make_progress_callback():
    """A callback printing one compact line per log, and noting where training started."""
    from transformers import TrainerCallback

    class ProgressPrinter(TrainerCallback):
        tokens_at_start = 0

        def on_train_begin(self, args, state, control, **kwargs):
            # After a resume the state already counts earlier tokens; tokens/s is per session.
            self.tokens_at_start = state.num_input_tokens_seen
            self.started = time.monotonic()
            self.step_at_start = state.global_step

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            shown = [k for k in PROGRESS_KEYS if k in logs]
            shown += sorted(k for k in logs if k.startswith("rewards/") and k.endswith("/mean"))
            fields = " ".join(f"{k}={_fmt(logs[k])}" for k in shown)
            done = state.global_step - self.step_at_start
            if done > 0 and state.max_steps:
                rate = (time.monotonic() - self.started) / done
                fields += f" eta_s={rate * (state.max_steps - state.global_step):.0f}"
            print(f"[step {state.global_step}/{state.max_steps}] {fields}", flush=True)

    return ProgressPrinter()


def _fmt(value: Any) -> str:
    """Four significant digits: enough to watch a loss move, short enough for one line."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def build_summary(config: RunConfig, trainer, train_output, tokens_at_start: int) -> dict[str, Any]:
    """The machine-readable result: losses, the method's own metrics, steps, speed and
    where the model went. Curves are thinned to a few hundred points (``curves.py``)."""
    state = trainer.state
    logged = [
        (entry["step"], float(entry["loss"])) for entry in state.log_history if "loss" in entry
    ]
    finite = [(step, loss) for step, loss in logged if math.isfinite(loss)]
    losses = [loss for _, loss in finite]
    final_loss = logged[-1][1] if logged else float(train_output.training_loss)
    eval_losses = [entry["eval_loss"] for entry in state.log_history if "eval_loss" in entry]
    series, nonfinite = curves.collect(config.method.value, state.log_history, state.max_steps)
    runtime = float(train_output.metrics.get("train_runtime", 0.0))
    tokens = int(state.num_input_tokens_seen - tokens_at_start)
    return {
        "status": "completed",
        "method": config.method.value,
        "final_loss": final_loss,
        "min_loss": min(losses) if losses else final_loss,
        "eval_loss": float(eval_losses[-1]) if eval_losses else None,
        "steps": state.global_step,
        "max_steps": state.max_steps,
        "runtime_s": round(runtime, 3),
        "train_tokens": tokens,
        "train_tokens_per_s": round(tokens / runtime, 2) if runtime > 0 else None,
        "output_dir": str(Path(config.output_dir).resolve()),
        "loss_history": [list(p) for p in curves.downsample(finite, state.max_steps)],
        "series": {key: [list(p) for p in points] for key, points in series.items()},
        "nonfinite": nonfinite,
        "lora": config.lora is not None,
    }


def finish_trackers() -> None:
    """Close an open trackio or MLflow run now, so its exit message can't land after the
    summary (an MLflow run left open by a failure ends as FAILED)."""
    # Nothing to close, or the store is the problem: either way the summary matters more.
    trackio = sys.modules.get("trackio")
    if trackio is not None:
        with contextlib.suppress(Exception):
            trackio.finish()
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:
        with contextlib.suppress(Exception):
            if mlflow.active_run() is not None:
                mlflow.end_run(status="FAILED")


def _on_failure(exc: BaseException, config: RunConfig | None) -> dict[str, Any]:
    if config is None:  # the config itself failed its checks: no tracker was opened
        return {}
    tracking = tracker_summary(config)
    finish_trackers()
    return {"lora": config.lora is not None, **({"tracking": tracking} if tracking else {})}


if __name__ == "__main__":
    code = main()
    if _LIVE_UNTIL_EXIT:  # a rank of a multi-process run: leave without freeing the model
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    import gc  # everything is written: skip the collections over the ML stack at exit (~1 s)

    gc.freeze()
    sys.exit(code)
