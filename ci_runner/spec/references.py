"""What an experiment file points at outside itself: models, datasets and reward code.

Checked while loading, against the project root, so ``validate`` reports a mistyped path or
a missing reward function together with every other mistake, and every later stage sees
each reference decided once: a local value is rewritten as ``./…`` (``core.hub``).
Reward modules are parsed, never imported: the file is someone's code, and loading it
here would run it.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ci_runner.core.hub import RefKind, is_local_path, missing_path_hint, resolve_ref
from ci_runner.spec.checks import Finding, did_you_mean

Path_ = tuple[str | int, ...]


def check_references(
    data: dict[str, Any], root: Path | None
) -> tuple[dict[str, Any], list[Finding], list[Finding]]:
    """The data with local references spelled ``./…``, plus errors and warnings.

    Without ``root`` nothing is looked up on disk; only the spelling is checked.
    """
    data = copy.deepcopy(data)
    errors: list[Finding] = []
    warnings: list[Finding] = []
    for path, kind in list(_references(data)):
        value = _get(data, path)
        if not isinstance(value, str) or not value:
            continue  # the schema reports a missing or mistyped value
        ref = resolve_ref(value, root)
        if ref.kind is RefKind.HUB:
            continue
        if root is None:
            if not is_local_path(value):
                errors.append(_neither(path, value))
            continue
        if not ref.exists:
            errors.append(_missing(path, value, kind, ref.path))
            continue
        problem = _not_a_model(ref.path) if kind == "model" else None
        if problem:
            errors.append(
                Finding(
                    path,
                    f"{value!r} {problem}",
                    "point at a folder saved with save_pretrained (config.json and weights)",
                )
            )
        if ref.shadows_hub_id:
            warnings.append(
                Finding(
                    path,
                    f"{value!r} exists in this project, so the local copy is used, not the "
                    "Hub repo of that name",
                    f"write ./{value} to say so, or move the folder to train the Hub repo",
                )
            )
        _set(data, path, ref.value)
    for path, value in _rewards(data):
        errors += _reward_findings(path, value, root)
    return data, errors, warnings


def _scopes(data: dict[str, Any]) -> Iterator[tuple[Path_, dict[str, Any]]]:
    """The file's top level, then each stage: where runs' fields are written."""
    yield (), data
    stages = data.get("stages")
    if isinstance(stages, list):
        yield from ((("stages", i), s) for i, s in enumerate(stages) if isinstance(s, dict))


def _references(data: dict[str, Any]) -> Iterator[tuple[Path_, str]]:
    """Where models and datasets are named: the top level, each stage, the matrix."""
    for prefix, scope in _scopes(data):
        if "base_model" in scope:
            yield (*prefix, "base_model"), "model"
        dataset = scope.get("dataset")
        if isinstance(dataset, str):
            yield (*prefix, "dataset"), "dataset"
        elif isinstance(dataset, dict) and "path" in dataset:
            yield (*prefix, "dataset", "path"), "dataset"
        yield from _benchmark_datasets(prefix, scope.get("evaluation"))
    matrix = data.get("matrix")
    if isinstance(matrix, dict):
        for key, kind in (("base_model", "model"), ("dataset.path", "dataset")):
            values = matrix.get(key)
            if isinstance(values, list):
                yield from ((("matrix", key, i), kind) for i in range(len(values)))


def _benchmark_datasets(prefix: Path_, evaluation: Any) -> Iterator[tuple[Path_, str]]:
    """``evaluation.benchmarks[i].dataset`` (or the list shorthand ``evaluation: [...]``)."""
    if isinstance(evaluation, dict):
        prefix, benchmarks = (*prefix, "evaluation", "benchmarks"), evaluation.get("benchmarks")
    else:
        prefix, benchmarks = (*prefix, "evaluation"), evaluation
    if isinstance(benchmarks, list):
        for i, entry in enumerate(benchmarks):
            if isinstance(entry, dict) and "dataset" in entry:
                yield (*prefix, i, "dataset"), "dataset"


def _rewards(data: dict[str, Any]) -> Iterator[tuple[Path_, str]]:
    for prefix, scope in _scopes(data):
        rewards = scope.get("rewards")
        if isinstance(rewards, list):
            for i, value in enumerate(rewards):
                if isinstance(value, str) and ".py:" in value:
                    yield (*prefix, "rewards", i), value


def _get(data: Any, path: Path_) -> Any:
    for part in path:
        data = data[part]
    return data


def _set(data: Any, path: Path_, value: Any) -> None:
    _get(data, path[:-1])[path[-1]] = value


def _neither(path: Path_, value: str) -> Finding:
    return Finding(
        path,
        f"{value!r} is neither a Hub id (org/name) nor a local path",
        "write a Hub repo id such as Qwen/Qwen3-0.6B, or a path under the project such as "
        "./models/my-model",
    )


def _missing(path: Path_, value: str, kind: str, where: Path | None) -> Finding:
    what = "model folder" if kind == "model" else "dataset file or folder"
    hint = missing_path_hint(where)
    if value.removeprefix("./").startswith("fixtures/") and not (
        where is not None and where.parent.exists()
    ):
        hint = "build the offline demo fixtures first: ci-runner fixtures"
    if is_local_path(value):
        return Finding(path, f"no {what} at {value!r}", hint, missing=True)
    message = f"{value!r} is not in this project and cannot be a Hub repo id"
    return Finding(path, message, hint, missing=True)


def _not_a_model(path: Path | None) -> str | None:
    if path is None or not path.is_dir():
        return "is a file, not a model folder"
    if not any((path / name).is_file() for name in ("config.json", "adapter_config.json")):
        return "is not a model folder: it has no config.json"
    return None


def _reward_findings(path: Path_, value: str, root: Path | None) -> list[Finding]:
    """``path/to/module.py:function``: the file exists in the project and defines it."""
    file_part, _, function = value.rpartition(":")
    if root is None:
        return []
    file = Path(file_part).expanduser()
    file = file if file.is_absolute() else root / file
    if not file.is_file():
        hint = missing_path_hint(file)
        return [Finding(path, f"no reward module at {file_part!r}", hint, missing=True)]
    try:
        source = file.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(file))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return [Finding(path, f"{file_part}: cannot read: {exc}")]
    except SyntaxError as exc:
        return [Finding(path, f"{file_part}:{exc.lineno}: does not parse: {exc.msg}")]
    names = _top_level_callables(tree)
    if function not in names:
        hint = did_you_mean(function, names) or (
            f"{file_part} defines {', '.join(names)}" if names else f"{file_part} defines none"
        )
        return [Finding(path, f"{file_part} has no function {function!r}", hint)]
    return []


def _top_level_callables(tree: ast.Module) -> list[str]:
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names += [(alias.asname or alias.name).split(".")[0] for alias in node.names]
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
    return names
