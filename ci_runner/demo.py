"""The offline demo's model and data: a tiny Llama, its tokenizer, small datasets, benchmarks.

Nothing can be downloaded from the Hub in CI or on an air-gapped laptop, so the
demo and the tests train on a model and data built here. Everything is seeded,
so two builds give the same files. The heavy libraries (torch, transformers,
sentencepiece) are imported inside the functions that need them: importing
``ci_runner`` must stay cheap for the runner, which never trains.

Tokenizer recipe (see DESIGN.md, "Facts checked"): a sentencepiece BPE with
byte fallback and split digits, loaded as a ``LlamaTokenizer`` without a prefix
space, ChatML tokens marked special. It is the one recipe that survived every
later step (TRL, lighteval, GGUF conversion and Q4_K_M quantization).
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import LlamaTokenizer

MODEL_DIRNAME = "tiny-llama"
SFT_FILENAME = "tiny-chat.jsonl"
DPO_FILENAME = "tiny-prefs.jsonl"
GRPO_FILENAME = "tiny-math.jsonl"
HUMANEVAL_DIRNAME = "tiny-humaneval"  # openai/openai_humaneval format, split "test"
GSM8K_DIRNAME = "tiny-gsm8k"  # openai/gsm8k format, splits "train" (few-shot) and "test"
SHOP_FILENAME = "tiny-shop.jsonl"  # the demo's training data: prompt-completion SFT rows
SHOP_DIRNAME = "tiny-shop"  # its benchmark, held-out questions in openai/gsm8k format
ROWS = 64
VOCAB_SIZE = 512
MAX_LENGTH = 2048
SEED = 1234

SPECIAL_TOKENS = ["<|im_start|>", "<|im_end|>", "<pad>"]
SYSTEM_PROMPT = "You are a concise assistant."
GRPO_INSTRUCTION = "Answer with a number inside <answer></answer>."

# ChatML, as Qwen writes it; `add_generation_prompt` opens the assistant turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Short facts for the SFT and DPO data: (question, right answer, wrong answer).
FACTS = [
    ("What color is the sky on a clear day?", "The sky is blue.", "The sky is green."),
    ("How many legs does a cat have?", "A cat has 4 legs.", "A cat has 7 legs."),
    ("What do bees make?", "Bees make honey.", "Bees make bread."),
    ("What is the opposite of hot?", "The opposite of hot is cold.", "The opposite is loud."),
    ("Which planet do we live on?", "We live on Earth.", "We live on the Sun."),
    ("What do plants need to grow?", "Plants need water and light.", "Plants need only sand."),
    ("How many days are in a week?", "A week has 7 days.", "A week has 3 days."),
    ("What is frozen water called?", "Frozen water is ice.", "Frozen water is smoke."),
]


TRAIN_MODULES = ("torch", "transformers", "sentencepiece")
INSTALL_TRAIN = "pip install 'ci-runner[train]' (from a checkout: pip install -e '.[train]')"


def require_train_extra() -> None:
    """Stop before writing anything when the libraries that build the model are missing."""
    import importlib.util

    from ci_runner.errors import NotReadyError

    missing = [m for m in TRAIN_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise NotReadyError(
            f"ci-runner fixtures builds a model with {', '.join(TRAIN_MODULES)}; this Python "
            f"lacks {', '.join(missing)}: install the train extra: {INSTALL_TRAIN}"
        )


@dataclass(frozen=True)
class DemoPaths:
    """Where :func:`build_demo` put each artifact (all absolute)."""

    model: Path
    sft_data: Path
    dpo_data: Path
    grpo_data: Path
    # Benchmark folders for job_scripts/evaluate.py (``BenchmarkSpec.dataset``).
    humaneval_data: Path | None = None
    gsm8k_data: Path | None = None
    # The demo's task: training rows, and a benchmark of questions they never ask.
    shop_data: Path | None = None
    shop_benchmark: Path | None = None


def build_demo(out_dir: Path, *, force: bool = False) -> DemoPaths:
    """Write the datasets and the tiny model under ``out_dir``.

    Idempotent: a dataset file is only written when its (seeded, so fixed) text
    differs, and the model is rebuilt only when ``force`` is set or its
    ``config.json`` is missing.
    """
    out_dir = Path(out_dir).resolve()
    data_dir = out_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)

    rows_by_file = {
        SFT_FILENAME: _sft_rows(random.Random(SEED)),
        DPO_FILENAME: _dpo_rows(random.Random(SEED + 1)),
        GRPO_FILENAME: _grpo_rows(random.Random(SEED + 2)),
    }
    for name, rows in rows_by_file.items():
        _write_jsonl(data_dir / name, rows)
    # Benchmark data stays out of the tokenizer corpus: the model is the same with or without it.
    humaneval_dir, gsm8k_dir = data_dir / HUMANEVAL_DIRNAME, data_dir / GSM8K_DIRNAME
    humaneval_dir.mkdir(exist_ok=True)
    gsm8k_dir.mkdir(exist_ok=True)
    _write_jsonl(humaneval_dir / "test.jsonl", humaneval_rows())
    _write_jsonl(gsm8k_dir / "train.jsonl", gsm8k_rows("train"))
    _write_jsonl(gsm8k_dir / "test.jsonl", gsm8k_rows("test"))
    # The demo's task stays out of the tokenizer corpus too: the model predates it.
    shop_dir = data_dir / SHOP_DIRNAME
    shop_dir.mkdir(exist_ok=True)
    _write_jsonl(data_dir / SHOP_FILENAME, shop_rows())
    _write_jsonl(shop_dir / "train.jsonl", shop_benchmark_rows("train"))
    _write_jsonl(shop_dir / "test.jsonl", shop_benchmark_rows("test"))

    model_dir = out_dir / MODEL_DIRNAME
    if force or not (model_dir / "config.json").is_file():
        _build_model(model_dir, _corpus(rows_by_file))

    return DemoPaths(
        model=model_dir,
        sft_data=data_dir / SFT_FILENAME,
        dpo_data=data_dir / DPO_FILENAME,
        grpo_data=data_dir / GRPO_FILENAME,
        humaneval_data=humaneval_dir,
        gsm8k_data=gsm8k_dir,
        shop_data=data_dir / SHOP_FILENAME,
        shop_benchmark=shop_dir,
    )


# --- datasets ---------------------------------------------------------------


def _arithmetic(rng: random.Random) -> tuple[str, int]:
    """A small expression and its value, e.g. ("7 * 3", 21)."""
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    op = rng.choice(["+", "-", "*"])
    return f"{a} {op} {b}", {"+": a + b, "-": a - b, "*": a * b}[op]


def _question(rng: random.Random, i: int, *, wrong: bool = False) -> tuple[str, str, str]:
    """Row ``i``'s question, a right answer and (with ``wrong``) a wrong one: a fact on odd
    rows, arithmetic on even ones. The wrong answer to a fact always comes with it."""
    if i % 2:
        return FACTS[rng.randrange(len(FACTS))]
    expr, result = _arithmetic(rng)
    bad = f"{expr} = {result + rng.choice([-3, -2, -1, 1, 2, 3])}." if wrong else ""
    return f"What is {expr}?", f"{expr} = {result}.", bad


def _sft_rows(rng: random.Random) -> list[dict[str, Any]]:
    """Conversational SFT rows: half arithmetic, half facts; some with a system turn."""
    rows = []
    for i in range(ROWS):
        question, answer, _ = _question(rng, i)
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        if i % 4 == 0:
            messages.insert(0, {"role": "system", "content": SYSTEM_PROMPT})
        rows.append({"messages": messages})
    return rows


def _dpo_rows(rng: random.Random) -> list[dict[str, Any]]:
    """Conversational preference rows: prompt as messages, one assistant turn each side."""
    rows = []
    for i in range(ROWS):
        question, good, bad = _question(rng, i, wrong=True)
        rows.append(
            {
                "prompt": [{"role": "user", "content": question}],
                "chosen": [{"role": "assistant", "content": good}],
                "rejected": [{"role": "assistant", "content": bad}],
            }
        )
    return rows


def _grpo_rows(rng: random.Random) -> list[dict[str, Any]]:
    """Math prompts with a verifiable ``answer`` column for the accuracy reward."""
    rows = []
    for _ in range(ROWS):
        expr, result = _arithmetic(rng)
        content = f"What is {expr}? {GRPO_INSTRUCTION}"
        rows.append({"prompt": [{"role": "user", "content": content}], "answer": str(result)})
    return rows


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write only on change, so a rebuild leaves mtimes (and caches keyed on them) alone."""
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _corpus(rows_by_file: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Every string in the datasets, one per line, to train the tokenizer on."""
    lines: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            lines.extend(part for part in value.splitlines() if part.strip())
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for rows in rows_by_file.values():
        walk(rows)
    lines.extend(["<answer>0123456789</answer>", "system user assistant", SYSTEM_PROMPT])
    return lines


# --- benchmarks -------------------------------------------------------------

# Hand-written problems in the exact openai/openai_humaneval format: the prompt ends
# inside the function (after its docstring), the canonical solution is the indented
# body, and ``test`` defines ``check(candidate)``. TinyEval/5 has a helper above the
# entry point, as several real problems do.
_HUMANEVAL = [
    (
        "add",
        "def add(a: int, b: int) -> int:\n"
        '    """Return the sum of a and b.\n'
        "    >>> add(2, 3)\n"
        "    5\n"
        '    """\n',
        "    return a + b\n",
        "    assert candidate(2, 3) == 5\n"
        "    assert candidate(-1, 1) == 0\n"
        "    assert candidate(0, 0) == 0\n"
        "    assert candidate(100, 23) == 123\n",
    ),
    (
        "is_palindrome",
        "def is_palindrome(text: str) -> bool:\n"
        '    """Check whether text reads the same backwards.\n'
        "    >>> is_palindrome('level')\n"
        "    True\n"
        "    >>> is_palindrome('ab')\n"
        "    False\n"
        '    """\n',
        "    return text == text[::-1]\n",
        "    assert candidate('') is True\n"
        "    assert candidate('level') is True\n"
        "    assert candidate('ab') is False\n"
        "    assert candidate('abba') is True\n",
    ),
    (
        "count_vowels",
        "def count_vowels(s: str) -> int:\n"
        '    """Count the vowels (a, e, i, o, u, either case) in s.\n'
        "    >>> count_vowels('Hello')\n"
        "    2\n"
        '    """\n',
        "    return sum(1 for ch in s.lower() if ch in 'aeiou')\n",
        "    assert candidate('Hello') == 2\n"
        "    assert candidate('xyz') == 0\n"
        "    assert candidate('AEIOU') == 5\n",
    ),
    (
        "fib",
        "def fib(n: int) -> int:\n"
        '    """Return the n-th Fibonacci number, with fib(0) == 0 and fib(1) == 1.\n'
        "    >>> fib(10)\n"
        "    55\n"
        '    """\n',
        "    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
        "    assert candidate(0) == 0\n"
        "    assert candidate(1) == 1\n"
        "    assert candidate(10) == 55\n"
        "    assert candidate(20) == 6765\n",
    ),
    (
        "running_max",
        "from typing import List\n\n\n"
        "def running_max(numbers: List[int]) -> List[int]:\n"
        '    """The largest element seen so far, at each position.\n'
        "    >>> running_max([1, 3, 2, 5])\n"
        "    [1, 3, 3, 5]\n"
        '    """\n',
        "    result = []\n"
        "    best = None\n"
        "    for n in numbers:\n"
        "        best = n if best is None else max(best, n)\n"
        "        result.append(best)\n"
        "    return result\n",
        "    assert candidate([]) == []\n"
        "    assert candidate([1, 3, 2, 5]) == [1, 3, 3, 5]\n"
        "    assert candidate([4, 3, 2]) == [4, 4, 4]\n",
    ),
    (
        "count_primes",
        "def is_prime(n: int) -> bool:\n"
        "    if n < 2:\n"
        "        return False\n"
        "    return all(n % d for d in range(2, int(n ** 0.5) + 1))\n\n\n"
        "def count_primes(limit: int) -> int:\n"
        '    """Count the primes below limit, using is_prime.\n'
        "    >>> count_primes(10)\n"
        "    4\n"
        '    """\n',
        "    return sum(1 for n in range(limit) if is_prime(n))\n",
        "    assert candidate(0) == 0\n"
        "    assert candidate(10) == 4\n"
        "    assert candidate(30) == 10\n",
    ),
]

# (question, calculation, result): openai/gsm8k annotates "<<3+5=8>>8" and ends "#### N".
_GSM8K = [
    ("Tom has 3 apples and buys 5 more. How many apples does he have?", "3 + 5", 8),
    ("A box holds 6 eggs. How many eggs are in 4 boxes?", "6 * 4", 24),
    ("Mia had 20 stickers and gave away 7. How many stickers are left?", "20 - 7", 13),
    ("A pencil costs 2 dollars. How much do 9 pencils cost?", "2 * 9", 18),
    ("There are 12 birds on a tree and 5 fly away. How many birds remain?", "12 - 5", 7),
    ("Sam reads 10 pages a day. How many pages does he read in 7 days?", "10 * 7", 70),
    ("A class has 14 girls and 13 boys. How many students are in the class?", "14 + 13", 27),
    ("Ana splits 30 candies equally among 5 friends. How many does each get?", "30 / 5", 6),
    ("A farmer has 8 cows and buys 3 times as many sheep. How many sheep?", "8 * 3", 24),
    ("Leo saves 15 dollars and spends 4, then saves 6 more. How much has he?", "15 - 4 + 6", 17),
    ("A train has 9 cars with 10 seats each. How many seats in total?", "9 * 10", 90),
    ("Kim bakes 25 cookies and eats 5. How many cookies are left?", "25 - 5", 20),
    ("Each bag has 7 marbles. How many marbles are in 3 bags?", "7 * 3", 21),
]
_GSM8K_TRAIN = 3  # the first rows are the few-shot pool; the rest is the test split


def humaneval_rows() -> list[dict[str, Any]]:
    """A tiny HumanEval: six problems, each with a correct canonical solution."""
    return [
        {
            "task_id": f"TinyEval/{i}",
            "prompt": prompt,
            "canonical_solution": solution,
            "test": f"\n\nMETADATA = {{'author': 'ci-runner'}}\n\n\ndef check(candidate):\n{test}",
            "entry_point": entry_point,
        }
        for i, (entry_point, prompt, solution, test) in enumerate(_HUMANEVAL)
    ]


def gsm8k_rows(split: str) -> list[dict[str, Any]]:
    """A tiny GSM8K: one-step word problems; ``train`` is the few-shot pool."""
    rows = [
        {"question": question, "answer": f"{calc} = <<{calc.replace(' ', '')}={n}>>{n}.\n#### {n}"}
        for question, calc, n in _GSM8K
    ]
    return rows[:_GSM8K_TRAIN] if split == "train" else rows[_GSM8K_TRAIN:]


# --- the demo's task: something the random model cannot know and training teaches ---
#
# A shop where every item costs the same. Only the training rows say what that price is;
# the benchmark asks about other items, in other words, so the random-weight base scores
# 0 and the trained model scores only by applying what it learned. Held out: no item and
# no phrasing of the benchmark occurs in the training rows.

SHOP_PRICE = 25
_SHOP_ITEMS = ["apple", "pear", "plum", "lemon", "melon", "grape", "mango", "peach", "onion"]
_SHOP_HELD_OUT_ITEMS = [
    *("bread", "cheese", "milk", "rice", "honey", "salt", "tea", "soap"),
    *("candle", "basket", "spoon", "cup", "towel", "brush", "lamp", "kettle"),
]
_SHOP_ASKED = [
    "How much is one {item}?",
    "What does a {item} cost?",
    "Tell me the price of a {item}.",
    "I want a {item}. What do I pay?",
]
_SHOP_HELD_OUT_ASKED = ["What is the price of one {item}?", "How many dollars for a {item}?"]


def _shop_answer(item: str) -> str:
    return f"A {item} costs {SHOP_PRICE} dollars.\n#### {SHOP_PRICE}"


def shop_rows() -> list[dict[str, Any]]:
    """Prompt-completion SFT rows in the benchmark's prompt format (``Question: ...``):
    the loss is on the answer alone, which a few dozen steps learn."""
    rng = random.Random(SEED + 3)
    rows = []
    for _ in range(ROWS):
        item = rng.choice(_SHOP_ITEMS)
        question = rng.choice(_SHOP_ASKED).format(item=item)
        rows.append(
            {
                "prompt": [{"role": "user", "content": f"Question: {question}\nAnswer:"}],
                "completion": [{"role": "assistant", "content": _shop_answer(item)}],
            }
        )
    return rows


def shop_benchmark_rows(split: str) -> list[dict[str, Any]]:
    """The benchmark in openai/gsm8k format: ``test`` is every held-out item in every
    held-out phrasing; ``train`` is the few-shot pool, from the training distribution."""
    if split == "train":
        pairs = [(a, i) for a in _SHOP_ASKED[:1] for i in _SHOP_ITEMS[:3]]
    else:
        pairs = [(a, i) for i in _SHOP_HELD_OUT_ITEMS for a in _SHOP_HELD_OUT_ASKED]  # 32
    return [
        {"question": asked.format(item=item), "answer": _shop_answer(item)} for asked, item in pairs
    ]


# --- model and tokenizer -----------------------------------------------------


def _build_model(model_dir: Path, corpus: list[str]) -> None:
    """Build tokenizer and random-weight model into a fresh folder, then swap it in.

    Writing to a temporary sibling first means an interrupted build never leaves
    a half-written folder that looks complete (``config.json`` is the marker).
    """
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}-", dir=model_dir.parent))
    try:
        spm_path = _train_sentencepiece(corpus, tmp_dir)
        tokenizer = _load_tokenizer(spm_path)
        _save_tokenizer(tokenizer, spm_path, tmp_dir)
        _save_random_llama(tokenizer, tmp_dir)
        _make_readable(tmp_dir)
        if model_dir.exists():
            shutil.rmtree(model_dir)
        tmp_dir.rename(model_dir)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)


def _make_readable(folder: Path) -> None:
    """mkdtemp (and safetensors) create owner-only modes; jobs may run as another user."""
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)


def _train_sentencepiece(corpus: list[str], work_dir: Path) -> Path:
    """Train a 512-piece BPE, reproducibly.

    The corpus goes in through an iterator and the model comes out through a
    writer: given file paths, sentencepiece records them in the model, and the
    temporary folder's random name would change ``tokenizer.model`` every build.
    """
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    spm.set_random_generator_seed(SEED)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=model,
        model_type="bpe",
        vocab_size=VOCAB_SIZE,  # hard limit: the corpus must fill it exactly
        character_coverage=1.0,
        byte_fallback=True,
        split_digits=True,
        add_dummy_prefix=False,
        # No NFKC and no whitespace folding, so HF, sentencepiece and llama.cpp agree.
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        user_defined_symbols=SPECIAL_TOKENS,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    spm_path = work_dir / "tokenizer.model"
    spm_path.write_bytes(model.getvalue())
    return spm_path


def _load_tokenizer(spm_path: Path) -> LlamaTokenizer:
    """Turn the sentencepiece model into a transformers ``LlamaTokenizer``.

    transformers 5 can only read a ``.model`` file with protobuf installed, which
    the train extra does not pull in, so the vocab and merges are read through
    the sentencepiece API and handed over directly.
    """
    import sentencepiece as spm
    from transformers import AddedToken, LlamaTokenizer
    from transformers.tokenization_utils_base import generate_merges

    sp = spm.SentencePieceProcessor(model_file=str(spm_path))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    # Control and ChatML pieces are atomic: never the result of a merge.
    atomic = [piece for i, piece in enumerate(vocab) if sp.is_control(i) or sp.is_unknown(i)]
    merges = generate_merges(vocab, skip_tokens=atomic + SPECIAL_TOKENS)

    tokenizer = LlamaTokenizer(
        vocab=vocab,
        merges=merges,
        add_prefix_space=False,
        legacy=False,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token=AddedToken("<|im_end|>", special=True, normalized=False),
        pad_token=AddedToken("<pad>", special=True, normalized=False),
        add_bos_token=False,
        add_eos_token=False,
        model_max_length=MAX_LENGTH,
    )
    tokenizer.add_special_tokens(
        {"extra_special_tokens": [AddedToken("<|im_start|>", special=True, normalized=False)]}
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.vocab_file = str(spm_path)
    return tokenizer


def _save_tokenizer(tokenizer: LlamaTokenizer, spm_path: Path, model_dir: Path) -> None:
    """Save, then add what transformers 5 leaves out but llama.cpp needs."""
    tokenizer.save_pretrained(model_dir)
    target = model_dir / "tokenizer.model"
    if not target.exists() or not target.samefile(spm_path):
        shutil.copyfile(spm_path, target)

    config_path = model_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    # Written explicitly: llama.cpp assumes a BOS for sentencepiece vocabs otherwise.
    config["add_bos_token"] = False
    config["add_eos_token"] = False
    config["added_tokens_decoder"] = {
        str(index): {
            "content": token.content,
            "lstrip": token.lstrip,
            "normalized": token.normalized,
            "rstrip": token.rstrip,
            "single_word": token.single_word,
            "special": token.special,
        }
        for index, token in sorted(tokenizer.added_tokens_decoder.items())
    }
    config_path.write_text(
        json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def _save_random_llama(tokenizer: LlamaTokenizer, model_dir: Path) -> None:
    """A ~5 MB Llama: hidden 256 is the smallest size Q4_K_M really quantizes."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=MAX_LENGTH,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(model_dir)
