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
    if any("as the system turn" in r for r in check.reasons):  # said by check-data, done by the job
        assert result.summary["data"]["train_system_turn"] == {"column": "system"}
        assert "as the system turn" in result.output


# --- what the check says about real shapes --------------------------------------------


def read(name, corpus_dir):
    return read_local(entries()[name].write_parquet(corpus_dir))


def check_for(sample, method, **kwargs):
    return next(c for c in check_dataset(sample, **kwargs) if c.method == method)


def test_string_pairs_with_the_prompt_in_a_question_column_are_mapped_not_implicit(corpus_dir):
    """question / chosen / rejected / system strings: no implicit prompt, the question is."""
    sample = read("li-ping/dpo_v1", corpus_dir)
    dpo = check_for(sample, "dpo")
    assert (dpo.verdict, dpo.mapping) == (MAP, {"prompt": "question"})
    assert "implicit" not in dpo.format
    mapped = check_for(sample, "dpo", columns=dpo.mapping)
    assert (mapped.verdict, mapped.format) == (
        READY,
        "preference, explicit prompt (conversational)",
    )
    (notice,) = [r for r in mapped.reasons if "system turn" in r]
    assert "puts column 'system' first in prompt as the system turn" in notice


def test_the_system_column_becomes_the_system_turn_of_what_trains(corpus_dir):
    from ci_runner.data.formats import shape_sample

    sample = read("li-ping/dpo_v1", corpus_dir)
    shaped = shape_sample(sample, "dpo", columns={"prompt": "question"})
    first = shaped.rows[0]
    assert first["prompt"][0] == {"role": "system", "content": sample.rows[0]["system"]}
    assert first["prompt"][1] == {"role": "user", "content": sample.rows[0]["question"]}
    assert first["chosen"] == [{"role": "assistant", "content": sample.rows[0]["chosen"]}]


def test_a_reversed_mapping_is_named_reversed(corpus_dir):
    from ci_runner.errors import SpecError
    from ci_runner.spec.load import parse_experiment

    sample = read("openai/gsm8k", corpus_dir)
    (sft, *_) = check_dataset(sample, columns={"question": "prompt"})
    assert sft.verdict is NO
    assert sft.reasons[0] == (
        "dataset.columns `question: prompt` is reversed: keys are the names TRL reads, "
        "values the dataset's columns; write `prompt: question`"
    )
    text = (
        "name: r\nbase_model: ./m\nmethod: sft\ndataset:\n  path: openai/gsm8k\n"
        "  columns:\n    question: prompt\n"
    )
    with pytest.raises(SpecError) as raised:
        parse_experiment(text, "r.yaml")
    assert "r.yaml:7: dataset.columns.question: `question: prompt` looks reversed" in str(
        raised.value
    )
    assert "hint: write `prompt: question`" in str(raised.value)


def test_tool_calls_beside_sharegpt_turns_offer_the_chat_template_column(corpus_dir):
    sample = read("vinhpx/function-calling-en", corpus_dir)
    sft = check_for(sample, "sft")
    assert (sft.verdict, sft.mapping) == (MAP, {"messages": "chatml_conversations"})
    assert sft.reasons[0].startswith("messages ← 'chatml_conversations': its turns are")
    assert "train.py keeps messages, tools; drops conversations" in sft.reasons


def test_the_columnar_sharegpt_spelling_is_read_as_turns(corpus_dir):
    from ci_runner.data.formats import shape_sample

    sample = read("liyucheng/ShareGPT90K", corpus_dir)
    assert isinstance(sample.rows[0]["conversations"], dict)  # {from: [...], value: [...]}
    shaped = shape_sample(sample, "sft")
    assert shaped.rows[0]["messages"][0] == {
        "role": "user",
        "content": sample.rows[0]["conversations"]["value"][0],
    }


def test_sharegpt_lengths_are_whole_conversations(corpus_dir, tiny_fixtures):
    """The bug this guards: ShareGPT rows measured before conversion, at 1-5 tokens."""
    from ci_runner.data.check import check_sample
    from ci_runner.data.tokens import ChatTokenizer
    from ci_runner.spec.load import parse_experiment

    sample = read("mlabonne/FineTome-100k", corpus_dir)
    spec = parse_experiment(
        "name: s\nbase_model: ./m\nmethod: sft\ndataset: mlabonne/FineTome-100k\n"
        "hyperparameters: {max_length: 64}\n",
        "s.yaml",
    )
    result = check_sample(sample, spec, tokenizer=ChatTokenizer.from_dir(tiny_fixtures.model))
    chars = [sum(len(t["value"]) for t in row["conversations"]) for row in sample.rows]
    assert result.lengths.exact and result.lengths.p50 > 40
    assert result.lengths.max >= max(chars) // 4
    assert result.lengths.truncated == 3 and "exceed max_length 64" in result.lengths.warning


REWARD_MODULE = """
raise SystemExit("this module must never be imported by the data check")


def needs_solution(completions, solution, **kwargs):
    return [0.0 for _ in completions]


def needs_answer(prompts, completions, answer, trainer_state=None, **kwargs):
    return [0.0 for _ in completions]


def reads_prompt(completions, prompt, **kwargs):
    return [0.0 for _ in completions]


def needs_difficulty(completions, difficulty, **kwargs):
    return [0.0 for _ in completions]
"""


def reward_experiment(root, reward: str, columns: str = ""):
    from ci_runner.spec.load import parse_experiment

    (root / "rewards.py").write_text(REWARD_MODULE)
    text = (
        "name: g\nbase_model: Qwen/Qwen3-0.6B\nmethod: grpo\ndataset:\n  path: openai/gsm8k\n"
        f"  config: main{columns}\nrewards: [{reward}]\n"
        "hyperparameters: {per_device_train_batch_size: 2, num_generations: 2}\n"
    )
    return parse_experiment(text, "g.yaml", root=root)


def test_own_reward_parameters_are_checked_against_the_data_without_importing_it(
    corpus_dir, tmp_path
):
    from ci_runner.data.check import check_experiment_data

    sample = read("openai/gsm8k", corpus_dir)
    experiment = reward_experiment(tmp_path, "rewards.py:needs_difficulty")
    grpo = check_experiment_data(experiment, root=tmp_path, sample=sample).for_method("grpo")
    assert grpo.verdict is NO
    assert grpo.reasons[0] == (
        "reward 'rewards.py:needs_difficulty' takes parameter(s) 'difficulty' without a "
        "default; TRL fills them from dataset columns of those names, and the dataset has none "
        "(it has question, answer): map one with dataset.columns (difficulty: <column>), give "
        "the parameter a default, or use rewards that fit this dataset: accuracy, format"
    )
    solution = reward_experiment(tmp_path, "rewards.py:needs_solution")
    grpo = check_experiment_data(solution, root=tmp_path, sample=sample).for_method("grpo")
    assert (grpo.verdict, grpo.mapping) == (MAP, {"prompt": "question", "solution": "answer"})
    mapped = reward_experiment(
        tmp_path, "rewards.py:needs_solution", "\n  columns: {prompt: question, solution: answer}"
    )
    grpo = check_experiment_data(mapped, root=tmp_path, sample=sample).for_method("grpo")
    assert grpo.verdict is READY, grpo

    answer = reward_experiment(tmp_path, "rewards.py:needs_answer")
    grpo = check_experiment_data(answer, root=tmp_path, sample=sample).for_method("grpo")
    assert (grpo.verdict, grpo.mapping) == (MAP, {"prompt": "question"})

    prompt = reward_experiment(tmp_path, "rewards.py:reads_prompt")
    grpo = check_experiment_data(prompt, root=tmp_path, sample=sample).for_method("grpo")
    assert grpo.verdict is NO
    assert "takes parameter 'prompt', which TRL never passes" in grpo.reasons[0]


def test_a_builtin_reward_without_its_column_names_the_rewards_that_fit(corpus_dir):
    sample = read("trl-lib/tldr", corpus_dir)
    grpo = check_for(sample, "grpo", rewards=["accuracy"])
    assert grpo.verdict is NO
    assert "reward 'accuracy' reads column(s) 'answer'" in grpo.reasons[0]
    assert "rewards that fit this dataset: format; or your own reward" in grpo.reasons[0]
