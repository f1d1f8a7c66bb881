"""The resolved run config: the one JSON document a job script receives.

Job scripts are self-contained (PEP 723) and never import ``ci_runner``, so this
model is the contract between the runner and ``job_scripts/*.py``. Everything a
script needs is resolved here (absolute paths, LoRA on/off, run name), which is
why the scripts carry no experiment-specific constants.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ci_runner.job_scripts.protocol import RUN_CONFIG_ENV as RUN_CONFIG_ENV
from ci_runner.job_scripts.protocol import SCHEMA_VERSION as SCHEMA_VERSION
from ci_runner.job_scripts.protocol import SUMMARY_PREFIX as SUMMARY_PREFIX


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSource(_Frozen):
    """Where the training data comes from and how to shape it.

    ``columns`` maps the column TRL expects to the column the dataset has,
    e.g. ``{"chosen": "good_response"}``.
    """

    path: str
    config: str | None = None
    split: str = "train"
    eval_split: str | None = None
    eval_fraction: float | None = None
    columns: dict[str, str] = {}
    max_samples: int | None = None
    revision: str | None = None  # the Hub commit the job loads (pinned at submit)


class LoraSettings(_Frozen):
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"
    # "4bit": QLoRA, the frozen base loads as bitsandbytes NF4 (double quant), computing in
    # the dtype ``hyperparameters.model_init_kwargs.dtype`` names. None: not quantized.
    quantize: Literal["4bit"] | None = None


class Launch(_Frozen):
    """How the job starts the script: one process, or one per GPU under ``accelerate launch``.

    ``ddp`` replicates the model on every GPU (it fits one); ``fsdp`` shards weights,
    gradients and optimizer states over them (FSDP2, from a generated accelerate config).
    """

    processes: int = 1  # per node
    strategy: Literal["single", "ddp", "fsdp"] = "single"
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"  # the accelerate config's value
    # Machines, each starting ``processes`` (the Ray backend's ``nodes: N``); left out of
    # the JSON on one machine, so single-node run configs read as they always have.
    nodes: int = Field(default=1, ge=1, exclude_if=lambda nodes: nodes == 1)

    @property
    def distributed(self) -> bool:
        """Several processes: ``accelerate launch`` starts them, on one machine or several."""
        return self.processes > 1 or self.nodes > 1

    @property
    def world_size(self) -> int:
        return self.processes * self.nodes


# Where a local run's MLflow metrics go unless ``tracking.uri`` says: relative to the
# project root, which is a local job's working directory.
LOCAL_MLFLOW_URI = "sqlite:///.ci-runner/mlflow.db"
# What a job logging to MLflow needs beyond train.py's own header (HF Jobs: `uv run --with`),
# and the environment variables MLflow reads its credentials from (passed as job secrets).
MLFLOW_JOB_REQUIREMENTS = ("mlflow-skinny==3.17.2",)
MLFLOW_SECRET_ENV = (
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
)
# What a training job loading a 4-bit base (QLoRA) needs beyond train.py's header (see
# ``packages_for``). transformers 5.23 needs bitsandbytes >= 0.46.1 for 4-bit; 0.50.2
# requires torch >= 2.4, < 3.
BITSANDBYTES = "bitsandbytes==0.50.2"
# What a job needs beyond train.py's header when the plan turns a saver on: Liger's Triton
# kernels (``use_liger_kernel``; pure Python, torch >= 2.1.2), and vLLM for GRPO's
# colocated generation (``use_vllm``). 0.30.0 is the newest vLLM whose pins resolve with
# the header's torch 2.13.0 and transformers 5.23.0 (0.31 caps transformers below 5.18,
# 0.33 needs torch 2.14); TRL 1.16 supports vLLM 0.22 to 0.31.
LIGER_KERNEL = "liger-kernel==0.8.5"
VLLM = "vllm==0.30.0"


class Tracking(_Frozen):
    """``project`` is trackio's project, or for MLflow the experiment's name."""

    project: str
    run_name: str
    space_id: str | None = None
    backend: Literal["trackio", "mlflow"] = "trackio"
    uri: str | None = None  # MLflow's tracking URI


class RunConfig(_Frozen):
    schema_version: int = SCHEMA_VERSION
    experiment: str
    run_id: str
    method: Literal["sft", "dpo", "grpo"]
    base_model: str
    base_model_revision: str | None = None  # the Hub commit the job loads (pinned at submit)
    dataset: DatasetSource
    hyperparameters: dict[str, Any] = {}
    lora: LoraSettings | None = None
    rewards: list[str] = []
    output_dir: str
    hub_model_id: str | None = None
    hub_private: bool = True
    merge_lora: bool = False  # also save (and push) the adapter merged into the base
    tracking: Tracking
    seed: int = 42
    resume_from_checkpoint: str | None = None
    launch: Launch = Launch()


def packages_for(run_config: BaseModel) -> tuple[str, ...]:
    """Packages a job needs beyond its script's header, only when its settings use them:
    bitsandbytes for a 4-bit base, liger-kernel for ``use_liger_kernel``, vLLM for
    ``use_vllm``."""
    if isinstance(run_config, EvalConfig):
        return (BITSANDBYTES,) if run_config.quantize else ()
    if not isinstance(run_config, RunConfig):
        return ()
    hp = run_config.hyperparameters
    packages = []
    if run_config.lora and run_config.lora.quantize:
        packages.append(BITSANDBYTES)
    if hp.get("use_liger_kernel"):
        packages.append(LIGER_KERNEL)
    if run_config.method == "grpo" and hp.get("use_vllm"):
        packages.append(VLLM)
    return tuple(packages)


class BenchmarkSpec(_Frozen):
    """One benchmark to run: a ci-runner task (humaneval, gsm8k) or a lighteval task name.

    ``dataset`` overrides where the task reads its rows (a Hub id or a local dir);
    tests point it at tiny local copies in the same format.
    """

    benchmark: str
    fewshot: int = 0
    dataset: str | None = None
    max_samples: int | None = None


class EvalConfig(_Frozen):
    """What ``job_scripts/evaluate.py`` receives: one model, several benchmarks."""

    schema_version: int = SCHEMA_VERSION
    experiment: str
    run_id: str
    eval_id: str  # stable per (run, model, benchmarks): the job's label
    model: str  # a local path or a Hub id (a repo, or repo@revision for a checkpoint)
    model_label: str  # "base", "final" or "checkpoint-<step>"
    # Local only: the training job's folder. The job starts with training and loads its
    # libraries while the model trains; this model is evaluated once that job has ended.
    after_job: str | None = None
    base_model: str | None = None  # set when ``model`` is a LoRA adapter
    benchmarks: list[BenchmarkSpec]
    output_dir: str
    seed: int = 42
    max_new_tokens: int = 256
    inference_backend: Literal["accelerate", "vllm"] = "accelerate"
    # The experiment's opt-in: run generated code even where the sandbox cannot isolate
    # it (scores then carry ``isolated: false``); without it such an evaluation refuses.
    allow_unisolated_code: bool = False
    # How the plan sized this evaluation: "4bit" loads the model as bitsandbytes NF4 (as a
    # QLoRA run trained it); device_map "auto" spreads it over the flavor's GPUs.
    quantize: Literal["4bit"] | None = None
    device_map: Literal["auto"] | None = None


class EvalBatchConfig(_Frozen):
    """What ``job_scripts/evaluate_many.py`` receives: several models' eval configs, run
    one after another in one process (the local backend: the libraries load once)."""

    schema_version: int = SCHEMA_VERSION
    evaluations: list[EvalConfig]  # each writes to its own output_dir, as a job of its own


class ExportConfig(_Frozen):
    """What ``job_scripts/export_gguf.py`` receives."""

    schema_version: int = SCHEMA_VERSION
    experiment: str
    run_id: str
    model: str  # a local path or a Hub id
    base_model: str | None = None  # set when ``model`` is a LoRA adapter to merge first
    quantizations: list[str] = ["Q4_K_M"]
    output_dir: str
    hub_repo: str | None = None
    hub_private: bool = True
