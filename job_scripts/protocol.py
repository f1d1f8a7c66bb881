"""The job protocol: one run config in, one summary line out, both versioned.

Shared by both ends. Inside a job the scripts import it as a sibling module (it ships
with them); the runner imports it as ``ci_runner.job_scripts.protocol``. Standard library
only, so it loads before any of the job's dependencies (``quiet_libraries`` and ``merge_lora``,
for the jobs alone, import theirs when called).

In: the config is JSON, given as ``--config PATH_OR_JSON`` or ``$CI_RUNNER_RUN_CONFIG``,
read into the job's typed config (``job_config.py``) before the job starts.
Out: the script's last stdout line is ``CI_RUNNER_SUMMARY {json}`` (also written to
``<output_dir>/ci_runner_summary.json``); ``status`` is ``completed`` or ``failed``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

SCHEMA_VERSION = 1
RUN_CONFIG_ENV = "CI_RUNNER_RUN_CONFIG"
SUMMARY_PREFIX = "CI_RUNNER_SUMMARY "
SUMMARY_FILENAME = "ci_runner_summary.json"
COMPLETED, FAILED = "completed", "failed"
C = TypeVar("C")  # a job's typed config (``job_config.py``)


class ConfigError(ValueError):
    """A problem with the config or the data: the fix is in the message, not a traceback."""


# --- in ---------------------------------------------------------------------------


def read_config(argv: list[str] | None, *, description: str) -> tuple[dict[str, Any], str]:
    """The job's config document from ``--config`` or the env var (a path or inline JSON),
    with the name its errors call it by (the file's name, or "the run config").

    A document from another protocol version is refused here, before its fields are read:
    the typed configs (``job_config.py``) check those.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", help=f"JSON path or inline JSON (${RUN_CONFIG_ENV})")
    args = parser.parse_args(argv)
    source = args.config or os.environ.get(RUN_CONFIG_ENV)
    if not source:
        raise ConfigError(f"no config: pass --config run.json or set {RUN_CONFIG_ENV}")
    inline = source.lstrip().startswith("{")
    name = "the run config" if inline else Path(source).name
    try:
        config = json.loads(source if inline else Path(source).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the config: {exc}") from exc
    if not isinstance(config, dict):
        raise ConfigError(f"{name}: the config must be a JSON object")
    version = config.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise ConfigError(
            f"{name}: config schema_version {version} is not {SCHEMA_VERSION}: the runner and "
            "this job script come from different ci-runner versions"
        )
    return config, name


# --- out --------------------------------------------------------------------------


def failure(exc: BaseException, output_dir: str | None, **fields_: Any) -> dict[str, Any]:
    """The summary of a job that failed: what broke, in one line."""
    return {
        "status": FAILED,
        **fields_,
        "error_type": type(exc).__name__,
        "error": str(exc) or repr(exc),
        "output_dir": output_dir,
    }


def emit_summary(summary: Mapping[str, Any], output_dir: str | None) -> None:
    """Print the summary line last, and keep a copy beside the outputs."""
    data = {"schema_version": SCHEMA_VERSION, **summary}
    text = json.dumps(data, allow_nan=True)
    # Under accelerate launch / torchrun (which set RANK) rank 0 keeps the copy: several
    # processes that fail at once still print their lines, but write no file over each other.
    if output_dir and int(os.environ.get("RANK", "0")) == 0:
        try:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            Path(output_dir, SUMMARY_FILENAME).write_text(text + "\n", encoding="utf-8")
        except OSError as exc:  # the summary line below still reaches the runner
            print(f"warning: could not write {SUMMARY_FILENAME}: {exc}", file=sys.stderr)
    sys.stderr.flush()
    print(SUMMARY_PREFIX + text, flush=True)


def parse_summary(lines: Iterable[str]) -> dict[str, Any] | None:
    """The last summary line in a job's log, or None (crashed before printing one).

    A summary from a newer protocol is read as a failure that says so, never guessed at.
    """
    found = None
    for line in lines:
        text = line.strip()
        if text.startswith(SUMMARY_PREFIX):
            found = text[len(SUMMARY_PREFIX) :]
    if found is None:
        return None
    try:
        data = json.loads(found)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    version = data.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        return {
            "status": FAILED,
            "error_type": "ProtocolError",
            "error": f"the job's summary has schema_version {version}, this ci-runner reads "
            f"{SCHEMA_VERSION}: use one ci-runner version for submit and poll",
        }
    return data


# --- typed summaries (what the runner reads) -----------------------------------------


@dataclass(frozen=True)
class _Summary:
    status: str = FAILED
    error_type: str | None = None
    error: str | None = None
    output_dir: str | None = None
    # What ran: library versions, Python, and the accelerator ("cpu", "2 x NVIDIA H100").
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not read

    @property
    def completed(self) -> bool:
        return self.status == COMPLETED

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):  # noqa: ANN206 - returns cls
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known and k != "schema_version"}
        return cls(**values, extra=extra)


@dataclass(frozen=True)
class TrainSummary(_Summary):
    """train.py: losses, steps, speed, where the model went, what it did to the data."""

    method: str | None = None
    final_loss: float | None = None
    min_loss: float | None = None
    eval_loss: float | None = None
    steps: int | None = None
    max_steps: int | None = None
    runtime_s: float | None = None
    train_tokens: int | None = None
    train_tokens_per_s: float | None = None
    loss_history: list[list[float]] = field(default_factory=list)
    lora: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    series: dict[str, list[list[float]]] = field(default_factory=dict)  # the method's metrics
    nonfinite: dict[str, int] = field(default_factory=dict)  # metric → first non-finite step
    # The tracker's own record of the run, when it has one: MLflow's
    # {backend: "mlflow", run_id, experiment_id, uri}.
    tracking: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalSummary(_Summary):
    """evaluate.py: one model's scores on each benchmark."""

    model: str | None = None
    model_label: str | None = None
    scores: list[dict[str, Any]] = field(default_factory=list)
    sandbox: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportSummary(_Summary):
    """export_gguf.py: the GGUF files written (and pushed)."""

    files: list[dict[str, Any]] = field(default_factory=list)
    hub_repo: str | None = None
    hub_url: str | None = None
    warnings: list[str] = field(default_factory=list)


# --- what ran ----------------------------------------------------------------------------

REPORTED_PACKAGES = ("torch", "transformers", "trl", "peft", "datasets", "lighteval")


def environment() -> dict[str, str]:
    """The versions of the libraries that matter for a result, and the accelerator.

    Reads installed metadata only; torch is asked about GPUs only if the job imported it.
    """
    from importlib import metadata

    found = {"python": sys.version.split()[0]}
    for package in REPORTED_PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    found["accelerator"] = "cpu"
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            count = torch.cuda.device_count()
            found["accelerator"] = f"{count} x {torch.cuda.get_device_name(0)}"
    except Exception:  # noqa: BLE001 - a broken driver must not lose the summary
        found["accelerator"] = "unknown"
    return found


# --- quiet logs ----------------------------------------------------------------------


def quiet_libraries(
    *, verbosity: int = logging.WARNING, ignore_future: str = ".*gradient_checkpointing.*"
) -> None:
    """Keep job logs readable: no progress bars from the libraries, transformers' logging at
    ``verbosity``, and no ``FutureWarning`` whose message matches ``ignore_future`` ("" for
    all: TRL and peft still call the pre-5.23 gradient-checkpointing names, nothing to act on).

    For the jobs only; imports its libraries when called, ``datasets`` only where the job
    has it (the export job has not).
    """
    import importlib.util
    import warnings

    import transformers
    from huggingface_hub.utils import disable_progress_bars  # type: ignore[attr-defined]

    if importlib.util.find_spec("datasets") is not None:
        import datasets

        datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity(verbosity)
    disable_progress_bars()
    warnings.filterwarnings("ignore", message=ignore_future, category=FutureWarning)


def merge_lora(
    base: str | Path,
    adapter: str | Path,
    *,
    tokenizer: Any = None,
    adapter_revision: str | None = None,
    **base_kwargs: Any,
) -> Any:
    """The ``base`` model (loaded with ``base_kwargs``: revision, dtype, device map) with
    the LoRA ``adapter`` merged in: a plain transformers model.

    Given the ``tokenizer`` the adapter was trained with, the base's embeddings first grow
    to its length when it has more tokens (added in training). Imports its libraries when
    called, like ``quiet_libraries``.
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, **base_kwargs)
    rows = model.get_input_embeddings().weight.shape[0]
    if tokenizer is not None and len(tokenizer) > rows:
        model.resize_token_embeddings(len(tokenizer))
    return PeftModel.from_pretrained(model, adapter, revision=adapter_revision).merge_and_unload()


# --- the script's entry point --------------------------------------------------------


def run_job(
    job: Callable[[C], Mapping[str, Any] | None],
    argv: list[str] | None,
    *,
    parse: Callable[..., C],
    description: str,
    reported: Iterable[str] = (),
    expected: tuple[type[BaseException], ...] = (ConfigError,),
    on_failure: Callable[[BaseException, C | None], dict[str, Any]] | None = None,
) -> int:
    """Read the config, type it with ``parse`` (a ``from_json``), run the job, and always end
    with the summary line; the exit code.

    An ``expected`` error prints its message (the fix is in it); anything else its
    traceback. The failure summary repeats the document's ``reported`` keys (read from the
    JSON, so a config that failed its checks still says which job it was), plus what
    ``on_failure`` adds (given the typed config, None if it never got one; it may also
    clean up, e.g. close trackers).
    """
    document: dict[str, Any] = {}
    config: C | None = None
    try:
        document, name = read_config(argv, description=description)
        config = parse(document, source=name)
        summary = job(config)
    except Exception as exc:
        if isinstance(exc, expected):
            print(f"error: {exc}", file=sys.stderr)
        else:
            traceback.print_exc()
        extra = {key: document.get(key) for key in reported}
        if on_failure is not None:
            extra.update(on_failure(exc, config))
        extra["versions"] = environment()
        output_dir = document.get("output_dir")
        output_dir = output_dir if isinstance(output_dir, str) else None
        emit_summary(failure(exc, output_dir, **extra), output_dir)
        return 1
    if summary is not None:  # None: another process of a multi-process job reports
        emit_summary({**summary, "versions": environment()}, document["output_dir"])
    return 0


class TrainingNotCompleted(RuntimeError):
    """The training job a local evaluation waited for did not complete."""


def wait_for_job(job_dir: str, *, poll_s: float = 0.5) -> None:
    """Block until a local job has ended (its supervisor's ``exit.json``), or its process
    is gone without one; raise unless it exited 0. A local run's final model is evaluated
    by a job started with training: the libraries load while the model trains."""
    folder = Path(job_dir)
    exit_file = folder / "exit.json"
    while not exit_file.exists():
        try:
            os.kill(int((folder / "pid").read_text()), 0)
        except (OSError, ValueError):
            if exit_file.exists():
                break
            raise TrainingNotCompleted(
                f"training job {folder.name} is gone and recorded no exit code"
            ) from None
        time.sleep(poll_s)
    code = json.loads(exit_file.read_text(encoding="utf-8")).get("exit_code")
    if code != 0:
        raise TrainingNotCompleted(f"training job {folder.name} exited with code {code}")
