"""``ci-runner fixtures`` without the train extra: exit 4 with the install line, and no
half-built ``fixtures/`` left behind to pass for a built one."""

from __future__ import annotations

import subprocess
import sys

from ci_runner.errors import ExitCode

# Run the CLI in a Python where the train extra's modules cannot be imported or found.
WITHOUT_TRAIN = (
    "import sys\n"
    "for name in ('torch', 'transformers', 'sentencepiece'):\n"
    "    sys.modules[name] = None\n"
    "from ci_runner.cli import main\n"
    "main(sys.argv[1:])\n"
)


def test_fixtures_without_the_train_extra_exits_4_and_writes_nothing(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_TRAIN, "--root", str(tmp_path), "fixtures"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == ExitCode.NOT_READY, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "lacks torch, transformers, sentencepiece" in proc.stderr
    assert "pip install 'ci-runner[train]'" in proc.stderr
    assert not (tmp_path / "fixtures").exists()
    assert list(tmp_path.iterdir()) == []
