"""One experiment file → the concrete runs it describes. Pure: no I/O, no clock.

A file without ``matrix:`` or ``stages:`` is one run, exactly as before: its id is
``<name>-<spec hash>``. Otherwise:

- ``matrix:`` works as in GitHub Actions: the product of the listed values, minus
  ``exclude`` (partial matches), plus ``include`` (added to every combination whose
  original values it does not change, else a combination of its own). Keys are field
  paths: ``hyperparameters.learning_rate``, ``lora.r``, ``base_model``, ``dataset.path``,
  or a stage's field, ``dpo.hyperparameters.beta``. Each combination is one run whose
  id is the hash of what it trains, so editing the matrix adds only the new
  combinations and resubmitting the file duplicates nothing.
- ``stages:`` is an ordered pipeline: each stage is one run that takes the top-level
  fields it leaves out (``hyperparameters`` merge key by key) and depends on the stage
  before it. A stage without its own ``base_model`` trains from the previous stage's
  model; its id also hashes that predecessor's id, so a changed stage re-runs the
  stages after it. With a matrix, each combination is a pipeline of its own.

Every concrete run is an ``Experiment`` of today's single-run schema, so planning,
resolving and running work per run unchanged.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import re
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ci_runner.core.hashing import short_hash
from ci_runner.spec.checks import Finding, check_cross_fields, check_hyperparameters, did_you_mean
from ci_runner.spec.model import MULTI_RUN, Experiment, StageSpec

Path_ = tuple[str | int, ...]
RESERVED = ("include", "exclude")
MAX_RUNS = 256  # GitHub Actions' own limit for one matrix
DEFAULT_MAX_PARALLEL = {"local": 1, "hf-jobs": 4, "ray": 2}
# What a matrix cannot vary: the run's identity, and how the whole file is run and paid for.
FIXED = {"name", "description", "backend", "budget", "retry", "allow_remote_code", *MULTI_RUN}
_KEY_HINT = "vary fields such as hyperparameters.learning_rate, lora.r, base_model or dataset.path"

Combination = dict[str, tuple[Any, Path_]]  # matrix key → (value, where the file sets it)
ReplicateKey = tuple[str | None, tuple[tuple[str, str], ...]]  # see ``replicate_key``


@dataclass(frozen=True)
class RunSpec:
    """One concrete run of an experiment file."""

    run_id: str
    experiment: Experiment  # today's single-run schema; see ``base_from`` for base_model
    stage_index: int | None = None
    stage_name: str | None = None
    depends_on: str | None = None  # the run that must complete (evaluation included) first
    # The run whose trained model is this run's base model, known once it completed;
    # until then ``experiment.base_model`` is the model that one started from (same size).
    base_from: str | None = None
    matrix: dict[str, Any] | None = None  # this combination's values, by matrix key
    replicate_of: str | None = None  # ``submit --rerun``: the run this one repeats

    @property
    def label(self) -> str:
        parts = []
        if self.stage_name is not None and self.stage_index is not None:
            parts.append(f"stage {self.stage_index + 1}: {self.stage_name}")
        if self.matrix:
            parts.append(", ".join(f"{k}={_show(v)}" for k, v in self.matrix.items()))
        return "; ".join(parts)

    @property
    def title(self) -> str:
        return f"{self.run_id} ({self.label})" if self.label else self.run_id


class ExpansionError(ValueError):
    def __init__(self, findings: list[Finding]):
        self.findings = findings
        super().__init__("; ".join(f"{'.'.join(map(str, f.path))}: {f.message}" for f in findings))


def max_parallel(experiment: Experiment) -> int:
    """Jobs one experiment file may have running at once."""
    return experiment.max_parallel or DEFAULT_MAX_PARALLEL.get(experiment.backend, 1)


def expand(experiment: Experiment) -> list[RunSpec]:
    runs, findings = expand_checked(experiment)
    if findings:
        raise ExpansionError(findings)
    return runs


def expand_checked(experiment: Experiment) -> tuple[list[RunSpec], list[Finding]]:
    """The runs, and every problem found on the way, located in the file's own terms."""
    if not experiment.is_multi_run:
        return [RunSpec(experiment.run_id, experiment)], []
    stages = experiment.stages or []
    names, findings = _stage_names(experiment)
    combos: list[Combination] = [{}]
    matrix = _with_seeds(experiment, findings)
    if matrix is not None:
        combos, matrix_findings = _combinations(matrix, names)
        findings += matrix_findings
    if findings:
        return [], findings
    base = experiment.model_dump(mode="json", exclude_unset=True, exclude=MULTI_RUN)
    stage_raws = [s.model_dump(mode="json", exclude_unset=True) for s in stages]
    runs: list[RunSpec] = []
    seen: set[str] = set()
    for combo in combos:
        chain = _expand_combination(base, stage_raws, names, combo, matrix is not None)
        for spec, spec_findings in chain:
            findings += spec_findings
            if spec is not None and spec.run_id not in seen:
                seen.add(spec.run_id)
                runs.append(spec)
    unique: list[Finding] = []
    for finding in findings:
        if all((f.path, f.message) != (finding.path, finding.message) for f in unique):
            unique.append(finding)
    return runs, unique


def _with_seeds(experiment: Experiment, findings: list[Finding]) -> dict[str, Any] | None:
    """Replicates are one more matrix axis, ``seed``: each combination runs per seed."""
    seeds = experiment.replicate_seeds
    if not seeds:
        return experiment.matrix
    matrix = dict(experiment.matrix or {})
    if "seed" in matrix:
        findings.append(
            Finding(
                ("matrix", "seed"),
                "the matrix already varies the seed, and so do replicates",
                "keep one: `matrix: {seed: [...]}` or `replicates: N`",
            )
        )
    matrix["seed"] = seeds
    return matrix


def rerun_of(spec: RunSpec, number: int, seed: int) -> RunSpec:
    """Replicate ``number`` (2, 3, ...) of a run: the same configuration and inputs under
    another seed, recorded beside the original (``submit --rerun``)."""
    experiment = spec.experiment.model_copy(update={"seed": seed})
    return dataclasses.replace(
        spec,
        run_id=f"{spec.run_id}-r{number}",
        experiment=experiment,
        matrix={**(spec.matrix or {}), "seed": seed},
        replicate_of=spec.replicate_of or spec.run_id,
    )


def replicate_key(matrix: dict[str, Any] | None, stage_name: str | None) -> ReplicateKey | None:
    """Runs that differ only in their seed share this key; None for a run without one."""
    if not matrix or "seed" not in matrix:
        return None
    rest = sorted((k, json.dumps(v, sort_keys=True)) for k, v in matrix.items() if k != "seed")
    return (stage_name, tuple(rest))


# --- stages ----------------------------------------------------------------------


def _stage_names(experiment: Experiment) -> tuple[list[str], list[Finding]]:
    """A stage is named by its ``name:``, else its method (``sft``), numbered if repeated."""
    stages = experiment.stages or []
    defaults = [s.method or experiment.method or f"stage{i + 1}" for i, s in enumerate(stages)]
    names, findings = [], []
    for i, stage in enumerate(stages):
        if stage.name is not None:
            name = stage.name
            if name in names:
                findings.append(
                    Finding(
                        ("stages", i, "name"),
                        f"two stages are named {name!r}",
                        "give each stage its own `name:`",
                    )
                )
            if name in Experiment.model_fields:
                findings.append(
                    Finding(
                        ("stages", i, "name"),
                        f"{name!r} is also a field name, so matrix keys would be ambiguous",
                        "pick another `name:`",
                    )
                )
        else:
            name = defaults[i] if defaults.count(defaults[i]) == 1 else f"{defaults[i]}-{i + 1}"
        names.append(name)
    return names, findings


def _expand_combination(
    base: dict[str, Any],
    stage_raws: list[dict[str, Any]],
    names: list[str],
    combo: Combination,
    has_matrix: bool,
) -> list[tuple[RunSpec | None, list[Finding]]]:
    top = copy.deepcopy(base)
    stage_keys: dict[str, list[tuple[list[str], Any]]] = {}
    for key, (value, _) in combo.items():
        parts = key.split(".")
        if stage_raws and parts[0] in names:
            stage_keys.setdefault(parts[0], []).append((parts[1:], value))
        else:
            _assign(top, parts, value)
    values = {key: value for key, (value, _) in combo.items()} if has_matrix else None
    if not stage_raws:
        where = _Where(combo, names, None, {}, top)
        spec, findings = _concrete(top, where, name=None, depends_on=None, matrix=values)
        return [(spec and _finish(spec, where, None, has_matrix, successor=False), findings)]

    out: list[tuple[RunSpec | None, list[Finding]]] = []
    previous: RunSpec | None = None
    for i, raw in enumerate(stage_raws):
        # After a stage that failed to validate, later ones are still checked (all errors
        # at once); the runs are discarded anyway.
        stage = copy.deepcopy(raw)
        for parts, value in stage_keys.get(names[i], []):
            _assign(stage, parts, value)
        merged = {**top, **{k: v for k, v in stage.items() if k not in ("name", "hyperparameters")}}
        if "base_model" in stage and "base_model_revision" not in stage:
            merged.pop("base_model_revision", None)  # the top level's revision is another model's
        merged["hyperparameters"] = {
            **top.get("hyperparameters", {}),
            **(stage.get("hyperparameters") or {}),
        }
        base_from = i > 0 and "base_model" not in stage
        if base_from and previous is not None:
            merged["base_model"] = previous.experiment.base_model  # same architecture, same size
            merged.pop("base_model_revision", None)
            if "evaluation" not in stage:
                merged["evaluation"] = _without_base_eval(merged.get("evaluation"))
        where = _Where(combo, names, i, stage, top)
        spec, findings = _concrete(
            merged,
            where,
            name=names[i],
            depends_on=previous.run_id if previous else None,
            matrix=values,
            index=i,
            base_from=previous.run_id if base_from and previous else None,
        )
        successor = i + 1 < len(stage_raws) and "base_model" not in stage_raws[i + 1]
        if spec is not None:
            spec = _finish(spec, where, names[i], has_matrix, successor=successor)
        out.append((spec, findings))
        previous = spec
    return out


def _without_base_eval(evaluation: dict[str, Any] | None) -> dict[str, Any] | None:
    """A later stage's base model is the previous stage's final model: evaluated already."""
    if not evaluation:
        return evaluation
    models = [m for m in evaluation.get("models", ["base", "final"]) if m != "base"]
    if not models and evaluation.get("checkpoints") != "all":
        return None
    return {**evaluation, "models": models}


# --- one concrete run --------------------------------------------------------------


@dataclass(frozen=True)
class _Where:
    """Maps a concrete run's field back to where the file sets it (for file:line errors)."""

    combo: Combination
    names: list[str]
    stage: int | None
    stage_raw: dict[str, Any]
    top: dict[str, Any]

    def origin(self, path: Path_) -> Path_:
        for key, (_, origin) in self.combo.items():
            parts: tuple[str, ...] = tuple(key.split("."))
            if self.names and parts[0] in self.names:
                if self.stage is None or self.names[self.stage] != parts[0]:
                    continue
                parts = parts[1:]
            n = min(len(parts), len(path))
            if n and parts[:n] == path[:n]:
                return origin
        if self.stage is not None and path:
            field = path[0]
            inherited_hp = (
                field == "hyperparameters"
                and len(path) > 1
                and path[1] not in (self.stage_raw.get("hyperparameters") or {})
            )
            if (field in self.stage_raw and not inherited_hp) or field not in self.top:
                return ("stages", self.stage, *path)
        return path

    def finding(self, path: Path_, message: str, hint: str | None, at_key: bool) -> Finding:
        origin = self.origin(path)
        if at_key and origin[:1] == ("matrix",) and isinstance(origin[-1], int):
            origin = origin[:-1]  # about the key itself, not one of its values
        in_stage = origin[:2] == ("stages", self.stage) or origin[:1] == ("matrix",)
        if self.stage is not None and not in_stage:
            message += f" (stage {self.names[self.stage]})"
        return Finding(origin, message, hint, at_key)


def _concrete(
    data: dict[str, Any],
    where: _Where,
    *,
    name: str | None,
    depends_on: str | None,
    matrix: dict[str, Any] | None,
    index: int | None = None,
    base_from: str | None = None,
) -> tuple[RunSpec | None, list[Finding]]:
    try:
        experiment = Experiment.model_validate(data)
    except ValidationError as exc:
        errors = [(_error_path(e), e) for e in exc.errors()]
        # A union reports every member; keep the error that went deepest into the data.
        deepest = [
            (path, e)
            for path, e in errors
            if not any(p[: len(path)] == path and p != path for p, _ in errors)
        ]
        return None, [_from_error(path, error, where) for path, error in deepest]
    findings = []
    for field in ("method", "dataset"):
        if getattr(experiment, field) is None:
            where_to = "the stage or the file's top level" if name else "the file"
            findings.append(
                where.finding(
                    (field,), "required field is missing", f"add `{field}:` to {where_to}", False
                )
            )
    if findings:
        return None, findings
    assert experiment.method is not None  # checked just above
    hyperparameters, hp_findings = check_hyperparameters(
        experiment.method, experiment.hyperparameters
    )
    experiment = experiment.model_copy(update={"hyperparameters": hyperparameters})
    findings += [where.finding(f.path, f.message, f.hint, f.at_key) for f in hp_findings]
    findings += [
        where.finding(f.path, f.message, f.hint, f.at_key) for f in check_cross_fields(experiment)
    ]
    digest = experiment.spec_hash
    if depends_on:
        digest = short_hash(f"{digest}:{depends_on}")
    spec = RunSpec(
        run_id=f"{experiment.name}-{digest[:8]}",
        experiment=experiment,
        stage_index=index,
        stage_name=name,
        depends_on=depends_on,
        base_from=base_from,
        matrix=matrix,
    )
    return spec, findings


def _finish(
    spec: RunSpec,
    where: _Where,
    stage: str | None,
    has_matrix: bool,
    *,
    successor: bool,
) -> RunSpec:
    """Keep runs from overwriting each other's Hub repo; merge a LoRA stage others train on.

    A run that inherits ``output.hub_model_id`` gets the stage name and, in a matrix, its
    own id's hash appended: ``me/model-sft-1a2b3c4d``. Applied after the id is taken, so
    the id stays the hash of what the file says.
    """
    experiment = spec.experiment
    output = experiment.output
    own_repo = (where.stage_raw.get("output") or {}).get("hub_model_id") or any(
        key.split(".")[-2:] in (["output"], ["output", "hub_model_id"]) for key in where.combo
    )
    update: dict[str, Any] = {}
    if output.hub_model_id and not own_repo:
        suffix = (f"-{stage}" if stage else "") + (
            f"-{spec.run_id.rsplit('-', 1)[1]}" if has_matrix else ""
        )
        update["hub_model_id"] = output.hub_model_id + suffix
    if successor:
        update["merge"] = True  # the next stage loads a full model, not an adapter
    if update:
        experiment = experiment.model_copy(update={"output": output.model_copy(update=update)})
    return dataclasses.replace(spec, experiment=experiment)


def _error_path(error: ErrorDetails) -> Path_:
    """pydantic names union members in ``loc`` (``LoraSpec``, ``literal[...]``): drop them."""
    return tuple(
        part
        for part in error["loc"]
        if isinstance(part, int) or re.fullmatch(r"[a-z_][a-z0-9_]*", str(part))
    )


def _from_error(path: Path_, error: ErrorDetails, where: _Where) -> Finding:
    if error["type"] == "missing":
        return where.finding(path, "required field is missing", f"add `{path[-1]}:`", False)
    if error["type"] == "extra_forbidden":
        return where.finding(path, "unknown field", None, True)
    message = error["msg"].removeprefix("Value error, ")
    origin = where.origin(path)
    if origin[:1] == ("matrix",):
        message += f" (value {error.get('input')!r})"
    return where.finding(path, message, None, False)


def _assign(data: dict[str, Any], parts: list[str], value: Any) -> None:
    """Set a dotted path, replacing shorthands on the way (``lora: off`` → ``lora: {r: 8}``)."""
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if part == "dataset" and isinstance(child, str):
            child = {"path": child}
        if not isinstance(child, dict):
            child = {}
        node[part] = child
        node = child
    if parts[-1] == "base_model":  # another model: the old one's revision does not apply
        node.pop("base_model_revision", None)
    if parts[-1] == "path" and parts[:-1] == ["dataset"]:
        node.pop("revision", None)
    node[parts[-1]] = copy.deepcopy(value)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


# --- the matrix ------------------------------------------------------------------


def _combinations(
    matrix: dict[str, Any], names: list[str]
) -> tuple[list[Combination], list[Finding]]:
    """GitHub Actions' semantics: the product, minus ``exclude``, plus ``include``."""
    findings: list[Finding] = []
    keys = [k for k in matrix if k not in RESERVED]
    axes = []
    for key in keys:
        values = matrix[key]
        if not isinstance(values, list) or not values:
            findings.append(
                Finding(
                    ("matrix", key),
                    "expected a non-empty list of values",
                    f"e.g. `{key}: [{_show(values)}]`",
                )
            )
            continue
        findings += _key_findings(key, ("matrix", key), names)
        axes.append([(key, v, ("matrix", key, i)) for i, v in enumerate(values)])
    entries: dict[str, list[dict[str, Any]]] = {}
    for reserved in RESERVED:
        raw = matrix.get(reserved, [])
        if not isinstance(raw, list) or not all(isinstance(e, dict) and e for e in raw):
            findings.append(
                Finding(
                    ("matrix", reserved),
                    "expected a list of mappings",
                    f"e.g. `{reserved}: [{{{keys[0] if keys else 'lora.r'}: 8}}]`",
                )
            )
            raw = []
        entries[reserved] = raw
    for j, entry in enumerate(entries["exclude"]):
        for key in entry:
            if key not in keys:
                hint = did_you_mean(key, keys) or f"matrix keys: {', '.join(keys) or 'none'}"
                findings.append(
                    Finding(("matrix", "exclude", j, key), "not a matrix key", hint, True)
                )
    for j, entry in enumerate(entries["include"]):
        for key in entry:
            if key not in keys:
                findings += _key_findings(key, ("matrix", "include", j, key), names)
    if findings:
        return [], findings

    combos: list[Combination] = [
        {key: (value, origin) for key, value, origin in row} for row in itertools.product(*axes)
    ]
    if not axes:
        combos = []
    combos = [
        c
        for c in combos
        if not any(all(c[k][0] == v for k, v in entry.items()) for entry in entries["exclude"])
    ]
    originals = len(combos)
    for j, entry in enumerate(entries["include"]):
        added = {k: (v, ("matrix", "include", j, k)) for k, v in entry.items()}
        matched = False
        for combo in combos[:originals]:
            if all(combo[k][0] == v for k, v in entry.items() if k in keys):
                combo.update(added)
                matched = True
        if not matched:
            combos.append(dict(added))
    if not combos:
        findings.append(
            Finding(
                ("matrix",), "the matrix has no combinations", "list values, or exclude fewer", True
            )
        )
    elif len(combos) > MAX_RUNS:
        findings.append(
            Finding(("matrix",), f"{len(combos)} combinations; at most {MAX_RUNS}", None, True)
        )
    return combos, findings


def _key_findings(key: str, origin: Path_, names: list[str]) -> list[Finding]:
    """A matrix key must name a field a run can vary, by its dotted path."""
    parts = key.split(".")
    model: type[BaseModel] = Experiment
    allowed = [f for f in Experiment.model_fields if f not in FIXED]
    if parts[0] in names:
        if len(parts) == 1:
            return [Finding(origin, "names a stage, not a field", f"e.g. `{key}.lora.r`", True)]
        parts = parts[1:]
        allowed = [f for f in StageSpec.model_fields if f != "name"]
    if parts[0] not in allowed:
        message = (
            "cannot vary in a matrix: it applies to all runs"
            if parts[0] in FIXED
            else "unknown field"
        )
        hint = did_you_mean(parts[0], allowed + names) or _KEY_HINT
        return [Finding(origin, message, hint, True)]
    annotation: Any = model.model_fields[parts[0]].annotation
    for depth, part in enumerate(parts[1:], start=1):
        inner = _fields_of(annotation)
        if inner is not None and issubclass(inner, dict):
            return []  # hyperparameters.<TRL field>, dataset.columns.<column>: checked per run
        prefix = ".".join(parts[:depth])
        if inner is None:
            return [Finding(origin, f"{prefix} has no fields to vary", _KEY_HINT, True)]
        if part not in inner.model_fields:
            choices = list(inner.model_fields)
            hint = did_you_mean(part, choices) or f"allowed here: {', '.join(choices)}"
            return [Finding(origin, f"unknown field {prefix}.{part}", hint, True)]
        annotation = inner.model_fields[part].annotation
    return []


def _fields_of(annotation: Any) -> type[BaseModel] | type[dict[Any, Any]] | None:
    """The model (or free-form dict) a field holds, looking through ``X | None``."""
    for arg in (annotation, *typing.get_args(annotation)):
        if arg is dict or typing.get_origin(arg) is dict:
            return dict
        if typing.get_origin(arg) is None and isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None
