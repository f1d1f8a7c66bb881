"""The experiment file's JSON Schema, and the field reference people read, from one source.

The spec models (``model.py``) carry every field's description. From them come the JSON
Schema that ``ci-runner schema`` prints and editors use (``schema/experiment.schema.json``,
named by each example's ``# yaml-language-server: $schema=`` line), and the field table
between the markers in README.md and AGENTS.md. Regenerate all three after changing a
model; ``tests/test_schema.py`` fails while any is stale:

    python -m ci_runner.spec.schema          # rewrite them (run from the repository root)
    python -m ci_runner.spec.schema --check  # exit 1 if one is stale
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from ci_runner.spec.model import Experiment

SCHEMA_FILE = Path("schema") / "experiment.schema.json"
DOCS = (Path("README.md"), Path("AGENTS.md"))
REGENERATE = "python -m ci_runner.spec.schema"
BEGIN = f"<!-- experiment-fields: generated from ci_runner/spec/model.py by `{REGENERATE}` -->"
END = "<!-- /experiment-fields -->"
MODELINE = "# yaml-language-server: $schema="
MAX_CHOICES = 8  # longer lists (hardware flavors) are the schema's to spell out


class _NoTitles(GenerateJsonSchema):
    """Field titles pydantic derives from names ("Max Samples") say nothing the name
    doesn't; descriptions carry the meaning."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def experiment_schema() -> dict[str, Any]:
    """What an experiment file may hold, as a JSON Schema (2020-12), shorthands included."""
    schema = Experiment.model_json_schema(mode="validation", schema_generator=_NoTitles)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "ci-runner experiment file",
    }


def schema_text(schema: dict[str, Any] | None = None) -> str:
    """The schema as ``ci-runner schema`` prints it and the repository keeps it."""
    return json.dumps(schema or experiment_schema(), indent=2, ensure_ascii=False) + "\n"


# -- the field reference ---------------------------------------------------------------


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _ref_name(node: dict[str, Any]) -> str | None:
    ref = node.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def _members(node: dict[str, Any]) -> list[dict[str, Any]]:
    return list(node.get("anyOf") or [node])


def _literal(value: Any) -> str:
    return f"`{value}`" if isinstance(value, str) else f"`{json.dumps(value)}`"


def _bounds(node: dict[str, Any]) -> str:
    signs = (("exclusiveMinimum", ">"), ("minimum", "≥"), ("exclusiveMaximum", "<"))
    parts = [f"{sign} {node[key]}" for key, sign in signs if key in node]
    parts += [f"≤ {node['maximum']}"] if "maximum" in node else []
    return f" {', '.join(parts)}" if parts else ""


def _type(node: dict[str, Any], described: dict[str, str]) -> str:
    """A node's type in a few words: `sft` | `dpo`, integer > 0, list of string..."""
    names = []
    for member in _members(node):
        ref = _ref_name(member)
        if ref is not None:
            names.append(f"object (as `{described[ref]}`)" if ref in described else "object")
        elif "enum" in member and len(member["enum"]) > MAX_CHOICES:
            names.append(f"one of {len(member['enum'])} names")
        elif "enum" in member:
            names.append(" | ".join(_literal(v) for v in member["enum"]))
        elif "const" in member:
            names.append(_literal(member["const"]))
        elif member.get("type") == "array":
            names.append(f"list of {_type(member.get('items', {}), described)}")
        elif member.get("type") == "object":
            names.append("mapping")
        elif member.get("type") in ("integer", "number"):
            names.append(f"{member['type']}{_bounds(member)}")
        elif member.get("type") not in (None, "null"):
            names.append(str(member["type"]))
    return " or ".join(dict.fromkeys(names)) or "any"


def _default(node: dict[str, Any], required: bool) -> str:
    if required:
        return "**required**"
    default = node.get("default")
    if default is None or isinstance(default, dict) and default:
        return ""
    return _literal(default)


def _nested(node: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """The models a field holds, with the suffix their fields are listed under: an
    object's own fields before a list's items (``evaluation`` before its shorthand)."""
    members = _members(node)
    for member in members:
        ref = _ref_name(member)
        if ref is not None:
            yield ref, "."
    for member in members:
        ref = _ref_name(member.get("items", {})) if member.get("type") == "array" else None
        if ref is not None:
            yield ref, "[]."


def _rows(
    model: dict[str, Any], defs: dict[str, Any], prefix: str, described: dict[str, str]
) -> Iterator[str]:
    required = set(model.get("required", []))
    for name, node in model.get("properties", {}).items():
        path = f"{prefix}{name}"
        description = node.get("description") or next(
            (defs[ref].get("description", "") for ref, _ in _nested(node)), ""
        )
        kind = _type(node, described)
        default = _default(node, name in required)
        yield f"| `{path}` | {_cell(kind)} | {default} | {_cell(description)} |"
        for ref, suffix in _nested(node):
            if ref in described:
                continue
            described[ref] = path
            yield from _rows(defs[ref], defs, f"{path}{suffix}", described)


def field_reference(schema: dict[str, Any] | None = None) -> str:
    """Every field of an experiment file, one table row each, nested fields as paths."""
    schema = schema or experiment_schema()
    rows = "\n".join(_rows(schema, schema.get("$defs", {}), "", {}))
    return f"| field | type | default | what it does |\n|---|---|---|---|\n{rows}\n"


def splice(text: str, block: str, *, where: str) -> str:
    """``text`` with the generated block between its markers replaced by ``block``."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{where}: no `{BEGIN}` ... `{END}` markers")
    return f"{text[: start + len(BEGIN)]}\n{block}{text[end:]}"


# -- the files generated from the schema -------------------------------------------------


def generated_files(root: Path) -> dict[Path, str]:
    """Each generated file under ``root`` with the text it should have."""
    schema = experiment_schema()
    reference = field_reference(schema)
    files = {root / SCHEMA_FILE: schema_text(schema)}
    for doc in DOCS:
        path = root / doc
        files[path] = splice(path.read_text(encoding="utf-8"), reference, where=str(doc))
    return files


def stale_files(root: Path) -> list[Path]:
    """The generated files under ``root`` that differ from the schema."""
    return [
        path
        for path, text in generated_files(root).items()
        if not path.is_file() or path.read_text(encoding="utf-8") != text
    ]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path.cwd()
    if "--check" in argv:
        stale = stale_files(root)
        for path in stale:
            print(f"{path} is stale: run `{REGENERATE}` from the repository root")
        return 1 if stale else 0
    for path, text in generated_files(root).items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
