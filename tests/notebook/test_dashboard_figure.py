"""The live dashboard's figure draws the limits its text shows: the in-flight limit and, once a
rate-type throttle set one, the rate limit (as the finished run's concurrency panel does)."""

from __future__ import annotations

from typing import Any

import lambdakit
from lambdakit.engine.progress import Progress, ProgressEvent
from lambdakit.notebook.dashboard import LiveRun

DEADLINE_S = 120.0
RATE_LABEL = "rate limit (requests/s)"


def concurrency_axes(figure: Any) -> tuple[Any, Any | None]:
    """The concurrency panel's axes and its twin (the rate axis), or None without one."""
    panels = [ax for ax in figure.axes if ax.get_title().startswith("Concurrency in flight")]
    assert len(panels) == 1, [ax.get_title() for ax in figure.axes]
    (panel,) = panels
    shared = panel.get_shared_x_axes()
    twins = [ax for ax in figure.axes if ax is not panel and shared.joined(panel, ax)]
    return panel, (twins[0] if twins else None)


def lines(ax: Any) -> dict[str, Any]:
    return {line.get_label(): line for line in ax.get_lines()}


def attempt(t_s: float, latency_s: float, limit: int, rate: float | None) -> ProgressEvent:
    progress = Progress(in_flight_limit=limit, rate_limit=rate)
    return ProgressEvent("attempt", t_s, progress, batch=int(t_s * 10), attempt=1, records=1,
                         outcome="ok", latency_s=latency_s)  # fmt: skip


def test_the_live_figure_draws_the_rate_limit_each_attempt_was_sent_under():
    live = LiveRun()
    live.add(ProgressEvent("start", 0.0, Progress(in_flight_limit=8)))
    # Sent at 0.1 and 0.2 (no rate limit yet); a rate-type throttle comes back at 0.45 and
    # sets 30 requests/s; the attempts sent after it are paced, the limit grows to 31.
    live.add_all([attempt(0.3, 0.2, 8, None), attempt(0.45, 0.25, 8, 30.0),
                  attempt(0.8, 0.3, 8, 31.0), attempt(1.0, 0.2, 8, 31.0)])  # fmt: skip
    panel, twin = concurrency_axes(live.figure())
    drawn = lines(panel)
    assert drawn["adaptive limit"].get_linestyle() == "--"
    assert list(drawn["adaptive limit"].get_ydata()) == [8, 8, 8, 8]
    assert twin is not None, "no rate axis beside the in-flight axis"
    rate = lines(twin)[RATE_LABEL]
    # Only the attempts sent under a rate limit (at 0.5 and 0.8), each with the one in force.
    assert list(rate.get_xdata()) == [0.5, 0.8]
    assert list(rate.get_ydata()) == [30.0, 31.0]
    assert rate.get_linestyle() == ":" and rate.get_color() == "tab:purple"
    # One legend names all three lines, as on the finished run's panel.
    legend = [text.get_text() for text in panel.get_legend().get_texts()]
    assert legend == ["in flight", "adaptive limit", RATE_LABEL]


def test_without_a_rate_limit_the_live_figure_has_no_rate_line():
    live = LiveRun()
    live.add(ProgressEvent("start", 0.0, Progress(in_flight_limit=4)))
    live.add_all([attempt(0.3, 0.2, 4, None), attempt(0.5, 0.2, 2, None)])
    panel, twin = concurrency_axes(live.figure())
    assert twin is None
    assert list(lines(panel)["adaptive limit"].get_ydata()) == [4, 4]


def test_a_rate_limited_run_from_the_form_draws_its_rate_limit(local_lambda, make_function):
    name = make_function("def handler(event, context):\n    return event['Items']\n")
    local_lambda.set_faults(name, throttle_rate=0.3, seed=7,
                            throttle_reason="FunctionInvocationRateLimitExceeded")  # fmt: skip
    try:
        form = lambdakit.form(list(range(40)), endpoint_url=local_lambda.endpoint_url,
                              function=name, batch_size=1, concurrency=4, max_attempts=20,
                              cache=False)  # fmt: skip
        form.run_button.click()
        result = form.wait(timeout=DEADLINE_S)
    finally:
        local_lambda.clear_faults(name)
    assert result.summary()["failed_records"] == 0
    assert result.summary()["throttles"] > 0
    assert "rate limit" in form.dashboard.rates.value  # the text the figure now matches
    panel, twin = concurrency_axes(form.dashboard.live.figure())
    assert twin is not None
    rate = lines(twin)[RATE_LABEL].get_ydata()
    assert len(rate) > 0 and all(value > 0 for value in rate)
    # Rate-type throttles leave the in-flight limit where it was.
    assert set(lines(panel)["adaptive limit"].get_ydata()) == {4}
