"""Totals that add up: a stopped run counts the records it never read as not run.

Driven by a fake Invoker (no Lambda, no real sleeping); the end-to-end cancel against
`lambdakit local` is in test_runner_records.py.
"""

import threading

import orjson
import pandas as pd
import pytest

from lambdakit.engine.runner import start
from lambdakit.errors import InvalidInput
from lambdakit.invocation import (
    CLIENT_ERROR,
    OK,
    PAYLOAD_TOO_LARGE,
    REPORTED_FAILURE,
    Outcome,
    Target,
)
from lambdakit.results.result import RunResult

TARGET = Target(
    function_name="fake",
    function_arn="arn:aws:lambda:us-east-1:123456789012:function:fake",
    qualifier=None,
    versions={"$LATEST": 1.0},
    cache_tokens={"$LATEST": "$LATEST@code:cfg"},
    timeout_s=3,
    memory_mb=128,
)


class GatedInvoker:
    """Echoes each item's "i"; blocks on `gate` at the batch holding `stall_at`; reports the
    items whose "i" is in `failing` as failed (batchItemFailures)."""

    target = TARGET

    def __init__(self, stall_at, failing=()):
        self.stall_at, self.failing = stall_at, set(failing)
        self.gate, self.stalled = threading.Event(), threading.Event()

    def invoke(self, batch):
        items = orjson.loads(batch.body)["Items"]
        ids = [item["i"] for item in items]
        if self.stall_at in ids:
            self.stalled.set()
            self.gate.wait(10)
        failed = tuple(p for p, i in enumerate(ids) if i in self.failing)
        if failed:
            return Outcome(REPORTED_FAILURE, outputs=ids, failed_items=failed)
        return Outcome(OK, outputs=ids)


def run_until_cancelled(records, invoker, **options):
    options = {"batch_size": 10, "concurrency": 1, "progress": False, "cache": False, **options}
    handle = start(None, records, invoker=invoker, grace_s=0.0, **options)
    assert invoker.stalled.wait(10)
    progress = handle.progress
    handle.cancel(now=True)  # the stalled invocation is abandoned, not waited for
    try:
        return handle.wait(timeout=30), progress
    finally:
        invoker.gate.set()


def accounted(result):
    s = result.summary()
    ok = int(result.batches["ok_records"].sum())
    return ok + s["failed_records"] + s["rejected_records"] + s["not_run_records"]


@pytest.mark.parametrize("kind", ["DataFrame", "list", "jsonl", "csv", "parquet"])
def test_records_never_read_count_as_not_run(kind, tmp_path):
    frame = pd.DataFrame({"i": range(1000), "x": [i / 2 for i in range(1000)]})
    frame.loc[3, "x"] = float("nan")  # rejected: its record is never sent
    source = {
        "DataFrame": lambda: frame,
        "list": lambda: frame.to_dict("records"),
    }.get(kind)
    if source is None:
        path = tmp_path / f"records.{kind}"
        if kind == "jsonl":
            path.write_text(
                "".join(orjson.dumps(r).decode() + "\n" for r in frame.to_dict("records"))
            )
            path.write_text(path.read_text().replace('"x":null', '"x":"bad"'))
        elif kind == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path)
        source = lambda: path  # noqa: E731
    validate = None if kind != "jsonl" else (lambda r: r["x"] != "bad")
    result, progress = run_until_cancelled(
        source(), GatedInvoker(stall_at=55, failing={12}), validate=validate, retry=1
    )
    s = result.summary()
    # It used to be the records read (about 60), with the 940 never read counted nowhere.
    assert s["records"] == 1000 == accounted(result)
    parts = ("ok_records", "failed_records", "rejected_records", "not_run_records")
    assert sum(s[key] for key in parts) == 1000
    assert s["failed_records"] == 1 and s["not_run_records"] > 900
    # pandas writes a NaN to CSV and Parquet as a missing value, which is null: not rejected.
    rejected = [3] if kind in ("DataFrame", "list", "jsonl") else []
    assert s["rejected_records"] == len(rejected)
    assert result.meta["records_read"] < 100
    assert result.meta["source"]["records"] == 1000
    assert progress.records_total == 1000 and progress.batches_total is not None
    # A rerun takes exactly what is left: every record not ok, in input order.
    outputs = list(result.outputs())
    assert len(outputs) == 1000
    ok = {i for i, output in enumerate(outputs) if output is not None}
    rest = result.failed_records(include_not_run=True)
    assert rest.index.tolist() == sorted(set(range(1000)) - ok)
    assert rest.loc[999] == {"i": 999, "x": 499.5}
    assert result.failed_records().index.tolist() == [*rejected, 12]


def test_a_partly_done_batch_leaves_exactly_its_unfinished_records_not_run():
    # Batch 1 (records 10-19) is too large and bisected: its first half is ok, its second
    # half is still running when the run stops waiting. Only that half did not run.
    class Bisected(GatedInvoker):
        def invoke(self, batch):
            ids = [item["i"] for item in orjson.loads(batch.body)["Items"]]
            if len(ids) == 10 and ids[0] == 10:
                return Outcome(CLIENT_ERROR, http_status=413, error_type=PAYLOAD_TOO_LARGE)
            return super().invoke(batch)

    invoker = Bisected(stall_at=15)
    result, _ = run_until_cancelled([{"i": i} for i in range(40)], invoker)
    batch1 = result.batches.set_index("batch").loc[1]
    assert (batch1["status"], batch1["ok_records"], batch1["failed_records"]) == ("cancelled", 5, 0)
    assert result.not_run["record"].tolist()[:5] == [15, 16, 17, 18, 19]
    assert result.not_run.loc[0, "input"] == {"i": 15}
    assert accounted(result) == 40 == result.summary()["records"]
    rest = result.failed_records(include_not_run=True).index.tolist()
    assert rest == [r for r in range(40) if r >= 15]  # 10-14 ok; the rest read or not


def test_a_generator_of_unknown_length_counts_what_was_read():
    invoker = GatedInvoker(stall_at=25)
    result, progress = run_until_cancelled(({"i": i} for i in range(1000)), invoker)
    assert progress.records_total is None and progress.batches_total is None
    s = result.summary()
    assert s["records"] == result.meta["records_read"] == accounted(result) < 1000
    assert result.meta["source"] == {"type": "generator", "records": None}


def test_a_finished_run_knows_its_batches_exactly():
    invoker = GatedInvoker(stall_at=-1)
    invoker.stalled.set()
    handle = start(None, [{"i": i} for i in range(95)], invoker=invoker, batch_size=10,
                   progress=False, cache=False)  # fmt: skip
    result = handle.wait(timeout=30)
    assert handle.progress.batches_total == 10 == result.summary()["batches"]
    assert result.summary()["not_run_records"] == 0


def test_not_run_records_survive_save_and_load(tmp_path):
    frame = pd.DataFrame({"i": range(200)})
    result, _ = run_until_cancelled(frame, GatedInvoker(stall_at=35))
    loaded = RunResult.load(result.save(tmp_path / "saved"))
    pd.testing.assert_frame_equal(loaded.not_run, result.not_run)
    assert loaded.summary() == result.summary()
    # The DataFrame stayed in memory: a loaded result cannot read its unread records.
    with pytest.raises(InvalidInput, match=r"never read from the source \(pandas.DataFrame\)"):
        loaded.failed_records(include_not_run=True)
    loaded.source = frame
    assert loaded.failed_records(include_not_run=True).equals(
        result.failed_records(include_not_run=True)
    )
