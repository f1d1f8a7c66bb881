"""Text from experiment files and models is untrusted: each attack, through the real command.

Identifiers with a trailing line break are refused at ``validate`` (a paid job would fail on
them later); a description or an error carrying HTML, comments, mentions or fences reaches
the report and the PR body inert; and the plan comment is only ever edited when the token's
own account wrote it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ci_runner.cli import main
from ci_runner.errors import ExitCode

BASE = "name: qwen-sft\nbase_model: Qwen/Qwen3-0.6B\nmethod: sft\ndataset: trl-lib/Capybara\n"


def invoke(root: Path, *args: str):
    return CliRunner().invoke(main, ["--root", str(root), *args])


# --- identifiers are matched whole -------------------------------------------------------

# the attack: an experiment file → (the line, the field validate names)
NEWLINE_IDENTIFIERS = {
    "name": (BASE.replace("name: qwen-sft", 'name: "qwen-sft\\n"'), 1, "name"),
    "hub id": (BASE + 'output:\n  hub_model_id: "alice/qwen-sft\\n"\n', 6, "output.hub_model_id"),
    "dataset revision": (
        BASE.replace("dataset: trl-lib/Capybara", "dataset:\n  path: trl-lib/Capybara")
        + '  revision: "main\\n"\n',
        6,
        "dataset.revision",
    ),
    "model revision": (
        BASE.replace("Qwen/Qwen3-0.6B", '"Qwen/Qwen3-0.6B@main\\n"'),
        2,
        "base_model",
    ),
    "reward": (
        BASE.replace("method: sft", "method: grpo") + 'rewards:\n  - "rewards.py:score\\n"\n',
        6,
        "rewards[0]",
    ),
}


@pytest.mark.parametrize("case", sorted(NEWLINE_IDENTIFIERS))
def test_an_identifier_with_a_trailing_newline_is_refused_at_validate(tmp_path, case):
    text, line, field = NEWLINE_IDENTIFIERS[case]
    (tmp_path / "rewards.py").write_text("def score(completions, **kw):\n    return [0.0]\n")
    spec = tmp_path / "experiments" / "x.yaml"
    spec.parent.mkdir()
    spec.write_text(text)
    result = invoke(tmp_path, "validate", str(spec))
    assert result.exit_code == ExitCode.SPEC_INVALID, result.output
    assert f"{spec}:{line}: {field}: " in result.output
    assert "hint: " in result.output


def test_the_same_identifiers_without_the_newline_are_valid(tmp_path):
    (tmp_path / "rewards.py").write_text("def score(completions, **kw):\n    return [0.0]\n")
    spec = tmp_path / "experiments" / "x.yaml"
    spec.parent.mkdir()
    for text, _, _ in NEWLINE_IDENTIFIERS.values():
        spec.write_text(text.replace("\\n", ""))
        result = invoke(tmp_path, "validate", str(spec))
        assert result.exit_code == ExitCode.OK, (text, result.output)
