"""Record validation before anything is sent: a JSON Schema or a callable -> Rejection."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lambdakit.errors import InvalidInput

__all__ = ["Rejection", "Validator"]

log = logging.getLogger("lambdakit.records.validation")


@dataclass(frozen=True)
class Rejection:
    """A record that was never sent: its input index, why, and the record itself."""

    index: int
    reason: str
    input: Any


class Validator:
    """Checks one record at a time; `check(record)` returns None or the reason it is rejected.

    >>> v = Validator({"type": "object", "required": ["id"]})
    >>> v.check({"id": 1}) is None
    True
    >>> v.check({})
    "'id' is a required property"
    """

    def __init__(self, rule: Mapping[str, Any] | Callable[[Any], Any]) -> None:
        self.rule = rule
        if isinstance(rule, Mapping):
            self._check = self._schema_check(dict(rule))
        elif callable(rule):
            self._check = self._callable_check(rule)
        else:
            raise InvalidInput(
                "validate must be a JSON Schema (dict) or a callable(record) that raises on a "
                f"bad record, got {type(rule).__name__}"
            )

    @classmethod
    def coerce(
        cls, validate: Validator | Mapping[str, Any] | Callable[[Any], Any] | None
    ) -> Validator | None:
        """Accept a Validator, a schema dict, a callable, or None (no validation)."""
        if validate is None or isinstance(validate, Validator):
            return validate
        return cls(validate)

    def __repr__(self) -> str:
        if isinstance(self.rule, Mapping):
            keys = ", ".join(sorted(str(k) for k in self.rule)[:5])
            return f"Validator(schema with {keys})"
        return f"Validator({getattr(self.rule, '__qualname__', repr(self.rule))})"

    def check(self, record: Any) -> str | None:
        """None when the record is acceptable, else a one-line reason."""
        return self._check(record)

    @staticmethod
    def _schema_check(schema: dict[str, Any]) -> Callable[[Any], str | None]:
        from jsonschema import exceptions, validators

        cls = validators.validator_for(schema)
        try:
            cls.check_schema(schema)
        except exceptions.SchemaError as exc:
            raise InvalidInput(f"validate: the JSON Schema is invalid: {exc.message}") from None
        # Built once; is_valid is the fast path, the error is worked out only on failure.
        compiled = cls(schema)

        def check(record: Any) -> str | None:
            if compiled.is_valid(record):
                return None
            error = exceptions.best_match(compiled.iter_errors(record))
            if error is None:
                return "does not match the schema"
            where = "/".join(str(p) for p in error.absolute_path)
            return f"{where}: {error.message}" if where else error.message

        return check

    @staticmethod
    def _callable_check(func: Callable[[Any], Any]) -> Callable[[Any], str | None]:
        name = getattr(func, "__name__", type(func).__name__)

        def check(record: Any) -> str | None:
            try:
                verdict = func(record)
            except Exception as exc:  # any exception from the user's check is a rejection
                message = str(exc)
                return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
            # A check written as a predicate (returns False) is honoured too.
            if verdict is False:
                return f"{name} returned False"
            return None

        return check
