"""The HF Jobs hardware catalog, shipped as data.

Prices are the public per-hour list prices (hub-docs ``jobs-pricing``,
August 2026); ``list_jobs_hardware`` refreshes them when a token is present. vCPUs, host
memory and ephemeral disk come from the same table: a LoRA merge reloads the base in host
memory, and a GGUF export writes the model twice to disk.
TFLOP/s are dense bf16 (fp16 on T4, which has no bf16) tensor-core peaks.
``ACCELERATORS`` adds what the planner needs beyond the catalog: bf16 support,
memory bandwidth (for GRPO's decode-bound generation) and an assumed MFU.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Flavor:
    name: str
    accelerator: str | None  # None for CPU flavors
    gpus: int
    vram_gb: int  # per GPU
    peak_tflops: float  # per GPU
    usd_per_hour: float
    vcpus: int = 0
    ram_gb: int = 0  # host memory
    disk_gb: int = 0  # ephemeral storage

    @property
    def is_gpu(self) -> bool:
        return self.gpus > 0

    @property
    def total_vram_gb(self) -> int:
        return self.gpus * self.vram_gb


def _gpu(
    name: str,
    accel: str,
    gpus: int,
    vram: int,
    tflops: float,
    price: float,
    host: tuple[int, int, int],
) -> Flavor:
    return Flavor(name, accel, gpus, vram, tflops, price, *host)


def _cpu(name: str, price: float, host: tuple[int, int, int]) -> Flavor:
    return Flavor(name, None, 0, 0, 0.0, price, *host)


FLAVORS: tuple[Flavor, ...] = (
    _cpu("cpu-basic", 0.01, (2, 16, 50)),
    _cpu("cpu-upgrade", 0.03, (8, 32, 50)),
    _cpu("cpu-xl", 1.00, (16, 124, 1000)),
    _cpu("cpu-performance", 1.90, (32, 256, 1024)),
    _gpu("t4-small", "T4", 1, 16, 65, 0.40, (4, 15, 50)),
    _gpu("t4-medium", "T4", 1, 16, 65, 0.60, (8, 30, 100)),
    _gpu("l4x1", "L4", 1, 24, 121, 0.80, (8, 30, 400)),
    _gpu("l4x4", "L4", 4, 24, 121, 3.80, (48, 186, 3200)),
    _gpu("a10g-small", "A10G", 1, 24, 125, 1.00, (4, 15, 110)),
    _gpu("a10g-large", "A10G", 1, 24, 125, 1.50, (12, 46, 200)),
    _gpu("a10g-largex2", "A10G", 2, 24, 125, 3.00, (24, 92, 1000)),
    _gpu("a10g-largex4", "A10G", 4, 24, 125, 5.00, (48, 184, 2000)),
    _gpu("l40sx1", "L40S", 1, 48, 362, 1.80, (8, 62, 380)),
    _gpu("l40sx4", "L40S", 4, 48, 362, 8.30, (48, 382, 3200)),
    _gpu("l40sx8", "L40S", 8, 48, 362, 23.50, (192, 1534, 6500)),
    _gpu("a100-large", "A100", 1, 80, 312, 2.50, (12, 142, 1000)),
    _gpu("a100x4", "A100", 4, 80, 312, 10.00, (48, 568, 4000)),
    _gpu("a100x8", "A100", 8, 80, 312, 20.00, (96, 1136, 8000)),
    _gpu("rtx-pro-6000", "RTX PRO 6000", 1, 96, 503, 2.75, (23, 256, 475)),
    _gpu("rtx-pro-6000x2", "RTX PRO 6000", 2, 96, 503, 5.50, (46, 512, 950)),
    _gpu("rtx-pro-6000x4", "RTX PRO 6000", 4, 96, 503, 11.00, (92, 1024, 1900)),
    _gpu("rtx-pro-6000x8", "RTX PRO 6000", 8, 96, 503, 22.00, (184, 2048, 3800)),
    _gpu("h200", "H200", 1, 141, 989, 5.00, (23, 256, 3000)),
    _gpu("h200x2", "H200", 2, 141, 989, 10.00, (46, 512, 6000)),
    _gpu("h200x4", "H200", 4, 141, 989, 20.00, (92, 1024, 12000)),
    _gpu("h200x8", "H200", 8, 141, 989, 40.00, (184, 2048, 24000)),
)

FLAVORS_BY_NAME: dict[str, Flavor] = {f.name: f for f in FLAVORS}


@dataclass(frozen=True)
class Accelerator:
    """Per-GPU facts the time estimate uses, beyond the catalog's peak TFLOP/s."""

    bf16: bool  # bf16 tensor cores; T4 has none, so bf16 there is emulated and slow
    mem_bw_gbps: float  # memory bandwidth per GPU, GB/s: bounds token-by-token decoding
    mfu: float  # model FLOPs utilisation we assume for HF Trainer fine-tuning
    emulated_bf16_tflops: float | None = None  # what bf16 runs at without tensor cores


# MFU: what single-node HF Trainer runs reach at a few thousand tokens per micro-batch.
# Power-capped inference cards (T4 70 W, L4 72 W) sustain less of their peak.
ACCELERATORS: dict[str, Accelerator] = {
    "T4": Accelerator(bf16=False, mem_bw_gbps=320, mfu=0.25, emulated_bf16_tflops=8.1),
    "L4": Accelerator(bf16=True, mem_bw_gbps=300, mfu=0.30),
    "A10G": Accelerator(bf16=True, mem_bw_gbps=600, mfu=0.35),
    "L40S": Accelerator(bf16=True, mem_bw_gbps=864, mfu=0.35),
    "A100": Accelerator(bf16=True, mem_bw_gbps=2039, mfu=0.40),
    "RTX PRO 6000": Accelerator(bf16=True, mem_bw_gbps=1792, mfu=0.35),
    "H200": Accelerator(bf16=True, mem_bw_gbps=4800, mfu=0.35),
    # Not an HF Jobs flavor; the GPU of most Ray clusters that train past one machine.
    "H100": Accelerator(bf16=True, mem_bw_gbps=3350, mfu=0.35),
}
