"""What one invocation is: the Batch sent, the Target it goes to, the Outcome that comes back.

The vocabulary shared by the engine and the invokers, kept below both so that neither reaches
up for it: the outcome classes, the batch statuses, Batch, Target, Report, Outcome and the
Invoker protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "BATCH_CACHED",
    "BATCH_CANCELLED",
    "BATCH_FAILED",
    "BATCH_NOT_RUN",
    "BATCH_OK",
    "BATCH_PARTIAL",
    "BATCH_STATUSES",
    "CANCELLED",
    "CLIENT_ERROR",
    "CONCURRENCY_REASONS",
    "CONNECTION_ERROR",
    "FUNCTION_ERROR",
    "OK",
    "OUTCOMES",
    "PAYLOAD_TOO_LARGE",
    "RATE_REASONS",
    "REPORTED_FAILURE",
    "SERVICE_ERROR",
    "SUPERSEDED",
    "THROTTLE",
    "TIMEOUT",
    "Batch",
    "Invoker",
    "Outcome",
    "Report",
    "Target",
]

OK = "ok"
THROTTLE = "throttle"
SERVICE_ERROR = "service_error"
CONNECTION_ERROR = "connection_error"
TIMEOUT = "timeout"
FUNCTION_ERROR = "function_error"
REPORTED_FAILURE = "reported_failure"
CLIENT_ERROR = "client_error"
# The run stopped waiting for it (cancel grace over): it may still have run; never retried.
CANCELLED = "cancelled"
# A hedged batch's other attempt (engine/hedge.py): still running when the first good reply
# came, so its result is not the batch's; never retried.
SUPERSEDED = "superseded"

OUTCOMES: tuple[str, ...] = (
    OK,
    THROTTLE,
    SERVICE_ERROR,
    CONNECTION_ERROR,
    TIMEOUT,
    FUNCTION_ERROR,
    REPORTED_FAILURE,
    CLIENT_ERROR,
    CANCELLED,
    SUPERSEDED,
)

# What became of a batch (RunResult.batches["status"]): the one vocabulary that every view
# (print(result), summary(), the summary card, the dashboard, the CLI) counts batches in.
BATCH_OK = "ok"  # every record ok
BATCH_PARTIAL = "partial"  # some records ok, the others failed for good
BATCH_FAILED = "failed"  # every record failed for good
BATCH_CACHED = "cached"  # served from the cache, not invoked
BATCH_CANCELLED = "cancelled"  # the run stopped before the batch was done
BATCH_NOT_RUN = "not_run"  # the endpoint stayed unreachable (an outage), never failed
BATCH_STATUSES: tuple[str, ...] = (
    BATCH_OK,
    BATCH_PARTIAL,
    BATCH_FAILED,
    BATCH_CACHED,
    BATCH_CANCELLED,
    BATCH_NOT_RUN,
)

# The `Reason` of a 429 says what ran out, and so what helps. Too much in flight: send fewer
# at once (the engine's AIMD in-flight limit). Too many requests per second: send fewer per
# second, whatever is in flight (its adaptive token bucket); Lambda allows 10 x concurrency
# requests per second, so functions under 100 ms meet this one below their concurrency.
# A throttle without a Reason (a URL's 429 or 503) is taken as a concurrency throttle.
CONCURRENCY_REASONS: tuple[str, ...] = (
    "ConcurrentInvocationLimitExceeded",
    "ReservedFunctionConcurrentInvocationLimitExceeded",
)
RATE_REASONS: tuple[str, ...] = (
    "FunctionInvocationRateLimitExceeded",
    "ReservedFunctionInvocationRateLimitExceeded",
    "CallerRateLimitExceeded",
)

# The code real AWS sends for a 413 (the service model calls it RequestTooLargeException);
# every 413 is reported under this one name so the engine has one thing to look for.
PAYLOAD_TOO_LARGE = "RequestEntityTooLargeException"


@dataclass(frozen=True, slots=True)
class Batch:
    """One request: its number in the run, the input index of each item, items, and the body."""

    index: int
    record_indices: tuple[int, ...]
    items: list[Any]
    body: bytes

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class Target:
    """What a run invokes, resolved before it starts: versions, weights and cache tokens."""

    function_name: str
    function_arn: str
    qualifier: str | None
    versions: dict[str, float]
    cache_tokens: dict[str, str]
    timeout_s: int
    memory_mb: int
    code_sha256: dict[str, str] = field(default_factory=dict)  # version -> CodeSha256
    layers: dict[str, tuple[str, ...]] = field(default_factory=dict)  # version -> layer ARNs

    @property
    def invoke_name(self) -> str:
        """The FunctionName to pass to Invoke (the ARN, qualified when there is a qualifier)."""
        return f"{self.function_arn}:{self.qualifier}" if self.qualifier else self.function_arn


@dataclass(frozen=True, slots=True)
class Report:
    """The figures of one invocation's REPORT log line (None where the line lacks them)."""

    duration_ms: float | None = None
    billed_duration_ms: float | None = None
    memory_size_mb: int | None = None
    max_memory_used_mb: int | None = None
    init_duration_ms: float | None = None  # present on cold starts only

    @property
    def cold_start(self) -> bool:
        """Whether the invocation initialised a new execution environment."""
        return self.init_duration_ms is not None


@dataclass(slots=True)
class Outcome:
    """What one invocation attempt came to; outputs are per item of the batch."""

    outcome: str
    http_status: int | None = None
    executed_version: str | None = None
    request_id: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    retry_after_s: float | None = None
    reason: str | None = None  # a 429's Reason (see RATE_REASONS), else None
    outputs: list[Any] | None = None
    failed_items: tuple[int, ...] = ()
    log_tail: str | None = None
    report: Report | None = None
    item_errors: dict[int, str] = field(default_factory=dict)  # failed item's own reason
    # Failed items the function marked `"retryable": true`: transient, not a verdict.
    retryable_items: tuple[int, ...] = ()


@runtime_checkable
class Invoker(Protocol):
    """Anything that sends a batch and says what came of it, without raising for failures."""

    def invoke(self, batch: Batch) -> Outcome:
        """Send one batch once; failures come back as an Outcome."""
        ...
