"""RunRecord: the rows a run's facts become."""

from __future__ import annotations

from lambdakit.batching import Batch
from lambdakit.invoke import Outcome
from lambdakit.outputs import OutputStore
from lambdakit.record import RunRecord
from lambdakit.retry import REPORTED_FAILURE


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
