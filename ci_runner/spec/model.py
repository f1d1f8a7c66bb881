"""The experiment file's schema (shape only; cross-field rules live in ``checks``).

Shorthands users reach for are accepted and normalised here (``dataset: org/name``,
``lora: off`` — which YAML reads as ``False`` —, ``timeout: 2h``), so the rest of
the code sees one shape.
"""

from __future__ import annotations

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
    field_validator,
    model_validator,
)

from ci_runner.core.durations import parse_duration
from ci_runner.core.flavors import FLAVORS_BY_NAME
from ci_runner.core.hashing import short_hash
from ci_runner.core.hub import (
    HUB_ID_RE,
    REVISION_RE,
    split_revision,
)

Method = Literal["sft", "dpo", "grpo"]
BUILTIN_REWARDS = ("accuracy", "format")

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
REWARD_FN_RE = re.compile(r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$")


def _revision(value: str | None) -> str | None:
    if value is not None and not REVISION_RE.match(value):
        raise ValueError(f"{value!r} is not a branch, tag or commit of a Hub repo")
    return value


Revision = Annotated[str | None, AfterValidator(_revision)]


def _reward_ref(reward: str) -> str:
    if reward not in BUILTIN_REWARDS and not REWARD_FN_RE.match(reward):
        raise ValueError(
            f"unknown reward {reward!r}: use a built-in "
            f"({', '.join(BUILTIN_REWARDS)}) or path/to/module.py:function"
        )
    return reward


# Fields that change how a run is watched or paid for, not what it trains.
NOT_TRAINING = {"description", "timeout", "budget", "retry"}
# Fields that make a file describe several runs (``spec.expand``); never part of a run's id.
MULTI_RUN = {"matrix", "stages", "max_parallel", "replicates", "seeds"}


def _name(value: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: use 1-64 lowercase letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return value


def _hardware(value: str) -> str:
    if value != "auto" and value not in FLAVORS_BY_NAME:
        raise ValueError(f"unknown hardware flavor {value!r}")
    return value


RewardRef = Annotated[str, AfterValidator(_reward_ref)]
Name = Annotated[str, AfterValidator(_name)]  # an experiment's, a stage's
Hardware = Annotated[str, AfterValidator(_hardware)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(_Strict):
    path: str = Field(min_length=1)
    config: str | None = None
    split: str = "train"
    eval_split: str | None = None
    eval_fraction: float | None = Field(default=None, gt=0, lt=1)
    columns: dict[str, str] = {}
    max_samples: int | None = Field(default=None, gt=0)
    revision: Revision = None  # a Hub dataset's branch, tag or commit; else pinned at submit


class LoraSpec(_Strict):
    r: int = Field(default=16, gt=0)
    alpha: int = Field(default=32, gt=0)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] | str = "all-linear"
    # QLoRA: "4bit" loads the frozen base as bitsandbytes NF4; "auto" lets the planner
    # choose it when the 16-bit base fits no single GPU at a sane price; "none" never.
    quantize: Literal["auto", "none", "4bit"] = "auto"

    @field_validator("quantize", mode="before")
    @classmethod
    def _quantize_shorthand(cls, value: Any) -> Any:
        # `quantize: off` (YAML reads it as False) and `quantize: 4` as people write them
        if value is False or value in ("off", "no", "false"):
            return "none"
        if value in (4, "4", "nf4", "4-bit"):
            return "4bit"
        return value


class OutputSpec(_Strict):
    hub_model_id: str | None = None
    private: bool = True
    merge: bool = False  # LoRA runs: publish the merged model, not just the adapter

    @field_validator("hub_model_id")
    @classmethod
    def _hub_id(cls, value: str | None) -> str | None:
        if value is not None and (not HUB_ID_RE.match(value) or "/" not in value):
            raise ValueError(f"{value!r} is not a Hub repo id; write it as <user-or-org>/<name>")
        return value


class TrackingSpec(_Strict):
    """Where a run's metrics go: trackio (the default), or an MLflow tracking store.

    Defaults are left out of the run's id (``spec_hash`` excludes them), so adding
    ``backend`` here changed no existing run id.
    """

    backend: Literal["trackio", "mlflow"] = "trackio"
    project: str | None = None  # trackio's project; for MLflow, the experiment's default name
    space: str | None = None  # trackio: the Space the job logs to
    uri: str | None = Field(default=None, min_length=1)  # MLflow: the tracking URI
    experiment: str | None = Field(default=None, min_length=1)  # MLflow: the experiment name


class BudgetSpec(_Strict):
    max_cost_usd: float = Field(gt=0)


class BenchmarkEntry(_Strict):
    benchmark: str = Field(min_length=1)  # humaneval, gsm8k, or a lighteval task name
    fewshot: int = Field(default=0, ge=0)
    dataset: str | None = None  # a Hub id or local dir in the benchmark's format
    max_samples: int | None = Field(default=None, gt=0)


class EvaluationSpec(_Strict):
    """Benchmarks run on the base model and the trained one once training completes."""

    benchmarks: list[BenchmarkEntry] = Field(min_length=1)
    models: list[Literal["base", "final"]] = ["base", "final"]
    checkpoints: Literal["none", "all"] = "none"
    max_samples: int | None = Field(default=None, gt=0)  # default for every benchmark
    hardware: str = "auto"


class GgufSpec(_Strict):
    quantizations: list[Literal["Q4_K_M", "Q5_K_M", "Q8_0", "F16"]] = ["Q4_K_M"]
    hub_repo: str | None = None


class ExportSpec(_Strict):
    gguf: GgufSpec | None = None


class RaySpec(_Strict):
    """Where a ``backend: ray`` run goes and what the cluster's nodes hold.

    Unset, the address is ``RAY_ADDRESS`` (Ray's own convention) and the nodes' GPUs are
    read from the cluster at plan time; a file names them to plan without reaching it.
    """

    address: str | None = Field(default=None, min_length=1)  # the dashboard: http://host:8265
    gpus_per_node: int | None = Field(default=None, ge=0, le=64)
    gpu: str | None = Field(default=None, min_length=1)  # H100, A100, L40S ... (Ray's name)
    gpu_memory_gb: float | None = Field(default=None, gt=0)
    cpus_per_node: int = Field(default=1, ge=1, le=1024)  # what each node's bundle reserves
    usd_per_gpu_hour: float | None = Field(default=None, ge=0)  # the plan shows cost only then
    # pinned: the job's runtime_env installs the script's pinned dependencies (``pip``);
    # cluster: the nodes' image already carries them (KubeRay images built for training).
    environment: Literal["pinned", "cluster"] = "pinned"


FailureKind = Literal["timeout", "preempted", "infra"]


class RetrySpec(_Strict):
    """Resume a run from its last checkpoint when its job dies of a transient cause."""

    max_attempts: int = Field(default=3, ge=1, le=20)
    on: list[FailureKind] = ["timeout", "preempted", "infra"]


# Shorthands people write, the same at the file's top level and in each stage:
# `dataset: org/name`, `lora: off` (which YAML reads as False), `evaluation: [...]`,
# `timeout: 2h`. The types stay visible to code that reads the schema (``load``,
# ``expand``): each Annotated wraps the whole field type.


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


Dataset = Annotated[DatasetSpec | None, BeforeValidator(_dataset_shorthand)]
Evaluation = Annotated[EvaluationSpec | None, BeforeValidator(_evaluation_shorthand)]
Timeout = Annotated[int | None, BeforeValidator(_timeout)]
LoraChoice = Literal["auto", "off"] | LoraSpec
LORA_SHORTHAND = BeforeValidator(_lora_shorthand)


class StageSpec(_Strict):
    """One step of a pipeline (``stages:``). What a stage leaves out it takes from the
    file's top level; ``hyperparameters`` merge key by key. ``base_model`` defaults to
    the previous stage's trained model."""

    name: Name | None = None  # defaults to the method (sft, dpo, grpo)
    method: Method | None = None
    base_model: str | None = Field(default=None, min_length=1)
    base_model_revision: Revision = None
    dataset: Dataset = None
    hyperparameters: dict[str, Any] | None = None
    lora: Annotated[LoraChoice | None, LORA_SHORTHAND] = None
    rewards: list[RewardRef] | None = None
    hardware: Hardware | None = None
    timeout: Timeout = None
    output: OutputSpec | None = None
    tracking: TrackingSpec | None = None
    evaluation: Evaluation = None
    export: ExportSpec | None = None
    seed: int | None = None

    _base_model_revision = model_validator(mode="before")(_split_base_model_revision)


class Experiment(_Strict):
    name: Name
    description: str | None = None
    base_model: str = Field(min_length=1)
    # The Hub commit, branch or tag to train from (``base_model: org/name@rev`` sets it);
    # unset, submit pins the newest commit and records it.
    base_model_revision: Revision = None
    # Required unless `stages:` (or `matrix:`) provide them; the loader says so.
    method: Method | None = None
    dataset: Dataset = None
    hyperparameters: dict[str, Any] = {}
    lora: Annotated[LoraChoice, LORA_SHORTHAND] = "auto"
    rewards: list[RewardRef] = []
    hardware: Hardware = "auto"
    timeout: Timeout = None
    output: OutputSpec = OutputSpec()
    tracking: TrackingSpec = TrackingSpec()
    backend: Literal["local", "hf-jobs", "ray"] = "local"
    # Machines the training job spans (the ray backend): one `accelerate launch` per node.
    nodes: int = Field(default=1, ge=1, le=64)
    ray: RaySpec | None = None
    budget: BudgetSpec | None = None
    retry: RetrySpec = RetrySpec()
    evaluation: Evaluation = None
    export: ExportSpec | None = None
    seed: int = 42
    # trust_remote_code runs the model repo's Python in the job: refused unless set here.
    allow_remote_code: bool = False
    # Several runs from one file (see ``spec.expand``): a pipeline, a sweep, or both.
    stages: list[StageSpec] | None = Field(default=None, min_length=1)
    matrix: dict[str, Any] | None = None
    max_parallel: int | None = Field(default=None, ge=1, le=64)
    # The same configuration under several seeds, as one group: `replicates: 3` runs seeds
    # seed, seed+1, seed+2; `seeds: [1, 2, 3]` names them.
    replicates: int | None = Field(default=None, ge=2, le=32)
    seeds: list[int] | None = Field(default=None, min_length=2, max_length=32)

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
