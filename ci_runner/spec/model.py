"""The experiment file's schema (shape only; cross-field rules live in ``checks``).

Shorthands users reach for are accepted and normalised here (``dataset: org/name``,
``lora: off`` — which YAML reads as ``False`` —, ``timeout: 2h``), so the rest of
the code sees one shape. Each field's ``description`` is the one text that explains it:
``ci-runner schema`` prints it, editors show it, and the README's and AGENTS.md's field
references are generated from it (``ci_runner.spec.schema``).
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from ci_runner.core.durations import DURATION_RE, parse_duration
from ci_runner.core.flavors import FLAVORS_BY_NAME
from ci_runner.core.hashing import short_hash
from ci_runner.core.hub import (
    HUB_ID_RE,
    REVISION_RE,
    split_revision,
)

Method = Literal["sft", "dpo", "grpo"]
BUILTIN_REWARDS = ("accuracy", "format")
# Benchmarks ci-runner ships itself (job_scripts/evaluate_pipeline.py's OWN_TASKS); any other
# name is looked up among lighteval's tasks inside the job.
BUILTIN_BENCHMARKS = ("humaneval", "gsm8k")

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
REWARD_FN_RE = re.compile(r"[^:\n]+\.py:[A-Za-z_][A-Za-z0-9_]*")


def _revision(value: str | None) -> str | None:
    if value is not None and not REVISION_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a branch, tag or commit of a Hub repo")
    return value


Revision = Annotated[
    str | None,
    AfterValidator(_revision),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "pattern": f"^(?:{REVISION_RE.pattern})$"}, {"type": "null"}]}
    ),
]


def _reward_ref(reward: str) -> str:
    if reward not in BUILTIN_REWARDS and not REWARD_FN_RE.fullmatch(reward):
        raise ValueError(
            f"unknown reward {reward!r}: use a built-in "
            f"({', '.join(BUILTIN_REWARDS)}) or path/to/module.py:function"
        )
    return reward


def _benchmark_name(name: str) -> str:
    """A name one typo away from a built-in is that built-in misspelled, not a lighteval
    task: refused here rather than after training, when the evaluation job fails."""
    if name in BUILTIN_BENCHMARKS:
        return name
    close = difflib.get_close_matches(name.lower(), BUILTIN_BENCHMARKS, n=1, cutoff=0.75)
    if close:
        raise ValueError(
            f"unknown benchmark {name!r}: the built-ins are {', '.join(BUILTIN_BENCHMARKS)}; "
            "other names are lighteval tasks"
        )
    return name


# Fields that change how a run is watched or paid for, not what it trains.
NOT_TRAINING = {"description", "timeout", "budget", "retry"}
# Fields that make a file describe several runs (``spec.expand``); never part of a run's id.
MULTI_RUN = {"matrix", "stages", "max_parallel", "replicates", "seeds"}


def _name(value: str) -> str:
    if not NAME_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid name: use 1-64 lowercase letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return value


def _hardware(value: str) -> str:
    if value != "auto" and value not in FLAVORS_BY_NAME:
        raise ValueError(f"unknown hardware flavor {value!r}")
    return value


def _token(value: str) -> str:
    """A name the job passes on as is (a split, a column, a project): one line, no
    surrounding spaces, or the paid job fails on it after it started."""
    if value != value.strip() or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError(f"{value!r} holds a line break, a tab or surrounding spaces")
    return value


Token = Annotated[str, AfterValidator(_token)]  # a split, a column, a project name
RewardRef = Annotated[
    str,
    AfterValidator(_reward_ref),
    WithJsonSchema(
        {
            "anyOf": [
                {"enum": list(BUILTIN_REWARDS)},
                {"type": "string", "pattern": f"^(?:{REWARD_FN_RE.pattern})$"},
            ]
        }
    ),
]
Name = Annotated[  # an experiment's, a stage's
    str,
    AfterValidator(_name),
    WithJsonSchema({"type": "string", "pattern": f"^(?:{NAME_RE.pattern})$"}),
]
Hardware = Annotated[
    str,
    AfterValidator(_hardware),
    WithJsonSchema({"enum": ["auto", *FLAVORS_BY_NAME]}),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(_Strict):
    """The training data: a Hub dataset, a local file or a folder."""

    path: str = Field(
        min_length=1,
        description="A Hub dataset id, or a local .jsonl/.json/.parquet/.csv file or folder "
        "in the project.",
    )
    config: Token | None = Field(default=None, description="The Hub dataset's config (subset).")
    split: Token = Field(default="train", description="The split to train on.")
    eval_split: Token | None = Field(
        default=None, description="A split to evaluate on during training (e.g. `test`)."
    )
    eval_fraction: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Hold out this fraction of the training split for evaluation instead.",
    )
    columns: dict[Token, Token] = Field(
        default={},
        description="Rename columns to the ones TRL reads: `{TRL column: your column}`, "
        "e.g. `{chosen: good_response}` (`check-data` suggests it).",
    )
    max_samples: int | None = Field(
        default=None, gt=0, description="Train on the first N rows only (quick runs)."
    )
    revision: Revision = Field(
        default=None,
        description="A Hub dataset's branch, tag or commit; unset, `submit` pins the "
        "newest commit.",
    )


def _quantize_shorthand(value: Any) -> Any:
    """`quantize: off` (YAML 1.1 reads it as False) and `quantize: 4`, as people write them."""
    if value is False or value in ("off", "no", "false"):
        return "none"
    if value in (4, "4", "nf4", "4-bit"):
        return "4bit"
    return value


Quantize = Annotated[
    Literal["auto", "none", "4bit"],
    BeforeValidator(
        _quantize_shorthand,
        json_schema_input_type=Literal["auto", "none", "4bit", "off", "nf4", False, 4],
    ),
]


class LoraSpec(_Strict):
    """PEFT LoRA adapters; the base model stays frozen."""

    r: int = Field(default=16, gt=0, description="The adapters' rank.")
    alpha: int = Field(default=32, gt=0, description="LoRA alpha (scaling is alpha / r).")
    dropout: float = Field(default=0.05, ge=0, lt=1, description="Dropout on the adapters.")
    target_modules: list[str] | str = Field(
        default="all-linear", description="The modules that get adapters, as PEFT names them."
    )
    quantize: Quantize = Field(
        default="auto",
        description="QLoRA: `4bit` loads the frozen base as bitsandbytes NF4 (CUDA only); "
        "`auto` picks it when the 16-bit base fits no single GPU at ≤ $5/h; `none` never "
        "quantizes.",
    )


class OutputSpec(_Strict):
    """Where the trained model goes."""

    hub_model_id: str | None = Field(
        default=None,
        description="The Hub repo (`<user-or-org>/<name>`) that checkpoints and the model "
        "are pushed to; required on hf-jobs.",
    )
    private: bool = Field(default=True, description="Create the Hub repo private.")
    merge: bool = Field(
        default=False,
        description="LoRA runs: also publish the model merged into its base, not only the adapter.",
    )

    @field_validator("hub_model_id")
    @classmethod
    def _hub_id(cls, value: str | None) -> str | None:
        if value is not None and (not HUB_ID_RE.fullmatch(value) or "/" not in value):
            raise ValueError(f"{value!r} is not a Hub repo id; write it as <user-or-org>/<name>")
        return value


class TrackingSpec(_Strict):
    """Where a run's metrics go: trackio (the default), or an MLflow tracking store.

    Defaults are left out of the run's id (``spec_hash`` excludes them), so a file that
    keeps trackio keeps its run id.
    """

    backend: Literal["trackio", "mlflow"] = Field(
        default="trackio", description="The tracker the training job reports to."
    )
    project: Token | None = Field(
        default=None,
        description="trackio's project (default: the file's name); for MLflow, the "
        "experiment's default name.",
    )
    space: Token | None = Field(
        default=None, description="trackio: the Hub Space the job logs to, e.g. `me/trackio`."
    )
    uri: str | None = Field(
        default=None,
        min_length=1,
        description="MLflow: the tracking URI (local runs default to "
        "`sqlite:///.ci-runner/mlflow.db`). Never put credentials in it.",
    )
    experiment: Token | None = Field(
        default=None,
        min_length=1,
        description="MLflow: the experiment name (default: `project`, else the file's name).",
    )


class BudgetSpec(_Strict):
    """A spending cap checked before anything is submitted."""

    max_cost_usd: float = Field(
        gt=0,
        description="`submit` refuses a plan whose estimated cost (all runs of the file "
        "together) is above this (exit 5).",
    )


class BenchmarkEntry(_Strict):
    """One benchmark to score the models on."""

    benchmark: Annotated[Token, AfterValidator(_benchmark_name)] = Field(
        min_length=1,
        description="`humaneval` (pass@1, sandboxed), `gsm8k`, or a lighteval task name.",
    )
    fewshot: int = Field(default=0, ge=0, description="Few-shot examples in each prompt.")
    dataset: str | None = Field(
        default=None, description="A Hub id or local folder in the benchmark's format."
    )
    max_samples: int | None = Field(
        default=None, gt=0, description="Score the first N problems only."
    )


class EvaluationSpec(_Strict):
    """Benchmarks run on the base model and the trained one once training completes."""

    benchmarks: list[BenchmarkEntry] = Field(
        min_length=1, description="The benchmarks, each scored with a 95% interval."
    )
    models: list[Literal["base", "final"]] = Field(
        default=["base", "final"],
        description="Which models to score; the base model is the baseline for every delta.",
    )
    checkpoints: Literal["none", "all"] = Field(
        default="none", description="`all` also scores every saved checkpoint (local)."
    )
    max_samples: int | None = Field(
        default=None, gt=0, description="The default `max_samples` of every benchmark."
    )
    hardware: Hardware = Field(
        default="auto",
        description="The evaluation jobs' flavor; `auto` sizes them like the training job.",
    )
    allow_unisolated_code: bool = Field(
        default=False,
        strict=True,
        description=(
            "Run generated code (HumanEval completions) even where it cannot be isolated "
            "from its judge: an evaluator that is not root, may not make user namespaces "
            "and has no `sudo -n` (a laptop without bubblewrap, a locked-down runner). "
            "Such code can forge its score and read the answers, so the report marks "
            "those scores unisolated. Without it, the evaluation refuses to run there."
        ),
    )


class SaversSpec(_Strict):
    """Memory savers the planner may apply (each only where the model and flavor support
    it); ``false`` turns one off. A TRL field the file sets itself (``use_liger_kernel``,
    ``gradient_checkpointing``, ``padding_free``, ``packing``, ``use_vllm``,
    ``model_init_kwargs.dtype``) always wins."""

    liger_kernel: bool = Field(
        default=True, description="Liger's Triton layer kernels (RMSNorm, SwiGLU/GeGLU, RoPE)."
    )
    gradient_checkpointing: bool = Field(
        default=True, description="Recompute activations in the backward pass (TRL's default)."
    )
    bf16_weights: bool = Field(
        default=True,
        description="A full fine-tune loads bf16 weights when float32 needs a dearer GPU.",
    )
    padding_free: bool = Field(
        default=True,
        description="SFT packing / DPO padding-free, with a varlen flash attention.",
    )
    vllm: bool = Field(
        default=True, description="GRPO generates with vLLM colocated on the training GPU."
    )


def _savers_shorthand(value: Any) -> Any:
    """``savers: off`` (YAML reads it as False) turns every saver off; ``on`` keeps them."""
    if value is False or value in ("off", "none"):
        return {name: False for name in SaversSpec.model_fields}
    if value is True or value in ("on", "auto"):
        return {}
    return value


class GgufSpec(_Strict):
    """GGUF files for llama.cpp, converted and smoke-loaded after training."""

    quantizations: list[Literal["Q4_K_M", "Q5_K_M", "Q8_0", "F16"]] = Field(
        default=["Q4_K_M"], description="One GGUF file per quantization."
    )
    hub_repo: Token | None = Field(
        default=None, description="The Hub repo the GGUF files are pushed to."
    )


class ExportSpec(_Strict):
    """What to export once the model is trained."""

    gguf: GgufSpec | None = Field(default=None, description="Export GGUF files.")


class RaySpec(_Strict):
    """Where a ``backend: ray`` run goes and what the cluster's nodes hold.

    Unset, the address is ``RAY_ADDRESS`` (Ray's own convention) and the nodes' GPUs are
    read from the cluster at plan time; a file names them to plan without reaching it.
    """

    address: str | None = Field(
        default=None,
        min_length=1,
        description="The cluster's dashboard, e.g. `http://head:8265` (else `RAY_ADDRESS`).",
    )
    gpus_per_node: int | None = Field(
        default=None, ge=0, le=64, description="GPUs on each node (else read from the cluster)."
    )
    gpu: str | None = Field(
        default=None, min_length=1, description="The GPU, as Ray names it: H100, A100, L40S ..."
    )
    gpu_memory_gb: float | None = Field(
        default=None, gt=0, description="Memory of one GPU, when Ray's name does not say it."
    )
    cpus_per_node: int = Field(
        default=1, ge=1, le=1024, description="CPUs each node's bundle reserves."
    )
    usd_per_gpu_hour: float | None = Field(
        default=None, ge=0, description="Your price per GPU-hour: the plan shows cost only then."
    )
    environment: Literal["pinned", "cluster"] = Field(
        default="pinned",
        description="`pinned`: the job's runtime_env installs the script's pinned "
        "dependencies; `cluster`: the nodes' image already carries them.",
    )


FailureKind = Literal["timeout", "preempted", "infra"]


class RetrySpec(_Strict):
    """Resume a run from its last checkpoint when its job dies of a transient cause."""

    max_attempts: int = Field(
        default=3, ge=1, le=20, description="Attempts in all, the first one included."
    )
    on: list[FailureKind] = Field(
        default=["timeout", "preempted", "infra"],
        description="The failures that start another attempt; out of memory, data and auth "
        "errors never do.",
    )


# Shorthands people write, the same at the file's top level and in each stage:
# `dataset: org/name`, `lora: off` (which YAML reads as False), `evaluation: [...]`,
# `timeout: 2h`. The types stay visible to code that reads the schema (``load``,
# ``expand``): each Annotated wraps the whole field type, and names what a file may
# hold for the JSON Schema.


def _split_base_model_revision(data: Any) -> Any:
    """``base_model: org/name@rev`` is ``base_model: org/name`` at revision ``rev``."""
    if not isinstance(data, dict) or not isinstance(data.get("base_model"), str):
        return data
    repo, revision = split_revision(data["base_model"])
    if revision is None:
        return data
    if data.get("base_model_revision") not in (None, revision):
        raise ValueError(
            f"base_model names revision {revision!r} but base_model_revision says "
            f"{data['base_model_revision']!r}: keep one"
        )
    return {**data, "base_model": repo, "base_model_revision": revision}


def _dataset_shorthand(value: Any) -> Any:
    return {"path": value} if isinstance(value, str) else value


def _lora_shorthand(value: Any) -> Any:
    # `lora: true|false|on`, as people write it: on means default settings.
    if value is False:
        return "off"
    if value is True or value == "on":
        return {}
    return value


def _evaluation_shorthand(value: Any) -> Any:
    return {"benchmarks": value} if isinstance(value, list) else value


def _timeout(value: Any) -> Any:
    return None if value is None else parse_duration(value)


DurationText = Annotated[str, Field(pattern=f"^(?:{DURATION_RE.pattern})$")]
Dataset = Annotated[
    DatasetSpec | None,
    BeforeValidator(_dataset_shorthand, json_schema_input_type=DatasetSpec | str | None),
]
Savers = Annotated[
    SaversSpec,
    BeforeValidator(
        _savers_shorthand, json_schema_input_type=SaversSpec | bool | Literal["on", "off"]
    ),
]
Evaluation = Annotated[
    EvaluationSpec | None,
    BeforeValidator(
        _evaluation_shorthand,
        json_schema_input_type=EvaluationSpec | list[BenchmarkEntry] | None,
    ),
]
Timeout = Annotated[
    int | None,
    BeforeValidator(
        _timeout, json_schema_input_type=Annotated[int, Field(gt=0)] | DurationText | None
    ),
]
LoraChoice = Literal["auto", "off"] | LoraSpec
LoraInput = LoraSpec | Literal["auto", "off", "on"] | bool
Lora = Annotated[LoraChoice, BeforeValidator(_lora_shorthand, json_schema_input_type=LoraInput)]
StageLora = Annotated[
    LoraChoice | None,
    BeforeValidator(_lora_shorthand, json_schema_input_type=LoraInput | None),
]

# The descriptions a stage shares with the file's top level.
_METHOD = "The TRL trainer: `sft`, `dpo` or `grpo`."
_BASE_MODEL = (
    "The model to train: a Hub id (`Qwen/Qwen3-0.6B`, or `Qwen/Qwen3-0.6B@<revision>`) or a "
    "path in the project."
)
_BASE_MODEL_REVISION = (
    "The Hub commit, branch or tag to train from (`base_model: org/name@rev` sets it); unset, "
    "`submit` pins the newest commit and records it."
)
_DATASET = "The training data: a Hub id or local path, or the full form below."
_HYPERPARAMETERS = (
    "TRL's own field names (SFTConfig / DPOConfig / GRPOConfig), checked against the installed "
    "TRL: e.g. `max_steps`, `learning_rate`, `max_length` (not `max_seq_length`)."
)
_LORA = (
    "`auto` (on above 3B parameters), `off`, `on`, or the adapter's settings (`r`, `alpha`, "
    "`dropout`, `target_modules`, `quantize`)."
)
_REWARDS = "GRPO only: built-in rewards (`accuracy`, `format`) or `path/to/rewards.py:function`."
_HARDWARE = "`auto` (the cheapest flavor that fits) or an HF Jobs flavor such as `a10g-large`."
_TIMEOUT = (
    "The job's time limit (`90m`, `2h`, `1h30m`, or seconds); default: the plan's "
    "recommendation (HF Jobs' own 30-minute default kills most runs)."
)
_OUTPUT = "Where the trained model goes."
_TRACKING = "Where metrics go: trackio (default) or MLflow."
_EVALUATION = "Benchmarks scored after training: a list of benchmarks, or the full form below."
_EXPORT = "Exports after training (GGUF)."
_SEED = "The random seed of training and data shuffling."


class StageSpec(_Strict):
    """One step of a pipeline (``stages:``). What a stage leaves out it takes from the
    file's top level; ``hyperparameters`` merge key by key. ``base_model`` defaults to
    the previous stage's trained model."""

    name: Name | None = Field(
        default=None, description="The stage's name (default: its method); names its runs."
    )
    method: Method | None = Field(default=None, description=_METHOD)
    base_model: str | None = Field(
        default=None, min_length=1, description="Default: the previous stage's trained model."
    )
    base_model_revision: Revision = Field(default=None, description=_BASE_MODEL_REVISION)
    dataset: Dataset = Field(default=None, description=_DATASET)
    hyperparameters: dict[str, Any] | None = Field(
        default=None, description="Merged key by key over the top level's."
    )
    lora: StageLora = Field(default=None, description=_LORA)
    rewards: list[RewardRef] | None = Field(default=None, description=_REWARDS)
    hardware: Hardware | None = Field(default=None, description=_HARDWARE)
    timeout: Timeout = Field(default=None, description=_TIMEOUT)
    output: OutputSpec | None = Field(
        default=None,
        description="Default: the top level's, pushing to `<hub_model_id>-<stage>`.",
    )
    tracking: TrackingSpec | None = Field(default=None, description=_TRACKING)
    evaluation: Evaluation = Field(default=None, description=_EVALUATION)
    export: ExportSpec | None = Field(default=None, description=_EXPORT)
    seed: int | None = Field(default=None, description=_SEED)

    _base_model_revision = model_validator(mode="before")(_split_base_model_revision)


class Experiment(_Strict):
    """A fine-tuning experiment: one run, or several with `stages:`, `matrix:` or
    `replicates:`."""

    name: Name = Field(
        description="Lowercase letters, digits, `.`, `_`, `-`: names the runs, their job "
        "labels and the results branch."
    )
    description: str | None = Field(
        default=None, description="One line on what the experiment tries; opens the report."
    )
    base_model: str = Field(min_length=1, description=_BASE_MODEL)
    base_model_revision: Revision = Field(default=None, description=_BASE_MODEL_REVISION)
    # Required unless `stages:` (or `matrix:`) provide them; the loader says so.
    method: Method | None = Field(
        default=None, description=f"{_METHOD} Required unless `stages:` or `matrix:` set it."
    )
    dataset: Dataset = Field(
        default=None,
        description=f"{_DATASET} Required unless `stages:` or `matrix:` set it.",
    )
    hyperparameters: dict[str, Any] = Field(default={}, description=_HYPERPARAMETERS)
    lora: Lora = Field(default="auto", description=_LORA)
    rewards: list[RewardRef] = Field(default=[], description=_REWARDS)
    hardware: Hardware = Field(default="auto", description=_HARDWARE)
    timeout: Timeout = Field(default=None, description=_TIMEOUT)
    output: OutputSpec = Field(default=OutputSpec(), description=_OUTPUT)
    tracking: TrackingSpec = Field(default=TrackingSpec(), description=_TRACKING)
    backend: Literal["local", "hf-jobs", "ray"] = Field(
        default="local",
        description="Where jobs run: this machine, Hugging Face Jobs, or a Ray cluster "
        "(`RAY_ADDRESS`, `RAY_AUTH_TOKEN`).",
    )
    nodes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Machines the training job spans (`backend: ray`): one `accelerate "
        "launch` per node.",
    )
    ray: RaySpec | None = Field(
        default=None, description="The Ray cluster: address, GPUs per node, price, environment."
    )
    budget: BudgetSpec | None = Field(default=None, description="A spending cap.")
    retry: RetrySpec = Field(default=RetrySpec(), description="Resuming after transient failures.")
    evaluation: Evaluation = Field(default=None, description=_EVALUATION)
    export: ExportSpec | None = Field(default=None, description=_EXPORT)
    savers: Savers = Field(
        default=SaversSpec(),
        description="Memory savers the plan may apply; `savers: off`, or one `false`, turns "
        "them off.",
    )
    seed: int = Field(default=42, description=_SEED)
    allow_remote_code: bool = Field(
        default=False,
        description="Allow `trust_remote_code`, which runs the model repo's Python in the job.",
    )
    stages: list[StageSpec] | None = Field(
        default=None,
        min_length=1,
        description="A pipeline: runs in order, each training on the previous one's model.",
    )
    matrix: dict[str, Any] | None = Field(
        default=None,
        description="A sweep, as in GitHub Actions: field paths (`hyperparameters."
        "learning_rate`, `lora.r`, `<stage>.hyperparameters.beta`) to lists of values, plus "
        "`include` and `exclude`.",
    )
    max_parallel: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Jobs of this file at once (default 1 local, 4 on hf-jobs).",
    )
    replicates: int | None = Field(
        default=None,
        ge=2,
        le=32,
        description="Run the same configuration under seeds `seed` … `seed+N-1`.",
    )
    seeds: list[int] | None = Field(
        default=None,
        min_length=2,
        max_length=32,
        description="Run the same configuration under these seeds (instead of `replicates`).",
    )

    _base_model_revision = model_validator(mode="before")(_split_base_model_revision)

    @field_validator("seeds")
    @classmethod
    def _one_way_to_replicate(cls, seeds: list[int] | None, info: ValidationInfo) -> Any:
        if seeds is not None and info.data.get("replicates") is not None:
            raise ValueError("give `replicates: N` or `seeds: [...]`, not both")
        if seeds is not None and len(set(seeds)) != len(seeds):
            raise ValueError("seeds repeat: each replicate needs its own seed")
        return seeds

    @property
    def is_multi_run(self) -> bool:
        return self.stages is not None or self.matrix is not None or bool(self.replicate_seeds)

    @property
    def replicate_seeds(self) -> list[int]:
        """The seeds of a replicate group; empty unless the file asks for replicates."""
        if self.seeds is not None:
            return list(self.seeds)
        if self.replicates is not None:
            return [self.seed + i for i in range(self.replicates)]
        return []

    @property
    def run_id(self) -> str:
        """Stable for an unchanged file, new when what would be trained changes."""
        return f"{self.name}-{self.spec_hash[:8]}"

    @property
    def spec_hash(self) -> str:
        """Identifies what would be trained: stable over comments, key order, defaults
        added by later ci-runner versions, and settings that don't change the model
        (so raising a timeout and resubmitting resumes the same run)."""
        data = self.model_dump(mode="json", exclude_defaults=True, exclude=NOT_TRAINING | MULTI_RUN)
        canonical = json.dumps(data, sort_keys=True)
        return short_hash(canonical)
