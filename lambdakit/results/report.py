"""A run's report: manifest.json, the report folder and the HTML summary card."""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lambdakit.errors import InvalidInput
from lambdakit.results.metrics import share_text
from lambdakit.results.redact import scrub
from lambdakit.results.storage import encode_meta

if TYPE_CHECKING:
    from lambdakit.results.tables import ResultView

__all__ = ["layers_text", "manifest", "save_report", "summary_card"]


def manifest(result: ResultView) -> dict[str, Any]:
    """What ran, on what, when: the contents of a report's manifest.json (no credentials)."""
    from lambdakit import __version__

    meta = result.meta
    document = {
        "function": meta.get("function"),
        "function_arn": meta.get("function_arn"),
        "qualifier": meta.get("qualifier"),
        "executed_versions": list(meta.get("executed_versions") or []),
        "code_sha256": meta.get("code_sha256"),
        "layers": meta.get("layers") or [],
        "params": meta.get("params") or {},
        "dataset_fingerprint": meta.get("dataset_fingerprint"),
        # What was read: a file's kind and path, or the type of in-memory data; its length
        # when known, and how many of its records were read.
        "source": meta.get("source"),
        "records_read": meta.get("records_read"),
        "lambdakit_version": meta.get("lambdakit_version") or __version__,
        "started_at": meta.get("started_at"),
        "ended_at": meta.get("ended_at"),
        "elapsed_s": result.elapsed_s(),
        "cancelled": bool(meta.get("cancelled", False)),
        "summary": result.summary(),
    }
    return _plain_json(scrub(document))


def layers_text(layers: Any) -> str:
    """The layers a run's function used, short ("deps:3, tools:1"); "" when none."""

    def short(arns: Any) -> str:
        return ", ".join(":".join(str(arn).split(":")[-2:]) for arn in arns)

    if isinstance(layers, dict):
        return "; ".join(f"version {v}: {short(arns) or 'none'}" for v, arns in layers.items())
    return short(layers or [])


def _plain_json(value: Any) -> Any:
    """JSON-ready: timestamps as ISO text, NaN as null, settings objects as their repr."""
    if isinstance(value, dict):
        return {str(k): _plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    encoded = encode_meta(value)
    if isinstance(encoded, dict) and len(encoded) == 1:  # a tagged scalar
        return next(iter(encoded.values()))
    return encoded


def save_report(
    result: ResultView,
    directory: str | os.PathLike[str],
    *,
    extra: dict[str, Any] | None = None,
    shared: bool = False,
    **s3: Any,
) -> Path | str:
    """Write the report folder: one PNG per plot, batches/attempts/errors as Parquet and
    CSV, manifest.json (with `extra` merged in, scrubbed) and the saved result (`result/`,
    which `RunResult.load(folder)` reads). Returns the folder.

    An s3:// URL gets the same layout under it (`s3`: endpoint_url, region, profile, client).
    The folder is the user's alone (0700, files 0600) unless `shared` (then the umask's)."""
    from lambdakit.results.folders import make_folder, seal
    from lambdakit.results.plots import PLOTS, to_png
    from lambdakit.results.remote import is_remote, staged
    from lambdakit.results.storage import REPORT_RESULT, save_result

    if extra is not None and not isinstance(extra, dict):
        raise InvalidInput(f"extra must be a dict merged into manifest.json, got {extra!r}")
    if is_remote(directory):
        with staged(str(directory), **s3) as staging:
            save_report(result, staging, extra=extra, shared=shared)
        return str(directory)

    folder = Path(directory)
    if folder.exists() and not folder.is_dir():
        raise InvalidInput(f"report folder {folder} is a file")
    make_folder(folder, shared=shared)
    for name, make in PLOTS.items():
        (folder / f"{name}.png").write_bytes(to_png(make(result)))
    tables = {"batches": result.batches, "attempts": result.attempts, "errors": result.errors()}
    for name, table in tables.items():
        table.to_csv(folder / f"{name}.csv", index=False)
        # Parquet needs one type per column; error logs and failed_items are kept as text.
        text = {c: table[c].map(_cell_text) for c in table.columns if table[c].dtype == object}
        table.assign(**text).to_parquet(folder / f"{name}.parquet", engine="pyarrow")
    document = manifest(result)
    if extra:
        document.update(_plain_json(scrub(extra)))
    (folder / "manifest.json").write_text(json.dumps(document, indent=2) + "\n")
    save_result(result, folder / REPORT_RESULT, shared=shared)
    seal(folder, shared=shared)
    return folder


def _cell_text(value: Any) -> str | None:
    return None if value is None else value if isinstance(value, str) else str(value)


def _fmt(value: float, unit: str = "", digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:,.{digits}g}{unit}"


_ERROR_STYLE = "color:#b00020;font-weight:bold"


def summary_card(result: ResultView) -> str:
    """A compact HTML card: counts, the failed-record rate, throughput, latency, cost."""
    s = result.summary()
    e = html.escape
    name = str(result.meta.get("function") or "?")
    if result.meta.get("qualifier"):
        name += f":{result.meta['qualifier']}"
    outcomes = result.attempts["outcome"].value_counts()
    breakdown = ", ".join(f"{e(str(k))} {int(v)}" for k, v in outcomes.items() if k != "ok")
    # As summary() counts: a superseded attempt (hedge=) lost a race, it did not fail.
    failed_attempts = int((~result.attempts["outcome"].isin(("ok", "superseded"))).sum())
    try:
        cost = result.cost()
        cost_text = f"${cost['usd']:.6f} ({cost['gb_seconds']:.3f} GB-s, {cost['requests']} req)"
    except InvalidInput:  # an unpriced region: the card still renders
        cost_text = f"n/a (no built-in prices for region {e(str(result.region))})"
    batches = max(s["batches"], 1)
    headline = e(share_text(s["failed_records"], s["records"]))
    not_run = s["not_run_records"]
    rows = [
        (
            "records",
            f"{s['records']:,} · failed {s['failed_records']:,} · "
            f"rejected {s['rejected_records']:,}"
            + (f" · not run {not_run:,}" if not_run > 0 else ""),
        ),
        (
            "failed records",
            # The headline: record-level, in the error colour when any record failed.
            f"<span style='{_ERROR_STYLE}'>{headline}</span>" if s["failed_records"] else headline,
        ),
        ("batches", f"{s['batches']:,} · {result.batch_counts_text(' · ')}"),
        (
            "invocations",
            f"{s['invocations']:,} · retries {s['retries']:,} · throttles {s['throttles']:,}",
        ),
        (
            "throughput",
            f"{_fmt(s['records_per_s'])} records/s · "
            f"{_fmt(s['invocations_per_s'])} invocations/s in {_fmt(s['elapsed_s'], ' s')}",
        ),
        (
            "latency",
            f"p50 {_fmt(s['latency_p50_s'], ' s')} · p95 {_fmt(s['latency_p95_s'], ' s')}"
            f" · p99 {_fmt(s['latency_p99_s'], ' s')}",
        ),
        (
            "failed attempts",
            e(share_text(failed_attempts, s["invocations"], "invocations"))
            + (f": {breakdown}" if breakdown else ""),
        ),
        (
            "cache hits",
            f"{s['cached_batches']:,} of {s['batches']:,} batches "
            f"({s['cached_batches'] / batches:.0%})",
        ),
        ("estimated cost", cost_text),
    ]
    layers = layers_text(result.meta.get("layers"))
    if layers:
        rows.insert(0, ("layers", e(layers)))
    if result.meta.get("cancelled"):
        # A partial result must not read like a complete one (the form shows it after Cancel).
        reason = e(str(result.meta.get("stop_reason") or "cancelled"))
        rows.append(("stopped", f"stopped ({reason}) before every batch ran"))
    body = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{e(k)}</th><td>{v}</td></tr>"
        for k, v in rows
    )
    style = "border:1px solid #ccc;border-radius:6px;padding:8px;display:inline-block"
    title = f"<b>lambdakit run · {e(name)}</b>"
    return f"<div class='lambdakit-run' style='{style}'>{title}<table>{body}</table></div>"
