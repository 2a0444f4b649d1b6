"""The numbers behind the plots: per-attempt facts, time bins and batch windows of a run."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from lambdakit.errors import InvalidInput
from lambdakit.invocation import OK, OUTCOMES, REPORTED_FAILURE

__all__ = [
    "FAILURE_CLASSES",
    "batch_window",
    "error_breakdown",
    "failed_item_counts",
    "in_flight",
    "latency_percentiles",
    "ok_record_counts",
    "rolling_latency",
    "throughput",
    "time_bin_width",
]

FAILURE_CLASSES: tuple[str, ...] = tuple(o for o in OUTCOMES if o != OK)

# Bin widths that read well on an axis ("every 2 s", "every 5 min").
_NICE_WIDTHS: Sequence[float] = (
    *(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
    *(1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400),
)


def failed_item_counts(attempts: pd.DataFrame) -> pd.Series:
    """Records that failed inside each delivered attempt (`failed_items` holds a count or list)."""

    def count(value: object) -> int:
        if value is None:
            return 0
        if isinstance(value, (list, tuple, np.ndarray)):
            return len(value)
        if isinstance(value, float) and math.isnan(value):
            return 0
        return int(value)  # type: ignore[call-overload]

    return attempts["failed_items"].map(count).astype(np.int64)


def ok_record_counts(attempts: pd.DataFrame) -> pd.Series:
    """Records each attempt completed successfully (partial batch replies count their rest)."""
    failed = failed_item_counts(attempts)
    outcome = attempts["outcome"]
    delivered = (outcome == OK) | ((outcome == REPORTED_FAILURE) & (failed > 0))
    records = pd.to_numeric(attempts["records"], errors="coerce").fillna(0).astype(np.int64)
    return ((records - failed).clip(lower=0) * delivered).astype(np.int64)


def latency_percentiles(latencies: pd.Series | np.ndarray) -> tuple[float, float, float]:
    """p50, p95, p99 of latencies (linear interpolation); NaN when there are none."""
    values = pd.to_numeric(pd.Series(latencies), errors="coerce").dropna().to_numpy(float)
    if values.size == 0:
        return (math.nan, math.nan, math.nan)
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return (float(p50), float(p95), float(p99))


def time_bin_width(elapsed_s: float, target_bins: int = 40) -> float:
    """A readable bin width giving about `target_bins` bins over `elapsed_s` (at least 2)."""
    if not math.isfinite(elapsed_s) or elapsed_s <= 0:
        return 1.0
    ideal = elapsed_s / max(int(target_bins), 2)
    return float(next((w for w in _NICE_WIDTHS if w >= ideal), _NICE_WIDTHS[-1]))


def throughput(attempts: pd.DataFrame, bin_s: float | None = None) -> pd.DataFrame:
    """Records/s and invocations/s per time bin, each attempt counted in its end's bin.

    Columns: bin_start_s, bin_end_s, records (completed successfully), invocations,
    records_per_s, invocations_per_s. Empty when there are no attempts.
    """
    columns = ["bin_start_s", "bin_end_s", "records", "invocations"]
    columns += ["records_per_s", "invocations_per_s"]
    ends = pd.to_numeric(attempts["end_s"], errors="coerce")
    if ends.notna().sum() == 0:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in columns})
    last = float(ends.max())
    width = float(bin_s) if bin_s is not None else time_bin_width(last)
    if width <= 0:
        raise InvalidInput(f"bin_s must be positive, got {bin_s!r}")
    n_bins = max(math.ceil(last / width), 1)
    # An attempt ending exactly on an edge belongs to the bin it closes (except at 0).
    index = np.clip(np.ceil(ends.to_numpy(float) / width) - 1, 0, n_bins - 1)
    valid = ~np.isnan(index)
    index = index[valid].astype(np.int64)
    records = np.bincount(index, ok_record_counts(attempts)[valid], minlength=n_bins)
    invocations = np.bincount(index, minlength=n_bins).astype(float)
    starts = np.arange(n_bins) * width
    return pd.DataFrame(
        {
            "bin_start_s": starts,
            "bin_end_s": starts + width,
            "records": records,
            "invocations": invocations,
            "records_per_s": records / width,
            "invocations_per_s": invocations / width,
        }
    )


def batch_window(n_batches: int, window: int | None = None, target: int = 30) -> int:
    """Batches per window: `window` if given, else enough to make about `target` windows."""
    if window is not None:
        if int(window) < 1:
            raise InvalidInput(f"window must be at least 1 batch, got {window!r}")
        return int(window)
    return max(1, math.ceil(n_batches / target))


def error_breakdown(attempts: pd.DataFrame, window: int | None = None) -> pd.DataFrame:
    """Per batch window: invocations, retries and failed attempts by outcome class.

    Rows are windows of `window` consecutive batch indices (automatic when None);
    columns: window_start, window_end (inclusive), invocations, retries, then one count
    column per failure class in FAILURE_CLASSES. Windows with no attempts are omitted.
    """
    columns = ["window_start", "window_end", "invocations", "retries", *FAILURE_CLASSES]
    if attempts.empty:
        return pd.DataFrame({c: pd.Series(dtype=np.int64) for c in columns})
    batch = attempts["batch"].astype(np.int64)
    width = batch_window(int(batch.max()) + 1, window)
    start = (batch // width) * width
    frame = pd.DataFrame(
        {
            "window_start": start,
            "invocations": 1,
            "retries": (attempts["attempt"].astype(np.int64) > 1).astype(np.int64),
            **{c: (attempts["outcome"] == c).astype(np.int64) for c in FAILURE_CLASSES},
        }
    )
    out = frame.groupby("window_start", sort=True).sum().reset_index()
    out.insert(1, "window_end", out["window_start"] + width - 1)
    return out[columns].astype(np.int64)


def rolling_latency(attempts: pd.DataFrame, window: int | None = None) -> pd.DataFrame:
    """Attempts in (batch, attempt) order with rolling p50 and p95 of latency_s."""
    ordered = attempts.sort_values(["batch", "attempt"], kind="stable").reset_index(drop=True)
    latency = pd.to_numeric(ordered["latency_s"], errors="coerce")
    size = int(window) if window is not None else max(5, len(ordered) // 20)
    rolling = latency.rolling(size, min_periods=1)
    return pd.DataFrame(
        {
            "batch": ordered["batch"].astype(np.int64),
            "attempt": ordered["attempt"].astype(np.int64),
            "latency_s": latency,
            "failed": ordered["outcome"] != OK,
            "p50": rolling.quantile(0.5),
            "p95": rolling.quantile(0.95),
        }
    )


def in_flight(attempts: pd.DataFrame) -> pd.DataFrame:
    """Attempts in flight after each start or end event (columns t_s, in_flight)."""
    starts = pd.to_numeric(attempts["start_s"], errors="coerce").dropna().to_numpy(float)
    ends = pd.to_numeric(attempts["end_s"], errors="coerce").dropna().to_numpy(float)
    times = np.concatenate([starts, ends])
    steps = np.concatenate([np.ones(starts.size), -np.ones(ends.size)])
    # At equal times, ends go first: a slot freed and reused at once is not two in flight.
    order = np.lexsort((steps, times))
    return pd.DataFrame(
        {"t_s": times[order], "in_flight": np.cumsum(steps[order]).astype(np.int64)}
    )
