"""The plan: LoRA decision, memory → hardware, time, cost, timeout and budget.

Pure: an ``Experiment`` and measured facts in, a frozen ``Plan`` out. Every
number a person might doubt is a named constant below, and every assumption the
estimate had to make is written into ``Plan.assumptions`` so the PR shows it.

Defaults mirror TRL 1.16 / transformers 5.23 as run by ``job_scripts/train.py``:
full fine-tuning loads weights in float32 (TRL's default ``model_init_kwargs.dtype``),
bf16 autocast unless ``fp16`` is set, gradient checkpointing on GPU, batch size 8,
3 epochs, ``max_length`` 1024 (SFT, DPO), 8 generations of up to 512 tokens
(GRPO), a reference model for DPO and for GRPO with ``beta`` > 0. LoRA runs load the
frozen base in 16 bits on a GPU flavor (``settings.precision_for``), or in 4-bit NF4
(QLoRA) when no single GPU at a sane price holds the 16-bit base
(``hardware.choose_flavor``). Each candidate flavor is sized in its own precision.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from pydantic import BaseModel, ConfigDict

from ci_runner.backend.ray_cluster import ClusterShape
from ci_runner.core.durations import rounded_minutes as format_duration
from ci_runner.core.flavors import ACCELERATORS, Flavor
from ci_runner.plan.hardware import (
    FlavorChoice,
    _hardware,
    _price,
    usable_gb,
)
from ci_runner.plan.jobs import (
    JobPlan,
    RunShape,
    merge_ram_gb,
    pipeline_jobs,
    total_cost,
    train_merge_fits,
)
from ci_runner.plan.memory import (
    Memory,
    estimate_memory,
    vllm_context,
    vllm_engine_bytes,
)
from ci_runner.plan.model_size import ModelShape, ModelSize
from ci_runner.plan.prices import prices_from_hardware
from ci_runner.plan.ray_plan import ray_hardware
from ci_runner.plan.savers import (
    SaverPlan,
    bf16_capable,
    liger_decision,
    padding_free_decision,
    vllm_allowed,
    vllm_share,
)
from ci_runner.plan.settings import (
    CI_RUNNER,
    GB,
    LORA_AUTO_THRESHOLD,
    TRL_DEFAULT,
    Precision,
    Savers,
    Settings,
    approx_shape,
    decide_lora,
    lora_trainable,
    precision_for,
    settings_from,
)
from ci_runner.plan.timing import (
    CPU_EFFECTIVE_TFLOPS,
    DECODE_FLOOR_S,
    DEFAULT_MEAN_LEN_CAP,
    FIXED_OVERHEAD_S,
    GRPO_DEFAULT_PROMPT_LEN,
    HF_JOBS_DEFAULT_TIMEOUT_S,
    MULTI_GPU_EFFICIENCY,
    QLORA_THROUGHPUT,
    VLLM_DECODE_FLOOR_S,
    VLLM_STARTUP_S,
    Workload,
    _train_rows,
    cost_usd,
    effective_tflops,
    flops_formula,
    flops_per_token_factor,
    generation_seconds,
    overhead_seconds,
    recommended_timeout,
    tokens_per_example,
    workload,
)
from ci_runner.spec.model import Experiment, LoraSpec, RaySpec

__all__ = [
    "LORA_AUTO_THRESHOLD",
    "Plan",
    "decide_lora",
    "make_plan",
    "prices_from_hardware",
    "recommended_timeout",
]


class Plan(BaseModel):
    """Everything the plan decided and why; JSON round-trips."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    experiment: str
    base_model: str
    method: str
    backend: str
    flavor: str | None  # "local" for the local backend; None when nothing can be chosen
    flavor_usd_per_hour: float | None
    flavor_vram_gb: int | None  # total over the flavor's GPUs
    gpus: int
    sharded: bool  # the estimate relies on FSDP across several GPUs
    fits: bool | None  # None: not checked (local backend, CPU flavor, unknown size)
    lora_on: bool
    lora_note: str
    params: int | None
    params_source: str | None
    trainable_params: int | None
    memory_gb: float | None  # whole-run need on one device (sharded: before sharding)
    examples: int | None  # sequences trained (GRPO: completions; DPO: pairs)
    steps: int | None  # optimizer steps
    tokens: int | None
    mean_seq_len: float
    est_seconds: int | None
    est_cost_usd: float | None
    timeout_s: int | None  # from the experiment file
    recommended_timeout_s: int | None
    budget_usd: float | None
    over_budget: bool
    warnings: tuple[str, ...] = ()
    assumptions: tuple[str, ...] = ()
    # Added later (defaults keep older plan JSON readable):
    dtype: str | None = None  # model_init_kwargs.dtype the base loads in (QLoRA: compute)
    dtype_source: str | None = None  # "experiment file" | "TRL default" | "ci-runner" (sent)
    quantization: str | None = None  # "4bit": QLoRA, bitsandbytes NF4 with double quant
    launcher: str = "single"  # single | ddp | fsdp: `accelerate launch` on several GPUs
    processes: int = 1  # training processes the job starts (one per GPU)
    memory_per_gpu_gb: float | None = None  # what each GPU holds (FSDP: after sharding)
    flops_formula: str | None = None  # the training FLOPs the time estimate assumes
    savers: tuple[SaverPlan, ...] = ()  # memory savers, on or off, with what each saves
    vllm_gpu_memory_utilization: float | None = None  # GRPO: the colocated engine's share
    vllm_max_model_length: int | None = None  # ... and the context its KV cache is sized for
    generation_s: int | None = None  # GRPO: generation time within est_seconds
    generation_s_without_vllm: int | None = None  # ... had it used transformers generate
    jobs: tuple[JobPlan, ...] = ()  # every job of the run: training, evaluations, export
    total_cost_usd: float | None = None  # all of them; the budget applies to it
    merge_in_training: bool | None = None  # output.merge: False pushes the adapter unmerged
    nodes: int = 1  # machines the run spans (the ray backend); ``processes`` counts all


# --- the plan ----------------------------------------------------------------


@dataclass(frozen=True)
class _Lengths:
    mean_len: float  # tokens per sequence (GRPO: per prompt)
    prompt_len: float  # GRPO prompt tokens; equals mean_len otherwise
    note: str | None


def _lengths(s: Settings, mean_seq_len: float | None) -> _Lengths:
    """For GRPO ``mean_seq_len`` is the mean prompt length; else the mean example length."""
    if mean_seq_len is not None:
        return _Lengths(mean_seq_len, mean_seq_len, None)
    if s.method == "grpo":
        note = f"mean prompt length {GRPO_DEFAULT_PROMPT_LEN} tokens assumed (not measured)"
        return _Lengths(GRPO_DEFAULT_PROMPT_LEN, GRPO_DEFAULT_PROMPT_LEN, note)
    assumed = min(s.max_length, DEFAULT_MEAN_LEN_CAP)
    note = f"mean sequence length {assumed} tokens assumed: min(max_length, 512), not measured"
    return _Lengths(assumed, assumed, note)


def _throughput_note(flavor: Flavor, s: Settings, lora_on: bool, precision: Precision) -> str:
    if not flavor.is_gpu:
        rate = f"{CPU_EFFECTIVE_TFLOPS} TFLOP/s effective on CPU"
    else:
        assert flavor.accelerator is not None  # every GPU flavor names one
        accel = ACCELERATORS[flavor.accelerator]
        rate = f"{flavor.accelerator} {flavor.peak_tflops:g} TFLOP/s peak × {accel.mfu:.0%} MFU"
        if flavor.gpus > 1:
            rate += f" × {flavor.gpus} GPUs × {MULTI_GPU_EFFICIENCY:.0%}"
        if precision.quantize:
            rate += f" × {QLORA_THROUGHPUT:.0%} (4-bit weights dequantized per matmul)"
    return f"training FLOPs = {flops_formula(s, lora_on)}, N = active parameters; {rate}"


def _seconds(
    flavor: Flavor,
    s: Settings,
    size: ModelSize,
    shape: ModelShape,
    lora_on: bool,
    work: Workload,
    precision: Precision,
    vllm: bool = False,
) -> float | None:
    if work.tokens is None or work.steps is None:
        return None
    flops = flops_per_token_factor(s, lora_on) * shape.active_params * work.tokens
    seconds = flops / (effective_tflops(flavor, s.bf16, precision) * 1e12)
    if s.method == "grpo":
        seconds += generation_seconds(
            flavor,
            s,
            size.params,
            work.steps,
            precision,
            vllm=vllm,
            active_params=shape.active_params,
        )
    return seconds + overhead_seconds(size.params)


def _timeout_warnings(
    experiment: Experiment, est: float | None, recommended: int | None
) -> list[str]:
    """A timeout below the estimate kills the job; none at all means HF Jobs' 30 min."""
    if est is None or recommended is None:
        return []
    advice = f"set `timeout: {format_duration(recommended)}`"
    timeout = experiment.timeout
    if timeout is None and recommended > HF_JOBS_DEFAULT_TIMEOUT_S:
        return [
            "no timeout set: HF Jobs stops jobs after 30 min by default, which kills most "
            f"training; this one is estimated at ~{format_duration(est)}; {advice}"
        ]
    if timeout is not None and timeout < est:
        return [
            f"timeout {format_duration(timeout)} is below the estimated "
            f"{format_duration(est)}: the job would be killed; {advice}"
        ]
    return []


def _static_assumptions(size: ModelSize) -> list[str]:
    if not size.shape:
        return ["model shape approximated from the parameter count (no config.json)"]
    return []


def _precision_note(precision: Precision, lora_on: bool, local: bool) -> str | None:
    """What the base loads in, who chose it, and what that costs per parameter."""
    if precision.quantize:
        return (
            f"the frozen base loads as {precision.describe()} (sent as "
            "lora.quantize and model_init_kwargs.dtype; the job adds bitsandbytes): "
            "~0.52 bytes per linear weight, embeddings and LM head stay "
            f"{precision.dtype}; TRL keeps QLoRA adapters in bf16"
        )
    if precision.source == "experiment file":
        return f"weights load in {precision.dtype} (model_init_kwargs.dtype in the file)"
    if precision.source == "ci-runner" and not lora_on:
        return (
            f"the model loads in {precision.dtype}, sent as model_init_kwargs.dtype (the "
            "bf16_weights saver): full fine-tuning holds 8 bytes/param"
        )
    if precision.source == "ci-runner":
        why = {"float16": " (no bf16 tensor cores, or fp16 set)", "float32": " (CPU flavor)"}
        return (
            f"the frozen base loads in {precision.dtype}{why.get(precision.dtype, '')}, sent as "
            "model_init_kwargs.dtype; the LoRA adapters stay float32, as PEFT keeps them"
        )
    if lora_on:
        where = "the local machine is unknown; " if local else ""
        return (
            f"the frozen base loads in float32 (TRL's default; {where}set "
            "model_init_kwargs.dtype: bfloat16 to halve it): LoRA freezes 4 bytes/param"
        )
    return (
        "weights load in float32 (TRL's default; set model_init_kwargs.dtype: bfloat16 "
        "to halve it): full fine-tuning holds 16 bytes/param"
    )


def _quantized_run_warnings(precision: Precision, local: bool) -> list[str]:
    if precision.quantize and local:
        return [
            "lora.quantize 4bit on the local backend: train.py runs in this environment, "
            "which needs bitsandbytes installed and a CUDA GPU"
        ]
    return []


def _merge_note(
    experiment: Experiment,
    precision: Precision,
    choice: FlavorChoice,
    size: ModelSize | None,
    fits: bool | None,
) -> str | None:
    """A 4-bit or sharded base cannot take the adapter in place: train.py reloads it on the
    training flavor's CPU, when that flavor's RAM holds it; else the adapter goes unmerged."""
    if not experiment.output.merge or not (precision.quantize or choice.processes > 1):
        return None
    need = f" (~{merge_ram_gb(size.params):.0f} GB of host memory)" if size else ""
    flavor = choice.flavor
    if fits is False and flavor is not None:
        return (
            f"output.merge: the 16-bit reload of the base needs{need}, more than "
            f"{flavor.name}'s {flavor.ram_gb} GB of RAM: the adapter is pushed unmerged, and "
            "the export job (if any) merges it on a flavor with the RAM"
        )
    return (
        "output.merge: after training the adapter is merged into a reload of the base in "
        f"{precision.dtype} on the CPU{need}, since a 4-bit or sharded base cannot take it "
        "in place"
    )


def _budget_warnings(experiment: Experiment, cost: float | None) -> tuple[bool, list[str]]:
    budget = experiment.budget.max_cost_usd if experiment.budget else None
    if budget is None:
        return False, []
    if cost is None:
        return False, [f"cost unknown: budget ${budget:.2f} cannot be checked"]
    if cost > budget:
        return True, [f"estimated ${cost:.2f} exceeds budget.max_cost_usd ${budget:.2f}"]
    return False, []


@dataclass(frozen=True)
class _Sizing:
    """What the model and the file fix before hardware is chosen; memory then depends on
    the flavor, through the precision the base loads in there (``size``)."""

    experiment: Experiment
    settings: Settings
    params: int | None
    lora: LoraSpec | None
    lora_note: str
    lengths: _Lengths
    shape: ModelShape | None
    trainable: int | None
    # GRPO's generation: "auto" colocates vLLM where it fits beside training, "require"
    # sizes every GPU flavor with the engine (the planner then compares costs), "never"
    vllm_mode: str = "auto"

    @property
    def quantize(self) -> str:
        """auto | none | 4bit; full fine-tuning is never quantized."""
        return self.lora.quantize if self.lora else "none"

    def size(
        self, flavor: Flavor | None, quantize: bool, fsdp: bool
    ) -> tuple[Precision, Memory | None]:
        """The precision and memory of the run on ``flavor``, with the savers that apply
        there: decided per flavor, before the cheapest one that holds the run is chosen."""
        precision = precision_for(
            self.experiment,
            self.settings,
            lora_on=self.lora is not None,
            flavor=flavor,
            quantize=quantize,
        )
        if self.params is None or self.shape is None:
            return precision, None
        savers = Savers(
            liger=liger_decision(self.experiment, self.shape, flavor)[0],
            padding_free=padding_free_decision(self.experiment, self.settings)[0],
        )
        memory = self.memory(precision, fsdp, savers)
        if self._bf16_candidate(flavor, precision, fsdp) and not _fits(memory, flavor, fsdp):
            precision = Precision("bfloat16", None, CI_RUNNER)
            savers = replace(savers, bf16_weights=True)
            memory = self.memory(precision, fsdp, savers)
        return precision, self._with_vllm(flavor, precision, fsdp, memory)

    def memory(self, precision: Precision, fsdp: bool, savers: Savers) -> Memory:
        assert self.params is not None and self.shape is not None
        return estimate_memory(
            self.params,
            self.shape,
            self.settings,
            precision=precision,
            trainable=self.trainable,
            prompt_len=self.lengths.prompt_len,
            fsdp=fsdp,
            savers=savers,
        )

    def _bf16_candidate(self, flavor: Flavor | None, precision: Precision, fsdp: bool) -> bool:
        """A full fine-tune in TRL's float32 on a bf16 GPU, single-process, not turned off."""
        return (
            self.lora is None
            and precision.source == TRL_DEFAULT
            and bf16_capable(flavor)
            and not fsdp
            and not self.settings.fp16
            and self.experiment.savers.bf16_weights
        )

    def _with_vllm(
        self, flavor: Flavor | None, precision: Precision, fsdp: bool, memory: Memory
    ) -> Memory:
        """GRPO generates in a colocated vLLM engine where one fits beside training."""
        quantized = precision.quantize is not None
        if self.vllm_mode == "never" or flavor is None:
            return memory
        if not vllm_allowed(self.experiment, self.shape, flavor, quantized)[0]:
            return memory
        assert self.params is not None and self.shape is not None
        need = vllm_engine_bytes(self.params, self.shape, self.settings, self.lengths.prompt_len)
        share = vllm_share(flavor, need)
        if share is None:  # the engine would leave training too little of this GPU
            return replace(memory, reserved=math.inf) if self.vllm_mode == "require" else memory
        with_engine = self.memory(precision, fsdp, replace(memory.savers, vllm_share=share))
        with_engine = replace(with_engine, reserved=share * flavor.vram_gb * GB)
        if self.vllm_mode == "require" or _fits(with_engine, flavor, fsdp):
            return with_engine
        return memory


def _fits(memory: Memory, flavor: Flavor | None, fsdp: bool) -> bool:
    if flavor is None or not flavor.is_gpu:
        return True
    return memory.per_gpu_gb(flavor.gpus if fsdp else 1) <= usable_gb(flavor)


def _sizing(
    s: Settings, experiment: Experiment, size: ModelSize | None, mean_len: float | None
) -> _Sizing:
    lora, note = decide_lora(experiment, size.params if size else None)
    lengths = _lengths(s, mean_len)
    if size is None:
        return _Sizing(experiment, s, None, lora, note, lengths, None, None)
    shape = size.shape or approx_shape(size.params)
    trainable = lora_trainable(shape, lora) if lora else None
    return _Sizing(experiment, s, size.params, lora, note, lengths, shape, trainable)


@dataclass(frozen=True)
class _Timing:
    seconds: float | None = None
    usd_per_hour: float | None = None
    cost: float | None = None
    recommended: int | None = None
    generation: float | None = None  # GRPO: generation seconds as planned
    generation_without_vllm: float | None = None  # ... with transformers generate


def _timing(
    flavor: Flavor,
    s: Settings,
    size: ModelSize,
    sized: _Sizing,
    work: Workload,
    prices: Mapping[str, float],
    notes: _Notes,
    precision: Precision,
    memory: Memory | None = None,
) -> _Timing:
    assert sized.shape is not None
    price = _price(flavor, prices)
    lora_on = sized.lora is not None
    vllm = bool(memory and memory.savers.vllm_share)
    est = _seconds(flavor, s, size, sized.shape, lora_on, work, precision, vllm)
    if est is None:
        return _Timing(usd_per_hour=price)
    generation = without = None
    if s.method == "grpo" and work.steps is not None:
        args = (flavor, s, size.params, work.steps, precision)
        generation = generation_seconds(*args, vllm=vllm, active_params=sized.shape.active_params)
        without = generation_seconds(*args, active_params=sized.shape.active_params)
    notes.assumptions.append(_throughput_note(flavor, s, lora_on, precision))
    notes.assumptions.append(
        f"start-up {FIXED_OVERHEAD_S // 60} min + {size.params * 2 / GB:.1f} GB download"
    )
    if generation is not None and without is not None:
        notes.assumptions.append(_generation_note(work, s, generation, without, vllm))
    notes.assumptions.append("evaluation passes and checkpoint uploads are not counted")
    return _Timing(est, price, cost_usd(est, price), recommended_timeout(est), generation, without)


def _generation_note(
    work: Workload, s: Settings, generation: float, without: float, vllm: bool
) -> str:
    """GRPO's generation time, completions × length, with and without vLLM."""
    completions = (
        f"{work.examples:,} completions × {s.completion_len} tokens" if work.examples else ""
    )
    generate = (
        f"transformers generate ~{format_duration(without)} "
        f"(≥{DECODE_FLOOR_S * 1000:.0f} ms per decode step)"
    )
    if vllm:
        return (
            f"GRPO generation ({completions}, run to max_completion_length): vLLM colocate "
            f"~{format_duration(generation)} (≥{VLLM_DECODE_FLOOR_S * 1000:.0f} ms per step, "
            f"{VLLM_STARTUP_S // 60} min start-up); {generate}"
        )
    return f"GRPO generation ({completions}, run to max_completion_length): {generate}"


@dataclass
class _Notes:
    warnings: list[str]
    assumptions: list[str]


def _workload_notes(
    experiment: Experiment, s: Settings, work: Workload, rows_known: bool
) -> tuple[list[str], list[str]]:
    if work.tokens is None:
        return [
            "dataset size unknown and no max_steps or max_samples: time and cost not "
            "estimated; run the dataset check or set max_steps"
        ], []
    if not rows_known and not s.max_steps:
        assert experiment.dataset is not None  # the loader requires a dataset of every run
        return [], [f"the dataset has at least max_samples ({experiment.dataset.max_samples}) rows"]
    return [], []


_Choice = tuple[FlavorChoice, list[str], list[str]]


def _cheaper_generation(
    experiment: Experiment,
    sized: _Sizing,
    size: ModelSize,
    dataset_rows: int | None,
    prices: Mapping[str, float],
    found: _Choice,
) -> tuple[_Sizing, _Choice]:
    """GRPO: the flavor sized with a colocated vLLM engine when that run costs no more
    than the cheapest one found (which may have had to generate with transformers)."""
    if found[0].memory is not None and found[0].memory.savers.vllm_share:
        return sized, found
    engine = replace(sized, vllm_mode="require")
    s = sized.settings
    alt = _hardware(
        experiment, engine.size, True, s, sized.quantize, sized.lora is not None, prices
    )
    if not alt[0].fits or alt[0].memory is None or not alt[0].memory.savers.vllm_share:
        return sized, found
    costs = [
        _run_cost(c, z, size, dataset_rows, prices)
        for c, z in ((found[0], sized), (alt[0], engine))
    ]
    if costs[1] is not None and (costs[0] is None or not found[0].fits or costs[1] <= costs[0]):
        return engine, alt
    return sized, found


def _run_cost(
    choice: FlavorChoice,
    sized: _Sizing,
    size: ModelSize,
    dataset_rows: int | None,
    prices: Mapping[str, float],
) -> float | None:
    flavor, memory = choice.flavor, choice.memory
    if flavor is None or sized.shape is None:
        return None
    s = sized.settings
    per_example = tokens_per_example(s, sized.lengths.mean_len, sized.lengths.prompt_len)
    rows = _train_rows(sized.experiment, dataset_rows)
    work = workload(s, gpus=flavor.gpus, rows=rows, per_example=per_example)
    vllm = bool(memory and memory.savers.vllm_share)
    seconds = _seconds(
        flavor, s, size, sized.shape, sized.lora is not None, work, choice.precision, vllm
    )
    return None if seconds is None else cost_usd(seconds, _price(flavor, prices))


def make_plan(
    experiment: Experiment,
    *,
    size: ModelSize | None,
    dataset_rows: int | None,
    mean_seq_len: float | None,
    prices: dict[str, float] | None = None,
    cluster: ClusterShape | None = None,
) -> Plan:
    """Decide LoRA and hardware and estimate memory, time, cost and timeout.

    ``size`` None (unknown model) still plans, without hardware or memory.
    ``dataset_rows``/``mean_seq_len`` come from the dataset check when it has run
    (for GRPO ``mean_seq_len`` is the mean prompt length).
    ``prices`` ($/h by flavor) override the shipped table (see ``prices_from_hardware``).
    The local backend gets flavor "local" at no cost and no time estimate.
    ``cluster``: a Ray cluster's nodes as its dashboard reported them (``ray_plan``).
    """
    prices = prices or {}
    s = settings_from(experiment)
    sized = _sizing(s, experiment, size, mean_seq_len)
    notes = _Notes([], _static_assumptions(size) if size else [])
    if sized.lengths.note:
        notes.assumptions.append(sized.lengths.note)
    if size is None:
        notes.warnings.append("model size unknown: memory, hardware and time not estimated")
    if experiment.allow_remote_code:
        notes.warnings.append(
            f"allow_remote_code: true: the job runs Python code from {experiment.base_model}'s "
            "repository (trust_remote_code)"
        )

    local = experiment.backend == "local"
    lora_on = sized.lora is not None
    if local:
        precision, memory = sized.size(None, sized.quantize == "4bit", False)
        choice = FlavorChoice(None, False, None, precision=precision, memory=memory)
        if experiment.hardware != "auto":
            notes.assumptions.append(
                f"hardware {experiment.hardware} is ignored by the local backend"
            )
    elif experiment.backend == "ray":
        ray = ray_hardware(experiment, sized.size, cluster, sized.quantize)
        choice = ray.choice
        notes.warnings.extend(ray.warnings)
        notes.assumptions.extend(ray.notes)
        if choice.flavor is not None:
            prices = {**prices, choice.flavor.name: ray.usd_per_hour or 0.0}
    else:
        choice, hw_warnings, hw_notes = _hardware(
            experiment, sized.size, size is not None, s, sized.quantize, lora_on, prices
        )
        if s.method == "grpo" and size is not None:
            sized, (choice, hw_warnings, hw_notes) = _cheaper_generation(
                experiment, sized, size, dataset_rows, prices, (choice, hw_warnings, hw_notes)
            )
        notes.warnings.extend(hw_warnings)
        notes.assumptions.extend(hw_notes)
    unpriced = (
        experiment.backend == "ray" and (experiment.ray or RaySpec()).usd_per_gpu_hour is None
    )
    flavor = choice.flavor
    gpus = flavor.gpus if flavor else (1 if local else 0)
    precision = choice.precision
    memory = choice.memory
    if size is not None:
        note = _precision_note(precision, lora_on, local)
        if note:
            notes.assumptions.insert(0, note)
    notes.warnings.extend(_quantized_run_warnings(precision, local))
    run_shape = _run_shape(sized, choice, local)
    merge_fits = train_merge_fits(run_shape, experiment) if run_shape else None
    merge = _merge_note(experiment, precision, choice, size, merge_fits)
    if merge:
        notes.assumptions.append(merge)

    per_example = tokens_per_example(s, sized.lengths.mean_len, sized.lengths.prompt_len)
    rows = _train_rows(experiment, dataset_rows)
    work = workload(s, gpus=gpus, rows=rows, per_example=per_example)
    work_warnings, work_notes = _workload_notes(experiment, s, work, dataset_rows is not None)
    notes.warnings.extend(work_warnings)
    notes.assumptions.extend(work_notes)

    timing = _Timing()
    if flavor is not None and size is not None:
        timing = _timing(flavor, s, size, sized, work, prices, notes, precision, memory)
        notes.warnings.extend(_timeout_warnings(experiment, timing.seconds, timing.recommended))
    train_job = JobPlan(
        kind="train",
        key="train",
        flavor="local" if local else (flavor.name if flavor else None),
        usd_per_hour=0.0 if local else _hourly(flavor, timing, prices),
        memory_gb=_per_gpu(memory, choice),
        load=precision.describe(),
        est_seconds=_ceil(timing.seconds),
        est_cost_usd=0.0 if local else _round(timing.cost, 4),
        timeout_s=experiment.timeout or timing.recommended,
    )
    jobs = pipeline_jobs(run_shape, experiment, train_job, prices)
    total = total_cost(jobs) if len(jobs) > 1 else None
    if unpriced:  # a cluster has no list price: no cost rather than $0
        timing = dataclasses.replace(timing, usd_per_hour=None, cost=None)
    over_budget, budget_warnings = (
        (False, [])
        if local
        else _budget_warnings(experiment, timing.cost if total is None else total)
    )
    notes.warnings.extend(budget_warnings)

    return Plan(
        experiment=experiment.name,
        base_model=experiment.base_model,
        method=experiment.method,
        backend=experiment.backend,
        flavor="local" if local else (flavor.name if flavor else None),
        flavor_usd_per_hour=0.0 if local else None if unpriced else _hourly(flavor, timing, prices),
        flavor_vram_gb=flavor.total_vram_gb if flavor and flavor.is_gpu else None,
        gpus=gpus,
        sharded=choice.sharded,
        fits=choice.fits,
        lora_on=sized.lora is not None,
        lora_note=sized.lora_note,
        params=size.params if size else None,
        params_source=size.source if size else None,
        trainable_params=sized.trainable,
        memory_gb=round(memory.per_gpu_gb(), 2) if memory else None,
        examples=work.examples,
        steps=work.steps,
        tokens=work.tokens,
        mean_seq_len=sized.lengths.mean_len,
        est_seconds=None if timing.seconds is None else math.ceil(timing.seconds),
        est_cost_usd=0.0 if local else _round(timing.cost, 4),
        timeout_s=experiment.timeout,
        recommended_timeout_s=timing.recommended,
        budget_usd=experiment.budget.max_cost_usd if experiment.budget else None,
        over_budget=over_budget,
        warnings=tuple(notes.warnings),
        assumptions=tuple(notes.assumptions),
        dtype=precision.dtype if size is not None or precision.sent else None,
        dtype_source=precision.source if size is not None or precision.sent else None,
        quantization=precision.quantize,
        launcher=choice.launcher,
        processes=choice.processes,
        memory_per_gpu_gb=_per_gpu(memory, choice),
        flops_formula=flops_formula(s, lora_on) if size is not None else None,
        savers=_saver_rows(sized, choice),
        vllm_gpu_memory_utilization=(memory.savers.vllm_share or None) if memory else None,
        vllm_max_model_length=(
            vllm_context(s, sized.lengths.prompt_len)
            if memory and memory.savers.vllm_share
            else None
        ),
        generation_s=_ceil(timing.generation),
        generation_s_without_vllm=_ceil(timing.generation_without_vllm),
        jobs=jobs if len(jobs) > 1 else (),
        total_cost_usd=total,
        merge_in_training=merge_fits,
        nodes=experiment.nodes,
    )


def _run_shape(sized: _Sizing, choice: FlavorChoice, local: bool) -> RunShape | None:
    if sized.params is None or sized.shape is None:
        return None
    return RunShape(
        params=sized.params,
        shape=sized.shape,
        lora=sized.lora is not None,
        quantized=choice.precision.quantize is not None,
        train_flavor=None if local else choice.flavor,
        sharded=choice.processes > 1,
        bf16=sized.settings.bf16,
    )


def _ceil(value: float | None) -> int | None:
    return None if value is None else math.ceil(value)


def _per_gpu(memory: Memory | None, choice: FlavorChoice) -> float | None:
    if memory is None:
        return None
    return round(memory.per_gpu_gb(choice.processes if choice.sharded else 1), 2)


def _saver_rows(sized: _Sizing, choice: FlavorChoice) -> tuple[SaverPlan, ...]:
    """Each saver on the chosen flavor: on or off, why, and the peak memory per GPU it
    saves there (the same run re-sized without it)."""
    memory, flavor = choice.memory, choice.flavor
    if memory is None or sized.shape is None:
        return ()
    gpus = choice.processes if choice.sharded else 1
    peak = memory.per_gpu_gb(gpus)

    def saves(other: Memory) -> float:
        return round(other.per_gpu_gb(gpus) - peak, 2)

    on = memory.savers
    s, exp, precision = sized.settings, sized.experiment, choice.precision

    def without(**changes: object) -> Memory:
        resized = (
            replace(sized, settings=replace(s, checkpointing=False)) if "ckpt" in changes else sized
        )
        changes.pop("ckpt", None)
        other = resized.memory(precision, choice.sharded, replace(on, **changes))  # type: ignore[arg-type]
        return replace(other, reserved=memory.reserved)

    rows = [
        SaverPlan(
            name="fused_lm_head",
            on=True,
            saves_gb=saves(without(fused_head=False)),
            note="TRL 1.16 scores tokens in 4,096 × 32,768 tiles: the logits are never stored",
        )
    ]
    liger_note = liger_decision(exp, sized.shape, flavor)[1]
    rows.append(
        SaverPlan(
            name="liger_kernel",
            on=on.liger,
            saves_gb=saves(without(liger=False)) if on.liger else None,
            note=liger_note,
        )
    )
    gpu = flavor is not None and flavor.is_gpu
    ckpt_on = s.checkpointing and (gpu or flavor is None)
    rows.append(
        SaverPlan(
            name="gradient_checkpointing",
            on=ckpt_on,
            saves_gb=saves(without(ckpt=True)) if ckpt_on else None,
            note="TRL's default on GPU: each layer's activations are recomputed in the backward"
            if ckpt_on
            else "off (set in the file, or a CPU flavor)",
        )
    )
    rows.append(_bf16_row(sized, choice, saves))
    rows.append(
        SaverPlan(
            name="padding_free",
            on=on.padding_free,
            note=padding_free_decision(exp, s)[1]
            + ("; peak sized for full-length rows" if on.padding_free else ""),
        )
    )
    if s.method == "grpo":
        rows.append(_vllm_row(sized, choice))
    return tuple(rows)


def _bf16_row(sized: _Sizing, choice: FlavorChoice, saves: Callable[[Memory], float]) -> SaverPlan:
    memory, flavor, precision = choice.memory, choice.flavor, choice.precision
    assert memory is not None
    if memory.savers.bf16_weights:
        fp32 = sized.memory(
            Precision("float32"), choice.sharded, replace(memory.savers, bf16_weights=False)
        )
        return SaverPlan(
            name="bf16_weights",
            on=True,
            saves_gb=saves(replace(fp32, reserved=memory.reserved)),
            note=f"float32 needs a dearer GPU than {flavor.name if flavor else 'this one'}: "
            "weights, grads and AdamW states load in bf16 (8 bytes/param; updates below ~0.4% of a "
            "weight round away: savers.bf16_weights: false keeps float32)",
        )
    if sized.lora is not None:
        why = f"LoRA: the frozen base already loads in {precision.dtype}"
    elif precision.source != TRL_DEFAULT:
        why = f"the base loads in {precision.dtype} ({precision.source})"
    elif not sized.experiment.savers.bf16_weights:
        why = "off in the file (savers.bf16_weights: false)"
    elif not bf16_capable(flavor):
        why = "no bf16 GPU" if flavor else "local: the machine is unknown"
    elif choice.sharded:
        why = "FSDP keeps float32 master weights"
    else:
        why = "float32 fits this GPU: full precision kept"
    return SaverPlan(name="bf16_weights", on=False, note=why)


def _vllm_row(sized: _Sizing, choice: FlavorChoice) -> SaverPlan:
    memory, flavor = choice.memory, choice.flavor
    assert memory is not None
    share = memory.savers.vllm_share
    if share and flavor is not None:
        return SaverPlan(
            name="vllm",
            on=True,
            note=f"colocated vLLM engine: vllm_gpu_memory_utilization {share:g} "
            f"({share * flavor.vram_gb:.1f} of {flavor.vram_gb} GB: a 16-bit copy of the weights "
            "and the generation KV cache), counted in the memory above",
        )
    allowed, why = vllm_allowed(
        sized.experiment, sized.shape, flavor, choice.precision.quantize is not None
    )
    if allowed:
        why = "no room for a vLLM engine beside training on this GPU: transformers generate"
    return SaverPlan(name="vllm", on=False, note=why)


def _hourly(flavor: Flavor | None, timing: _Timing, prices: Mapping[str, float]) -> float | None:
    """The price is known whenever the flavor is, even if the time is not."""
    if timing.usd_per_hour is not None:
        return timing.usd_per_hour
    return _price(flavor, prices) if flavor else None


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
