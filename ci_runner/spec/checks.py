"""Rules that span fields, and hyperparameters checked against TRL's own configs.

Pure functions: they take parsed values and return ``Finding``s with a field path,
so the loader can point at the exact line.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

FIELDS_FILE = Path(__file__).with_name("trl_fields.json")
FLOAT_RE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")

# Set by ci-runner from other parts of the experiment file.
RESERVED = {
    "output_dir": "ci-runner picks the output directory per run",
    "report_to": "metrics go to trackio, or MLflow with `tracking: {backend: mlflow}`",
    "project": "set `tracking.project` instead",
    "trackio_space_id": "set `tracking.space` instead",
    "run_name": "ci-runner names each run after the experiment",
    "push_to_hub": "set `output.hub_model_id` to push",
    "hub_model_id": "set `output.hub_model_id` instead",
    "hub_private_repo": "set `output.private` instead",
    "hub_token": "never put tokens in experiment files; ci-runner passes HF_TOKEN as a secret",
    "seed": "set the top-level `seed:` instead",
    "resume_from_checkpoint": "ci-runner resumes runs itself",
}

# Names users carry over from older TRL releases or from TRL's example scripts.
RENAMED = {
    "max_seq_length": ("max_length", "renamed in TRL 0.20"),
    "evaluation_strategy": ("eval_strategy", "renamed in transformers 4.46"),
    "warmup_ratio": ("warmup_steps", "transformers 5 reads a value below 1 as a ratio"),
    "max_prompt_length": ("max_length", "TRL 1.x truncates prompt and completion together"),
    "lora_r": (None, "LoRA is configured under `lora: {r: ...}`"),
    "lora_alpha": (None, "LoRA is configured under `lora: {alpha: ...}`"),
    "lora_dropout": (None, "LoRA is configured under `lora: {dropout: ...}`"),
    "lora_target_modules": (None, "LoRA is configured under `lora: {target_modules: ...}`"),
    "use_peft": (None, "LoRA is configured under `lora:` (auto, off or settings)"),
    "load_in_4bit": (None, "QLoRA is `lora: {quantize: 4bit}` (bitsandbytes NF4)"),
    "load_in_8bit": (None, "ci-runner quantizes to 4 bits only: `lora: {quantize: 4bit}`"),
    "per_device_batch_size": ("per_device_train_batch_size", "the batch size is per device"),
    "batch_size": ("per_device_train_batch_size", "the batch size is per device"),
    "train_batch_size": ("per_device_train_batch_size", "the batch size is per device"),
    "lr": ("learning_rate", "TRL's name for it"),
    "epochs": ("num_train_epochs", "TRL's name for it"),
}

# Per method, where the general rename has no counterpart in that method's config.
METHOD_RENAMED = {
    "grpo": {
        "max_seq_length": (
            "max_completion_length",
            "GRPO bounds what it generates; prompts are not truncated",
        ),
        "max_length": (
            "max_completion_length",
            "GRPO bounds what it generates; prompts are not truncated",
        ),
    },
}

# Bounds TRL's and transformers' own config checks imply (or that training needs to mean
# anything): (lowest allowed, whether that value itself is allowed).
RANGES: dict[str, tuple[float, bool]] = {
    "per_device_train_batch_size": (1, True),
    "per_device_eval_batch_size": (1, True),
    "gradient_accumulation_steps": (1, True),
    "learning_rate": (0, False),
    "num_train_epochs": (0, False),
    "logging_steps": (0, False),
    "save_steps": (0, False),
    "eval_steps": (0, False),
    "warmup_steps": (0, True),
    "weight_decay": (0, True),
    "max_grad_norm": (0, True),
    "save_total_limit": (1, True),
    "max_length": (1, True),
    "max_completion_length": (1, True),
    "num_generations": (2, True),  # GRPO compares completions of one prompt
    "beta": (0, True),
}


@dataclass(frozen=True)
class Finding:
    path: tuple[str | int, ...]
    message: str
    hint: str | None = None
    at_key: bool = False  # point at the key's line rather than its value's
    missing: bool = False  # a local input that is not on disk (yet): exit 4, not 3


@cache
def trl_fields() -> dict[str, Any]:
    fields: dict[str, Any] = json.loads(FIELDS_FILE.read_text())
    return fields


def suggest(word: str, options: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(word: str, options: Iterable[str]) -> str | None:
    match = suggest(word, options)
    return f"did you mean {match!r}?" if match else None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    for py, kind in ((int, "int"), (float, "float"), (str, "str"), (list, "list"), (dict, "dict")):
        if isinstance(value, py):
            return kind
    return "any"


def _coerce(value: Any, kinds: list[str]) -> tuple[Any, bool]:
    """Accept a value of a listed kind; rescue YAML's ``2e-4``, which it reads as a string."""
    if "any" in kinds:
        return value, True
    kind = _kind(value)
    if kind in kinds or (kind == "int" and "float" in kinds):
        return value, True
    if kind == "str" and "float" in kinds and FLOAT_RE.fullmatch(value):
        return float(value), True
    return value, False


def check_hyperparameters(
    method: str, params: dict[str, Any]
) -> tuple[dict[str, Any], list[Finding]]:
    """Validate names, types and enum values; return the coerced params and findings."""
    spec = trl_fields()["methods"][method]
    fields: dict[str, dict[str, Any]] = spec["fields"]
    config = spec["config_class"]
    coerced: dict[str, Any] = {}
    findings: list[Finding] = []
    for name, value in params.items():
        path = ("hyperparameters", name)
        if name in RESERVED:
            findings.append(Finding(path, "is set by ci-runner", RESERVED[name], at_key=True))
            continue
        if name not in fields:
            renamed = METHOD_RENAMED.get(method, {}).get(name) or RENAMED.get(name)
            if renamed and (renamed[0] is None or renamed[0] in fields):
                new, why = renamed
                hint = f"use {new!r} ({why})" if new else why
            else:
                hint = did_you_mean(name, fields) or f"see the fields of trl.{config}"
            findings.append(Finding(path, f"unknown {config} field", hint, at_key=True))
            continue
        field = fields[name]
        value, ok = _coerce(value, field["kinds"])
        if not ok:
            expected = " or ".join(k for k in field["kinds"] if k != "null")
            findings.append(Finding(path, f"expected {expected}, got {_kind(value)} {value!r}"))
            continue
        choices = field.get("choices")
        if choices and isinstance(value, str) and value not in choices:
            hint = did_you_mean(value, choices) or f"one of: {', '.join(choices)}"
            findings.append(Finding(path, f"{value!r} is not a valid {name}", hint))
            continue
        problem = _out_of_range(name, value)
        if problem:
            findings.append(Finding(path, *problem))
            continue
        coerced[name] = value
    return coerced, findings


def _out_of_range(name: str, value: Any) -> tuple[str, str] | None:
    """(message, hint) when a number is outside what TRL accepts or training can use."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if name == "max_steps":
        if value == 0 or value < -1:
            return f"must be a positive step count (or -1), got {value!r}", (
                "remove it to train for num_train_epochs, or set e.g. max_steps: 100"
            )
        return None
    if name not in RANGES:
        return None
    low, inclusive = RANGES[name]
    if value > low or (inclusive and value == low):
        return None
    bound = f"at least {low:g}" if inclusive else f"greater than {low:g}"
    return f"must be {bound}, got {value!r}", f"e.g. {name}: {_typical(name)}"


def _typical(name: str) -> str:
    return {
        "learning_rate": "2.0e-5",
        "num_train_epochs": "1",
        "num_generations": "4",
        "gradient_accumulation_steps": "8",
        "max_length": "1024",
    }.get(name, "1")


def check_cross_fields(data: Any) -> list[Finding]:
    """Rules no single field can check; ``data`` is a validated ``Experiment``."""
    findings: list[Finding] = []
    if data.method == "grpo" and not data.rewards:
        findings.append(
            Finding(
                ("method",), "GRPO needs at least one reward", "add `rewards: [accuracy, format]`"
            )
        )
    if data.method != "grpo" and data.rewards:
        findings.append(
            Finding(
                ("rewards",),
                f"rewards only apply to GRPO, not {data.method.upper()}",
                "remove `rewards:` or set `method: grpo`",
                at_key=True,
            )
        )
    if data.dataset.eval_split and data.dataset.eval_fraction:
        findings.append(
            Finding(
                ("dataset", "eval_fraction"),
                "set either eval_split or eval_fraction, not both",
                "keep eval_split to use a held-out split, or eval_fraction to carve one out",
                at_key=True,
            )
        )
    findings += _reversed_columns(data.dataset.columns)
    findings += _tracking_findings(data)
    if data.backend == "hf-jobs":
        findings += _hf_jobs_findings(data)
    findings += _ray_findings(data)
    hp = data.hyperparameters
    if data.method == "grpo":
        # GRPOConfig's defaults for both are 8.
        batch = hp.get("per_device_train_batch_size", 8)
        gens = hp.get("num_generations", 8)
        if isinstance(batch, int) and isinstance(gens, int) and gens > 0 and batch % gens:
            findings.append(
                Finding(
                    ("hyperparameters", "num_generations"),
                    f"per_device_train_batch_size ({batch}) must be divisible by "
                    f"num_generations ({gens})",
                    f"e.g. per_device_train_batch_size: {gens}",
                )
            )
    return findings


# The columns TRL's trainers read by name: what a ``dataset.columns`` key names.
TRL_COLUMNS = ("prompt", "completion", "messages", "text", "chosen", "rejected", "images")


def _reversed_columns(columns: dict[str, str]) -> list[Finding]:
    """``dataset.columns`` is ``{trl_column: dataset_column}``; ``{question: prompt}`` would
    rename a column called prompt to question, which no trainer reads: it is reversed."""
    return [
        Finding(
            ("dataset", "columns", key),
            f"`{key}: {value}` looks reversed: keys are the names TRL reads, values the "
            "dataset's own columns",
            f"write `{value}: {key}`",
            at_key=True,
        )
        for key, value in columns.items()
        if value in TRL_COLUMNS and key not in TRL_COLUMNS and key != value
    ]


def _ray_findings(data: Any) -> list[Finding]:
    """Several nodes, and the cluster's settings, only mean something on a Ray cluster."""
    findings = []
    if data.backend != "ray":
        if data.nodes > 1:
            findings.append(
                Finding(
                    ("nodes",),
                    f"nodes: {data.nodes} needs a multi-node backend; {data.backend} runs a job "
                    "on one machine",
                    "set `backend: ray` (a Ray cluster), or remove `nodes:`",
                    at_key=True,
                )
            )
        if data.ray is not None:
            findings.append(
                Finding(
                    ("ray",),
                    f"`ray:` settings are for `backend: ray`, and this file uses {data.backend}",
                    "set `backend: ray`, or remove the `ray:` section",
                    at_key=True,
                )
            )
    return findings


def _tracking_findings(data: Any) -> list[Finding]:
    """Each tracker's own settings; an MLflow URI with no password in it; on HF Jobs, a
    tracking server the job can reach (its disk, and so a local store, is wiped)."""
    from urllib.parse import urlsplit

    from ci_runner.core.hub import mlflow_store_is_local

    tracking = data.tracking
    findings = []
    other = "mlflow" if tracking.backend == "trackio" else "trackio"
    misplaced = {"trackio": ("uri", "experiment"), "mlflow": ("space",)}[tracking.backend]
    for key in misplaced:
        if getattr(tracking, key) is not None:
            findings.append(
                Finding(
                    ("tracking", key),
                    f"tracking.{key} is a setting of {other}, and this run reports to "
                    f"{tracking.backend}",
                    f"remove it, or set `tracking.backend: {other}`",
                    at_key=True,
                )
            )
    if tracking.backend != "mlflow":
        return findings
    parts = urlsplit(tracking.uri or "")
    if parts.password or (parts.username and parts.scheme in ("http", "https")):
        findings.append(
            Finding(
                ("tracking", "uri"),
                "credentials in the tracking URI would be written to the ledger and report",
                "drop them from the URI; set MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD "
                "or MLFLOW_TRACKING_TOKEN in the environment",
            )
        )
    if data.backend == "hf-jobs" and mlflow_store_is_local(tracking.uri):
        findings.append(
            Finding(
                ("tracking", "uri") if tracking.uri else ("tracking", "backend"),
                "an HF Jobs container cannot write to a tracking store on this machine, and "
                "its own disk is wiped when it ends",
                "set `tracking.uri` to an MLflow tracking server the job can reach "
                "(https://..., or databricks)",
            )
        )
    bare_path = tracking.uri and not parts.scheme and not tracking.uri.startswith("databricks")
    if parts.scheme.lower() == "file" or bare_path:
        findings.append(
            Finding(
                ("tracking", "uri"),
                "MLflow 3 refuses to write a file store (./mlruns) unless told to",
                "use a SQLite store, e.g. `uri: sqlite:///mlflow.db`, or a tracking server",
            )
        )
    return findings


def _hf_jobs_findings(data: Any) -> list[Finding]:
    """A job's disk is wiped when it ends and it cannot see this machine's files."""
    from ci_runner.core.hub import is_local_path

    findings = []
    for path, ref in ((("base_model",), data.base_model), (("dataset", "path"), data.dataset.path)):
        if is_local_path(ref):
            findings.append(
                Finding(
                    path,
                    "a local path is not visible inside an HF Jobs container",
                    "push it to the Hub first (`hf upload <repo> <path>`) and use the repo id",
                )
            )
    if not data.output.hub_model_id:
        findings.append(
            Finding(
                ("backend",),
                "hf-jobs needs output.hub_model_id: the job's disk is wiped when it ends",
                "add `output: {hub_model_id: <you>/<model-name>}`",
            )
        )
    return findings
