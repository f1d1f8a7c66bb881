"""Durations as people write and read them: ``90m``, ``1h30m``, ``2h 5m 0s``, ``12m``."""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone

DURATION_RE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_duration(value: str | int) -> int:
    """``90m``, ``2h``, ``1h30m``, ``45s`` or plain seconds → seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 90m or 2h")
    if isinstance(value, int):
        seconds = value
    else:
        match = DURATION_RE.fullmatch(value.strip())
        if not value.strip() or not match:
            raise ValueError(f"{value!r} is not a duration; write e.g. 90m, 2h or 1h30m")
        d, h, m, s = (int(g or 0) for g in match.groups())
        seconds = ((d * 24 + h) * 60 + m) * 60 + s
    if seconds <= 0:
        raise ValueError("must be longer than zero")
    return seconds


def spec_duration(seconds: int | None) -> str | None:
    """``5400`` → ``1h30m``: exact, in the syntax the experiment file's ``timeout:`` takes."""
    if seconds is None:
        return None
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = ((hours, "h"), (minutes, "m"), (secs, "s"))
    return "".join(f"{n}{unit}" for n, unit in parts if n)


def rounded_minutes(seconds: float) -> str:
    """``5401`` → ``1h31m``: estimates and timeouts, rounded up to the minute."""
    minutes = math.ceil(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes or not hours else "")


def clock(seconds: float) -> str:
    """``83`` → ``1m 23s``: a runtime, exact to the second."""
    total = max(0, int(round(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def short(seconds: float) -> str:
    """``2095`` → ``35m``: one or two units, for tables and progress lines."""
    total = max(0, int(round(seconds)))
    if total < 60:
        return f"{total}s"
    minutes, _ = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if hours else f"{days}d"


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
