"""How a record becomes payload bytes (orjson), without a silent change to the data.

The forms, as docs/architecture.md documents them:
- Decimal: a JSON number with the Decimal's own digits (`Decimal("1.10")` -> `1.10`), or
  with `decimal="string"` its text (`"1.10"`), for functions whose JSON parser reads numbers
  as binary floats.
- NaN and infinities (float, numpy or Decimal) have no JSON form: the record is rejected,
  naming the field, unless `nan="null"` sends them as null.
- None, pandas' NaT and NA: null.
- datetime: ISO 8601; a naive one as given, without an offset (never assumed UTC); an aware
  one with its offset (`+02:00`, UTC as `+00:00`); pandas Timestamps keep nanoseconds.
  date: `YYYY-MM-DD`; time: `HH:MM:SS[.ffffff]`; timedelta: seconds, a number.
- set / frozenset: a list in sorted order, so the same records make the same bytes in every
  process (and hit the cache), sets inside it sorted first (a set of frozensets is a sorted
  list of sorted lists); a set whose items do not sort is rejected.
- numpy: numbers and arrays as orjson writes them; datetime64 with every digit (as a pandas
  Timestamp of it: nanoseconds kept); timedelta64 as seconds, a number; NaT as null.
- dict keys that are not strings are sent as JSON keys (`1` -> `"1"`); a dict whose keys
  would collide (`1` and `"1"`) is rejected, naming the keys, since one value would be lost.
- JsonNumber (a number read from JSON text that a float cannot hold: a JSONL or JSON
  file's, a reply's): a JSON number with its own digits, whatever `decimal` says.
- int beyond 64 bits (which orjson refuses): a JSON number with its digits.

Reading JSON text back (`loads_exact`: files, replies, stored outputs) is the inverse: an
integer is an int whatever its size, a number a float holds exactly is a float (`1.10` is
1.1), and any other (a long fraction, `1e-400`) is a JsonNumber with the text's digits.
`dumps_exact` writes such values back with those digits.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from lambdakit.errors import InvalidInput

__all__ = [
    "DECIMAL_FORMS",
    "NAN_CHOICES",
    "NUMBER_CLASSES",
    "NUMBER_LONG_RUN",
    "NUMBER_TINY",
    "OPTIONS",
    "Encoding",
    "JsonNumber",
    "dumps_exact",
    "exact_loads",
    "loads_exact",
    "loses_digits",
    "may_lose",
    "sorted_items",
]

DECIMAL_FORMS = ("number", "string")
NAN_CHOICES = ("reject", "null")
# No OPT_NON_STR_KEYS on the common path: orjson then refuses non-str keys, which sends
# exactly the records whose keys could collide down the slow path that checks them. No
# OPT_SERIALIZE_NUMPY either: it writes datetime64[ns] with microseconds and a timedelta64
# as its count of its own unit, so numpy values go to the default (_numpy_value), which
# hands numeric arrays back to orjson with the option.
OPTIONS = 0  # the common path's orjson options
_KEYED = orjson.OPT_NON_STR_KEYS
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_FINER_THAN_US = ("ns", "ps", "fs", "as")


class JsonNumber(decimal.Decimal):
    """A number from a JSON file that a float cannot hold (a long fraction, a huge integer)."""

    __slots__ = ()


# orjson reads a number with a fraction or an exponent as a float, and an integer beyond 64
# bits as one too: a number of 16 digits or more (a '.' among them) may not survive that, nor
# one with a negative 3-digit exponent (1e-400 is 0.0; a positive one too large is refused as
# infinity). Only text that holds such a run is read again, exactly (exact_loads). The test
# is two substring searches in the text mapped to classes (digit or '.' -> d, e/E -> e), a
# fifth of a regex's cost; it also matches inside strings (long digit strings, some UUIDs),
# which costs only the re-read.
NUMBER_CLASSES = bytes(
    0x64 if chr(b) in "0123456789." else 0x65 if chr(b) in "eE" else 0x2D if b == 0x2D else 0x78
    for b in range(256)
)
NUMBER_LONG_RUN, NUMBER_TINY = b"d" * 16, b"de-ddd"
_INT_MIN, _INT_END = -(1 << 63), 1 << 64  # what orjson reads and writes as an int


def may_lose(text: bytes) -> bool:
    """Whether JSON text may hold a number that orjson would not read exactly."""
    classes = text.translate(NUMBER_CLASSES)
    return NUMBER_LONG_RUN in classes or NUMBER_TINY in classes


_BLANKS = b" \t\n\r"


def loses_digits(text: bytes, value: Any) -> bool:
    """Whether `value`, orjson's reading of JSON `text` (that may_lose flagged), may differ
    from the numbers the text writes.

    False when orjson writes `value` back as the text itself, blanks aside: then each
    number is the float's (or int's) own digits, read exactly. That holds for replies and
    lines written by Python's json, orjson or JavaScript; other text (`1.10`, `1e-05`,
    non-ASCII escaped as `\\u00e9`) is read again by exact_loads, which decides. About a
    tenth of that re-read's time for text full of floats.
    """
    return text.translate(None, _BLANKS) != orjson.dumps(value)


def _float_holds(value: float, text: str) -> bool:
    """Whether the float read from `text` is the number `text` writes (1.10 is 1.1)."""
    if repr(value) == text:  # the float's own digits (what Python and most JSON writers give)
        return True
    return math.isfinite(value) and decimal.Decimal(repr(value)) == decimal.Decimal(text)


def _exact_number(text: str) -> Any:
    """A JSON number with a fraction or exponent: a float when one holds its value exactly."""
    value = float(text)
    return value if _float_holds(value, text) else JsonNumber(text)


def exact_loads(text: bytes | str) -> Any:
    """JSON text read with every number exact: ints of any size, JsonNumber for the rest."""
    return json.loads(text, parse_float=_exact_number)


def loads_exact(text: bytes | str) -> Any:
    """orjson.loads, but text that may hold a number orjson would not read exactly is read
    again by exact_loads (orjson.JSONDecodeError for what is not JSON, as orjson says)."""
    value = orjson.loads(text)
    raw = text if isinstance(text, bytes) else text.encode()
    return exact_loads(raw) if may_lose(raw) and loses_digits(raw, value) else value


def _exact_default(value: Any) -> Any:
    """dumps_exact's fallback: a Decimal (JsonNumber included) as a number with its digits."""
    if isinstance(value, decimal.Decimal) and value.is_finite():
        return orjson.Fragment(str(value))
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def wide_ints_as_numbers(value: Any) -> Any:
    """`value` with every int orjson refuses (beyond 64 bits) as a Fragment of its digits."""
    kind = type(value)
    if kind is int or (isinstance(value, int) and not isinstance(value, bool)):
        return value if _INT_MIN <= value < _INT_END else orjson.Fragment(str(int(value)))
    if isinstance(value, dict):
        return {key: wide_ints_as_numbers(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [wide_ints_as_numbers(item) for item in value]
    return value


def dumps_exact(value: Any, option: int = 0) -> bytes:
    """orjson.dumps with every digit kept: Decimals as numbers, ints of any size.

    The inverse of loads_exact; TypeError for a value that has no JSON form.
    """
    try:
        return orjson.dumps(value, default=_exact_default, option=option)
    except TypeError:
        # Only an int beyond 64 bits gets here and out again: walk the value once for it.
        return orjson.dumps(wide_ints_as_numbers(value), default=_exact_default, option=option)


class _Unsendable(TypeError):
    """Raised by the orjson default for a value that has no faithful JSON form."""


@dataclass(frozen=True)
class Encoding:
    """How records are serialised: `decimal` ("number" | "string"), `nan` ("reject" | "null")."""

    decimal: str = "number"
    nan: str = "reject"
    default: Callable[[Any], Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.decimal not in DECIMAL_FORMS:
            raise InvalidInput(
                f"decimal must be one of {', '.join(map(repr, DECIMAL_FORMS))} (how Decimal "
                f"values are sent: a JSON number with their digits, or a string), "
                f"got {self.decimal!r}"
            )
        if self.nan not in NAN_CHOICES:
            raise InvalidInput(
                f"nan must be one of {', '.join(map(repr, NAN_CHOICES))} (what becomes of a "
                f"record holding NaN or an infinity), got {self.nan!r}"
            )
        object.__setattr__(self, "default", _make_default(self.decimal == "string", self.nan))

    @classmethod
    def coerce(cls, value: Encoding | None) -> Encoding:
        """An Encoding, or the default one for None."""
        return _DEFAULT if value is None else value

    @property
    def strict(self) -> bool:
        """Whether NaN and infinities reject their record (else they are sent as null)."""
        return self.nan == "reject"

    def encode(self, record: Any) -> tuple[bytes | None, str | None]:
        """(bytes, None), or (None, why the record cannot be sent faithfully)."""
        try:
            part = orjson.dumps(record, default=self.default, option=OPTIONS)
        except TypeError:
            return self.encode_slowly(record)
        if self.strict and part.find(b"null") >= 0:  # NaN and inf come out as null: look closer
            problem = self.problem(record)
            if problem is not None:
                return None, problem
        return part, None

    def encode_slowly(self, record: Any) -> tuple[bytes | None, str | None]:
        """encode() for a record the common path refused: non-str keys, or a problem."""
        problem = self.problem(record)
        if problem is not None:
            return None, problem
        try:
            return orjson.dumps(record, default=self.default, option=_KEYED), None
        except TypeError as exc:
            if isinstance(exc.__cause__, _Unsendable):  # the default's own words
                return None, str(exc.__cause__)
            problem = f"not JSON-serialisable: {exc}"
        try:  # an int beyond 64 bits, which orjson refuses: sent with its digits
            wide = wide_ints_as_numbers(record)
            return orjson.dumps(wide, default=self.default, option=_KEYED), None
        except TypeError:
            return None, problem

    def dumps(self, value: Any) -> bytes:
        """The bytes of a value (InvalidInput naming the problem if it has no faithful form)."""
        part, problem = self.encode(value)
        if part is None:
            raise InvalidInput(str(problem))
        return part

    def problem(self, record: Any) -> str | None:
        """The first value of `record` without a faithful JSON form, named by its path."""
        found = _walk(record, self.strict)
        if found is None:
            return None
        path, message = found
        where = "the record" if not path else f"field {_path_text(path)!r}"
        return f"{where} {message}"


def _make_default(decimal_as_string: bool, nan: str) -> Callable[[Any], Any]:
    """orjson's fallback for what it does not serialise itself (DataFrames, Parquet, sets)."""
    as_null = nan == "null"
    fragment, is_decimal = orjson.Fragment, decimal.Decimal

    def default(value: Any) -> Any:
        if type(value).__module__ == "numpy":  # first: a record of numpy values has many
            if value.ndim == 0 and value.dtype.kind not in "Mm":
                return value.item()
            return _numpy_value(value)
        if isinstance(value, is_decimal):
            if type(value) is JsonNumber:  # the file's own number: its digits, as a number
                return fragment(str(value))
            if value.is_finite():
                text = str(value)
                return text if decimal_as_string else fragment(text)
            if as_null:
                return None
            raise _Unsendable(f"Decimal {value} has no JSON form")
        kind = type(value).__name__
        if kind in ("NaTType", "NAType"):  # pandas' missing markers
            return None
        if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
            return value.isoformat()  # pandas Timestamps: nanoseconds and offset kept
        if isinstance(value, _dt.timedelta):
            return value.total_seconds()
        if isinstance(value, (set, frozenset)):
            try:
                return sorted_items(value)
            except TypeError:
                raise _Unsendable("a set whose items do not sort has no stable order") from None
        if hasattr(value, "tolist"):  # pyarrow leftovers
            return value.tolist()
        raise TypeError(f"{kind} is not JSON-serialisable")

    return default


def sorted_items(items: Any) -> list[Any]:
    """A set's items as a sorted list, sets inside them first made sorted lists themselves.

    frozenset's `<` means "is a subset of", which orders nothing: sorted() would leave a set
    of frozensets in its hash order. TypeError when the items do not sort.
    """
    return sorted(_canonical(item) for item in items)


def _canonical(item: Any) -> Any:
    if isinstance(item, (set, frozenset)):
        return sorted_items(item)
    if type(item) is tuple and any(isinstance(part, (set, frozenset, tuple)) for part in item):
        return tuple(_canonical(part) for part in item)
    return item


def _numpy_value(value: Any) -> Any:
    """A numpy scalar or array as JSON: datetime64 with its digits, timedelta64 as seconds."""
    kind = value.dtype.kind
    if kind == "M":
        return _datetime64_text(value) if value.ndim == 0 else [_numpy_value(v) for v in value]
    if kind == "m":
        return _timedelta64_seconds(value) if value.ndim == 0 else [_numpy_value(v) for v in value]
    try:
        return orjson.Fragment(orjson.dumps(value, option=_NUMPY))
    except TypeError:  # not C-contiguous, an object array, a dtype orjson does not know
        return value.tolist()


def _datetime64_text(value: Any) -> str | None:
    """ISO 8601 as a pandas Timestamp of it says it: nanoseconds (or finer) only when they
    are not zero; coarser units as orjson has always written them. NaT is null."""
    import numpy as np

    if np.isnat(value):
        return None
    unit = np.datetime_data(value.dtype)[0]
    if unit in _FINER_THAN_US:
        text = str(np.datetime_as_string(value, unit=unit))
        if text.rpartition(".")[2][6:].strip("0"):
            return text
        value = value.astype("datetime64[us]")
    try:
        return orjson.loads(orjson.dumps(value, option=_NUMPY))  # type: ignore[no-any-return]
    except TypeError:  # a unit orjson does not write (years, months, hours...)
        return str(np.datetime_as_string(value))


def _timedelta64_seconds(value: Any) -> float | None:
    """Seconds, a number, as a timedelta (and pandas' total_seconds()) is sent; NaT is null."""
    import numpy as np

    if np.isnat(value):
        return None
    try:
        return float(value / np.timedelta64(1, "s"))
    except TypeError:
        unit = np.datetime_data(value.dtype)[0]
        raise _Unsendable(
            f"the record holds a timedelta64 in {dict(Y='years', M='months').get(unit, unit)}, "
            "which has no fixed length in seconds: pass a number or a timedelta"
        ) from None


def _nonfinite_text(value: float) -> str:
    return "NaN" if value != value else ("inf" if value > 0 else "-inf")


_NAN_HINT = "which JSON cannot hold (nan='reject'); nan='null' sends it as null"


def _walk(value: Any, strict: bool, path: tuple[Any, ...] = ()) -> tuple[tuple, str] | None:
    """(path, message) of the first value that cannot be sent faithfully, else None."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return None
    if isinstance(value, float):
        if strict and not math.isfinite(value):
            return path, f"is {_nonfinite_text(value)}, {_NAN_HINT}"
        return None
    if isinstance(value, dict):
        if any(type(key) is not str for key in value):
            collision = _colliding_keys(value)
            if collision is not None:
                return path, collision
        for key, item in value.items():
            found = _walk(item, strict, (*path, key))
            if found is not None:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for position, item in enumerate(value):
            found = _walk(item, strict, (*path, (position,)))
            if found is not None:
                return found
        return None
    if isinstance(value, (set, frozenset)):
        try:
            ordered = sorted_items(value)
        except TypeError:
            kinds = sorted({type(item).__name__ for item in value})
            return path, (
                f"is a set of {' and '.join(kinds)} items that do not sort, so it has no "
                "stable order (its bytes would change from process to process): pass a list"
            )
        return _walk(ordered, strict, path)
    if isinstance(value, decimal.Decimal):
        if strict and not value.is_finite():
            return path, f"is Decimal('{value}'), {_NAN_HINT}"
        return None
    if isinstance(value, (_dt.date, _dt.time, _dt.timedelta)):
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return _walk(fields, strict, path)
    if hasattr(value, "dtype") and hasattr(value, "tolist"):  # numpy arrays and scalars
        return _walk(value.tolist(), strict, path)
    return None


def _colliding_keys(mapping: dict[Any, Any]) -> str | None:
    """The message for two keys of `mapping` that become the same JSON key, else None."""
    seen: dict[bytes, Any] = {}
    for key in mapping:
        try:
            text = orjson.dumps({key: None}, option=_KEYED)[1:-6]  # the quoted JSON key
        except TypeError:
            return None  # an unserialisable key: orjson names it on the way out
        if text in seen:
            return (
                f"has the keys {seen[text]!r} and {key!r}, which both become the JSON key "
                f"{text.decode()}: one value would be lost"
            )
        seen[text] = key
    return None


def _path_text(path: tuple[Any, ...]) -> str:
    """`lines[2].unit_price`: keys joined by dots, list positions (1-tuples) in brackets."""
    text = ""
    for step in path:
        if type(step) is tuple:
            text += f"[{step[0]}]"
        else:
            text += f".{step}" if text else str(step)
    return text


_DEFAULT = Encoding()
