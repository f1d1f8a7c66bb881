"""Shared pytest fixtures. Keep each fixture self-contained: several files use this."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_fixtures(tmp_path_factory):
    """The offline tiny Llama and its three datasets, built once per test session (~4 s).

    Skips when the train extra (torch, transformers, sentencepiece) is not installed.
    """
    for module in ("torch", "transformers", "sentencepiece"):
        pytest.importorskip(module)
    from ci_runner.fixtures import build_fixtures

    return build_fixtures(tmp_path_factory.mktemp("tiny-fixtures"))
