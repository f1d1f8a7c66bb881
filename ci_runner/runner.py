"""The edges that tie the pure core to disk and backends: submit, poll, report.

Every step records its intent in the ledger before acting and labels every job
with its run id, so a crash anywhere is repaired by the next ``submit`` or
``poll``: a job that started but was never recorded is found and adopted, never
started twice.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ci_runner.backend.base import Backend, JobHandle, JobRequest, JobStatus, JobSummary
from ci_runner.backend.hf_jobs import label_value
from ci_runner.backend.local import LocalBackend, utc_now
from ci_runner.core.hub import missing_path_hint, resolve_ref
from ci_runner.data.check import DataCheck, check_experiment_data
from ci_runner.errors import (
    BackendError,
    DatasetNotFoundError,
    DatasetViewerError,
    NotReadyError,
    OverBudgetError,
    SpecError,
    SpecIssue,
)
from ci_runner.ledger.advance import apply_job_status
from ci_runner.ledger.model import Attempt, Ledger, Run, RunStatus, StageJob
from ci_runner.ledger.retry import next_attempt, should_resume
from ci_runner.ledger.stages import (
    apply_stage_status,
    close_stage,
    enter_next_stage,
    eval_jobs,
    export_job,
    stage_finished,
)
from ci_runner.ledger.store import load_ledger, save_ledger, write_atomic
from ci_runner.paths import LEDGER_SUFFIX, Project, report_stem
from ci_runner.plan.estimate import Plan, make_plan, prices_from_hardware
from ci_runner.plan.model_size import model_size
from ci_runner.plan.resolve import ResolvedRun, resolve_run
from ci_runner.plan.total import FilePlan, RunPlan
from ci_runner.progress import parse_progress
from ci_runner.report.figures import figures
from ci_runner.report.plot import render_svg, unchanged
from ci_runner.report.render import render_report
from ci_runner.runconfig import BenchmarkSpec, DatasetSource, EvalConfig, ExportConfig
from ci_runner.spec.expand import RunSpec, expand, max_parallel
from ci_runner.spec.load import load_experiment
from ci_runner.spec.model import Experiment, is_local_path

HUB = "https://huggingface.co"
TRAIN_SCRIPT = "train.py"
EVAL_SCRIPT = "evaluate.py"
EXPORT_SCRIPT = "export_gguf.py"
LOG_FETCH_WORKERS = 8


def hub_url(ref: str, kind: str = "model") -> str | None:
    if is_local_path(ref):
        return None
    return f"{HUB}/datasets/{ref}" if kind == "dataset" else f"{HUB}/{ref}"


def eval_split(experiment: Experiment) -> str | None:
    """Where the run's eval loss comes from, as the report says it."""
    ds = experiment.dataset
    if ds.eval_split:
        return f"split {ds.eval_split}"
    return f"{ds.eval_fraction * 100:g}% of {ds.split}" if ds.eval_fraction else None


def trackio_url(space: str | None, project: str, run: str) -> str | None:
    if not space:
        return None
    return f"{HUB}/spaces/{space}?project={project}&runs={run}&metrics=train/loss"


def format_timeout(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return "".join(parts)


def run_timeout(experiment: Experiment, plan: Plan) -> int | None:
    """The file's timeout, else the plan's recommendation (HF's own default kills most runs)."""
    if experiment.timeout or experiment.backend == "local":
        return experiment.timeout
    return plan.recommended_timeout_s


def check_plan(plan: Plan, *, allow_over_budget: bool) -> None:
    """Refuse what cannot run, or costs more than the file allows, before anything starts."""
    if plan.flavor is None:
        raise NotReadyError(
            f"cannot size {plan.base_model} (offline, or no safetensors metadata), so no hardware "
            "can be chosen: set `hardware:` to a flavor in the experiment file"
        )
    if plan.over_budget and not allow_over_budget:
        raise OverBudgetError(
            f"the plan costs ~${plan.est_cost_usd:.2f}, over budget.max_cost_usd "
            f"${plan.budget_usd:.2f}: lower max_steps/max_samples, raise the budget, "
            "or pass --allow-over-budget"
        )


def _hub_api():
    from huggingface_hub import HfApi

    return HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None)


def run_labels(run: Run | ResolvedRun, experiment: str, attempt: int) -> dict[str, str]:
    return {
        "ci-runner.experiment": experiment,
        "ci-runner.run": run.run_id,
        "ci-runner.attempt": str(attempt),
    }


def check_file_plan(plan: FilePlan, *, allow_over_budget: bool) -> None:
    """A file's runs: each must be plannable, and their total within the budget."""
    for run in plan.runs:
        check_plan(run.plan, allow_over_budget=True)
    if plan.over_budget and not allow_over_budget:
        raise OverBudgetError(
            f"the {len(plan.runs)} runs cost ~${plan.total_cost_usd:.2f} together, over "
            f"budget.max_cost_usd ${plan.budget_usd:.2f}: shrink the matrix, lower "
            "max_steps/max_samples, raise the budget, or pass --allow-over-budget"
        )


def methods_of(runs: list[RunSpec]) -> list[str]:
    """The methods a file's runs use, in order, once each."""
    return list(dict.fromkeys(spec.experiment.method for spec in runs))


def trained_model(run: Run) -> str:
    """What a later stage trains from: the run's model on disk, or its Hub repo.

    A LoRA stage followed by another saves its adapter merged into its base
    (``output.merge``, implied), so the next stage loads a full model.
    """
    if run.backend != "local":
        return run.hub_model_id or run.output_dir
    path = run.output_dir if is_local_path(run.output_dir) else f"./{run.output_dir}"
    return f"{path}/merged" if run.lora else path


@dataclass(frozen=True)
class RunOutcome:
    """One run of a multi-run file, after submit."""

    run_id: str
    title: str
    status: str  # submitted | already submitted | waiting | not started
    job_id: str | None = None
    job_url: str | None = None
    waiting_for: str | None = None  # the run it depends on, or "max_parallel"


@dataclass(frozen=True)
class SubmitOutcome:
    run_id: str
    job_id: str
    job_url: str
    created: bool  # False: the run already had a job, nothing was submitted
    report: Path
    plan: Plan | None  # None when nothing was submitted
    warnings: list[str] = field(default_factory=list)
    # A file with `stages:` or `matrix:`: every run, and the plan of them all.
    runs: list[RunOutcome] = field(default_factory=list)
    file_plan: FilePlan | None = None


@dataclass
class PollOutcome:
    runs: list[Run] = field(default_factory=list)  # the runs looked at, as they are now
    changed: list[Path] = field(default_factory=list)  # files written


class Runner:
    def __init__(
        self,
        project: Project,
        *,
        backends: Mapping[str, Backend] | None = None,
        now: Callable[[], str] = utc_now,
    ) -> None:
        self.project = project
        self._backends = dict(backends or {})
        self.now = now

    # -- backends ---------------------------------------------------------------

    def backend(self, name: str) -> Backend:
        if name not in self._backends:
            if name == "local":
                env = {"TRACKIO_DIR": str(self.project.trackio_dir)}
                self._backends[name] = LocalBackend(
                    self.project.jobs_dir, cwd=self.project.root, env=env
                )
            elif name == "hf-jobs":
                from ci_runner.backend.hf_jobs import from_environment

                self._backends[name] = from_environment(self.project.root)
            else:
                raise BackendError(f"unknown backend {name!r}; use local or hf-jobs")
        return self._backends[name]

    # -- submit -----------------------------------------------------------------

    def load(
        self,
        spec_path: Path | str,
        *,
        backend: str | None = None,
        warnings: list[str] | None = None,
    ) -> Experiment:
        """An experiment file, checked against this project (paths, reward code)."""
        found: list = []
        experiment = load_experiment(
            spec_path,
            {"backend": backend} if backend else None,
            root=self.project.root,
            warnings=found,
        )
        if warnings is not None:
            warnings += [str(w) for w in found]
        return experiment

    def check_inputs(self, experiment: Experiment) -> None:
        """Local model and data must exist before anything starts."""
        for what, ref in (
            ("base_model", experiment.base_model),
            ("dataset.path", experiment.dataset.path),
        ):
            if is_local_path(ref) and not (self.project.root / ref).expanduser().exists():
                hint = (
                    "build the offline demo fixtures with `ci-runner fixtures`"
                    if "fixtures" in ref
                    else "fix the path (relative paths start at the project root)"
                )
                raise NotReadyError(f"{what}: {ref} does not exist; {hint}")
        for reward in experiment.rewards:
            if ":" in reward and not (self.project.root / reward.split(":")[0]).exists():
                raise NotReadyError(f"rewards: {reward.split(':')[0]} does not exist")
        if experiment.backend == "local" and not _has_training_stack():
            raise NotReadyError(
                "the local backend runs train.py with this Python, which lacks TRL; "
                "install the train extra: pip install -e '.[train]'"
            )

    def _stem(self, experiment: Experiment) -> str:
        """``<model>-<dataset>-<method>``, unless another experiment already owns it."""
        stem = report_stem(experiment.base_model, experiment.dataset.path, experiment.method)
        existing = load_ledger(self.project.ledger_path(stem))
        if existing is not None and existing.experiment != experiment.name:
            stem = f"{stem}-{experiment.name}"
        return stem

    def plan(
        self, experiment: Experiment, data: DataCheck | None = None, *, cache: dict | None = None
    ) -> Plan:
        """Size the model (local files, or Hub metadata when reachable) and plan the run.

        With a data check, the plan uses the measured example count and mean length
        instead of assumptions. ``cache`` keeps sizes and prices across a file's runs.
        """
        cache = {} if cache is None else cache
        api = None if is_local_path(experiment.base_model) else _hub_api()
        key = ("size", experiment.base_model)
        if key not in cache:
            cache[key] = model_size(experiment.base_model, root=self.project.root, api=api)
        size = cache[key]
        prices = None
        if experiment.backend == "hf-jobs" and api is not None and api.token:
            if "prices" not in cache:
                cache["prices"] = prices_from_hardware(api)
            prices = cache["prices"]
        return make_plan(
            experiment,
            size=size,
            dataset_rows=data.sample.num_rows if data else None,
            mean_seq_len=data.lengths.mean if data and data.lengths else None,
            prices=prices,
        )

    def check_data(self, experiment: Experiment, *, remote: bool = False) -> DataCheck:
        sample = None
        if remote:
            from ci_runner.data.remote import fetch_remote_sample

            ds = experiment.dataset
            source = DatasetSource(path=ds.path, config=ds.config, split=ds.split)
            sample = fetch_remote_sample(
                self.backend("hf-jobs"),
                source,
                script=self.project.job_script("check_data.py").path,
            )
        return check_experiment_data(experiment, root=self.project.root, sample=sample)

    def check_source(
        self, path: str, *, config: str | None, split: str, remote: bool = False
    ) -> DataCheck:
        """A dataset on its own, judged for every method (``check-data --dataset``).

        A path that exists in the project is read from disk, however it is spelled.
        """
        from ci_runner.data.check import check_sample
        from ci_runner.data.sources import read_sample

        ref = resolve_ref(path, self.project.root)
        if ref.local and not ref.exists:
            raise DatasetNotFoundError(
                f"--dataset {path}: not in this project and not a Hub id; "
                f"{missing_path_hint(ref.path)}"
            )
        path = ref.value
        if remote:
            from ci_runner.data.remote import fetch_remote_sample

            source = DatasetSource(path=path, config=config, split=split)
            sample = fetch_remote_sample(
                self.backend("hf-jobs"),
                source,
                script=self.project.job_script("check_data.py").path,
            )
        else:
            sample = read_sample(path, root=self.project.root, config=config, split=split)
        return check_sample(sample, None)

    def preflight(
        self, experiment: Experiment, spec_path: Path
    ) -> tuple[DataCheck | None, list[str]]:
        """The data check that guards submit: a misfit stops it, an unreachable viewer warns."""
        try:
            data = self.check_data(experiment)
        except DatasetViewerError as exc:
            return None, [f"dataset not checked: {exc}"]
        data.require_fit(str(spec_path))
        warnings = [data.lengths.warning] if data.lengths and data.lengths.warning else []
        check = data.for_method(experiment.method)
        warnings += list(check.warnings) if check else []
        return data, warnings

    def resolve(
        self, experiment: Experiment, plan: Plan | None = None, *, run_id: str | None = None
    ) -> ResolvedRun:
        run_id = run_id or expand(experiment)[0].run_id
        if experiment.backend == "local":
            output_dir = self.project.relative(self.project.runs_dir / run_id / "output")
        else:  # inside the job's container; what matters is pushed to the Hub
            output_dir = f"/tmp/ci-runner/{run_id}/output"
        return resolve_run(
            experiment, output_dir=output_dir, plan=plan or self.plan(experiment), run_id=run_id
        )

    # -- files with several runs (`matrix:`, `stages:`) -------------------------

    def check_runs_data(
        self, runs: list[RunSpec]
    ) -> tuple[dict[str, DataCheck | None], list[tuple[RunSpec, DataCheck]], list[str]]:
        """Each run's data check, done once per distinct dataset, method and tokenizer.

        Returns the check by run id, the distinct checks (with a run each applies to)
        and warnings (an unreachable dataset viewer only warns, as for one run).
        """
        by_run: dict[str, DataCheck | None] = {}
        done: dict[str, DataCheck | None] = {}
        distinct: list[tuple[RunSpec, DataCheck]] = []
        warnings: list[str] = []
        for spec in runs:
            e = spec.experiment
            key = json.dumps(
                [
                    e.base_model,
                    e.method,
                    e.dataset.model_dump(mode="json"),
                    e.rewards,
                    e.hyperparameters.get("max_length"),
                ],
                sort_keys=True,
                default=str,
            )
            if key not in done:
                try:
                    done[key] = self.check_data(e)
                    distinct.append((spec, done[key]))
                except DatasetViewerError as exc:
                    done[key] = None
                    warnings.append(f"dataset not checked: {exc}")
            by_run[spec.run_id] = done[key]
        return by_run, distinct, list(dict.fromkeys(warnings))

    def plan_file(
        self,
        experiment: Experiment,
        runs: list[RunSpec] | None = None,
        data: Mapping[str, DataCheck | None] | None = None,
    ) -> FilePlan:
        """Every run planned (a later stage is sized on the model it descends from,
        which has the same size), and the total the budget applies to."""
        runs = runs if runs is not None else expand(experiment)
        cache: dict = {}
        plans = [
            RunPlan(
                spec.run_id,
                spec.title,
                self.plan(spec.experiment, (data or {}).get(spec.run_id), cache=cache),
            )
            for spec in runs
        ]
        budget = experiment.budget.max_cost_usd if experiment.budget else None
        return FilePlan(experiment.name, plans, budget, max_parallel(experiment))

    def submit(
        self,
        spec_path: Path,
        *,
        backend: str | None = None,
        allow_over_budget: bool = False,
        check_data: bool = True,
    ) -> SubmitOutcome:
        load_warnings: list[str] = []
        experiment = self.load(spec_path, backend=backend, warnings=load_warnings)
        if experiment.is_multi_run:
            outcome = self._submit_file(
                experiment, spec_path, allow_over_budget=allow_over_budget, check_data=check_data
            )
            return dataclasses.replace(outcome, warnings=[*load_warnings, *outcome.warnings])
        self.check_inputs(experiment)
        stem = self._stem(experiment)
        ledger_path = self.project.ledger_path(stem)
        ledger = load_ledger(ledger_path) or self._new_ledger(experiment, spec_path, stem)
        run = ledger.run(expand(experiment)[0].run_id)
        retry = run is not None and run.status in (RunStatus.FAILED, RunStatus.CANCELED)
        if run is not None and not retry and run.last_attempt and run.last_attempt.job_id:
            attempt = run.last_attempt
            return SubmitOutcome(
                run.run_id,
                attempt.job_id,
                attempt.job_url or "",
                False,
                self.project.report_path(stem),
                None,
            )
        data, warnings = self.preflight(experiment, spec_path) if check_data else (None, [])
        plan = self.plan(experiment, data)
        check_plan(plan, allow_over_budget=allow_over_budget)
        resolved = self.resolve(experiment, plan)
        backend = self.backend(experiment.backend)
        if run is None:
            run = self._new_run(experiment, resolved, backend.name)
            ledger = ledger.model_copy(update={"runs": [*ledger.runs, run]})
        elif retry:  # a failed or canceled run: resubmitting resumes it
            run = self._new_attempt(run)
            ledger = _replace_run(ledger, run)
        save_ledger(ledger_path, ledger)  # intent first: a crash after this is recoverable
        handle = self._launch(backend, experiment, resolved, run)
        run = _with_job(run, handle)
        ledger = _replace_run(ledger, run)
        save_ledger(ledger_path, ledger)
        self.write_report(stem, ledger)
        return SubmitOutcome(
            run.run_id,
            handle.job_id,
            handle.url,
            True,
            self.project.report_path(stem),
            plan,
            [*load_warnings, *warnings],
        )

    def _submit_file(
        self, experiment: Experiment, spec_path: Path, *, allow_over_budget: bool, check_data: bool
    ) -> SubmitOutcome:
        """Record every run of the file; start those whose turn it is.

        Runs already recorded are left alone (so resubmitting starts nothing), failed
        or canceled ones are queued again, and a run waits, with no job, while the stage
        before it is unfinished or ``max_parallel`` jobs are running; ``poll`` starts it.
        """
        runs = expand(experiment)
        for spec in runs:
            self.check_inputs(spec.experiment)
        stem = self._file_stem(experiment, spec_path, runs)
        ledger_path = self.project.ledger_path(stem)
        ledger = load_ledger(ledger_path) or self._new_file_ledger(
            experiment, spec_path, stem, runs
        )
        todo = [spec for spec in runs if _needs_submit(ledger.run(spec.run_id))]
        warnings: list[str] = []
        file_plan = None
        if todo:
            data: dict[str, DataCheck | None] = {}
            if check_data:
                data, distinct, warnings = self.check_runs_data(runs)
                for spec, check in distinct:
                    check.require_fit(str(spec_path))
                    if check.lengths and check.lengths.warning:
                        warnings.append(check.lengths.warning)
                    method_check = check.for_method(spec.experiment.method)
                    warnings += list(method_check.warnings) if method_check else []
            file_plan = self.plan_file(experiment, runs, data)
            check_file_plan(file_plan, allow_over_budget=allow_over_budget)
            _check_hub_chain(runs, file_plan, str(spec_path))
            plans = {r.run_id: r.plan for r in file_plan.runs}
            for spec in todo:
                run = ledger.run(spec.run_id)
                if run is None:
                    resolved = self.resolve(spec.experiment, plans[spec.run_id], run_id=spec.run_id)
                    run = self._new_run(
                        spec.experiment,
                        resolved,
                        spec.experiment.backend,
                        spec=spec,
                        limit=max_parallel(experiment),
                        waiting=True,
                    )
                    ledger = ledger.model_copy(update={"runs": [*ledger.runs, run]})
                else:
                    ledger = _replace_run(ledger, self._requeue(run, max_parallel(experiment)))
            save_ledger(ledger_path, ledger)  # intent first: poll starts what this does not
            before = {r.run_id: r.last_attempt and r.last_attempt.job_id for r in ledger.runs}
            ledger = self._start_waiting_runs(ledger, {s.run_id: s for s in runs}, plans)
            save_ledger(ledger_path, ledger)
            self.write_report(stem, ledger)
        else:
            before = {r.run_id: r.last_attempt and r.last_attempt.job_id for r in ledger.runs}
        outcomes = [_run_outcome(ledger, ledger.run(s.run_id), before.get(s.run_id)) for s in runs]
        started = [o for o in outcomes if o.status == "submitted"]
        first = started[0] if started else outcomes[0]
        return SubmitOutcome(
            first.run_id,
            first.job_id or "",
            first.job_url or "",
            bool(started),
            self.project.report_path(stem),
            None,
            list(dict.fromkeys(warnings)),
            outcomes,
            file_plan,
        )

    def _requeue(self, run: Run, limit: int) -> Run:
        """Resubmitting a failed or canceled run queues it again: resumed if it had begun."""
        update = {"max_parallel": limit}
        if any(a.job_id for a in run.attempts):
            run = self._new_attempt(run)
        else:
            update |= {"status": RunStatus.QUEUED, "error": None}
        return run.model_copy(update=update)

    def _file_stem(self, experiment: Experiment, spec_path: Path, runs: list[RunSpec]) -> str:
        """One report per file, found again by experiment and file (a matrix may vary the
        model), else named after the file's base model, dataset and methods."""
        relative = self.project.relative(spec_path)
        for path in self.project.ledger_paths():
            ledger = load_ledger(path)
            if ledger and ledger.experiment == experiment.name and ledger.spec_path == relative:
                return path.name.removesuffix(LEDGER_SUFFIX)
        dataset = runs[0].experiment.dataset.path
        stem = report_stem(experiment.base_model, dataset, "-".join(methods_of(runs)))
        existing = load_ledger(self.project.ledger_path(stem))
        if existing is not None and existing.experiment != experiment.name:
            stem = f"{stem}-{experiment.name}"
        return stem

    def _new_file_ledger(
        self, experiment: Experiment, spec_path: Path, stem: str, runs: list[RunSpec]
    ) -> Ledger:
        dataset = runs[0].experiment.dataset.path
        joiner = " → " if experiment.stages else " / "
        return Ledger(
            experiment=experiment.name,
            spec_path=self.project.relative(spec_path),
            report_path=self.project.relative(self.project.report_path(stem)),
            base_model=experiment.base_model,
            base_model_url=hub_url(experiment.base_model),
            dataset=dataset,
            dataset_url=hub_url(dataset, "dataset"),
            method=joiner.join(methods_of(runs)),
            description=experiment.description,
        )

    def _specs_for(self, ledger: Ledger, backend: str, cache: dict | None = None) -> dict:
        """The runs the ledger's experiment file describes now, by run id ({} if unreadable)."""
        cache = {} if cache is None else cache
        if backend not in cache:
            try:
                experiment = self.load(self.project.root / ledger.spec_path, backend=backend)
                cache[backend] = {spec.run_id: spec for spec in expand(experiment)}
            except Exception:  # noqa: BLE001 - any failure here means we cannot rebuild it
                cache[backend] = {}
        return cache[backend]

    def _with_base(self, ledger: Ledger, spec: RunSpec) -> Experiment:
        """A later stage trains from the previous stage's model, known once it completed."""
        if not spec.base_from:
            return spec.experiment
        previous = ledger.run(spec.base_from)
        if previous is None:
            return spec.experiment
        return spec.experiment.model_copy(update={"base_model": trained_model(previous)})

    def _start_waiting_runs(
        self,
        ledger: Ledger,
        specs: dict[str, RunSpec] | None = None,
        plans: dict[str, Plan] | None = None,
    ) -> Ledger:
        """Start waiting runs whose dependency completed, up to ``max_parallel`` jobs.

        A dependency that failed or was canceled stops the chain: the runs after it are
        marked canceled, with the reason.
        """
        if not any(run.waiting for run in ledger.runs):
            return ledger
        cache: dict = {}
        busy = sum(1 for run in ledger.runs if run.active and run.started)
        for run_id in [run.run_id for run in ledger.runs if run.waiting]:
            run = ledger.run(run_id)
            if run is None or not run.waiting:
                continue
            if run.depends_on:
                previous = ledger.run(run.depends_on)
                if previous is None or previous.active:
                    continue
                if previous.status != RunStatus.COMPLETED:
                    ledger = _replace_run(ledger, _chain_stopped(run, previous))
                    continue
            if busy >= (run.max_parallel or 1):
                continue
            known = specs if specs is not None else self._specs_for(ledger, run.backend, cache)
            ledger = _replace_run(ledger, self._start_run(ledger, run, known, plans or {}))
            busy += 1
        return ledger

    def _start_run(
        self, ledger: Ledger, run: Run, specs: Mapping[str, RunSpec], plans: Mapping[str, Plan]
    ) -> Run:
        spec = specs.get(run.run_id)
        if spec is None:
            return run.model_copy(
                update={
                    "status": RunStatus.FAILED,
                    "error": f"cannot start: {ledger.spec_path} no longer describes this run; "
                    "submit it again",
                }
            )
        experiment = self._with_base(ledger, spec)
        plan = plans.get(run.run_id) or self.plan(spec.experiment)
        resolved = self.resolve(experiment, plan, run_id=run.run_id)
        if not run.attempts:  # first start: record it as it is now (a stage's real base model)
            fresh = self._new_run(
                experiment, resolved, run.backend, spec=spec, limit=run.max_parallel
            )
            run = fresh.model_copy(update={"created_at": run.created_at})
        handle = self._launch(self.backend(run.backend), experiment, resolved, run)
        return _with_job(run, handle)

    def cancel_waiting(self, run_id: str) -> Run | None:
        """Cancel a run that has no job yet (waiting for its stage or its turn)."""
        for path in self.project.ledger_paths():
            ledger = load_ledger(path)
            run = ledger.run(run_id) if ledger else None
            if run is not None and run.waiting:
                run = run.model_copy(
                    update={"status": RunStatus.CANCELED, "error": "canceled before it started"}
                )
                ledger = _replace_run(ledger, run)
                save_ledger(path, ledger)
                self.write_report(path.name.removesuffix(LEDGER_SUFFIX), ledger)
                return run
        return None

    def _launch(
        self, backend: Backend, experiment: Experiment, resolved: ResolvedRun, run: Run
    ) -> JobHandle:
        attempt = run.last_attempt.number if run.last_attempt else 1
        labels = run_labels(run, experiment.name, attempt)
        existing = backend.find(labels)
        if existing:
            return existing[-1]  # started before a crash, never recorded: adopt it
        resume_from = run.last_attempt.resume_from if run.last_attempt else None
        request = JobRequest(
            script=self.project.job_script(TRAIN_SCRIPT).path,
            run_config=resolved.run_config.model_copy(
                update={"resume_from_checkpoint": resume_from}
            ),
            labels=labels,
            flavor=run.hardware,
            timeout_s=run_timeout(experiment, resolved.plan),
        )
        return backend.submit(request)

    def _new_ledger(self, experiment: Experiment, spec_path: Path, stem: str) -> Ledger:
        return Ledger(
            experiment=experiment.name,
            spec_path=self.project.relative(spec_path),
            report_path=self.project.relative(self.project.report_path(stem)),
            base_model=experiment.base_model,
            base_model_url=hub_url(experiment.base_model),
            dataset=experiment.dataset.path,
            dataset_url=hub_url(experiment.dataset.path, "dataset"),
            method=experiment.method,
            description=experiment.description,
        )

    def _new_run(
        self,
        experiment: Experiment,
        resolved: ResolvedRun,
        backend: str,
        *,
        spec: RunSpec | None = None,
        limit: int | None = None,
        waiting: bool = False,
    ) -> Run:
        """The run's record. A multi-run file's run (``spec``) starts with no attempt when it
        must wait, and names, until then, the run whose model it will train from."""
        config = resolved.run_config
        split = experiment.dataset.split
        if experiment.dataset.max_samples:
            split += f"[:{experiment.dataset.max_samples}]"
        run = Run(
            run_id=resolved.run_id,
            title=resolved.run_id,
            method=experiment.method,
            spec_hash=experiment.spec_hash,
            created_at=self.now(),
            backend=backend,
            hardware=resolved.plan.flavor or experiment.hardware,
            usd_per_hour=resolved.plan.flavor_usd_per_hour or None,
            max_attempts=experiment.retry.max_attempts,
            retry_on=list(experiment.retry.on),
            evaluation=experiment.evaluation.model_dump() if experiment.evaluation else None,
            export=experiment.export.model_dump() if experiment.export else None,
            timeout=format_timeout(run_timeout(experiment, resolved.plan)),
            base_model=experiment.base_model,
            dataset=experiment.dataset.path,
            dataset_split=split,
            eval_split=eval_split(experiment),
            dataset_columns=dict(config.dataset.columns),
            rewards=list(config.rewards),
            hyperparameters=dict(sorted(config.hyperparameters.items())),
            lora=config.lora.model_dump() if config.lora else None,
            output_dir=config.output_dir,
            hub_model_id=config.hub_model_id,
            hub_model_url=hub_url(config.hub_model_id) if config.hub_model_id else None,
            tracking_project=config.tracking.project,
            tracking_run=config.tracking.run_name,
            tracking_url=trackio_url(
                config.tracking.space_id, config.tracking.project, resolved.run_id
            ),
            attempts=[Attempt(number=1, backend=backend, submitted_at=self.now())],
        )
        if spec is None:
            return run
        update: dict = {
            "title": spec.title,
            "stage_index": spec.stage_index,
            "stage_name": spec.stage_name,
            "depends_on": spec.depends_on,
            "base_from": spec.base_from,
            "matrix": spec.matrix,
            "max_parallel": limit,
        }
        if waiting:
            update["attempts"] = []
            if spec.base_from:
                update["base_model"] = f"output of {spec.base_from}"  # known once it completed
        return run.model_copy(update=update)

    # -- poll -------------------------------------------------------------------

    def poll(self) -> PollOutcome:
        """One bulk status call per backend for all active runs of all experiments."""
        outcome = PollOutcome()
        ledgers: dict[Path, Ledger] = {}
        for path in self.project.ledger_paths():
            ledger = load_ledger(path)
            if ledger is not None and ledger.active_runs:
                ledgers[path] = self._recover_unsubmitted_runs(ledger)
        facts = self._job_facts([r for led in ledgers.values() for r in led.active_runs])
        for path, ledger in ledgers.items():
            for run in ledger.active_runs:
                ledger = _replace_run(ledger, self._advance_run(run, facts))
            ledger = self._resume_transient_failures(ledger)
            ledger = self._start_waiting_runs(ledger)
            outcome.runs.extend(ledger.runs)
            if save_ledger(path, ledger):
                outcome.changed.append(path)
            outcome.changed.extend(self.write_report(path.name.removesuffix(LEDGER_SUFFIX), ledger))
        return outcome

    def _job_facts(self, runs: list[Run]) -> dict[str, tuple[JobStatus, list[str]]]:
        """Status and log lines of every run's current jobs, grouped by backend."""
        by_backend: dict[str, list[str]] = {}
        for run in runs:
            by_backend.setdefault(run.backend, []).extend(_live_job_ids(run))
        facts: dict[str, tuple[JobStatus, list[str]]] = {}
        for name, job_ids in by_backend.items():
            backend = self.backend(name)
            statuses = backend.statuses(job_ids)
            # HF's log endpoint holds a running job's stream open for seconds: fetch in parallel.
            with ThreadPoolExecutor(max_workers=LOG_FETCH_WORKERS) as pool:
                logs = pool.map(backend.logs, job_ids)
                for job_id, lines in zip(job_ids, logs, strict=True):
                    facts[job_id] = (statuses[job_id], lines)
        return facts

    def _advance_run(self, run: Run, facts: dict[str, tuple[JobStatus, list[str]]]) -> Run:
        """Fold the backend's answers into one run, then start what its stage needs next."""
        if run.stage == "train":
            job_id = run.last_attempt.job_id if run.last_attempt else None
            if job_id in facts:
                status, lines = facts[job_id]
                summary = JobSummary.from_logs(lines) if status.state.terminal else None
                run = apply_job_status(
                    run, status, progress=parse_progress(lines), summary=summary and summary.data
                )
            if run.status == RunStatus.COMPLETED:
                run = self._enter_stage(enter_next_stage(run, after="train"))
        elif run.stage in ("eval", "export"):
            kind = run.stage
            for job in [j for j in run.stage_jobs if j.kind == kind and j.job_id in facts]:
                status, lines = facts[job.job_id]
                if status.state.terminal:
                    summary = JobSummary.from_logs(lines)
                    run = apply_stage_status(run, job, status, summary and summary.data)
            if stage_finished(run, kind):
                run = self._enter_stage(close_stage(run, kind))
                if kind == "eval":
                    run = self._push_model_card(run)
        return self._launch_stage_jobs(run)

    def _push_model_card(self, run: Run) -> Run:
        """With a Hub repo, the card carries the eval results as model-index."""
        if not run.hub_model_id or not run.evaluations or run.model_card:
            return run
        from ci_runner.publish.model_card import push_model_card

        token = os.environ.get("HF_TOKEN")
        if not token:
            return run.model_copy(update={"model_card": "not pushed: HF_TOKEN is not set"})
        api = _hub_api()
        api.token = token
        ledger = next((led for led in self.ledgers() if led.run(run.run_id)), None)
        try:
            url = push_model_card(api, ledger, run)
        except Exception as exc:  # noqa: BLE001 - the card is a bonus; the run still succeeded
            return run.model_copy(update={"model_card": f"not pushed: {type(exc).__name__}"})
        return run.model_copy(update={"model_card": url})

    def _enter_stage(self, run: Run) -> Run:
        if run.stage == "eval" and not any(j.kind == "eval" for j in run.stage_jobs):
            final = run.hub_model_id if run.backend != "local" else run.output_dir
            jobs = eval_jobs(
                run, final_model=final, checkpoints=self._checkpoints(run), now=self.now()
            )
            run = run.model_copy(update={"stage_jobs": [*run.stage_jobs, *jobs]})
        if run.stage == "export" and not any(j.kind == "export" for j in run.stage_jobs):
            run = run.model_copy(
                update={"stage_jobs": [*run.stage_jobs, export_job(run, now=self.now())]}
            )
        return run

    def _checkpoints(self, run: Run) -> list[str]:
        if run.backend != "local":
            return []  # only the final model and `last-checkpoint` survive on the Hub
        out = self.project.root / run.output_dir
        found = [
            p for p in out.glob("checkpoint-*") if p.name.removeprefix("checkpoint-").isdigit()
        ]
        found.sort(key=lambda p: int(p.name.removeprefix("checkpoint-")))
        return [self.project.relative(p) for p in found]

    def _launch_stage_jobs(self, run: Run) -> Run:
        """Start the current stage's jobs that have none yet; adopt any already started."""
        pending = [j for j in run.stage_jobs if j.kind == run.stage and j.job_id is None]
        if not pending or not run.active:
            return run
        backend = self.backend(run.backend)
        jobs = list(run.stage_jobs)
        for job in pending:
            labels = {
                "ci-runner.experiment": run.run_id.rsplit("-", 1)[0],
                "ci-runner.run": run.run_id,
                "ci-runner.stage": label_value(f"{job.kind}-{job.key}"),
            }
            existing = backend.find(labels)
            handle = (
                existing[-1] if existing else backend.submit(self._stage_request(run, job, labels))
            )
            jobs[jobs.index(job)] = job.model_copy(
                update={"job_id": handle.job_id, "job_url": handle.url}
            )
        return run.model_copy(update={"stage_jobs": jobs})

    def _stage_request(self, run: Run, job: StageJob, labels: dict[str, str]) -> JobRequest:
        local = run.backend == "local"
        scratch = (
            self.project.runs_dir / run.run_id if local else Path("/tmp/ci-runner") / run.run_id
        )
        out = self.project.relative(scratch / f"{job.kind}-{job.key}") if local else str(scratch)
        # A LoRA run's output is an adapter: the job loads the base model under it.
        adapter_base = run.base_model if run.lora and job.model != run.base_model else None
        experiment = run.run_id.rsplit("-", 1)[0]
        if job.kind == "eval":
            settings = run.evaluation or {}
            default_n = settings.get("max_samples")
            config = EvalConfig(
                experiment=experiment,
                run_id=run.run_id,
                eval_id=f"{run.run_id}-{job.key}",
                model=job.model,
                model_label=job.key,
                base_model=adapter_base,
                benchmarks=[
                    BenchmarkSpec(**{**b, "max_samples": b.get("max_samples") or default_n})
                    for b in settings.get("benchmarks", [])
                ],
                output_dir=out,
            )
            script = EVAL_SCRIPT
        else:
            gguf = (run.export or {}).get("gguf") or {}
            config = ExportConfig(
                experiment=experiment,
                run_id=run.run_id,
                model=job.model,
                base_model=adapter_base,
                quantizations=gguf.get("quantizations", ["Q4_K_M"]),
                output_dir=out,
                hub_repo=gguf.get("hub_repo"),
            )
            script = EXPORT_SCRIPT
        return JobRequest(
            script=self.project.job_script(script).path,
            run_config=config,
            labels=labels,
            flavor=run.hardware,
        )

    def _resume_transient_failures(self, ledger: Ledger) -> Ledger:
        """Timeouts, preemptions and infra failures resume from the last checkpoint."""
        for run in ledger.runs:
            if should_resume(run):
                resumed = self._new_attempt(run)
                ledger = _replace_run(ledger, self._recover_unsubmitted(ledger, resumed))
        return ledger

    def _new_attempt(self, run: Run) -> Run:
        return next_attempt(
            run, backend=run.backend, now=self.now(), resume_from=self._resume_target(run)
        )

    def _resume_target(self, run: Run) -> str | None:
        """The newest checkpoint: on disk for local runs, the Hub's copy for HF Jobs."""
        if run.backend != "local":
            return "last-checkpoint" if run.hub_model_id else None
        # A kill can land mid-save: only a checkpoint whose trainer state was written counts.
        checkpoints = [
            p
            for p in (self.project.root / run.output_dir).glob("checkpoint-*")
            if p.name.removeprefix("checkpoint-").isdigit() and (p / "trainer_state.json").exists()
        ]
        if not checkpoints:
            return None
        newest = max(checkpoints, key=lambda p: int(p.name.removeprefix("checkpoint-")))
        return self.project.relative(newest)

    def _recover_unsubmitted_runs(self, ledger: Ledger) -> Ledger:
        for run in ledger.active_runs:
            if run.waiting:
                continue  # started in turn by _start_waiting_runs (adopted there if needed)
            if run.last_attempt is None or run.last_attempt.job_id is None:
                ledger = _replace_run(ledger, self._recover_unsubmitted(ledger, run))
        return ledger

    def _recover_unsubmitted(self, ledger: Ledger, run: Run) -> Run:
        """A crash between recording a run and submitting it: adopt or resubmit."""
        spec = self._specs_for(ledger, run.backend).get(run.run_id)
        if spec is None:
            return run.model_copy(
                update={
                    "status": RunStatus.FAILED,
                    "error": f"cannot start attempt {run.last_attempt.number}: "
                    f"{ledger.spec_path} no longer describes this run; submit it again",
                }
            )
        experiment = self._with_base(ledger, spec)
        resolved = self.resolve(experiment, self.plan(spec.experiment), run_id=run.run_id)
        handle = self._launch(self.backend(run.backend), experiment, resolved, run)
        return _with_job(run, handle)

    # -- report -----------------------------------------------------------------

    def write_report(self, stem: str, ledger: Ledger) -> list[Path]:
        """Render report and plots from the ledger; write only what changed.

        A plot whose data did not change is not drawn again (its file carries a
        fingerprint of the data), which keeps a poll cheap.
        """
        shown = figures(ledger)
        paths = {figure.key: self.project.plot_path(stem, figure.key) for figure in shown}
        markdown = render_report(ledger, plots={key: path.name for key, path in paths.items()})
        changed = []
        if write_atomic(self.project.report_path(stem), markdown):
            changed.append(self.project.report_path(stem))
        for figure in shown:
            path = paths[figure.key]
            existing = path.read_text(encoding="utf-8") if path.exists() else None
            if not unchanged(figure, existing) and write_atomic(path, render_svg(figure)):
                changed.append(path)
        return changed

    def report(self) -> list[Path]:
        changed: list[Path] = []
        for ledger_path in self.project.ledger_paths():
            ledger = load_ledger(ledger_path)
            if ledger is not None:
                changed += self.write_report(ledger_path.name.removesuffix(LEDGER_SUFFIX), ledger)
        return changed

    def ledgers(self) -> list[Ledger]:
        return [led for p in self.project.ledger_paths() if (led := load_ledger(p)) is not None]

    def runs_of(self, name: str) -> list[Run]:
        """An experiment's runs, or the one run a run id (prefix) names."""
        for ledger in self.ledgers():
            if ledger.experiment == name:
                return list(ledger.runs)
        return [self.find_run(name)[1]]

    def find_run(self, run_id: str) -> tuple[Ledger, Run]:
        """By run id, else an experiment's latest run, else a unique run id prefix."""
        ledgers = self.ledgers()
        for ledger in ledgers:
            for run in ledger.runs:
                if run.run_id == run_id:
                    return ledger, run
        for ledger in ledgers:
            if ledger.experiment == run_id and ledger.runs:
                return ledger, ledger.runs[-1]
        matches = [(led, r) for led in ledgers for r in led.runs if r.run_id.startswith(run_id)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            names = ", ".join(r.run_id for _, r in matches)
            raise NotReadyError(f"{run_id!r} matches several runs ({names}); give more of the id")
        raise NotReadyError(f"no run or experiment named {run_id!r}; see `ci-runner status`")


def _live_job_ids(run: Run) -> list[str]:
    """The jobs a poll must ask about: training's current attempt, or the stage's jobs."""
    if run.stage == "train":
        return [run.last_attempt.job_id] if run.last_attempt and run.last_attempt.job_id else []
    return [j.job_id for j in run.stage_jobs if j.kind == run.stage and j.job_id and not j.done]


def _check_hub_chain(runs: list[RunSpec], plan: FilePlan, file: str) -> None:
    """On HF Jobs a stage trains from the previous stage's Hub repo, which for a LoRA stage
    holds the adapter beside the merged weights, and transformers would load the adapter
    on its base rather than the merged model. Refuse that rather than train on it."""
    feeds = {spec.base_from for spec in runs if spec.base_from}
    for run in plan.runs:
        if run.run_id in feeds and run.plan.backend == "hf-jobs" and run.plan.lora_on:
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


def _needs_submit(run: Run | None) -> bool:
    return run is None or run.status in (RunStatus.FAILED, RunStatus.CANCELED)


def _chain_stopped(run: Run, previous: Run) -> Run:
    stage = (
        f"stage {previous.stage_name} ({previous.run_id})"
        if previous.stage_name
        else (previous.run_id)
    )
    reason = f"not started: {stage} {previous.status.label.lower()}"
    if previous.error:
        reason += f": {previous.error}"
    return run.model_copy(update={"status": RunStatus.CANCELED, "error": reason})


def _run_outcome(ledger: Ledger, run: Run, job_before: str | None) -> RunOutcome:
    attempt = run.last_attempt
    if run.started:
        status = "already submitted" if attempt.job_id == job_before else "submitted"
        return RunOutcome(run.run_id, run.title, status, attempt.job_id, attempt.job_url)
    if run.waiting:
        previous = ledger.run(run.depends_on) if run.depends_on else None
        waiting_for = run.depends_on if previous and previous.active else "max_parallel"
        return RunOutcome(run.run_id, run.title, "waiting", waiting_for=waiting_for)
    return RunOutcome(run.run_id, run.title, "not started")


def _with_job(run: Run, handle: JobHandle) -> Run:
    attempt = run.last_attempt.model_copy(update={"job_id": handle.job_id, "job_url": handle.url})
    return run.model_copy(update={"attempts": [*run.attempts[:-1], attempt]})


def _replace_run(ledger: Ledger, run: Run) -> Ledger:
    return ledger.model_copy(
        update={"runs": [run if r.run_id == run.run_id else r for r in ledger.runs]}
    )


def _has_training_stack() -> bool:
    import importlib.util

    return importlib.util.find_spec("trl") is not None
