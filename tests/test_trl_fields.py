"""The shipped TRL field list must match the installed TRL exactly."""

from __future__ import annotations

import pytest

from ci_runner.spec import gen_trl_fields


@pytest.mark.slow
def test_trl_fields_file_matches_installed_trl():
    pytest.importorskip("trl")
    fresh = gen_trl_fields.render(gen_trl_fields.generate())
    assert gen_trl_fields.FIELDS_FILE.read_text() == fresh, (
        "ci_runner/spec/trl_fields.json is stale: run `python -m ci_runner.spec.gen_trl_fields`"
    )


def test_field_list_knows_renames_and_enums():
    import json

    data = json.loads(gen_trl_fields.FIELDS_FILE.read_text())
    sft = data["methods"]["sft"]["fields"]
    assert "max_length" in sft and "max_seq_length" not in sft
    assert "cosine" in sft["lr_scheduler_type"]["choices"]
    assert "num_generations" in data["methods"]["grpo"]["fields"]
    assert "beta" in data["methods"]["dpo"]["fields"]
