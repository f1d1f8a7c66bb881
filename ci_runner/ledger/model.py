"""The ledger: everything ci-runner knows about one experiment, as data.

The report is rendered from the ledger alone, so anything a reader should see
(timestamps, links, metrics) is recorded here once and never recomputed.
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from ci_runner.core.jobs import BackendName, FailureKind, JobKind, JobState, Phase, StrEnum

# What a ledger file's ``schema_version`` says about its JSON:
#   1: a run's record has no ``experiment`` (it is the ledger's), and its train → eval →
#      export step is ``stage``, with ``stage_jobs`` and ``stage_hardware``.
#   2: each run names its ``experiment``; that step is its ``phase``, with ``phase_jobs``
#      and ``phase_hardware`` (a pipeline's ``stage_index`` and ``stage_name`` stay).
# A ledger of an earlier version is read into the current shape and written back as it.
LEDGER_SCHEMA_VERSION = 2
# A run's keys as schema version 1 wrote them, by the key that holds them now.
RUN_KEYS_V1 = {"phase": "stage", "phase_jobs": "stage_jobs", "phase_hardware": "stage_hardware"}


class RunStatus(StrEnum):
    QUEUED = "queued"  # recorded, job not yet confirmed by the backend
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED)

    @property
    def label(self) -> str:
        return {
            RunStatus.QUEUED: "Queued",
            RunStatus.RUNNING: "In Progress",
            RunStatus.COMPLETED: "Completed",
            RunStatus.FAILED: "Failed",
            RunStatus.CANCELED: "Canceled",
        }[self]


class _Model(BaseModel):
    # A diverged run's last loss is NaN: JSON has none, and the null pydantic writes by
    # default would not load back as a float, so it is written as the string "NaN".
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")


class Attempt(_Model):
    """One submission of a run to a backend. Resumes add attempts."""

    number: int
    backend: BackendName
    job_id: str | None = None
    job_url: str | None = None
    submitted_at: str
    finished_at: str | None = None
    state: JobState = JobState.SCHEDULING
    exit_code: int | None = None
    message: str | None = None
    failure_kind: FailureKind | None = None
    resume_from: str | None = None  # the checkpoint this attempt started from
    cost_usd: float | None = None  # wall time × the flavor's price, once finished

    @property
    def wall_s(self) -> float | None:
        """Seconds from submit to finish: what the job is billed for. None until it has
        finished, or when a stamp cannot be read (or one has a time zone and the other not)."""
        from ci_runner.core.durations import parse_stamp

        if not self.submitted_at or not self.finished_at:
            return None
        try:
            start, end = parse_stamp(self.submitted_at), parse_stamp(self.finished_at)
        except ValueError:
            return None
        if (start.tzinfo is None) != (end.tzinfo is None):
            return None
        return max(0.0, (end - start).total_seconds())


class TrainMetrics(_Model):
    step: int | None = None
    max_steps: int | None = None
    final_loss: float | None = None
    min_loss: float | None = None
    eta_s: float | None = None  # while running, from the trainer's pace
    runtime_s: float | None = None
    train_tokens_per_s: float | None = None
    loss_curve: list[tuple[int, float]] = []
    progress_from: str | None = None  # trackio, logs or summary: where the numbers came from
    stale: bool = False  # the last poll could not refresh a running run's progress
    # The method's own metrics by TRL's log name (eval_loss, rewards/margins, reward,
    # rewards/<function>/mean, ...): finite values, thinned to ~200 points each
    # (``job_scripts/curves.py``). The last point is the latest value.
    series: dict[str, list[tuple[int, float]]] = {}
    nonfinite: dict[str, int] = {}  # metric → the first step it was NaN or infinite

    @model_serializer(mode="wrap")
    def _omit_unused_fields(self, handler: Any) -> Any:
        """Ledgers without these stay byte-identical to those written before they existed."""
        data = _omit_empty(handler(self), ("series", "nonfinite", "progress_from"))
        if data.get("stale") is False:
            data.pop("stale")
        return data

    def last(self, key: str) -> float | None:
        """The latest logged value of a series (the loss: ``final_loss``)."""
        points = self.series.get(key)
        return points[-1][1] if points else None


class PhaseJob(_Model):
    """A job after training: one evaluation of one model, or the GGUF export."""

    kind: JobKind
    key: str  # eval: "base", "final" or "checkpoint-<step>"; export: "gguf"
    model: str  # what it reads: a local path or a Hub id
    job_id: str | None = None
    job_url: str | None = None
    state: JobState = JobState.SCHEDULING
    submitted_at: str
    finished_at: str | None = None
    message: str | None = None
    # A base evaluation: what identifies its scores (the pinned base, the benchmark
    # settings, the lighteval version; ``flow.base_eval``), and the run whose job or scores
    # this one takes instead of evaluating the same base again.
    fingerprint: str | None = None
    reused_from: str | None = None
    # A trained model's evaluation started with training (local): the training attempt
    # whose job it waits for. A resumed attempt records the evaluation again.
    after_attempt: int | None = None

    @model_serializer(mode="wrap")
    def _omit_unused_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Ledgers without these stay byte-identical to those written before they existed."""
        return _omit_empty(handler(self), ("fingerprint", "reused_from", "after_attempt"))

    @property
    def done(self) -> bool:
        return self.job_id is not None and self.state.terminal


class ExportFile(_Model):
    name: str
    quantization: str
    bytes: int
    url: str | None = None


class Evaluation(_Model):
    """A benchmark score for one model (base, final or a checkpoint).

    ``samples`` are the per-sample values the score is the mean of, in doc order, so the
    report can put intervals on the score and on its change from the base model. Pass or
    fail outcomes are written as one string of 0s and 1s (HumanEval: 164 characters).
    """

    benchmark: str
    model_label: str = "final"
    model: str
    model_url: str | None = None
    score: float | None = None
    metric: str | None = None
    reused_from: str | None = None  # the run that evaluated this base (``PhaseJob.reused_from``)
    job_url: str | None = None
    status: RunStatus = RunStatus.QUEUED
    samples: list[float] = []
    # Generated code ran without isolation from its judge (the experiment's
    # evaluation.allow_unisolated_code): it could have forged this score.
    unisolated: bool = False

    @field_validator("samples", mode="before")
    @classmethod
    def _read_samples(cls, value: Any) -> Any:
        return [float(c) for c in value] if isinstance(value, str) else value

    @model_serializer(mode="wrap")
    def _compact_samples(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = _omit_empty(handler(self), ("samples",))
        if not data.get("unisolated"):
            data.pop("unisolated", None)
        values = data.get("samples")
        if values and all(v in (0.0, 1.0) for v in values):
            data["samples"] = "".join("1" if v else "0" for v in values)
        if data.get("reused_from") is None:
            data.pop("reused_from", None)
        return data


def _omit_empty(data: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    for key in keys:
        if data.get(key) in (None, [], {}):
            data.pop(key, None)
    return data


OPTIONAL_FIELDS = (
    "base_model_revision",
    "dataset_revision",
    "versions",
    "tracking_space",
    "warnings",
    "rewards",
    "dataset_columns",
    "eval_split",
    "tracking_backend",
    "tracking_uri",
    "tracking_run_id",
    "stage_index",
    "stage_name",
    "depends_on",
    "base_from",
    "matrix",
    "max_parallel",
    "replicate_of",
    "phase_hardware",
)


class Run(_Model):
    run_id: str
    experiment: str  # the experiment file's ``name:``, which the run id starts with
    title: str
    method: str
    spec_hash: str
    created_at: str
    status: RunStatus = RunStatus.QUEUED
    backend: BackendName
    hardware: str
    timeout: str | None = None
    usd_per_hour: float | None = None
    max_attempts: int = 1
    retry_on: list[FailureKind] = []
    base_model: str
    # What the inputs were pinned to at submit: a Hub commit sha, or ``sha256:…`` of a
    # local input's files (see ``flow.pins``); absent when they could not be pinned.
    base_model_revision: str | None = None
    dataset: str
    dataset_revision: str | None = None
    dataset_split: str
    eval_split: str | None = None  # where eval_loss comes from: a split, or "10% of train"
    dataset_columns: dict[str, str] = {}  # dataset.columns: TRL column → the dataset's
    rewards: list[str] = []  # GRPO reward functions as the file names them
    hyperparameters: dict[str, Any] = {}
    lora: dict[str, Any] | None = None
    output_dir: str
    hub_model_id: str | None = None
    hub_model_url: str | None = None
    tracking_project: str
    tracking_run: str
    tracking_url: str | None = None
    tracking_space: str | None = None  # the trackio Space the job logs to, if any
    # MLflow runs only (absent from trackio runs' JSON): ``tracking_project`` is then the
    # MLflow experiment, and the job's summary names the MLflow run (``tracking_run_id``).
    tracking_backend: str | None = None  # "mlflow"; None is trackio
    tracking_uri: str | None = None
    tracking_run_id: str | None = None
    attempts: list[Attempt] = []
    metrics: TrainMetrics | None = None
    phase: Phase = Phase.TRAIN  # train → eval → export → done
    evaluation: dict[str, Any] | None = None  # the experiment's evaluation settings
    export: dict[str, Any] | None = None  # the experiment's export settings
    phase_jobs: list[PhaseJob] = []
    evaluations: list[Evaluation] = []
    best_model: str | None = None  # the evaluated model that scored best on the first benchmark
    exports: list[ExportFile] = []
    model_card: str | None = None  # the card's commit URL once pushed, or why not
    error: str | None = None
    warnings: list[str] = []  # what the job noticed and handled (rows dropped for no content)
    versions: dict[str, str] = {}  # what the jobs ran: libraries, Python, accelerator
    # Runs from a file with `stages:` or `matrix:` (absent from other runs' JSON).
    stage_index: int | None = None  # 0-based position in the pipeline
    stage_name: str | None = None
    depends_on: str | None = None  # the run that must complete (evaluation included) first
    base_from: str | None = None  # the run whose trained model this one trains from
    matrix: dict[str, Any] | None = None  # the combination's values, by matrix key
    max_parallel: int | None = None  # set: the run waits its turn (see ``waiting``)
    replicate_of: str | None = None  # ``submit --rerun``: the run this one repeats, seed aside
    # How the plan sized each later job (HF Jobs), by its key ("base", "final", "gguf"):
    # {flavor, quantize, device_map, timeout_s}. Absent: the training flavor (older ledgers).
    phase_hardware: dict[str, dict[str, Any]] = {}

    @model_validator(mode="before")
    @classmethod
    def _read_version_1_keys(cls, data: Any) -> Any:
        """A run recorded by schema version 1, under the keys it has now."""
        if not isinstance(data, dict) or not any(old in data for old in RUN_KEYS_V1.values()):
            return data
        data = dict(data)
        for key, old in RUN_KEYS_V1.items():
            if old in data:
                value = data.pop(old)
                data.setdefault(key, value)
        return data

    @model_serializer(mode="wrap")
    def _omit_unused_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Ledgers without these stay byte-identical to those written before they existed."""
        return _omit_empty(handler(self), OPTIONAL_FIELDS)

    @property
    def active(self) -> bool:
        return not self.status.terminal

    @property
    def started(self) -> bool:
        """A job was submitted for the current attempt (or a later phase is under way)."""
        return bool(self.last_attempt and self.last_attempt.job_id)

    @property
    def waiting(self) -> bool:
        """Queued behind its dependency or ``max_parallel``: no job yet, poll starts it."""
        return (
            self.max_parallel is not None and self.status == RunStatus.QUEUED and not self.started
        )

    @property
    def last_attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def current_phase_jobs(self) -> list[PhaseJob]:
        """The evaluation or export jobs of the phase the run is in (none while training)."""
        return [j for j in self.phase_jobs if j.kind.value == self.phase.value]


class Ledger(_Model):
    schema_version: int = LEDGER_SCHEMA_VERSION
    experiment: str
    description: str | None = None  # the file's one line on what the experiment is
    spec_path: str
    report_path: str
    base_model: str
    base_model_url: str | None = None
    dataset: str
    dataset_url: str | None = None
    method: str
    runs: list[Run] = []

    @model_validator(mode="before")
    @classmethod
    def _read_earlier_versions(cls, data: Any) -> Any:
        """A ledger of an earlier schema version, in the current shape (written back so)."""
        if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
            return data
        name = data.get("experiment")  # one experiment's runs: a run without one is its
        runs = [{"experiment": name, **r} if isinstance(r, dict) else r for r in data["runs"]]
        return {**data, "schema_version": LEDGER_SCHEMA_VERSION, "runs": runs}

    @model_serializer(mode="wrap")
    def _omit_unused_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _omit_empty(handler(self), ("description",))

    def run(self, run_id: str) -> Run | None:
        return next((r for r in self.runs if r.run_id == run_id), None)

    @property
    def active_runs(self) -> list[Run]:
        return [r for r in self.runs if r.active]
