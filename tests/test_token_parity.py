"""Token parity: the lengths check-data reports are the lengths TRL trains on.

For every corpus dataset (its card's real schema) and every method the check lets
through, the per-row token counts from ``ci_runner.data.check.token_counts`` (the sample
shaped by the job's own code, counted by ``tokenizer.json`` + jinja2 without
transformers) must equal, row for row, what TRL 1.16's trainer tokenizes: the dataset
loaded and shaped by ``train_data.load_datasets`` exactly as a job does, handed to the
real SFTTrainer / DPOTrainer (their tokenized ``train_dataset``) or GRPOTrainer (its
prompt tokenization), with the tiny model's tokenizer.
"""

from __future__ import annotations

import pytest

from ci_runner.data.check import token_counts
from ci_runner.data.formats import Verdict, check_dataset
from ci_runner.data.sources import read_local
from ci_runner.data.tokens import ChatTokenizer
from ci_runner.spec.load import parse_experiment
from tests.corpus import entries
from tests.test_train_script import job_run_config

pytestmark = pytest.mark.training

# Datasets the tiny text model can read (no images).
TEXT_DATASETS = sorted(n for n in entries() if n != "HuggingFaceH4/llava-instruct-mix-vsft")
CASES = [(name, method) for name in TEXT_DATASETS for method in ("sft", "dpo", "grpo")]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    pytest.importorskip("datasets")
    return tmp_path_factory.mktemp("parity-corpus")


@pytest.fixture(scope="module")
def tokenizers(tiny_fixtures):
    from transformers import AutoTokenizer

    ours = ChatTokenizer.from_dir(tiny_fixtures.model)
    theirs = AutoTokenizer.from_pretrained(str(tiny_fixtures.model))
    return ours, theirs


def experiment_for(method: str, data: str, mapping: dict[str, str]):
    rewards = "rewards: [format]\n" if method == "grpo" else ""
    columns = "".join(f"\n    {k}: {v}" for k, v in mapping.items())
    text = (
        f"name: parity\nbase_model: ./model\nmethod: {method}\n{rewards}"
        f"dataset:\n  path: {data}\n" + (f"  columns:{columns}\n" if mapping else "")
    )
    return parse_experiment(text, "parity.yaml")


def trl_lengths(method, model, dataset, tokenizer, tmp_path) -> list[int]:
    """What the real trainer tokenizes per row (no truncation)."""
    common = {"output_dir": str(tmp_path / "out"), "report_to": [], "use_cpu": True}
    if method == "sft":
        from trl import SFTConfig, SFTTrainer

        args = SFTConfig(max_length=None, **common)
        trainer = SFTTrainer(
            model=model, args=args, train_dataset=dataset, processing_class=tokenizer
        )
        return [len(ids) for ids in trainer.train_dataset["input_ids"]]
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(max_length=None, **common)
        trainer = DPOTrainer(
            model=model, args=args, train_dataset=dataset, processing_class=tokenizer
        )
        data = trainer.train_dataset
        return [
            len(p) + max(len(c), len(r))
            for p, c, r in zip(
                data["prompt_ids"], data["chosen_ids"], data["rejected_ids"], strict=True
            )
        ]
    from trl import GRPOConfig, GRPOTrainer

    args = GRPOConfig(per_device_train_batch_size=2, num_generations=2, **common)
    trainer = GRPOTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        reward_funcs=[lambda completions, **kw: [0.0] * len(completions)],
    )
    prompt_ids = trainer._tokenize_prompts(list(dataset["prompt"]))[0]
    return [len(ids) for ids in prompt_ids]


@pytest.mark.parametrize(("name", "method"), CASES)
def test_check_data_counts_what_the_trainer_tokenizes(
    name, method, corpus_dir, tiny_fixtures, tokenizers, tmp_path
):
    import train_data

    entry = entries()[name]
    path = entry.write_parquet(corpus_dir)
    sample = read_local(path)
    rewards = ["format"] if method == "grpo" else []
    check = next(c for c in check_dataset(sample, rewards=rewards) if c.method == method)
    if check.verdict is Verdict.INCOMPATIBLE:
        pytest.skip(f"{method} is INCOMPATIBLE for {name}: nothing is trained")
    experiment = experiment_for(method, str(path), check.mapping)
    ours, theirs = tokenizers

    counted = token_counts(sample, experiment, tokenizer=ours)

    config = job_run_config(
        method, {"path": str(path), "columns": dict(check.mapping)}, rewards=rewards
    )
    dataset, _, _ = train_data.load_datasets(config, set())
    tokenized = trl_lengths(method, str(tiny_fixtures.model), dataset, theirs, tmp_path)
    assert counted == tokenized
    assert counted and min(counted) > 5  # whole conversations, not a handful of tokens
