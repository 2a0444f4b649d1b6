"""The numbers behind the plots and the headlines: per-attempt facts, time bins, batch
windows of a run, and how a share (the failed-record rate) is written."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from lambdakit.errors import InvalidInput
from lambdakit.invocation import OK, REPORTED_FAILURE

__all__ = [
    "batch_window",
    "failed_item_counts",
    "in_flight",
    "latency_percentiles",
    "median_latency",
    "ok_record_counts",
    "percent",
    "rate",
    "record_failures",
    "rolling_latency",
    "share_text",
    "throughput",
    "time_bin_width",
]

# Bin widths that read well on an axis ("every 2 s", "every 5 min").
_NICE_WIDTHS: Sequence[float] = (
    *(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
    *(1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400),
)


def rate(part: float, whole: float) -> float:
    """`part / whole`, 0.0 when `whole` is 0 (no records, no invocations)."""
    return float(part) / float(whole) if whole else 0.0


def percent(share: float) -> str:
    """A share as a percentage that never rounds a failure away: "1.7%", "<0.1%", ">99.9%"."""
    if not math.isfinite(share) or share <= 0:
        return "0%"
    if share >= 1:
        return "100%"
    if share < 0.001:
        return "<0.1%"
    if share > 0.999:
        return ">99.9%"
    return f"{share:.1%}"


def share_text(part: int, whole: int, noun: str = "") -> str:
    """ "5 of 300 (1.7%)": how a view says a share, e.g. failed records of records."""
    return f"{part:,} of {whole:,}{' ' + noun if noun else ''} ({percent(rate(part, whole))})"


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


def time_bin_width(elapsed_s: float, target_bins: int = 40, min_width_s: float = 0.0) -> float:
    """A readable bin width giving about `target_bins` bins over `elapsed_s` (at least 2),
    and no shorter than `min_width_s`."""
    if not math.isfinite(elapsed_s) or elapsed_s <= 0:
        return 1.0
    ideal = elapsed_s / max(int(target_bins), 2)
    if math.isfinite(min_width_s):
        ideal = max(ideal, min_width_s)
    return float(next((w for w in _NICE_WIDTHS if w >= ideal), _NICE_WIDTHS[-1]))


def median_latency(attempts: pd.DataFrame) -> float:
    """The median attempt latency in seconds (0.0 without attempts)."""
    latencies = pd.to_numeric(attempts["latency_s"], errors="coerce").dropna()
    return float(latencies.median()) if len(latencies) else 0.0


def throughput(attempts: pd.DataFrame, bin_s: float | None = None) -> pd.DataFrame:
    """Records/s and invocations/s per time bin, each attempt spread over its span.

    An attempt's completed records (and its one invocation) are spread evenly from its
    start to its end, so a bin holds the work done in it: a steady run reads steady
    however its attempt ends bunch up, instead of saw-toothing between waves. An attempt
    of no duration counts in the bin its end closes. Without `bin_s`, bins are no shorter
    than the median latency and tile the run exactly up to its last attempt's end (a last
    bin cut short would read as a drop).

    Columns: bin_start_s, bin_end_s, records (completed successfully), invocations,
    records_per_s, invocations_per_s. Empty when there are no attempts.
    """
    columns = ["bin_start_s", "bin_end_s", "records", "invocations"]
    columns += ["records_per_s", "invocations_per_s"]
    ends = pd.to_numeric(attempts["end_s"], errors="coerce").to_numpy(float)
    valid = ~np.isnan(ends)
    if not valid.any():
        return pd.DataFrame({c: pd.Series(dtype=float) for c in columns})
    last = float(ends[valid].max())
    if bin_s is not None:
        width = float(bin_s)
        if not width > 0:
            raise InvalidInput(f"bin_s must be positive, got {bin_s!r}")
        n_bins = max(math.ceil(last / width), 1)
    else:
        width = time_bin_width(last, min_width_s=median_latency(attempts))
        n_bins = max(math.floor(last / width), 1)
        width = last / n_bins if last > 0 else width
    starts = pd.to_numeric(attempts["start_s"], errors="coerce").to_numpy(float)
    starts = np.where(np.isnan(starts), ends, np.clip(starts, 0.0, None))[valid]
    ends = ends[valid]
    edges = np.arange(n_bins + 1) * width
    ok = ok_record_counts(attempts).to_numpy(float)[valid]
    records = _spread(starts, ends, ok, edges)
    invocations = _spread(starts, ends, np.ones(ends.size), edges)
    return pd.DataFrame(
        {
            "bin_start_s": edges[:-1],
            "bin_end_s": edges[1:],
            "records": records,
            "invocations": invocations,
            "records_per_s": records / width,
            "invocations_per_s": invocations / width,
        }
    )


def _spread(
    starts: np.ndarray, ends: np.ndarray, amounts: np.ndarray, edges: np.ndarray
) -> np.ndarray:
    """Per bin of `edges`: each amount spread evenly over its [start, end] (exact)."""
    n_bins = edges.size - 1
    width = edges[1] - edges[0]
    spans = ends - starts
    instant = spans <= 0
    # An instant attempt ending exactly on an edge belongs to the bin it closes.
    index = np.clip(np.ceil(ends[instant] / width) - 1, 0, n_bins - 1).astype(np.int64)
    per_bin = np.bincount(index, amounts[instant], minlength=n_bins).astype(float)
    timed = ~instant
    if timed.any():
        # The amount done by time t is piecewise linear: integrate the rate between events.
        density = amounts[timed] / spans[timed]
        times = np.concatenate([starts[timed], ends[timed]])
        steps = np.concatenate([density, -density])
        order = np.argsort(times, kind="stable")
        times, steps = times[order], steps[order]
        rate = np.cumsum(steps)
        done = np.concatenate([[0.0], np.cumsum(rate[:-1] * np.diff(times))])
        per_bin += np.diff(np.interp(edges, times, done))
    return np.clip(per_bin, 0.0, None)  # rounding can leave an empty bin at -1e-14


def batch_window(n_batches: int, window: int | None = None, target: int = 30) -> int:
    """Batches per window: `window` if given, else enough to make about `target` windows."""
    if window is not None:
        if int(window) < 1:
            raise InvalidInput(f"window must be at least 1 batch, got {window!r}")
        return int(window)
    return max(1, math.ceil(n_batches / target))


def record_failures(
    attempts: pd.DataFrame, batches: pd.DataFrame | None = None, window: int | None = None
) -> pd.DataFrame:
    """Per batch window: its records, those failed for good, and those ok after a retry.

    `batches` gives each batch's verdict (RunResult.batches, or rows of batch, records,
    failed_records and optionally ok_records, as a live dashboard gathers them); without
    it a batch's last attempt is its verdict. A record "ok after a retry" failed in some
    attempt (a throttle, an error, a reported item) and then succeeded; retries resend only
    what failed, so per batch that is the most records one attempt failed, less those that
    failed for good or never ran (a cancelled batch).

    Columns: window_start, window_end (inclusive), records, failed_records,
    retried_ok_records, then failed_share and retried_ok_share (of the window's records).
    Windows without records are omitted.
    """
    columns = ["window_start", "window_end", "records", "failed_records", "retried_ok_records"]
    shares = ["failed_share", "retried_ok_share"]
    per_attempt = pd.DataFrame(
        {
            "batch": pd.to_numeric(attempts["batch"], errors="coerce"),
            "attempt": pd.to_numeric(attempts["attempt"], errors="coerce"),
            "records": pd.to_numeric(attempts["records"], errors="coerce").fillna(0),
        }
    )
    if len(attempts):
        per_attempt["failed"] = per_attempt["records"] - ok_record_counts(attempts)
    else:
        per_attempt["failed"] = pd.Series(dtype=float)
    per_attempt = per_attempt.dropna(subset=["batch"]).astype({"batch": np.int64})
    by_batch = per_attempt.sort_values("attempt", kind="stable").groupby("batch")
    ever_failed = by_batch["failed"].max()
    if batches is None:
        verdict = pd.DataFrame(
            {"records": by_batch["records"].first(), "failed_records": by_batch["failed"].last()}
        )
        verdict["ok_records"] = verdict["records"] - verdict["failed_records"]
    else:
        verdict = pd.DataFrame(
            {
                "batch": pd.to_numeric(batches["batch"], errors="coerce"),
                "records": pd.to_numeric(batches["records"], errors="coerce").fillna(0),
                "failed_records": pd.to_numeric(batches["failed_records"], errors="coerce"),
            }
        ).dropna(subset=["batch"])
        verdict["failed_records"] = verdict["failed_records"].fillna(0)
        if "ok_records" in batches:
            ok = pd.to_numeric(batches["ok_records"], errors="coerce")
            verdict["ok_records"] = ok.reindex(verdict.index).fillna(0)
        else:
            verdict["ok_records"] = verdict["records"] - verdict["failed_records"]
        verdict = verdict.astype({"batch": np.int64}).groupby("batch").sum()
    if verdict.empty or verdict["records"].sum() == 0:
        return pd.DataFrame({c: pd.Series(dtype=np.int64) for c in columns + shares})
    not_run = (verdict["records"] - verdict["ok_records"] - verdict["failed_records"]).clip(0)
    ever = ever_failed.reindex(verdict.index).fillna(0).clip(upper=verdict["records"])
    recovered = (ever - verdict["failed_records"] - not_run).clip(0, verdict["ok_records"])
    width = batch_window(int(verdict.index.max()) + 1, window)
    frame = pd.DataFrame(
        {
            "window_start": (verdict.index.to_numpy() // width) * width,
            "records": verdict["records"].to_numpy(),
            "failed_records": verdict["failed_records"].to_numpy(),
            "retried_ok_records": recovered.to_numpy(),
        }
    )
    out = frame.groupby("window_start", sort=True).sum().reset_index()
    out.insert(1, "window_end", out["window_start"] + width - 1)
    out = out[out["records"] > 0][columns].astype(np.int64).reset_index(drop=True)
    out["failed_share"] = out["failed_records"] / out["records"]
    out["retried_ok_share"] = out["retried_ok_records"] / out["records"]
    return out


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
