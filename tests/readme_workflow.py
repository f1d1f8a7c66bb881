"""The workflow the README tells users to copy, extracted from the README itself.

The block follows a ``<!-- copy: PATH -->`` line. Tests lint it and run it (the
runner-like tests); ``make lint-actions`` lints it too:
``python tests/readme_workflow.py DIR`` writes it to ``DIR/<PATH>``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- copy: (?P<path>\S+) -->\n```yaml\n(?P<text>.*?)\n```", re.S)


def readme_workflow(readme: Path = ROOT / "README.md") -> tuple[str, str]:
    """``(path, text)`` of the one workflow the README asks users to copy."""
    found = BLOCK.findall(readme.read_text(encoding="utf-8"))
    assert len(found) == 1, f"expected one `<!-- copy: ... -->` workflow in the README: {found}"
    path, text = found[0]
    return path, text + "\n"


def write_to(directory: Path) -> Path:
    path, text = readme_workflow()
    target = directory / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


if __name__ == "__main__":
    print(write_to(Path(sys.argv[1])))
