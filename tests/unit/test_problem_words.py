"""Validation messages in words a person reads (``app.errors.human_message``): the shapes
msgspec and Litestar write, turned into the end of a sentence after the field's name."""

from __future__ import annotations

import pytest

from app.errors import human_message


@pytest.mark.parametrize(
    ("said", "meant"),
    [
        ("Expected `str` of length >= 1", "must not be empty"),
        ("Expected `str` of length <= 60", "must have at most 60 characters"),
        ("Expected `int`, got `float`", "must be a whole number"),
        ("Expected `int`, got `str`", "must be a whole number"),
        ("Expected `bool`, got `int`", "must be true or false"),
        ("Expected `int` >= 1", "must be at least 1"),
        ("Expected `int` <= 1000000000", "must be at most 1000000000"),
        ("Expected `array` of length <= 1000", "must have at most 1000 items"),
        ("Expected `str` matching regex '^[^\\x00]*'", "contains characters that aren't allowed"),
        ("Object missing required field `product_id`", "is required"),
        ("Object contains unknown field `price`", "is not a field this request takes"),
        ("Invalid UUID", "must be an id (a UUID)"),
        ("Invalid enum value 'cheque'", "must be one of the allowed values"),
        ("something else entirely", "something else entirely"),
    ],
)
def test_validator_words_become_a_persons(said: str, meant: str) -> None:
    assert human_message(said).startswith(meant)
    assert "`" not in human_message(said) or said == "something else entirely"
