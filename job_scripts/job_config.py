"""The job's side of the run config: what each job script receives, typed and checked.

The runner builds these documents with the pydantic models in ``ci_runner/runconfig.py``
and sends them as JSON; a job reads them here, with the standard library only (it runs
before the job's own dependencies load), into frozen dataclasses of the same names, fields
and defaults (``tests/test_job_config.py`` fails when the two sides differ).

A malformed document is a :class:`protocol.ConfigError` naming the field and what was
expected (``run.json: field 'dataset.path' is missing``), so the job fails with a summary,
never a ``KeyError``. A field this script does not know is ignored with a note on stderr:
a newer runner may add optional settings an older script can do without, and a change an
older script must not ignore raises ``SCHEMA_VERSION`` instead, which ``protocol`` refuses.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from protocol import SCHEMA_VERSION, ConfigError

T = TypeVar("T")


class Method(str, enum.Enum):
    """The training methods ``train.py`` runs (TRL's SFT, DPO and GRPO trainers)."""

    SFT = "sft"
    DPO = "dpo"
    GRPO = "grpo"


# --- reading ---------------------------------------------------------------------------


class _Decoder:
    """Checks a JSON value against a type hint, naming the field path on any mismatch."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.ignored: list[str] = []

    def fail(self, path: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: field {path!r} {message}")

    def record(self, cls: type[T], data: Any, path: str) -> T:
        if not isinstance(data, Mapping):
            if not path:
                raise ConfigError(f"{self.source}: the config must be a JSON object")
            raise self.fail(path, f"must be an object, not {_shown(data)}")
        hints = typing.get_type_hints(cls)
        known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        values: dict[str, Any] = {}
        for name, spec in known.items():
            where = f"{path}.{name}" if path else name
            if name not in data:
                required = spec.default is dataclasses.MISSING
                if required and spec.default_factory is dataclasses.MISSING:
                    raise self.fail(where, "is missing")
                continue
            values[name] = self.value(hints[name], data[name], where)
        self.ignored += [f"{path}.{key}" if path else str(key) for key in data if key not in known]
        return cls(**values)

    def value(self, hint: Any, data: Any, path: str) -> Any:
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if hint is Any:
            return data
        if dataclasses.is_dataclass(hint):
            return self.record(hint, data, path)  # type: ignore[arg-type]
        if _is_union(hint):
            if data is None and type(None) in args:
                return None
            options = [option for option in args if option is not type(None)]
            one = options[0] if len(options) == 1 else None
            if dataclasses.is_dataclass(one) and isinstance(data, Mapping):
                return self.value(one, data, path)  # an object: say which field is wrong
            for option in options:
                try:
                    return self.value(option, data, path)
                except ConfigError:
                    continue
            raise self.fail(path, f"must be {_expected(hint)}, not {_shown(data)}")
        if hint is type(None):
            if data is None:
                return None
        elif origin is Literal:
            if data in args:
                return data
        elif isinstance(hint, type) and issubclass(hint, enum.Enum):
            try:
                return hint(data)
            except ValueError:
                pass
        elif origin is tuple and isinstance(data, list):
            return tuple(self.value(args[0], item, f"{path}[{i}]") for i, item in enumerate(data))
        elif origin is dict and isinstance(data, Mapping):
            if all(isinstance(key, str) for key in data):
                return {key: self.value(args[1], v, f"{path}.{key}") for key, v in data.items()}
        elif hint is bool:
            if isinstance(data, bool):
                return data
        elif hint is int:
            if isinstance(data, int) and not isinstance(data, bool):
                return data
        elif hint is float:
            if isinstance(data, int | float) and not isinstance(data, bool):
                return float(data)
        elif hint is str and isinstance(data, str):
            return data
        raise self.fail(path, f"must be {_expected(hint)}, not {_shown(data)}")


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) is typing.Union or isinstance(hint, types.UnionType)


def _expected(hint: Any) -> str:
    """A type hint in words, for error messages."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if _is_union(hint):
        return " or ".join(_expected(option) for option in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(arg) for arg in args)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "one of " + ", ".join(repr(member.value) for member in hint)
    if origin is tuple:
        return f"a list of {_plural(args[0])}"
    if origin is dict:
        return "an object"
    if dataclasses.is_dataclass(hint):
        return "an object"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, "null" if hint is type(None) else str(hint))


def _plural(hint: Any) -> str:
    words = {str: "strings", int: "integers", float: "numbers", bool: "booleans"}
    return words.get(hint, "objects")


def _shown(data: Any) -> str:
    text = repr(data)
    return text if len(text) <= 60 else text[:57] + "..."


class _FromJson:
    """``from_json``: the typed config from a parsed JSON document, checked."""

    @classmethod
    def from_json(cls: type[T], data: Any, *, source: str = "the config") -> T:
        """Raise ``ConfigError`` on a missing or mistyped field; ignore unknown fields with
        a note (the main process of a multi-process job writes it)."""
        decoder = _Decoder(source)
        config = decoder.record(cls, data, "")
        if decoder.ignored and os.environ.get("RANK", "0") == "0":
            print(
                f"note: {source}: ignoring field(s) {', '.join(decoder.ignored)} that this "
                "job script does not read (sent by a newer ci-runner?)",
                file=sys.stderr,
                flush=True,
            )
        return config


# --- train.py ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSource:
    """Where the training data comes from; ``columns`` maps TRL's name to the dataset's."""

    path: str
    config: str | None = None
    split: str = "train"
    eval_split: str | None = None
    eval_fraction: float | None = None
    columns: dict[str, str] = field(default_factory=dict)
    max_samples: int | None = None
    revision: str | None = None


@dataclass(frozen=True)
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] | str = "all-linear"
    quantize: Literal["4bit"] | None = None  # QLoRA: the base loads as bitsandbytes NF4


@dataclass(frozen=True)
class Launch:
    """How the runner started the script (``accelerate launch`` reads the same settings)."""

    processes: int = 1
    strategy: Literal["single", "ddp", "fsdp"] = "single"
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    nodes: int = 1


@dataclass(frozen=True)
class Tracking:
    project: str
    run_name: str
    space_id: str | None = None
    backend: Literal["trackio", "mlflow"] = "trackio"
    uri: str | None = None


@dataclass(frozen=True)
class RunConfig(_FromJson):
    """What ``train.py`` receives: one training run, fully resolved."""

    experiment: str
    run_id: str
    method: Method
    base_model: str
    dataset: DatasetSource
    output_dir: str
    tracking: Tracking
    schema_version: int = SCHEMA_VERSION
    base_model_revision: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)  # TRL's own fields
    lora: LoraSettings | None = None
    rewards: tuple[str, ...] = ()
    hub_model_id: str | None = None
    hub_private: bool = True
    merge_lora: bool = False
    seed: int = 42
    resume_from_checkpoint: str | None = None
    launch: Launch = Launch()


@dataclass(frozen=True)
class DataCheckConfig(_FromJson):
    """What ``check_data.py`` reads of the run config it receives: the dataset alone.

    Its other fields are not this job's business, so they pass without a note.
    """

    dataset: DatasetSource

    @classmethod
    def from_json(cls, data: Any, *, source: str = "the config") -> DataCheckConfig:
        return _Decoder(source).record(cls, data, "")


# --- evaluate.py, evaluate_many.py -------------------------------------------------------


@dataclass(frozen=True)
class BenchmarkSpec:
    """A ci-runner task (humaneval, gsm8k) or a lighteval task name; ``dataset`` points
    it at other rows in the same format."""

    benchmark: str
    fewshot: int = 0
    dataset: str | None = None
    max_samples: int | None = None


@dataclass(frozen=True)
class EvalConfig(_FromJson):
    """What ``evaluate.py`` receives: one model, several benchmarks."""

    experiment: str
    run_id: str
    eval_id: str
    model: str  # a local path or a Hub id (repo, or repo@revision)
    model_label: str
    benchmarks: tuple[BenchmarkSpec, ...]
    output_dir: str
    schema_version: int = SCHEMA_VERSION
    after_job: str | None = None  # local only: the training job to wait for
    base_model: str | None = None  # set when ``model`` is a LoRA adapter
    seed: int = 42
    max_new_tokens: int = 256
    inference_backend: Literal["accelerate", "vllm"] = "accelerate"
    allow_unisolated_code: bool = False
    quantize: Literal["4bit"] | None = None
    device_map: Literal["auto"] | None = None


@dataclass(frozen=True)
class EvalBatchConfig(_FromJson):
    """What ``evaluate_many.py`` receives: several evaluations for one process."""

    evaluations: tuple[EvalConfig, ...]
    schema_version: int = SCHEMA_VERSION


# --- export_gguf.py ----------------------------------------------------------------------


@dataclass(frozen=True)
class ExportConfig(_FromJson):
    """What ``export_gguf.py`` receives."""

    experiment: str
    run_id: str
    model: str  # a local path or a Hub id
    output_dir: str
    schema_version: int = SCHEMA_VERSION
    base_model: str | None = None  # set when ``model`` is a LoRA adapter to merge first
    quantizations: tuple[str, ...] = ("Q4_K_M",)
    hub_repo: str | None = None
    hub_private: bool = True
