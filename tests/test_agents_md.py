"""AGENTS.md teaches agents by example: its experiment file must stay valid."""

from __future__ import annotations

import re
from pathlib import Path

from ci_runner.spec.load import load_experiment

ROOT = Path(__file__).resolve().parents[1]


def test_agents_md_example_validates(tmp_path):
    text = (ROOT / "AGENTS.md").read_text()
    example = re.search(r"```yaml\n(.*?)```", text, re.S)[1]
    path = tmp_path / "experiments" / "qwen3-codeforces-sft.yaml"
    path.parent.mkdir()
    path.write_text(example)
    experiment = load_experiment(path)
    assert experiment.backend == "hf-jobs" and experiment.evaluation is not None


def test_agents_md_lists_every_exit_code():
    from ci_runner.errors import ExitCode

    text = (ROOT / "AGENTS.md").read_text()
    codes = {v for k, v in vars(ExitCode).items() if k.isupper()}
    assert codes <= {int(c) for c in re.findall(r"^\| (\d+) \|", text, re.M)}
