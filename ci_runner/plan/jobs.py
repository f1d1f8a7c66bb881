"""Every job of a run, sized like training: the evaluations and the GGUF export.

A run is more than its training job: the base and the trained model are evaluated, and
the result may be exported to GGUF. Each of those jobs gets its own flavor, sized from the
same model shape, so a 70B pipeline finishes instead of loading a 141 GB base onto the
training GPU:

- an evaluation holds the model for inference (weights + the KV cache of a generation
  batch): 16 bits on one GPU where one holds it; 4-bit NF4 on one GPU when training
  already ran on a 4-bit base; else 16 bits spread over the GPUs of one flavor by
  ``device_map="auto"`` (one process, layer by layer);
- the export merges a LoRA adapter into its base reloaded in 16 bits on the CPU (about
  2 bytes × parameters of host memory), converts to GGUF F16 and quantizes, so it runs
  on the cheapest flavor, GPU or not, whose RAM and disk hold that;
- training's own ``output.merge`` of a 4-bit or sharded base reloads it the same way on the
  training flavor: where that flavor's RAM is too small, the adapter is pushed unmerged
  (the plan says so, and the export job merges it on a flavor that can).

Pure: shapes and flavors in, ``JobPlan`` rows out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from ci_runner.core.flavors import ACCELERATORS, FLAVORS, FLAVORS_BY_NAME, Flavor
from ci_runner.plan.hardware import QLORA_PRICE_CAP_USD_PER_HOUR, _price, usable_gb
from ci_runner.plan.memory import CUDA_OVERHEAD_GB, frozen_weight_bytes
from ci_runner.plan.model_size import ModelShape
from ci_runner.plan.settings import GB, NF4_BYTES, Precision
from ci_runner.plan.timing import (
    DECODE_BANDWIDTH_EFFICIENCY,
    DECODE_FLOOR_S,
    QLORA_THROUGHPUT,
    cost_usd,
    overhead_seconds,
    recommended_timeout,
)
from ci_runner.spec.model import Experiment

EVAL_BATCH = 16  # sequences generated together (lighteval finds the largest that fits)
EVAL_SEQ_LEN = 2048  # prompt + generation tokens a sequence may reach
EVAL_NEW_TOKENS = 256  # EvalConfig.max_new_tokens: the decode steps per batch
# Problems per benchmark when the file caps none (the built-in tasks' test splits).
BENCHMARK_SAMPLES = {"humaneval": 164, "gsm8k": 1319}
UNKNOWN_BENCHMARK_SAMPLES = 1000
MERGE_RAM_FACTOR = 1.2  # the 16-bit base, the adapter and the loader's buffers
HOST_HEADROOM = 0.9  # host memory a job may use: the OS and the container take the rest
QUANTIZED_BYTES = {"Q4_K_M": 0.6, "Q5_K_M": 0.7, "Q8_0": 1.07, "F16": 0.0}  # per param
PARAMS_PER_S_PER_VCPU = 10e6  # llama.cpp quantization throughput, per core
CONVERT_BYTES_PER_S = 400e6  # safetensors → GGUF F16, disk to disk


class JobPlan(BaseModel):
    """One job of the run: where it runs, how it holds the model, what it costs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str  # train | eval | export
    key: str  # train | base | final | gguf
    flavor: str | None
    usd_per_hour: float | None = None
    memory_gb: float | None = None  # eval: per GPU; export: host memory
    load: str = ""  # how the job holds the model, for people
    quantize: str | None = None  # eval: "4bit" loads the model as bitsandbytes NF4
    device_map: str | None = None  # eval: "auto" spreads it over the flavor's GPUs
    est_seconds: int | None = None
    est_cost_usd: float | None = None
    timeout_s: int | None = None  # what the job is sent (HF Jobs' default kills at 30 min)
    note: str = ""


@dataclass(frozen=True)
class RunShape:
    """What sizing the follow-up jobs needs from the training plan."""

    params: int
    shape: ModelShape
    lora: bool
    quantized: bool  # training held the base in 4 bits
    train_flavor: Flavor | None
    sharded: bool  # training ran over several processes (the merge reloads the base)
    bf16: bool = True  # bf16 autocast: evaluation avoids GPUs without bf16 (T4) too


# --- evaluation ------------------------------------------------------------------------


def _samples(experiment: Experiment) -> int:
    spec = experiment.evaluation
    if spec is None:
        return 0
    total = 0
    for bench in spec.benchmarks:
        known = BENCHMARK_SAMPLES.get(bench.benchmark, UNKNOWN_BENCHMARK_SAMPLES)
        total += min(n for n in (bench.max_samples or spec.max_samples, known) if n)
    return total


def _eval_weights(run: RunShape, four_bit: bool) -> float:
    if not four_bit:
        return run.params * 2
    return frozen_weight_bytes(run.params, run.shape, Precision("bfloat16", "4bit"))


def eval_memory_gb(run: RunShape, flavor: Flavor, four_bit: bool) -> float:
    """Per GPU: the weights and a generation batch's KV cache, split over the GPUs."""
    kv = EVAL_BATCH * EVAL_SEQ_LEN * run.shape.num_layers * 2 * run.shape.kv_dim * 2
    gpus = max(flavor.gpus, 1)
    return (_eval_weights(run, four_bit) + kv) / gpus / GB + CUDA_OVERHEAD_GB


def eval_seconds(run: RunShape, flavor: Flavor, four_bit: bool, samples: int) -> float:
    """Decode-bound: every step reads all weights once (``device_map`` runs the GPUs one
    after another), ceil(samples / batch) batches of EVAL_NEW_TOKENS steps."""
    assert flavor.accelerator is not None
    accel = ACCELERATORS[flavor.accelerator]
    weight = NF4_BYTES if four_bit else 2
    step = max(
        DECODE_FLOOR_S,
        run.params * weight / (accel.mem_bw_gbps * 1e9 * DECODE_BANDWIDTH_EFFICIENCY),
    )
    if four_bit:
        step /= QLORA_THROUGHPUT
    steps = math.ceil(samples / EVAL_BATCH) * EVAL_NEW_TOKENS
    return overhead_seconds(run.params) + steps * step


@dataclass(frozen=True)
class _EvalOption:
    flavor: Flavor
    four_bit: bool
    memory_gb: float

    @property
    def fits(self) -> bool:
        return self.memory_gb <= usable_gb(self.flavor)


def _eval_options(run: RunShape, prices: Mapping[str, float]) -> list[_EvalOption]:
    """16 bits on one affordable GPU; 4 bits on one (a QLoRA run); 16 bits over several
    GPUs; then 4 bits on any one GPU."""
    gpus = sorted(
        (
            f
            for f in FLAVORS
            if f.is_gpu and (ACCELERATORS[f.accelerator or ""].bf16 or not run.bf16)
        ),
        key=lambda f: (_price(f, prices), -f.peak_tflops),
    )
    singles = [f for f in gpus if f.gpus == 1]
    affordable = [f for f in singles if _price(f, prices) <= QLORA_PRICE_CAP_USD_PER_HOUR]
    order: list[tuple[list[Flavor], bool]] = [(affordable, False)]
    if run.quantized:
        order.append((singles, True))
    order += [([f for f in gpus if f.gpus > 1], False), (singles, True)]
    return [
        _EvalOption(flavor, four_bit, eval_memory_gb(run, flavor, four_bit))
        for flavors, four_bit in order
        for flavor in flavors
    ]


def _eval_option(
    run: RunShape, experiment: Experiment, prices: Mapping[str, float]
) -> tuple[_EvalOption, str]:
    spec = experiment.evaluation
    named = spec.hardware if spec else "auto"
    if named != "auto" and named in FLAVORS_BY_NAME:
        flavor = FLAVORS_BY_NAME[named]
        four_bit = run.quantized and flavor.gpus == 1
        option = _EvalOption(flavor, four_bit, eval_memory_gb(run, flavor, four_bit))
        return option, "evaluation.hardware in the file"
    options = _eval_options(run, prices)
    for option in options:
        if option.fits:
            return option, ""
    biggest = max(options, key=lambda o: usable_gb(o.flavor) - o.memory_gb)
    return biggest, "no flavor holds the model for inference: expect out-of-memory"


def _load_text(option: _EvalOption) -> str:
    if option.four_bit:
        return "4-bit NF4 (bitsandbytes), bfloat16 compute, one GPU"
    if option.flavor.gpus > 1:
        return f"16-bit, spread over {option.flavor.gpus} GPUs (device_map auto, one process)"
    return "16-bit, one GPU"


def eval_jobs(run: RunShape, experiment: Experiment, prices: Mapping[str, float]) -> list[JobPlan]:
    """The evaluations of the base and of the trained model, each its own job."""
    spec = experiment.evaluation
    if spec is None:
        return []
    option, why = _eval_option(run, experiment, prices)
    samples = _samples(experiment)
    seconds = eval_seconds(run, option.flavor, option.four_bit, samples)
    price = _price(option.flavor, prices)
    notes = [n for n in (why, f"{samples:,} problems × ≤{EVAL_NEW_TOKENS} new tokens") if n]
    if option.four_bit:
        notes.append("4-bit as in training" if run.quantized else "4-bit: no flavor holds 16 bits")
    jobs = []
    for key in spec.models:
        jobs.append(
            JobPlan(
                kind="eval",
                key=key,
                flavor=option.flavor.name,
                usd_per_hour=price,
                memory_gb=round(option.memory_gb, 2),
                load=_load_text(option),
                quantize="4bit" if option.four_bit else None,
                device_map="auto" if option.flavor.gpus > 1 else None,
                est_seconds=math.ceil(seconds),
                est_cost_usd=round(cost_usd(seconds, price), 4),
                timeout_s=recommended_timeout(seconds),
                note="; ".join(notes),
            )
        )
    return jobs


# --- merge and export --------------------------------------------------------------


def merge_ram_gb(params: int) -> float:
    """Host memory to merge an adapter into its base reloaded in 16 bits on the CPU."""
    return params * 2 * MERGE_RAM_FACTOR / GB


def host_fits(flavor: Flavor, ram_gb: float, disk_gb: float = 0.0) -> bool:
    return ram_gb <= flavor.ram_gb * HOST_HEADROOM and disk_gb <= flavor.disk_gb


def train_merge_fits(run: RunShape, experiment: Experiment) -> bool | None:
    """``output.merge`` after a 4-bit or sharded run reloads the base on the training flavor's
    CPU: does its RAM hold that? None when no such reload happens (or no flavor is known)."""
    if not (experiment.output.merge and run.lora and (run.quantized or run.sharded)):
        return None
    if run.train_flavor is None:
        return None
    return host_fits(run.train_flavor, merge_ram_gb(run.params))


def _export_needs(run: RunShape, experiment: Experiment) -> tuple[float, float]:
    """(host memory, disk) in GB: the merge (LoRA) and the merged copy, the F16 GGUF and
    each quantized file."""
    gguf = experiment.export.gguf if experiment.export else None
    quants = list(gguf.quantizations) if gguf else []
    sixteen = run.params * 2 / GB
    ram = merge_ram_gb(run.params) if run.lora else 8.0  # conversion streams the tensors
    disk = sixteen * (2 if run.lora else 1) + sixteen
    disk += sum(QUANTIZED_BYTES.get(q, 1.0) * run.params / GB for q in quants)
    return ram, disk * 1.1


def export_seconds(run: RunShape, flavor: Flavor, quantizations: int) -> float:
    convert = run.params * 2 / CONVERT_BYTES_PER_S * (2 if run.lora else 1)
    quantize = quantizations * run.params / (PARAMS_PER_S_PER_VCPU * max(flavor.vcpus, 1))
    return overhead_seconds(run.params) + convert + quantize


def export_job(
    run: RunShape, experiment: Experiment, prices: Mapping[str, float]
) -> JobPlan | None:
    """The GGUF export on the cheapest flavor whose host memory and disk hold it."""
    gguf = experiment.export.gguf if experiment.export else None
    if gguf is None:
        return None
    ram, disk = _export_needs(run, experiment)
    ordered = sorted(FLAVORS, key=lambda f: (_price(f, prices), f.gpus))
    fitting = [f for f in ordered if host_fits(f, ram, disk)]
    if not fitting:
        return JobPlan(
            kind="export",
            key="gguf",
            flavor=None,
            memory_gb=round(ram, 1),
            note=f"no flavor has ~{ram:.0f} GB of RAM and ~{disk:.0f} GB of disk: not planned",
        )
    flavor = fitting[0]
    seconds = export_seconds(run, flavor, len(gguf.quantizations))
    price = _price(flavor, prices)
    what = "merge the adapter into the 16-bit base on the CPU, " if run.lora else ""
    return JobPlan(
        kind="export",
        key="gguf",
        flavor=flavor.name,
        usd_per_hour=price,
        memory_gb=round(ram, 1),
        load=f"{what}convert to GGUF F16, quantize ({', '.join(gguf.quantizations)})",
        est_seconds=math.ceil(seconds),
        est_cost_usd=round(cost_usd(seconds, price), 4),
        timeout_s=recommended_timeout(seconds),
        note=f"~{ram:.0f} GB of RAM and ~{disk:.0f} GB of disk "
        f"({flavor.ram_gb} GB and {flavor.disk_gb} GB on {flavor.name})",
    )


def pipeline_jobs(
    run: RunShape | None,
    experiment: Experiment,
    train: JobPlan,
    prices: Mapping[str, float],
) -> tuple[JobPlan, ...]:
    """Training, then every later job of the run (HF Jobs only: locally one machine runs
    all of them)."""
    if run is None or experiment.backend != "hf-jobs":
        return (train,)
    jobs = [train, *eval_jobs(run, experiment, prices)]
    export = export_job(run, experiment, prices)
    if export is not None:
        jobs.append(export)
    return tuple(jobs)


def total_cost(jobs: tuple[JobPlan, ...]) -> float | None:
    known = [j.est_cost_usd for j in jobs if j.est_cost_usd is not None]
    return round(sum(known), 4) if known else None
