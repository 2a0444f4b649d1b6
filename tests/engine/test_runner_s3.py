"""Runs over S3 datasets, end to end: moto's S3 server in, `lambdakit local` invoked.

Outputs come back in source order, every failed record names its object and line or row,
and a rewritten object is invoked again while the rest come from the cache.
"""

import gzip
import io
import json
import pickle

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lambdakit
from lambdakit.aws.s3 import download_folder
from lambdakit.errors import InvalidInput, SourceError, StorageError, ToleranceExceeded
from lambdakit.results.outputs import OutputStore

# Fails every record whose i is a multiple of 997 (reported per item), doubles the others.
PICKY = """
def handler(event, context):
    items = event["Items"]
    failed = [{"itemIdentifier": n} for n, item in enumerate(items) if item["i"] % 997 == 0]
    return {"batchItemFailures": failed, "outputs": [item["i"] * 2 for item in items]}
"""
DOUBLE = "def handler(event, context):\n    return [item['v'] * 2 for item in event['Items']]\n"
JSONL_OBJECTS, JSONL_RECORDS = 10, 7_000
PARQUET_OBJECTS, PARQUET_RECORDS = 5, 6_000


def _jsonl_gz(start, stop, shift=0):
    lines = "".join(json.dumps({"i": i, "v": i + shift}) + "\n" for i in range(start, stop))
    return gzip.compress(lines.encode())


def _parquet(start, stop):
    buffer = io.BytesIO()
    ids = list(range(start, stop))
    table = pa.table({"i": ids, "v": ids, "unused": ["x" * 50] * len(ids)})
    pq.write_table(table, buffer, row_group_size=2_500)
    return buffer.getvalue()


@pytest.fixture
def dataset(s3_client, s3_bucket):
    """100,000 records: 10 gzipped JSONL objects, then 5 Parquet objects (in key order)."""
    start = 0
    for n in range(JSONL_OBJECTS):
        body = _jsonl_gz(start, start + JSONL_RECORDS)
        s3_client.put_object(Bucket=s3_bucket, Key=f"data/part-{n:02d}.jsonl.gz", Body=body)
        start += JSONL_RECORDS
    for n in range(JSONL_OBJECTS, JSONL_OBJECTS + PARQUET_OBJECTS):
        body = _parquet(start, start + PARQUET_RECORDS)
        s3_client.put_object(Bucket=s3_bucket, Key=f"data/part-{n:02d}.parquet", Body=body)
        start += PARQUET_RECORDS
    return f"s3://{s3_bucket}/data/part-*"


@pytest.fixture
def go(local_lambda, s3_server, tmp_path):
    def call(function, records, **kwargs):
        kwargs.setdefault("cache", tmp_path / "cache")
        kwargs.setdefault("progress", False)
        return lambdakit.run(
            function, records, endpoint_url=local_lambda.endpoint_url,
            s3_endpoint_url=s3_server, **kwargs,
        )  # fmt: skip

    return call


def test_100k_records_from_s3_come_back_in_source_order_with_provenance(
    make_function, go, dataset, s3_bucket
):
    name = make_function(PICKY, MemorySize=512)
    result = go(name, dataset, batch_size=1_000, concurrency=8, columns=None)
    summary = result.summary()
    total = JSONL_OBJECTS * JSONL_RECORDS + PARQUET_OBJECTS * PARQUET_RECORDS
    failing = [i for i in range(total) if i % 997 == 0]
    assert (summary["records"], summary["failed_records"]) == (total, len(failing))
    outputs = list(result.outputs())
    assert outputs == [None if i % 997 == 0 else i * 2 for i in range(total)]
    errors = result.errors()
    assert errors["record"].tolist() == failing
    for row in errors.itertuples():
        if row.record < JSONL_OBJECTS * JSONL_RECORDS:
            part, offset = divmod(row.record, JSONL_RECORDS)
            assert row.source == f"s3://{s3_bucket}/data/part-{part:02d}.jsonl.gz"
            assert (row.line, row.row) == (offset + 1, offset + 1)
        else:
            part, offset = divmod(row.record - JSONL_OBJECTS * JSONL_RECORDS, PARQUET_RECORDS)
            assert row.source == f"s3://{s3_bucket}/data/part-{JSONL_OBJECTS + part:02d}.parquet"
            assert row.row == offset + 1 and row.line is pd_na()
    retry = result.failed_records(provenance=True)
    assert retry.index.tolist() == failing
    assert retry["source"].tolist() == errors["source"].tolist()
    assert [r["i"] for r in retry["input"]] == failing
    # The manifest names every object read, with its ETag, first record and count.
    source = result.meta["source"]
    assert source["type"] == "dataset" and source["objects"] == 15
    read = source["objects_read"]
    assert [o["records"] for o in read] == [JSONL_RECORDS] * 10 + [PARQUET_RECORDS] * 5
    assert all(o["version"].startswith("etag=") for o in read)


def pd_na():
    import pandas as pd

    return pd.NA


def test_a_rewritten_object_is_invoked_again_and_the_rest_come_from_the_cache(
    make_function, go, dataset, s3_client, s3_bucket
):
    name = make_function(DOUBLE)  # failures are never cached: this one has none
    first = go(name, dataset, batch_size=1_000, concurrency=8)
    again = go(name, dataset, batch_size=1_000, concurrency=8)
    assert again.summary()["cached_batches"] == again.summary()["batches"] == 100
    assert again.meta["dataset_fingerprint"] == first.meta["dataset_fingerprint"]
    # Another team's pipeline rewrites one object: new values for the same ids.
    start = 3 * JSONL_RECORDS
    body = _jsonl_gz(start, start + JSONL_RECORDS, shift=1)
    s3_client.put_object(Bucket=s3_bucket, Key="data/part-03.jsonl.gz", Body=body)
    resumed = go(name, dataset, batch_size=1_000, concurrency=8)
    assert resumed.meta["dataset_fingerprint"] != first.meta["dataset_fingerprint"]
    batches = resumed.batches
    invoked = batches.loc[batches["status"] != "cached", "first_record"].tolist()
    assert invoked == list(range(start, start + JSONL_RECORDS, 1_000))  # that object only
    outputs = list(resumed.outputs())
    assert outputs[start : start + JSONL_RECORDS] == [
        (i + 1) * 2 for i in range(start, start + JSONL_RECORDS)
    ]  # the new values
    assert outputs[:start] == list(first.outputs())[:start]


def test_columns_select_what_parquet_objects_send(make_function, go, s3_client, s3_bucket):
    s3_client.put_object(Bucket=s3_bucket, Key="p/a.parquet", Body=_parquet(0, 10))
    name = make_function("def handler(event, context):\n    return event['Items']\n")
    result = go(name, f"s3://{s3_bucket}/p/", columns=["i"], batch_size=5)
    assert list(result.outputs()) == [{"i": i} for i in range(10)]
    assert result.meta["source"]["columns"] == ["i"]
    with pytest.raises(InvalidInput, match="columns= selects the Parquet columns of files"):
        go(name, [{"i": 1}], columns=["i"])


def test_a_corrupt_object_stops_the_run_naming_it_and_nothing_read_is_lost(
    make_function, go, s3_client, s3_bucket, s3_server, tmp_path
):
    s3_client.put_object(Bucket=s3_bucket, Key="c/a.jsonl.gz", Body=_jsonl_gz(0, 300))
    cut = _jsonl_gz(300, 5_000)
    s3_client.put_object(Bucket=s3_bucket, Key="c/b.jsonl.gz", Body=cut[: len(cut) // 2])
    name = make_function("def handler(event, context):\n    return event['Items']\n")
    out = f"s3://{s3_bucket}/runs/partial/outputs/"
    with pytest.raises(SourceError, match=r"c/b\.jsonl\.gz is not a readable gzip") as caught:
        go(name, f"s3://{s3_bucket}/c/", batch_size=100, output_dir=out)
    partial = caught.value.result
    summary = partial.summary()
    read = partial.meta["records_read"]
    assert read > 300 and summary["records"] == read
    ok = sum(output is not None for output in partial.outputs())
    assert ok + summary["failed_records"] + summary["not_run_records"] == read
    # The outputs of the interrupted run are in S3 too, in an OutputStore folder.
    assert partial.meta["output_dir"] == out and "output_dir_error" not in partial.meta
    folder = download_folder(out, tmp_path / "outputs", endpoint_url=s3_server)
    assert list(OutputStore.open(folder).get_all(read)) == list(partial.outputs())


def test_an_output_dir_in_a_missing_bucket_stops_the_run_before_it_starts(make_function, go):
    name = make_function("def handler(event, context):\n    return event['Items']\n")
    with pytest.raises(StorageError, match=r"output_dir 's3://lk-missing-bucket-z/o/' cannot"):
        go(name, [{"i": 1}], output_dir="s3://lk-missing-bucket-z/o/")


def test_a_stopped_run_over_s3_gives_everything_left_even_once_loaded_back(
    make_function, go, s3_client, s3_bucket, s3_server
):
    for part in range(5):
        body = _parquet(part * 1_000, part * 1_000 + 1_000)
        s3_client.put_object(Bucket=s3_bucket, Key=f"t/part-{part}.parquet", Body=body)
    name = make_function(PICKY)  # record 0 fails: the run stops at once
    with pytest.raises(ToleranceExceeded) as stopped:
        go(
            name, f"s3://{s3_bucket}/t/", batch_size=100, concurrency=1, tolerated_failure=0,
            columns=["i"],
        )  # fmt: skip
    result = stopped.value.result
    summary = result.summary()
    assert summary["records"] == 5_000 and summary["not_run_records"] > 0  # known: footers
    assert result.meta["records_read"] < 5_000
    ok = sum(output is not None for output in result.outputs())
    rest = result.failed_records(include_not_run=True)
    assert len(rest) == 5_000 - ok and rest.index[-1] == 4_999
    assert [r["i"] for r in rest.tolist()] == rest.index.tolist()  # each its own record
    copy = pickle.loads(pickle.dumps(result))  # a Dataset's S3 clients are not pickled
    assert copy.source is None and copy.errors().equals(result.errors())
    url = f"s3://{s3_bucket}/runs/stopped/"
    result.save(url, s3_endpoint_url=s3_server)
    loaded = lambdakit.RunResult.load(url, s3_endpoint_url=s3_server)
    with pytest.MonkeyPatch.context() as patch:  # the loaded result reopens the dataset
        patch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
        assert loaded.failed_records(include_not_run=True).equals(rest)
        assert copy.failed_records(include_not_run=True).equals(rest)
        # An object the run read, rewritten since: its positions would name other records.
        s3_client.put_object(Bucket=s3_bucket, Key="t/part-0.parquet", Body=_parquet(7, 8))
        with pytest.raises(InvalidInput, match=r"t/part-0\.parquet changed since the run"):
            loaded.failed_records(include_not_run=True)
