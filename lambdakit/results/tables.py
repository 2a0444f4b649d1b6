"""A run's record as tables: their columns, the summary's keys, and what writers read of it.

The engine builds RunResult's tables to these schemas; storage, the report and the plots
read a run through `ResultView`, the part of RunResult they need, so that none of them
imports result.py, which sits above them and calls them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from lambdakit.invocation import BATCH_STATUSES

if TYPE_CHECKING:
    import pandas as pd

    from lambdakit.results.outputs import OutputStore

__all__ = [
    "ATTEMPT_COLUMNS",
    "BATCH_COLUMNS",
    "FAILURE_COLUMNS",
    "NOT_RUN_COLUMNS",
    "REJECTION_COLUMNS",
    "SUMMARY_KEYS",
    "ResultView",
]

_F, _I, _O, _B, _T = "float64", "int64", "object", "bool", "datetime64[ns, UTC]"
# Column -> dtype used when a table arrives empty, so empty runs keep a usable schema.
ATTEMPT_COLUMNS: dict[str, str] = {
    **{"batch": _I, "attempt": _I, "records": _I, "payload_bytes": _I},
    **{"started_at": _T, "ended_at": _T, "start_s": _F, "end_s": _F, "latency_s": _F},
    **{"outcome": _O, "error_type": _O, "error_message": _O, "http_status": _F},
    **{"throttled": _B, "throttle_reason": _O, "retry_after_s": _F},
    **{"executed_version": _O, "request_id": _O},
    **{"failed_items": _O, "duration_ms": _F, "billed_duration_ms": _F, "memory_size_mb": _F},
    **{"max_memory_used_mb": _F, "init_duration_ms": _F, "cold_start": _B, "slot": _F},
    **{"in_flight_limit": _F, "rate_limit": _F, "backup": _B, "log_tail": _O},
}
BATCH_COLUMNS: dict[str, str] = {
    **{"batch": _I, "first_record": _I, "records": _I, "payload_bytes": _I, "status": _O},
    **{"attempts": _I, "executed_version": _O, "ok_records": _I, "failed_records": _I},
    **{"start_s": _F, "end_s": _F, "latency_s": _F, "error_type": _O, "error_message": _O},
    **{"cached": _B, "memory_mb": _F},
}
FAILURE_COLUMNS: dict[str, str] = {
    **{"record": _I, "batch": _I, "error_type": _O, "error_message": _O},
    **{"log_tail": _O, "input": _O},
}
REJECTION_COLUMNS: dict[str, str] = {"record": _I, "reason": _O, "input": _O}
NOT_RUN_COLUMNS: dict[str, str] = {"record": _I, "batch": _I, "input": _O}
SUMMARY_KEYS: tuple[str, ...] = (
    *("records", "batches", *(f"{status}_batches" for status in BATCH_STATUSES)),
    *("ok_records", "rejected_records", "failed_records", "not_run_records"),
    *("failed_record_rate", "invocations", "retries", "throttles", "ladder_batches"),
    "failed_attempt_rate",
    *("elapsed_s", "records_per_s", "invocations_per_s"),
    *("latency_p50_s", "latency_p95_s", "latency_p99_s"),
)


class ResultView(Protocol):
    """What storage, the report and the plots read of a RunResult (which satisfies it)."""

    attempts: pd.DataFrame
    batches: pd.DataFrame
    failures: pd.DataFrame
    rejections: pd.DataFrame
    not_run: pd.DataFrame
    store: OutputStore
    records: int
    meta: dict[str, Any]

    @property
    def region(self) -> str | None:
        """The region of the run's function."""
        ...

    def summary(self) -> dict[str, Any]:
        """Run totals, with the keys of SUMMARY_KEYS."""
        ...

    def elapsed_s(self) -> float:
        """Wall time of the run."""
        ...

    def errors(self) -> pd.DataFrame:
        """One row per failed attempt."""
        ...

    def cost(self, prices: Any = None) -> dict[str, float]:
        """Estimated USD cost."""
        ...

    def batch_counts_text(self, separator: str = ", ") -> str:
        """Batches per status, as text."""
        ...
