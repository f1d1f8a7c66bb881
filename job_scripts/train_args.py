"""The TRL config for a run, as train.py builds it: the trainer classes, machine
defaults under the run config's settings under the user's hyperparameters, the model's
loading (pinned revision, dtype, QLoRA, the launch's device map), LoRA, the tracker, and
where to resume.

A helper shipped beside ``train.py`` in every job: only the standard library at the
top; TRL, transformers and peft are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

from job_config import LoraSettings, Method, RunConfig
from mlflow_store import open_store
from protocol import ConfigError


def trainer_classes(method: Method):
    """(Config class, Trainer class) for a method; imported late to keep --help fast."""
    import trl

    names = {  # only the method's own: GRPO's trainer alone takes ~1 s to import
        Method.SFT: ("SFTConfig", "SFTTrainer"),
        Method.DPO: ("DPOConfig", "DPOTrainer"),
        Method.GRPO: ("GRPOConfig", "GRPOTrainer"),
    }[method]
    return getattr(trl, names[0]), getattr(trl, names[1])


def check_field_names(config_cls: type, hyperparameters: dict[str, Any]) -> None:
    """Reject unknown (often renamed) TRL fields with a suggestion, not a TypeError."""
    known = {f.name for f in dataclasses.fields(config_cls) if f.init}
    problems = []
    for name in sorted(set(hyperparameters) - known):
        close = difflib.get_close_matches(name, known, n=1)
        problems.append(f"{name} (did you mean {close[0]}?)" if close else name)
    if problems:
        raise ConfigError(f"unknown {config_cls.__name__} field(s): {', '.join(problems)}")


def fsdp_launched() -> bool:
    """``accelerate launch`` with an FSDP config tells its processes so in the environment."""
    return os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true")


def model_init_defaults(user: dict[str, Any]) -> dict[str, Any] | None:
    """``model_init_kwargs`` with what the launch needs, under the user's (and the plan's).

    FSDP shards the model itself: each process must load it whole onto no device
    (``device_map=None``; TRL would otherwise pass "auto" and spread it over every GPU),
    as TRL already does for DDP and DeepSpeed.
    """
    kwargs = user.get("model_init_kwargs")
    if not fsdp_launched():
        return kwargs
    return {"device_map": None, **(kwargs or {})}


def parallelism(args: Any) -> str:
    """How the processes share the work: no (one process), multi_gpu (DDP), fsdp, multi_cpu."""
    if fsdp_launched() and not args.use_cpu:
        return "fsdp"  # the Trainer's Accelerator applies the FSDP plugin from the launch env
    return str(args.distributed_state.distributed_type.value).lower()


def quantization_config(config: RunConfig) -> Any:
    """QLoRA: the bitsandbytes config the base loads with; None when not quantized.

    NF4 with double quantization, computing in the dtype the run config's
    ``model_init_kwargs.dtype`` names (bf16; fp16 on T4), as in the QLoRA paper.
    """
    if config.lora is None or config.lora.quantize != "4bit":
        return None
    from transformers import BitsAndBytesConfig

    kwargs = config.hyperparameters.get("model_init_kwargs") or {}
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch_dtype(kwargs, "bfloat16"),
    )


def torch_dtype(model_init_kwargs: dict[str, Any], default: str) -> Any:
    """The torch dtype ``model_init_kwargs`` names (``dtype``, or the older ``torch_dtype``;
    ``bfloat16`` or ``torch.bfloat16``), else the one ``default`` names (also for ``auto``)."""
    import torch

    name = str(model_init_kwargs.get("dtype") or model_init_kwargs.get("torch_dtype") or default)
    dtype = getattr(torch, name.removeprefix("torch."), None)
    return dtype if isinstance(dtype, torch.dtype) else getattr(torch, default)


def runtime_defaults(method: Method, has_eval: bool, user: dict[str, Any]) -> dict[str, Any]:
    """Defaults that suit the machine; every one yields to a user hyperparameter."""
    import torch

    cuda = torch.cuda.is_available()
    # One printed line per logging step reads better in job logs than a progress bar.
    defaults: dict[str, Any] = {"disable_tqdm": True}
    if not cuda:
        # TRL defaults to bf16 and checkpointing: both only slow a CPU down.
        defaults.update(use_cpu=True, bf16=False)
    elif not torch.cuda.is_bf16_supported():
        defaults["bf16"] = False
    # transformers 5.23 renamed gradient_checkpointing to activation_checkpointing, and
    # the new name wins when both are set: so default it only if the user set neither.
    if not {"gradient_checkpointing", "activation_checkpointing"} & set(user):
        defaults["activation_checkpointing"] = cuda  # TRL's default on GPU, off on CPU
    if has_eval:
        defaults["eval_strategy"] = "steps"
    if method in (Method.SFT, Method.DPO):
        # GRPO counts prompt + completion tokens itself; these two need the Trainer to count.
        defaults["include_num_input_tokens_seen"] = "non_padding"
    return defaults


def build_training_args(config: RunConfig, has_eval: bool):
    """The TRL config: machine defaults < run-config settings < user hyperparameters."""
    config_cls, _ = trainer_classes(config.method)
    hyperparameters = dict(config.hyperparameters)
    check_field_names(config_cls, hyperparameters)
    tracking = config.tracking
    settings: dict[str, Any] = {"seed": config.seed, "run_name": tracking.run_name}
    if tracking.backend == "mlflow":
        configure_mlflow(config)
        settings["report_to"] = "mlflow"
    else:
        settings.update(report_to="trackio", project=tracking.project)
        if tracking.space_id:
            settings["trackio_space_id"] = tracking.space_id
    if config.hub_model_id:
        settings.update(
            push_to_hub=True,
            hub_model_id=config.hub_model_id,
            hub_private_repo=config.hub_private,
            hub_strategy="checkpoint",  # keeps last-checkpoint/ on the Hub, for resuming
        )
    output_dir = hyperparameters.pop("output_dir", None)
    if output_dir and output_dir != config.output_dir:
        print(f"note: ignoring hyperparameters.output_dir, using {config.output_dir}")
    defaults = runtime_defaults(config.method, has_eval, hyperparameters)
    kwargs = {**defaults, **settings, **hyperparameters}
    model_init = model_init_defaults(hyperparameters)
    if config.base_model_revision:  # TRL loads the model and tokenizer at this commit
        model_init = {**(model_init or {}), "revision": config.base_model_revision}
    if model_init is not None:
        kwargs["model_init_kwargs"] = model_init
    return config_cls(output_dir=config.output_dir, **kwargs)


def configure_mlflow(config: RunConfig) -> None:
    """transformers' ``MLflowCallback`` (5.23) takes its settings from the environment:
    the tracking URI, the experiment (created if missing), and tags naming the ci-runner
    run, which is how the runner finds the MLflow run again. Each attempt is its own
    MLflow run, with the same tags."""
    if importlib.util.find_spec("mlflow") is None:
        raise ConfigError(
            "tracking.backend is mlflow, but the job has no mlflow package: install "
            "ci-runner's mlflow extra (pip install 'ci-runner[mlflow]') where local jobs run"
        )
    tracking = config.tracking
    if tracking.uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking.uri
        open_store(tracking.uri)  # a local store: made now, by one process at a time
    os.environ["MLFLOW_EXPERIMENT_NAME"] = tracking.project
    tags = {"ci-runner.run": config.run_id or tracking.run_name}
    if config.experiment:
        tags["ci-runner.experiment"] = config.experiment
    os.environ["MLFLOW_TAGS"] = json.dumps(tags)
    os.environ.pop("MLFLOW_RUN_ID", None)  # never reattach to a run from elsewhere


def tracker_summary(config: RunConfig) -> dict[str, Any] | None:
    """The MLflow run this job logged to, for the runner's ledger and report."""
    if config.tracking.backend != "mlflow":
        return None
    mlflow = sys.modules.get("mlflow")
    if mlflow is None:
        return None
    with contextlib.suppress(Exception):  # the summary matters more than this detail
        flush = getattr(mlflow, "flush_async_logging", None)
        if flush is not None:
            flush()  # the Trainer logs metrics asynchronously
        run = mlflow.active_run() or mlflow.last_active_run()
        if run is not None:
            return {
                "backend": "mlflow",
                "run_id": run.info.run_id,
                "experiment_id": run.info.experiment_id,
                "uri": config.tracking.uri,
            }
    return None


def build_peft_config(lora: LoraSettings | None):
    """A LoraConfig when LoRA is on; None trains the full model."""
    if lora is None:
        return None
    from peft import LoraConfig

    modules = lora.target_modules
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=modules if isinstance(modules, str) else list(modules),
        task_type="CAUSAL_LM",
    )


def resolve_checkpoint(config: RunConfig) -> str | bool | None:
    """Where to resume from: a local folder, "latest" in output_dir, or the Hub's copy.

    The job's disk may be gone, so a name missing locally (e.g. ``last-checkpoint``,
    which ``hub_strategy="checkpoint"`` pushes) is fetched from ``hub_model_id``.
    """
    value = config.resume_from_checkpoint
    if not value:
        return None
    if value in ("latest", "true", "True"):
        return True  # the Trainer picks the newest checkpoint-* in output_dir
    if Path(value).is_dir():
        return value
    if config.hub_model_id:
        from huggingface_hub import snapshot_download

        folder = value.strip("/")
        snapshot_download(
            config.hub_model_id, allow_patterns=[f"{folder}/*"], local_dir=config.output_dir
        )
        local = Path(config.output_dir) / folder
        if local.is_dir():
            return str(local)
        # The runner asks for the Hub's copy whenever one may exist; none pushed yet
        # means the previous attempt died before its first save.
        print(f"no {folder} on the Hub yet: starting from step 0", flush=True)
        return None
    raise ConfigError(f"resume_from_checkpoint: {value} not found locally or on the Hub")
