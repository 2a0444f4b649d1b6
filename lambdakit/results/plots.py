"""Plots of a run: pure functions from a RunResult (or its attempts) to matplotlib Figures.

Every function takes an optional `ax=` to draw into, and returns the Figure holding the
drawing. Figures are `matplotlib.figure.Figure` objects, never pyplot state, so nothing
here switches backends or leaks figures; in Jupyter they display themselves as PNG.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, PercentFormatter

from lambdakit.errors import InvalidInput
from lambdakit.invocation import OK, OUTCOMES, SUPERSEDED
from lambdakit.results import metrics
from lambdakit.results.cost import PriceTable, attempt_costs
from lambdakit.results.tables import ATTEMPT_COLUMNS

__all__ = [
    "FAILED_COLOR",
    "OUTCOME_COLORS",
    "PLOTS",
    "RETRIED_OK_COLOR",
    "InlineFigure",
    "by_name",
    "concurrency",
    "cost",
    "dashboard",
    "errors",
    "latency",
    "latency_distribution",
    "throughput",
    "timeline",
    "to_png",
]

# Failures get warm or grey colours, all distinct from the blue of success.
OUTCOME_COLORS: dict[str, str] = {
    "ok": "tab:blue",
    "throttle": "tab:orange",
    "service_error": "tab:purple",
    "connection_error": "tab:brown",
    "timeout": "tab:pink",
    "function_error": "tab:red",
    "reported_failure": "tab:olive",
    "client_error": "tab:gray",
    "cancelled": "tab:cyan",
    "superseded": "lightsteelblue",
}
_UNKNOWN_COLOR = "black"
FAILED_COLOR = "tab:red"  # records that failed for good
RETRIED_OK_COLOR = "goldenrod"  # records that failed an attempt, then were ok (hatched)
EMPTY_NOTE = "no invocations to show\n(every record cached or rejected, or no records)"


class InlineFigure(Figure):
    """A plain Figure that Jupyter shows as a PNG even when pyplot was never imported."""

    def _repr_png_(self) -> bytes:
        return to_png(self)


def to_png(figure: Figure, *, dpi: int = 100) -> bytes:
    """Render a Figure to PNG bytes (for Image widgets and report files)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


_CORE_COLUMNS = ("batch", "attempt", "outcome", "start_s", "end_s", "latency_s")


def _attempts(data: Any, *needed: str) -> pd.DataFrame:
    frame = getattr(data, "attempts", data)
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInput(f"expected a RunResult or its attempts DataFrame, got {type(data)}")
    if frame.empty:  # a live dashboard before the first attempt: any columns will do
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in ATTEMPT_COLUMNS.items()})
    # Live dashboards pass partial frames: name exactly what this plot is missing.
    missing = {*_CORE_COLUMNS, *needed} - set(frame)
    if missing:
        raise InvalidInput(f"the attempts DataFrame lacks the columns {sorted(missing)}")
    return frame


def _canvas(ax: Axes | None, figsize: tuple[float, float] = (8, 4)) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    figure = InlineFigure(figsize=figsize, layout="constrained")
    return figure, figure.add_subplot()


def _empty(figure: Figure, ax: Axes, title: str, note: str = EMPTY_NOTE) -> Figure:
    ax.set_title(title)
    ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])
    return figure


def _window_label(width: int) -> str:
    return "batch index" if width == 1 else f"batch index (windows of {width} batches)"


def _color(outcome: Any) -> str:
    return OUTCOME_COLORS.get(str(outcome), _UNKNOWN_COLOR)


def throughput(data: Any, *, bin_s: float | None = None, ax: Axes | None = None) -> Figure:
    """Records/s (left axis) and invocations/s (right axis) per time bin of attempt ends.

    Bins default to no shorter than the median latency (see metrics.throughput).
    """
    figure, ax = _canvas(ax)
    title = "Throughput over time"
    series = metrics.throughput(_attempts(data, "records", "failed_items"), bin_s=bin_s)
    if series.empty:
        return _empty(figure, ax, title)
    width = float(series["bin_end_s"].iloc[0] - series["bin_start_s"].iloc[0])
    middle = (series["bin_start_s"] + width / 2).to_numpy()
    (records,) = ax.plot(middle, series["records_per_s"], "-o", ms=3, label="records/s")
    ax.set_xlabel("seconds since run start")
    ax.set_ylabel("records/s (completed)")
    ax.set_ylim(bottom=0)
    right = ax.twinx()
    (calls,) = right.plot(
        middle, series["invocations_per_s"], "--s", ms=3, color="tab:green", label="invocations/s"
    )
    right.set_ylabel("invocations/s")
    right.set_ylim(bottom=0)
    ax.legend(handles=[records, calls], loc="best", fontsize="small")
    ax.set_title(f"{title} ({width:.3g} s bins)")
    return figure


def latency(data: Any, *, window: int | None = None, ax: Axes | None = None) -> Figure:
    """Latency of every attempt by batch index, failed ones marked, with rolling p50/p95."""
    figure, ax = _canvas(ax)
    title = "Latency per batch"
    frame = metrics.rolling_latency(_attempts(data), window=window)
    if frame.empty:
        return _empty(figure, ax, title)
    ok = frame[~frame["failed"]]
    failed = frame[frame["failed"]]
    ax.scatter(ok["batch"], ok["latency_s"], s=10, alpha=0.6, color=_color(OK), label="ok")
    if len(failed):
        ax.scatter(
            failed["batch"],
            failed["latency_s"],
            s=18,
            marker="x",
            color=_color("function_error"),
            label="failed attempts",
        )
    ax.plot(frame["batch"], frame["p50"], color="black", lw=1.2, label="rolling p50")
    ax.plot(frame["batch"], frame["p95"], color="0.45", lw=1.2, ls="--", label="rolling p95")
    ax.set_xlabel("batch index")
    ax.set_ylabel("latency (s)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="best", fontsize="small")
    ax.set_title(f"{title} ({len(frame)} attempts, {len(failed)} failed)")
    return figure


def latency_distribution(data: Any, *, ax: Axes | None = None) -> Figure:
    """ECDF of attempt latency with p50, p95 and p99 marked."""
    figure, ax = _canvas(ax)
    title = "Latency distribution (ECDF)"
    values = pd.to_numeric(_attempts(data)["latency_s"], errors="coerce").dropna()
    if values.empty:
        return _empty(figure, ax, title)
    x = np.sort(values.to_numpy(float))
    y = np.arange(1, x.size + 1) / x.size
    ax.step(x, y, where="post", color=_color(OK), label=f"all {x.size} attempts")
    for name, value, style in zip(
        ("p50", "p95", "p99"), metrics.latency_percentiles(x), ("-", "--", ":"), strict=True
    ):
        ax.axvline(value, color="black", ls=style, lw=1, label=f"{name} = {value:.3g} s")
    ax.set_xlabel("latency (s)")
    ax.set_ylabel("fraction of attempts ≤ x")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title(title)
    return figure


def errors(
    data: Any,
    *,
    batches: pd.DataFrame | None = None,
    window: int | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Share of each batch window's records that failed for good, and (hatched, on top)
    those that failed an attempt but were ok after a retry.

    Record-level, like the run's headline (failed records / records). Batch verdicts come
    from `batches` or the RunResult's own; from bare attempts, a batch's last attempt.
    """
    figure, ax = _canvas(ax)
    title = "Failed records per batch window"
    attempts = _attempts(data, "records", "failed_items")
    if batches is None and not isinstance(data, pd.DataFrame):
        batches = getattr(data, "batches", None)
    table = metrics.record_failures(attempts, batches, window=window)
    if attempts.empty or table.empty:
        return _empty(figure, ax, title)
    left = table["window_start"].to_numpy(float)
    width = float(table["window_end"].iloc[0] - table["window_start"].iloc[0] + 1)
    failed = table["failed_share"].to_numpy(float)
    recovered = table["retried_ok_share"].to_numpy(float)
    bar = {"width": width * 0.9, "align": "edge"}
    ax.bar(left, failed, color=FAILED_COLOR, label="failed for good", **bar)
    ax.bar(
        left,
        recovered,
        bottom=failed,
        color=RETRIED_OK_COLOR,
        hatch="///",
        edgecolor="white",
        linewidth=0,
        label="failed an attempt, ok after a retry",
        **bar,
    )
    summary = getattr(data, "summary", None)
    if callable(summary) and batches is getattr(data, "batches", None):
        totals = summary()
        n_failed, n_records = totals["failed_records"], totals["records"]
    else:
        n_failed, n_records = int(table["failed_records"].sum()), int(table["records"].sum())
    retried_ok = int(table["retried_ok_records"].sum())
    if n_failed:
        overall = metrics.rate(n_failed, n_records)
        ax.axhline(
            overall,
            color="black",
            ls="--",
            lw=1,
            zorder=3,
            label=f"whole run: {metrics.percent(overall)}",
        )
    ax.set_xlabel(_window_label(int(width)))
    ax.set_ylabel("share of the window's records")
    # Scaled to the data, so 1 failed record in 100 is visible; never past 100 %.
    top = float(np.max(failed + recovered))
    ax.set_ylim(0, min(1.05, max(0.01, top * 1.25)))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=None))
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    ax.set_title(
        f"{title}\n{metrics.share_text(n_failed, n_records)} failed, "
        f"{retried_ok:,} ok after a retry"
    )
    return figure


def timeline(data: Any, *, ax: Axes | None = None) -> Figure:
    """One bar per attempt on its concurrency slot, coloured by outcome, cold starts marked."""
    figure, ax = _canvas(ax, figsize=(10, 4))
    title = "Timeline by slot"
    attempts = _attempts(data, "slot", "cold_start")
    if attempts.empty:
        return _empty(figure, ax, title)
    # Attempts without a slot still get drawn, on their own row below the slots.
    slots = pd.to_numeric(attempts["slot"], errors="coerce").fillna(-1).to_numpy(float)
    starts = pd.to_numeric(attempts["start_s"], errors="coerce").to_numpy(float)
    widths = (pd.to_numeric(attempts["end_s"], errors="coerce").to_numpy(float) - starts).clip(0)
    colors = [_color(o) for o in attempts["outcome"]]
    # A thin white edge keeps back-to-back attempts on one slot visibly separate.
    ax.barh(
        slots,
        widths,
        left=starts,
        height=0.8,
        color=colors,
        edgecolor="white",
        linewidth=0.5,
        label="attempts",
    )
    cold = attempts["cold_start"].fillna(False).astype(bool).to_numpy()
    if cold.any():
        ax.scatter(
            starts[cold],
            slots[cold],
            marker="*",
            s=40,
            color="gold",
            edgecolors="black",
            linewidths=0.5,
            zorder=3,
            label="cold start",
        )
    present = [o for o in OUTCOMES if (attempts["outcome"] == o).any()]
    handles: list[Any] = [Patch(color=_color(o), label=o) for o in present]
    if cold.any():
        handles.append(ax.collections[-1])
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("seconds since run start")
    ax.set_ylabel("slot (-1: none)" if (slots < 0).any() else "slot")
    failed = int((~attempts["outcome"].isin((OK, SUPERSEDED))).sum())  # a lost race is no failure
    ax.set_title(f"{title} ({len(attempts)} attempts, {failed} failed, {int(cold.sum())} cold)")
    return figure


def concurrency(data: Any, *, ax: Axes | None = None) -> Figure:
    """Attempts in flight over time, with the adaptive in-flight limit at each submit."""
    figure, ax = _canvas(ax)
    title = "Concurrency in flight"
    attempts = _attempts(data, "in_flight_limit")
    steps = metrics.in_flight(attempts)
    if steps.empty:
        return _empty(figure, ax, title)
    ax.step(steps["t_s"], steps["in_flight"], where="post", label="in flight")
    limit = attempts[["start_s", "in_flight_limit"]].dropna().sort_values("start_s")
    if len(limit):
        ax.step(
            limit["start_s"],
            limit["in_flight_limit"],
            where="post",
            color="tab:red",
            ls="--",
            label="adaptive limit",
        )
    ax.set_xlabel("seconds since run start")
    ax.set_ylabel("attempts in flight")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(bottom=0)
    handles, labels = ax.get_legend_handles_labels()
    if "rate_limit" in attempts and attempts["rate_limit"].notna().any():
        # Rate-type throttles (or a limits() cap) limit requests per second, beside the
        # in-flight limit: on their own axis, as the units differ.
        rate = attempts[["start_s", "rate_limit"]].dropna().sort_values("start_s")
        twin = ax.twinx()
        twin.step(rate["start_s"], rate["rate_limit"], where="post", color="tab:purple",
                  ls=":", label="rate limit (requests/s)")  # fmt: skip
        twin.set_ylabel("requests/s allowed")
        twin.set_ylim(bottom=0)
        more_handles, more_labels = twin.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.legend(handles, labels, loc="best", fontsize="small")
    ax.set_title(f"{title} (peak {int(steps['in_flight'].max())})")
    return figure


def cost(
    data: Any,
    *,
    prices: PriceTable | str | None = None,
    window: int | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Estimated USD per batch window (billed GB-seconds + request fee), total in the title.

    `prices` is a PriceTable or an architecture name; by default the prices of the run's
    region (from its ARN) for x86_64.
    """
    figure, ax = _canvas(ax)
    attempts = _attempts(data, "billed_duration_ms", "memory_size_mb", "http_status")
    table = PriceTable.coerce(prices, region=getattr(data, "region", None))
    title = f"Estimated cost per batch window ({table.region}, {table.architecture})"
    if attempts.empty:
        return _empty(figure, ax, title + ": $0")
    memory = getattr(data, "meta", {}).get("memory_mb")
    costs = attempt_costs(attempts, table, memory_mb=memory)
    batch = attempts["batch"].astype(np.int64)
    width = metrics.batch_window(int(batch.max()) + 1, window)
    per_window = costs.groupby((batch // width) * width).sum()
    ax.bar(
        per_window.index.to_numpy(float),
        per_window["usd"],
        width=width * 0.9,
        align="edge",
        color="tab:cyan",
        label="USD per window",
    )
    ax.set_xlabel(_window_label(width))
    ax.set_ylabel("USD")
    total, gb_s, requests = costs["usd"].sum(), costs["gb_seconds"].sum(), costs["requests"].sum()
    title = f"{title}\ntotal ${total:.6f} = {gb_s:.3f} GB-s + {int(requests)} requests"
    batches = getattr(data, "batches", None)
    if batches is not None and "memory_mb" in batches and batches["memory_mb"].notna().any():
        # The memory ladder (run(on_oom=)): what the batches that needed it cost, all tries.
        climbed = batches.loc[batches["memory_mb"].notna(), "batch"]
        share = costs.loc[attempts["batch"].isin(climbed).to_numpy(), "usd"].sum()
        title += f"\n{len(climbed)} batches needed the memory ladder: ${share:.6f} of it"
    ax.set_title(title)
    return figure


def dashboard(result: Any) -> Figure:
    """Six titled panels: throughput, failed records, latency + distribution, timeline, in
    flight."""
    figure = InlineFigure(figsize=(14, 12), layout="constrained")
    axes = figure.subplots(3, 2)
    throughput(result, ax=axes[0, 0])
    errors(result, ax=axes[0, 1])
    latency(result, ax=axes[1, 0])
    latency_distribution(result, ax=axes[1, 1])
    timeline(result, ax=axes[2, 0])
    concurrency(result, ax=axes[2, 1])
    meta = getattr(result, "meta", {})
    name = str(meta.get("function") or "run")
    if meta.get("qualifier"):
        name += f":{meta['qualifier']}"
    figure.suptitle(f"lambdakit run: {name}", fontsize="x-large")
    return figure


# The report's figures by name, in the order the report folder lists them.
PLOTS: dict[str, Callable[..., Figure]] = {
    "dashboard": dashboard,
    "throughput": throughput,
    "latency": latency,
    "latency_distribution": latency_distribution,
    "errors": errors,
    "timeline": timeline,
    "concurrency": concurrency,
    "cost": cost,
}


def by_name(kind: str) -> Callable[..., Figure]:
    """The plot function called `kind` (a key of PLOTS); InvalidInput names the choices."""
    try:
        return PLOTS[kind]
    except (KeyError, TypeError):
        raise InvalidInput(f"unknown plot {kind!r}; choose one of {', '.join(PLOTS)}") from None
