"""compare(): side-by-side summaries and overlaid latency/throughput figures."""

from __future__ import annotations

import numpy as np
import pytest
from factories import make_run, mixed_run

import lambdakit
from lambdakit.errors import InvalidInput
from lambdakit.results import metrics


def _completed(row) -> int:
    failed = len(row.failed_items)
    if row.outcome == "ok" or (row.outcome == "reported_failure" and failed):
        return row.records - failed
    return 0


def test_compare_puts_summaries_side_by_side_and_overlays_lines():
    live, beta = mixed_run(seed=1), make_run(records=60, batch_size=20, seed=2)
    table, latency, throughput = lambdakit.compare(live, beta, labels=["live", "beta"])
    assert list(table.columns) == ["live", "beta"]
    assert table["live"].to_dict() == live.summary()
    assert table["beta"].to_dict() == beta.summary()

    lines = {ln.get_label().split(" (")[0]: ln for ln in latency.axes[0].get_lines()}
    assert set(lines) == {"live", "beta"}
    np.testing.assert_allclose(lines["beta"].get_xdata(), np.sort(beta.attempts["latency_s"]))

    tp = {ln.get_label(): ln for ln in throughput.axes[0].get_lines()}
    # Both runs share one bin width: the one that suits the longer run, and no shorter
    # than the slower run's median latency.
    longest = max(live.attempts["end_s"].max(), beta.attempts["end_s"].max())
    slowest = max(live.attempts["latency_s"].median(), beta.attempts["latency_s"].median())
    width = metrics.time_bin_width(longest, min_width_s=slowest)
    assert width >= slowest
    for name, run in (("live", live), ("beta", beta)):
        completed = sum(_completed(row) for row in run.attempts.itertuples())
        assert sum(tp[name].get_ydata()) * width == pytest.approx(completed)
    assert f"({width:g} s bins)" in throughput.axes[0].get_title()


def test_default_labels_are_distinct():
    first, second = mixed_run(seed=1), mixed_run(seed=2)
    assert list(lambdakit.compare(first, second).summary.columns) == [
        "enrich:live #1",
        "enrich:live #2",
    ]
    other = make_run(records=10, meta={"function": "score", "qualifier": None})
    assert list(lambdakit.compare(first, other).summary.columns) == ["enrich:live", "score"]


def test_compare_handles_runs_with_no_invocations():
    cached = make_run(records=20, cached=(0, 1))
    comparison = lambdakit.compare(cached, labels=["cached"])
    assert comparison.summary["cached"]["invocations"] == 0
    notes = [t.get_text() for t in comparison.latency.axes[0].texts]
    assert any(n.startswith("no invocations") for n in notes)


def test_bad_arguments_are_named():
    run = make_run(records=10)
    with pytest.raises(InvalidInput, match="at least one RunResult"):
        lambdakit.compare()
    with pytest.raises(InvalidInput, match="2 results but 1 labels"):
        lambdakit.compare(run, run, labels=["a"])
    with pytest.raises(InvalidInput, match="labels must be distinct"):
        lambdakit.compare(run, run, labels=["a", "a"])
    with pytest.raises(InvalidInput, match="argument 2 is"):
        lambdakit.compare(run, run.summary())
