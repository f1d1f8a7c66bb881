"""Real Hub dataset schemas (tests/corpus/): verdicts per method, and 2 real training steps
for every case the check lets through.

Each dataset is read twice, as a local Parquet file with its card's exact features and
through the loopback dataset viewer serving the same schema; both must give the same
verdicts. Then every READY (or mapped) SFT/DPO/GRPO case trains the tiny model for two
steps through ``train.py``, with the mapping the check proposed: a verdict the job cannot
honour would fail here.
"""

from __future__ import annotations

import pytest

from ci_runner.data.formats import Verdict, check_dataset
from ci_runner.data.sources import read_local, read_sample
from ci_runner.data.viewer import ViewerClient
from tests.corpus import entries, serve
from tests.dataset_viewer_server import FakeDatasetViewer
from tests.test_train_script import assert_trained, make_config, run_train

READY, MAP, NO = Verdict.READY, Verdict.NEEDS_MAPPING, Verdict.INCOMPATIBLE

# dataset → verdict for sft, dpo, grpo (no reward columns asked for).
EXPECTED = {
    "open-r1/codeforces-cots": (READY, NO, READY),
    "HuggingFaceH4/ultrachat_200k": (READY, NO, READY),
    "trl-lib/Capybara": (READY, NO, NO),
    "trl-lib/ultrafeedback_binarized": (NO, READY, NO),
    "Anthropic/hh-rlhf": (NO, READY, NO),
    "openai/gsm8k": (MAP, NO, MAP),
    "trl-lib/tldr": (READY, NO, READY),
    "teknium/OpenHermes-2.5": (READY, NO, NO),
    "HuggingFaceH4/ultrafeedback_binarized": (READY, READY, READY),
    "trl-lib/DeepMath-103K": (NO, NO, READY),
    "mlabonne/FineTome-100k": (READY, NO, NO),
    "zetavg/ShareGPT-Processed": (READY, NO, NO),
    "erfanzar/ShareGPT4": (READY, NO, NO),
    "liyucheng/ShareGPT90K": (READY, NO, NO),
    "HuggingFaceH4/no_robots": (READY, NO, READY),
    "HuggingFaceH4/orca_dpo_pairs": (NO, READY, READY),
    "snorkelai/Snorkel-Mistral-PairRM-DPO-Dataset": (NO, READY, READY),
    "li-ping/dpo_v1": (NO, MAP, MAP),
    "HuggingFaceH4/llava-instruct-mix-vsft": (READY, NO, NO),
    "vinhpx/function-calling-en": (MAP, NO, NO),
}
METHODS = ("sft", "dpo", "grpo")
# Checked, but not trained here: the tiny model reads no images.
NOT_TRAINED = {"HuggingFaceH4/llava-instruct-mix-vsft"}


def test_the_corpus_is_complete():
    assert sorted(entries()) == sorted(EXPECTED)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    pytest.importorskip("datasets")
    return tmp_path_factory.mktemp("corpus")


@pytest.fixture(scope="module")
def viewer():
    pytest.importorskip("datasets")
    with FakeDatasetViewer() as fake:
        for entry in entries().values():
            serve(fake, entry)
        yield fake


def verdicts(sample) -> dict[str, Verdict]:
    return {check.method: check.verdict for check in check_dataset(sample)}


@pytest.mark.usefixtures("loopback_online")
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_verdicts_from_parquet_and_viewer_agree(name, corpus_dir, viewer, tmp_path):
    entry = entries()[name]
    local = read_local(entry.write_parquet(corpus_dir))
    hub = read_sample(
        name,
        root=tmp_path,
        config=entry.config,
        split=entry.split,
        viewer=ViewerClient(viewer.url, token=None, sleep=lambda s: None),
    )
    expected = dict(zip(METHODS, EXPECTED[name], strict=True))
    assert verdicts(local) == expected
    assert verdicts(hub) == expected
    assert hub.columns == local.columns == list(entry.features)
    assert hub.num_rows == entry.num_rows


def test_sft_on_messages_beside_a_prompt_is_ready_and_says_what_it_drops(corpus_dir):
    sample = read_local(entries()["open-r1/codeforces-cots"].write_parquet(corpus_dir))
    sft = next(c for c in check_dataset(sample) if c.method == "sft")
    assert sft.verdict is READY and sft.mapping == {}
    assert sft.format == "conversational (messages)"
    (note,) = [r for r in sft.reasons if r.startswith("train.py keeps")]
    assert note.startswith("train.py keeps messages; drops prompt, id, aliases, contest_id")
    assert note.endswith("and 13 more")


def test_sharegpt_turns_are_read_as_chat(corpus_dir):
    sample = read_local(entries()["teknium/OpenHermes-2.5"].write_parquet(corpus_dir))
    sft = next(c for c in check_dataset(sample) if c.method == "sft")
    assert sft.verdict is READY, sft
    assert any("reads conversations as messages" in r for r in sft.reasons)
    assert any("as {role, content} (ShareGPT {from, value}" in r for r in sft.reasons)


def test_grpo_rewards_ask_for_their_columns(corpus_dir):
    gsm8k = read_local(entries()["openai/gsm8k"].write_parquet(corpus_dir))
    grpo = next(c for c in check_dataset(gsm8k, rewards=["accuracy"]) if c.method == "grpo")
    assert (grpo.verdict, grpo.mapping) == (MAP, {"prompt": "question"})
    deepmath = read_local(entries()["trl-lib/DeepMath-103K"].write_parquet(corpus_dir))
    grpo = next(c for c in check_dataset(deepmath, rewards=["accuracy"]) if c.method == "grpo")
    assert (grpo.verdict, grpo.mapping) == (MAP, {"answer": "solution"})


# --- two real steps for every case the check lets through ----------------------------

TRAINABLE = [
    (name, method)
    for name, row in sorted(EXPECTED.items())
    for method, verdict in zip(METHODS, row, strict=True)
    if name not in NOT_TRAINED and verdict in (READY, MAP)
]
GRPO_REWARDS = {"openai/gsm8k": ["accuracy", "format"], "trl-lib/DeepMath-103K": ["accuracy"]}


@pytest.mark.training
@pytest.mark.parametrize(("name", "method"), TRAINABLE)
def test_two_training_steps(
    name, method, corpus_dir, tiny_fixtures, job_env, tmp_path, monkeypatch
):
    entry = entries()[name]
    data = entry.write_parquet(corpus_dir)
    rewards = GRPO_REWARDS.get(name, ["format"]) if method == "grpo" else []
    check = next(c for c in check_dataset(read_local(data), rewards=rewards) if c.method == method)
    assert check.verdict in (READY, MAP), check
    hyperparameters: dict = {"max_steps": 2, "per_device_train_batch_size": 2}
    if method == "grpo":
        hyperparameters.update(num_generations=2, max_completion_length=8)
    else:
        hyperparameters["max_length"] = 128
    config = make_config(
        tmp_path,
        tiny_fixtures.model,
        data,
        method,
        dataset={"columns": check.mapping},
        hyperparameters=hyperparameters,
        rewards=rewards,
        run_name=f"corpus-{entry.slug}-{method}".lower(),
    )
    result = run_train(config, job_env, tmp_path)
    assert_trained(result, config, job_env, monkeypatch)
