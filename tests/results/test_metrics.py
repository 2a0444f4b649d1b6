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


def test_an_attempt_ending_on_a_bin_edge_counts_in_the_bin_it_closes():
    table = metrics.throughput(_attempts(end_s=[0.0, 1.0, 1.5, 2.0]), bin_s=1.0)
    assert table["invocations"].tolist() == [2, 2]
    assert table["records_per_s"].tolist() == [20.0, 20.0]


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


def test_error_breakdown_counts_each_class_per_window():
    run = mixed_run()
    table = metrics.error_breakdown(run.attempts, window=5)
    assert table["invocations"].sum() == len(run.attempts)
    for outcome in metrics.FAILURE_CLASSES:
        assert table[outcome].sum() == (run.attempts["outcome"] == outcome).sum()
    assert (table["window_end"] - table["window_start"] == 4).all()
    with pytest.raises(InvalidInput, match="window must be at least 1"):
        metrics.error_breakdown(run.attempts, window=0)


def test_latency_percentiles_of_nothing_are_nan():
    assert all(math.isnan(v) for v in metrics.latency_percentiles(pd.Series([], dtype=float)))
