"""A run's report: credential scrubbing, manifest.json, the report folder and the HTML card."""

from __future__ import annotations

import html
import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lambdakit.errors import InvalidInput
from lambdakit.storage import encode_meta

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lambdakit.results import RunResult

__all__ = ["REDACTED", "manifest", "save_report", "scrub", "summary_card"]

REDACTED = "***redacted***"
_SECRET_KEY = re.compile(
    r"(secret|token|password|passwd|credential|access[_-]?key|session|private[_-]?key|auth)",
    re.IGNORECASE,
)
_ACCESS_KEY_ID = re.compile(r"\b(AKIA|ASIA|AROA|AIDA)[A-Z0-9]{16}\b")
_SECRET_VALUE = re.compile(r"^[A-Za-z0-9/+]{40}$")
_LONG_TOKEN = re.compile(r"^[A-Za-z0-9/+=]{100,}$")
# Not RFC userinfo: a pasted secret key may hold a raw "/", so take everything up to "@".
_URL_USERINFO = re.compile(r"(://)[^@\s]+@")


def _secret_looking(text: str) -> bool:
    # A 40-character secret key mixes cases and digits; hex digests and words do not.
    if _SECRET_VALUE.match(text):
        return bool(re.search(r"[a-z]", text) and re.search(r"[A-Z]", text))
    return bool(_LONG_TOKEN.match(text))


def scrub(value: Any) -> Any:
    """A copy of `value` with anything that looks like an AWS credential redacted.

    Keys naming a secret, token, password, session or access key lose their value; access
    key ids, 40-character secret keys, session tokens and passwords in URLs are replaced
    wherever they appear.
    """
    if isinstance(value, dict):
        return {
            k: REDACTED if _SECRET_KEY.search(str(k)) and v not in (None, "") else scrub(v)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(scrub(v) for v in value)
    if isinstance(value, str):
        if _secret_looking(value):
            return REDACTED
        value = _URL_USERINFO.sub(rf"\g<1>{REDACTED}@", value)
        return _ACCESS_KEY_ID.sub(REDACTED, value)
    return value


def manifest(result: RunResult) -> dict[str, Any]:
    """What ran, on what, when: the contents of a report's manifest.json (no credentials)."""
    from lambdakit import __version__

    meta = result.meta
    document = {
        "function": meta.get("function"),
        "function_arn": meta.get("function_arn"),
        "qualifier": meta.get("qualifier"),
        "executed_versions": list(meta.get("executed_versions") or []),
        "code_sha256": meta.get("code_sha256"),
        "params": meta.get("params") or {},
        "dataset_fingerprint": meta.get("dataset_fingerprint"),
        "lambdakit_version": meta.get("lambdakit_version") or __version__,
        "started_at": meta.get("started_at"),
        "ended_at": meta.get("ended_at"),
        "elapsed_s": result.elapsed_s(),
        "cancelled": bool(meta.get("cancelled", False)),
        "summary": result.summary(),
    }
    return _plain_json(scrub(document))


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


def _figures(result: RunResult) -> dict[str, Callable[[], Figure]]:
    from lambdakit import plots

    return {
        "dashboard": lambda: plots.dashboard(result),
        "throughput": lambda: plots.throughput(result),
        "latency": lambda: plots.latency(result),
        "latency_distribution": lambda: plots.latency_distribution(result),
        "errors": lambda: plots.error_rate(result),
        "timeline": lambda: plots.timeline(result),
        "concurrency": lambda: plots.concurrency(result),
        "cost": lambda: plots.cost(result),
    }


def save_report(result: RunResult, directory: str | os.PathLike[str]) -> Path:
    """Write the report folder: one PNG per plot, batches/attempts/errors as Parquet and
    CSV, and manifest.json. Returns the folder."""
    from lambdakit.plots import to_png

    folder = Path(directory)
    if folder.exists() and not folder.is_dir():
        raise InvalidInput(f"report folder {folder} is a file")
    folder.mkdir(parents=True, exist_ok=True)
    for name, make in _figures(result).items():
        (folder / f"{name}.png").write_bytes(to_png(make()))
    tables = {"batches": result.batches, "attempts": result.attempts, "errors": result.errors()}
    for name, table in tables.items():
        table.to_csv(folder / f"{name}.csv", index=False)
        # Parquet needs one type per column; error logs and failed_items are kept as text.
        text = {c: table[c].map(_cell_text) for c in table.columns if table[c].dtype == object}
        table.assign(**text).to_parquet(folder / f"{name}.parquet", engine="pyarrow")
    (folder / "manifest.json").write_text(json.dumps(manifest(result), indent=2) + "\n")
    return folder


def _cell_text(value: Any) -> str | None:
    return None if value is None else value if isinstance(value, str) else str(value)


def _fmt(value: float, unit: str = "", digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:,.{digits}g}{unit}"


def summary_card(result: RunResult) -> str:
    """A compact HTML card: counts, throughput, latency, errors, cache hits, cost."""
    s = result.summary()
    e = html.escape
    name = str(result.meta.get("function") or "?")
    if result.meta.get("qualifier"):
        name += f":{result.meta['qualifier']}"
    outcomes = result.attempts["outcome"].value_counts()
    breakdown = ", ".join(f"{e(str(k))} {int(v)}" for k, v in outcomes.items() if k != "ok")
    try:
        cost = result.cost()
        cost_text = f"${cost['usd']:.6f} ({cost['gb_seconds']:.3f} GB-s, {cost['requests']} req)"
    except InvalidInput:  # an unpriced region: the card still renders
        cost_text = f"n/a (no built-in prices for region {e(str(result.region))})"
    batches = max(s["batches"], 1)
    ok = int(result.batches["ok_records"].fillna(0).sum())
    not_run = s["records"] - ok - s["failed_records"] - s["rejected_records"]
    rows = [
        (
            "records",
            f"{s['records']:,} · failed {s['failed_records']:,} · "
            f"rejected {s['rejected_records']:,}"
            + (f" · not run {not_run:,}" if not_run > 0 else ""),
        ),
        ("batches", f"{s['batches']:,} · ok {s['ok_batches']:,} · failed {s['failed_batches']:,}"),
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
            "errors",
            f"{s['error_rate']:.1%} of invocations" + (f": {breakdown}" if breakdown else ""),
        ),
        (
            "cache hits",
            f"{s['cached_batches']:,} of {s['batches']:,} batches "
            f"({s['cached_batches'] / batches:.0%})",
        ),
        ("estimated cost", cost_text),
    ]
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
