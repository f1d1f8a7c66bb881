"""An agent steered by what it read asks the MCP server for files outside the project.

Each attack goes through the SDK's own stdio client to ``ci-runner mcp``: an absolute
path, a ``..`` path and a link inside the project that points outside. Every one is a
tool error naming the path; nothing the outside file holds comes back.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("mcp")  # the [mcp] extra

from ci_runner.errors import ExitCode  # noqa: E402
from tests.conftest import ROOT  # noqa: E402
from tests.mcp_client import connect, document, error  # noqa: E402

pytestmark = pytest.mark.anyio

# A YAML-shaped secret: parsed as an experiment, its values would be echoed in errors.
OUTSIDE = "name: Secret-Value-9f3a\nbase_model: internal/secret-model-7c21\npassword: hunter2\n"
SECRETS = ("Secret-Value-9f3a", "secret-model-7c21", "hunter2")


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """A project, and beside it a file it must never read."""
    root = tmp_path / "project"
    (root / "experiments").mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "malformed" / "renamed_trl_field.yaml", root / "experiments")
    outside = tmp_path / "private" / "secrets.yaml"
    outside.parent.mkdir()
    outside.write_text(OUTSIDE)
    (root / "experiments" / "linked.yaml").symlink_to(outside)
    return root, outside


def _calls(outside: Path) -> list[tuple[str, dict]]:
    paths = [str(outside), "../private/secrets.yaml", "experiments/linked.yaml"]
    calls: list[tuple[str, dict]] = []
    for path in paths:
        calls += [
            ("validate", {"files": [path]}),
            ("validate", {"files": ["experiments/renamed_trl_field.yaml", path]}),
            ("plan", {"file": path}),
            ("check_data", {"file": path}),
            ("submit", {"file": path}),
        ]
    return calls


async def test_files_outside_the_root_are_refused_and_never_echoed(layout):
    root, outside = layout
    async with connect(root, "--allow-submit") as session:
        results = [(call, await session.call_tool(*call)) for call in _calls(outside)]
        inside = await session.call_tool(
            "validate", {"files": ["experiments/renamed_trl_field.yaml"]}
        )
    for (tool, arguments), result in results:
        err = error(result)
        assert err["exit_code"] == ExitCode.USAGE, (tool, arguments, err)
        assert "outside the project root" in err["message"], (tool, arguments)
        dumped = result.model_dump_json()
        assert not any(secret in dumped for secret in SECRETS), (tool, arguments, dumped)
    # A file inside the project is still read and judged as before.
    (entry,) = document(inside)
    assert entry["valid"] is False and entry["errors"][0]["line"] == 7
