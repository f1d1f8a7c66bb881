"""ci_runner.data.formats: which TRL method a sampled dataset fits, and the mapping to paste."""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from ci_runner.data.formats import (
    MAX_LISTED,
    DataReport,
    MethodCheck,
    Verdict,
    build_report,
    check_dataset,
    mapping_yaml,
    render_report,
    report_to_json,
)
from ci_runner.data.sample import DatasetSample
from tests.test_train_script import job_run_config

READY, NEEDS, INCOMPATIBLE = Verdict.READY, Verdict.NEEDS_MAPPING, Verdict.INCOMPATIBLE
TRAIN_SCRIPT = Path(__file__).resolve().parents[1] / "job_scripts" / "train.py"


def sample(*rows: dict[str, Any], columns: list[str] | None = None) -> DatasetSample:
    names = columns if columns is not None else list(dict.fromkeys(k for r in rows for k in r))
    return DatasetSample(source="x", split="train", columns=names, rows=list(rows))


def checks(s: DatasetSample, **kwargs: Any) -> dict[str, MethodCheck]:
    return {check.method: check for check in check_dataset(s, **kwargs)}


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def bot(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def system(text: str) -> dict[str, str]:
    return {"role": "system", "content": text}


# --- formats ---------------------------------------------------------------------------------


def test_messages_is_ready_for_sft_only():
    result = checks(sample({"messages": [system("be brief"), user("hi"), bot("hello")]}))
    sft = result["sft"]
    assert (sft.verdict, sft.format, sft.mapping, sft.problems) == (
        READY,
        "conversational (messages)",
        {},
        (),
    )
    assert result["dpo"].verdict is INCOMPATIBLE
    assert "missing chosen, rejected" in result["dpo"].reasons[0]
    assert result["grpo"].verdict is INCOMPATIBLE


def test_text_is_ready_for_sft():
    sft = checks(sample({"text": "The sky is blue."}))["sft"]
    assert (sft.verdict, sft.format) == (READY, "standard (text)")


def test_dataset_text_field_names_the_text_column():
    s = sample({"body": "The sky is blue."})
    assert checks(s)["sft"].verdict is INCOMPATIBLE
    sft = checks(s, text_field="body")["sft"]
    assert (sft.verdict, sft.format) == (READY, "standard (body)")


def test_prompt_completion_fits_sft_and_grpo():
    result = checks(sample({"prompt": "2+2=", "completion": "4"}))
    assert (result["sft"].verdict, result["sft"].format) == (READY, "prompt-completion")
    assert (result["grpo"].verdict, result["grpo"].format) == (READY, "prompt-only")


def test_conversational_prompt_completion():
    sft = checks(sample({"prompt": [user("2+2?")], "completion": [bot("4")]}))["sft"]
    assert (sft.verdict, sft.format) == (READY, "prompt-completion (conversational)")


def test_preference_explicit_prompt():
    result = checks(sample({"prompt": "Sky?", "chosen": " blue", "rejected": " green"}))
    dpo = result["dpo"]
    assert (dpo.verdict, dpo.format, dpo.mapping) == (READY, "preference, explicit prompt", {})
    assert set(result) == {"sft", "dpo", "grpo"}  # only the methods train.py runs
    assert result["sft"].verdict is INCOMPATIBLE


def test_preference_implicit_prompt_conversational():
    row = {
        "chosen": [user("Sky?"), bot("Blue.")],
        "rejected": [user("Sky?"), bot("Green.")],
    }
    dpo = checks(sample(row))["dpo"]
    assert (dpo.verdict, dpo.format) == (READY, "preference, implicit prompt (conversational)")


def test_implicit_prompt_without_shared_turns_is_incompatible():
    row = {"chosen": [user("Sky?"), bot("Blue.")], "rejected": [user("Sea?"), bot("Green.")]}
    dpo = checks(sample(row))["dpo"]
    assert dpo.verdict is INCOMPATIBLE
    assert dpo.problems == (
        "row 0, column 'rejected': shares no leading turns with chosen, so there is no prompt "
        "for TRL to extract (it would train on an empty one): map the prompt column with "
        "dataset.columns (prompt: <column>)",
    )


def test_implicit_prompt_strings_without_shared_text_are_incompatible():
    dpo = checks(sample({"chosen": "Blue.", "rejected": "Green."}))["dpo"]
    assert (dpo.verdict, dpo.format) == (INCOMPATIBLE, "preference, implicit prompt")
    assert dpo.problems == (
        "row 0, column 'rejected': shares no leading text with chosen, so there is no prompt "
        "for TRL to extract (it would train on an empty one): map the prompt column with "
        "dataset.columns (prompt: <column>)",
    )


def test_implicit_prompt_strings_sharing_their_start_are_ready():
    row = {"chosen": "Human: Sky?\nAssistant: Blue.", "rejected": "Human: Sky?\nAssistant: Red."}
    dpo = checks(sample(row))["dpo"]
    assert (dpo.verdict, dpo.format, dpo.problems) == (READY, "preference, implicit prompt", ())


def test_string_pairs_with_the_prompt_in_another_column_propose_it():
    row = {"question": "Sky?", "chosen": "Blue.", "rejected": "Green.", "system": "Be brief."}
    dpo = checks(sample(row))["dpo"]
    assert (dpo.verdict, dpo.mapping) == (NEEDS, {"prompt": "question"})
    assert "prompt ← 'question': the column is named like TRL's 'prompt'" in dpo.reasons


def test_grpo_accuracy_needs_answer_format_does_not():
    s = sample({"prompt": "What is 2+2?"})
    grpo = checks(s, rewards=["accuracy"])["grpo"]
    assert grpo.verdict is INCOMPATIBLE
    assert grpo.reasons[0].startswith(
        "reward 'accuracy' reads column(s) 'answer' and no column is named like it"
    )
    assert "rewards that fit this dataset: format" in grpo.reasons[0]
    grpo = checks(s, rewards=["format"])["grpo"]
    assert (grpo.verdict, grpo.format, grpo.reasons) == (READY, "prompt-only", ())


def test_grpo_user_reward_without_its_module_is_noted_not_checked():
    grpo = checks(sample({"prompt": "Hi"}), rewards=["rewards.py:score"])["grpo"]
    assert grpo.verdict is READY
    assert grpo.reasons == (
        "reward 'rewards.py:score' was not read (its module was not read): its columns are "
        "not checked",
    )


def test_grpo_proposes_prompt_and_answer_from_synonyms():
    s = sample({"problem": "What is 2+2?", "solution": "4"})
    grpo = checks(s, rewards=["accuracy", "format"])["grpo"]
    assert (grpo.verdict, grpo.mapping) == (NEEDS, {"prompt": "problem", "answer": "solution"})
    assert "prompt ← 'problem': the column is named like TRL's 'prompt'" in grpo.reasons


def test_grpo_answer_without_a_number_is_a_warning():
    s = sample({"prompt": "2+2?", "answer": "4"}, {"prompt": "Name?", "answer": "Bob"})
    grpo = checks(s, rewards=["accuracy"])["grpo"]
    assert grpo.verdict is READY
    assert grpo.warnings == (
        "row 1, column 'answer': has no number; the accuracy reward always scores 0 on this row",
    )


def test_vision_images_and_messages():
    row = {"images": [{"path": "cat.png"}], "messages": [user("What is this?"), bot("A cat.")]}
    sft = checks(sample(row))["sft"]
    assert (sft.verdict, sft.format) == (READY, "vision (images + messages)")


def test_vision_placeholders_must_match_images():
    content = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Same?"}]
    row = {"images": [{"path": "cat.png"}], "messages": [user(content), bot("Yes.")]}
    sft = checks(sample(row))["sft"]
    assert sft.verdict is INCOMPATIBLE
    assert sft.problems == (
        "row 0, column 'messages': has 2 image placeholder(s) but 'images' has 1 image(s)",
    )


def test_vision_dpo_needs_an_explicit_prompt():
    row = {"image": {"path": "cat.png"}, "chosen": "A cat.", "rejected": "A dog."}
    dpo = checks(sample(row))["dpo"]
    assert (dpo.verdict, dpo.format) == (
        INCOMPATIBLE,
        "vision (image + preference, implicit prompt)",
    )
    assert dpo.reasons[0].startswith("vision preference data needs an explicit prompt column")


# --- column names and mappings ----------------------------------------------------------------


def test_wrong_column_names_propose_the_mapping():
    s = sample({"prompt": "Sky?", "good_response": "Blue.", "bad_response": "Green."})
    dpo = checks(s)["dpo"]
    assert (dpo.verdict, dpo.format) == (NEEDS, "preference, explicit prompt")
    assert dpo.mapping == {"chosen": "good_response", "rejected": "bad_response"}
    assert dpo.reasons == (
        "chosen ← 'good_response': the column is named like TRL's 'chosen'",
        "rejected ← 'bad_response': the column is named like TRL's 'rejected'",
    )


def test_question_answer_maps_to_prompt_completion_for_sft():
    sft = checks(sample({"question": "2+2?", "answer": "4"}))["sft"]
    assert (sft.verdict, sft.mapping) == (NEEDS, {"prompt": "question", "completion": "answer"})


def test_prompt_synonym_is_proposed_for_preference_strings():
    s = sample({"question": "Sky?", "preferred": "Blue.", "dispreferred": "Green."})
    dpo = checks(s)["dpo"]
    assert dpo.mapping == {"chosen": "preferred", "rejected": "dispreferred", "prompt": "question"}
    assert dpo.format == "preference, explicit prompt"


def test_unknown_names_are_incompatible_naming_what_is_missing():
    dpo = checks(sample({"prompt": "Sky?", "first": "Blue.", "second": "Green."}))["dpo"]
    assert (dpo.verdict, dpo.mapping) == (INCOMPATIBLE, {})
    assert dpo.reasons == (
        "needs chosen + rejected (and optionally prompt); missing chosen, rejected and no "
        "column is named like them (the dataset has prompt, first, second)",
    )


def test_good_and_bad_answers_are_recognised_by_their_words():
    s = sample({"question": "Sky?", "good_answer": "Blue.", "bad_answer": "Green."})
    dpo = checks(s)["dpo"]
    assert (dpo.verdict, dpo.mapping) == (
        NEEDS,
        {"chosen": "good_answer", "rejected": "bad_answer", "prompt": "question"},
    )
    text = render_report(s, check_dataset(s), method="dpo")
    assert (
        "dataset:\n  columns:\n    prompt: question\n    chosen: good_answer\n"
        "    rejected: bad_answer\n" in text
    )


def test_ambiguous_synonyms_are_not_guessed():
    s = sample({"instruction": "Add.", "input": "2+2", "output": "4"})
    sft = checks(s)["sft"]
    assert (sft.verdict, sft.mapping) == (NEEDS, {"completion": "output"})
    assert (
        "prompt: several columns could be it (instruction, input); add the right one under "
        "dataset.columns" in sft.reasons
    )
    text = render_report(s, list(checks(s).values()), method="sft")
    assert "    completion: output\n    # prompt: several columns could be it" in text


def test_synonym_with_the_wrong_value_type_is_not_proposed():
    s = sample({"query": True, "response": "4"})
    sft = checks(s)["sft"]
    assert sft.verdict is INCOMPATIBLE
    assert "missing prompt" in sft.reasons[0]


def test_conversations_is_read_as_messages():
    sft = checks(sample({"conversations": [user("hi"), bot("hello")], "id": 3}))["sft"]
    assert (sft.verdict, sft.mapping) == (READY, {})
    assert sft.reasons == ("train.py keeps messages; reads conversations as messages; drops id",)


def test_sharegpt_from_value_turns_are_normalised():
    turns = [
        {"from": "system", "value": "be brief", "weight": None},
        {"from": "human", "value": "hi", "weight": None},
        {"from": "gpt", "value": "hello", "weight": 1.0},
    ]
    sft = checks(sample({"conversations": turns}))["sft"]
    assert (sft.verdict, sft.mapping, sft.problems) == (READY, {}, ())
    assert "as {role, content} (ShareGPT {from, value}" in sft.reasons[0]


def test_sharegpt_speaker_without_a_role_is_named():
    turns = [{"from": "human", "value": "hi"}, {"from": "bot", "value": "hello"}]
    sft = checks(sample({"conversations": turns}))["sft"]
    assert sft.verdict is INCOMPATIBLE
    assert sft.problems == (
        "row 0, column 'conversations' (messages): turn 1 has role 'bot'; expected one of "
        "system, developer, user, assistant, tool",
    )


def test_experiment_mapping_makes_dpo_ready():
    s = sample({"prompt": "Sky?", "good_response": "Blue.", "bad_response": "Green."})
    columns = {"chosen": "good_response", "rejected": "bad_response"}
    dpo = checks(s, columns=columns)["dpo"]
    assert (dpo.verdict, dpo.format, dpo.mapping) == (READY, "preference, explicit prompt", columns)


def test_experiment_mapping_problems_name_the_dataset_column():
    ok = {"prompt": "Sky?", "good_response": "Blue.", "bad_response": "Green."}
    s = sample(ok, ok, {**ok, "bad_response": ""})
    dpo = checks(s, columns={"chosen": "good_response", "rejected": "bad_response"})["dpo"]
    assert dpo.verdict is READY
    assert dpo.warnings == (
        "1 of 3 sampled rows (33%) have no content in 'bad_response' (rejected): "
        "train.py drops them",
    )


def test_experiment_mapping_is_completed_not_replaced():
    s = sample({"q": "Sky?", "good_response": "Blue.", "bad_response": "Green."})
    dpo = checks(s, columns={"prompt": "q"})["dpo"]
    assert dpo.verdict is NEEDS
    assert dpo.mapping == {"prompt": "q", "chosen": "good_response", "rejected": "bad_response"}


def test_mapping_to_a_missing_column_is_incompatible_naming_it():
    s = sample({"prompt": "Sky?", "good_response": "Blue.", "bad_response": "Green."})
    result = checks(s, columns={"chosen": "good_respnse", "rejected": "bad_response"})
    for check in result.values():
        assert check.verdict is INCOMPATIBLE
        assert check.reasons == (
            "dataset.columns maps chosen to 'good_respnse', but the dataset has no column "
            "'good_respnse' (it has prompt, good_response, bad_response)",
        )


def test_mapping_two_names_to_one_column_is_incompatible():
    s = sample({"question": "2+2?", "answer": "4"})
    grpo = checks(s, columns={"prompt": "question", "answer": "question"})["grpo"]
    assert grpo.verdict is INCOMPATIBLE
    assert grpo.reasons[0].startswith(
        "dataset.columns maps prompt and answer to the same column 'question'"
    )


def test_mapping_shadows_a_trl_named_column_like_train_py():
    s = sample({"chosen": "", "better": "Sky: Blue.", "rejected": "Sky: Green."})
    dpo = checks(s, columns={"chosen": "better"})["dpo"]
    assert (dpo.verdict, dpo.problems) == (READY, ())


def test_sft_prompt_beside_messages_is_dropped():
    s = sample({"prompt": "hi", "messages": [user("hi"), bot("hello")]})
    sft = checks(s)["sft"]
    assert (sft.verdict, sft.format, sft.mapping) == (READY, "conversational (messages)", {})
    assert sft.reasons == ("train.py keeps messages; drops prompt",)


def test_dpo_string_prompt_beside_whole_conversations_is_renamed_away():
    row = {
        "prompt": "Sky?",
        "chosen": [user("Sky?"), bot("Blue.")],
        "rejected": [user("Sky?"), bot("Green.")],
    }
    dpo = checks(sample(row))["dpo"]
    assert (dpo.verdict, dpo.mapping) == (READY, {})
    assert dpo.format == "preference, implicit prompt (conversational)"
    assert dpo.reasons == ("train.py keeps chosen, rejected; drops prompt",)


def test_dpo_string_prompt_the_file_mapped_is_kept_and_blocks():
    row = {
        "q": "Sky?",
        "chosen": [user("Sky?"), bot("Blue.")],
        "rejected": [user("Sky?"), bot("No")],
    }
    dpo = checks(sample(row), columns={"prompt": "q"})["dpo"]
    assert dpo.verdict is INCOMPATIBLE
    assert dpo.reasons[0].endswith("drop prompt from dataset.columns")


# --- content problems -------------------------------------------------------------------------


def test_roles_out_of_order_are_incompatible():
    sft = checks(sample({"messages": [system("s"), bot("hello"), user("hi"), bot("ok")]}))["sft"]
    assert sft.verdict is INCOMPATIBLE
    assert sft.problems == (
        "row 0, column 'messages': first non-system turn is 'assistant', not 'user'",
    )


def test_last_turn_not_assistant_is_incompatible_for_sft():
    sft = checks(sample({"messages": [user("hi"), bot("hello"), user("bye")]}))["sft"]
    assert sft.verdict is INCOMPATIBLE
    assert sft.problems == (
        "row 0, column 'messages': last turn is 'user'; it must be the assistant's, the turn "
        "that is trained",
    )


def test_consecutive_user_turns_are_a_warning():
    sft = checks(sample({"messages": [user("hi"), user("there"), bot("hello")]}))["sft"]
    assert sft.verdict is READY
    assert sft.warnings == (
        "row 0, column 'messages': turns 0 and 1 are both user; some chat templates "
        "(e.g. Gemma's) require alternating roles",
    )


def test_unknown_role_is_incompatible():
    sft = checks(sample({"messages": [{"role": "human", "content": "hi"}, bot("hello")]}))["sft"]
    assert sft.problems == (
        "row 0, column 'messages': turn 0 has role 'human'; expected one of system, developer, "
        "user, assistant, tool",
    )


def test_empty_rejected_is_incompatible():
    s = sample(
        {"prompt": "Sky?", "chosen": "Blue.", "rejected": "Green."},
        {"prompt": "Sea?", "chosen": "Blue.", "rejected": "  "},
    )
    dpo = checks(s)["dpo"]
    assert dpo.verdict is INCOMPATIBLE
    assert dpo.problems == ("row 1, column 'rejected': is empty",)


def test_chosen_and_rejected_of_mixed_types_are_incompatible():
    row = {"prompt": [user("Sky?")], "chosen": [bot("Blue.")], "rejected": "Green."}
    dpo = checks(sample(row))["dpo"]
    assert dpo.verdict is INCOMPATIBLE
    assert (
        "row 0, column 'rejected': chosen is a message list but rejected is a string; "
        "they must match" in dpo.problems
    )


def test_identical_chosen_and_rejected_is_a_warning():
    dpo = checks(sample({"prompt": "Sky?", "chosen": "Blue.", "rejected": "Blue."}))["dpo"]
    assert dpo.verdict is READY
    assert dpo.warnings == (
        "row 0, column 'rejected': is identical to chosen; the pair teaches nothing",
    )


def test_rows_without_content_are_dropped_with_a_warning():
    s = sample({"text": "a"}, {"text": "b"}, {"text": None})
    sft = checks(s)["sft"]
    assert (sft.verdict, sft.problems) == (READY, ())
    assert sft.warnings == (
        "1 of 3 sampled rows (33%) have no content in 'text': train.py drops them",
    )


def test_a_majority_without_content_is_refused():
    s = sample({"text": "a"}, {"text": ""}, {"text": None})
    sft = checks(s)["sft"]
    assert sft.verdict is INCOMPATIBLE
    assert sft.reasons[0] == (
        "2 of 3 sampled rows (67%) have no content in 'text': more than half, so the dataset "
        "is refused; fix or filter it"
    )


def test_a_turn_with_null_content_drops_its_row():
    good = {"messages": [user("hi"), bot("hello")]}
    s = sample(good, good, {"messages": [user("hi"), {"role": "assistant", "content": None}]})
    sft = checks(s)["sft"]
    assert sft.verdict is READY
    assert sft.warnings[0].startswith("1 of 3 sampled rows (33%) have no content in 'messages'")


def test_missing_key_in_a_row_counts_as_null():
    s = sample({"prompt": "a"}, {"prompt": "b"}, {"other": 1}, columns=["prompt", "other"])
    grpo = checks(s)["grpo"]
    assert grpo.warnings[0].startswith("1 of 3 sampled rows (33%) have no content in 'prompt'")


def test_an_empty_split_is_not_ready():
    s = DatasetSample(source="x", split="train", columns=["text"], rows=[], num_rows=0)
    for check in check_dataset(s):
        assert check.verdict is INCOMPATIBLE
        assert check.reasons == ("the 'train' split has no rows: there is nothing to train on",)


def test_prompt_types_mixed_across_rows_are_incompatible():
    s = sample({"prompt": "2+2?"}, {"prompt": [user("3+3?")]})
    grpo = checks(s)["grpo"]
    assert grpo.verdict is INCOMPATIBLE
    assert grpo.problems == (
        "row 1, column 'prompt': is a message list but row 0 is a string; a column must hold "
        "one type",
    )


def test_prompt_ending_with_system_is_incompatible_for_grpo():
    grpo = checks(sample({"prompt": [user("2+2?"), system("be brief")]}))["grpo"]
    assert grpo.verdict is INCOMPATIBLE
    assert grpo.problems[0].startswith("row 0, column 'prompt': ends with a system turn")


def test_completion_must_start_with_the_assistant():
    sft = checks(sample({"prompt": [user("2+2?")], "completion": [user("4")]}))["sft"]
    assert sft.problems == (
        "row 0, column 'completion': starts with a 'user' turn; a completion after a prompt is "
        "the assistant's reply",
    )


def test_problem_lists_are_capped():
    s = sample(*({"text": 5} for _ in range(25)))
    sft = checks(s)["sft"]
    assert len(sft.problems) == MAX_LISTED + 1
    assert sft.problems[-1] == "... and 15 more in the sampled rows"
    assert sft.headline == "standard (text): 25 problem(s) in the sampled rows"


def test_no_rows_checks_names_only():
    s = DatasetSample(source="x", split="train", columns=["text"], rows=[])
    sft = checks(s)["sft"]
    assert sft.verdict is READY
    assert "no rows were sampled: only the column names were checked" in sft.reasons


# --- rendering --------------------------------------------------------------------------------


def test_render_report_shows_the_paste_snippet():
    s = sample({"prompt": "Sky?", "good_response": "Blue.", "bad_response": "Green."})
    text = render_report(s, check_dataset(s), method="dpo")
    assert text.splitlines()[0] == "Dataset x (split train, local file): size unknown, 1 sampled"
    assert (
        "DPO: NEEDS MAPPING — preference, explicit prompt; paste:\n"
        "dataset:\n  columns:\n    chosen: good_response\n    rejected: bad_response\n" in text
    )
    assert text.splitlines()[-1] == "Other methods: SFT INCOMPATIBLE, GRPO READY"


def test_render_report_all_methods():
    s = sample({"messages": [user("hi"), bot("hello")]})
    lines = render_report(s, check_dataset(s)).splitlines()
    assert "SFT: READY — conversational (messages)" in lines
    assert any(line.startswith("DPO: INCOMPATIBLE — needs chosen + rejected") for line in lines)


def test_render_report_marks_problems():
    s = sample({"text": 5})
    text = render_report(s, check_dataset(s))
    assert "  ! row 0, column 'text': is a number; expected a string" in text


def test_mapping_yaml_quotes_what_yaml_would_misread():
    assert mapping_yaml({"chosen": "good response", "label": "yes"}) == (
        'dataset:\n  columns:\n    chosen: "good response"\n    label: "yes"'
    )


def test_report_to_json_is_plain_json():
    s = sample({"prompt": "Sky?", "good_response": "Blue.", "bad_response": "Green."})
    data = report_to_json(s, check_dataset(s), method="dpo")
    assert json.loads(json.dumps(data)) == data
    dpo = next(c for c in data["checks"] if c["method"] == "dpo")
    assert dpo["verdict"] == "NEEDS MAPPING"
    assert dpo["mapping"] == {"chosen": "good_response", "rejected": "bad_response"}
    assert data["columns"] == ["prompt", "good_response", "bad_response"]


def test_data_report_for_method():
    report = build_report(sample({"text": "a"}))
    assert isinstance(report, DataReport)
    assert report.for_method("sft").verdict is READY
    assert [c.method for c in report.checks] == ["sft", "dpo", "grpo"]
    with pytest.raises(KeyError):
        report.for_method("ppo")


# --- agreement with job_scripts/train.py -----------------------------------------------------


@functools.cache
def train_module():
    if str(TRAIN_SCRIPT.parent) not in sys.path:  # as a job runs it: helpers beside it
        sys.path.insert(0, str(TRAIN_SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("ci_runner_job_train_formats", TRAIN_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_py_accepts(s: DatasetSample, method: str, columns: dict[str, str], rewards: list[str]):
    """train.py's own data steps (rename, shape for TRL, column check) on a real Dataset."""
    datasets = pytest.importorskip("datasets")
    train = train_module()
    import rewards as reward_module
    import train_data

    config = job_run_config(method, {"path": "x", "columns": columns}, rewards=rewards)
    needs = reward_module.resolve_rewards([r for r in rewards if ".py" not in r])[1]
    try:
        dataset = train_data.rename_columns(datasets.Dataset.from_list(s.rows), columns)
        dataset, _, _ = train_data.shape_for_trl(dataset, config, "train")
        train_data.check_columns(dataset, config, needs if method == "grpo" else set(), "train")
    except train.ConfigError:
        return False
    return True


AGREEMENT_CASES = [
    ({"messages": [user("hi"), bot("hello")]}, {}, []),
    ({"text": "a"}, {}, []),
    ({"prompt": "q", "completion": "a"}, {}, []),
    ({"question": "q", "answer": "4"}, {}, ["accuracy"]),
    ({"problem": "q", "solution": "4"}, {}, ["accuracy", "format"]),
    ({"prompt": "q", "good_response": "a", "bad_response": "b"}, {}, []),
    ({"prompt": "q", "good_response": "a", "bad_response": "b"}, {"chosen": "good_response"}, []),
    ({"prompt": "q", "good": "a", "bad": "b"}, {"chosen": "good", "rejected": "bd"}, []),
    ({"chosen": "", "better": "q: a", "rejected": "q: b"}, {"chosen": "better"}, []),
    ({"conversations": [user("hi"), bot("hello")]}, {}, []),
    ({"prompt": "q"}, {}, ["accuracy"]),
    ({"first": "a", "second": "b"}, {}, []),
]


@pytest.mark.parametrize(("row", "columns", "rewards"), AGREEMENT_CASES)
@pytest.mark.slow
def test_verdicts_agree_with_train_py(row, columns, rewards):
    """READY / NEEDS MAPPING (with the proposed mapping) pass train.py; column misses fail it."""
    s = sample(row)
    for check in check_dataset(s, columns=columns, rewards=rewards):
        accepted = train_py_accepts(s, check.method, check.mapping, rewards)
        assert accepted is (check.verdict is not INCOMPATIBLE), (check.method, check)


def test_vision_preference_with_explicit_prompt():
    row = {
        "images": [{"path": "cat.png"}],
        "prompt": [user("What is this?")],
        "chosen": [bot("A cat.")],
        "rejected": [bot("A dog.")],
    }
    result = checks(sample(row))
    assert (result["dpo"].verdict, result["dpo"].format) == (
        READY,
        "vision (images + preference, explicit prompt)",
    )


def test_a_mapped_prompt_beside_messages_is_dropped_like_train_py_does():
    """SFT on messages never reads a prompt, so one the file mapped goes too."""
    s = sample({"question": "hi", "messages": [user("hi"), bot("hello")]})
    columns = {"prompt": "question"}
    sft = checks(s, columns=columns)["sft"]
    assert sft.verdict is READY
    assert train_py_accepts(s, "sft", columns, []) is True


def test_sharegpt_prompt_is_normalised_for_grpo():
    grpo = checks(sample({"prompt": [{"from": "human", "value": "2+2?"}]}))["grpo"]
    assert (grpo.verdict, grpo.problems) == (READY, ())
    assert grpo.format == "prompt-only (conversational)"


def test_grpo_missing_answer_leads_with_the_reward_even_when_mapping_prompt():
    grpo = checks(sample({"question": "2+2?"}), rewards=["accuracy"])["grpo"]
    assert (grpo.verdict, grpo.mapping) == (INCOMPATIBLE, {"prompt": "question"})
    assert grpo.reasons[0].startswith("reward 'accuracy' reads column(s) 'answer'")
