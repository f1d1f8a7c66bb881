"""No ``--json`` output lost a key or changed a type since the flow refactor: the shapes
recorded from the CLI before it (tests/golden/json_shapes.json, commit e87549c) must
all still be there, under their names now (``RENAMED``). Keys added since are allowed."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ROOT
from tests.json_shapes import collect, missing, renamed

pytestmark = pytest.mark.usefixtures("loopback_online")


@pytest.mark.slow
def test_every_json_shape_from_before_the_refactor_is_still_printed():
    before = renamed(json.loads((ROOT / "tests" / "golden" / "json_shapes.json").read_text()))
    now = collect(ROOT)
    assert set(now) == set(before)
    assert {command: missing(before[command], now[command]) for command in before} == {
        command: [] for command in before
    }


def test_renamed_keys_are_looked_for_under_their_names_now():
    old = {"runs": ["list", {"stage": "str", "stage_jobs": ["list"], "stage_index": "int"}]}
    assert renamed(old) == {
        "runs": ["list", {"phase": "str", "phase_jobs": ["list"], "stage_index": "int"}]
    }


def test_a_lost_key_or_retyped_value_is_caught():
    old = {"runs": ["list", {"run_id": "str", "job_id": "str", "cost": "float"}]}
    assert missing(old, old) == []
    assert missing(old, {"runs": ["list", {"run_id": "str", "cost": "float", "x": "int"}]}) == [
        ".runs[]: no item of shape " + json.dumps(old["runs"][1])
    ]
    assert missing({"n": "int"}, {"n": "str"}) == ['.n: was "int", now "str"']
    assert missing({"n": "null"}, {"n": "str"}) == []  # an optional value now set
