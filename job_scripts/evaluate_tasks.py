"""lighteval tasks for ``evaluate.py``: what ci-runner's own tasks share, and built-ins.

Standard library only at import; lighteval is imported inside the functions that use
it. ci-runner's own tasks (``evaluate_humaneval.py``, ``evaluate_gsm8k.py``) build on
:func:`truncate_at_stops`, :func:`response_text`, :func:`generative_metric` and
:func:`generative_task`; any
other benchmark name is a lighteval built-in task, found by
:func:`lighteval_task_configs` without importing lighteval's whole registry.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from protocol import ConfigError


def truncate_at_stops(text: str, stops: list[str]) -> str:
    """Cut ``text`` at the first stop sequence (models often generate past them)."""
    cut = len(text)
    for stop in stops:
        index = text.find(stop)
        if index != -1:
            cut = min(cut, index)
    return text[:cut]


def response_text(response: Any) -> str:
    """The first generation, after lighteval's reasoning-tag removal when it ran."""
    texts = response.text_post_processed or response.text
    return texts[0] if texts else ""


def generative_metric(name: str, computation: Any, *, batched: bool = False):
    """A metric on generated text, scored per sample and averaged (higher is better).

    ``computation`` is a lighteval ``SampleLevelComputation``; ``batched`` ones get a
    whole task's samples at once (``compute(responses=..., docs=...)``).
    """
    import numpy as np
    from lighteval.metrics.utils.metric_utils import SampleLevelMetric
    from lighteval.tasks.requests import SamplingMethod

    return SampleLevelMetric(
        metric_name=name,
        higher_is_better=True,
        category=SamplingMethod.GENERATIVE,
        sample_level_fn=computation,
        corpus_level_fn=np.mean,
        batched_compute=batched,
    )


def generative_task(
    name: str,
    prompt_function: Any,
    metric: Any,
    stops: list[str],
    *,
    repo: str,
    subset: str | None = None,
    few_shots_split: str = "test",
):
    """One of ci-runner's own tasks: generated text scored by ``metric`` on the test split.

    Few-shot examples come from ``few_shots_split``, drawn at random when that is
    ``train``. The token budget is set per run, for every task (``resolve_tasks``).
    """
    from lighteval.tasks.lighteval_task import LightevalTaskConfig

    return LightevalTaskConfig(
        name=name,
        prompt_function=prompt_function,
        hf_repo=repo,
        hf_subset=subset,  # None: the default subset
        hf_avail_splits=["test"] if few_shots_split == "test" else [few_shots_split, "test"],
        evaluation_splits=["test"],
        few_shots_split=few_shots_split,
        few_shots_select="random_sampling_from_train" if few_shots_split == "train" else None,
        metrics=[metric],
        stop_sequence=stops,
    )


def lighteval_task_configs(name: str) -> dict[str, Any]:
    """Configs for a lighteval built-in task (or superset), importing as little as possible.

    lighteval's registry imports all ~100 task modules, some of which download
    files or break at import. Here only modules that mention the name are
    imported, the one named after it first, and import failures are skipped.
    """
    import lighteval.tasks.tasks as package

    base = name.split(":")[0]
    root = Path(next(iter(package.__path__)))  # a namespace package: no __file__
    files = sorted(p for p in root.glob("*.py") if p.name != "__init__.py")
    files += sorted(p / "main.py" for p in root.iterdir() if (p / "main.py").is_file())

    def module_name(path: Path) -> str:
        rel = path.relative_to(root).with_suffix("")
        return f"{package.__name__}." + ".".join(rel.parts)

    named = [p for p in files if base in (p.stem, p.parent.name)]
    mentioned = [p for p in files if p not in named and base in p.read_text(encoding="utf-8")]
    found: dict[str, Any] = {}
    failures: list[str] = []
    for path in named + mentioned:
        try:
            module = importlib.import_module(module_name(path))
        except Exception as exc:  # a broken neighbour must not hide the task asked for
            failures.append(f"{module_name(path)}: {type(exc).__name__}: {exc}"[:300])
            continue
        for config in getattr(module, "TASKS_TABLE", []):
            if config.name == name or config.name.startswith(f"{name}:"):
                found[config.name] = config
        if found:
            return found
    hint = "; ".join(failures) if failures else "no module defines it"
    raise ConfigError(
        f"unknown benchmark {name!r}: not a ci-runner task (humaneval, gsm8k) and not a "
        f"lighteval built-in task that loads here ({hint})"
    )


def override_dataset(config: Any, dataset: str | None) -> Any:
    """Point a task at another copy of its data: a Hub id or a local folder of data files."""
    if not dataset:
        return config
    local = Path(dataset).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ConfigError(f"dataset {dataset}: give the folder holding the split files")
        config.hf_repo, config.hf_subset = str(local.resolve()), None
    else:
        config.hf_repo = dataset  # same format, so the same subset name
    return config
