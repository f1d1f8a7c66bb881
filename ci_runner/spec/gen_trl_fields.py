"""Regenerate ``trl_fields.json`` from the installed TRL.

The runner checks hyperparameter names against TRL's config classes without
importing TRL (it pulls in torch). This script is the only place that does
import it; ``tests/test_trl_fields.py`` fails when the shipped list drifts.

    python -m ci_runner.spec.gen_trl_fields          # rewrite the file
    python -m ci_runner.spec.gen_trl_fields --check  # exit 1 if stale
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

FIELDS_FILE = Path(__file__).with_name("trl_fields.json")
CONFIG_CLASSES = {"sft": "SFTConfig", "dpo": "DPOConfig", "grpo": "GRPOConfig"}

_KIND_OF = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}


def _describe(tp: object) -> dict[str, list[str]]:
    """Reduce a dataclass field type to JSON kinds (+ enum choices)."""
    kinds: set[str] = set()
    choices: set[str] = set()
    origin = typing.get_origin(tp)
    members = typing.get_args(tp) if origin in (typing.Union, types.UnionType) else (tp,)
    for member in members:
        base = typing.get_origin(member) or member
        if member is type(None):
            kinds.add("null")
        elif base is typing.Literal:
            for value in typing.get_args(member):
                kinds.add(_KIND_OF.get(type(value), "any"))
        elif isinstance(base, type) and issubclass(base, enum.Enum):
            kinds.add("str")
            choices.update(str(m.value) for m in base)
        elif base in _KIND_OF:
            kinds.add(_KIND_OF[base])
        else:
            kinds.add("any")
    described = {"kinds": sorted(kinds)}
    # transformers coerces these strings into the enum, so only members are valid.
    if choices:
        described["choices"] = sorted(choices)
    return described


def generate() -> dict[str, Any]:
    import trl

    out: dict[str, Any] = {"trl_version": trl.__version__, "methods": {}}
    for method, class_name in CONFIG_CLASSES.items():
        config_cls = getattr(trl, class_name)
        hints = typing.get_type_hints(config_cls)
        out["methods"][method] = {
            "config_class": class_name,
            "fields": {
                f.name: _describe(hints.get(f.name, f.type))
                for f in sorted(dataclasses.fields(config_cls), key=lambda f: f.name)
                if f.init
            },
        }
    return out


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    fresh = render(generate())
    if "--check" in argv:
        if FIELDS_FILE.read_text() != fresh:
            print(f"{FIELDS_FILE} is stale: run `python -m ci_runner.spec.gen_trl_fields`")
            return 1
        return 0
    FIELDS_FILE.write_text(fresh)
    print(f"wrote {FIELDS_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
