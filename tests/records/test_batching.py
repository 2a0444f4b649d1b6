"""Batching: sources, count and byte limits, rejections, envelopes, bisection, fingerprints."""

import itertools
import math

import orjson
import pandas as pd
import pytest

from lambdakit.errors import InvalidInput
from lambdakit.records.batching import (
    LAMBDA_PAYLOAD_LIMIT,
    Envelope,
    dumps,
    iter_batches,
    split_batch,
    sub_batch,
)
from lambdakit.records.encoding import Encoding
from lambdakit.records.validation import Validator


def collect(source, **kwargs):
    rejections = []
    stream = iter_batches(source, on_reject=rejections.append, **kwargs)
    return list(stream), rejections, stream


def test_count_split_keeps_every_record_in_order():
    batches, rejections, stream = collect(range(10), batch_size=3)
    assert [b.record_indices for b in batches] == [(0, 1, 2), (3, 4, 5), (6, 7, 8), (9,)]
    assert [b.index for b in batches] == [0, 1, 2, 3]
    assert batches[0].body == b'{"Items":[0,1,2]}'
    assert not rejections and stream.records == 10


def test_byte_split_is_exact_and_never_exceeds_limit():
    records = [{"k": "x" * n} for n in range(1, 200)]
    limit = 700
    batches, rejections, _ = collect(records, batch_size=1000, max_batch_bytes=limit)
    assert not rejections
    assert all(len(b.body) <= limit for b in batches)
    # Every body is what it claims: the items, serialised.
    for b in batches:
        assert orjson.loads(b.body) == {"Items": b.items}
    # Greedy packing: adding the next record to any batch would have crossed the limit.
    for b, nxt in itertools.pairwise(batches):
        assert len(b.body) + 1 + len(dumps(nxt.items[0])) > limit
    flat = [i for b in batches for i in b.record_indices]
    assert flat == list(range(len(records)))


def test_oversized_single_record_is_rejected_with_reason_and_never_sent():
    records = [{"a": 1}, {"big": "x" * 5000}, {"a": 2}]
    batches, rejections, stream = collect(records, max_batch_bytes=1000)
    assert [b.record_indices for b in batches] == [(0, 2)]
    assert len(rejections) == 1 and rejections[0].index == 1
    assert "over max_batch_bytes=1,000" in rejections[0].reason
    assert rejections[0].input == records[1]
    assert stream.rejected == 1


def test_validation_rejections_are_counted_and_not_sent():
    schema = {"type": "object", "required": ["id"]}
    records = [{"id": 1}, {"x": 2}, {"id": 3}]
    batches, rejections, stream = collect(records, validator=Validator(schema))
    assert batches[0].items == [{"id": 1}, {"id": 3}]
    assert [(r.index, r.reason) for r in rejections] == [(1, "'id' is a required property")]
    assert stream.records == 3 and stream.rejected == 1


def test_unserialisable_record_is_rejected():
    batches, rejections, _ = collect([1, object(), 2])
    assert batches[0].record_indices == (0, 2)
    assert "not JSON-serialisable" in rejections[0].reason


def test_without_on_reject_a_rejection_raises():
    with pytest.raises(InvalidInput, match="record 1 was rejected"):
        list(iter_batches([1, object()]))


def test_batch_input_and_payload_callable():
    batches, _, _ = collect([1, 2], batch_input={"run": "r1"})
    assert orjson.loads(batches[0].body) == {"Items": [1, 2], "BatchInput": {"run": "r1"}}
    batches, _, _ = collect([1, 2, 3], batch_size=2, payload=lambda items: {"rows": items})
    assert [orjson.loads(b.body) for b in batches] == [{"rows": [1, 2]}, {"rows": [3]}]


def test_payload_callable_that_inflates_is_bisected_then_rejected():
    def padded(items):
        return {"rows": items, "pad": "x" * (300 * len(items))}

    batches, rejections, _ = collect(range(4), max_batch_bytes=700, payload=padded)
    assert all(len(b.body) <= 700 for b in batches)
    assert sorted(i for b in batches for i in b.record_indices) == [0, 1, 2, 3]
    # The halves are batches of their own, numbered in order.
    assert [b.index for b in batches] == list(range(len(batches))) and len(batches) > 1
    assert not rejections
    batches, rejections, _ = collect([1], max_batch_bytes=100, payload=lambda i: "x" * 200)
    assert not batches and "payload= callable" in rejections[0].reason


def test_dataframe_missing_values_and_timestamps_serialise_sensibly():
    # nan="null": a float column's NaN is sent as null (by default it rejects the record).
    df = pd.DataFrame(
        {
            "a": [1, 2],
            "b": [1.5, math.nan],
            "t": [pd.Timestamp("2024-01-02 03:04:05"), pd.NaT],
            "tz": [pd.Timestamp("2024-01-02", tz="UTC"), pd.NaT],
            "s": ["x", None],
        }
    )
    batches, rejections, _ = collect(df, encoding=Encoding(nan="null"))
    assert not rejections
    items = orjson.loads(batches[0].body)["Items"]
    assert items[0] == {
        "a": 1,
        "b": 1.5,
        "t": "2024-01-02T03:04:05",
        "tz": "2024-01-02T00:00:00+00:00",
        "s": "x",
    }
    assert items[1] == {"a": 2, "b": None, "t": None, "tz": None, "s": None}


def test_jsonl_streamed_with_bad_lines_rejected(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\nnot json\n{"a": 3}\n')
    batches, rejections, stream = collect(path)
    assert batches[0].items == [{"a": 1}, {"a": 2}, {"a": 3}]
    assert batches[0].record_indices == (0, 1, 3)
    assert rejections[0].index == 2 and "line 4 of data.jsonl is not JSON" in rejections[0].reason
    # The line itself, as a BadLine (not its text: that would be a string record on a rerun).
    assert rejections[0].input.text == "not json"
    assert rejections[0].input.reason == rejections[0].reason
    assert stream.records == 4


def test_reading_is_lazy(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_text("".join(f'{{"i": {i}}}\n' for i in range(1000)))
    stream = iter_batches(path, batch_size=10)
    first = next(stream)
    assert first.record_indices == tuple(range(10))
    assert stream.records <= 11  # read at most one past the batch, no more


def test_records_counted_are_those_in_batches_taken_or_rejected():
    # A run that stops after some batches reports stream.records as read: each of them must
    # be in a batch it has, or rejected, never the one that opened the next batch.
    rejections = []
    stream = iter_batches(
        range(20), batch_size=3, on_reject=rejections.append,
        validator=Validator.coerce(lambda r: r != 4 or int("four")),
    )  # fmt: skip
    taken = [next(stream), next(stream)]
    assert stream.records == sum(len(b) for b in taken) + len(rejections) == 7


def test_read_ahead_hands_back_what_was_never_taken():
    from lambdakit.records.batching import ReadAhead

    ahead = ReadAhead(iter_batches(range(10), batch_size=2), ahead=3)
    assert ahead.take().record_indices == (0, 1)
    while ahead.prefetch():
        pass
    left = ahead.take_ready()
    assert [b.record_indices for b in left] == [(2, 3), (4, 5), (6, 7)]
    assert ahead.take_ready() == [] and ahead.take().record_indices == (8, 9)


def test_fingerprint_depends_on_data_not_on_batching():
    records = [{"i": i} for i in range(50)]
    _, _, a = collect(records, batch_size=7)
    _, _, b = collect(records, batch_size=50)
    _, _, c = collect([*records[:-1], {"i": 999}], batch_size=7)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert len(a.fingerprint) == 64


def test_split_and_sub_batch_keep_index_and_positions():
    (batch,) = list(iter_batches([{"n": i} for i in range(5)], batch_size=5))
    left, right = split_batch(batch)
    assert (left.index, right.index) == (0, 0)
    assert left.record_indices == (0, 1) and right.record_indices == (2, 3, 4)
    assert orjson.loads(right.body) == {"Items": [{"n": 2}, {"n": 3}, {"n": 4}]}
    only = sub_batch(batch, [4, 1], Envelope(batch_input={"k": 1}))
    assert only.record_indices == (1, 4)
    assert orjson.loads(only.body) == {"Items": [{"n": 1}, {"n": 4}], "BatchInput": {"k": 1}}
    (single,) = list(iter_batches([1]))
    with pytest.raises(InvalidInput, match="single record"):
        split_batch(single)
    with pytest.raises(InvalidInput, match="not within"):
        sub_batch(batch, [7])


def test_bad_path_is_reported_when_the_stream_is_made(tmp_path):
    with pytest.raises(InvalidInput, match="does not exist"):
        iter_batches(tmp_path / "nope.csv")


def test_bad_settings_are_named():
    with pytest.raises(InvalidInput, match="batch_size"):
        iter_batches([1], batch_size=0)
    with pytest.raises(InvalidInput, match="max_batch_bytes"):
        iter_batches([1], max_batch_bytes=LAMBDA_PAYLOAD_LIMIT + 1)
    # An in-range float was told it must be "between 64 and 6,291,456".
    with pytest.raises(InvalidInput, match="max_batch_bytes must be a whole number of bytes"):
        iter_batches([1], max_batch_bytes=1_000_000.5)
    with pytest.raises(InvalidInput, match="batch_input"):
        Envelope(batch_input=[1])


def test_payload_and_batch_input_problems_are_named():
    # Each escaped as a raw TypeError from orjson, or the callable's own exception, mid-run.
    with pytest.raises(InvalidInput, match="batch_input cannot be sent: not JSON-serialisable"):
        Envelope(batch_input={"when": object()})

    def broken(items):
        raise KeyError("price")

    with pytest.raises(InvalidInput, match=r"payload callable raised KeyError: 'price'"):
        collect([1, 2], payload=broken)
    with pytest.raises(
        InvalidInput, match="payload callable returned what cannot be sent: not JSON"
    ):
        collect([1, 2], payload=lambda items: {"rows": object()})


def test_a_repeated_id_starts_the_next_batch_so_ids_are_unique_per_batch(caplog):
    records = [{"id": i % 4, "n": i} for i in range(10)]  # ids 0 1 2 3 0 1 2 3 0 1
    records.append({"n": 10})  # no id: never split for it
    records.append({"n": 11})
    with caplog.at_level("WARNING", logger="lambdakit.records.batching"):
        batches, _, stream = collect(records, batch_size=6, id_field="id")
    assert [b.record_indices for b in batches] == [(0, 1, 2, 3), (4, 5, 6, 7), (8, 9, 10, 11)]
    for batch in batches:
        ids = [item["id"] for item in batch.items if "id" in item]
        assert len(ids) == len(set(ids))
    assert stream.repeated_ids == ["0"]  # id 0 cut both times, before 1 could repeat
    assert stream.repeated_id_records == 2
    assert "id '0' repeats within a batch" in caplog.text
    # Text, as batchItemFailures identifiers are matched: 7 and "7" are the same id.
    batches, _, stream = collect([{"id": 7}, {"id": "7"}], id_field="id")
    assert [b.record_indices for b in batches] == [(0,), (1,)]
    # Without id_field nothing changes.
    batches, _, stream = collect(records, batch_size=6)
    assert [len(b) for b in batches] == [6, 6] and stream.repeated_ids == []


def test_a_source_that_raises_midway_ends_the_stream_with_the_count_read():
    from lambdakit.errors import SourceError

    def source():
        yield from range(7)
        raise OSError("disk went away")

    stream = iter_batches(source(), batch_size=3)
    taken = []
    with pytest.raises(SourceError, match=r"OSError: disk went away \(after 7 records") as info:
        for batch in stream:
            taken.append(batch.record_indices)
    # Every record read is in a batch before the error ends the stream.
    assert taken == [(0, 1, 2), (3, 4, 5), (6,)]
    assert stream.records == 7 and info.value.records_read == 7
    assert isinstance(info.value.__cause__, OSError)
