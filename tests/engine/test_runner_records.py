"""Records as a run sends them, end to end against `lambdakit local`: nothing changes silently.

Bad rows are rejected with their line number while the run goes on, and Decimals arrive with
their digits.
"""

import json
import sys
import time
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lambdakit
from lambdakit.records.formats import BadLine

ECHO = "def handler(event, context):\n    return event['Items']\n"

# A custom runtime whose JSON parser keeps numbers as written (as Java's BigDecimal or
# Node's JSON.parse with a reviver can): it answers with the text of each amount it got.
DECIMAL_TEXT_BOOTSTRAP = f"""#!{sys.executable}
import json, os, urllib.request
from decimal import Decimal

api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
while True:
    with urllib.request.urlopen(api + "next") as reply:
        request_id = reply.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(reply.read(), parse_float=Decimal)
    texts = [None if i["amount"] is None else str(i["amount"]) for i in event["Items"]]
    answer = urllib.request.Request(
        api + request_id + "/response", data=json.dumps(texts).encode(), method="POST"
    )
    urllib.request.urlopen(answer).read()
"""


def test_csv_rows_of_the_wrong_width_are_rejected_with_their_line_and_the_run_goes_on(
    make_function, go, tmp_path
):
    path = tmp_path / "orders.csv"
    lines = ["id,amount"] + [f"{i},{i}.5" for i in range(40)]
    lines[11] = "10"  # line 12: too few fields (pandas filled it with NaN)
    lines[31] += ",surplus"  # line 32: too many (pandas stopped the whole file)
    path.write_text("\n".join(lines) + "\n")
    name = make_function(ECHO)
    result = go(name, path, batch_size=5)
    summary = result.summary()
    assert (summary["records"], summary["rejected_records"], summary["failed_records"]) == (
        40,
        2,
        0,
    )
    errors = result.errors()
    assert errors["record"].tolist() == [10, 30]
    assert errors["error_message"].tolist() == [
        "line 12 of orders.csv has 1 field, the header has 2",
        "line 32 of orders.csv has 3 fields, the header has 2",
    ]
    outputs = list(result.outputs())
    assert outputs[10] is None and outputs[30] is None
    assert outputs[39] == {"id": 39, "amount": 39.5}
    # Lines that could not be read are no records: failed_records() gave their text ("10"),
    # which a rerun sent as a string record. They are BadLines, which a rerun rejects again.
    rest = result.failed_records()
    assert [type(r) for r in rest] == [BadLine, BadLine]
    assert [(r.text, r.reason) for r in rest] == [
        ("10", "line 12 of orders.csv has 1 field, the header has 2"),
        ("30,30.5,surplus", "line 32 of orders.csv has 3 fields, the header has 2"),
    ]
    rerun = go(name, rest, cache=False)
    assert rerun.attempts.empty and rerun.summary()["rejected_records"] == 2
    assert rerun.errors()["error_message"].tolist() == errors["error_message"].tolist()
    assert result.failed_records(unreadable=False).empty
    # A saved result keeps them as they were.
    loaded = lambdakit.RunResult.load(result.save(tmp_path / "saved"))
    assert loaded.failed_records().tolist() == rest.tolist()


# What the function's own JSON parser made of each cell: its type and its text.
TYPES = (
    "def handler(event, context):\n"
    "    return [{k: [type(v).__name__, None if v is None else str(v)] for k, v in i.items()}\n"
    "            for i in event['Items']]\n"
)


def test_csv_cells_reach_the_function_as_written(make_function, go, tmp_path):
    big = "123456789012345678901234"
    path = tmp_path / "customers.csv"
    path.write_text(f"id,zip,amount,account,note,gap\n1,007,19.90,{big},NA,\n2,10001,0.1,-3,x,y\n")
    name = make_function(TYPES)
    first, second = go(name, path).outputs()
    assert first == {
        "id": ["int", "1"],
        "zip": ["str", "007"],  # pandas sent 7
        "amount": ["float", "19.9"],  # sent as 19.90; the handler's json reads a float
        "account": ["int", big],  # pandas sent a string, or a float short of digits
        "note": ["str", "NA"],  # pandas sent null
        "gap": ["NoneType", None],
    }
    assert second["zip"] == ["int", "10001"] and second["amount"] == ["float", "0.1"]

    # decimal="string": the cell a float would change arrives as its text.
    (first, _) = go(name, path, decimal="string").outputs()
    assert first["amount"] == ["str", "19.90"] and first["account"] == ["int", big]
    # csv_types="text": every cell its string; "pandas" as pandas reads it, when asked.
    (first, _) = go(name, path, csv_types="text").outputs()
    assert {k: v[0] for k, v in first.items()} == dict.fromkeys(first, "str")
    assert first["gap"] == ["str", ""]
    result = go(name, path, csv_types="pandas")
    assert next(iter(result.outputs()))["zip"] == ["int", "7"]
    assert result.meta["params"]["csv_types"] == "pandas"


def test_csv_types_that_cannot_apply_stop_the_run_first(make_function, go, tmp_path):
    name = make_function(ECHO)
    with pytest.raises(lambdakit.InvalidInput, match=r"csv_types='text' types the cells of CSV"):
        go(name, [{"zip": "007"}], csv_types="text")
    with pytest.raises(lambdakit.InvalidInput, match=r"csv_types must be one of"):
        go(name, tmp_path, csv_types="str")


def test_a_decimal_column_round_trips_exactly(make_function, go, tmp_path):
    amounts = [Decimal("1.10"), Decimal("0.05"), Decimal("1234567890.123456789"), None]
    path = tmp_path / "money.parquet"
    pq.write_table(pa.table({"amount": pa.array(amounts, pa.decimal128(19, 9))}), path)
    expected = [None if a is None else str(a) for a in pq.read_table(path)["amount"].to_pylist()]
    assert expected[0] == "1.100000000"  # the column's scale, as Parquet stores it

    # The default: JSON numbers with every digit, as a Decimal-aware parser reads them.
    texts = make_function(DECIMAL_TEXT_BOOTSTRAP, runtime="provided.al2023")
    assert list(go(texts, path).outputs()) == expected

    # decimal="string": the text itself, which even a float-parsing function echoes intact.
    echoed = list(go(make_function(ECHO), path, decimal="string").outputs())
    assert [o["amount"] for o in echoed] == expected
    assert [Decimal(o["amount"]) for o in echoed[:3]] == amounts[:3]


def test_nan_rejects_its_record_by_default_and_nan_null_sends_null(make_function, go):
    name = make_function(ECHO)
    records = [{"i": 0, "x": 1.5}, {"i": 1, "x": float("nan")}, {"i": 2, "x": float("inf")}]
    result = go(name, records)
    assert result.summary()["rejected_records"] == 2
    assert result.errors()["error_message"].str.startswith("field 'x' is").all()
    assert result.meta["params"]["nan"] == "reject"
    result = go(name, records, nan="null", cache=False)
    assert [o["x"] for o in result.outputs()] == [1.5, None, None]
    assert result.meta["params"]["nan"] == "null"


SLOW_ECHO = """
import time

def handler(event, context):
    time.sleep(0.05)
    ids = [item["id"] for item in event["Items"]]
    failed = [{"itemIdentifier": str(p)} for p, item in enumerate(event["Items"]) if item["bad"]]
    return {"batchItemFailures": failed, "outputs": ids} if failed else ids
"""


def cancelled_run(local_lambda, name, records, tmp_path):
    handle = lambdakit.start(
        name, records, endpoint_url=local_lambda.endpoint_url, batch_size=20, concurrency=2,
        retry=1, cache=tmp_path / "cache", progress=False,
        validate=lambda record: record["id"] % 97 != 5,  # a few rejected
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while handle.progress.batches_done < 6:
        assert time.monotonic() < deadline and not handle.done, "no batch came back"
        time.sleep(0.01)
    progress = handle.progress
    handle.cancel()
    return handle.wait(timeout=60), progress


@pytest.mark.parametrize("kind", ["DataFrame", "jsonl"])
def test_after_a_cancel_every_record_of_the_source_is_accounted_for(
    kind, local_lambda, make_function, go, tmp_path
):
    # Records never read were counted nowhere: 5,000 in, "records: 2250" out.
    frame = pd.DataFrame({"id": range(3000), "bad": [i % 50 == 7 for i in range(3000)]})
    source = frame
    if kind == "jsonl":
        source = tmp_path / "records.jsonl"
        frame.to_json(source, orient="records", lines=True)
    length = len(frame) if kind == "DataFrame" else len(source.read_text().splitlines())
    name = make_function(SLOW_ECHO)
    result, progress = cancelled_run(local_lambda, name, source, tmp_path)
    assert progress.records_total == length and 140 <= progress.batches_total <= 150
    s = result.summary()
    ok = sum(output is not None for output in result.outputs())
    assert ok + s["failed_records"] + s["rejected_records"] + s["not_run_records"] == length
    assert s["records"] == length and s["failed_records"] > 0 and s["rejected_records"] > 0
    assert s["not_run_records"] > length // 2  # most of the source was never read
    assert result.meta["records_read"] < length
    # The manifest says what was read; the rest reruns exactly.
    manifest = json.loads((result.save_report(tmp_path / "report") / "manifest.json").read_text())
    expected = {"type": "pandas.DataFrame"}
    if kind == "jsonl":
        expected = {"type": "jsonl file", "path": str(source.resolve())}
    read = manifest["source"].pop("objects_read", None)
    assert manifest["source"] == {**expected, "records": length}
    if kind == "jsonl":  # where each record read came from: the file, from record 0
        assert [(o["object"], o["first_record"]) for o in read] == [(str(source.resolve()), 0)]
        assert read[0]["records"] == result.meta["records_read"]
    rest = result.failed_records(include_not_run=True)
    assert len(rest) == length - ok
    rerun = go(name, rest.tolist(), batch_size=20, concurrency=2, retry=1)
    r = rerun.summary()
    assert (r["records"], r["not_run_records"]) == (len(rest), 0)
    assert r["failed_records"] == int(frame["bad"][rest.index].sum())  # the rest, once each


# A custom runtime answering, for each item, JSON text with numbers no float or 64-bit int
# holds (as a Java or Go function with big-number types can write them).
WIDE_NUMBERS_BOOTSTRAP = f"""#!{sys.executable}
import json, os, urllib.request

api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
while True:
    with urllib.request.urlopen(api + "next") as reply:
        request_id = reply.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(reply.read())
    texts = [
        '{{"id": 1234567890123456789012345678%02d, "amount": 0.12345678901234567%02d, '
        '"price": 1.10}}' % (item["i"], item["i"])
        for item in event["Items"]
    ]
    answer = urllib.request.Request(
        api + request_id + "/response", data=("[" + ",".join(texts) + "]").encode(),
        method="POST",
    )
    urllib.request.urlopen(answer).read()
"""


def test_wide_numbers_in_replies_keep_their_digits_through_save_and_load(
    make_function, go, tmp_path
):
    # orjson read them as floats: 1234567890123456789012345678 + 5 came back as
    # 1.2345678901234568e+27 for every record, and the long fraction lost its last digits.
    name = make_function(WIDE_NUMBERS_BOOTSTRAP, runtime="provided.al2023")
    expected = [
        {
            "id": 1234567890123456789012345678 * 100 + i,
            "amount": Decimal(f"0.12345678901234567{i:02d}"),
            "price": 1.1,
        }
        for i in range(6)
    ]
    result = go(name, [{"i": i} for i in range(6)], batch_size=4)
    assert list(result.outputs()) == expected
    assert all(type(o["id"]) is int for o in result.outputs())
    assert [str(o["amount"]) for o in result.outputs()] == [str(e["amount"]) for e in expected]
    loaded = lambdakit.RunResult.load(result.save(tmp_path / "saved"))
    assert [str(o["amount"]) for o in loaded.outputs()] == [str(e["amount"]) for e in expected]
    assert list(loaded.outputs()) == expected
    cached = go(name, [{"i": i} for i in range(6)], batch_size=4)  # served from the cache
    assert cached.summary()["cached_batches"] == 2 and list(cached.outputs()) == expected


FAIL_BAD = """
def handler(event, context):
    items = event["Items"]
    failed = [{"itemIdentifier": str(p)} for p, item in enumerate(items) if item["bad"]]
    outputs = [{"i": item["i"], "amount": item["amount"]} for item in items]
    return {"batchItemFailures": failed, "outputs": outputs}
"""


def test_a_saved_and_loaded_run_gives_back_the_records_it_had(make_function, go, tmp_path):
    # RunResult.load gave a failed record's Decimal back as the string "1.10", its datetime
    # as text (a rerun sent other bytes), and a 30-digit id made the save fail.
    import datetime as dt

    records = [
        {
            "i": i,
            "amount": Decimal(f"{i}.10"),
            "when": dt.datetime(2024, 3, 1, 9, 30, i),
            "id": 10**30 + i,
            "tags": ("a", i),
            "bad": i % 3 == 0,
        }
        for i in range(12)
    ]
    name = make_function(FAIL_BAD)
    result = go(name, records, batch_size=4, validate=lambda record: record["i"] != 4)
    assert result.summary()["failed_records"] == 4 and result.summary()["rejected_records"] == 1
    loaded = lambdakit.RunResult.load(result.save(tmp_path / "saved"))
    assert list(loaded.outputs()) == list(result.outputs())
    before, after = result.failed_records(), loaded.failed_records()
    assert after.index.tolist() == before.index.tolist() == [0, 3, 4, 6, 9]
    assert after.tolist() == before.tolist() == [records[i] for i in (0, 3, 4, 6, 9)]
    assert [type(r["amount"]) for r in after] == [Decimal] * 5
    assert [type(r["when"]) for r in after] == [dt.datetime] * 5
    assert [type(r["tags"]) for r in after] == [tuple] * 5
    for table in ("failures", "rejections"):
        assert getattr(loaded, table)["input"].tolist() == getattr(result, table)["input"].tolist()
    # A rerun of the loaded result's failed records sends the very bytes the first one did.
    again = go(name, after, cache=False)
    first = go(name, before, cache=False)
    assert again.meta["dataset_fingerprint"] == first.meta["dataset_fingerprint"]
