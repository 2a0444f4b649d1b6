"""Compare runs side by side: a summary table plus overlaid latency and throughput figures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lambdakit.errors import InvalidInput
from lambdakit.results import metrics
from lambdakit.results.plots import EMPTY_NOTE, InlineFigure
from lambdakit.results.result import RunResult

__all__ = ["Comparison", "compare"]


class Comparison(NamedTuple):
    """What `compare()` returns; unpacks as `summary, latency, throughput = compare(...)`."""

    summary: pd.DataFrame  # one row per summary key, one column per run label
    latency: Figure  # latency ECDF of each run, overlaid
    throughput: Figure  # records/s over time of each run, overlaid


def _label(result: RunResult, position: int) -> str:
    meta = result.meta
    name = str(meta.get("function") or f"run {position + 1}")
    return f"{name}:{meta['qualifier']}" if meta.get("qualifier") else name


def _labels(results: Sequence[RunResult], labels: Sequence[str] | None) -> list[str]:
    if labels is not None:
        names = [str(label) for label in labels]
        if len(names) != len(results):
            raise InvalidInput(f"compare got {len(results)} results but {len(names)} labels")
        if len(set(names)) != len(names):
            raise InvalidInput(f"compare labels must be distinct, got {names}")
        return names
    names = [_label(r, i) for i, r in enumerate(results)]
    # Same function twice (two batch sizes, say): number them so columns stay distinct.
    if len(set(names)) != len(names):
        names = [f"{name} #{i + 1}" for i, name in enumerate(names)]
    return names


def _note_if_empty(ax: Any, drew: bool) -> None:
    if not drew:
        ax.text(0.5, 0.5, EMPTY_NOTE, transform=ax.transAxes, ha="center", va="center")


def compare(*results: RunResult, labels: Sequence[str] | None = None) -> Comparison:
    """Side-by-side summaries and overlaid latency/throughput figures of several runs.

    >>> table, latency_fig, throughput_fig = compare(live, beta, labels=["live", "beta"])
    ... # doctest: +SKIP
    """
    if not results:
        raise InvalidInput("compare needs at least one RunResult")
    for position, result in enumerate(results):
        if not isinstance(result, RunResult):
            raise InvalidInput(f"compare argument {position + 1} is {type(result)}, not RunResult")
    names = _labels(results, labels)
    summary = pd.DataFrame(
        {name: pd.Series(r.summary(), dtype=object) for name, r in zip(names, results, strict=True)}
    )

    latency = InlineFigure(figsize=(8, 4), layout="constrained")
    ax = latency.add_subplot()
    drew = False
    for name, result in zip(names, results, strict=True):
        values = np.sort(pd.to_numeric(result.attempts["latency_s"]).dropna().to_numpy(float))
        if values.size:
            p50 = metrics.latency_percentiles(values)[0]
            y = np.arange(1, values.size + 1) / values.size
            ax.step(values, y, where="post", label=f"{name} (p50 {p50:.3g} s)")
            drew = True
    _note_if_empty(ax, drew)
    ax.set(xlabel="latency (s)", ylabel="fraction of attempts ≤ x", title="Latency ECDF by run")
    if drew:
        ax.legend(loc="lower right", fontsize="small")

    throughput = InlineFigure(figsize=(8, 4), layout="constrained")
    ax = throughput.add_subplot()
    drew = False
    longest = max(
        (float(pd.to_numeric(r.attempts["end_s"]).max()) for r in results if len(r.attempts)),
        default=0.0,
    )
    # One bin width for every run, so their lines are comparable point by point, and no
    # shorter than the slower run's median latency, so neither saw-tooths to 0.
    slowest = max((metrics.median_latency(r.attempts) for r in results), default=0.0)
    width = metrics.time_bin_width(longest, min_width_s=slowest)
    for name, result in zip(names, results, strict=True):
        series = metrics.throughput(result.attempts, bin_s=width)
        if len(series):
            ax.plot(
                series["bin_start_s"] + width / 2, series["records_per_s"], "-o", ms=3, label=name
            )
            drew = True
    _note_if_empty(ax, drew)
    ax.set(
        xlabel="seconds since run start",
        ylabel="records/s (completed)",
        title=f"Throughput by run ({width:g} s bins)",
    )
    if drew:
        ax.legend(loc="upper right", fontsize="small")
    return Comparison(summary, latency, throughput)
