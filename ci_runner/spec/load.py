"""Read an experiment file into an ``Experiment``, or fail pointing at the line.

YAML is composed once into nodes to learn where every key and value sits, then
validated by pydantic; each error is mapped back to ``file:line: field``.
All problems are reported together, so one edit fixes them all.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ci_runner.core.flavors import FLAVORS_BY_NAME
from ci_runner.errors import SpecError, SpecIssue
from ci_runner.spec.checks import (
    Finding,
    check_cross_fields,
    check_hyperparameters,
    did_you_mean,
    trl_fields,
)
from ci_runner.spec.expand import expand_checked
from ci_runner.spec.model import BUILTIN_REWARDS, Experiment
from ci_runner.spec.references import check_references

_BOOL = "tag:yaml.org,2002:bool"
_FLOAT = "tag:yaml.org,2002:float"
Path_ = tuple[str | int, ...]


# An experiment file is a page of settings. Anything far larger is a mistake or an attack
# (a "billion laughs" file expands a few aliases into gigabytes).
MAX_FILE_BYTES = 1 << 20
MAX_ALIASES = 50
MAX_NODES = 20_000


class _TooBig(yaml.MarkedYAMLError):
    """A file whose aliases or size would expand beyond what an experiment needs."""


class _Loader(yaml.SafeLoader):
    """YAML 1.2 scalars: ``on``/``off``/``yes``/``no`` stay strings, ``2e-4`` is a float.

    PyYAML follows YAML 1.1, where ``on:`` becomes the key ``True`` (the GitHub
    Actions trap) and ``2e-4`` a string; experiment files should read as written.
    Aliases (``*name``) are counted as they are composed, and refused past a budget.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _TooBig(
                    problem=f"more than {MAX_ALIASES} aliases (*name); an experiment file "
                    "needs few, if any",
                    problem_mark=mark,
                )
        return super().compose_node(parent, index)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_BOOL, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"
    ),
    list("-+0123456789."),
)


class _Lines:
    """Line numbers (1-based) of keys and values, by field path."""

    def __init__(self) -> None:
        self.key: dict[Path_, int] = {}
        self.value: dict[Path_, int] = {}
        self.duplicates: list[tuple[Path_, int]] = []

    def walk(self, node: yaml.Node, path: Path_ = ()) -> None:
        self.value[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = key_node.value
                child = (*path, key)
                if key in seen:
                    self.duplicates.append((child, key_node.start_mark.line + 1))
                seen.add(key)
                self.key[child] = key_node.start_mark.line + 1
                self.walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.key[(*path, index)] = item.start_mark.line + 1
                self.walk(item, (*path, index))

    def line(self, path: Path_, *, at_key: bool = False) -> int | None:
        """The closest known line for ``path``, walking up to a parent if needed."""
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            table = self.key if at_key and end == len(path) else self.value
            if prefix in table:
                return table[prefix]
            if prefix in self.key:
                return self.key[prefix]
        return None


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _is_union_tag(part: Any) -> bool:
    """pydantic names union members in ``loc`` (``LoraSpec``, ``literal[...]``)."""
    return isinstance(part, str) and not re.fullmatch(r"[a-z_][a-z0-9_]*", part)


def _data_path(loc: tuple[str | int, ...], data: Any) -> Path_:
    """Map a pydantic ``loc`` onto the data's own keys."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if _is_union_tag(part) and not (isinstance(node, dict) and part in node):
            continue  # a union member's name, not a key the file wrote
        path.append(part)
        if isinstance(node, dict) and part in node:  # noqa: SIM114 - each branch narrows part
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            break  # a missing or unknown key: name it, go no deeper
    return tuple(path)


def _allowed_keys(model: type[BaseModel], path: Path_) -> list[str]:
    """The field names valid at ``path``, for did-you-mean on unknown keys."""
    current: Any = model
    for part in path:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return []
        current = next(
            (
                arg
                for arg in (field.annotation, *typing.get_args(field.annotation))
                if isinstance(arg, type) and issubclass(arg, BaseModel)
            ),
            None,
        )
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _literal_choices(model: type[BaseModel], field: str) -> list[str]:
    info = model.model_fields.get(field)
    if info is None:
        return []
    choices: list[str] = []
    for arg in (info.annotation, *typing.get_args(info.annotation)):
        if typing.get_origin(arg) is typing.Literal:
            choices.extend(str(a) for a in typing.get_args(arg))
    return choices


def _hint_for(error: ErrorDetails, path: Path_, data: Any) -> str | None:
    kind = error["type"]
    if kind == "extra_forbidden":
        if len(path) == 1 and any(path[0] in m["fields"] for m in trl_fields()["methods"].values()):
            return f"{path[0]} is a TRL setting: move it under `hyperparameters:`"
        return did_you_mean(str(path[-1]), _allowed_keys(Experiment, path[:-1])) or (
            f"allowed here: {', '.join(_allowed_keys(Experiment, path[:-1]))}"
        )
    if kind == "missing":
        return f"add `{path[-1]}:` to the file"
    given = error.get("input")
    if isinstance(given, str) and given.strip() and given != given.strip():
        return (
            f'write {given.strip()!r} with nothing around it: a quoted "\\n" or a `|` '
            "block keeps a line break that the job would then fail on"
        )
    if path == ("lora",):
        return "use auto, off, or settings such as `lora: {r: 16, alpha: 32}`"
    if kind == "literal_error" and len(path) == 1:
        value = data.get(path[0]) if isinstance(data, dict) else None
        choices = _literal_choices(Experiment, str(path[0]))
        return did_you_mean(str(value), choices) or f"one of: {', '.join(choices)}"
    if len(path) == 2 and path[0] == "rewards":
        return did_you_mean(str(data["rewards"][path[1]]), BUILTIN_REWARDS)
    if path == ("hardware",):
        return did_you_mean(str(data.get("hardware")), FLAVORS_BY_NAME) or (
            "use `auto` or a flavor from `ci-runner plan --list-hardware`"
        )
    return None


def _message_for(error: ErrorDetails) -> str:
    """pydantic's message, with the value the file gave when it doesn't already say it."""
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    message = error["msg"].removeprefix("Value error, ")
    given = error.get("input")
    if isinstance(given, (str, int, float, bool)) and repr(given) not in message:
        message += f", got {given!r}"
    return message


def _issues_from_validation(
    exc: ValidationError, data: Any, lines: _Lines, file: str
) -> list[SpecIssue]:
    located: dict[Path_, ErrorDetails] = {}
    for error in exc.errors():
        located.setdefault(_data_path(error["loc"], data), error)
    # A union reports every member; keep the error that went deepest into the data.
    paths = [p for p in located if not any(q[: len(p)] == p and q != p for q in located)]
    issues = []
    for path in paths:
        error = located[path]
        if path[-1:] == ("base_model_revision",) and path not in lines.key:
            path = (*path[:-1], "base_model")  # written as base_model: org/name@rev
        line = lines.line(path, at_key=error["type"] == "extra_forbidden")
        hint = _hint_for(error, path, data)
        issues.append(SpecIssue(file, line, _dotted(path), _message_for(error), hint))
    return issues


def _issue(finding: Finding, lines: _Lines, file: str) -> SpecIssue:
    line = lines.line(finding.path, at_key=finding.at_key)
    return SpecIssue(file, line, _dotted(finding.path), finding.message, finding.hint)


def parse_experiment(
    text: str,
    file: str,
    overrides: dict[str, Any] | None = None,
    *,
    root: Path | None = None,
    warnings: list[SpecIssue] | None = None,
) -> Experiment:
    """Text in, ``Experiment`` out, or ``SpecError`` with every problem found.

    ``overrides`` (e.g. ``--backend`` on the command line) replace top-level fields
    before validation, so they are checked like the file itself. With ``root`` (the
    project), references to models, datasets and reward code are checked on disk and
    local ones spelled ``./…``; ``warnings`` collects what is worth saying but not wrong.
    """
    root_node, data = _compose(text, file)
    if not isinstance(data, dict):
        raise SpecError(
            [
                SpecIssue(
                    file, 1, "", "expected a mapping of fields", "start with `name: my-experiment`"
                )
            ]
        )
    data = {**data, **(overrides or {})}
    multi_run = data.get("stages") is not None or data.get("matrix") is not None
    if multi_run:
        data = _first_base_model(data)
    lines = _Lines()
    assert root_node is not None  # the data is a mapping
    lines.walk(root_node)
    data, ref_errors, ref_warnings = check_references(data, root)
    if warnings is not None:
        warnings += [_issue(f, lines, file) for f in ref_warnings]
    issues = [
        SpecIssue(
            file, line, _dotted(path), "duplicate key", "YAML keeps only the last one; remove one"
        )
        for path, line in lines.duplicates
    ]
    issues += [_issue(f, lines, file) for f in ref_errors]
    missing_inputs = [_issue(f, lines, file) for f in ref_errors if f.missing]
    # Optional in the schema only because stages and matrices can set them.
    missing = (
        []
        if multi_run
        else [
            SpecIssue(
                file,
                lines.line((key,)),
                key,
                "required field is missing",
                f"add `{key}:` to the file",
            )
            for key in ("method", "dataset")
            if data.get(key) is None
        ]
    )
    issues += missing
    try:
        experiment = Experiment.model_validate(data)
    except ValidationError as exc:
        issues += _issues_from_validation(exc, data, lines, file)
        if not multi_run:  # the rest of the file is checked too: one run, every mistake
            issues += [_issue(f, lines, file) for f in _raw_hyperparameter_findings(data)]
        raise SpecError(_ordered(issues)) from None
    if experiment.is_multi_run:  # every run is checked on its own, its errors located here
        _, findings = expand_checked(experiment)
        issues += [_issue(f, lines, file) for f in findings]
        if issues:
            only_missing = set(issues) <= set(missing_inputs)
            raise SpecError(_ordered(issues), missing_inputs=only_missing)
        return experiment
    if missing:
        issues += [_issue(f, lines, file) for f in _raw_hyperparameter_findings(data)]
        raise SpecError(_ordered(issues))
    assert experiment.method is not None  # else it is missing
    hyperparameters, findings = check_hyperparameters(experiment.method, experiment.hyperparameters)
    findings += check_cross_fields(experiment)
    issues += [_issue(f, lines, file) for f in findings]
    if issues:
        only_missing = set(issues) <= set(missing_inputs)
        raise SpecError(_ordered(issues), missing_inputs=only_missing)
    return experiment.model_copy(update={"hyperparameters": hyperparameters})


def _compose(text: str, file: str) -> tuple[yaml.Node | None, Any]:
    """Nodes (for line numbers) and data, from one parse, within the size budgets."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise SpecError(
            [SpecIssue(file, None, "", f"larger than {MAX_FILE_BYTES >> 20} MiB", _SMALLER)]
        )
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None and _expanded_size(node, MAX_NODES) > MAX_NODES:
            raise _TooBig(
                problem=f"expands to more than {MAX_NODES:,} values through its aliases",
                problem_mark=node.start_mark,
            )
        return node, loader.construct_document(node) if node is not None else None
    except _TooBig as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise SpecError([SpecIssue(file, line, "", str(exc.problem), _SMALLER)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = f"{exc.problem} {exc.context or ''}".strip()
        raise SpecError(
            [SpecIssue(file, line, "", f"invalid YAML: {problem}", "check indentation and quoting")]
        ) from None
    except RecursionError:
        raise SpecError([SpecIssue(file, None, "", "nested too deeply", _SMALLER)]) from None
    finally:
        loader.dispose()


_SMALLER = "write the settings out plainly; experiment files need no anchors or generated bulk"


def _expanded_size(node: yaml.Node, limit: int) -> int:
    """How many nodes the document has once aliases are expanded (stops counting at limit)."""
    memo: dict[int, int] = {}

    def size(current: yaml.Node) -> int:
        if id(current) in memo:
            return memo[id(current)]
        total = 1
        if isinstance(current, yaml.SequenceNode):
            children = current.value
        elif isinstance(current, yaml.MappingNode):
            children = [n for pair in current.value for n in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > limit:
                break
        memo[id(current)] = total
        return total

    return size(node)


def _raw_hyperparameter_findings(data: dict[str, Any]) -> list[Finding]:
    """TRL field checks on the file as written, when the schema failed elsewhere."""
    method, hyperparameters = data.get("method"), data.get("hyperparameters")
    if not isinstance(method, str) or not isinstance(hyperparameters, dict):
        return []
    if method not in trl_fields()["methods"]:
        return []
    return check_hyperparameters(method, hyperparameters)[1]


def _ordered(issues: list[SpecIssue]) -> list[SpecIssue]:
    """By line, each problem once."""
    unique = list(dict.fromkeys(issues))
    return sorted(unique, key=lambda i: i.line or 0)


def _first_base_model(data: dict[str, Any]) -> dict[str, Any]:
    """``base_model`` may live only in the matrix or the first stage; the file's top level
    then takes the first one (it names the report; every run sets its own)."""
    if "base_model" in data:
        return data
    matrix, stages = data.get("matrix"), data.get("stages")
    if (
        isinstance(matrix, dict)
        and isinstance(matrix.get("base_model"), list)
        and matrix["base_model"]
    ):
        return {**data, "base_model": matrix["base_model"][0]}
    if (
        isinstance(stages, list)
        and stages
        and isinstance(stages[0], dict)
        and stages[0].get("base_model")
    ):
        return {**data, "base_model": stages[0]["base_model"]}
    return data


def load_experiment(
    path: str | Path,
    overrides: dict[str, Any] | None = None,
    *,
    root: Path | None = None,
    warnings: list[SpecIssue] | None = None,
) -> Experiment:
    """Read and parse an experiment file; ``root`` turns on the checks against the project."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            issue = SpecIssue(str(path), None, "", f"larger than {MAX_FILE_BYTES >> 20} MiB")
            raise SpecError([issue])
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([SpecIssue(str(path), None, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([SpecIssue(str(path), None, "", f"cannot read: {exc}")]) from None
    return parse_experiment(text, str(path), overrides, root=root, warnings=warnings)


def field_line(path: Path, dotted: str) -> int | None:
    """The line of a field in an experiment file, for errors found after loading (a repo
    the Hub does not know); the closest parent's line when the field is not written out."""
    try:
        node, _ = _compose(path.read_text(encoding="utf-8"), str(path))
    except (OSError, SpecError):
        return None
    if node is None:
        return None
    lines = _Lines()
    lines.walk(node)
    parts = tuple(dotted.split("."))
    if parts == ("dataset", "path") and parts not in lines.value:
        parts = ("dataset",)  # the shorthand `dataset: org/name`
    return lines.line(parts)
