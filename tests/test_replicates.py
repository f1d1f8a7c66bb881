"""Seed replicates on the tiny model: `replicates: 3` runs three seeds as one group, the
report shows the final loss and each score as mean ± spread, and `submit --rerun` adds
one more seed to the group with the same pinned inputs."""

from __future__ import annotations

import json

import pytest

from ci_runner.ledger.store import load_ledger
from ci_runner.spec.expand import replicate_key
from tests.conftest import cli, make_project

EXPERIMENT = """\
name: tiny-seeds
description: Three seeds of the tiny SFT run, to see what the seed alone moves.
base_model: ./fixtures/tiny-llama
method: sft
dataset:
  path: ./fixtures/data/tiny-chat.jsonl
  max_samples: 32
hyperparameters:
  max_steps: 3
  per_device_train_batch_size: 4
  learning_rate: 5.0e-4
  logging_steps: 1
  save_strategy: "no"
  max_length: 128
lora: off
tracking:
  project: tiny-seeds
backend: local
max_parallel: 2
replicates: 3
evaluation:
  benchmarks:
    - {benchmark: gsm8k, dataset: ./fixtures/data/tiny-gsm8k, max_samples: 3}
  models: [final]
"""


@pytest.fixture(scope="module")
def seeded(tiny_fixtures, tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("seeds"), tiny_fixtures.model.parent)
    (root / "experiments" / "tiny-seeds.yaml").write_text(EXPERIMENT)
    result = cli(root, "run", "experiments/tiny-seeds.yaml", "--timeout", "900")
    return root, result


def ledger_of(root):
    (path,) = (root / "training_reports").glob("*.ledger.json")
    return load_ledger(path)


@pytest.mark.training
def test_three_seeds_run_as_one_group_with_mean_and_spread(seeded):
    root, result = seeded
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ledger = ledger_of(root)
    assert [r.matrix for r in ledger.runs] == [{"seed": 42}, {"seed": 43}, {"seed": 44}]
    assert all(r.status.value == "completed" for r in ledger.runs)
    assert len({replicate_key(r.matrix, r.stage_name) for r in ledger.runs}) == 1
    losses = [r.metrics.final_loss for r in ledger.runs]
    assert len(set(losses)) > 1  # the seed changes the data order, so the losses differ
    report = (root / ledger.report_path).read_text()
    assert "**Replicates** (the same configuration under several seeds)" in report
    row = next(line for line in report.splitlines() if "| 42, 43, 44 |" in line)
    assert row.startswith("| `tiny-seeds` |")
    assert "± " in row and "(n=3)" in row  # the final loss and the gsm8k score, each mean ± std
    evaluated = [ev for r in ledger.runs for ev in r.evaluations]
    assert len(evaluated) == 3 and all(len(ev.samples) == 3 for ev in evaluated)


@pytest.mark.training
def test_rerun_adds_one_more_seed_with_the_same_pins(seeded):
    root, first = seeded
    assert first.returncode == 0
    before = ledger_of(root)
    submitted = cli(root, "submit", "experiments/tiny-seeds.yaml", "--rerun", "--json")
    assert submitted.returncode == 0, submitted.stderr
    (rerun,) = json.loads(submitted.stdout)["runs"]
    assert rerun["run_id"] == f"{before.runs[0].run_id}-r2"
    waited = cli(root, "wait", "--timeout", "600")
    assert waited.returncode == 0, waited.stdout[-2000:] + waited.stderr[-2000:]
    after = ledger_of(root)
    added = after.run(rerun["run_id"])
    assert added.matrix == {"seed": 45} and added.replicate_of == before.runs[0].run_id
    assert (added.base_model_revision, added.dataset_revision) == (
        before.runs[0].base_model_revision,
        before.runs[0].dataset_revision,
    )
    assert added.base_model_revision.startswith("sha256:")
    report = (root / after.report_path).read_text()
    assert "42, 43, 44, 45" in report and "(n=4)" in report
