"""Training progress read from a job's log lines.

``job_scripts/train.py`` prints one ``[step 3/12] loss=… learning_rate=…`` line
per trainer log; the same parser serves local logs and HF Jobs' log stream.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

STEP_RE = re.compile(r"^\[step (\d+)/(\d+)\]((?: [a-z_/]+=\S+)*)")
PAIR_RE = re.compile(r" ([a-z_/]+)=(\S+)")


@dataclass(frozen=True)
class Progress:
    step: int | None = None
    max_steps: int | None = None
    loss: float | None = None
    learning_rate: float | None = None
    eta_s: float | None = None
    loss_curve: list[tuple[int, float]] = field(default_factory=list)

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
    return Progress(step, max_steps, loss, lr, eta, sorted(curve.items()))
