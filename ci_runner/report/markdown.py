"""Markdown building blocks shared by the report, the PR body, the model card and the
step summary: inline code, escaped table cells, links that never dress a local path up
as a Hub page. Pure functions of their arguments.

Values from the experiment file, the ledger or a job are untrusted: they pass through
``core.inert`` (``code``, ``prose``) before they meet our own markup."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, TypeGuard

from ci_runner.core.durations import parse_stamp
from ci_runner.core.hub import is_local_path
from ci_runner.core.inert import code as code  # re-exported: every renderer imports it here
from ci_runner.core.inert import link, prose
from ci_runner.ledger.model import Run

TBD = "TBD"
_METHOD_NAMES = {"sft": "SFT", "dpo": "DPO", "grpo": "GRPO"}


def cell(text: str) -> str:
    """Make ``text`` safe inside a table cell: a pipe or newline would split the row."""
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def table(header: tuple[str, ...] | list[str], rows: list[list[str]]) -> str:
    """A GitHub table; every cell is escaped so ledger values cannot break it."""
    lines = [
        "| " + " | ".join(cell(h) for h in header) + " |",
        "|" + "|".join("-" * (len(h) + 2) for h in header) + "|",
    ]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def utc_time(stamp: str | None) -> str:
    """'YYYY-MM-DD HH:MM:SS UTC' for an ISO stamp; unparseable stamps are shown as recorded."""
    if not stamp:
        return TBD
    parsed = parse_time(stamp)
    return parsed.strftime("%Y-%m-%d %H:%M:%S UTC") if parsed else stamp


def parse_time(stamp: str) -> datetime | None:
    try:
        parsed = parse_stamp(stamp)
    except ValueError:
        return None
    return parsed.astimezone(timezone.utc) if parsed.tzinfo is not None else parsed


def value(v: Any) -> str:
    """Readable hyperparameter value: lowercase bools, shortest float repr (5e-05); text
    as written, made inert."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)
    if isinstance(v, (list, tuple)):
        return ", ".join(value(x) for x in v) if v else "[]"
    if isinstance(v, dict):
        return ", ".join(f"{k}={value(v[k])}" for k in sorted(v, key=str)) or "{}"
    return prose(str(v)) if v != "" else '""'


def is_url(target: str | None) -> TypeGuard[str]:
    return target is not None and target.startswith(("http://", "https://"))


def link_or_path(target: str | None, label: str) -> str:
    """A link for URLs; a local path says it is local (local backend); TBD when unknown."""
    if not target:
        return TBD
    if is_url(target):
        return link(label, target)
    return f"local: {code(target)}"


def is_local(ref: str) -> bool:
    """A path on this machine (``./x``, ``/x``, ``.ci-runner/…``), not a Hub id."""
    return is_local_path(ref) or ref.startswith(".")


def named(name: str, url: str | None) -> str:
    """A model or dataset: its Hub link, or, for a local path, the path marked local.

    A ledger written before this check may hold ``https://huggingface.co/<local path>``;
    such a link is dropped rather than shown.
    """
    if is_local(name):
        return f"{code(name)} (local)"
    return link(name, url) if url else code(name)


def method_label(method: str) -> str:
    """'sft' → 'SFT (TRL)': every method runs on TRL."""
    return f"{_METHOD_NAMES.get(method.lower(), method.upper())} (TRL)"


def run_title(run: Run) -> str:
    """The run's identity as users know it: `title` - `created` - `status`."""
    return f"{code(run.title)} - {code(utc_time(run.created_at))} - {code(run.status.label)}"


def hub_model(run: Run) -> str:
    if not run.hub_model_id:
        return "not pushed"
    if run.hub_model_url:
        return link(run.hub_model_id, run.hub_model_url)
    return code(run.hub_model_id)
