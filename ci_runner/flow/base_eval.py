"""The base model's evaluation: started beside training, and run once per base.

The base is known at submit, so its scores need not wait for training. Its scores are the
same for every run that evaluates the same weights with the same benchmarks and the same
lighteval: a sweep's runs, a rerun, another experiment on that base. A fingerprint of
those inputs finds another run's evaluation, in any ledger of the project: its scores are
copied when it finished (per-sample values included, so intervals and paired deltas still
work), else its job is shared and each run polls it as its own.

A base is fingerprinted only when its revision was pinned at submit (a Hub commit, or a
local model's content hash): "the newest revision" is no promise the weights are the same.
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import metadata

from ci_runner.core.hub import is_local_path, local_path
from ci_runner.core.jobs import BackendName, JobKind
from ci_runner.flow.launch import EVAL_SCRIPT, launch_jobs, stage_config
from ci_runner.flow.pins import content_hash
from ci_runner.flow.workspace import Workspace
from ci_runner.ledger.model import Ledger, Run, StageJob
from ci_runner.ledger.stages import BASE, base_eval_job, base_job, reusable_base, reuse_base
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
    probe = StageJob(kind=JobKind.EVAL, key=BASE, model=run.base_model, submitted_at="")
    _, config = stage_config(ws, run, probe)
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


def start_base_evaluation(ws: Workspace, ledger: Ledger, run: Run) -> Run:
    """Record the run's base evaluation as its training starts: reused from another run's
    when one matches, else a job of its own, started now."""
    if not run.active or base_job(run) is not None:
        return run
    key = fingerprint(ws, run)
    job = base_eval_job(run, now=ws.now(), fingerprint=key)
    if job is None:
        return run
    found = reusable_base(other_runs(ws, ledger, run), key) if key else None
    if found is not None:
        return reuse_base(run, *found, now=ws.now())
    run = run.model_copy(update={"stage_jobs": [*run.stage_jobs, job]})
    return launch_jobs(ws, run, [job])
