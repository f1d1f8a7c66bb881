"""Commands around the experiments: the offline demo's model and data, and the MCP
server that offers the commands to agents."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from ci_runner.cli.output import echo
from ci_runner.errors import NotReadyError


@click.command()
@click.option("--out", default="fixtures", show_default=True, type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Rebuild the model even if it exists.")
@click.pass_context
def fixtures(ctx: click.Context, out: str, force: bool) -> None:
    """Build the offline demo's tiny model and data.

    A tiny Llama and its tokenizer, the demo's datasets and benchmarks, under --out.

    Needs the train extra; without it, exits 4 with the install line and writes nothing.
    """
    from ci_runner.demo import build_demo, require_train_extra

    require_train_extra()
    target = Path(ctx.obj["root"]) / out
    existed = target.exists()
    try:
        paths = build_demo(target, force=force)
    except BaseException:
        if not existed:  # a half-built folder would pass for a built one next time
            shutil.rmtree(target, ignore_errors=True)
        raise
    fields = {k: v for k, v in vars(paths).items() if v is not None}
    width = max(map(len, fields))
    for label, path in fields.items():
        echo(f"{label:<{width}}  {path}")


@click.command("mcp")
@click.option(
    "--allow-submit",
    is_flag=True,
    help="Let agents submit runs (costs money on hf-jobs) and cancel them. Default: read-only.",
)
@click.option("--allow-cancel", is_flag=True, help="Let agents cancel runs (not submit).")
@click.pass_context
def mcp(ctx: click.Context, allow_submit: bool, allow_cancel: bool) -> None:
    """Serve the commands as MCP tools over stdio (for Codex, Claude Code...).

    Needs the mcp extra: pip install 'ci-runner[mcp]'. Tools: validate, check_data, plan,
    submit, status, logs, cancel, wait, report; each returns its command's --json document.
    """
    import importlib.util

    if importlib.util.find_spec("mcp") is None:
        raise NotReadyError(
            "`ci-runner mcp` needs the MCP SDK: pip install 'ci-runner[mcp]' (or -e '.[mcp]')"
        )
    from ci_runner.mcp_server import Settings, serve  # imports the SDK: only here

    root = Path(ctx.obj["root"]).resolve()
    serve(Settings(root=root, allow_submit=allow_submit, allow_cancel=allow_cancel))
