"""core.json_input: every bad JSON from outside is a ValueError."""

from __future__ import annotations

import pytest

from core import json_input


def test_reads_json() -> None:
    assert json_input.loads(b'{"a": [1, "x"]}') == {"a": [1, "x"]}


@pytest.mark.parametrize("bad", [
    "[" * 5000 + "]" * 5000,                 # complete, but deeper than json.loads can go
    '{"a": ' * 3000 + "1" + "}" * 3000,
    "", "{", b"\xff", '{"max_age": NaN}', "[Infinity]", "-Infinity",
], ids=["deep-array", "deep-object", "empty", "cut-short", "not-utf8", "nan", "infinity",
        "minus-infinity"])
def test_bad_input_is_a_value_error(bad: str | bytes) -> None:
    with pytest.raises(ValueError):
        json_input.loads(bad)
