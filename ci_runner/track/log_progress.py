"""Training progress read from a job's log lines.

``job_scripts/train.py`` prints one ``[step 3/12] loss=… learning_rate=…`` line
per trainer log; the same parser serves local logs and HF Jobs' log stream.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

STEP_RE = re.compile(r"^\[step (\d+)/(\d+)\]((?: [A-Za-z0-9_./-]+=\S+)*)")
PAIR_RE = re.compile(r" ([A-Za-z0-9_./-]+)=(\S+)")


# Pairs on a progress line that are not training metrics.
NOT_SERIES = frozenset({"eta_s", "epoch", "learning_rate", "num_tokens", "train_loss"})


@dataclass(frozen=True)
class Progress:
    step: int | None = None
    max_steps: int | None = None
    loss: float | None = None
    learning_rate: float | None = None
    eta_s: float | None = None
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    # Every other logged metric by name (finite values only), and where one went NaN/inf.
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    nonfinite: dict[str, int] = field(default_factory=dict)

    @property
    def min_loss(self) -> float | None:
        return min((loss for _, loss in self.loss_curve), default=None)


def _float(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def parse_progress(lines: list[str]) -> Progress:
    step = max_steps = None
    loss = lr = eta = None
    curve: dict[int, float] = {}
    series: dict[str, dict[int, float]] = {}
    nonfinite: dict[str, int] = {}
    for line in lines:
        match = STEP_RE.match(line)
        if not match:
            continue
        step, max_steps = int(match[1]), int(match[2])
        pairs = dict(PAIR_RE.findall(match[3]))
        if (value := _float(pairs.get("loss", ""))) is not None:
            loss = value
            curve[step] = value
        lr = _float(pairs["learning_rate"]) if "learning_rate" in pairs else lr
        eta = _float(pairs.get("eta_s", "")) if "eta_s" in pairs else eta
        for key, text in pairs.items():
            if key in NOT_SERIES:
                continue
            if (value := _float(text)) is not None:
                if key != "loss":
                    series.setdefault(key, {})[step] = value
            elif text.lower().lstrip("+-") in ("nan", "inf", "infinity"):
                nonfinite.setdefault(key, step)
    return Progress(
        step,
        max_steps,
        loss,
        lr,
        eta,
        sorted(curve.items()),
        {key: sorted(points.items()) for key, points in sorted(series.items())},
        nonfinite,
    )
