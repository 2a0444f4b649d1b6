"""RunResult: the complete record of a run (attempts, batches, failures, outputs), summarised."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lambdakit.errors import InvalidInput
from lambdakit.invocation import OK
from lambdakit.results.metrics import latency_percentiles
from lambdakit.results.outputs import OutputStore

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lambdakit.results.cost import PriceTable

__all__ = [
    "ATTEMPT_COLUMNS",
    "BATCH_COLUMNS",
    "FAILURE_COLUMNS",
    "REJECTION_COLUMNS",
    "SUMMARY_KEYS",
    "OutputStore",
    "RunResult",
]

_F, _I, _O, _B, _T = "float64", "int64", "object", "bool", "datetime64[ns, UTC]"
# Column -> dtype used when a table arrives empty, so empty runs keep a usable schema.
ATTEMPT_COLUMNS: dict[str, str] = {
    **{"batch": _I, "attempt": _I, "records": _I, "payload_bytes": _I},
    **{"started_at": _T, "ended_at": _T, "start_s": _F, "end_s": _F, "latency_s": _F},
    **{"outcome": _O, "error_type": _O, "error_message": _O, "http_status": _F},
    **{"throttled": _B, "retry_after_s": _F, "executed_version": _O, "request_id": _O},
    **{"failed_items": _O, "duration_ms": _F, "billed_duration_ms": _F, "memory_size_mb": _F},
    **{"max_memory_used_mb": _F, "init_duration_ms": _F, "cold_start": _B, "slot": _F},
    **{"in_flight_limit": _F, "log_tail": _O},
}
BATCH_COLUMNS: dict[str, str] = {
    **{"batch": _I, "first_record": _I, "records": _I, "payload_bytes": _I, "status": _O},
    **{"attempts": _I, "executed_version": _O, "ok_records": _I, "failed_records": _I},
    **{"start_s": _F, "end_s": _F, "latency_s": _F, "error_type": _O, "error_message": _O},
    "cached": _B,
}
FAILURE_COLUMNS: dict[str, str] = {
    **{"record": _I, "batch": _I, "error_type": _O, "error_message": _O},
    **{"log_tail": _O, "input": _O},
}
REJECTION_COLUMNS: dict[str, str] = {"record": _I, "reason": _O, "input": _O}
SUMMARY_KEYS: tuple[str, ...] = (
    *("records", "batches", "ok_batches", "failed_batches", "cached_batches"),
    *("rejected_records", "failed_records", "invocations", "retries", "throttles"),
    *("elapsed_s", "records_per_s", "invocations_per_s"),
    *("latency_p50_s", "latency_p95_s", "latency_p99_s", "error_rate"),
)
_TEXT_ERROR_COLUMNS = ("error_type", "error_message", "log_excerpt")
_LOG_NOISE = ("START RequestId:", "END RequestId:", "REPORT RequestId:", "INIT_START")


def _conform(frame: pd.DataFrame, schema: dict[str, str], name: str) -> pd.DataFrame:
    """Check a table has the documented columns; give an empty one the full schema."""
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInput(f"RunResult {name} must be a pandas DataFrame, got {type(frame)}")
    missing = [c for c in schema if c not in frame.columns]
    if missing and len(frame):
        raise InvalidInput(f"RunResult {name} lacks the columns {missing} (docs/architecture.md)")
    if not missing:
        return frame
    frame = frame.copy()
    for column in missing:
        frame[column] = pd.Series(dtype=schema[column])
    return frame[[*schema, *(c for c in frame.columns if c not in schema)]]


def _log_excerpt(log_tail: Any, lines: int = 8, chars: int = 800) -> str | None:
    """The last lines of a log tail that are not Lambda's START/END/REPORT bookkeeping."""
    if not isinstance(log_tail, str) or not log_tail.strip():
        return None
    kept = [ln for ln in log_tail.splitlines() if ln.strip() and not ln.startswith(_LOG_NOISE)]
    return "\n".join(kept[-lines:])[-chars:] or None


def _objects(values: pd.Series) -> pd.Series:
    """An object column with None (not NaN) where values are missing."""
    missing = values.isna().to_numpy()
    cells = [None if gone else v for v, gone in zip(values.to_list(), missing, strict=True)]
    return pd.Series(cells, index=values.index, dtype=object)


class RunResult:
    """Everything a run did: one row per attempt and per batch, failures, outputs, metadata.

    `attempts` and `batches` follow the columns in docs/architecture.md; `failures` has
    one row per record that failed for good, `rejections` one per record validation
    refused. `records` counts every input record, rejected ones included.
    """

    def __init__(
        self,
        *,
        attempts: pd.DataFrame,
        batches: pd.DataFrame,
        failures: pd.DataFrame,
        rejections: pd.DataFrame,
        outputs: OutputStore,
        records: int,
        meta: dict[str, Any],
    ) -> None:
        self.attempts = _conform(attempts, ATTEMPT_COLUMNS, "attempts")
        self.batches = _conform(batches, BATCH_COLUMNS, "batches")
        self.failures = _conform(failures, FAILURE_COLUMNS, "failures")
        self.rejections = _conform(rejections, REJECTION_COLUMNS, "rejections")
        if not isinstance(outputs, OutputStore):
            raise InvalidInput(f"RunResult outputs must be an OutputStore, got {type(outputs)}")
        self.store = outputs
        if int(records) < 0:
            raise InvalidInput(f"RunResult records must be >= 0, got {records!r}")
        self.records = int(records)
        self.meta = dict(meta)

    # -- counts ---------------------------------------------------------------------------

    def _status_count(self, *statuses: str) -> int:
        return int(self.batches["status"].isin(statuses).sum())

    def _ok_records(self) -> int:
        return int(pd.to_numeric(self.batches["ok_records"], errors="coerce").fillna(0).sum())

    def _failed_record_count(self) -> int:
        return int(self.failures["record"].nunique())

    def elapsed_s(self) -> float:
        """Wall time of the run: meta's elapsed_s, else the last attempt's end."""
        elapsed = self.meta.get("elapsed_s")
        if isinstance(elapsed, (int, float)) and math.isfinite(elapsed) and elapsed >= 0:
            return float(elapsed)
        ends = pd.to_numeric(self.attempts["end_s"], errors="coerce").dropna()
        return float(ends.max()) if len(ends) else 0.0

    def summary(self) -> dict[str, Any]:
        """Run totals with exactly the keys of SUMMARY_KEYS.

        - records: every input record, rejected ones included.
        - ok_batches: invoked and fully successful; cached_batches: served from the cache;
          failed_batches: `failed` or `partial` (some records failed for good).
        - failed_records: records that failed for good; rejected_records: refused by
          validation, never sent.
        - invocations: attempts made; retries: attempts after a batch's first;
          throttles: attempts answered 429.
        - records_per_s = records / elapsed_s and invocations_per_s = invocations /
          elapsed_s, end to end (0.0 for an instant run).
        - latency_p*_s: percentiles of every attempt's latency, failed ones included
          (NaN with no attempts).
        - error_rate: failed attempts / invocations, i.e. how often a call to Lambda did
          not succeed, retried ones included (0.0 with no invocations). The final
          record-level rate is failed_records / records.
        """
        attempts = self.attempts
        invocations = len(attempts)
        elapsed = self.elapsed_s()
        p50, p95, p99 = latency_percentiles(attempts["latency_s"])
        failed_attempts = int((attempts["outcome"] != OK).sum())
        values: dict[str, Any] = {
            "records": self.records,
            "batches": len(self.batches),
            "ok_batches": self._status_count("ok"),
            "failed_batches": self._status_count("failed", "partial"),
            "cached_batches": self._status_count("cached"),
            "rejected_records": int(self.rejections["record"].nunique()),
            "failed_records": self._failed_record_count(),
            "invocations": invocations,
            "retries": int((pd.to_numeric(attempts["attempt"]) > 1).sum()),
            "throttles": int(attempts["throttled"].fillna(False).astype(bool).sum()),
            "elapsed_s": elapsed,
            "records_per_s": self.records / elapsed if elapsed > 0 else 0.0,
            "invocations_per_s": invocations / elapsed if elapsed > 0 else 0.0,
            "latency_p50_s": p50,
            "latency_p95_s": p95,
            "latency_p99_s": p99,
            "error_rate": failed_attempts / invocations if invocations else 0.0,
        }
        return {key: values[key] for key in SUMMARY_KEYS}

    # -- records --------------------------------------------------------------------------

    def outputs(self) -> Iterator[Any]:
        """Iterate one output per input record in input order; None for failed/rejected."""
        return self.store.get_all(self.records)

    def errors(self) -> pd.DataFrame:
        """One row per failed or rejected record: record, batch, error_type, error_message,
        log_excerpt (rejections have error_type "Rejected", their reason and no batch)."""
        failures = self.failures
        failed = pd.DataFrame(
            {
                "record": failures["record"].astype(np.int64),
                "batch": failures["batch"].astype("Int64"),
                "error_type": _objects(failures["error_type"]),
                "error_message": _objects(failures["error_message"]),
                "log_excerpt": [_log_excerpt(v) for v in failures["log_tail"]],
            }
        )
        rejected = pd.DataFrame(
            {
                "record": self.rejections["record"].astype(np.int64),
                "batch": pd.array([pd.NA] * len(self.rejections), dtype="Int64"),
                "error_type": "Rejected",
                "error_message": _objects(self.rejections["reason"]),
                "log_excerpt": None,
            }
        )
        frames = [f for f in (failed, rejected) if len(f)] or [failed]
        table = pd.concat(frames, ignore_index=True)
        table = table.sort_values("record", kind="stable").reset_index(drop=True)
        # Text columns as objects with None, whatever string dtype pandas inferred.
        return table.assign(**{c: _objects(table[c]) for c in _TEXT_ERROR_COLUMNS})

    def failed_records(self) -> pd.Series:
        """The inputs of failed and rejected records, indexed by input position, in order.

        Pass it to `lambdakit.run` to rerun only what failed (it iterates the records).
        """
        both = pd.concat(
            [self.failures[["record", "input"]], self.rejections[["record", "input"]]],
            ignore_index=True,
        )
        both = both.drop_duplicates("record").sort_values("record", kind="stable")
        index = pd.Index(both["record"].astype(np.int64), name="record")
        return pd.Series(both["input"].to_list(), index=index, dtype=object, name="input")

    # -- cost, plots, reports --------------------------------------------------------------

    def cost(self, prices: PriceTable | str | None = None) -> dict[str, float]:
        """Estimated USD cost (see lambdakit.results.cost); prices default to the run's region."""
        from lambdakit.results.cost import PriceTable, run_cost

        table = PriceTable.coerce(prices, region=self.region)
        return run_cost(self.attempts, table, memory_mb=self.meta.get("memory_mb"))

    @property
    def region(self) -> str | None:
        """The region of the function's ARN (or meta's `region`)."""
        arn = str(self.meta.get("function_arn") or "")
        parts = arn.split(":")
        return self.meta.get("region") or (parts[3] if len(parts) > 3 and parts[3] else None)

    def plot(self, kind: str = "dashboard", **options: Any) -> Figure:
        """A Figure of the run: the dashboard, or one of its panels by name.

        `kind` is one of "dashboard", "throughput", "latency", "latency_distribution",
        "errors", "timeline", "concurrency" or "cost"; `options` go to that plot
        (e.g. `bin_s=` for throughput, `window=` for latency and errors).
        """
        from lambdakit.results.plots import by_name

        return by_name(kind)(self, **options)

    def save_report(
        self,
        directory: str | os.PathLike[str],
        *,
        extra: dict[str, Any] | None = None,
        shared: bool = False,
    ) -> Path:
        """Write PNGs, batches/attempts (Parquet + CSV) and manifest.json to `directory`.

        `extra` is merged into manifest.json (credentials scrubbed), e.g. a notebook's
        parameters: `save_report(folder, extra={"notebook": {"parameters": params}})`. The
        folder is private (0700, files 0600) unless `shared=True` (then the umask decides).
        """
        from lambdakit.results.report import save_report

        return save_report(self, directory, extra=extra, shared=shared)

    def save(self, path: str | os.PathLike[str], *, shared: bool = False) -> Path:
        """Save to a folder (Parquet tables, outputs, meta.json); `RunResult.load` reads it.

        Everything round-trips exactly, except meta values that look like credentials,
        which are redacted before they reach disk. Private (0700/0600) unless `shared`.
        """
        from lambdakit.results.storage import save_result

        return save_result(self, path, shared=shared)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RunResult:
        """Load a RunResult written by `save()`."""
        from lambdakit.results.storage import load_result

        return load_result(path)

    # -- display ---------------------------------------------------------------------------

    def __repr__(self) -> str:
        meta = self.meta
        name = str(meta.get("function") or meta.get("function_arn") or "?")
        if meta.get("qualifier"):
            name += f":{meta['qualifier']}"
        versions = ", ".join(str(v) for v in meta.get("executed_versions") or []) or "none"
        ok, failed = self._ok_records(), self._failed_record_count()
        rejected = int(self.rejections["record"].nunique())
        record_parts = [f"ok {ok}", f"failed {failed}", f"rejected {rejected}"]
        not_run = self.records - ok - failed - rejected
        if not_run > 0:
            record_parts.append(f"not run {not_run}")
        batch_parts = [f"ok {self._status_count('ok')}", f"partial {self._status_count('partial')}"]
        batch_parts += [f"failed {self._status_count('failed')}"]
        batch_parts += [f"cached {self._status_count('cached')}"]
        if self._status_count("cancelled"):
            batch_parts.append(f"cancelled {self._status_count('cancelled')}")
        lines = [
            f"RunResult {name} (executed versions: {versions})",
            f"  records: {self.records} ({', '.join(record_parts)})",
            f"  batches: {len(self.batches)} ({', '.join(batch_parts)})",
        ]
        if meta.get("cancelled"):
            lines.append("  cancelled before every batch ran")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from lambdakit.results.report import summary_card

        return summary_card(self)
