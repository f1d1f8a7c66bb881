"""What the commands share: the project they act on and their common options."""

from __future__ import annotations

import click

from ci_runner import commands as cmd
from ci_runner.flow.workspace import Workspace

JSON_OPTION = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document on stdout (progress and warnings go to stderr).",
)
BACKEND_OPTION = click.option(
    "--backend",
    type=click.Choice(["local", "hf-jobs", "ray"]),
    default=None,
    help="Override the experiment file's backend.",
)
BUDGET_OPTION = click.option(
    "--allow-over-budget", is_flag=True, help="Submit even if the plan exceeds budget.max_cost_usd."
)
SKIP_DATA_OPTION = click.option(
    "--skip-data-check", is_flag=True, help="Do not read the dataset before planning."
)
ROOT_OPTION = click.option(
    "--root",
    "root",
    default=None,
    type=click.Path(file_okay=False),
    help="Project root (the same as the global --root).",
)


def workspace(ctx: click.Context, root: str | None = None) -> Workspace:
    """The project at the command's ``--root``, else the global one; evaluations push
    their model card as they close."""
    return cmd.open_workspace(root or (ctx.obj or {}).get("root", "."))
