"""Records become payload bytes without a silent change: Decimals, NaN, keys, sets, datetimes."""

import datetime as dt
import math
import os
import subprocess
import sys
import zoneinfo
from decimal import Decimal

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lambdakit.errors import InvalidInput
from lambdakit.records.batching import Envelope, iter_batches, sub_batch


def Encoding(**settings):  # imported late, so that the other tests run on old code too
    from lambdakit.records.encoding import Encoding

    return Encoding(**settings)


def collect(source, **kwargs):
    rejections = []
    batches = list(iter_batches(source, on_reject=rejections.append, **kwargs))
    return batches, {r.index: r.reason for r in rejections}


def items(batches):
    return [item for b in batches for item in orjson.loads(b.body)["Items"]]


def test_decimals_keep_their_digits_as_numbers_or_as_strings():
    values = [Decimal("1.10"), Decimal("2.00"), Decimal("1E+2"), Decimal("-0.000")]
    batches, rejected = collect([{"amount": v} for v in values])
    assert not rejected
    assert batches[0].body == (
        b'{"Items":[{"amount":1.10},{"amount":2.00},{"amount":1E+2},{"amount":-0.000}]}'
    )
    # Parsed with Decimal, the numbers are the very values that were sent.
    parsed = [i["amount"] for i in orjson.loads(batches[0].body)["Items"]]
    assert parsed[0] == 1.1  # a binary-float parser loses the trailing zero; the bytes do not
    batches, _ = collect([{"amount": v} for v in values], encoding=Encoding(decimal="string"))
    assert items(batches) == [{"amount": str(v)} for v in values]


def test_a_parquet_decimal_column_arrives_with_its_digits(tmp_path):
    path = tmp_path / "money.parquet"
    amounts = [Decimal("1.10"), Decimal("0.05"), None]
    pq.write_table(pa.table({"amount": pa.array(amounts, pa.decimal128(6, 2))}), path)
    batches, rejected = collect(path)
    assert not rejected
    assert batches[0].body == b'{"Items":[{"amount":1.10},{"amount":0.05},{"amount":null}]}'


def test_nan_and_infinities_reject_their_record_naming_the_field():
    records = [
        {"id": 0, "price": 1.5},
        {"id": 1, "price": math.nan},
        {"id": 2, "order": {"lines": [{"qty": 1}, {"qty": math.inf}]}},
        {"id": 3, "price": np.float32("-inf")},
        {"id": 4, "price": Decimal("NaN")},
        {"id": 5, "values": np.array([1.0, np.nan])},
        {"id": 6, "note": None},
        -math.inf,
    ]
    batches, rejected = collect(records)
    assert [i["id"] for i in items(batches)] == [0, 6]  # the others go on
    assert rejected[1].startswith("field 'price' is NaN") and "nan='null'" in rejected[1]
    assert rejected[2].startswith("field 'order.lines[1].qty' is inf")
    assert rejected[3].startswith("field 'price' is -inf")
    assert rejected[4].startswith("field 'price' is Decimal('NaN')")
    assert rejected[5].startswith("field 'values[1]' is NaN")
    assert rejected[7].startswith("the record is -inf")


def test_nan_null_sends_them_as_null_by_choice():
    records = [{"a": math.nan}, {"a": math.inf}, {"a": Decimal("-Infinity")}]
    batches, rejected = collect(records, encoding=Encoding(nan="null"))
    assert not rejected and items(batches) == [{"a": None}] * 3


def test_a_dataframe_nan_names_its_column_and_missing_text_is_null():
    frame = pd.DataFrame(
        {
            "city": ["Oslo", None, math.nan],  # not a number column: NaN can only mean missing
            "n": pd.array([1, None, 3], dtype="Int64"),
            "price": [1.0, 2.0, math.inf],
        }
    )
    batches, rejected = collect(frame)
    assert items(batches) == [
        {"city": "Oslo", "n": 1, "price": 1.0},
        {"city": None, "n": None, "price": 2.0},
    ]
    assert rejected == {2: rejected[2]} and rejected[2].startswith("field 'price' is inf")


def test_a_parquet_nan_is_rejected_not_nulled(tmp_path):
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"x": [1.0, math.inf, None]}), path)
    batches, rejected = collect(path)
    assert items(batches) == [{"x": 1.0}, {"x": None}]
    assert rejected[1].startswith("field 'x' is inf")


def test_keys_that_would_collide_reject_the_record_naming_them():
    records = [
        {1: "int", "1": "str"},
        {"outer": {True: 1, "true": 2}},
        {1: "a", 2: "b"},  # keys that are not strings but stay distinct are fine
    ]
    batches, rejected = collect(records)
    assert items(batches) == [{"1": "a", "2": "b"}]
    assert "the keys 1 and '1'" in rejected[0] and 'JSON key "1"' in rejected[0]
    assert rejected[1].startswith("field 'outer' has the keys True and 'true'")
    frame = pd.DataFrame([[1, 2]], columns=[1, "1"])
    _, rejected = collect(frame)
    assert "the keys 1 and '1'" in rejected[0]


def test_sets_are_sent_sorted_or_rejected():
    batches, rejected = collect([{"tags": {"pear", "apple", "fig"}}, {"mixed": {1, "a"}}])
    assert items(batches) == [{"tags": ["apple", "fig", "pear"]}]
    assert rejected[1].startswith("field 'mixed' is a set of int and str items that do not sort")


def test_a_set_of_frozensets_is_sorted_inside_out():
    # frozenset's < means "is a subset of", so sorted() left such a set in its hash order.
    # {"b"} < {"a", "b"} (a subset) put ["b"] first; as lists, ["a", "b"] sorts first.
    groups = {frozenset({"b", "a"}), frozenset({"c"}), frozenset({"b"}), frozenset()}
    batches, rejected = collect([{"groups": groups}, {"bad": {frozenset({1, "a"})}}])
    assert items(batches) == [{"groups": [[], ["a", "b"], ["b"], ["c"]]}]
    assert "'bad" in rejected[1] and "items that do not sort" in rejected[1]


_SET_PAYLOAD = """
from lambdakit.records.batching import iter_batches
records = [{"id": i, "tags": {f"tag-{j}" for j in range(i, i + 20)}} for i in range(5)]
# frozensets compare by inclusion, which is no order: sorted() kept the hash order.
records += [{"groups": {frozenset({f"g{j}", f"h{j % 3}"}) for j in range(12)}}]
records += [{"nested": {(1, frozenset({"b", "a"})), (1, frozenset({"c"}))}}]
print(b"".join(b.body for b in iter_batches(records)).hex())
"""


def test_set_payload_bytes_do_not_depend_on_the_hash_seed():
    # str hashes are salted per process: a set's iteration order changes with the seed, so
    # the cache missed in every new kernel.
    def payload(seed: str) -> str:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", _SET_PAYLOAD], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert payload("1") == payload("2") == payload("3")


def test_datetimes_are_sent_in_their_documented_forms():
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    record = {
        "naive": dt.datetime(2024, 3, 1, 9, 30, 0, 250),
        "aware": dt.datetime(2024, 3, 1, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=5.5))),
        "zone": dt.datetime(2024, 7, 1, 9, 30, tzinfo=paris),
        "utc": dt.datetime(2024, 3, 1, 9, 30, tzinfo=dt.timezone.utc),
        "pandas": pd.Timestamp("2024-03-01 09:30:00.000000001", tz="America/New_York"),
        "day": dt.date(2024, 3, 1),
        "missing": pd.NaT,
        "na": pd.NA,
    }
    batches, rejected = collect([record])
    assert not rejected
    assert items(batches) == [
        {
            "naive": "2024-03-01T09:30:00.000250",  # as given, no offset: never assumed UTC
            "aware": "2024-03-01T09:30:00+05:30",
            "zone": "2024-07-01T09:30:00+02:00",
            "utc": "2024-03-01T09:30:00+00:00",
            "pandas": "2024-03-01T09:30:00.000000001-05:00",
            "day": "2024-03-01",
            "missing": None,
            "na": None,
        }
    ]


def test_numpy_datetimes_keep_their_nanoseconds_and_timedeltas_are_seconds():
    # orjson wrote datetime64[ns] with microseconds (the last 3 digits dropped), a
    # timedelta64 as its count in its own unit (5 ns and 5 s both 5), and refused NaT.
    record = {
        "ns": np.datetime64("2024-03-01T09:30:00.123456789"),
        "ns_whole_us": np.datetime64("2024-03-01T09:30:00.123456000", "ns"),
        "us": np.datetime64("2024-03-01T09:30:00.250000"),
        "s": np.datetime64("2024-03-01T09:30:00"),
        "day": np.datetime64("2024-03-01"),
        "nat": np.datetime64("NaT"),
        "array": np.array(["2024-03-01T09:30:00.000000001", "NaT"], dtype="datetime64[ns]"),
        "five_ns": np.timedelta64(5, "ns"),
        "five_s": np.timedelta64(5, "s"),
        "spans": np.array([1500, 2], dtype="timedelta64[ms]"),
        "values": np.array([1.5, 2.0]),
        "count": np.int64(3),
        "grid": np.arange(6).reshape(2, 3)[:, ::2],  # not C-contiguous
    }
    batches, rejected = collect([record])
    assert not rejected
    (item,) = items(batches)
    assert item == {
        "ns": "2024-03-01T09:30:00.123456789",
        # As a pandas Timestamp of the same value is sent: nanoseconds only when there are.
        "ns_whole_us": "2024-03-01T09:30:00.123456",
        "us": "2024-03-01T09:30:00.250000",
        "s": "2024-03-01T09:30:00",
        "day": "2024-03-01T00:00:00",
        "nat": None,
        "array": ["2024-03-01T09:30:00.000000001", None],
        "five_ns": 5e-09,
        "five_s": 5.0,
        "spans": [1.5, 0.002],
        "values": [1.5, 2.0],
        "count": 3,
        "grid": [[0, 2], [3, 5]],
    }
    assert item["ns"] == pd.Timestamp(record["ns"]).isoformat()
    assert item["ns_whole_us"] == pd.Timestamp(record["ns_whole_us"]).isoformat()
    assert item["five_ns"] == pd.Timedelta(record["five_ns"]).total_seconds()
    batches, rejected = collect(
        [{"x": np.array([1.0, np.nan])}, {"months": np.timedelta64(2, "M")}]
    )
    assert rejected[0].startswith("field 'x[1]' is NaN")
    assert "months" in rejected[1] and "no fixed length" in rejected[1]


def test_retried_and_bisected_bodies_use_the_run_encoding():
    envelope = Envelope(encoding=Encoding(decimal="string"))
    records = [{"a": Decimal("1.10"), "s": {"b", "a"}}, {"a": Decimal("2.50"), "s": set()}]
    batch = next(iter_batches(records, encoding=envelope.encoding))
    assert sub_batch(batch, [0, 1], envelope).body == batch.body
    assert b'"1.10"' in sub_batch(batch, [0], envelope).body


def test_bad_settings_and_an_unsendable_batch_input_are_refused():
    with pytest.raises(InvalidInput, match=r"decimal must be one of 'number', 'string'"):
        Encoding(decimal="float")
    with pytest.raises(InvalidInput, match=r"nan must be one of 'reject', 'null'"):
        Encoding(nan="zero")
    with pytest.raises(InvalidInput, match=r"batch_input cannot be sent: field 'rate' is NaN"):
        Envelope(batch_input={"rate": math.nan})
    with pytest.raises(InvalidInput, match=r"payload callable returned what cannot be sent"):
        list(iter_batches([1], payload=lambda items: {1: 1, "1": 2}))


def test_an_int_beyond_64_bits_is_sent_with_its_digits():
    # orjson refuses such an int: the record was rejected ("Integer exceeds 64-bit range").
    records = [{"id": 2**64, "low": -(2**63) - 1, "list": [10**30]}, {"id": 1}]
    batches, rejected = collect(records)
    assert not rejected
    assert batches[0].body == (
        b'{"Items":[{"id":18446744073709551616,"low":-9223372036854775809,'
        b'"list":[1000000000000000000000000000000]},{"id":1}]}'
    )


def _typed(value):
    """A value with each number's type beside it, to compare readings exactly."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, str(value))


@pytest.mark.parametrize(
    "text",
    [
        b"[0.30000000000000004, 84.74337369372327, 1e-05, 1.2345e+22, 5e-324]",  # own digits
        b'{"a": 1.10, "b": 0.1234567890123456789, "c": 12345678901234567890123}',  # not
        b'{"n": "caf\\u00e9 0.12345678901234567", "x": 0.12345678901234567}',
        b"[18446744073709551615, -9223372036854775808, 18446744073709551616, 1e-400]",
        b'{"id":"12345678901234567890","v":[1.0000000000000000,2.5]}\n',
    ],
)
def test_the_exact_reading_shortcut_reads_as_the_exact_re_read_does(text):
    # loads_exact skips the json.loads re-read when orjson writes its reading back as the
    # text: what it gives must be exactly what the re-read gives.
    from lambdakit.records.encoding import exact_loads, loads_exact

    assert _typed(loads_exact(text)) == _typed(exact_loads(text))
