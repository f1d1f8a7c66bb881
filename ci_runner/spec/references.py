"""What an experiment file points at outside itself: models, datasets and reward code.

Checked while loading, against the project root, so ``validate`` reports a mistyped path or
a missing reward function together with every other mistake, and every later step sees
each reference decided once: a local value is rewritten as ``./…`` (``core.hub``).
Reward modules are parsed, never imported: the file is someone's code, and loading it
here would run it.
"""

from __future__ import annotations

import ast
import copy
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ci_runner.core.hub import (
    RefKind,
    is_local_path,
    local_path,
    missing_path_hint,
    resolve_ref,
    split_revision,
)
from ci_runner.spec.checks import Finding, did_you_mean

Path_ = tuple[str | int, ...]


# TRL/transformers settings whose string value names a file or folder to read.
PATH_FIELDS = ("chat_template_path", "deepspeed", "fsdp_config", "accelerator_config")
# Keys of ``*_kwargs`` dicts that name files or folders (from_pretrained's and datasets').
PATH_KEYS = re.compile(r"(_dir|_path|_file|_files)$")
ROOTS_ENV = "CI_RUNNER_ALLOWED_ROOTS"  # extra folders (os.pathsep-separated) data may live in


def allowed_roots(root: Path) -> list[Path]:
    """The project, plus folders the user named in ``CI_RUNNER_ALLOWED_ROOTS``."""
    extra = [Path(p).expanduser() for p in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if p]
    return [root, *extra]


def inside(path: Path, roots: list[Path]) -> bool:
    """Does ``path``, symlinks followed, lie under one of ``roots``?"""
    resolved = path.resolve()
    return any(resolved.is_relative_to(r.resolve()) for r in roots)


def check_references(
    data: dict[str, Any], root: Path | None
) -> tuple[dict[str, Any], list[Finding], list[Finding]]:
    """The data with local references spelled ``./…``, plus errors and warnings.

    Without ``root`` nothing is looked up on disk; only the spelling is checked. Local
    inputs must resolve, symlinks followed, inside the project or an allowed root: an
    experiment file from a contributor must not read ``/etc`` or ``/proc`` into a report.
    """
    data = copy.deepcopy(data)
    errors: list[Finding] = _remote_code_findings(data)
    warnings: list[Finding] = []
    roots = allowed_roots(root) if root is not None else []
    for path, kind in list(_references(data)):
        value = _get(data, path)
        if not isinstance(value, str) or not value:
            continue  # the schema reports a missing or mistyped value
        repo, revision = split_revision(value) if kind == "model" else (value, None)
        ref = resolve_ref(repo, root)
        if ref.kind is RefKind.HUB:
            continue
        if revision is not None:
            errors.append(
                Finding(
                    path,
                    f"{value!r}: a revision (@{revision}) only applies to a Hub repo",
                    "drop the @… from a local path, or name the Hub repo",
                )
            )
            continue
        if root is None:
            if not is_local_path(value):
                errors.append(_neither(path, value))
            continue
        if not ref.exists:
            errors.append(_missing(path, value, kind, ref.path))
            continue
        escape = escapes(ref.path, roots)
        if escape:
            errors.append(_outside(path, value, escape))
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
    for path, value in _path_settings(data):
        ref = resolve_ref(value, root)
        if ref.kind is RefKind.HUB or root is None:
            continue
        if not ref.exists:
            errors.append(Finding(path, f"no file at {value!r}", missing_path_hint(ref.path)))
        elif escape := escapes(ref.path, roots):
            errors.append(_outside(path, value, escape))
    return data, errors, warnings


def escapes(path: Path | None, roots: list[Path]) -> Path | None:
    """The first file that resolves outside ``roots``: the path itself, or a link in it."""
    if path is None or not roots:
        return None
    if not inside(path, roots):
        return path.resolve()
    if path.is_dir():
        for count, (folder, dirs, files) in enumerate(os.walk(path)):
            for name in [*dirs, *files]:
                entry = Path(folder) / name
                if entry.is_symlink() and not inside(entry, roots):
                    return entry
            if count > 1000:
                break
    return None


def _outside(path: Path_, value: str, where: Path) -> Finding:
    return Finding(
        path,
        f"{value!r} reads {where}, which is outside the project",
        f"copy it into the project, or allow its folder with {ROOTS_ENV}=/that/folder",
    )


def _remote_code_findings(data: dict[str, Any]) -> list[Finding]:
    """``trust_remote_code`` runs the model repo's own Python in the job: opt in explicitly."""
    if data.get("allow_remote_code") is True:
        return []
    findings = []
    for prefix, scope in _scopes(data):
        hyperparameters = scope.get("hyperparameters")
        if not isinstance(hyperparameters, dict):
            continue
        places: list[tuple[Path_, Any]] = [
            (
                (*prefix, "hyperparameters", "trust_remote_code"),
                hyperparameters.get("trust_remote_code"),
            )
        ]
        for key in ("model_init_kwargs", "ref_model_init_kwargs"):
            kwargs = hyperparameters.get(key)
            if isinstance(kwargs, dict):
                places.append(
                    (
                        (*prefix, "hyperparameters", key, "trust_remote_code"),
                        kwargs.get("trust_remote_code"),
                    )
                )
        findings += [
            Finding(
                path,
                "trust_remote_code runs the model repository's own Python code in the job",
                "if you trust that code, add `allow_remote_code: true` at the top of the file "
                "(the plan and the PR comment will say so)",
            )
            for path, value in places
            if value is True
        ]
    return findings


def _path_settings(data: dict[str, Any]) -> Iterator[tuple[Path_, str]]:
    """TRL settings and ``*_kwargs`` entries whose string value names a file to read."""
    for prefix, scope in _scopes(data):
        hyperparameters = scope.get("hyperparameters")
        if not isinstance(hyperparameters, dict):
            continue
        for name, value in hyperparameters.items():
            if name in PATH_FIELDS and isinstance(value, str):
                yield (*prefix, "hyperparameters", name), value
            elif name.endswith("_kwargs") and isinstance(value, dict):
                for key, item in value.items():
                    if PATH_KEYS.search(str(key)) and isinstance(item, str):
                        yield (*prefix, "hyperparameters", name, key), item


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
    file = local_path(file_part, root)
    if file.exists() and not inside(file, [root]):
        return [
            Finding(
                path,
                f"{file_part!r} is outside the project; reward code must live in the repository",
                "move the module into the project and refer to it by a relative path",
            )
        ]
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
