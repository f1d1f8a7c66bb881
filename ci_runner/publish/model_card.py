"""The trained model's Hub card: metadata and eval results as model-index.

Built with huggingface_hub's ``ModelCardData``/``EvalResult`` so the Hub shows
the scores on the model page; the body repeats them with deltas against the base.
"""

from __future__ import annotations

import os
from typing import Any

from ci_runner.core.hub import hub_api
from ci_runner.core.inert import prose
from ci_runner.ledger.model import Ledger, Run
from ci_runner.report.markdown import code, is_local, is_url, method_label, table, value

# Where each built-in benchmark's rows come from on the Hub (the card's dataset_type).
BENCHMARK_DATASETS = {"humaneval": "openai/openai_humaneval", "gsm8k": "openai/gsm8k"}


def _hub_id(ref: str) -> str | None:
    return None if is_local(ref) else ref


def eval_results(run: Run) -> list[Any]:
    """The final model's scores, one ``EvalResult`` per benchmark."""
    from huggingface_hub import EvalResult

    results = []
    for ev in run.evaluations:
        if ev.model_label != "final" or ev.score is None:
            continue
        name = ev.benchmark.split(" ")[0]
        results.append(
            EvalResult(
                task_type="text-generation",
                dataset_type=BENCHMARK_DATASETS.get(name, name),
                dataset_name=ev.benchmark,
                metric_type=ev.metric or "score",
                metric_value=round(ev.score, 4),
                # The eval job that produced it, when it has a page (HF Jobs).
                source_name="ci-runner" if is_url(ev.job_url) else None,
                source_url=ev.job_url if is_url(ev.job_url) else None,
            )
        )
    return results


def build_model_card(ledger: Ledger, run: Run) -> Any:
    from huggingface_hub import ModelCard, ModelCardData

    base, dataset = _hub_id(run.base_model), _hub_id(run.dataset)
    data = ModelCardData(
        model_name=run.hub_model_id,
        base_model=base,
        datasets=[dataset] if dataset else None,
        library_name="peft" if run.lora else "transformers",
        tags=["trl", run.method, "ci-runner"] + (["lora"] if run.lora else []),
        eval_results=eval_results(run) or None,
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{_body(ledger, run)}")


def _body(ledger: Ledger, run: Run) -> str:
    name = run.hub_model_id or run.run_id
    lines = [
        f"# {name}",
        "",
        f"{method_label(run.method)} of {code(run.base_model)} on {code(run.dataset)} "
        f"(split {code(run.dataset_split)}), trained by ci-runner run {code(run.run_id)}"
        + (" as a LoRA adapter." if run.lora else "."),
    ]
    if run.evaluations:
        base = {e.benchmark: e.score for e in run.evaluations if e.model_label == "base"}
        rows = []
        for ev in run.evaluations:
            if ev.model_label == "base" or ev.score is None:
                continue
            ref = base.get(ev.benchmark)
            delta = f"{ev.score - ref:+.3f}" if ref is not None else "n/a"
            rows.append([prose(ev.benchmark), prose(ev.model_label), f"{ev.score:.3f}", delta])
        lines += [
            "",
            "## Evaluation",
            "",
            table(("Benchmark", "Model", "Score", "Δ vs base"), rows),
        ]
    params = [[code(k), value(v)] for k, v in sorted(run.hyperparameters.items())]
    if params:
        lines += ["", "## Training hyperparameters", "", table(("Parameter", "Value"), params)]
    if run.metrics and run.metrics.final_loss is not None:
        lines += [
            "",
            f"Final training loss {run.metrics.final_loss:.4f} at step {run.metrics.step}.",
        ]
    loader = "AutoPeftModelForCausalLM" if run.lora else "AutoModelForCausalLM"
    package = "peft" if run.lora else "transformers"
    lines += [
        "",
        "## Use",
        "",
        "```python",
        f"from {package} import {loader}",
        f'model = {loader}.from_pretrained("{name}")',
        "```",
        "",
    ]
    return "\n".join(lines)


def push_model_card(api: Any, ledger: Ledger, run: Run) -> str:
    """Upload README.md to the run's Hub repo; returns the commit URL."""
    card = build_model_card(ledger, run)
    info = api.upload_file(
        path_or_fileobj=str(card).encode(),
        path_in_repo="README.md",
        repo_id=run.hub_model_id,
        repo_type="model",
        commit_message=f"ci-runner: model card with eval results for {run.run_id}",
    )
    return str(getattr(info, "commit_url", info))


def push_card_after_eval(ledger: Ledger, run: Run) -> Run:
    """The flow's ``on_evaluated`` hook: with a Hub repo, the card carries the eval results.

    The card is a bonus: a failure is recorded on the run, never raised.
    """
    if not run.hub_model_id or not run.evaluations or run.model_card:
        return run
    token = os.environ.get("HF_TOKEN")
    if not token:
        return run.model_copy(update={"model_card": "not pushed: HF_TOKEN is not set"})
    try:
        url = push_model_card(hub_api(token), ledger, run)
    except Exception as exc:  # noqa: BLE001 - the run still succeeded
        return run.model_copy(update={"model_card": f"not pushed: {type(exc).__name__}"})
    return run.model_copy(update={"model_card": url})
