"""Validation by JSON Schema or callable."""

import pytest

from lambdakit.errors import InvalidInput
from lambdakit.records.validation import Rejection, Validator

SCHEMA = {
    "type": "object",
    "required": ["id", "value"],
    "properties": {"id": {"type": "integer"}, "value": {"type": "number", "minimum": 0}},
}


def test_schema_accepts_and_names_the_problem():
    v = Validator(SCHEMA)
    assert v.check({"id": 1, "value": 2.5}) is None
    assert v.check({"id": 1}) == "'value' is a required property"
    assert v.check({"id": 1, "value": -1}).startswith("value: -1 is less than the minimum")
    assert "is not of type 'object'" in v.check([1, 2])


def test_invalid_schema_is_reported_at_construction():
    with pytest.raises(InvalidInput, match="JSON Schema is invalid"):
        Validator({"type": "banana"})


def test_callable_raising_rejects_with_its_message():
    def positive(record):
        if record["value"] <= 0:
            raise ValueError("value must be positive")

    v = Validator(positive)
    assert v.check({"value": 1}) is None
    assert v.check({"value": 0}) == "ValueError: value must be positive"
    assert v.check({}) == "KeyError: 'value'"


def test_callable_returning_false_rejects():
    def is_even(n):
        return n % 2 == 0

    v = Validator(is_even)
    assert v.check(2) is None
    assert v.check(3) == "is_even returned False"


def test_coerce_and_bad_rule():
    assert Validator.coerce(None) is None
    v = Validator(SCHEMA)
    assert Validator.coerce(v) is v
    assert isinstance(Validator.coerce(SCHEMA), Validator)
    with pytest.raises(InvalidInput, match="validate must be"):
        Validator(42)


def test_rejection_keeps_index_reason_and_input():
    r = Rejection(index=3, reason="bad", input={"x": 1})
    assert (r.index, r.reason, r.input) == (3, "bad", {"x": 1})


def test_repr_names_the_rule():
    assert repr(Validator(SCHEMA)) == "Validator(schema with properties, required, type)"

    def positive(record):
        return record > 0

    assert repr(Validator(positive)) == ("Validator(test_repr_names_the_rule.<locals>.positive)")
