"""The form's live dashboard: progress, counters, rates, a live figure and recent errors."""

from __future__ import annotations

import functools
import html
import logging
import math
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from lambdakit.invocation import BATCH_FAILED, BATCH_PARTIAL

__all__ = ["Dashboard", "LiveRun", "RunLogCapture", "guarded", "show_error"]

log = logging.getLogger("lambdakit.notebook.dashboard")

# How often the numbers and the live figure refresh (the issue asks for >= 1/s and ~2 s).
TICK_S = 0.5
FIGURE_EVERY_S = 2.0
# Throughput is "current": records finished over the last few seconds, not since the start.
RATE_WINDOW_S = 5.0
RECENT_ERRORS = 8
_LOG_TAIL_CHARS = 1_500
# JupyterLab's default table style leaves cells unpadded and misaligned.
_CELL = ' style="padding:2px 10px;text-align:right"'
_TEXT_CELL = ' style="padding:2px 10px;text-align:left;vertical-align:top"'
_ERROR_STYLE = "color:#b00020;font-weight:bold"

ReportError = Callable[..., None]
OnEnd = Callable[[Any, "BaseException | None"], None]


def show_error(output: widgets.Output, exc: BaseException, *, where: str = "") -> None:
    """Append an exception's traceback to an Output widget; safe from any thread."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    heading = f"lambdakit form: {where} failed\n" if where else ""
    # append_stderr, never `with output:`: from a thread, ipykernel would route the
    # captured text to whichever cell ran last.
    output.append_stderr(heading + text)


def guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a widget callback so that an exception goes to `self.report_error`, not lost.

    ipywidgets would only log it (outside a kernel) or print it in whatever cell ran last.
    """

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            self.report_error(exc, where=method.__name__.strip("_").replace("_", " "))
            return None

    return wrapper


class RunLogCapture(logging.Handler):
    """While a run goes on, lambdakit's warnings go to the form's Output, not to a cell.

    With no handler configured, Python prints a library's warnings to stderr, and ipykernel
    sends a thread's stderr to whichever cell ran last.
    """

    def __init__(self, write: Callable[[str], None]) -> None:
        super().__init__(level=logging.WARNING)
        self._write = write
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        """Write one record to the form."""
        try:
            self._write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)

    def attach(self) -> RunLogCapture:
        """Start capturing (from before the run starts)."""
        logging.getLogger("lambdakit").addHandler(self)
        return self

    def detach(self) -> None:
        """Stop capturing (once the run has ended and been shown)."""
        logging.getLogger("lambdakit").removeHandler(self)


class Dashboard:
    """Widgets showing a running RunHandle, refreshed by a daemon thread."""

    def __init__(self, *, report_error: ReportError) -> None:
        self._report_error = report_error
        self.records_bar = widgets.IntProgress(value=0, min=0, max=1, description="records")
        self.records_text = widgets.HTML()
        self.batches_bar = widgets.IntProgress(value=0, min=0, max=1, description="batches")
        self.batches_text = widgets.HTML()
        self.counters = widgets.HTML()
        self.headline = widgets.HTML()
        self.rates = widgets.HTML()
        self.live_figure = widgets.Image(format="png", layout=widgets.Layout(display="none"))
        self.errors = widgets.HTML()
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.records_bar, self.records_text]),
                widgets.HBox([self.batches_bar, self.batches_text]),
                self.counters,
                self.headline,
                self.rates,
                self.live_figure,
                self.errors,
            ],
            layout=widgets.Layout(display="none"),
        )
        # Stable CSS classes (lambdakit-<part>) for users' styles and the browser test.
        self.widget.add_class("lambdakit-dashboard")
        parts = (
            "records_bar records_text batches_bar batches_text counters headline rates "
            "live_figure errors"
        )
        for name in parts.split():
            getattr(self, name).add_class("lambdakit-" + name.replace("_", "-"))
        self._thread: threading.Thread | None = None
        self.live = LiveRun()
        """What the last run's events said (attempts, failed batches), kept for inspection."""

    def follow(self, handle: Any, *, on_end: OnEnd) -> threading.Thread:
        """Show `handle` live from a daemon thread; call `on_end(result, error)` when it ends."""
        self._reset()
        self.widget.layout.display = ""
        thread = threading.Thread(
            target=self._run, args=(handle, on_end), name="lambdakit-dashboard", daemon=True
        )
        self._thread = thread
        thread.start()
        return thread

    def _reset(self) -> None:
        for bar in (self.records_bar, self.batches_bar):
            bar.value, bar.max, bar.bar_style = 0, 1, "info"
        texts = (self.records_text, self.batches_text, self.counters, self.headline, self.rates)
        for box in (*texts, self.errors):
            box.value = ""
        self.live_figure.layout.display = "none"

    def _run(self, handle: Any, on_end: OnEnd) -> None:
        live = self.live = LiveRun()
        try:
            self._watch(handle, live)
        except Exception as exc:
            self._report_error(exc, where="dashboard")
        # The run's own outcome: a result, or the error that ended it (which may carry the
        # partial result, as ToleranceExceeded does).
        result: Any = None
        error: BaseException | None = None
        try:
            result = handle.wait()
        except BaseException as exc:
            error, result = exc, getattr(exc, "result", None)
        try:
            live.add_all(handle.events.drain())
            live.result = result  # from now on the numbers are the run's own, not live ones
            self.show(handle.progress, live)
        except Exception as exc:
            self._report_error(exc, where="dashboard")
        on_end(result, error)

    def _watch(self, handle: Any, live: LiveRun) -> None:
        events = handle.events
        next_figure = time.monotonic() + FIGURE_EVERY_S
        failures_shown: set[str] = set()
        while True:
            # Read events as they come until the next tick, so none are dropped.
            tick_at = time.monotonic() + TICK_S
            while (remaining := tick_at - time.monotonic()) > 0:
                event = events.get(timeout=remaining)
                if event is None:
                    if events.closed:
                        break
                    continue
                live.add(event)
            try:
                self.show(handle.progress, live)
                if time.monotonic() >= next_figure and live.attempts:
                    started = time.monotonic()
                    self.show_figure(live)
                    # A slow render must not steal the run's CPU: back off in proportion.
                    spent = time.monotonic() - started
                    next_figure = time.monotonic() + max(FIGURE_EVERY_S, 2 * spent)
            except Exception as exc:
                # Report each distinct failure once; a broken refresh must not flood the form.
                key = f"{type(exc).__name__}: {exc}"
                if key not in failures_shown:
                    failures_shown.add(key)
                    self._report_error(exc, where="dashboard refresh")
            if events.closed or handle.done:
                return

    def show(self, progress: Any, live: LiveRun) -> None:
        """Refresh bars, counters, rates and the error panel from a Progress snapshot."""
        live.note_progress(progress)
        total = progress.records_total
        known = total if total is not None else max(progress.records_read, 1)
        self.records_bar.max = max(known, 1)
        self.records_bar.value = min(progress.records_done, self.records_bar.max)
        self.records_text.value = _fraction(progress.records_done, total, progress.records_read)
        batches = progress.batches_total  # known with the source's length (an estimate first)
        self.batches_bar.max = max(progress.batches_read if batches is None else batches, 1)
        self.batches_bar.value = min(progress.batches_done, self.batches_bar.max)
        self.batches_text.value = _fraction(progress.batches_done, batches, progress.batches_read)
        self.counters.value = _counters_html(progress)
        self.headline.value = _headline_html(progress, live)
        self.rates.value = _rates_html(progress, live)
        self.errors.value = _errors_html(live.failed_batches)
        if progress.ended:
            # The source is exhausted (or the run stopped): what was read is the total, of
            # batches always ("40 done, 40 read so far" would read as still going).
            if batches is None:
                self.batches_text.value = f"{progress.batches_done:,} of {progress.batches_read:,}"
            if total is None:
                self.records_text.value = f"{progress.records_done:,} of {progress.records_read:,}"

    def show_end(self, state: str) -> None:
        """Colour the bars by how the run ended (finished, finished with failures, cancelled,
        stopped (outage) or failed): green only when every record was ok."""
        style = {
            "finished": "success",
            "finished with failures": "danger",
            "cancelled": "warning",
            "failed": "danger",
        }
        # "stopped (outage)": records did not run, and no one asked for it.
        default = "danger" if state.startswith("stopped (") else "info"
        for bar in (self.records_bar, self.batches_bar):
            bar.bar_style = style.get(state, default)
        # The form now shows the full dashboard figure, which includes these panels.
        self.live_figure.layout.display = "none"

    def show_figure(self, live: LiveRun) -> None:
        """Render the live figure (throughput, latency, errors) to PNG in the Image widget."""
        from lambdakit.results.plots import to_png

        self.live_figure.value = to_png(live.figure(), dpi=72)
        self.live_figure.layout.display = ""


class LiveRun:
    """What the dashboard keeps from the event stream: recent attempts and failed batches."""

    # Bounds keep a watched run of millions of attempts at a fixed memory and render cost.
    MAX_ATTEMPTS = 20_000

    def __init__(self) -> None:
        self.attempts: deque[dict[str, Any]] = deque(maxlen=self.MAX_ATTEMPTS)
        # Finished batches (batch, records, failed_records): the verdicts the errors panel
        # counts failed records by.
        self.batches: deque[dict[str, Any]] = deque(maxlen=self.MAX_ATTEMPTS)
        self.failed_batches: deque[dict[str, Any]] = deque(maxlen=RECENT_ERRORS)
        # (t_s, in-flight limit, rate limit) whenever an event shows them changed: the limits
        # each attempt was sent under, as a finished run records them per attempt.
        self.limits: deque[tuple[float, int, float | None]] = deque(maxlen=self.MAX_ATTEMPTS)
        self._done_at: deque[tuple[float, int]] = deque()
        self.result: Any = None
        """The RunResult once the run has ended (None before, or if it ended in an error
        without one): the dashboard then shows its overall figures."""

    def add_all(self, events: list[Any]) -> None:
        """Take several events in order."""
        for event in events:
            self.add(event)

    def add(self, event: Any) -> None:
        """Take one ProgressEvent."""
        limits = (event.progress.in_flight_limit, event.progress.rate_limit)
        if not self.limits or self.limits[-1][1:] != limits:
            self.limits.append((event.t_s, *limits))
        if event.kind == "attempt" and event.latency_s is not None:
            self.attempts.append(
                {
                    "batch": event.batch,
                    "attempt": event.attempt,
                    "outcome": event.outcome,
                    "records": event.records,
                    # A partial batch failure's other records count as done in throughput.
                    "failed_items": event.failed_items,
                    "start_s": event.t_s - event.latency_s,
                    "end_s": event.t_s,
                    "latency_s": event.latency_s,
                }
            )
        elif event.kind == "batch":
            self.batches.append(
                {
                    "batch": event.batch,
                    "records": event.records,
                    "failed_records": event.failed_records,
                }
            )
        if event.kind == "batch" and event.outcome in (BATCH_FAILED, BATCH_PARTIAL):
            self.failed_batches.append(
                {
                    "batch": event.batch,
                    "status": event.outcome,
                    "error_type": event.error_type,
                    "error_message": event.error_message,
                    "log_tail": event.log_tail,
                }
            )

    def note_progress(self, progress: Any) -> None:
        """Remember records done over time, for the current throughput."""
        now = progress.elapsed_s
        self._done_at.append((now, progress.records_done))
        while len(self._done_at) > 2 and now - self._done_at[0][0] > RATE_WINDOW_S:
            self._done_at.popleft()

    def _with_limits(self, frame: Any) -> Any:
        """The attempts with the limits in force when each was sent (the last change before
        its start), the columns a RunResult's attempts carry."""
        import pandas as pd

        if frame.empty or not self.limits:
            return frame
        limits = pd.DataFrame(list(self.limits), columns=["t_s", "in_flight_limit", "rate_limit"])
        # Events come from several workers: their times may be a hair out of order.
        limits = limits.sort_values("t_s", kind="stable")
        sent = frame.sort_values("start_s", kind="stable")
        return pd.merge_asof(sent, limits.astype({"rate_limit": float}), left_on="start_s",
                             right_on="t_s", direction="backward").drop(columns="t_s")  # fmt: skip

    def records_per_s(self) -> float | None:
        """Records finished per second over the last few seconds; None before two samples.

        Once the run has ended, its overall rate (the summary's records_per_s).
        """
        if self.result is not None:
            return float(self.result.summary()["records_per_s"])
        if len(self._done_at) < 2:
            return None
        (t0, n0), (t1, n1) = self._done_at[0], self._done_at[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else None

    def recent_latencies(self, n: int = 500) -> list[float]:
        """Latencies of the last `n` attempts."""
        count = min(n, len(self.attempts))
        return [self.attempts[-i]["latency_s"] for i in range(1, count + 1)]

    def figure(self) -> Any:
        """Throughput, latency, failed-records and concurrency panels (in flight, the adaptive
        in-flight limit and the rate limit) over the attempts seen so far."""
        import pandas as pd

        from lambdakit.results import plots

        frame = pd.DataFrame(list(self.attempts))
        batches = pd.DataFrame(list(self.batches), columns=["batch", "records", "failed_records"])
        figure = plots.InlineFigure(figsize=(18, 3.6), layout="constrained")
        axes = figure.subplots(1, 4)
        plots.throughput(frame, ax=axes[0])
        plots.latency(frame, ax=axes[1])
        plots.errors(frame, batches=batches, ax=axes[2])
        plots.concurrency(self._with_limits(frame), ax=axes[3])
        for ax in axes:
            # Three panels side by side: full-size titles would run into each other.
            ax.title.set_fontsize("medium")
        return figure


def _fraction(done: int, total: int | None, read: int) -> str:
    if total is not None:
        share = f" ({done / total:.0%})" if total else ""
        return f"{done:,} / {total:,}{share}"
    return f"{done:,} done, {read:,} read so far"


def _counters_html(progress: Any) -> str:
    cells = [
        ("ok", progress.ok_records, "records"),
        ("failed", progress.failed_records, "records"),
        ("retried", progress.retries, "attempts"),
        ("throttled", progress.throttles, "attempts"),
        ("cached", progress.cached_records, "records"),
        ("rejected", progress.rejected_records, "records"),
    ]
    head = "".join(f"<th{_CELL} title='{unit}'>{name}</th>" for name, _, unit in cells)
    body = "".join(f"<td{_CELL}>{value:,}</td>" for _, value, _ in cells)
    return f"<table><tr>{head}</tr><tr>{body}</tr></table>"


def _headline_html(progress: Any, live: LiveRun) -> str:
    """Failed records / records: of those done so far, then the run's own headline."""
    from lambdakit.results.metrics import share_text

    if live.result is not None:
        s = live.result.summary()
        failed, text = s["failed_records"], share_text(s["failed_records"], s["records"])
    else:
        failed = progress.failed_records
        text = share_text(failed, progress.records_done) + " so far"
    style = f" style='{_ERROR_STYLE}'" if failed else ""
    return f"<span{style}>failed records {html.escape(text, quote=False)}</span>"


def _rates_html(progress: Any, live: LiveRun) -> str:
    from lambdakit.results.metrics import latency_percentiles

    rate = live.records_per_s()
    p50, p95, _ = latency_percentiles(live.recent_latencies())
    outage = _outage_text(progress)
    parts = [outage] if outage else []
    parts += [
        f"throughput {_number(rate)} records/s",
        f"latency p50 {_number(p50, 3)} s",
        f"p95 {_number(p95, 3)} s",
        f"in flight {progress.in_flight} / {progress.in_flight_limit}",
    ]
    rate_limit = getattr(progress, "rate_limit", None)
    if rate_limit is not None:  # since a rate-type throttle: requests/s, beside the limit
        parts.append(f"rate limit {_number(rate_limit)} requests/s")
    parts.append(f"elapsed {progress.elapsed_s:.1f} s")
    return " · ".join(parts)


def _outage_text(progress: Any) -> str:
    """ "endpoint unreachable, retrying in N s" while the run waits out an outage, else ""."""
    unreachable = getattr(progress, "unreachable_s", None)
    if unreachable is None or progress.ended:
        return ""
    retry_in = getattr(progress, "retry_in_s", None)
    if retry_in is None:
        text = "endpoint unreachable, trying one invocation"
    else:
        text = f"endpoint unreachable, retrying in {math.ceil(retry_in):d} s"
    return f"<b style='color:#b45309'>{text}</b> (for {unreachable:.0f} s)"


def _number(value: float | None, digits: int = 1) -> str:
    if value is None or value != value:  # None or NaN: nothing measured yet
        return "–"
    return f"{value:,.{digits}f}"


def _errors_html(failed: deque[dict[str, Any]]) -> str:
    if not failed:
        return ""
    rows = []
    for item in reversed(failed):
        tail = html.escape((item["log_tail"] or "")[-_LOG_TAIL_CHARS:], quote=False)
        log_html = (
            f"<details><summary>log tail</summary><pre>{tail}</pre></details>" if tail else ""
        )
        cells = (
            str(item["batch"]),
            html.escape(str(item["status"]), quote=False),
            html.escape(str(item["error_type"] or ""), quote=False),
            html.escape(str(item["error_message"] or ""), quote=False) + log_html,
        )
        rows.append("<tr>" + "".join(f"<td{_TEXT_CELL}>{c}</td>" for c in cells) + "</tr>")
    head = "".join(
        f"<th{_TEXT_CELL}>{h}</th>" for h in ("batch", "status", "error type", "message")
    )
    return f"<b>Recent failed batches</b><table><tr>{head}</tr>{''.join(rows)}</table>"
