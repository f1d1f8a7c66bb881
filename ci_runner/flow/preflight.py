"""Everything checked before anything is paid for: inputs, data, plan, budget.

One result (``Preflight``) serves ``plan``, ``submit``, the action's summary and the PR's
plan comment, so all of them say the same thing about a file. A file without ``stages:``
or ``matrix:`` is simply a file of one run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ci_runner.backend.ray_cluster import ClusterShape, shape_of
from ci_runner.core.hub import hub_api, is_local_path, missing_path_hint, resolve_ref
from ci_runner.core.jobs import BackendName
from ci_runner.data.check import DataCheck, check_experiment_data, check_sample
from ci_runner.data.formats import Verdict
from ci_runner.data.sample import DatasetSample
from ci_runner.errors import (
    CiRunnerError,
    DatasetNotFoundError,
    DatasetViewerError,
    DataSourceError,
    ExitCode,
    NotReadyError,
    OverBudgetError,
    SpecError,
    SpecIssue,
)
from ci_runner.flow.workspace import Workspace
from ci_runner.plan.estimate import Plan, make_plan, prices_from_hardware
from ci_runner.plan.model_size import SizeProblem, model_size, why_unsized
from ci_runner.plan.total import FilePlan, RunPlan
from ci_runner.runconfig import DatasetSource
from ci_runner.spec.expand import RunSpec, expand, max_parallel
from ci_runner.spec.model import Experiment
from ci_runner.spec.references import ROOTS_ENV, allowed_roots, escapes

CHECK_SCRIPT = "check_data.py"


# --- inputs -------------------------------------------------------------------------


def check_inputs(experiment: Experiment) -> None:
    """What a run needs beyond its file: the training stack, for the local backend."""
    if experiment.backend == BackendName.LOCAL.value and not _has_training_stack():
        raise NotReadyError(
            "the local backend runs train.py with this Python, which lacks TRL; install "
            "the train extra: pip install 'ci-runner[train]' (in a ci-runner checkout: "
            "pip install -e '.[train]'; in the GitHub Action: the input `extras: train`)"
        )


def _has_training_stack() -> bool:
    import importlib.util

    return importlib.util.find_spec("trl") is not None


# --- data ---------------------------------------------------------------------------


def check_data(
    ws: Workspace, experiment: Experiment, *, remote: bool = False, revision: str | None = None
) -> DataCheck:
    """The experiment's dataset, sampled and judged for its method (``check-data FILE``).

    The sample is read at ``revision`` (submit passes the commit it pins, when that is not
    the newest), else at the revision the file names, else the newest.
    """
    ds = experiment.dataset
    assert ds is not None  # the loader requires a dataset of every run
    revision = revision or ds.revision
    sample = None
    if remote:
        sample = remote_sample(ws, ds.path, config=ds.config, split=ds.split, revision=revision)
    return check_experiment_data(experiment, root=ws.root, sample=sample, revision=revision)


def remote_sample(
    ws: Workspace, path: str, *, config: str | None, split: str, revision: str | None = None
) -> DatasetSample:
    """A dataset's sample, read by a CPU job on HF Jobs (``check-data --remote``)."""
    from ci_runner.data.remote import fetch_remote_sample

    source = DatasetSource(path=path, config=config, split=split, revision=revision)
    script = ws.project.job_script(CHECK_SCRIPT).path
    return fetch_remote_sample(ws.backend(BackendName.HF_JOBS), source, script=script)


def check_source(
    ws: Workspace, path: str, *, config: str | None, split: str, remote: bool = False
) -> DataCheck:
    """A dataset on its own, judged for every method (``check-data --dataset``).

    A path that exists in the project is read from disk, however it is spelled.
    """
    from ci_runner.data.sources import read_sample

    ref = resolve_ref(path, ws.root)
    if ref.local and not ref.exists:
        raise DatasetNotFoundError(
            f"--dataset {path}: not in this project and not a Hub id; {missing_path_hint(ref.path)}"
        )
    outside = escapes(ref.path, allowed_roots(ws.root)) if ref.local else None
    if outside is not None:
        raise DataSourceError(
            f"--dataset {path}: reads {outside}, which is outside the project; copy the "
            f"data into the project or allow its folder with {ROOTS_ENV}"
        )
    if remote:
        sample = remote_sample(ws, ref.value, config=config, split=split)
    else:
        sample = read_sample(ref.value, root=ws.root, config=config, split=split)
    return check_sample(sample, None)


@dataclass
class DataChecks:
    """Each run's data check, done once per distinct dataset, method and tokenizer."""

    by_run: dict[str, DataCheck | None] = field(default_factory=dict)
    distinct: list[tuple[RunSpec, DataCheck]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # an unreachable viewer only warns

    @property
    def checks(self) -> list[DataCheck]:
        return [check for _, check in self.distinct]

    @property
    def misfits(self) -> list[DataCheck]:
        return [check for check in self.checks if check.verdict != Verdict.READY]

    def run_warnings(self) -> list[str]:
        """Length and content warnings a submit passes on."""
        out = []
        for spec, check in self.distinct:
            if check.lengths and check.lengths.warning:
                out.append(check.lengths.warning)
            method_check = check.for_method(spec.experiment.method)
            out += list(method_check.warnings) if method_check else []
        return out


def check_runs_data(
    ws: Workspace,
    runs: list[RunSpec],
    *,
    remote: bool = False,
    strict: bool = False,
    revisions: Mapping[str, str | None] | None = None,
) -> DataChecks:
    """``strict``: an unreachable dataset viewer is an error (exit 6), not a warning.
    ``revisions``: per run id, the dataset revision to sample (what submit pins)."""
    revisions = revisions or {}
    result = DataChecks()
    done: dict[str, DataCheck | None] = {}
    for spec in runs:
        e = spec.experiment
        assert e.dataset is not None  # the loader requires a dataset of every run
        key = json.dumps(
            [
                e.base_model,
                e.method,
                e.dataset.model_dump(mode="json"),
                e.rewards,
                e.hyperparameters.get("max_length"),
                revisions.get(spec.run_id),
            ],
            sort_keys=True,
            default=str,
        )
        if key not in done:
            try:
                revision = revisions.get(spec.run_id)
                done[key] = check = check_data(ws, e, remote=remote, revision=revision)
                result.distinct.append((spec, check))
            except DatasetViewerError as exc:
                if strict:
                    raise
                done[key] = None
                result.warnings.append(f"dataset not checked: {exc}")
        result.by_run[spec.run_id] = done[key]
    result.warnings = list(dict.fromkeys(result.warnings))
    return result


# --- plan ---------------------------------------------------------------------------


def plan_run(
    ws: Workspace,
    experiment: Experiment,
    data: DataCheck | None = None,
    *,
    cache: dict[Any, Any] | None = None,
) -> Plan:
    """Size the model (local files, or Hub metadata when reachable) and plan the run.

    With a data check, the plan uses the measured example count and mean length instead
    of assumptions. ``cache`` keeps sizes and prices across a file's runs.
    """
    cache = {} if cache is None else cache
    api = None if is_local_path(experiment.base_model) else hub_api()
    key = ("size", experiment.base_model)
    if key not in cache:
        cache[key] = model_size(experiment.base_model, root=ws.root, api=api)
    prices = None
    if experiment.backend == BackendName.HF_JOBS.value and api is not None and api.token:
        if "prices" not in cache:
            cache["prices"] = prices_from_hardware(api)
        prices = cache["prices"]
    cluster = None
    if experiment.backend == BackendName.RAY.value:
        if "ray_cluster" not in cache:
            cache["ray_cluster"] = ray_cluster(ws, experiment)
        cluster = cache["ray_cluster"]
    return make_plan(
        experiment,
        size=cache[key],
        dataset_rows=data.sample.num_rows if data else None,
        mean_seq_len=data.lengths.mean if data and data.lengths else None,
        prices=prices,
        cluster=cluster,
    )


def ray_cluster(ws: Workspace, experiment: Experiment) -> ClusterShape | None:
    """The Ray cluster's nodes, when the file leaves them out and the cluster answers;
    the plan says what it could not read."""
    spec = experiment.ray
    if spec is not None and spec.gpus_per_node is not None:
        return None
    from ci_runner.backend.ray_jobs import RayAuthError, RayJobsBackend

    try:
        backend = ws.backend(BackendName.RAY)
        assert isinstance(backend, RayJobsBackend)
        return shape_of(backend.nodes())
    except RayAuthError:
        raise  # a wrong or missing token fails now, not after a plan without hardware
    except CiRunnerError:
        return None


def plan_runs(
    ws: Workspace,
    experiment: Experiment,
    runs: list[RunSpec],
    data: Mapping[str, DataCheck | None] | None = None,
) -> FilePlan:
    """Every run planned (a later stage is sized on the model it descends from, which has
    the same size), and the total the budget applies to."""
    cache: dict[Any, Any] = {}
    plans = [
        RunPlan(
            spec.run_id,
            spec.title,
            plan_run(ws, spec.experiment, (data or {}).get(spec.run_id), cache=cache),
        )
        for spec in runs
    ]
    budget = experiment.budget.max_cost_usd if experiment.budget else None
    return FilePlan(experiment.name, plans, budget, max_parallel(experiment))


def sizing_problems(ws: Workspace, plan: FilePlan, runs: list[RunSpec]) -> list[SizeProblem]:
    """Why each model that could not be sized was not, for the runs that cannot go ahead
    without its size: no hardware set by hand, or a repo that the job could not read either
    (gated, missing, a revision that is not there)."""
    experiments = {spec.run_id: spec.experiment for spec in runs}
    found: dict[str, SizeProblem] = {}
    for run in plan.runs:
        experiment = experiments[run.run_id]
        ref = experiment.base_model
        if run.plan.params is not None or ref in found:
            continue
        api = None if is_local_path(ref) else hub_api(ws.hf_token())
        problem = why_unsized(ref, root=ws.root, api=api, revision=experiment.base_model_revision)
        if run.plan.flavor is None or not problem.hardware_helps:
            found[ref] = problem
    return list(found.values())


def require_plannable(
    plan: FilePlan,
    runs: list[RunSpec],
    file: str,
    *,
    allow_over_budget: bool,
    unsized: Sequence[SizeProblem] = (),
) -> None:
    """Refuse what cannot run, or costs more than the file allows, before anything starts."""
    if unsized:
        raise NotReadyError("\n".join(problem.message(file) for problem in unsized))
    for run in plan.runs:
        if run.plan.flavor is None and run.plan.backend == BackendName.RAY.value:
            raise NotReadyError(
                "the Ray cluster's nodes are unknown (not reachable, or its GPU type is not "
                "known): set RAY_ADDRESS (and RAY_AUTH_TOKEN) to reach it, or `ray.gpus_per_node` "
                "and `ray.gpu` in the experiment file"
            )
        if run.plan.flavor is None:
            raise NotReadyError(
                f"{file}: cannot size {run.plan.base_model}, so no hardware can be chosen\n"
                "  hint: set `hardware:` to a flavor in the experiment file"
            )
    if plan.over_budget and not allow_over_budget:
        if len(plan.runs) == 1:
            (only,) = plan.runs
            raise OverBudgetError(
                f"the plan costs ~${only.plan.est_cost_usd:.2f}, over budget.max_cost_usd "
                f"${plan.budget_usd:.2f}: lower max_steps/max_samples, raise the budget, "
                "or pass --allow-over-budget"
            )
        raise OverBudgetError(
            f"the {len(plan.runs)} runs cost ~${plan.total_cost_usd:.2f} together, over "
            f"budget.max_cost_usd ${plan.budget_usd:.2f}: shrink the matrix, lower "
            "max_steps/max_samples, raise the budget, or pass --allow-over-budget"
        )
    _check_hub_chain(runs, plan, file)


def _check_hub_chain(runs: list[RunSpec], plan: FilePlan, file: str) -> None:
    """On HF Jobs a stage trains from the previous stage's Hub repo, which for a LoRA stage
    holds the adapter beside the merged weights, and transformers would load the adapter
    on its base rather than the merged model. Refuse that rather than train on it."""
    feeds = {spec.base_from for spec in runs if spec.base_from}
    for run in plan.runs:
        if run.run_id in feeds and run.plan.backend == BackendName.HF_JOBS and run.plan.lora_on:
            raise SpecError(
                [
                    SpecIssue(
                        file,
                        None,
                        "stages",
                        f"{run.title}: on hf-jobs a later stage cannot yet train from a LoRA "
                        "stage's Hub repo",
                        "set `lora: off` on that stage, or give the next stage its own "
                        "`base_model` (locally, the merged model is used)",
                    )
                ]
            )


# --- the whole preflight ----------------------------------------------------------------


@dataclass
class Preflight:
    """What ``plan`` shows and ``submit`` checks: the file's runs, data and plans."""

    file: Path
    experiment: Experiment
    runs: list[RunSpec]
    data: DataChecks
    plan: FilePlan
    warnings: list[str]
    unsized: list[SizeProblem] = field(default_factory=list)  # plan and submit exit 4

    @property
    def multi_run(self) -> bool:
        return self.experiment.is_multi_run

    def require_fit(self) -> None:
        """Stop before paying for a run whose data cannot train (exit 7, with the mapping)."""
        for check in self.data.misfits:
            check.require_fit(str(self.file))

    @property
    def exit_code(self) -> int:
        """``plan``'s exit code: 7 when the data does not fit, 4 for a model that cannot be
        sized, then 5 over budget."""
        if self.data.misfits:
            return ExitCode.DATA
        if self.unsized:
            return ExitCode.NOT_READY
        if self.plan.over_budget:
            return ExitCode.OVER_BUDGET
        return ExitCode.OK


def preflight(
    ws: Workspace,
    file: Path,
    *,
    backend: str | None = None,
    check_data: bool = True,
    remote: bool = False,
) -> Preflight:
    """Load, check the data (once per distinct dataset), plan every run. Raises only for a
    file that cannot be read or data that cannot be read; verdicts and budgets are left for
    the caller to judge (``plan`` shows them, ``submit`` refuses on them)."""
    warnings: list[str] = []
    experiment = ws.load(file, backend=backend, warnings=warnings)
    runs = expand(experiment)
    data = check_runs_data(ws, runs, remote=remote) if check_data else DataChecks()
    plan = plan_runs(ws, experiment, runs, data.by_run)
    problems = sizing_problems(ws, plan, runs)
    unsized = [p for p in problems if not p.offline]
    warnings += [
        f"{p.reason}: hardware, memory and time not planned" for p in problems if p.offline
    ]
    return Preflight(file, experiment, runs, data, plan, [*warnings, *data.warnings], unsized)
