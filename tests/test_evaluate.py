"""job_scripts/evaluate.py: the HumanEval sandbox, GSM8K scoring, a real run.

The scorer tests run real subprocesses (about 0.1 s each); only the end-to-end
runs on the tiny model are marked ``training``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ci_runner.demo import gsm8k_rows, humaneval_rows
from ci_runner.runconfig import RUN_CONFIG_ENV, SUMMARY_PREFIX, EvalConfig

REPO = Path(__file__).resolve().parents[1]
JOB_SCRIPTS = REPO / "job_scripts"
EVAL_SCRIPT = JOB_SCRIPTS / "evaluate.py"
TIMEOUT_S = 2.0
SLACK_S = 3.0  # process start-up and kill on two busy cores
if str(JOB_SCRIPTS) not in sys.path:  # like a job: evaluate.py's siblings are top-level modules
    sys.path.insert(0, str(JOB_SCRIPTS))

import evaluate_gsm8k as gsm8k  # noqa: E402
import evaluate_humaneval as humaneval  # noqa: E402
import evaluate_pipeline  # noqa: E402
import job_config  # noqa: E402
from job_config import BenchmarkSpec  # noqa: E402
from protocol import ConfigError  # noqa: E402


def score(problem: dict[str, Any], completion: str, timeout_s: float = TIMEOUT_S) -> float:
    return humaneval.score_humaneval(problem, completion, timeout_s)


PROBLEMS = humaneval_rows()
ADD = next(p for p in PROBLEMS if p["entry_point"] == "add")


# --- (a) canonical solutions pass, broken ones fail ----------------------------


@pytest.mark.parametrize("problem", PROBLEMS, ids=[p["task_id"] for p in PROBLEMS])
def test_canonical_solutions_pass(problem):
    assert set(problem) == {"task_id", "prompt", "canonical_solution", "test", "entry_point"}
    assert score(problem, problem["canonical_solution"]) == 1.0


@pytest.mark.parametrize(
    "completion",
    [
        "    return a - b\n",  # wrong answer
        "    return (a +\n",  # syntax error
        "    raise ValueError('no')\n",  # exception
        "    return undefined_name\n",  # NameError
        "    import sys\n    sys.exit(0)\n",  # exits 0 before the tests run
        "    import os\n    os._exit(0)\n",  # same, without cleanup
        "",  # nothing generated
    ],
    ids=["wrong", "syntax", "exception", "name-error", "sys-exit-0", "os-exit-0", "empty"],
)
def test_broken_completions_fail(completion):
    assert score(ADD, completion) == 0.0


def test_stop_sequences_cut_trailing_code():
    """Code after the function (a new def, a print, a main block) is not run."""
    completion = (
        "    return a + b\n\nprint(1 / 0)\n\nif __name__ == '__main__':\n    raise SystemExit(1)\n"
    )
    assert score(ADD, completion) == 1.0
    assert humaneval.truncate_at_stops("x\ndef f(): pass", humaneval.HUMANEVAL_STOP) == "x"


def test_chat_style_answers_replace_the_function():
    """A fenced block with the whole function is run under the prompt's imports and helpers."""
    counted = next(p for p in PROBLEMS if p["entry_point"] == "count_primes")
    fenced = (
        "Here you go:\n```python\ndef count_primes(limit: int) -> int:\n"
        "    return len([n for n in range(limit) if is_prime(n)])\n```\nDone."
    )
    assert score(counted, fenced) == 1.0
    program = humaneval.build_candidate(counted, fenced)
    assert "def is_prime" in program and "return len([n for n" in program
    wrong = fenced.replace("len([n", "1 + len([n")
    assert score(counted, wrong) == 0.0


# --- (b) runaway programs are killed ---------------------------------------------


@pytest.mark.parametrize(
    "completion",
    ["    while True:\n        pass\n", "    import time\n    time.sleep(100)\n"],
    ids=["busy-loop", "sleep"],
)
@pytest.mark.slow
def test_runaway_completions_are_killed_within_the_timeout(completion):
    started = time.monotonic()
    assert score(ADD, completion, timeout_s=TIMEOUT_S) == 0.0
    assert time.monotonic() - started < TIMEOUT_S + SLACK_S


def test_memory_hog_fails_fast():
    started = time.monotonic()
    assert score(ADD, "    blob = 'x' * (8 << 30)\n    return a + b\n") == 0.0
    assert time.monotonic() - started < TIMEOUT_S + SLACK_S


@pytest.mark.slow
def test_timeout_kills_the_whole_process_group(tmp_path):
    """A child forked past the seatbelt (posix.fork) dies with the program on timeout."""
    marker = tmp_path / "child-outlived-the-run"
    completion = (
        "    import posix, time\n"
        "    if posix.fork() == 0:\n"
        f"        time.sleep({TIMEOUT_S + 1})\n"
        f"        open({str(marker)!r}, 'w').close()\n"
        "    while True:\n"
        "        pass\n"
    )
    # As root the fork succeeds and only the process-group kill stops the child;
    # as another user RLIMIT_NPROC refuses the fork. Either way: no marker.
    assert score(ADD, completion) == 0.0
    time.sleep(2.0)
    assert not marker.exists()


# --- (c) no network -------------------------------------------------------------


@pytest.mark.parametrize(
    "attempt",
    [
        "socket.create_connection(('127.0.0.1', {port}), timeout=1)",
        "socket.socket(socket.AF_INET, socket.SOCK_STREAM).connect(('127.0.0.1', {port}))",
        "__import__('_socket').socket().connect(('127.0.0.1', {port}))",
        "__import__('urllib.request').request.urlopen('http://127.0.0.1:{port}/', timeout=1)",
    ],
    ids=["create_connection", "socket", "_socket", "urllib"],
)
def test_network_is_unreachable(listener, attempt):
    port, accepted = listener
    completion = f"    import socket\n    {attempt.format(port=port)}\n    return a + b\n"
    assert score(ADD, completion) == 0.0
    time.sleep(0.3)  # let the server thread see a late connection, if any
    assert accepted == []


def test_environment_is_scrubbed(monkeypatch):
    """Secrets in the evaluator's environment do not reach the program."""
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    completion = "    import os\n    assert 'HF_TOKEN' not in os.environ\n    return a + b\n"
    assert score(ADD, completion) == 1.0


# --- GSM8K scoring and config errors (no model) --------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3 + 5 = <<3+5=8>>8.\n#### 8", 8.0),
        ("so the total is 1,234.", 1234.0),
        ("The answer is 42. Next question has 7", 42.0),
        ("<answer>-3</answer>", -3.0),
        ("ANSWER: 12", 12.0),
        ("no digits here", None),
    ],
)
def test_extract_final_number(text, expected):
    assert gsm8k.extract_final_number(text) == expected


def test_gsm8k_scoring():
    for row in gsm8k_rows("test"):
        gold = row["answer"]
        assert gsm8k.score_gsm8k(gold, row["answer"]) == 1.0
        number = gold.rsplit("#### ", 1)[1]
        assert gsm8k.score_gsm8k(gold, f" It is {number}.\n\nQuestion: 1 + 1") == 1.0
        assert gsm8k.score_gsm8k(gold, f" It is {int(number) + 1}.") == 0.0
    assert gsm8k.score_gsm8k(gold, "") == 0.0
    assert len(gsm8k_rows("train")) >= 3 and len(gsm8k_rows("test")) >= 10


@pytest.mark.slow
def test_humaneval_metric_scores_a_task_in_parallel():
    """The lighteval metric object gives the same verdicts as the plain scorer."""
    pytest.importorskip("lighteval")
    from lighteval.models.model_output import ModelResponse

    docs = [humaneval.humaneval_prompt(p, "humaneval|0") for p in PROBLEMS]
    good = [ModelResponse(text=[p["canonical_solution"]]) for p in PROBLEMS]
    bad = [ModelResponse(text=["    return None\n"]) for _ in PROBLEMS]
    metric = humaneval.humaneval_metric(timeout_s=TIMEOUT_S)
    outputs = metric.compute_sample(docs=docs + docs, responses=good + bad)
    assert outputs["pass@1"] == [1.0] * len(PROBLEMS) + [0.0] * len(PROBLEMS)


def run_evaluate(config: dict[str, Any] | str, env: dict[str, str], cwd: Path):
    """Run the script like a job does; returns (exit code, output, summary)."""
    env = {**env, RUN_CONFIG_ENV: config if isinstance(config, str) else json.dumps(config)}
    proc = subprocess.run(
        [sys.executable, str(EVAL_SCRIPT)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = proc.stdout.splitlines()
    summary = None
    if lines and lines[-1].startswith(SUMMARY_PREFIX):
        summary = json.loads(lines[-1][len(SUMMARY_PREFIX) :])
    return proc.returncode, proc.stdout + proc.stderr, summary


def test_bad_config_fails_with_a_summary(job_env, tmp_path):
    config = {
        "experiment": "e",
        "run_id": "r",
        "eval_id": "i",
        "model": "m",
        "model_label": "base",
        "benchmarks": [],
        "output_dir": str(tmp_path / "out"),
    }
    code, output, summary = run_evaluate(config, job_env, tmp_path)
    assert code == 1, output
    assert summary["status"] == "failed" and "no benchmarks" in summary["error"]
    assert json.loads((tmp_path / "out" / "ci_runner_summary.json").read_text()) == summary


def test_unknown_benchmark_is_a_clear_error():
    pytest.importorskip("lighteval")
    with pytest.raises(ConfigError, match="unknown benchmark 'no_such_bench'"):
        evaluate_pipeline.resolve_tasks([BenchmarkSpec("no_such_bench")], 16)


# --- (d) a real run on the tiny model ----------------------------------------------


def eval_config(tmp_path: Path, fixtures, **fields) -> dict[str, Any]:
    """An eval config through the real contract model, so the test also checks the schema."""
    benchmarks = [
        {"benchmark": "humaneval", "dataset": str(fixtures.humaneval_data), "max_samples": 4},
        {
            "benchmark": "gsm8k",
            "fewshot": 2,
            "dataset": str(fixtures.gsm8k_data),
            "max_samples": 5,
        },
    ]
    config = EvalConfig(
        experiment="tiny",
        run_id="run-1",
        eval_id=fields.pop("eval_id", "eval-1"),
        model=str(fields.pop("model", fixtures.model)),
        model_label=fields.pop("model_label", "base"),
        benchmarks=benchmarks,
        output_dir=str(tmp_path / "eval-out"),
        max_new_tokens=24,
        **fields,
    )
    return config.model_dump(mode="json")


def assert_evaluated(code: int, output: str, summary, config: dict[str, Any]) -> dict:
    assert code == 0, output[-6000:]
    assert summary is not None and summary["status"] == "completed", output[-6000:]
    assert summary["model"] == config["model"]
    assert summary["model_label"] == config["model_label"]
    by_task = {entry["task"]: entry for entry in summary["scores"]}
    assert set(by_task) == {"humaneval|0", "gsm8k|2"}
    humaneval, gsm8k = by_task["humaneval|0"], by_task["gsm8k|2"]
    assert humaneval["benchmark"] == "humaneval" and humaneval["fewshot"] == 0
    assert humaneval["metric"] == "pass@1" and humaneval["samples"] == 4
    assert gsm8k["metric"] == "exact_match" and gsm8k["samples"] == 5
    for entry in (humaneval, gsm8k):
        assert 0.0 <= entry["score"] <= 1.0

    out = Path(config["output_dir"])
    results = json.loads(Path(summary["results_file"]).read_text())["results"]
    assert Path(summary["results_file"]).parent == out / "lighteval"
    assert results["humaneval|0"]["pass@1"] == humaneval["score"]
    assert results["gsm8k|2"]["exact_match"] == gsm8k["score"]
    assert json.loads((out / "ci_runner_summary.json").read_text()) == summary
    assert list((out / "details").rglob("*.parquet"))  # per-sample generations
    return summary


@pytest.mark.training
def test_evaluate_tiny_model_on_both_benchmarks(tiny_fixtures, job_env, tmp_path):
    assert (tiny_fixtures.humaneval_data / "test.jsonl").is_file()
    assert {p.name for p in tiny_fixtures.gsm8k_data.iterdir()} == {"train.jsonl", "test.jsonl"}
    config = eval_config(tmp_path, tiny_fixtures)
    model_files = sorted(Path(tiny_fixtures.model).rglob("*"))
    code, output, summary = run_evaluate(config, job_env, tmp_path)
    assert_evaluated(code, output, summary, config)
    # lighteval caches samples at cache_dir / model_name: the model's own folder for a path
    assert sorted(Path(tiny_fixtures.model).rglob("*")) == model_files
    assert "humaneval|0" in output and "pass@1=" in output  # readable progress
    # The sandbox's layers are in the summary and the log (tests/test_sandbox.py: the attacks)
    layers = summary["sandbox"]["layers"]
    assert layers["secrets_dropped"] is True and layers["separate_judge"] is True
    assert layers["answers_sealed"] is True and summary["sandbox"]["isolated"] is True
    assert str(tiny_fixtures.humaneval_data) in summary["sandbox"]["answers"]["sealed"]
    assert "isolated" not in summary["scores"][0]  # only unisolated scores carry the mark
    assert "sandbox: " in output and "secrets dropped before running generated code" in output


@pytest.mark.training
def test_evaluate_lora_adapter_merges_into_its_base(tiny_fixtures, job_env, tmp_path):
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_fixtures.model)
    lora = peft.LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
    adapter_dir = tmp_path / "adapter"
    peft.get_peft_model(base, lora).save_pretrained(adapter_dir)  # no tokenizer: uses the base's

    config = eval_config(
        tmp_path,
        tiny_fixtures,
        model=adapter_dir,
        base_model=str(tiny_fixtures.model),
        model_label="final",
        eval_id="eval-lora",
    )
    code, output, summary = run_evaluate(config, job_env, tmp_path)
    assert_evaluated(code, output, summary, config)
    assert summary["base_model"] == str(tiny_fixtures.model)


class StopLoading(Exception):
    """Raised by the spy once it has seen what reaches from_pretrained."""


@pytest.mark.parametrize(
    ("placement", "expected"),
    [
        ({"quantize": "4bit"}, ("auto", True)),  # a QLoRA run's evaluation: NF4 on one GPU
        ({"device_map": "auto"}, ("auto", False)),  # 16 bits over the flavor's GPUs
        ({}, (None, False)),  # as before: loaded whole, then moved by lighteval
    ],
)
def test_the_planned_placement_reaches_from_pretrained(
    tiny_fixtures, monkeypatch, placement, expected
):
    """What the plan sized an evaluation as (EvalConfig ``quantize``/``device_map``) is how
    the model loads, adapter merges included; a placed model keeps lighteval from moving it."""
    import transformers
    from transformers import BitsAndBytesConfig

    seen: dict[str, Any] = {}

    def spy(cls, pretrained, *args, **kwargs):
        seen.update(kwargs, model=pretrained)
        raise StopLoading

    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", classmethod(spy))
    sent = EvalConfig(
        experiment="tiny",
        run_id="tiny-1",
        eval_id="tiny-1-final",
        model=str(tiny_fixtures.model),
        model_label="final",
        benchmarks=[{"benchmark": "gsm8k"}],
        output_dir="/tmp/unused",
        **placement,
    )
    config = job_config.EvalConfig.from_json(json.loads(sent.model_dump_json()))
    with pytest.raises(StopLoading):
        evaluate_pipeline.load_model(config)
    device_map, four_bit = expected
    assert seen["model"] == str(tiny_fixtures.model)
    assert seen.get("device_map") == device_map
    bnb = seen.get("quantization_config")
    assert isinstance(bnb, BitsAndBytesConfig) is four_bit
    if four_bit:
        assert bnb.load_in_4bit and bnb.bnb_4bit_quant_type == "nf4"
        assert bnb.bnb_4bit_compute_dtype == seen["dtype"]
    assert evaluate_pipeline.placed(config) is (device_map is not None)
