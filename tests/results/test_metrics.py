"""metrics: bin widths, edge rules and per-window counts behind the plots."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from factories import mixed_run

from lambdakit.errors import InvalidInput
from lambdakit.results import metrics


def _attempts(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {"batch": range(n), "attempt": [1] * n, "records": [10] * n, "outcome": ["ok"] * n}
    base |= {"failed_items": [()] * n, "start_s": [0.0] * n, "end_s": [1.0] * n}
    return pd.DataFrame(base | {"latency_s": [1.0] * n} | columns)


@pytest.mark.parametrize(
    ("elapsed", "width"), [(0.0, 1.0), (3.4, 0.1), (40.0, 1.0), (100.0, 5.0), (7200.0, 300.0)]
)
def test_time_bin_width_is_a_readable_step(elapsed, width):
    assert metrics.time_bin_width(elapsed) == width


def test_an_instant_attempt_on_a_bin_edge_counts_in_the_bin_it_closes():
    ends = [0.0, 1.0, 1.5, 2.0]
    table = metrics.throughput(_attempts(start_s=ends, end_s=ends), bin_s=1.0)
    assert table["invocations"].tolist() == [2, 2]
    assert table["records_per_s"].tolist() == [20.0, 20.0]


def test_an_attempt_is_spread_over_the_bins_it_spans():
    # 0-1 s, 0-1.5 s and 0.5-2 s: 1 + 2/3 + 1/3 of an attempt in the first bin.
    attempts = _attempts(start_s=[0.0, 0.0, 0.5], end_s=[1.0, 1.5, 2.0])
    table = metrics.throughput(attempts, bin_s=1.0)
    assert table["invocations"].tolist() == pytest.approx([2.0, 1.0])
    assert table["records"].tolist() == pytest.approx([20.0, 10.0])


def test_failed_items_may_be_a_count_a_list_or_missing():
    attempts = _attempts(
        outcome=["reported_failure", "reported_failure", "ok", "function_error"],
        failed_items=[3, (1, 2), math.nan, None],
    )
    assert metrics.failed_item_counts(attempts).tolist() == [3, 2, 0, 0]
    assert metrics.ok_record_counts(attempts).tolist() == [7, 8, 10, 0]


def test_in_flight_frees_a_slot_before_reusing_it():
    steps = metrics.in_flight(_attempts(start_s=[0.0, 1.0], end_s=[1.0, 2.0]))
    assert steps["in_flight"].max() == 1 and steps["in_flight"].iloc[-1] == 0


def test_record_failures_count_records_not_attempts():
    run = mixed_run()
    table = metrics.record_failures(run.attempts, run.batches, window=5)
    assert table["records"].sum() == run.batches["records"].sum()
    assert table["failed_records"].sum() == run.summary()["failed_records"]
    assert (table["window_end"] - table["window_start"] == 4).all()
    assert (table["failed_share"] <= 1).all() and (table["retried_ok_share"] >= 0).all()
    with pytest.raises(InvalidInput, match="window must be at least 1"):
        metrics.record_failures(run.attempts, run.batches, window=0)


def test_records_that_never_ran_are_not_counted_as_ok_after_a_retry():
    # Batch 0: throttled, then ok. Batch 1: 2 items failed, their retry was cancelled.
    attempts = _attempts(
        batch=[0, 0, 1, 1],
        attempt=[1, 2, 1, 2],
        records=[10, 10, 10, 2],
        outcome=["throttle", "ok", "reported_failure", "cancelled"],
        failed_items=[(), (), (4, 7), ()],
    )
    batches = pd.DataFrame(
        {"batch": [0, 1], "records": [10, 10], "ok_records": [10, 8], "failed_records": [0, 0]}
    )
    table = metrics.record_failures(attempts, batches, window=1)
    assert table["retried_ok_records"].tolist() == [10, 0]
    assert table["failed_records"].tolist() == [0, 0]


@pytest.mark.parametrize(
    ("share", "text"),
    [(0.0, "0%"), (0.0004, "<0.1%"), (0.0125, "1.2%"), (1 / 60, "1.7%"), (0.9996, ">99.9%"),
     (1.0, "100%")],
)  # fmt: skip
def test_a_share_never_rounds_a_failure_away(share, text):
    assert metrics.percent(share) == text


def test_share_text_says_part_whole_and_percent():
    assert metrics.share_text(5, 300) == "5 of 300 (1.7%)"
    assert metrics.share_text(0, 0, "invocations") == "0 of 0 invocations (0%)"


def test_latency_percentiles_of_nothing_are_nan():
    assert all(math.isnan(v) for v in metrics.latency_percentiles(pd.Series([], dtype=float)))
