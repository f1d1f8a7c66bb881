"""From memory to an HF Jobs flavor: the cheapest that fits, or why the chosen one does not."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ci_runner.core.flavors import ACCELERATORS, FLAVORS, FLAVORS_BY_NAME, Flavor
from ci_runner.spec.model import Experiment

if TYPE_CHECKING:
    pass
from ci_runner.plan.memory import (
    HEADROOM,
    Memory,
)
from ci_runner.plan.settings import (
    Settings,
)


@dataclass(frozen=True)
class FlavorChoice:
    flavor: Flavor | None
    sharded: bool
    fits: bool | None
    notes: tuple[str, ...] = ()


# --- hardware ----------------------------------------------------------------


def usable_gb(flavor: Flavor) -> float:
    return flavor.vram_gb * HEADROOM


def _price(flavor: Flavor, prices: Mapping[str, float]) -> float:
    return prices.get(flavor.name, flavor.usd_per_hour)


def _gpu_candidates(bf16: bool, prices: Mapping[str, float]) -> list[Flavor]:
    """GPU flavors by price; T4 drops out under bf16 (no bf16 tensor cores)."""
    gpus = [f for f in FLAVORS if f.is_gpu and (ACCELERATORS[f.accelerator].bf16 or not bf16)]
    return sorted(gpus, key=lambda f: (_price(f, prices), -f.peak_tflops, f.name))


def choose_flavor(
    memory: Memory, *, bf16: bool, prices: Mapping[str, float] | None = None
) -> FlavorChoice:
    """The cheapest $/h GPU flavor whose VRAM holds the run at ≤ 85% use.

    One GPU first: the job script runs a single process. Only when no single GPU
    fits, a multi-GPU flavor whose GPUs each hold 1/n of the static memory
    (FSDP full sharding) plus the unsharded activations; that needs the job to
    run under ``accelerate launch`` with FSDP.
    """
    prices = prices or {}
    candidates = _gpu_candidates(bf16, prices)
    t4 = FLAVORS_BY_NAME["t4-small"]
    t4_would_fit = bf16 and memory.per_gpu_gb(1) <= usable_gb(t4)
    notes: tuple[str, ...] = ()
    if t4_would_fit:
        notes = ("T4 skipped: no bf16 tensor cores (set `fp16: true` to allow it)",)
    for flavor in candidates:
        if flavor.gpus == 1 and memory.per_gpu_gb(1) <= usable_gb(flavor):
            return FlavorChoice(flavor, False, True, notes)
    for flavor in candidates:
        if flavor.gpus > 1 and memory.per_gpu_gb(flavor.gpus) <= usable_gb(flavor):
            return FlavorChoice(flavor, True, True, notes)
    biggest = max(candidates, key=lambda f: (f.total_vram_gb, -_price(f, prices)))
    return FlavorChoice(biggest, biggest.gpus > 1, False, notes)


def _explicit_flavor(name: str, memory: Memory | None, bf16: bool) -> FlavorChoice:
    flavor = FLAVORS_BY_NAME[name]
    if not flavor.is_gpu or memory is None:
        return FlavorChoice(flavor, False, None)
    sharded = flavor.gpus > 1
    fits = memory.per_gpu_gb(flavor.gpus) <= usable_gb(flavor)
    notes: tuple[str, ...] = ()
    if bf16 and not ACCELERATORS[flavor.accelerator].bf16:
        notes = (
            f"{name}: {flavor.accelerator} has no bf16 tensor cores, so bf16 (TRL's default) "
            "runs emulated and several times slower; set `fp16: true` or choose l4x1",
        )
    return FlavorChoice(flavor, sharded, fits, notes)


def _auto_hardware(
    memory: Memory | None, s: Settings, prices: Mapping[str, float]
) -> tuple[FlavorChoice, list[str]]:
    if memory is None:
        return FlavorChoice(None, False, None), [
            "model size unknown: hardware not chosen; set `hardware:` in the experiment file"
        ]
    choice = choose_flavor(memory, bf16=s.bf16, prices=prices)
    warnings = []
    if not choice.fits:
        warnings.append(
            f"no flavor fits ~{memory.per_gpu_gb():.0f} GB: turn LoRA on, or lower "
            "per_device_train_batch_size or max_length"
        )
    return choice, warnings


def _explicit_hardware(
    name: str, memory: Memory | None, s: Settings
) -> tuple[FlavorChoice, list[str]]:
    choice = _explicit_flavor(name, memory, s.bf16)
    flavor = choice.flavor
    assert flavor is not None
    warnings = list(choice.notes)
    if not flavor.is_gpu:
        warnings.append(f"{name} has no GPU: training is only practical for tiny models")
    elif choice.fits is False and memory is not None:
        warnings.append(
            f"{name} does not fit: needs ~{memory.per_gpu_gb(flavor.gpus):.1f} GB per GPU, "
            f"{usable_gb(flavor):.1f} of {flavor.vram_gb} GB usable; expect out-of-memory "
            "(use `hardware: auto`, LoRA, or a smaller batch or max_length)"
        )
    return FlavorChoice(flavor, choice.sharded, choice.fits), warnings


def _hardware(
    experiment: Experiment, memory: Memory | None, s: Settings, prices: Mapping[str, float]
) -> tuple[FlavorChoice, list[str], list[str]]:
    """(choice, warnings, assumptions) for the hf-jobs backend."""
    explicit = experiment.hardware != "auto"
    if explicit:
        choice, warnings = _explicit_hardware(experiment.hardware, memory, s)
    else:
        choice, warnings = _auto_hardware(memory, s, prices)
    if choice.sharded and choice.flavor is not None:
        why = "" if explicit else "no single GPU fits, so "
        warnings.append(
            f"{choice.flavor.name}: {why}the estimate shards weights, gradients and optimizer "
            "states over its GPUs (FSDP); the job must run under `accelerate launch` with FSDP, "
            "a plain single process uses one GPU"
        )
    return choice, warnings, [] if explicit else list(choice.notes)
