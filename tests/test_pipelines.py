"""Several runs from one experiment file: `matrix:` sweeps and `stages:` pipelines.

Expansion is pure and tested directly; submit and poll go through the loopback HF Jobs
API (fast, no training); one end-to-end SFT → DPO pipeline trains the tiny model.
"""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from ci_runner.backend.hf_jobs import CONFIG_ENV
from ci_runner.cli import main
from ci_runner.errors import ExitCode, OverBudgetError, SpecError
from ci_runner.flow.poll import poll as poll_once
from ci_runner.flow.submit import submit as submit_file
from ci_runner.flow.workspace import Workspace
from ci_runner.ledger.model import RunStatus
from ci_runner.ledger.repository import find_run
from ci_runner.ledger.repository import ledgers as ledgers_of
from ci_runner.ledger.store import load_ledger
from ci_runner.paths import Project
from ci_runner.plan.resolve import run_id_for
from ci_runner.report.render import render_report
from ci_runner.spec.expand import expand, max_parallel
from ci_runner.spec.load import parse_experiment
from tests.conftest import ROOT, cli, make_project
from tests.test_hf_jobs_backend import CAPYBARA, NS, TOKEN, creates, make_runner, summary_line

SWEEP = """\
name: sweep
base_model: Qwen/Qwen3-0.6B
method: sft
dataset: trl-lib/Capybara
hyperparameters:
  max_steps: 100
hardware: t4-small
timeout: 90m
output: {hub_model_id: alice/sweep}
backend: hf-jobs
matrix:
  hyperparameters.learning_rate: [1.0e-4, 2.0e-4]
  lora.r: [8, 16]
"""


def ids(text: str) -> list[str]:
    return [spec.run_id for spec in expand(parse_experiment(text, "x.yaml"))]


def issues(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_experiment(text, "x.yaml")
    return [str(issue) for issue in info.value.issues]


# --- expansion (pure) ---------------------------------------------------------------


def test_a_2x2_matrix_gives_four_stable_distinct_ids():
    first, again = ids(SWEEP), ids(SWEEP.replace("timeout: 90m", "timeout: 2h"))
    assert len(first) == 4 == len(set(first))
    assert first == again  # stable, and not changed by settings outside the run's identity
    assert all(re.fullmatch(r"sweep-[0-9a-f]{8}", run_id) for run_id in first)
    specs = expand(parse_experiment(SWEEP, "x.yaml"))
    values = [(s.experiment.hyperparameters["learning_rate"], s.experiment.lora.r) for s in specs]
    assert values == [(1e-4, 8), (1e-4, 16), (2e-4, 8), (2e-4, 16)]
    assert specs[0].matrix == {"hyperparameters.learning_rate": 1e-4, "lora.r": 8}
    # A combination's id is the id the same values would have as a file of their own.
    own = specs[0].experiment.output.model_copy(update={"hub_model_id": "alice/sweep"})
    assert specs[0].run_id == run_id_for(specs[0].experiment.model_copy(update={"output": own}))
    # Runs do not push over each other: each gets its own repo.
    repos = {s.experiment.output.hub_model_id for s in specs}
    assert repos == {f"alice/sweep-{run_id.split('-')[1]}" for run_id in first}


def test_a_file_without_matrix_or_stages_keeps_its_single_run_id():
    single = SWEEP.split("matrix:")[0]
    experiment = parse_experiment(single, "x.yaml")
    (spec,) = expand(experiment)
    assert spec.experiment is experiment
    assert spec.run_id == run_id_for(experiment)
    assert spec.stage_index is None and spec.matrix is None
    # max_parallel alone changes nothing about the run
    (again,) = expand(parse_experiment(single + "max_parallel: 2\n", "x.yaml"))
    assert again.run_id == spec.run_id


def test_adding_a_value_adds_exactly_the_new_combinations():
    before = ids(SWEEP)
    after = ids(SWEEP.replace("[1.0e-4, 2.0e-4]", "[1.0e-4, 2.0e-4, 5.0e-4]"))
    assert set(before) < set(after)
    assert len(set(after) - set(before)) == 2  # 5e-4 × {8, 16}


def test_exclude_and_include_follow_github_actions():
    text = SWEEP + (
        "  exclude:\n"
        "    - {hyperparameters.learning_rate: 2.0e-4, lora.r: 16}\n"
        "  include:\n"
        "    - {lora.r: 8, hyperparameters.warmup_steps: 10}\n"  # extends both r=8 runs
        "    - {hyperparameters.learning_rate: 3.0e-4, lora.r: 32}\n"  # a combination of its own
    )
    specs = expand(parse_experiment(text, "x.yaml"))
    got = [
        (
            s.experiment.hyperparameters["learning_rate"],
            s.experiment.lora.r,
            s.experiment.hyperparameters.get("warmup_steps"),
        )
        for s in specs
    ]
    assert got == [(1e-4, 8, 10), (1e-4, 16, None), (2e-4, 8, 10), (3e-4, 32, None)]


def test_matrix_keys_are_checked_and_located():
    text = SWEEP.replace("lora.r: [8, 16]", "lora.rank: [8, 16]") + "  seed: 3\n  name: [a, b]\n"
    assert issues(text) == [
        "x.yaml:13: matrix.lora.rank: unknown field lora.rank\n"
        "  hint: allowed here: r, alpha, dropout, target_modules, quantize",
        "x.yaml:14: matrix.seed: expected a non-empty list of values\n  hint: e.g. `seed: [3]`",
        "x.yaml:15: matrix.name: cannot vary in a matrix: it applies to all runs\n"
        "  hint: vary fields such as hyperparameters.learning_rate, lora.r, base_model or "
        "dataset.path",
    ]
    # once the matrix is well formed, each run's values are checked like the file's own
    found = issues(SWEEP.replace("lora.r: [8, 16]", "hyperparameters.learnin_rate: [1, 2]"))
    assert found == [
        "x.yaml:13: matrix.hyperparameters.learnin_rate: unknown SFTConfig field\n"
        "  hint: did you mean 'learning_rate'?"
    ]


def test_a_bad_matrix_value_points_at_its_line():
    found = issues(SWEEP.replace("lora.r: [8, 16]", "lora.r: [8, sixteen]"))
    assert found[0].startswith("x.yaml:13: matrix.lora.r[1]: Input should be a valid integer")


def test_bad_matrix_key_fails_validate_with_file_line(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP.replace("hyperparameters.learning_rate", "hyperparamters.learning_rate"))
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == ExitCode.SPEC_INVALID
    assert f"{path}:12: matrix.hyperparamters.learning_rate: unknown field" in result.output
    assert "did you mean 'hyperparameters'?" in result.output


PIPELINE = """\
name: pipe
base_model: Qwen/Qwen3-0.6B
hyperparameters: {max_steps: 100, max_length: 512}
hardware: t4-small
timeout: 90m
output: {hub_model_id: alice/pipe}
backend: hf-jobs
evaluation: [{benchmark: gsm8k}]
stages:
  - method: sft
    dataset: trl-lib/Capybara
    lora: {r: 8}
  - method: dpo
    dataset: trl-lib/prefs
    hyperparameters: {beta: 0.2}
"""


def test_stages_expand_to_a_chain():
    sft, dpo = expand(parse_experiment(PIPELINE, "x.yaml"))
    assert (sft.stage_index, sft.stage_name, sft.depends_on) == (0, "sft", None)
    assert (dpo.stage_index, dpo.stage_name) == (1, "dpo")
    assert dpo.depends_on == dpo.base_from == sft.run_id
    assert dpo.experiment.method == "dpo" and dpo.experiment.dataset.path == "trl-lib/prefs"
    # hyperparameters merge key by key; other fields are inherited whole
    assert dpo.experiment.hyperparameters == {"max_steps": 100, "max_length": 512, "beta": 0.2}
    assert dpo.experiment.lora == "auto" and sft.experiment.lora.r == 8
    # each stage pushes its own repo; the LoRA stage others train on is merged
    assert sft.experiment.output.hub_model_id == "alice/pipe-sft"
    assert dpo.experiment.output.hub_model_id == "alice/pipe-dpo"
    assert sft.experiment.output.merge and not dpo.experiment.output.merge
    # the DPO stage's base is SFT's final model, evaluated already
    assert sft.experiment.evaluation.models == ["base", "final"]
    assert dpo.experiment.evaluation.models == ["final"]
    assert max_parallel(parse_experiment(PIPELINE, "x.yaml")) == 4


def test_a_changed_stage_reruns_the_stages_after_it():
    sft, dpo = ids(PIPELINE)
    sft2, dpo2 = ids(PIPELINE.replace("lora: {r: 8}", "lora: {r: 16}"))
    assert sft2 != sft and dpo2 != dpo
    sft3, dpo3 = ids(PIPELINE.replace("beta: 0.2", "beta: 0.3"))
    assert sft3 == sft and dpo3 != dpo


def test_stage_errors_name_the_stage_and_line():
    found = issues(PIPELINE.replace("method: dpo", "method: dpoo").replace("max_length", "beta"))
    text = "\n".join(found)
    assert "x.yaml:13: stages[1].method: Input should be 'sft', 'dpo' or 'grpo'" in text
    found = issues(
        PIPELINE.replace(
            "hyperparameters: {max_steps: 100, max_length: 512}",
            "hyperparameters: {max_steps: 100, beta: 0.5}",
        )
    )
    assert found == [
        "x.yaml:3: hyperparameters.beta: unknown SFTConfig field (stage sft)\n"
        "  hint: see the fields of trl.SFTConfig"
    ]


def test_the_readme_example_validates():
    text = (ROOT / "README.md").read_text()
    example = re.search(r"```yaml\n(name: qwen3-align\n.*?)```", text, re.S)[1]
    runs = expand(parse_experiment(example, "README.md"))
    assert [(r.stage_name, r.matrix) for r in runs] == [
        ("sft", {"sft.hyperparameters.learning_rate": 1e-4}),
        ("dpo", {"sft.hyperparameters.learning_rate": 1e-4}),
        ("sft", {"sft.hyperparameters.learning_rate": 2e-4}),
        ("dpo", {"sft.hyperparameters.learning_rate": 2e-4}),
    ]
    assert runs[1].base_from == runs[0].run_id and runs[3].base_from == runs[2].run_id
    assert runs[1].run_id != runs[3].run_id  # a different SFT run makes a different DPO run
    assert "learning_rate" not in runs[1].experiment.hyperparameters
    assert runs[0].experiment.output.hub_model_id == f"me/qwen3-align-sft-{runs[0].run_id[-8:]}"


# --- submit and poll on HF Jobs (loopback) -------------------------------------------

PREFS = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(20)]


@pytest.fixture
def hf(monkeypatch):
    from tests.dataset_viewer_server import FakeDatasetViewer
    from tests.hf_jobs_server import FakeHFJobs

    with (
        FakeHFJobs(namespace=NS, page_size=50, token=TOKEN, stream_idle_close_s=0.05) as server,
        FakeDatasetViewer() as viewer,
    ):
        viewer.add_dataset("trl-lib/Capybara", {"default": {"train": CAPYBARA}})
        viewer.add_dataset("trl-lib/prefs", {"default": {"train": PREFS}})
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_DATASETS_SERVER", viewer.url)
        yield server


@pytest.fixture
def project(tmp_path) -> Project:
    (tmp_path / "experiments").mkdir()
    return Project(tmp_path)


HUB_PIPELINE = PIPELINE.replace("evaluation: [{benchmark: gsm8k}]\n", "").replace(
    "lora: {r: 8}", "lora: off"
)


def configs(hf) -> list[dict]:
    return [json.loads(r.json["environment"][CONFIG_ENV]) for r in creates(hf)]


loopback = pytest.mark.usefixtures("loopback_online")


@loopback
@pytest.mark.slow
def test_matrix_submits_four_runs_once_and_only_new_ones_after_an_edit(project, hf):
    spec = project.root / "experiments" / "sweep.yaml"
    spec.write_text(SWEEP)
    runner = make_runner(project, hf)
    outcome = submit_file(runner, spec)
    assert [r.status for r in outcome.runs] == ["submitted"] * 4  # max_parallel 4 on hf-jobs
    assert len(creates(hf)) == 4
    assert sorted(c["run_id"] for c in configs(hf)) == sorted(ids(SWEEP))
    assert {c["lora"]["r"] for c in configs(hf)} == {8, 16}

    again = submit_file(runner, spec)
    assert [r.status for r in again.runs] == ["already submitted"] * 4 and not again.created
    assert len(creates(hf)) == 4  # no new job

    spec.write_text(SWEEP.replace("[1.0e-4, 2.0e-4]", "[1.0e-4, 2.0e-4, 5.0e-4]"))
    edited = submit_file(runner, spec)
    new = [r for r in edited.runs if r.status != "already submitted"]
    assert len(new) == 2 and all(r.status == "waiting" for r in new)  # 4 jobs run already
    (ledger_path,) = project.ledger_paths()  # one report for the experiment
    assert len(load_ledger(ledger_path).runs) == 6
    assert len(creates(hf)) == 4 and submit_file(runner, spec).created is False
    for run in outcome.runs[:2]:  # two finish: poll starts the two new runs
        hf.add_logs(run.job_id, [summary_line()])
        hf.set_stage(run.job_id, "COMPLETED")
    poll_once(runner)
    assert len(creates(hf)) == 6
    assert {c["hyperparameters"]["learning_rate"] for c in configs(hf)[4:]} == {5e-4}
    assert {c["run_id"] for c in configs(hf)[4:]} == {r.run_id for r in new}
    poll_once(runner)
    assert len(creates(hf)) == 6


@loopback
def test_max_parallel_holds_runs_back_until_poll_sees_room(project, hf):
    spec = project.root / "experiments" / "sweep.yaml"
    spec.write_text(SWEEP + "max_parallel: 2\n")
    runner = make_runner(project, hf)
    outcome = submit_file(runner, spec)
    assert [r.status for r in outcome.runs] == ["submitted"] * 2 + ["waiting"] * 2
    poll_once(runner)
    assert len(creates(hf)) == 2  # still two running
    first = outcome.runs[0]
    hf.add_logs(first.job_id, [summary_line()])
    hf.set_stage(first.job_id, "COMPLETED")
    poll_once(runner)
    assert len(creates(hf)) == 3
    ledger = ledgers_of(runner.project)[0]
    assert [r.status for r in ledger.runs].count(RunStatus.QUEUED) == 2  # one started, one waits


@loopback
def test_pipeline_starts_the_next_stage_from_the_previous_model(project, hf):
    spec = project.root / "experiments" / "pipe.yaml"
    spec.write_text(HUB_PIPELINE)
    runner = make_runner(project, hf)
    outcome = submit_file(runner, spec)
    sft, dpo = outcome.runs
    assert (sft.status, dpo.status, dpo.waiting_for) == ("submitted", "waiting", sft.run_id)
    poll_once(runner)
    assert len(creates(hf)) == 1  # DPO waits for SFT
    hf.add_logs(sft.job_id, [summary_line()])
    hf.set_stage(sft.job_id, "COMPLETED")
    poll_once(runner)
    (_, dpo_config) = configs(hf)
    assert dpo_config["method"] == "dpo"
    assert dpo_config["base_model"] == "alice/pipe-sft"  # SFT's pushed model
    assert dpo_config["hub_model_id"] == "alice/pipe-dpo"
    ledger, run = find_run(runner.project, dpo.run_id)
    assert run.base_model == "alice/pipe-sft" and run.stage_index == 1
    report = (project.root / ledger.report_path).read_text()
    assert "# Pipeline" in report
    assert re.search(r"\| 1\. sft \| `pipe-[0-9a-f]{8}` \| SFT \(TRL\) \|", report)
    assert "| 2. dpo |" in report and "`alice/pipe-sft`" in report


@loopback
def test_hf_jobs_refuses_to_chain_a_stage_onto_a_lora_stage(project, hf):
    spec = project.root / "experiments" / "pipe.yaml"
    spec.write_text(PIPELINE)
    with pytest.raises(SpecError, match="cannot yet train from a LoRA"):
        submit_file(make_runner(project, hf), spec)
    assert creates(hf) == [] and not project.ledger_paths()


@loopback
def test_a_failed_stage_stops_the_chain_with_its_diagnosis(project, hf):
    spec = project.root / "experiments" / "pipe.yaml"
    spec.write_text(HUB_PIPELINE)
    runner = make_runner(project, hf)
    sft, dpo = submit_file(runner, spec).runs
    hf.add_logs(
        sft.job_id,
        [
            'CI_RUNNER_SUMMARY {"status": "failed", "error_type": "OutOfMemoryError", '
            '"error": "CUDA out of memory. Tried to allocate 2.00 GiB"}'
        ],
    )
    hf.set_stage(sft.job_id, "ERROR", message="Job failed with exit code: 1")
    poll_once(runner)
    ledger, run = find_run(runner.project, dpo.run_id)
    assert run.status == RunStatus.CANCELED and run.error.startswith("not started: stage sft")
    assert "out of memory" in run.error
    assert len(creates(hf)) == 1
    report = (project.root / ledger.report_path).read_text()
    assert "Not started (an earlier stage did not complete)" in report
    assert "gradient_checkpointing" in report  # the remedy for the OOM


# --- plan: per-run costs, the total, the budget ---------------------------------------


@loopback
def test_matrix_plan_shows_each_run_and_the_total_and_refuses_over_budget(tmp_path, monkeypatch):
    from tests.test_plan import CONFIGS, loopback_hub

    text = (
        "name: big-sweep\n"
        "base_model: Qwen/Qwen2.5-7B\n"
        "method: sft\n"
        "dataset: trl-lib/Capybara\n"
        "hyperparameters: {max_steps: 300, per_device_train_batch_size: 8, max_length: 2048}\n"
        "output: {hub_model_id: alice/big-sweep}\n"
        "backend: hf-jobs\n"
        "budget: {max_cost_usd: BUDGET}\n"
        "matrix:\n"
        "  hyperparameters.learning_rate: [1.0e-4, 2.0e-4]\n"
        "  lora.r: [8, 16]\n"
    )
    spec = tmp_path / "big-sweep.yaml"
    files = {"config.json": (CONFIGS / "Qwen2.5-7B" / "config.json").read_bytes()}
    invoke = CliRunner().invoke
    root = ["--root", str(tmp_path)]
    with loopback_hub(tmp_path, monkeypatch, files=files) as (api, _):
        monkeypatch.setenv("HF_ENDPOINT", api.endpoint)
        monkeypatch.setenv("HF_TOKEN", "hf_test")
        spec.write_text(text.replace("BUDGET", "1000"))
        roomy = invoke(main, [*root, "plan", "--json", "--skip-data-check", str(spec)])
        assert roomy.exit_code == 0, roomy.output
        data = json.loads(roomy.stdout)
        costs = [r["plan"]["est_cost_usd"] for r in data["runs"]]
        assert len(costs) == 4 and all(c > 0 for c in costs)
        assert data["total"]["est_cost_usd"] == pytest.approx(sum(costs), abs=1e-3)
        assert data["total"]["over_budget"] is False

        one_run = max(costs)
        spec.write_text(text.replace("BUDGET", f"{one_run * 2:.4f}"))  # each fits, all do not
        planned = invoke(main, [*root, "plan", "--skip-data-check", str(spec)])
        submitted = invoke(main, [*root, "submit", "--skip-data-check", str(spec)])
    assert planned.exit_code == ExitCode.OVER_BUDGET
    for run_id in ids(text.replace("BUDGET", "1")):
        assert f"`{run_id}`" in planned.stdout  # a row per run with its cost
    assert "**Total: 4 runs**" in planned.stdout and "over budget" in planned.stdout
    assert submitted.exit_code == ExitCode.OVER_BUDGET
    assert "--allow-over-budget" in submitted.output
    assert not (tmp_path / "training_reports").exists()


def test_the_budget_applies_to_the_total():
    from ci_runner.flow.preflight import require_plannable
    from ci_runner.plan.estimate import make_plan
    from ci_runner.plan.total import FilePlan, RunPlan

    experiment = parse_experiment(SWEEP + "budget: {max_cost_usd: 0.01}\n", "x.yaml")
    plans = []
    for spec in expand(experiment):
        plan = make_plan(spec.experiment, size=None, dataset_rows=None, mean_seq_len=None)
        plans.append(
            RunPlan(spec.run_id, spec.title, plan.model_copy(update={"est_cost_usd": 0.004}))
        )
    total = FilePlan("sweep", plans, 0.01, max_parallel(experiment))
    assert total.total_cost_usd == pytest.approx(0.016) and total.over_budget
    with pytest.raises(OverBudgetError, match="4 runs cost ~\\$0.02 together"):
        require_plannable(total, [], "x.yaml", allow_over_budget=False)
    require_plannable(total, [], "x.yaml", allow_over_budget=True)


def _scored(run_id: str, final: float | None, **fields):
    from ci_runner.ledger.model import Evaluation, Run

    evaluations = [
        Evaluation(benchmark="gsm8k", model_label="base", model="m", score=0.1),
        Evaluation(benchmark="humaneval", model_label="base", model="m", score=0.9),
    ]
    if final is not None:
        evaluations += [
            Evaluation(benchmark="gsm8k", model_label="final", model=f"o/{run_id}", score=final),
            Evaluation(benchmark="humaneval", model_label="final", model=f"o/{run_id}", score=0.0),
        ]
    return Run(
        run_id=run_id,
        experiment="pipe",
        title=run_id,
        method="sft",
        spec_hash="h",
        created_at="2026-11-22T00:00:00Z",
        status=RunStatus.COMPLETED,
        backend="local",
        hardware="local",
        base_model="m",
        dataset="d",
        dataset_split="train",
        output_dir=f"o/{run_id}",
        tracking_project="p",
        tracking_run=run_id,
        evaluations=evaluations,
        **fields,
    )


def test_report_ranks_matrix_runs_by_the_first_benchmark_and_marks_the_best():
    from ci_runner.ledger.model import Ledger

    runs = [_scored("s-1", 0.2), _scored("s-2", None), _scored("s-3", 0.5), _scored("s-4", 0.3)]
    ledger = Ledger(
        experiment="s",
        spec_path="e.yaml",
        report_path="r.md",
        base_model="m",
        dataset="d",
        method="sft",
        runs=[r.model_copy(update={"max_parallel": 1}) for r in runs],
    )
    table = render_report(ledger).split("# Experiment Evaluations")[1]
    order = [m for m in re.findall(r"^\| `(s-\d)`", table, re.M)]
    assert list(dict.fromkeys(order)) == ["s-3", "s-4", "s-1", "s-2"]
    assert table.count("(best)") == 1
    assert "| gsm8k | **0.500** (best) |" in table
    # a single-run file's report keeps its order and marks nothing
    plain = ledger.model_copy(update={"runs": runs})
    table = render_report(plain).split("# Experiment Evaluations")[1]
    assert list(dict.fromkeys(re.findall(r"^\| `(s-\d)`", table, re.M))) == [
        "s-1",
        "s-2",
        "s-3",
        "s-4",
    ]
    assert "(best)" not in table


# --- end to end on the tiny model ----------------------------------------------------


@pytest.mark.training
def test_sft_then_dpo_pipeline_runs_end_to_end(tiny_fixtures, tmp_path):
    root = make_project(tmp_path, tiny_fixtures.model.parent)
    (root / "experiments" / "tiny-pipe.yaml").write_text(
        "name: tiny-pipe\n"
        "base_model: ./fixtures/tiny-llama\n"
        "hyperparameters: {max_steps: 2, per_device_train_batch_size: 4, logging_steps: 1,"
        " max_length: 64}\n"
        "lora: off\n"
        "evaluation:\n"
        "  benchmarks:\n"
        "    - {benchmark: gsm8k, dataset: ./fixtures/data/tiny-gsm8k, max_samples: 2}\n"
        "stages:\n"
        "  - method: sft\n"
        "    dataset: {path: ./fixtures/data/tiny-chat.jsonl, max_samples: 16}\n"
        "    lora: {r: 4, alpha: 8}\n"  # DPO then trains from the merged SFT model
        "  - method: dpo\n"
        "    dataset: {path: ./fixtures/data/tiny-prefs.jsonl, max_samples: 16}\n"
    )
    result = cli(root, "run", "experiments/tiny-pipe.yaml", "--interval", "0.5")
    assert result.returncode == 0, result.stderr
    (ledger_path,) = (root / "training_reports").glob("*.ledger.json")
    assert ledger_path.name == "tiny-llama-tiny-chat-sft-dpo.ledger.json"
    sft, dpo = load_ledger(ledger_path).runs
    assert sft.status == dpo.status == RunStatus.COMPLETED
    assert (sft.method, dpo.method) == ("sft", "dpo")
    # DPO trained from SFT's output (its LoRA merged), only after SFT's evaluation finished
    assert sft.lora and not dpo.lora
    assert dpo.base_model == f"./{sft.output_dir}/merged"
    assert (root / sft.output_dir / "merged" / "config.json").exists()
    log = (root / dpo.last_attempt.job_url).read_text()
    assert f"ci-runner train: DPO ./{sft.output_dir}/merged on" in log
    sft_evals_done = max(j.finished_at for j in sft.phase_jobs)
    assert dpo.last_attempt.submitted_at >= sft_evals_done
    assert [j.key for j in dpo.phase_jobs] == ["final"]
    report = ledger_path.with_name("tiny-llama-tiny-chat-sft-dpo.md").read_text()
    pipeline = report.split("# Pipeline")[1].split("\n---\n")[0]
    assert f"| 1. sft | `{sft.run_id}` | SFT (TRL) | `./fixtures/tiny-llama` |" in pipeline
    assert f"| 2. dpo | `{dpo.run_id}` | DPO (TRL) | `./{sft.output_dir}/merged` |" in pipeline
    # both scored, each with its 95% interval over the samples
    scored = r"\| Completed \| \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] \|"
    assert len(re.findall(scored, pipeline)) == 2
    assert "Method: SFT → DPO (TRL)" in report


def test_single_run_ledgers_keep_their_json_and_old_ledgers_load():
    run = _scored("solo", 0.2)
    data = json.loads(run.model_dump_json())
    assert not {"stage_index", "stage_name", "depends_on", "base_from", "matrix"} & set(data)
    assert "max_parallel" not in data
    staged = run.model_copy(update={"stage_index": 1, "depends_on": "a-1", "max_parallel": 1})
    again = type(run).model_validate_json(staged.model_dump_json())
    assert (again.stage_index, again.depends_on, again.matrix) == (1, "a-1", None)
    assert type(run).model_validate(data) == run


@pytest.mark.training
def test_local_matrix_runs_one_at_a_time(tiny_fixtures, tmp_path):
    from tests.test_runner import wait_until_done, write_experiment

    root = make_project(tmp_path, tiny_fixtures.model.parent)
    spec = write_experiment(
        root,
        "tiny-sweep",
        steps=1,
        extra="matrix:\n  hyperparameters.learning_rate: [1.0e-4, 1.0e-3]\n",
    )
    runner = Workspace(Project(root))
    outcome = submit_file(runner, spec)
    assert [r.status for r in outcome.runs] == ["submitted", "waiting"]
    first, second = outcome.runs
    done = wait_until_done(runner, second.run_id)
    assert done.status == RunStatus.COMPLETED
    _, before = find_run(runner.project, first.run_id)
    assert before.status == RunStatus.COMPLETED
    assert done.last_attempt.submitted_at >= before.last_attempt.finished_at  # sequential
    assert submit_file(runner, spec).created is False
    assert len(list((root / ".ci-runner" / "jobs").iterdir())) == 2
