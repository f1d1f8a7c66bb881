"""From memory to an HF Jobs flavor, and to how the job launches on it.

The memory a run needs depends on the precision its base loads in, and that depends on
the flavor (bf16 where the GPU has it, fp16 on T4, 4-bit NF4 for QLoRA). So every
candidate flavor is sized with its own precision through a ``Sizer`` the estimate
provides, and the cheapest one that holds the run wins.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ci_runner.core.flavors import ACCELERATORS, FLAVORS, FLAVORS_BY_NAME, Flavor
from ci_runner.plan.memory import (
    HEADROOM,
    Memory,
)
from ci_runner.plan.settings import (
    Precision,
    Settings,
)
from ci_runner.spec.model import Experiment

# QLoRA (auto) when the 16-bit LoRA run fits no single GPU at or below this price: the
# most one GPU costs in the catalog (h200). Above it, 4 bits on one GPU beats sharding
# 16 bits over several at two or more times the price.
QLORA_PRICE_CAP_USD_PER_HOUR = 5.00

SINGLE, DDP, FSDP = "single", "ddp", "fsdp"

# (flavor or None for no flavor, quantize to 4 bits, shard with FSDP) -> precision, memory
Sizer = Callable[[Flavor | None, bool, bool], tuple[Precision, Memory | None]]


@dataclass(frozen=True)
class Option:
    """One way to run: a flavor, how it holds the base model, what that takes, the launch."""

    flavor: Flavor
    precision: Precision
    memory: Memory | None
    launcher: str  # single | ddp | fsdp

    @property
    def processes(self) -> int:
        return self.flavor.gpus if self.launcher != SINGLE else 1

    @property
    def per_gpu_gb(self) -> float | None:
        if self.memory is None:
            return None
        return self.memory.per_gpu_gb(self.flavor.gpus if self.launcher == FSDP else 1)

    @property
    def fits(self) -> bool | None:
        need = self.per_gpu_gb
        if need is None or not self.flavor.is_gpu:
            return None
        return need <= usable_gb(self.flavor)


@dataclass(frozen=True)
class FlavorChoice:
    flavor: Flavor | None
    sharded: bool
    fits: bool | None
    precision: Precision  # how the base is held on this flavor (also without one)
    notes: tuple[str, ...] = ()
    memory: Memory | None = None
    launcher: str = SINGLE
    processes: int = 1

    @classmethod
    def of(
        cls, option: Option, notes: tuple[str, ...] = (), fits: bool | None = None
    ) -> FlavorChoice:
        return cls(
            option.flavor,
            option.launcher == FSDP,
            option.fits if fits is None else fits,
            option.precision,
            notes,
            option.memory,
            option.launcher,
            option.processes,
        )


# --- hardware ----------------------------------------------------------------


def usable_gb(flavor: Flavor) -> float:
    return flavor.vram_gb * HEADROOM


def _price(flavor: Flavor, prices: Mapping[str, float]) -> float:
    return prices.get(flavor.name, flavor.usd_per_hour)


def _gpu_candidates(bf16: bool, prices: Mapping[str, float]) -> list[Flavor]:
    """GPU flavors by price; T4 drops out under bf16 (no bf16 tensor cores)."""
    gpus = [
        f
        for f in FLAVORS
        if f.is_gpu and f.accelerator and (ACCELERATORS[f.accelerator].bf16 or not bf16)
    ]
    return sorted(gpus, key=lambda f: (_price(f, prices), -f.peak_tflops, f.name))


def _option(sizer: Sizer, flavor: Flavor, *, quantize: bool, launcher: str) -> Option:
    precision, memory = sizer(flavor, quantize, launcher == FSDP)
    return Option(flavor, precision, memory, launcher)


def _first_fit(sizer: Sizer, flavors: list[Flavor], quantize: bool, launcher: str) -> Option | None:
    for flavor in flavors:
        option = _option(sizer, flavor, quantize=quantize, launcher=launcher)
        if option.fits:
            return option
    return None


def qlora_rule(sixteen_bit_gb: float, option: Option) -> str:
    return (
        f"QLoRA (auto): the 16-bit LoRA run needs ~{sixteen_bit_gb:.0f} GB, more than any "
        f"single GPU at ≤ ${QLORA_PRICE_CAP_USD_PER_HOUR:.2f}/h holds at 85% use, so the base "
        f"loads as {option.precision.describe()}: ~{option.per_gpu_gb:.0f} GB"
    )


def choose_flavor(
    sizer: Sizer, *, bf16: bool, quantize: str, prices: Mapping[str, float] | None = None
) -> FlavorChoice:
    """The cheapest $/h flavor whose VRAM holds the run at ≤ 85% use, and its launch.

    In order: one GPU at ≤ QLORA_PRICE_CAP_USD_PER_HOUR in 16 bits; then, for LoRA with
    ``quantize: auto``, one such GPU with the base in 4-bit NF4 (QLoRA); then one
    dearer GPU; then several GPUs under FSDP (each holds 1/n of the static memory plus
    the unsharded activations; ``accelerate launch`` starts one process per GPU).
    ``quantize`` "4bit" considers single GPUs with the 4-bit base only.
    """
    prices = prices or {}
    candidates = _gpu_candidates(bf16, prices)
    singles = [f for f in candidates if f.gpus == 1]
    affordable = [f for f in singles if _price(f, prices) <= QLORA_PRICE_CAP_USD_PER_HOUR]
    dearer = [f for f in singles if f not in affordable]
    multis = [f for f in candidates if f.gpus > 1]
    four_bit = quantize == "4bit"
    notes: tuple[str, ...] = ()
    t4 = _option(sizer, FLAVORS_BY_NAME["t4-small"], quantize=four_bit, launcher=SINGLE)
    if bf16 and t4.fits:
        notes = ("T4 skipped: no bf16 tensor cores (set `fp16: true` to allow it)",)
    if four_bit:
        order = [(singles, True, SINGLE)]
    else:
        order = [(affordable, False, SINGLE)]
        if quantize == "auto":
            order.append((affordable, True, SINGLE))
        order += [(dearer, False, SINGLE), (multis, False, FSDP)]
    for flavors, quantized, launcher in order:
        option = _first_fit(sizer, flavors, quantized, launcher)
        if option is None:
            continue
        if quantized and not four_bit:
            biggest = max(affordable, key=lambda f: f.vram_gb)
            sixteen = _option(sizer, biggest, quantize=False, launcher=SINGLE).per_gpu_gb
            notes = (*notes, qlora_rule(sixteen or 0.0, option))
        return FlavorChoice.of(option, notes)
    pool = singles if four_bit else candidates
    biggest = max(pool, key=lambda f: (f.total_vram_gb, -_price(f, prices)))
    launcher = FSDP if biggest.gpus > 1 else SINGLE
    return FlavorChoice.of(_option(sizer, biggest, quantize=four_bit, launcher=launcher), notes)


def _explicit_option(flavor: Flavor, sizer: Sizer, quantize: str) -> Option:
    """The launch on a flavor the file names: one process per GPU, FSDP only when one GPU
    cannot hold the run (or its size is unknown). QLoRA only when the file asks for it:
    ``quantize: auto`` is the planner's rule for choosing hardware, not a way to squeeze a
    run onto the flavor the file names."""
    four_bit = quantize == "4bit"
    if not flavor.is_gpu or flavor.gpus == 1:
        return _option(sizer, flavor, quantize=four_bit, launcher=SINGLE)
    replica = _option(sizer, flavor, quantize=four_bit, launcher=DDP)
    if four_bit or replica.fits:
        return replica  # QLoRA is never sharded: bitsandbytes' 4-bit storage is not FSDP's
    return _option(sizer, flavor, quantize=False, launcher=FSDP)


def _auto_hardware(
    sizer: Sizer, known: bool, s: Settings, quantize: str, prices: Mapping[str, float]
) -> tuple[FlavorChoice, list[str]]:
    if not known:
        return FlavorChoice(None, False, None, precision=sizer(None, False, False)[0]), [
            "model size unknown: hardware not chosen; set `hardware:` in the experiment file"
        ]
    choice = choose_flavor(sizer, bf16=s.bf16, quantize=quantize, prices=prices)
    warnings = []
    if not choice.fits and choice.memory is not None:
        warnings.append(
            f"no flavor fits ~{choice.memory.per_gpu_gb():.0f} GB: turn LoRA on, or lower "
            "per_device_train_batch_size or max_length"
        )
    return choice, warnings


def _explicit_hardware(
    name: str, sizer: Sizer, s: Settings, quantize: str, lora_on: bool
) -> tuple[FlavorChoice, list[str]]:
    flavor = FLAVORS_BY_NAME[name]
    option = _explicit_option(flavor, sizer, quantize)
    warnings = []
    fp16_weights = option.precision.dtype == "float16"  # matmuls run in fp16: no emulation
    accel = ACCELERATORS[flavor.accelerator] if flavor.accelerator else None
    if flavor.is_gpu and s.bf16 and accel is not None and not accel.bf16 and not fp16_weights:
        warnings.append(
            f"{name}: {flavor.accelerator} has no bf16 tensor cores, so bf16 (TRL's default) "
            "runs emulated and several times slower; set `fp16: true` or choose l4x1"
        )
    if not flavor.is_gpu:
        warnings.append(f"{name} has no GPU: training is only practical for tiny models")
        if option.precision.quantize:
            warnings.append(f"{name}: 4-bit quantization (bitsandbytes) needs a CUDA GPU")
    elif option.fits is False and option.per_gpu_gb is not None:
        qlora = lora_on and not option.precision.quantize
        warnings.append(
            f"{name} does not fit: needs ~{option.per_gpu_gb:.1f} GB per GPU, "
            f"{usable_gb(flavor):.1f} of {flavor.vram_gb} GB usable; expect out-of-memory "
            "(use `hardware: auto`, "
            + ("`lora: {quantize: 4bit}`, " if qlora else "LoRA, ")
            + "or a smaller batch or max_length)"
        )
    return FlavorChoice.of(option), warnings


def launch_note(choice: FlavorChoice, explicit: bool) -> str | None:
    """How the job starts on a multi-GPU flavor, for the plan's assumptions."""
    flavor = choice.flavor
    if flavor is None or choice.launcher == SINGLE:
        return None
    start = f"{flavor.name}: `accelerate launch` starts {choice.processes} processes, one per GPU"
    if choice.launcher == DDP:
        return f"{start} (DDP: each GPU holds a full replica and its share of the batch)"
    if choice.memory is None:
        why = "the model size is unknown, so "
    elif explicit:
        why = "one GPU cannot hold the run, so "
    else:
        why = "no single GPU fits, so "
    return (
        f"{start}; {why}FSDP2 shards weights, gradients and optimizer states over them "
        "(generated accelerate config, full state dict saved at the end)"
    )


def _hardware(
    experiment: Experiment,
    sizer: Sizer,
    known: bool,
    s: Settings,
    quantize: str,
    lora_on: bool,
    prices: Mapping[str, float],
) -> tuple[FlavorChoice, list[str], list[str]]:
    """(choice, warnings, assumptions) for the hf-jobs backend."""
    explicit = experiment.hardware != "auto"
    if explicit:
        choice, warnings = _explicit_hardware(experiment.hardware, sizer, s, quantize, lora_on)
        notes = []
    else:
        choice, warnings = _auto_hardware(sizer, known, s, quantize, prices)
        notes = list(choice.notes)
    launch = launch_note(choice, explicit)
    if launch:
        notes.append(launch)
    return choice, warnings, notes
