"""``ci-runner mcp``: the commands as tools of a stdio MCP server, for agents in a terminal.

Each tool is one command and answers with the document its ``--json`` prints: the same
functions build both (``ci_runner.commands`` and ``ci_runner.documents``). A tool result
carries that document twice, as MCP asks: as text (byte for byte what ``--json`` prints,
less the final newline) and as ``structuredContent`` (the same object; a list, which MCP
does not allow there, comes as ``{"result": [...]}``). Its ``_meta`` holds
``ci-runner/exit_code`` and ``ci-runner/meaning``: the exit code the CLI would have ended
with (a plan over budget is a document *and* exit 5).

A command that fails returns a tool error (``isError``) whose ``structuredContent`` is
``{"error": {exit_code, meaning, message, issues?}}``: the message is the CLI's, with its
``file:line: field: message`` and hint; ``issues`` lists them one by one for an invalid
experiment file. Secrets are redacted from every result, as from everything ci-runner
prints.

Read-only by default: ``submit`` (and ``check_data`` with ``remote``, which runs a paid
CPU job) refuse unless the server was started with ``--allow-submit``; ``cancel`` needs
``--allow-submit`` or ``--allow-cancel``. ``submit`` never passes ``--allow-over-budget``:
a plan over ``budget.max_cost_usd`` is refused (exit 5) exactly as the CLI refuses it.

Confined to the project: ``validate``, ``check_data``, ``plan`` and ``submit`` read only
files inside the root (absolute paths, ``..`` and links resolved first); any other path is
a tool error (exit 2) that names the path and nothing the file holds.

This module imports the SDK (the ``[mcp]`` extra); ``ci_runner.cli`` imports this module
only when ``ci-runner mcp`` runs, so ``import ci_runner.cli`` stays free of it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, TextContent, ToolAnnotations

from ci_runner import __version__
from ci_runner import commands as cmd
from ci_runner.documents import json_text, plan_json
from ci_runner.errors import CiRunnerError, ExitCode, NotReadyError, SpecError, exit_meaning
from ci_runner.flow.workspace import Workspace
from ci_runner.publish.redact import redact

SERVER_NAME = "ci-runner"
EXIT_CODE_KEY = "ci-runner/exit_code"
MEANING_KEY = "ci-runner/meaning"
DEFAULT_WAIT_S = 60.0
MAX_WAIT_S = 3600.0
DEFAULT_TAIL = 100

log = logging.getLogger("ci_runner.mcp")

INSTRUCTIONS = """\
ci-runner runs LLM fine-tuning experiments described by YAML files under experiments/.
The loop: validate -> check_data -> plan (show the plan, with its cost, to the person) ->
submit -> status / wait / logs. Every tool returns the JSON document of the matching
`ci-runner <command> --json`; _meta["ci-runner/exit_code"] is the CLI's exit code.
Only `submit` spends money (GPU jobs on HF Jobs, billed per minute); it refuses plans over
the file's budget.max_cost_usd. Never edit training_reports/ by hand: `report` re-renders it.
"""


@dataclass(frozen=True)
class Settings:
    root: Path
    allow_submit: bool = False
    allow_cancel: bool = False


class Refused(CiRunnerError):
    """A tool this server was not started to allow."""

    exit_code = ExitCode.USAGE


class OutsideProject(CiRunnerError):
    """A tool was asked to read a file outside the project root."""

    exit_code = ExitCode.USAGE


# --- results ------------------------------------------------------------------------------


def _meta(code: int) -> dict[str, Any]:
    return {EXIT_CODE_KEY: int(code), MEANING_KEY: exit_meaning(code)}


def document_result(document: Any, exit_code: int = ExitCode.OK) -> CallToolResult:
    text = json_text(document)  # what --json prints, less its final newline
    structured = json.loads(text)  # redacted, and JSON-clean (dates, paths as strings)
    if not isinstance(structured, dict):
        structured = {"result": structured}
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=structured,
        meta=_meta(exit_code),
    )


def error_result(exc: BaseException) -> CallToolResult:
    """A structured tool error: the exit code, what it means, the CLI's message."""
    if isinstance(exc, CiRunnerError):
        code, message = int(exc.exit_code), str(exc)
    else:  # a bug: say what, never a traceback (that goes to the server's stderr)
        log.exception("tool crashed")
        code, message = int(ExitCode.INTERNAL), f"{type(exc).__name__}: {exc}"
    error: dict[str, Any] = {
        "exit_code": code,
        "meaning": exit_meaning(code),
        "message": message,
    }
    if isinstance(exc, SpecError):
        error["issues"] = [vars(issue) for issue in exc.issues]
    error = json.loads(redact(json.dumps(error, default=str)))
    text = f"error (exit {code}: {error['meaning']}):\n{error['message']}"
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content={"error": error},
        is_error=True,
        meta=_meta(code),
    )


def skipping(ws: Workspace, result: CallToolResult) -> CallToolResult:
    """A result over every ledger, plus each unreadable one it skipped (file and remedy)
    as a second text, with exit 9: the document still holds every other experiment."""
    corrupt = cmd.unreadable_ledgers(ws)
    if not corrupt:
        return result
    text = redact("\n".join(f"error: {exc}" for exc in corrupt))
    return result.model_copy(
        update={
            "content": [*result.content, TextContent(type="text", text=text)],
            "meta": _meta(ExitCode.LEDGER_CORRUPT),
        }
    )


# --- the tools ------------------------------------------------------------------------------


class Tools:
    """The tools, as plain methods: each opens the project, runs one command, answers."""

    def __init__(self, settings: Settings, workspace: Callable[[], Workspace] | None = None):
        self.settings = settings
        self._workspace = workspace or (lambda: cmd.open_workspace(settings.root))

    def _run(self, fn: Callable[[Workspace], CallToolResult]) -> CallToolResult:
        try:
            return fn(self._workspace())
        except Exception as exc:  # noqa: BLE001 - every failure becomes a tool error
            return error_result(exc)

    def _require_submit(self, what: str) -> None:
        if not self.settings.allow_submit:
            raise Refused(
                f"{what} is disabled: this ci-runner MCP server is read-only. Show the plan "
                "(tool `plan`) to a person; to let agents start jobs, they restart the "
                "server as `ci-runner mcp --allow-submit`, or run `ci-runner submit FILE` "
                "themselves."
            )

    def _inside_root(self, file: str) -> str:
        """``file`` as given, once it is known to lie in the project, links followed.

        An agent may be steered by text it read; a tool must not read, or echo back,
        ``/etc/passwd``, ``~/.netrc`` or a link in the project that points at them.
        Nothing of an outside file is opened: only its name is checked.
        """
        root = self.settings.root.resolve()
        path = Path(file).expanduser()
        try:
            (path if path.is_absolute() else root / path).resolve().relative_to(root)
        except (ValueError, OSError, RuntimeError):
            raise OutsideProject(
                f"{file}: outside the project root {root}; these tools read only files "
                "inside it. Copy the experiment file into the project (e.g. experiments/) "
                "and pass its path relative to the root."
            ) from None
        return file

    def validate(self, files: list[str], data: bool = False) -> CallToolResult:
        def run(ws: Workspace) -> CallToolResult:
            files_ = [self._inside_root(file) for file in files]
            results = [cmd.validate_file(ws, file, with_data=data) for file in files_]
            return document_result([r.document for r in results], cmd.validate_exit_code(results))

        return self._run(run)

    def check_data(
        self,
        file: str | None = None,
        dataset: str | None = None,
        config: str | None = None,
        split: str = "train",
        remote: bool = False,
    ) -> CallToolResult:
        def run(ws: Workspace) -> CallToolResult:
            if bool(file) == bool(dataset):
                raise Refused("give an experiment `file` or a `dataset` id or path (not both)")
            if remote:
                self._require_submit("check_data with remote=true (a paid CPU job on HF Jobs)")
            if dataset:
                shown = cmd.check_data_source(
                    ws, dataset, config=config, split=split, remote=remote
                )
            else:
                assert file is not None
                shown = cmd.check_data_file(ws, self._inside_root(file), remote=remote)
            return document_result(shown.document, shown.exit_code)

        return self._run(run)

    def plan(
        self, file: str, backend: str | None = None, skip_data_check: bool = False
    ) -> CallToolResult:
        def run(ws: Workspace) -> CallToolResult:
            result, code = cmd.plan_file(
                ws, self._inside_root(file), backend=backend, check_data=not skip_data_check
            )
            return document_result(plan_json(result), code)

        return self._run(run)

    def submit(
        self, file: str, backend: str | None = None, skip_data_check: bool = False
    ) -> CallToolResult:
        def run(ws: Workspace) -> CallToolResult:
            self._require_submit("submit")
            outcome = cmd.submit_file(
                ws, self._inside_root(file), backend=backend, check_data=not skip_data_check
            )
            return document_result(cmd.submit_document(outcome))

        return self._run(run)

    def status(self) -> CallToolResult:
        return self._run(lambda ws: skipping(ws, document_result(cmd.status_document(ws))))

    def logs(self, run: str, tail: int = DEFAULT_TAIL) -> CallToolResult:
        def read(ws: Workspace) -> CallToolResult:
            if tail < 1:
                raise Refused("tail must be at least 1")
            return document_result(cmd.logs(ws, run, tail=tail).to_json())

        return self._run(read)

    def cancel(self, run: str) -> CallToolResult:
        def stop(ws: Workspace) -> CallToolResult:
            if not (self.settings.allow_submit or self.settings.allow_cancel):
                raise Refused(
                    "cancel is disabled: this ci-runner MCP server is read-only. Restart it "
                    "as `ci-runner mcp --allow-cancel` (or --allow-submit), or run "
                    "`ci-runner cancel RUN`."
                )
            return document_result(cmd.cancel(ws, run).to_json())

        return self._run(stop)

    def wait(
        self,
        experiments: list[str] | None = None,
        timeout_s: float = DEFAULT_WAIT_S,
        interval_s: float = 10.0,
    ) -> CallToolResult:
        def block(ws: Workspace) -> CallToolResult:
            if not 0 < timeout_s <= MAX_WAIT_S:
                raise Refused(f"timeout_s must be in (0, {MAX_WAIT_S:.0f}]")
            if interval_s <= 0:
                raise Refused("interval_s must be positive")
            run_ids = cmd.wait_run_ids(ws, experiments or [])
            if experiments and not run_ids:
                raise NotReadyError(f"no runs recorded for {', '.join(experiments)}")
            runs = cmd.watch(
                ws,
                run_ids,
                timeout=timeout_s,
                interval=interval_s,
                on_line=lambda line: log.info(redact(line.strip())),
            )
            document = cmd.wait_document(runs)
            return document_result(document, document["exit_code"])

        return self._run(block)

    def report(self) -> CallToolResult:
        return self._run(
            lambda ws: skipping(ws, document_result(cmd.report_document(cmd.report(ws))))
        )


# Descriptions are what an agent reads before calling: say what each costs.
DESCRIPTIONS = {
    "validate": (
        "Check experiment files (experiments/<name>.yaml): schema, TRL field names, paths, "
        "reward code. Returns `ci-runner validate --json`: per file {file, valid, name, "
        "method, spec_hash, warnings} or {file, valid: false, errors: [{file, line, field, "
        "message, hint}]}. With data=true also samples each dataset. Free: nothing runs. "
        "Files must lie inside the project root."
    ),
    "check_data": (
        "Does a dataset fit its method? Give `file` (an experiment) or `dataset` (a Hub id or "
        "local path, judged for every method). Returns `ci-runner check-data --json`: verdicts "
        "READY / NEEDS MAPPING (with the dataset.columns to add) / INCOMPATIBLE, token "
        "lengths. Free, except remote=true, which reads the rows in a CPU job on HF Jobs "
        "(billed per minute, about a cent) and needs a server started with --allow-submit."
    ),
    "plan": (
        "Hardware, LoRA, memory, time and estimated cost (est_cost_usd) of an experiment "
        "file, after a data check. Returns `ci-runner plan --json`. Free: nothing runs. Show "
        "this plan to the person before anything is submitted; _meta exit code 5 means over "
        "budget.max_cost_usd, 7 that the data does not fit. The file must lie inside the "
        "project root."
    ),
    "submit": (
        "COSTS MONEY: starts the file's training jobs (on hf-jobs, GPUs billed per minute, "
        "about the plan's est_cost_usd; on the local backend, this machine's time). Plans "
        "first and refuses (exit 5) a plan over budget.max_cost_usd, and (exit 7) data that "
        "does not fit. Resubmitting an unchanged file starts nothing. Returns `ci-runner "
        "submit --json`: {run_id, job_id, job_url, created, report, plan, warnings}. Refused "
        "unless the server was started with --allow-submit."
    ),
    "status": (
        "Every recorded run as the ledgers hold it (status, attempts, metrics, evaluations, "
        "error). Returns `ci-runner status --json`. Free: reads files only."
    ),
    "logs": (
        "The last `tail` lines of a run's current job log, for diagnosing a failure. `run` is "
        "a run id, a prefix of one, or an experiment name. Returns {run_id, job_id, lines}. "
        "Free."
    ),
    "cancel": (
        "Stop a run's job (stops its spending; resubmitting the file resumes from the last "
        "checkpoint). `run` is a run id, a prefix, or an experiment name. Returns {run_id, "
        "canceled, job_id, status, message}. Refused unless the server was started with "
        "--allow-cancel or --allow-submit."
    ),
    "wait": (
        "Poll until the runs of `experiments` (default: every active run) end, or timeout_s "
        "passes (at most 3600; runs continue). Returns `ci-runner wait --json`: {exit_code, "
        "runs}; exit_code 0 completed, 10 failed, 11 canceled, 12 still running. Polling is "
        "free, but it also starts what runs already submitted wait for (a pipeline's next "
        "stage, evaluation and export jobs), which cost what their plan said."
    ),
    "report": (
        "Re-render every report in training_reports/ from its ledger; writes only files that "
        "change. Returns {changed: [paths]}. Free."
    ),
}
TOOL_NAMES = tuple(DESCRIPTIONS)
READ_ONLY = {"validate", "check_data", "plan", "status", "logs"}


def build_server(settings: Settings, tools: Tools | None = None) -> MCPServer:
    tools = tools or Tools(settings)
    server: MCPServer[Any] = MCPServer(SERVER_NAME, instructions=INSTRUCTIONS, version=__version__)
    for name in TOOL_NAMES:
        annotations = ToolAnnotations(
            title=name.replace("_", " "),
            read_only_hint=name in READ_ONLY,
            destructive_hint=name == "cancel",
            idempotent_hint=name != "cancel",
            open_world_hint=name not in ("status", "report"),
        )
        server.add_tool(
            getattr(tools, name), name=name, description=DESCRIPTIONS[name], annotations=annotations
        )
    return server


def serve(settings: Settings) -> None:
    """Serve over stdio until the client closes it. Relative paths are the project's."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="ci-runner mcp: %(message)s")
    os.chdir(settings.root)  # file arguments read as from the project root, as in the CLI
    server = build_server(settings)
    log.info(
        "serving %s (%s)",
        settings.root,
        "submit allowed" if settings.allow_submit else "read-only",
    )
    server.run("stdio")
