"""RunRecord: the rows a run's facts become."""

from __future__ import annotations

from lambdakit.engine.record import RunRecord
from lambdakit.invocation import REPORTED_FAILURE, Batch, Outcome
from lambdakit.results.outputs import OutputStore


def test_each_failed_record_is_explained_by_its_own_reason(tmp_path):
    # The batch's message names only the first item's reason; every failed record used to get
    # it, so orders with a zero quantity were reported as having an unknown currency.
    items = [{"id": "a"}, {"id": "b"}, {"id": "c"}]
    batch = Batch(index=4, record_indices=(10, 11, 12), items=items, body=b"{}")
    outcome = Outcome(
        REPORTED_FAILURE,
        error_type="BatchItemFailures",
        error_message="2 of 3 items reported failed: a: unknown currency",
        failed_items=(0, 2),
        item_errors={0: "a: unknown currency"},
    )
    record = RunRecord(OutputStore(tmp_path / "outputs"))
    for position in outcome.failed_items:
        record.add_failure(batch, position, outcome)
    result = record.build(records=13, meta={})
    errors = result.errors().set_index("record")
    assert errors.loc[10, "error_message"] == "a: unknown currency"
    # An item the function gave no reason for keeps the attempt's message.
    assert errors.loc[12, "error_message"] == outcome.error_message
    assert (errors["batch"] == 4).all() and (errors["error_type"] == "BatchItemFailures").all()


def test_tables_follow_the_documented_dtypes_and_keep_missing_text_as_none(tmp_path):
    from lambdakit.engine.record import Attempt, BatchState
    from lambdakit.invocation import OK, Report
    from lambdakit.results.tables import ATTEMPT_COLUMNS, BATCH_COLUMNS

    record = RunRecord(OutputStore(tmp_path / "outputs"))
    for index in (1, 0):  # batches finish out of order; the table is in batch order
        batch = Batch(index=index, record_indices=(index,), items=[{"i": index}], body=b"{}")
        ok = Outcome(OK, http_status=200, executed_version="3", report=Report(1.5, 2.0, 128))
        done = Attempt(None, 0, 4, 0, 1_700_000_000.0, 0.1, 0.3, 1_700_000_000.2, ok, attempt=1)
        record.add_attempt(batch, done, ok)
        state = BatchState(batch, attempts=1, ok=1, start_s=0.1, end_s=0.3, latency_s=0.2)
        state.versions.add("3")
        record.add_batch(state, status="ok")
    result = record.build(records=2, meta={})
    attempts, batches = result.attempts, result.batches
    numeric = {"int64", "float64", "bool", "datetime64[ns, UTC]"}
    for frame, schema in ((attempts, ATTEMPT_COLUMNS), (batches, BATCH_COLUMNS)):
        assert list(frame.columns) == list(schema)
        for column, dtype in schema.items():
            if dtype in numeric:
                assert str(frame[column].dtype) == dtype, column
    assert attempts.loc[0, "started_at"].year == 2023
    assert attempts.loc[0, "duration_ms"] == 1.5 and attempts["max_memory_used_mb"].isna().all()
    assert attempts.loc[0, "error_type"] is None  # not NaN: text columns keep None
    assert batches["batch"].tolist() == [0, 1]
