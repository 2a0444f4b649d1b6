"""RunResult: summary figures, outputs, errors, failed records, save/load and reprs."""

from __future__ import annotations

import datetime as dt
import math
import pickle
import re
import zoneinfo
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from factories import make_run, mixed_run, record_input, record_output

from lambdakit.errors import InvalidInput
from lambdakit.records.encoding import JsonNumber
from lambdakit.records.formats import BadLine
from lambdakit.results.outputs import OutputStore
from lambdakit.results.result import RunResult
from lambdakit.results.tables import SUMMARY_KEYS

# The exact keys docs/architecture.md promises.
DOCUMENTED_KEYS = [
    "records",
    "batches",
    "ok_batches",
    "partial_batches",
    "failed_batches",
    "cached_batches",
    "cancelled_batches",
    "not_run_batches",
    "ok_records",
    "rejected_records",
    "failed_records",
    "not_run_records",
    "failed_record_rate",
    "invocations",
    "retries",
    "throttles",
    "ladder_batches",
    "failed_attempt_rate",
    "elapsed_s",
    "records_per_s",
    "invocations_per_s",
    "latency_p50_s",
    "latency_p95_s",
    "latency_p99_s",
]


@pytest.fixture(scope="module")
def run() -> RunResult:
    return mixed_run()


def test_summary_has_exactly_the_documented_keys(run):
    assert list(run.summary()) == DOCUMENTED_KEYS == list(SUMMARY_KEYS)


def test_summary_figures_match_the_tables(run):
    s = run.summary()
    a, b = run.attempts, run.batches
    assert s["records"] == 120  # every input record, rejected ones included
    assert s["rejected_records"] == len(run.rejections) == 3
    assert s["batches"] == len(b)
    assert s["ok_batches"] == sum(status == "ok" for status in b["status"])
    assert s["partial_batches"] == sum(status == "partial" for status in b["status"]) == 1
    assert s["failed_batches"] == sum(status == "failed" for status in b["status"]) == 1
    assert s["cached_batches"] == int(b["cached"].sum())
    assert s["cancelled_batches"] == s["not_run_batches"] == 0
    assert s["failed_records"] == len(set(run.failures["record"])) == b["failed_records"].sum()
    assert s["invocations"] == len(a)
    assert s["retries"] == len(a) - a[a["attempt"] == 1].shape[0]
    assert s["throttles"] == sum(o == "throttle" for o in a["outcome"])
    assert s["elapsed_s"] == run.meta["elapsed_s"]
    assert s["records_per_s"] == pytest.approx(120 / run.meta["elapsed_s"])
    assert s["invocations_per_s"] == pytest.approx(len(a) / run.meta["elapsed_s"])
    latencies = sorted(a["latency_s"])
    assert s["latency_p50_s"] == pytest.approx(np.median(latencies))
    assert s["latency_p99_s"] == pytest.approx(np.percentile(latencies, 99))
    assert s["latency_p95_s"] <= s["latency_p99_s"] <= max(latencies)
    failed_attempts = sum(o != "ok" for o in a["outcome"])
    assert s["failed_attempt_rate"] == pytest.approx(failed_attempts / len(a))
    # The headline is record-level: 11 of 120 records, though 11 of 20 attempts failed.
    assert s["failed_record_rate"] == pytest.approx(len(set(run.failures["record"])) / 120)
    # Every record is accounted for exactly once.
    ok = sum(1 for value in run.outputs() if value is not None)
    assert ok + s["failed_records"] + s["rejected_records"] == s["records"]


def test_outputs_are_in_input_order_with_none_for_failed_and_rejected(run):
    outputs = list(run.outputs())
    assert len(outputs) == run.records
    gone = set(run.failures["record"]) | set(run.rejections["record"])
    for index, value in enumerate(outputs):
        assert value == (None if index in gone else record_output(index)), index


def test_errors_list_failed_and_rejected_records_with_log_excerpts(run):
    errors = run.errors()
    assert list(errors.columns) == ["record", "batch", "error_type", "error_message", "log_excerpt"]
    expected = sorted([*run.failures["record"], *run.rejections["record"]])
    assert errors["record"].tolist() == expected
    rejected = errors[errors["error_type"] == "Rejected"]
    assert rejected["record"].tolist() == sorted(run.rejections["record"])
    assert rejected["batch"].isna().all()
    assert rejected["error_message"].tolist() == run.rejections["reason"].tolist()
    failed = errors[errors["error_type"] != "Rejected"].set_index("record")
    for row in run.failures.itertuples():
        assert failed.loc[row.record, "batch"] == row.batch
        assert failed.loc[row.record, "error_type"] == row.error_type
    traced = failed[failed["error_type"] == "ValueError"]["log_excerpt"]
    assert len(traced) and all("ValueError: bad value" in text for text in traced)
    # The excerpt drops Lambda's START/END/REPORT bookkeeping.
    assert not any("REPORT RequestId" in (text or "") for text in errors["log_excerpt"])


def test_failed_records_give_the_inputs_to_rerun(run):
    rerun = run.failed_records()
    expected = sorted({*run.failures["record"], *run.rejections["record"]})
    assert rerun.index.tolist() == expected
    assert rerun.tolist() == [record_input(i) for i in expected]


def test_save_and_load_round_trip_exactly(run, tmp_path):
    folder = run.save(tmp_path / "run")
    loaded = RunResult.load(folder)
    for name in ("attempts", "batches", "failures", "rejections"):
        pd.testing.assert_frame_equal(getattr(loaded, name), getattr(run, name), check_exact=True)
    assert loaded.meta == run.meta
    assert list(loaded.outputs()) == list(run.outputs())
    assert loaded.summary() == run.summary()
    assert repr(loaded) == repr(run)
    # failed_items tuples survive Parquet as tuples.
    assert loaded.attempts["failed_items"].map(type).eq(tuple).all()
    # Saving a loaded result again, in place, keeps it intact.
    assert RunResult.load(loaded.save(folder)).summary() == run.summary()


def test_save_refuses_a_folder_holding_something_else(run, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInput, match="not a saved RunResult"):
        run.save(tmp_path)
    with pytest.raises(InvalidInput, match="not a saved RunResult"):
        RunResult.load(tmp_path)


def test_save_onto_a_file_is_refused_by_name(run, tmp_path):
    # Used to escape as a raw NotADirectoryError from pathlib.
    (tmp_path / "result.txt").write_text("mine")
    with pytest.raises(InvalidInput, match=r"result\.txt is a file"):
        run.save(tmp_path / "result.txt")
    assert (tmp_path / "result.txt").read_text() == "mine"


def test_save_never_writes_credentials(tmp_path):
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    result = make_run(records=10, meta={"params": {"aws_secret_access_key": secret, "n": 1}})
    folder = result.save(tmp_path / "run")
    assert secret not in (folder / "meta.json").read_text()
    assert RunResult.load(folder).meta["params"]["n"] == 1


def test_pickled_result_keeps_its_outputs(run):
    copy = pickle.loads(pickle.dumps(run))
    assert list(copy.outputs()) == list(run.outputs())
    pd.testing.assert_frame_equal(copy.attempts, run.attempts)


def test_repr_is_stable_across_identical_runs():
    # Different seeds: different timings, latencies and request ids, same outcomes.
    first, second = mixed_run(seed=1), mixed_run(seed=2)
    assert not first.attempts["latency_s"].equals(second.attempts["latency_s"])
    assert repr(first) == repr(second)
    text = repr(first)
    assert "req-" not in text and "2026" not in text and " s" not in text
    s = first.summary()
    ok = s["records"] - s["failed_records"] - s["rejected_records"]
    assert f"records: 120 (ok {ok}, failed {s['failed_records']}, rejected 3)" in text
    assert "enrich:live" in text


def test_repr_names_records_a_cancelled_run_never_ran():
    result = make_run(records=30, meta={"cancelled": True})
    result.batches.loc[2, ["status", "ok_records"]] = ["cancelled", 0]
    text = repr(result)
    assert "not run 10" in text and "cancelled 1" in text and "stopped (cancelled) before" in text


def test_html_card_shows_counts_latency_errors_cache_and_cost(run):
    card = run._repr_html_()
    s = run.summary()
    assert f"{s['invocations']:,} · retries {s['retries']:,}" in card
    assert f"p50 {s['latency_p50_s']:,.3g} s" in card
    assert "function_error 3" in card and "throttle 3" in card
    assert f"{s['cached_batches']} of {s['batches']} batches" in card
    assert f"${run.cost()['usd']:.6f}" in card


def test_html_card_renders_for_an_unpriced_region():
    result = make_run(records=10, meta={"function_arn": "arn:aws:lambda:xx-moon-1:1:function:f"})
    assert "n/a (no built-in prices for region xx-moon-1)" in result._repr_html_()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"records": 0},
        {"records": 30, "cached": (0, 1, 2)},
        {"records": 20, "rejected": range(20)},
    ],
    ids=["no-records", "all-cached", "all-rejected"],
)
def test_empty_runs_summarise_without_dividing_by_zero(kwargs):
    result = make_run(**kwargs)
    s = result.summary()
    assert s["invocations"] == 0 and s["failed_attempt_rate"] == 0.0 and s["retries"] == 0
    assert s["failed_record_rate"] == 0.0
    assert all(math.isnan(s[k]) for k in ("latency_p50_s", "latency_p95_s", "latency_p99_s"))
    assert s["records"] == kwargs["records"]
    assert len(list(result.outputs())) == kwargs["records"]
    assert "RunResult" in repr(result) and "<table>" in result._repr_html_()
    assert result.errors()["record"].tolist() == sorted(result.rejections["record"])


def test_empty_tables_get_the_documented_schema():
    from lambdakit.results.outputs import OutputStore
    from lambdakit.results.tables import ATTEMPT_COLUMNS, BATCH_COLUMNS

    result = RunResult(
        attempts=pd.DataFrame(),
        batches=pd.DataFrame(),
        failures=pd.DataFrame(),
        rejections=pd.DataFrame(),
        outputs=OutputStore(),
        records=0,
        meta={},
    )
    assert list(result.attempts.columns) == list(ATTEMPT_COLUMNS)
    assert list(result.batches.columns) == list(BATCH_COLUMNS)
    assert result.summary()["elapsed_s"] == 0.0
    assert repr(result).startswith("RunResult ? (executed versions: none)")


def test_a_table_missing_documented_columns_is_refused(run):
    with pytest.raises(InvalidInput, match=r"attempts lacks the columns \['log_tail'\]"):
        RunResult(
            attempts=run.attempts.drop(columns="log_tail"),
            batches=run.batches,
            failures=run.failures,
            rejections=run.rejections,
            outputs=run.store,
            records=run.records,
            meta=run.meta,
        )


HANDLER = """
def handler(event, context):
    items = event["Items"]
    if any(item.get("boom") for item in items):
        raise ValueError("boom in batch")
    return [{"y": item["x"] * 2} for item in items]
"""


def test_a_real_run_reads_back_exactly(lambda_client, make_function, tmp_path):
    """The runner's tables, from real boto3 against lambdakit local, fit every reader."""
    from matplotlib.colors import to_rgba

    import lambdakit
    from lambdakit.results import plots

    name = make_function({"app.py": HANDLER})
    records = [{"x": i, "boom": i == 17} for i in range(60)] + [{"x": -1}]

    def check(record):
        if record["x"] < 0:
            raise ValueError("x must be >= 0")

    result = lambdakit.run(
        name,
        records,
        client=lambda_client,
        batch_size=10,
        concurrency=3,
        cache=False,
        validate=check,
        retry={"max_attempts": 2, "base_delay": 0.01},
        progress=False,
    )
    s = result.summary()
    assert (s["records"], s["rejected_records"], s["failed_records"]) == (61, 1, 10)
    assert s["invocations"] == len(result.attempts) == 7 and s["retries"] == 1
    assert s["failed_attempt_rate"] == pytest.approx(2 / 7)
    assert s["failed_record_rate"] == pytest.approx(10 / 61)
    outputs = list(result.outputs())
    assert outputs[:3] == [{"y": 0}, {"y": 2}, {"y": 4}]
    assert outputs[10:20] == [None] * 10 and outputs[60] is None
    assert result.errors()["record"].tolist() == [*range(10, 20), 60]
    assert result.failed_records().tolist() == [*records[10:20], records[60]]

    loaded = RunResult.load(result.save(tmp_path / "run"))
    for table in ("attempts", "batches", "failures", "rejections"):
        pd.testing.assert_frame_equal(getattr(loaded, table), getattr(result, table))
    assert loaded.meta == result.meta and list(loaded.outputs()) == outputs

    timeline = plots.timeline(result)
    (bars,) = timeline.axes[0].containers
    assert len(bars.patches) == 7
    colours = [to_rgba(p.get_facecolor()) for p in bars.patches]
    assert colours.count(to_rgba(plots.OUTCOME_COLORS["function_error"])) == 2
    assert colours.count(to_rgba(plots.OUTCOME_COLORS["ok"])) == 5
    assert "2 failed" in timeline.axes[0].get_title()
    folder = result.save_report(tmp_path / "report")
    assert (folder / "dashboard.png").read_bytes()[:4] == b"\x89PNG"


def _batch_words(line: str) -> dict[str, int]:
    """ "ok 9, partial 1" or "ok 9 · partial 1" -> {"ok": 9, "partial": 1}."""
    pairs = re.findall(r"([a-z_]+) ([\d,]+)", line)
    return {word: int(n.replace(",", "")) for word, n in pairs}


def test_every_view_counts_batches_in_one_vocabulary():
    from lambdakit.invocation import BATCH_STATUSES

    result = mixed_run(meta={"cancelled": True, "stop_reason": "outage"})
    # One batch the run stopped before, one the outage left not run.
    result.batches.loc[0, ["status", "ok_records"]] = ["cancelled", 0]
    result.batches.loc[11, ["status", "ok_records"]] = ["not_run", 0]
    table = result.batches["status"].value_counts().to_dict()
    assert set(table) == set(BATCH_STATUSES)  # every status present at least once
    expected = {status: int(table[status]) for status in BATCH_STATUSES}

    assert result.batch_counts() == expected
    s = result.summary()
    assert {status: s[f"{status}_batches"] for status in BATCH_STATUSES} == expected
    (line,) = [ln for ln in repr(result).splitlines() if ln.strip().startswith("batches:")]
    assert _batch_words(line.split("(", 1)[1]) == expected
    card = result._repr_html_()
    (row,) = re.findall(r"<th[^>]*>batches</th><td>(.*?)</td>", card)
    assert _batch_words(row.split("·", 1)[1]) == expected
    # The same batches are never "partial" in one view and "failed" in another.
    assert s["failed_batches"] == expected["failed"] and s["partial_batches"] == expected["partial"]


def test_every_view_heads_with_failed_records_over_records(run):
    s = run.summary()
    headline = f"{s['failed_records']} of {s['records']} ({s['failed_record_rate']:.1%})"
    assert s["failed_records"] == 11 and s["records"] == 120 and headline == "11 of 120 (9.2%)"
    assert f"  failed records: {headline}" in repr(run).splitlines()
    assert re.search(
        rf"failed records</th><td><span[^>]*>{re.escape(headline)}<", run._repr_html_()
    )
    # The attempt-level rate is there too, under a name that says so.
    assert "failed attempts</th><td>11 of 20 invocations (55.0%)" in run._repr_html_()
    quiet = make_run(records=30)
    assert "failed records: 0 of 30 (0%)" in repr(quiet)
    assert "failed records</th><td>0 of 30 (0%)</td>" in quiet._repr_html_()  # not in red


def _same(a, b):
    """Equal, with the same types all the way down (NaN equal to NaN)."""
    if a is b:  # pd.NaT and pd.NA equal nothing, not even themselves
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(
            _same(k, j) and _same(a[k], b[j]) for k, j in zip(a, b, strict=True)
        )
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if isinstance(a, (dt.datetime, dt.time)):
        return a == b and str(a.tzinfo) == str(b.tzinfo)
    if isinstance(a, Decimal):
        return str(a) == str(b)
    return a == b


# What a run's records may hold (and failed_records() gives back), each a different kind of
# value: Parquet tables hold them as JSON, which said Decimal("1.10") as "1.10" and lost
# the rest too (a datetime became its text, a tuple a list, NaN null) or failed the save.
ODD_INPUTS = [
    {"amount": Decimal("1.10"), "big": 10**30, "exact": JsonNumber("0.1234567890123456789")},
    {"when": dt.datetime(2024, 3, 1, 9, 30, 0, 5), "day": dt.date(2024, 3, 1)},
    {"zoned": dt.datetime(2024, 3, 1, 9, 30, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))},
    {"stamp": pd.Timestamp("2024-03-01 09:30:00.000000001", tz="America/New_York")},
    {"naive_stamp": pd.Timestamp("2024-03-01 09:30:00.000000007"), "span": dt.timedelta(1, 2)},
    {"pair": (1, "a"), "tags": {"b", "a"}, "frozen": frozenset({1}), "t": dt.time(9, 30)},
    {"nan": float("nan"), "inf": float("-inf"), "nat": pd.NaT, "na": pd.NA, "none": None},
    {
        "np": np.int64(7),
        "f32": np.float32(1.5),
        "when64": np.datetime64("2024-03-01T09:30:00.000000001"),
    },
    {"array": np.array([1.5, 2.5]), "bytes": b"\x00\xff", 1: "int key", "$tuple": "a $ key"},
    "a plain string record",
    [Decimal("2.50"), {"nested": [Decimal("0.1"), 2**70]}],
    {"pd_span": pd.Timedelta(1, "ns"), "dec_nan": Decimal("NaN")},
]


def test_saved_inputs_load_back_as_the_values_the_run_had(tmp_path):
    run = make_run(records=len(ODD_INPUTS), batch_size=4)
    n = len(ODD_INPUTS)
    half = n // 2
    failures = run.failures.iloc[:0].reindex(range(half)).assign(
        record=range(half), batch=0, error_type="E", error_message="m", log_tail=None,
        input=pd.Series(ODD_INPUTS[:half], dtype=object),
    )  # fmt: skip
    rejections = pd.DataFrame(
        {
            "record": range(half, n),
            "reason": "r",
            "input": pd.Series(ODD_INPUTS[half:], dtype=object),
        }
    )
    not_run = pd.DataFrame(
        {"record": range(n), "batch": 0, "input": pd.Series(ODD_INPUTS, dtype=object)}
    )
    odd = RunResult(
        attempts=run.attempts, batches=run.batches, failures=failures, rejections=rejections,
        outputs=run.store, records=n, meta=run.meta, not_run=not_run,
    )  # fmt: skip
    loaded = RunResult.load(odd.save(tmp_path / "odd"))
    for name in ("failures", "rejections", "not_run"):
        for before, after in zip(
            getattr(odd, name)["input"], getattr(loaded, name)["input"], strict=True
        ):
            assert _same(before, after), (name, before, after)
    assert _same(loaded.failed_records().tolist(), odd.failed_records().tolist())


def test_lines_never_read_that_are_not_json_stay_bad_lines(tmp_path):
    # failed_records(include_not_run=True) read the rest of the file again and gave a broken
    # line as its text, which a rerun would have sent as a string record.
    path = tmp_path / "records.jsonl"
    path.write_text('{"i": 0}\n{"i": 1}\n{"i": 2}\n{"i": 3, oops\n')
    run = make_run(records=4, batch_size=2)
    meta = {**run.meta, "records_read": 2, "source": {"type": "jsonl", "path": str(path)}}
    stopped = RunResult(
        attempts=run.attempts.iloc[:0], batches=run.batches.iloc[:0],
        failures=run.failures.iloc[:0], rejections=run.rejections.iloc[:0],
        outputs=OutputStore(), records=4, meta=meta,
    )  # fmt: skip
    rest = stopped.failed_records(include_not_run=True)
    assert rest.index.tolist() == [2, 3] and rest.loc[2] == {"i": 2}
    bad = rest.loc[3]
    assert isinstance(bad, BadLine) and bad.text == '{"i": 3, oops'
    assert bad.reason.startswith("line 4 of records.jsonl is not JSON")
    assert "line 4 of records.jsonl is not JSON" in repr(bad)
    assert stopped.failed_records(include_not_run=True, unreadable=False).index.tolist() == [2]
