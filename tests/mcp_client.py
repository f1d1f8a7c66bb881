"""The MCP SDK's own client, talking over stdio to ``ci-runner mcp`` in a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

from mcp import ClientSession, StdioServerParameters, stdio_client  # noqa: E402
from mcp.types import CallToolResult  # noqa: E402

from ci_runner.mcp_server import EXIT_CODE_KEY  # noqa: E402


def server_env(**extra: str) -> dict[str, str]:
    """The test process's environment: the SDK would otherwise pass only PATH, HOME..."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(extra)
    return env


@contextlib.asynccontextmanager
async def connect(
    root: Path,
    *server_args: str,
    command: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> AsyncIterator[ClientSession]:
    """A session with ``ci-runner --root ROOT mcp SERVER_ARGS`` (or ``command``), spawned
    by the SDK's stdio client; the server's stderr goes to ``ROOT/mcp-server.log``."""
    argv = command or [
        sys.executable,
        "-m",
        "ci_runner.cli",
        "--root",
        str(root),
        "mcp",
        *server_args,
    ]
    params = StdioServerParameters(
        command=argv[0], args=argv[1:], env=env or server_env(), cwd=str(root)
    )
    with open(root / "mcp-server.log", "a", encoding="utf-8") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


def document(result: CallToolResult) -> Any:
    """The tool's answer as ``--json`` would print it (its text content, parsed)."""
    assert not result.is_error, result.content[0].text
    return json.loads(result.content[0].text)


def exit_code(result: CallToolResult) -> int:
    assert result.meta is not None
    return int(result.meta[EXIT_CODE_KEY])


def error(result: CallToolResult) -> dict[str, Any]:
    assert result.is_error, result.content
    assert result.structured_content is not None
    return dict(result.structured_content["error"])
