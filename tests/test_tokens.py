"""Counting tokens without transformers gives transformers' own counts.

Two tokenizers, each loaded both ways (``ci_runner.data.tokens`` and transformers 5's
``AutoTokenizer``/``PreTrainedTokenizerFast``), must give equal counts for every shape
``ci_runner.data.lengths`` measures:

- the offline fixture (a Llama tokenizer with a ChatML template), ids equal too;
- Qwen3's ``tokenizer_config.json`` (its chat template, special and added tokens, kept
  in tests/model_configs/Qwen3-0.6B) over a small byte-level BPE trained here with
  Qwen2's pre-tokenizer: the real 11 MB ``tokenizer.json`` is not reachable offline.
  Its ids differ from Qwen3's (a 700-token vocabulary), so only counts are compared.
  Provenance: no verbatim copy of the Hub file was reachable. The template is TRL 1.16's
  ``chat_templates/qwen3.jinja`` (TRL patches Qwen3-0.6B's template only on exact
  equality with it); the added tokens and special-token settings come from a verbatim
  Qwen3-family config (ids 151643-151668; ``model_max_length`` unconfirmed).

Then the fallbacks: transformers for a tokenizer without ``tokenizer.json``, the
4-chars-per-token estimate without any tokenizer, and the Hub cache and download.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ci_runner.data.check import check_experiment_data, check_sample, render_lengths
from ci_runner.data.lengths import load_tokenizer, tokenizer_counter
from ci_runner.data.sample import DatasetSample
from ci_runner.data.tokens import ChatTokenizer, load_chat_tokenizer, render_chat_template
from ci_runner.job_scripts import shaping
from ci_runner.spec.load import parse_experiment
from tests.conftest import ROOT
from tests.model_hub import model_hub

QWEN3_CONFIG = ROOT / "tests" / "model_configs" / "Qwen3-0.6B" / "tokenizer_config.json"
# Qwen2Tokenizer's pre-tokenizer split, as transformers 5.23 rebuilds it for Qwen2/Qwen3.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

SYSTEM = {"role": "system", "content": "You are a careful assistant. Réponds brièvement."}
TOOL_CALL = {
    "type": "function",
    "function": {"name": "get_weather", "arguments": {"city": "Zürich", "unit": "°C"}},
}
CONVERSATIONS = {
    "user only": [{"role": "user", "content": "What is 13 * 17?"}],
    "system, user, assistant": [
        SYSTEM,
        {"role": "user", "content": "Name a prime above 100."},
        {"role": "assistant", "content": "101 is prime."},
    ],
    "multi-turn": [
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello. How can I help?"},
        {"role": "user", "content": "Write `def f(x):\n    return x ** 2` as a lambda."},
        {"role": "assistant", "content": "f = lambda x: x ** 2\n\n\n  (same thing)"},
    ],
    "reasoning_content": [
        {"role": "user", "content": "2 + 2?"},
        {"role": "assistant", "content": "4", "reasoning_content": "Two plus two.\n"},
        {"role": "user", "content": "And 3 + 3?"},
        {"role": "assistant", "content": "6", "reasoning_content": "\nThree plus three."},
    ],
    "inline think, thinking alias": [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "<think>\nEasy.\n</think>\n\nParis."},
        {"role": "user", "content": "Of Japan?"},
        {"role": "assistant", "content": "Tokyo.", "thinking": "Also easy."},
    ],
    "tool calls": [
        {"role": "user", "content": "Weather in Zürich and Genève?"},
        {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL, TOOL_CALL]},
        {"role": "tool", "content": '{"temp": 21}'},
        {"role": "tool", "content": '{"temp": 23}'},
        {"role": "assistant", "content": "21 °C and 23 °C. 🌤"},
    ],
    "special tokens in content": [
        {"role": "user", "content": "Say <|im_end|> then <think> literally, 数字 1234567."},
        {"role": "assistant", "content": "<|im_end|> and <think>"},
    ],
}

# One row per shape ``shaping.trainer_inputs`` knows, for the method that reads it.
SHAPES = {
    "sft": [
        {"messages": CONVERSATIONS["system, user, assistant"]},
        {"prompt": "Translate 'cat' to German.", "completion": "Katze"},
        {
            "prompt": [{"role": "user", "content": "2 + 3?"}],
            "completion": [{"role": "assistant", "content": "5"}],
        },
        {"text": "Plain text, no roles:\n\tindented, spaced  out."},
    ],
    "dpo": [
        {"prompt": "Best color?", "chosen": "Blue, calmly.", "rejected": "No."},
        {
            "chosen": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
            ],
            "rejected": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Go away, I am very busy today."},
            ],
        },
        {
            "prompt": [{"role": "user", "content": "7 * 6?"}],
            "chosen": [{"role": "assistant", "content": "42"}],
            "rejected": [{"role": "assistant", "content": "41"}],
        },
    ],
    "grpo": [
        {"prompt": "What is 6 * 7? Answer inside <answer></answer>."},
        {"prompt": [SYSTEM, {"role": "user", "content": "What is 6 * 7?"}]},
    ],
}
TEXTS = ["Hello world", " leading space,  double\n\nnewlines\t", "数字 123456 é 🌤", ""]


def inputs_of(row: dict, method: str) -> list[shaping.Tokenized]:
    """What TRL tokenizes for one row, as the job shapes it."""
    shape = shaping.choose_shape(method, list(row), shaping.first_values([row]))
    return shaping.trainer_inputs(shaping.shape_row(row, shape), shape, method, eos="<|im_end|>")


def lengths(rows: list[dict], method: str, count) -> list[int]:
    return [max(count(item) for item in inputs_of(row, method)) for row in rows]


def chats(row: dict, method: str) -> list[list[dict]]:
    return [item.messages for item in inputs_of(row, method) if item.messages]


def hf_ids(tokenizer, messages, **kwargs) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, **kwargs)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def fixture_rows(tiny_fixtures) -> dict[str, list[dict]]:
    def read(path: Path) -> list[dict]:
        return [json.loads(line) for line in path.read_text().splitlines()]

    return {
        "sft": read(tiny_fixtures.sft_data),
        "dpo": read(tiny_fixtures.dpo_data),
        "grpo": read(tiny_fixtures.grpo_data),
    }


# --- the fixture tokenizer (Llama, ChatML) -------------------------------------------


@pytest.fixture(scope="module")
def fixture_pair(tiny_fixtures):
    from transformers import AutoTokenizer

    folder = tiny_fixtures.model
    return ChatTokenizer.from_dir(folder), AutoTokenizer.from_pretrained(folder)


def test_fixture_tokenizer_gives_transformers_ids_for_every_shape(fixture_pair, tiny_fixtures):
    ours, theirs = fixture_pair
    assert ours.chat_template == theirs.chat_template
    rows = {m: SHAPES[m] + fixture_rows(tiny_fixtures)[m] for m in SHAPES}
    checked = 0
    for method, method_rows in rows.items():
        for row in method_rows:
            for part in chats(row, method):
                assert ours.encode_chat(part) == hf_ids(theirs, part), (method, row)
                checked += 1
        counter = tokenizer_counter(theirs)
        assert lengths(method_rows, method, ours.count_input) == lengths(
            method_rows, method, counter
        )
    assert checked > 64 * 2
    for text in TEXTS:
        assert ours.encode(text) == theirs(text)["input_ids"]


def test_fixture_tokenizer_matches_on_every_conversation(fixture_pair):
    ours, theirs = fixture_pair
    for name, messages in CONVERSATIONS.items():
        plain = [{"role": m["role"], "content": m["content"] or ""} for m in messages]
        assert ours.encode_chat(plain) == hf_ids(theirs, plain), name
        prompt = ours.encode_chat(plain, add_generation_prompt=True)
        assert prompt == hf_ids(theirs, plain, add_generation_prompt=True), name


def test_keys_set_to_none_are_dropped_before_rendering(fixture_pair):
    ours, theirs = fixture_pair
    template = (
        "{% for m in messages %}{{ m.role }}:{{ m.content if m.content is defined else '-' }}"
        "{% if m.tool_calls is defined %}{{ m.tool_calls | tojson }}{% endif %}\n{% endfor %}"
    )
    messages = [
        {"role": "user", "content": "hi", "tool_calls": None},
        {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
    ]
    rendered = ours.render_chat(messages, chat_template=template)
    assert rendered.startswith("user:hiassistant:-[{")  # trim_blocks: no newline
    assert ours.encode_chat(messages, chat_template=template) == hf_ids(
        theirs, messages, chat_template=template
    )


def test_a_bos_post_processor_applies_to_text_but_not_to_a_rendered_chat(tiny_fixtures, tmp_path):
    """``tokenizer(text)`` adds what tokenizer.json's post-processor adds; a chat does not."""
    from tokenizers import Tokenizer, processors
    from transformers import AutoTokenizer

    folder = tmp_path / "bos"
    shutil.copytree(tiny_fixtures.model, folder)
    backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B:1", special_tokens=[("<s>", 1)]
    )
    backend.save(str(folder / "tokenizer.json"))
    ours, theirs = ChatTokenizer.from_dir(folder), AutoTokenizer.from_pretrained(folder)
    for text in TEXTS:
        assert ours.encode(text) == theirs(text)["input_ids"]
        assert ours.encode(text)[0] == 1
    messages = CONVERSATIONS["multi-turn"]
    assert ours.encode_chat(messages) == hf_ids(theirs, messages)
    assert ours.encode_chat(messages)[0] != 1

    (folder / "chat_template.jinja").unlink()  # no template: contents counted as text
    ours, theirs = ChatTokenizer.from_dir(folder), AutoTokenizer.from_pretrained(folder)
    assert ours.chat_template is None and theirs.chat_template is None
    for method, rows in SHAPES.items():
        assert lengths(rows, method, ours.count_input) == lengths(
            rows, method, tokenizer_counter(theirs)
        )


@pytest.mark.parametrize("split_special_tokens", [False, True])
def test_config_tokens_missing_from_tokenizer_json_are_added_as_transformers_does(
    tiny_fixtures, tmp_path, split_special_tokens
):
    """tokenizer.json without ``<|im_start|>`` as an added token; the config declares it."""
    from transformers import AutoTokenizer

    folder = tmp_path / "reconcile"
    shutil.copytree(tiny_fixtures.model, folder)
    spec = json.loads((folder / "tokenizer.json").read_text())
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] != "<|im_start|>"]
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["split_special_tokens"] = split_special_tokens
    config["tool_token"] = "<tool>"  # a model-specific special token, new to the vocabulary
    config["added_tokens_decoder"]["600"] = {"content": "<think>", "special": False}  # not special
    (folder / "tokenizer_config.json").write_text(json.dumps(config))

    ours, theirs = ChatTokenizer.from_dir(folder), AutoTokenizer.from_pretrained(folder)
    assert ours.special_tokens_map == theirs.special_tokens_map
    for messages in CONVERSATIONS.values():
        plain = [{"role": m["role"], "content": m["content"] or ""} for m in messages]
        assert len(ours.encode_chat(plain)) == len(hf_ids(theirs, plain))
    for text in [*TEXTS, "<|im_start|>user\nhi<tool><think><|im_end|>"]:
        assert len(ours.encode(text)) == len(theirs(text)["input_ids"])
    assert len(ours.encode("<think>")) == 1  # added, and not special: never split
    if not split_special_tokens:
        assert len(ours.encode("<|im_start|><tool>")) == 2


# --- Qwen3's real chat template and tokens --------------------------------------------


def qwen3_corpus() -> list[str]:
    words = []
    for messages in CONVERSATIONS.values():
        words += [m["content"] or "" for m in messages]
        words += [json.dumps(m, ensure_ascii=False) for m in messages]
    words += [json.dumps(TOOL_CALL), "# Tools\n\nYou may call one or more functions", *TEXTS]
    return words * 3


def build_qwen3_like(folder: Path) -> Path:
    """A byte-level BPE with Qwen2's pipeline and Qwen3's added tokens, plus the real config."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from tokenizers.models import BPE

    config = json.loads(QWEN3_CONFIG.read_text())
    tokenizer = Tokenizer(BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=700, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(qwen3_corpus(), trainer)
    for entry in config["added_tokens_decoder"].values():
        token = AddedToken(entry["content"], special=entry["special"], normalized=False)
        if entry["special"]:
            tokenizer.add_special_tokens([token])
        else:
            tokenizer.add_tokens([token])
    folder.mkdir(parents=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    shutil.copy(QWEN3_CONFIG, folder / "tokenizer_config.json")
    return folder


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    folder = build_qwen3_like(tmp_path_factory.mktemp("qwen3") / "Qwen3-0.6B")
    auto = transformers.AutoTokenizer.from_pretrained(folder)
    fast = transformers.PreTrainedTokenizerFast.from_pretrained(folder)
    return ChatTokenizer.from_dir(folder), auto, fast


def test_qwen3_is_loaded_by_transformers_as_users_get_it(qwen3):
    ours, auto, fast = qwen3
    assert type(auto).__name__ == "Qwen2Tokenizer"  # the class its config names
    assert (
        ours.chat_template
        == auto.chat_template
        == json.loads(QWEN3_CONFIG.read_text())["chat_template"]
    )
    assert ours.special_tokens_map == auto.special_tokens_map == fast.special_tokens_map
    assert ours.special_tokens_map == {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    for token in ("<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>"):
        assert len(ours.encode(token)) == 1
        assert len(auto(token)["input_ids"]) == 1


@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_qwen3_template_counts_equal_transformers(qwen3, name):
    ours, auto, fast = qwen3
    messages = CONVERSATIONS[name]
    assert ours.render_chat(messages) == auto.apply_chat_template(messages, tokenize=False)
    assert len(ours.encode_chat(messages)) == len(hf_ids(auto, messages))
    assert len(ours.encode_chat(messages)) == len(hf_ids(fast, messages))
    for kwargs in ({"add_generation_prompt": True}, {"enable_thinking": False}):
        if kwargs.get("enable_thinking") is False:
            kwargs["add_generation_prompt"] = True
        ids = ours.encode_chat(messages[:1], **kwargs)
        assert len(ids) == len(hf_ids(auto, messages[:1], **kwargs)), kwargs


def test_qwen3_thinking_is_rendered_for_the_turns_after_the_last_question(qwen3):
    ours, auto, _ = qwen3
    text = ours.render_chat(CONVERSATIONS["reasoning_content"])
    assert "Two plus two" not in text  # before the last user turn: dropped
    assert "<|im_start|>assistant\n<think>\nThree plus three.\n</think>\n\n6<|im_end|>" in text
    closed = ours.render_chat(
        CONVERSATIONS["user only"], add_generation_prompt=True, **{"enable_thinking": False}
    )
    assert closed.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_qwen3_tools_render_through_tojson_like_transformers(qwen3):
    ours, auto, _ = qwen3
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"a": "ü"}}}]
    messages = CONVERSATIONS["tool calls"]
    rendered = ours.render_chat(messages, tools=tools)
    assert rendered == auto.apply_chat_template(messages, tools=tools, tokenize=False)
    assert '"arguments": {"city": "Zürich", "unit": "°C"}' in rendered  # no \\u escapes
    assert len(ours.encode_chat(messages, tools=tools)) == len(hf_ids(auto, messages, tools=tools))


def test_qwen3_counts_every_shape_like_transformers(qwen3, tiny_fixtures):
    ours, auto, _ = qwen3
    rows = {m: SHAPES[m] + fixture_rows(tiny_fixtures)[m] for m in SHAPES}
    for method, method_rows in rows.items():
        for row in method_rows:
            for part in chats(row, method):
                assert len(ours.encode_chat(part)) == len(hf_ids(auto, part)), (method, row)
        assert lengths(method_rows, method, ours.count_input) == lengths(
            method_rows, method, tokenizer_counter(auto)
        )
    for text in TEXTS:
        assert len(ours.encode(text)) == len(auto(text)["input_ids"])


def test_an_empty_conversation_counts_zero(fixture_pair, qwen3):
    for ours in (fixture_pair[0], qwen3[0]):
        assert ours.count([]) == 0  # transformers refuses it; a data check carries on
        assert ours.count_input(shaping.Tokenized(messages=[])) == 0


def test_template_sandbox_matches_transformers_helpers():
    template = (
        "{% set ns = namespace(n=0) %}{% for m in messages %}{% if m.skip %}{% continue %}"
        "{% endif %}{% set ns.n = ns.n + 1 %}{% generation %}{{ m.content | tojson }}"
        "{% endgeneration %}\n{% endfor %}{{ ns.n }} {{ dict(a=1) | tojson(sort_keys=True) }}"
        "{% if strftime_now('%Y') | length != 4 %}{{ raise_exception('no year') }}{% endif %}\n"
        "  {% if add_generation_prompt is false %}\n  indented\n  {% endif %}\n"
    )
    messages = [{"content": "<b>ü</b>"}, {"content": "x", "skip": True}]
    rendered = render_chat_template(template, messages)
    # trim_blocks eats a newline after a tag, lstrip_blocks the indent before one; no HTML escapes
    assert rendered == '"<b>ü</b>"1 {"a": 1}  indented\n'
    utils = pytest.importorskip("transformers.utils.chat_template_utils")
    assert utils.render_jinja_template([messages], chat_template=template)[0] == [rendered]
    import jinja2.exceptions

    with pytest.raises(jinja2.exceptions.TemplateError, match="stop"):
        render_chat_template("{{ raise_exception('stop') }}", messages)
    with pytest.raises(jinja2.exceptions.SecurityError):
        render_chat_template("{% set ns = namespace(_x=1) %}", messages)
    with pytest.raises(jinja2.exceptions.SecurityError):  # the sandbox holds
        render_chat_template("{{ messages.__class__.__mro__ }}", messages)


# --- where the tokenizer comes from, and the fallbacks --------------------------------


def test_load_tokenizer_takes_the_fast_path_without_importing_transformers(tiny_fixtures, tmp_path):
    """Neither counting nor estimating imports transformers; the CLI imports neither library."""
    (tmp_path / "bare").mkdir()
    code = (
        "import sys; from pathlib import Path\n"
        "from ci_runner.data.lengths import load_tokenizer, tokenizer_counter\n"
        "import ci_runner.cli\n"
        "loaded = [m for m in ('tokenizers', 'jinja2') if m in sys.modules]\n"
        f"root = Path({str(tmp_path)!r})\n"
        "none = [load_tokenizer(m, root=root) for m in ('./bare', 'org/not-cached')]\n"
        f"tok = load_tokenizer({str(tiny_fixtures.model)!r}, root=root)\n"
        "from ci_runner.job_scripts.shaping import Tokenized\n"
        "n = tokenizer_counter(tok)(Tokenized(messages=[{'role': 'user', 'content': 'hi'}]))\n"
        "heavy = [m for m in ('transformers', 'torch', 'sentencepiece') if m in sys.modules]\n"
        "print(type(tok).__name__, n > 0, none == [None, None], loaded, heavy)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.split() == ["ChatTokenizer", "True", "True", "[]", "[]"]


def test_without_tokenizer_json_transformers_counts(fixture_pair, tiny_fixtures, tmp_path):
    folder = tmp_path / "spm-only"
    shutil.copytree(tiny_fixtures.model, folder)
    (folder / "tokenizer.json").unlink()
    assert load_chat_tokenizer("./spm-only", root=tmp_path) is None
    tokenizer = load_tokenizer("./spm-only", root=tmp_path)
    assert tokenizer is not None and not isinstance(tokenizer, ChatTokenizer)
    ours, _ = fixture_pair
    rows = SHAPES["sft"] + fixture_rows(tiny_fixtures)["sft"]
    counted = lengths(rows, "sft", tokenizer_counter(tokenizer))
    assert counted == lengths(rows, "sft", ours.count_input) and min(counted) > 5


def test_without_any_tokenizer_lengths_are_estimated(tmp_path):
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "config.json").write_text("{}")
    assert load_tokenizer("./bare", root=tmp_path) is None
    assert load_tokenizer("./missing", root=tmp_path) is None
    # HF_HUB_OFFLINE (tests/conftest.py): an uncached Hub model is never fetched
    assert load_tokenizer("Qwen/Qwen3-0.6B", root=tmp_path) is None

    rows = [{"messages": [{"role": "user", "content": "x" * 40}]}]
    sample = DatasetSample(source="./d.jsonl", split="train", columns=["messages"], rows=rows)
    spec = "name: x\nbase_model: ./bare\nmethod: sft\ndataset: ./d.jsonl\n"
    result = check_experiment_data(parse_experiment(spec, "x.yaml"), root=tmp_path, sample=sample)
    assert not result.lengths.exact and result.lengths.max == 10
    assert "tokens (estimated at 4 chars/token)" in render_lengths(result.lengths)
    assert result.to_json()["lengths"]["exact"] is False


def test_check_sample_counts_with_a_chat_tokenizer(fixture_pair, tiny_fixtures):
    ours, theirs = fixture_pair
    rows = fixture_rows(tiny_fixtures)["dpo"]
    sample = DatasetSample(source="./p.jsonl", split="train", columns=list(rows[0]), rows=rows)
    spec = parse_experiment("name: x\nbase_model: ./m\nmethod: dpo\ndataset: ./p.jsonl\n", "x.yaml")
    fast = check_sample(sample, spec, tokenizer=ours)
    slow = check_sample(sample, spec, tokenizer=theirs)
    assert fast.lengths.exact and fast.to_json() == slow.to_json()
    assert "tokens (model tokenizer)" in fast.render()


HUB_FILES_SEEN = {
    ("GET", "/org/tiny/resolve/main/tokenizer.json"),
    ("GET", "/org/tiny/resolve/main/tokenizer_config.json"),
    ("GET", "/org/tiny/resolve/main/chat_template.jinja"),
}


@pytest.mark.usefixtures("loopback_online")
def test_a_hub_model_is_counted_from_its_tokenizer_files_then_from_the_cache(
    fixture_pair, tiny_fixtures, tmp_path, monkeypatch
):
    from huggingface_hub import constants

    files = {
        name: (tiny_fixtures.model / name).read_bytes()
        for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
    }
    files["model.safetensors"] = b"never fetched"
    messages = CONVERSATIONS["multi-turn"]
    ours, _ = fixture_pair
    with model_hub(tmp_path, monkeypatch, {"org/tiny": files}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        fetched = load_tokenizer("org/tiny", root=tmp_path)
        assert isinstance(fetched, ChatTokenizer)
        assert fetched.encode_chat(messages) == ours.encode_chat(messages)
        assert {(method, path) for method, path, _ in hub.seen} >= HUB_FILES_SEEN
        assert not any("safetensors" in path for _, path, _ in hub.seen)

        hub.seen.clear()
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
        cached = load_tokenizer("org/tiny", root=tmp_path)
        assert isinstance(cached, ChatTokenizer) and hub.seen == []
        assert cached.encode_chat(messages) == ours.encode_chat(messages)
        assert load_tokenizer("org/other", root=tmp_path) is None and hub.seen == []

        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        assert load_tokenizer("org/other", root=tmp_path, download=False) is None
        assert hub.seen == []


@pytest.mark.usefixtures("loopback_online")
def test_a_cached_tokenizer_json_without_its_config_is_completed(
    fixture_pair, tiny_fixtures, tmp_path, monkeypatch
):
    from huggingface_hub import HfApi

    files = {
        name: (tiny_fixtures.model / name).read_bytes()
        for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
    }
    with model_hub(tmp_path, monkeypatch, {"org/tiny": files}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        HfApi(endpoint=hub.url).hf_hub_download("org/tiny", "tokenizer.json")
        tokenizer = load_chat_tokenizer("org/tiny", root=tmp_path)
    assert ("GET", "/org/tiny/resolve/main/chat_template.jinja") in {m[:2] for m in hub.seen}
    assert tokenizer.chat_template == fixture_pair[0].chat_template


@pytest.mark.usefixtures("loopback_online")
def test_hub_errors_leave_an_estimate(tmp_path, monkeypatch):
    with model_hub(tmp_path, monkeypatch, {"org/spm": {"tokenizer.model": b"x"}}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert load_chat_tokenizer("org/spm", root=tmp_path) is None  # no tokenizer.json: 404
        hub.fail = 401  # gated
        assert load_chat_tokenizer("org/gated", root=tmp_path) is None
