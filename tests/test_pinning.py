"""Pinned inputs: submit resolves the base model and dataset to commit shas with the real
``huggingface_hub`` client against a loopback Hub, passes them to the job, records them,
and the job loads exactly those (transformers and datasets receive the revision).

A local input is pinned to a hash of its content, which changes when its bytes do.
"""

from __future__ import annotations

import json

import pytest

from ci_runner.backend.hf_jobs import CONFIG_ENV
from ci_runner.errors import ExitCode, SpecError
from ci_runner.flow.pins import PinCache
from ci_runner.flow.submit import submit as submit_file
from ci_runner.ledger.repository import find_run
from ci_runner.spec.load import load_experiment
from tests.conftest import HF_NAMESPACE as NS
from tests.test_hf_jobs_backend import make_runner, write

pytestmark = pytest.mark.usefixtures("loopback_online")

MODEL, DATASET = "Qwen/Qwen3-0.6B", "trl-lib/Capybara"


def info_requests(hf) -> list[str]:
    return [r.path for r in hf.requests if r.path.startswith(("/api/models/", "/api/datasets/"))]


def job_config(hf) -> dict:
    (create,) = hf.requests_to("POST", rf"^/api/jobs/{NS}$")
    return json.loads(create.json["environment"][CONFIG_ENV])


def test_submit_pins_model_and_dataset_to_commits_the_job_loads(project, hf):
    ws = make_runner(project, hf)
    outcome = submit_file(ws, write(project, "pinned"), check_data=False)
    model_sha = hf.default_sha("models", MODEL, "main")
    data_sha = hf.default_sha("datasets", DATASET, "main")
    config = job_config(hf)
    assert config["base_model"] == MODEL and config["base_model_revision"] == model_sha
    assert config["dataset"]["path"] == DATASET and config["dataset"]["revision"] == data_sha
    assert info_requests(hf) == [f"/api/models/{MODEL}", f"/api/datasets/{DATASET}"]
    _, run = find_run(project, outcome.run_id)
    assert (run.base_model_revision, run.dataset_revision) == (model_sha, data_sha)
    report = outcome.report.read_text()
    assert f"`{MODEL}` at [{model_sha[:12]}](https://huggingface.co/{MODEL}/tree/{model_sha})" in (
        report
    )
    assert f"(https://huggingface.co/datasets/{DATASET}/tree/{data_sha})" in report
    # an unchanged file submitted again asks the Hub nothing and changes no pin
    hf.requests.clear()
    submit_file(ws, write(project, "pinned"), check_data=False)
    assert info_requests(hf) == []


def test_a_matrix_asks_the_hub_once_per_repo(project, hf):
    ws = make_runner(project, hf)
    extra = "matrix:\n  hyperparameters.learning_rate: [1.0e-4, 2.0e-4, 3.0e-4]\nmax_parallel: 3\n"
    outcome = submit_file(ws, write(project, "pinned-sweep", extra), check_data=False)
    assert len(outcome.runs) == 3
    assert info_requests(hf) == [f"/api/models/{MODEL}", f"/api/datasets/{DATASET}"]
    configs = [json.loads(r.json["environment"][CONFIG_ENV]) for r in hf.requests_to("POST", ".")]
    assert {c["base_model_revision"] for c in configs} == {hf.default_sha("models", MODEL, "main")}


def test_a_named_revision_is_resolved_to_its_commit(project, hf):
    tag_sha = "1" * 40
    hf.revisions[("models", MODEL, "v1.0")] = tag_sha
    spec = write(project, "tagged")
    spec.write_text(
        spec.read_text()
        .replace(f"base_model: {MODEL}", f"base_model: {MODEL}@v1.0")
        .replace(f"dataset: {DATASET}\n", f"dataset:\n  path: {DATASET}\n  revision: refs/pr/3\n")
    )
    hf.revisions[("datasets", DATASET, "refs/pr/3")] = "2" * 40
    submit_file(make_runner(project, hf), spec, check_data=False)
    config = job_config(hf)
    assert config["base_model_revision"] == tag_sha
    assert config["dataset"]["revision"] == "2" * 40
    assert f"/api/models/{MODEL}/revision/v1.0" in info_requests(hf)
    assert f"/api/datasets/{DATASET}/revision/refs%2Fpr%2F3" in info_requests(hf)


@pytest.mark.parametrize(
    ("setup", "field", "message"),
    [
        (lambda hf: hf.missing_repos.add(("models", MODEL)), "base_model", "no model"),
        (lambda hf: hf.missing_repos.add(("datasets", DATASET)), "dataset", "no dataset"),
        (
            lambda hf: hf.revisions.__setitem__(("models", MODEL, "main"), None),
            "base_model",
            "has no revision",
        ),
    ],
)
def test_a_repo_or_revision_the_hub_lacks_refuses_before_anything_is_recorded(
    project, hf, setup, field, message
):
    setup(hf)
    spec = write(project, "missing")
    with pytest.raises(SpecError) as caught:
        submit_file(make_runner(project, hf), spec, check_data=False)
    assert caught.value.exit_code == ExitCode.NOT_READY
    (issue,) = caught.value.issues
    line = next(i for i, t in enumerate(spec.read_text().splitlines(), 1) if t.startswith(field))
    assert (issue.file, issue.line) == (str(spec), line)
    assert message in issue.message
    assert hf.requests_to("POST", rf"^/api/jobs/{NS}$") == []
    assert project.ledger_paths() == []


def test_an_unreachable_hub_leaves_the_run_unpinned_and_says_so(project, hf):
    hf.fail_next("GET", r"^/api/(models|datasets)/", status=503, times=2)
    outcome = submit_file(make_runner(project, hf), write(project, "offline"), check_data=False)
    config = job_config(hf)
    assert config["base_model_revision"] is None and config["dataset"]["revision"] is None
    assert any("could not pin model Qwen/Qwen3-0.6B" in w for w in outcome.warnings)
    _, run = find_run(project, outcome.run_id)
    assert run.base_model_revision is None
    assert "(not pinned)" in outcome.report.read_text()


def test_local_inputs_are_pinned_to_a_hash_of_their_content(tiny_fixtures, tmp_path):
    spec = tmp_path / "x.yaml"
    spec.write_text(
        f"name: x\nmethod: sft\nbase_model: {tiny_fixtures.model}\n"
        f"dataset: {tiny_fixtures.sft_data}\n"
    )
    experiment = load_experiment(spec, root=tmp_path)
    pins = PinCache(tmp_path).pins(experiment, spec_path=str(spec))
    assert pins.base_model.startswith("sha256:") and pins.dataset.startswith("sha256:")
    assert pins.for_job() == {"base_model_revision": None, "dataset_revision": None}
    assert PinCache(tmp_path).pins(experiment, spec_path=str(spec)) == pins  # stable
    edited = tmp_path / "data.jsonl"
    edited.write_bytes(tiny_fixtures.sft_data.read_bytes() + b"\n")
    changed = experiment.model_copy(
        update={"dataset": experiment.dataset.model_copy(update={"path": str(edited)})}
    )
    repinned = PinCache(tmp_path).pins(changed, spec_path=str(spec))
    assert repinned.dataset != pins.dataset and repinned.base_model == pins.base_model


def test_load_split_passes_the_pinned_revision_to_load_dataset(monkeypatch):
    datasets = pytest.importorskip("datasets")
    import train_data
    from job_config import DatasetSource

    seen = {}

    def fake_load_dataset(path, name=None, **kwargs):
        seen.update(path=path, name=name, **kwargs)
        return datasets.Dataset.from_list([{"text": "x"}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    train_data.load_split(DatasetSource("org/data", config="c", revision="3" * 40), "train")
    assert seen == {"path": "org/data", "name": "c", "split": "train", "revision": "3" * 40}


@pytest.mark.training
def test_the_job_loads_the_pinned_commit_from_the_hub(tiny_fixtures, job_env, tmp_path):
    """train.py against a loopback Hub serving the tiny model: the weights, the tokenizer
    and the config the model is built from all come at the pinned commit. The summary
    records what ran.

    One request goes to ``main``: TRL 1.x's ``create_model_from_path`` reads config.json
    without the revision to pick the Auto class (then ``from_pretrained`` loads the
    pinned one); that one request is all this test allows at ``main``."""
    from tests.model_hub import COMMIT, FakeModelHub
    from tests.test_train_script import make_config, run_train

    files = {p.name: p.read_bytes() for p in tiny_fixtures.model.iterdir() if p.is_file()}
    hub = FakeModelHub({"tiny-org/tiny-llama": files})
    hub.main_commit = "b" * 40  # the repo moved on since submit pinned COMMIT
    try:
        config = make_config(
            tmp_path,
            "tiny-org/tiny-llama",
            tiny_fixtures.sft_data,
            "sft",
            hyperparameters={"max_steps": 1},
            base_model_revision=COMMIT,
        )
        env = {
            **job_env,
            "HF_HUB_OFFLINE": "0",
            "HF_ENDPOINT": hub.url,
            "HF_HUB_CACHE": str(tmp_path / "hub-cache"),
        }
        result = run_train(config, env, tmp_path)
    finally:
        hub.close()
    assert result.returncode == 0, result.output[-4000:]
    fetched = [path for _, path, _ in hub.seen if "/resolve/" in path]
    assert f"/tiny-org/tiny-llama/resolve/{COMMIT}/config.json" in fetched
    assert f"/tiny-org/tiny-llama/resolve/{COMMIT}/model.safetensors" in fetched
    assert f"/tiny-org/tiny-llama/resolve/{COMMIT}/tokenizer_config.json" in fetched
    assert {p for p in fetched if "/resolve/main/" in p} == {
        "/tiny-org/tiny-llama/resolve/main/config.json"
    }
    versions = result.summary["versions"]
    assert {"torch", "transformers", "trl", "datasets", "python"} <= set(versions)
    assert versions["accelerator"] == "cpu"


def test_a_lora_runs_evaluation_and_export_load_the_base_at_its_pinned_commit(project, hf):
    from ci_runner.core.jobs import JobKind
    from ci_runner.flow.launch import phase_config
    from ci_runner.ledger.model import PhaseJob

    ws = make_runner(project, hf)
    outcome = submit_file(ws, write(project, "pinned"), check_data=False)
    _, run = find_run(project, outcome.run_id)
    run = run.model_copy(update={"lora": {"r": 8}})
    sha = hf.default_sha("models", MODEL, "main")
    adapter = "acme/pinned-adapter"
    for kind, key in ((JobKind.EVAL, "final"), (JobKind.EXPORT, "gguf")):
        job = PhaseJob(kind=kind, key=key, model=adapter, submitted_at="2026-11-27T00:00:00Z")
        _, config = phase_config(ws, run, job)
        assert (config.model, config.base_model) == (adapter, f"{MODEL}@{sha}"), kind
