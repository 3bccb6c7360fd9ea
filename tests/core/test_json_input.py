"""core.json_input: every bad JSON from outside is a ValueError."""

from __future__ import annotations

import base64

import pytest

from core import json_input
from core.json_input import jose_part


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


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_jose_part_reads_the_header_and_the_claims_without_padding() -> None:
    token = _b64(b'{"alg":"SM2"}') + "." + _b64(b'{"sub":"s"}') + ".sig"
    assert jose_part(token, 0) == {"alg": "SM2"} and jose_part(token, 1) == {"sub": "s"}


@pytest.mark.parametrize("payload", [b'{"exp":NaN}', b'{"s":"\\ud800"}', b'{"s":"a\\u0000"}',
                                     b"[" * 100000, b"not json", b"[1]", b"\"s\""])
def test_jose_part_refuses_what_jose_readers_let_through(payload: bytes) -> None:
    with pytest.raises(ValueError):
        jose_part("e30." + _b64(payload) + ".x", 1)


@pytest.mark.parametrize("token", ["only-one-part", "e30.!!!.x"])
def test_jose_part_missing_or_unreadable_is_a_value_error(token: str) -> None:
    with pytest.raises(ValueError):
        jose_part(token, 1)
