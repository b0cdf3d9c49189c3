"""The request field types (``app.routes.fields``): what they refuse, and how a refusal names
its field. The HTTP side is ``tests/integration/test_hostile_input.py``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
import pytest

from app.routes import fields
from domain.errors import InvalidDeadline

CONTROL_CHARACTERS = [chr(c) for c in (*range(0x00, 0x20), *range(0x7F, 0xA0))]


@pytest.mark.parametrize("kind", [fields.Text, fields.Name, fields.DisplayName, fields.Code])
@pytest.mark.parametrize(
    "where", ["{}Ana", "Ana{}", "A{}na"], ids=["leading", "trailing", "inside"]
)
def test_text_refuses_every_c0_and_c1_control_character_anywhere(kind: Any, where: str) -> None:
    for character in CONTROL_CHARACTERS:
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(where.format(character), kind)


@pytest.mark.parametrize("kind", [fields.Text, fields.Name, fields.DisplayName, fields.Code])
def test_text_keeps_what_people_write(kind: Any) -> None:
    for value in ("Ana Lima", "Zoë & Søren", "寿司 🍣", "O'Brien-Smith (3rd floor)", "\u00a0x"):
        assert msgspec.convert(value, kind) == value


@pytest.mark.parametrize(
    ("kind", "low", "high"),
    [
        (fields.MinorAmount, 0, fields.MAX_MINOR),
        (fields.Stock, 0, fields.MAX_COUNT),
        (fields.Count, 1, fields.MAX_COUNT),
        (fields.WholeNumber, -(2**63), 2**63 - 1),
    ],
)
def test_integers_are_bounded_on_both_sides(kind: Any, low: int, high: int) -> None:
    assert msgspec.convert(low, kind) == low
    assert msgspec.convert(high, kind) == high
    for outside in (low - 1, high + 1):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(outside, kind)


def test_any_amount_times_every_option_and_99_stays_inside_bigint() -> None:
    line = fields.MAX_MINOR * (1 + fields.MAX_OPTIONS_CHOSEN) * 99
    assert line < 2**63 // 90  # dozens of such lines before a cart's total could overflow


def test_a_deadline_must_be_aware_and_rfc_3339() -> None:
    assert msgspec.json.decode(b'"2030-01-01T12:00:00Z"', type=fields.Deadline).tzinfo
    for refused in (b'"2030-01-01T12:00:00"', b'"10000-01-01T00:00:00Z"'):
        with pytest.raises(msgspec.ValidationError):
            msgspec.json.decode(refused, type=fields.Deadline)


class Line(msgspec.Struct, forbid_unknown_fields=True):
    quantity: fields.Count
    options: list[fields.Name] = msgspec.field(default_factory=list)


class Basket(msgspec.Struct, forbid_unknown_fields=True):
    lines: list[Line]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"lines": [{"quantity": "1"}]}', "lines[0].quantity"),
        (b'{"lines": [{"quantity": 1, "options": ["a\\u0000"]}]}', "lines[0].options[0]"),
        (b'{"lines": [{}]}', "lines[0].quantity"),
        (b'{"lines": [], "extra": 1}', "extra"),
        (b"[]", None),
    ],
)
def test_a_strict_refusal_names_the_field(body: bytes, field: str | None) -> None:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(body, type=Basket, strict=True)
    assert fields._error_field(caught.value)[0] == field


def test_the_deadline_window_is_checked_against_now() -> None:
    now = datetime.fromisoformat("2030-01-01T00:00:00+00:00")
    fields.check_deadline(None, now)
    fields.check_deadline(now + fields.MAX_DEADLINE_AHEAD, now)
    with pytest.raises(InvalidDeadline, match="at most 30 days"):
        fields.check_deadline(now + fields.MAX_DEADLINE_AHEAD * 2, now)
