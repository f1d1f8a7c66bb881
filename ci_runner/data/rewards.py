"""Which dataset columns each GRPO reward reads, so the data check can hold them against
the dataset before a paid job fails on ``TypeError: missing 1 required positional argument``.

TRL's GRPOTrainer calls every reward as ``f(prompts=, completions=, completion_ids=,
trainer_state=, log_extra=, log_metric=, **columns)``: each dataset column except
``prompt`` and ``completion`` arrives as a keyword. A parameter without a default that is
none of those must therefore be a column. Built-in rewards say what they read
(``shaping.BUILTIN_REWARD_COLUMNS``); a project's own functions are parsed with ``ast``,
never imported: the file is someone's code, and the check must not run it.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ci_runner.core.hub import local_path
from ci_runner.job_scripts.shaping import (
    BUILTIN_REWARD_COLUMNS,
    REWARD_ARGUMENTS,
    REWARD_WITHHELD,
)


@dataclass(frozen=True)
class RewardNeeds:
    """What one reward reads from the dataset."""

    name: str  # as the experiment file writes it
    columns: tuple[str, ...] = ()  # columns it cannot run without
    optional: tuple[str, ...] = ()  # columns it reads when present (parameters with defaults)
    builtin: bool = False
    known: bool = True  # False: the function could not be read, so nothing is checked
    withheld: tuple[str, ...] = ()  # parameters TRL never fills (``prompt``, ``completion``)
    note: str = ""  # why it is not known

    @property
    def label(self) -> str:
        return f"reward '{self.name}'"


def builtin_needs(name: str) -> RewardNeeds:
    return RewardNeeds(name, BUILTIN_REWARD_COLUMNS[name], builtin=True)


def parse_reward(source: str, function: str, name: str) -> RewardNeeds:
    """The columns a ``def function(...)`` in ``source`` needs; pure."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return RewardNeeds(name, known=False, note=f"does not parse (line {exc.lineno})")
    node = next(
        (
            n
            for n in tree.body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == function
        ),
        None,
    )
    if node is None:
        return RewardNeeds(name, known=False, note=f"{function} is not a plain def")
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    with_default = {a.arg for a in positional[len(positional) - len(args.defaults) :]}
    with_default |= {a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d}
    params = [a.arg for a in (*positional, *args.kwonlyargs)]
    if params and params[0] in ("self", "cls"):
        params = params[1:]
    columns = [p for p in params if p not in REWARD_ARGUMENTS]
    withheld = tuple(p for p in columns if p in REWARD_WITHHELD and p not in with_default)
    return RewardNeeds(
        name,
        columns=tuple(p for p in columns if p not in with_default and p not in withheld),
        optional=tuple(p for p in columns if p in with_default),
        withheld=withheld,
    )


def reward_needs(names: Sequence[str], root: Path | None) -> dict[str, RewardNeeds]:
    """Every reward's needs; a project file that cannot be read is left unchecked (the
    experiment's validation already reports a missing file or function)."""
    found = {}
    for name in names:
        if name in BUILTIN_REWARD_COLUMNS:
            found[name] = builtin_needs(name)
            continue
        file_part, _, function = name.rpartition(":")
        try:
            if root is None:
                raise OSError("no project root")
            source = local_path(file_part, root).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            found[name] = RewardNeeds(name, known=False, note=f"cannot read {file_part}: {exc}")
            continue
        found[name] = parse_reward(source, function, name)
    return found


def default_needs(names: Sequence[str]) -> Mapping[str, RewardNeeds]:
    """Needs without a project to read: built-ins known, the project's own unchecked."""
    return {
        n: builtin_needs(n)
        if n in BUILTIN_REWARD_COLUMNS
        else RewardNeeds(n, known=False, note="its module was not read")
        for n in names
    }
