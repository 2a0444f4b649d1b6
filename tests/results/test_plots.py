"""Plots: the data behind each artist equals figures computed independently from .attempts."""

from __future__ import annotations

import math
import struct
import subprocess
import sys
from collections import Counter, defaultdict

import numpy as np
import pandas as pd
import pytest
from factories import make_run, mixed_run
from matplotlib.colors import to_rgba
from matplotlib.container import BarContainer
from matplotlib.figure import Figure

from lambdakit.errors import InvalidInput
from lambdakit.results import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ALL_PLOTS = [
    plots.throughput,
    plots.latency,
    plots.latency_distribution,
    plots.errors,
    plots.timeline,
    plots.concurrency,
    plots.cost,
    plots.dashboard,
]


@pytest.fixture(scope="module")
def run():
    return mixed_run()


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _line(figure: Figure, label: str):
    found = [ln for ax in figure.axes for ln in ax.get_lines() if ln.get_label() == label]
    assert len(found) == 1, [ln.get_label() for ax in figure.axes for ln in ax.get_lines()]
    return found[0]


def _completed(row) -> int:
    """Records an attempt completed, worked out from the row alone."""
    failed = len(row.failed_items)
    if row.outcome == "ok" or (row.outcome == "reported_failure" and failed):
        return row.records - failed
    return 0


@pytest.mark.parametrize("bin_s", [0.25, None])
def test_throughput_lines_equal_rates_computed_from_attempts(run, bin_s):
    figure = plots.throughput(run, bin_s=bin_s)
    records_line = _line(figure, "records/s")
    calls_line = _line(figure, "invocations/s")
    x = records_line.get_xdata()
    width = bin_s if bin_s is not None else float(x[1] - x[0])
    n_bins = len(x)
    records, calls = defaultdict(float), defaultdict(float)
    for row in run.attempts.itertuples():
        # Each attempt counts in every bin it spans, in proportion to the time it spent there.
        for k in range(n_bins):
            overlap = min(row.end_s, (k + 1) * width) - max(row.start_s, k * width)
            share = max(overlap, 0.0) / (row.end_s - row.start_s)
            records[k] += _completed(row) * share
            calls[k] += share
    last = run.attempts["end_s"].max()
    if bin_s is None:
        # Automatic bins: never shorter than the median latency, tiling the run to its end.
        assert width >= run.attempts["latency_s"].median()
        assert n_bins * width == pytest.approx(last)
    else:
        assert n_bins == math.ceil(last / width)
    np.testing.assert_allclose(x, (np.arange(n_bins) + 0.5) * width)
    np.testing.assert_allclose(
        records_line.get_ydata(), [records[k] / width for k in range(n_bins)], atol=1e-9
    )
    np.testing.assert_allclose(
        calls_line.get_ydata(), [calls[k] / width for k in range(n_bins)], atol=1e-9
    )
    # Everything delivered is somewhere on the line.
    delivered = sum(_completed(r) for r in run.attempts.itertuples())
    assert sum(records_line.get_ydata()) * width == pytest.approx(delivered)


def test_a_steady_run_reads_steady_without_a_saw_tooth():
    # 4 slots, 1 s per attempt, back to back for 60 s: ends arrive in waves once a second.
    n = 240
    attempts = pd.DataFrame(
        {
            "batch": range(n), "attempt": 1, "records": 10, "outcome": "ok",
            "failed_items": [()] * n, "start_s": [float(i // 4) for i in range(n)],
            "end_s": [float(i // 4 + 1) for i in range(n)], "latency_s": 1.0,
        }
    )  # fmt: skip
    for bin_s in (None, 0.25, 0.75):  # whatever the bins, even ones shorter than a call
        rates = _line(plots.throughput(attempts, bin_s=bin_s), "records/s").get_ydata()
        assert len(rates) >= 10
        assert rates == pytest.approx([40.0] * len(rates)), rates  # 4 x 10 records a second


def _bars(figure: Figure) -> dict[str, BarContainer]:
    return {
        c.get_label(): c for ax in figure.axes for c in ax.containers if isinstance(c, BarContainer)
    }


def _first_attempt_failures(attempts: pd.DataFrame) -> dict[int, int]:
    """Per batch: records its first attempt did not complete (retries resend only those)."""
    first = attempts[attempts["attempt"] == 1]
    return {int(row.batch): row.records - _completed(row) for row in first.itertuples()}


def test_error_bars_are_failed_records_per_window_with_retried_ok_on_top(run):
    window = 3
    figure = plots.errors(run, window=window)
    ax = figure.axes[0]
    first_failed = _first_attempt_failures(run.attempts)
    records, failed, recovered = Counter(), Counter(), Counter()
    for row in run.batches.itertuples():
        w = row.batch // window * window
        records[w] += row.records
        failed[w] += row.failed_records
        recovered[w] += first_failed.get(row.batch, 0) - row.failed_records
    windows = sorted(records)
    bars = _bars(figure)
    assert set(bars) == {"failed for good", "failed an attempt, ok after a retry"}
    lost, retried = bars["failed for good"], bars["failed an attempt, ok after a retry"]
    assert [p.get_x() for p in lost.patches] == windows
    np.testing.assert_allclose(
        [p.get_height() for p in lost.patches], [failed[w] / records[w] for w in windows]
    )
    np.testing.assert_allclose(
        [p.get_height() for p in retried.patches],
        [recovered[w] / records[w] for w in windows],
    )
    # Retried-then-ok records sit on top of the failed ones, drawn distinctly (hatched).
    np.testing.assert_allclose(
        [p.get_y() for p in retried.patches], [p.get_height() for p in lost.patches]
    )
    assert {to_rgba(p.get_facecolor()) for p in lost.patches} == {to_rgba(plots.FAILED_COLOR)}
    assert {to_rgba(p.get_facecolor()) for p in retried.patches} == {
        to_rgba(plots.RETRIED_OK_COLOR)
    }
    assert all(p.get_hatch() for p in retried.patches) and not any(
        p.get_hatch() for p in lost.patches
    )
    # The title's rate is the run's headline: failed records / records.
    s = run.summary()
    assert f"{s['failed_records']} of {s['records']} ({s['failed_record_rate']:.1%}) failed" in (
        ax.get_title()
    )
    assert f"{sum(recovered.values())} ok after a retry" in ax.get_title()


def test_a_healthy_run_with_item_retries_reads_healthy():
    # 2,000 orders, 25 bad ones, each in its own batch and reported three times: every batch
    # holding one had all its attempts "fail", which the attempt-level plot drew as 100 %.
    bad = {b: [("reported_failure", (3,)), ("reported_failure", (0,)), ("reported_failure", (0,))]
           for b in range(0, 75, 3)}  # fmt: skip
    healthy = make_run(records=2000, batch_size=25, scripts=bad)
    s = healthy.summary()
    assert s["failed_records"] == 25 and s["failed_record_rate"] == pytest.approx(0.0125)
    assert s["failed_attempt_rate"] > 0.3  # most invocations of those batches "failed"
    figure = plots.errors(healthy)
    heights = [p.get_height() for c in _bars(figure).values() for p in c.patches]
    assert 0 < max(heights) <= 3 / 75  # at most 1 record in a 3-batch window of 75
    assert "25 of 2,000 (1.2%) failed" in figure.axes[0].get_title()
    assert "0 ok after a retry" in figure.axes[0].get_title()


def test_live_batches_and_bare_attempts_give_the_same_record_failures(run):
    invoked = run.batches[run.batches["status"] != "cached"]
    live_rows = invoked[["batch", "records", "failed_records"]]
    from_rows = plots.errors(run.attempts, batches=live_rows, window=2)
    bare = plots.errors(run.attempts, window=2)  # verdict: each batch's last attempt
    for figure in (from_rows, bare):
        lost = _bars(figure)["failed for good"]
        per_window = Counter()
        for row in invoked.itertuples():
            per_window[row.batch // 2 * 2] += row.failed_records
        assert [round(p.get_height() * 20) for p in lost.patches] == [
            per_window[int(p.get_x())] for p in lost.patches
        ]


def test_timeline_has_one_bar_per_attempt_with_failures_coloured(run):
    figure = plots.timeline(run)
    ax = figure.axes[0]
    (bars,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    attempts = run.attempts
    assert len(bars.patches) == len(attempts)
    ok_color = to_rgba(plots.OUTCOME_COLORS["ok"])
    for patch, row in zip(bars.patches, attempts.itertuples(), strict=True):
        assert patch.get_x() == pytest.approx(row.start_s)
        assert patch.get_width() == pytest.approx(row.end_s - row.start_s)
        assert patch.get_y() + patch.get_height() / 2 == pytest.approx(row.slot)
        is_ok = to_rgba(patch.get_facecolor()) == ok_color
        assert is_ok == (row.outcome == "ok")
        assert to_rgba(patch.get_facecolor()) == to_rgba(plots.OUTCOME_COLORS[row.outcome])
    (cold,) = [c for c in ax.collections if c.get_label() == "cold start"]
    expected = attempts[attempts["cold_start"]][["start_s", "slot"]].to_numpy()
    np.testing.assert_allclose(cold.get_offsets(), expected)
    assert len(expected) > 0


def test_attempts_without_a_slot_are_still_drawn(run):
    attempts = run.attempts.copy()
    attempts.loc[attempts["outcome"] == "throttle", "slot"] = math.nan
    figure = plots.timeline(attempts)
    (bars,) = figure.axes[0].containers
    assert len(bars.patches) == len(attempts)
    centres = [round(p.get_y() + p.get_height() / 2, 6) for p in bars.patches]
    assert centres.count(-1) == (attempts["outcome"] == "throttle").sum() > 0


def test_latency_scatter_marks_every_failed_attempt_and_rolls_percentiles(run):
    window = 4
    figure = plots.latency(run, window=window)
    ax = figure.axes[0]
    scatter = {c.get_label(): c.get_offsets() for c in ax.collections}
    ordered = run.attempts.sort_values(["batch", "attempt"], kind="stable")
    failed = ordered[ordered["outcome"] != "ok"]
    ok = ordered[ordered["outcome"] == "ok"]
    np.testing.assert_allclose(scatter["failed attempts"], failed[["batch", "latency_s"]])
    np.testing.assert_allclose(scatter["ok"], ok[["batch", "latency_s"]])
    latencies = ordered["latency_s"].to_numpy()
    p95 = [
        np.percentile(latencies[max(0, i - window + 1) : i + 1], 95) for i in range(len(ordered))
    ]
    np.testing.assert_allclose(_line(figure, "rolling p95").get_ydata(), p95)


def test_latency_distribution_marks_p50_p95_p99(run):
    figure = plots.latency_distribution(run)
    latencies = run.attempts["latency_s"].to_numpy()
    for q in (50, 95, 99):
        expected = np.percentile(latencies, q)
        line = _line(figure, f"p{q} = {expected:.3g} s")
        assert line.get_xdata()[0] == pytest.approx(expected)
    ecdf = _line(figure, f"all {len(latencies)} attempts")
    np.testing.assert_allclose(ecdf.get_xdata(), np.sort(latencies))
    assert ecdf.get_ydata()[-1] == 1.0


def test_concurrency_matches_a_sweep_over_attempts(run):
    figure = plots.concurrency(run)
    in_flight = _line(figure, "in flight")
    attempts = run.attempts
    # At each start, count attempts that started at or before it and have not ended.
    for t in attempts["start_s"]:
        expected = ((attempts["start_s"] <= t) & (attempts["end_s"] > t)).sum()
        x, y = in_flight.get_xdata(), in_flight.get_ydata()
        assert y[np.flatnonzero(x <= t)[-1]] == expected
    assert in_flight.get_ydata()[-1] == 0
    limit = _line(figure, "adaptive limit")
    ordered = attempts.sort_values("start_s")
    np.testing.assert_allclose(limit.get_ydata(), ordered["in_flight_limit"])


def test_concurrency_shows_a_rate_limit_beside_the_in_flight_limit(run):
    assert not any(ax.get_ylabel() == "requests/s allowed" for ax in plots.concurrency(run).axes)
    attempts = run.attempts.copy()
    ordered = attempts.sort_values("start_s")
    later = ordered.index[len(ordered) // 2 :]
    attempts.loc[later, "rate_limit"] = np.linspace(30.0, 40.0, len(later))
    figure = plots.concurrency(attempts)
    rate = _line(figure, "rate limit (requests/s)")
    np.testing.assert_allclose(rate.get_ydata(), attempts.loc[later, "rate_limit"])
    assert rate.axes.get_ylabel() == "requests/s allowed"
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert labels == ["in flight", "adaptive limit", "rate limit (requests/s)"]


def test_cost_bars_sum_to_the_independently_computed_total(run):
    window = 4
    figure = plots.cost(run, window=window)
    (bars,) = figure.axes[0].containers
    per_window = defaultdict(float)
    for row in run.attempts.itertuples():
        ran = not math.isnan(row.billed_duration_ms)
        gb_s = row.billed_duration_ms / 1000 * row.memory_size_mb / 1024 if ran else 0.0
        per_window[row.batch // window * window] += gb_s * 0.0000166667 + ran * 0.20 / 1e6
    heights = {p.get_x(): p.get_height() for p in bars.patches}
    assert heights == pytest.approx(dict(per_window))
    assert f"total ${sum(per_window.values()):.6f}" in figure.axes[0].get_title()
    arm = plots.cost(run, window=window, prices="arm64")
    assert sum(p.get_height() for p in arm.axes[0].containers[0].patches) < sum(heights.values())


def test_dashboard_has_titled_throughput_latency_and_error_panels(run):
    figure = run.plot()
    assert isinstance(figure, Figure)
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    for word in ("Throughput", "Latency per batch", "Failed records", "Timeline", "Concurrency"):
        assert any(t.startswith(word) for t in titles), (word, titles)
    assert figure.get_suptitle() == "lambdakit run: enrich:live"


def test_a_failing_run_shows_its_failures():
    failing = make_run(records=40, scripts={b: ["function_error"] * 2 for b in range(4)})
    figure = failing.plot()
    red = to_rgba(plots.OUTCOME_COLORS["function_error"])
    timeline = [
        p
        for ax in figure.axes
        for c in ax.containers
        if isinstance(c, BarContainer) and c.get_label() == "attempts"
        for p in c.patches
        if to_rgba(p.get_facecolor()) == red
    ]
    assert len(timeline) == 8  # 8 failed attempts on the timeline
    # Every record failed for good: a bar of 100 % per window, nothing ok after a retry.
    failed = _bars(figure)["failed for good"].patches
    assert failed and all(p.get_height() == pytest.approx(1.0) for p in failed)
    assert not any(p.get_height() for p in _bars(figure)["failed an attempt, ok after a retry"])
    assert "40 of 40 (100%) failed" in " ".join(ax.get_title() for ax in figure.axes)


@pytest.mark.parametrize("plot", ALL_PLOTS, ids=lambda f: f.__name__)
def test_each_plot_renders_to_png(run, plot):
    data = plots.to_png(plot(run))
    width, height = _png_size(data)
    assert width >= 400 and height >= 300 and len(data) > 5_000


@pytest.mark.parametrize("plot", ALL_PLOTS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "kwargs",
    [{"records": 0}, {"records": 30, "cached": (0, 1, 2)}, {"records": 5, "rejected": range(5)}],
    ids=["no-records", "all-cached", "all-rejected"],
)
def test_empty_runs_plot_a_note_instead_of_crashing(plot, kwargs):
    figure = plot(make_run(**kwargs))
    texts = [t.get_text() for ax in figure.axes for t in ax.texts]
    assert any(t.startswith("no invocations to show") for t in texts)
    _png_size(plots.to_png(figure))


def test_plots_draw_into_a_given_ax_and_return_its_figure(run):
    figure = Figure()
    left, right = figure.subplots(1, 2)
    assert plots.timeline(run, ax=right) is figure
    assert plots.latency(run.attempts, ax=left) is figure
    assert len(right.containers) == 1 and left.get_lines()


def test_a_live_dashboard_can_pass_bare_attempt_frames(run):
    figure = plots.dashboard(run.attempts)
    assert len(_line(figure, "records/s").get_ydata()) > 0
    empty = plots.dashboard(pd.DataFrame())
    texts = [t.get_text() for ax in empty.axes for t in ax.texts]
    assert sum(t.startswith("no invocations to show") for t in texts) == 6
    with pytest.raises(InvalidInput, match=r"lacks the columns \['cold_start', 'slot'\]"):
        plots.timeline(run.attempts.drop(columns=["slot", "cold_start"]))


def test_bad_input_is_named(run):
    with pytest.raises(InvalidInput, match="RunResult or its attempts"):
        plots.throughput([1, 2, 3])
    with pytest.raises(InvalidInput, match="lacks the columns"):
        plots.latency(run.attempts.drop(columns="latency_s"))
    with pytest.raises(InvalidInput, match="bin_s must be positive"):
        plots.throughput(run, bin_s=0)


def test_figures_display_as_png_in_jupyter_without_pyplot(run):
    assert run.plot()._repr_png_()[:8] == PNG_SIGNATURE
    code = (
        "import sys\n"
        "sys.path.insert(0, 'tests')\n"
        "import matplotlib\n"
        # get_backend() itself would import pyplot; read the raw setting instead.
        "backend = dict.__getitem__(matplotlib.rcParams, 'backend')\n"
        "from factories import mixed_run\n"
        "mixed_run().plot()\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
        "assert dict.__getitem__(matplotlib.rcParams, 'backend') == backend\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
