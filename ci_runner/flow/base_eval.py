"""The base model's evaluation: started beside training, and run once per base.

The base is known at submit, so its scores need not wait for training. Its scores are the
same for every run that evaluates the same weights with the same benchmarks and the same
lighteval: a sweep's runs, a rerun, another experiment on that base. A fingerprint of
those inputs finds another run's evaluation, in any ledger of the project: its scores are
copied when it finished (per-sample values included, so intervals and paired deltas still
work), else its job is shared and each run polls it as its own.

On the local backend the final model's evaluation joins the base's job at submit and
waits there for training to end (``final_with_training``): one process per run, whose
imports overlap training.

A base is fingerprinted only when its revision was pinned at submit (a Hub commit, or a
local model's content hash): "the newest revision" is no promise the weights are the same.
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import metadata

from ci_runner.core.hub import is_local_path, local_path
from ci_runner.core.jobs import BackendName, JobKind, Phase
from ci_runner.flow.launch import EVAL_SCRIPT, launch_jobs, phase_config, shares_evals
from ci_runner.flow.pins import content_hash
from ci_runner.flow.workspace import Workspace
from ci_runner.ledger.model import Ledger, PhaseJob, Run
from ci_runner.ledger.phases import (
    BASE,
    FINAL,
    base_eval_job,
    base_job,
    eval_jobs,
    reusable_base,
    reuse_base,
)
from ci_runner.ledger.store import scan

_PINNED = re.compile(r"""["']lighteval==([^"'\s;]+)["']""")


def lighteval_version(ws: Workspace, run: Run) -> str | None:
    """The lighteval the evaluation job will run: this interpreter's on the local backend
    (it runs the job), else the version the evaluation script's header pins."""
    if run.backend == BackendName.LOCAL:
        try:
            return metadata.version("lighteval")
        except metadata.PackageNotFoundError:
            pass
    script = ws.project.job_script(EVAL_SCRIPT).path
    found = _PINNED.search(script.read_text(encoding="utf-8")) if script.is_file() else None
    return found.group(1) if found else None


def fingerprint(ws: Workspace, run: Run) -> str | None:
    """What identifies the base's scores: its pinned weights, what the job is asked
    (benchmarks and their data, samples, few-shot, placement, seed, token budget) and the
    lighteval that answers. None when the base was not pinned."""
    if not run.base_model_revision or not run.evaluation:
        return None
    probe = PhaseJob(kind=JobKind.EVAL, key=BASE, model=run.base_model, submitted_at="")
    _, config = phase_config(ws, run, probe)
    asked = config.model_dump(
        mode="json", exclude={"experiment", "run_id", "eval_id", "output_dir", "model_label"}
    )
    if is_local_path(run.base_model):  # the tokenizer too: the pin covers weights only
        asked["model"] = content_hash(local_path(run.base_model, ws.root))
    for benchmark in asked["benchmarks"]:
        data = benchmark.get("dataset")
        if data and is_local_path(data):
            benchmark["dataset"] = content_hash(local_path(data, ws.root)) or data
    script = ws.project.job_script(EVAL_SCRIPT)
    facts = {
        "revision": run.base_model_revision,
        "job": asked,
        "lighteval": lighteval_version(ws, run),
        "script": content_hash(script.path) if script.overridden else None,
    }
    text = json.dumps(facts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def other_runs(ws: Workspace, ledger: Ledger, run: Run) -> list[Run]:
    """Every recorded run but this one: this ledger's as they are in memory (a sweep's
    runs launch one after another), then the project's other ledgers as on disk."""
    runs = [r for r in ledger.runs if r.run_id != run.run_id]
    for _, other in scan(ws.project.ledger_paths()).found:
        if other.report_path != ledger.report_path:
            runs.extend(other.runs)
    return runs


def final_with_training(ws: Workspace, run: Run) -> list[PhaseJob]:
    """On the local backend, the final model's evaluation too is started with training:
    its job loads torch and lighteval while the model trains, and evaluates it once the
    training job has ended (``EvalConfig.after_job``). One process then evaluates the
    base and the final model, as after training. Not when checkpoints are evaluated
    (which ones is known only after training)."""
    settings = run.evaluation or {}
    if (
        not settings
        or not shares_evals(ws, run)
        or settings.get("checkpoints") == "all"
        or FINAL not in settings.get("models", [BASE, FINAL])
    ):
        return []
    attempt = run.last_attempt.number if run.last_attempt else None
    jobs = eval_jobs(run, final_model=run.output_dir, checkpoints=[], now=ws.now())
    return [j.model_copy(update={"after_attempt": attempt}) for j in jobs if j.key == FINAL]


def without_stale_waits(run: Run) -> Run:
    """A resumed attempt: the final model's evaluation recorded with an earlier attempt
    waited for that attempt's job (and failed with it); it is recorded again."""
    attempt = run.last_attempt
    number = attempt.number if attempt else None
    keep = [j for j in run.phase_jobs if j.after_attempt in (None, number)]
    return run.model_copy(update={"phase_jobs": keep})


def start_base_evaluation(ws: Workspace, ledger: Ledger, run: Run) -> Run:
    """Record the run's base evaluation as its training starts: reused from another run's
    when one matches, else a job of its own, started now (locally with the final's)."""
    if not run.active or run.phase != Phase.TRAIN:
        return run
    run = without_stale_waits(run)
    early: list[PhaseJob] = []
    if base_job(run) is None:
        key = fingerprint(ws, run)
        job = base_eval_job(run, now=ws.now(), fingerprint=key)
        found = reusable_base(other_runs(ws, ledger, run), key) if job and key else None
        if found is not None:
            run = reuse_base(run, *found, now=ws.now())
        elif job is not None:
            early.append(job)
    if not any(j.kind == JobKind.EVAL and j.key != BASE for j in run.phase_jobs):
        early += final_with_training(ws, run)
    if not early:
        return run
    run = run.model_copy(update={"phase_jobs": [*run.phase_jobs, *early]})
    return launch_jobs(ws, run, early)
