"""Live HF Jobs prices (the one I/O edge of planning): ``GET /api/jobs/hardware``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from huggingface_hub import HfApi


# --- live prices (I/O edge) -------------------------------------------------

_UNITS_PER_HOUR = {"second": 3600, "minute": 60, "hour": 1}


def prices_from_hardware(api: HfApi) -> dict[str, float] | None:
    """$/h by flavor from ``GET /api/jobs/hardware`` (``unitCostUSD`` per ``unitLabel``).

    None when the call fails or says nothing usable: the shipped table then stands.
    """
    try:
        hardware = api.list_jobs_hardware()
    except Exception:  # auth, network, server: prices are advisory, keep the table
        return None
    prices = {}
    for item in hardware:
        per_hour = _UNITS_PER_HOUR.get(str(item.unit_label).lower())
        if per_hour and item.unit_cost_usd is not None:
            prices[item.name] = round(float(item.unit_cost_usd) * per_hour, 6)
    return prices or None
