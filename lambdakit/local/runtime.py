"""The Lambda Runtime API that execution environments poll, under /env/{token}/2018-06-01/.

Each environment owns a `RuntimeChannel`: the manager hands it one invocation at a time, the
runtime's `GET /next` takes it, and the first of its answer, its crash, a timer or the memory
watch settles the invocation's `Outcome`.

The API is the environments' alone: it is served on its own loopback listener (never the
public port), and the path prefix is a per-environment secret token that is handed to the
runtime process only through its environment. A second poll while one is pending, and an
answer for a request id the environment was not given, are refused.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from aiohttp import web

__all__ = [
    "MAX_RESPONSE_BYTES",
    "Invocation",
    "Outcome",
    "RuntimeAPI",
    "RuntimeChannel",
    "Verdict",
    "client_context_json",
    "recover_init_error",
    "verdict",
]

# Lambda's limit on a synchronous response (6 MB); larger ones become ResponseSizeTooLarge.
MAX_RESPONSE_BYTES = 6_291_556
# Longest error body kept from a runtime (stack traces are small; this only bounds memory).
MAX_ERROR_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Outcome:
    """How an invocation ended.

    kind: "response" | "error" | "init_error" | "exit" | "timeout" | "init_timeout" | "oom"
    | "too_large" | "entrypoint" (the process could not start; body says why) | "closed".
    """

    kind: str
    body: bytes = b""
    error_type: str | None = None
    exit_status: int | None = None
    at: float = field(default_factory=time.monotonic)


@dataclass(eq=False)
class Invocation:
    """One event handed to one environment."""

    request_id: str
    payload: bytes
    invoked_arn: str
    timeout_s: float
    client_context: str = ""
    trace_id: str = ""
    done: asyncio.Future[Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    delivered_at: float | None = None  # monotonic time the runtime received it

    def __post_init__(self) -> None:
        if not self.trace_id:
            self.trace_id = (
                f"Root=1-{int(time.time()):08x}-{os.urandom(12).hex()};"
                f"Parent={os.urandom(8).hex()};Sampled=0"
            )


def client_context_json(value: str | None) -> str:
    """X-Amz-Client-Context is base64 JSON; the runtime wants the JSON itself."""
    with contextlib.suppress(binascii.Error, UnicodeDecodeError):
        return base64.b64decode(value or "", validate=True).decode("utf-8")
    return value or ""


class RuntimeChannel:
    """One environment's side of the Runtime API: one invocation in flight at a time."""

    def __init__(self) -> None:
        self.init_done_at: float | None = None  # monotonic time of the first GET /next
        self.init_error: Outcome | None = None
        self.current: Invocation | None = None
        self._waiter: asyncio.Future[Invocation | None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        # Called once, on the first GET /next (the end of init), before anything is handed out.
        self.on_first_poll: Callable[[], None] | None = None

    def dispatch(self, invocation: Invocation, *, delivery_timeout_s: float) -> None:
        """Hand over an invocation; it fails with init_timeout if never fetched in time."""
        if self.current is not None:
            raise RuntimeError("an environment runs one invocation at a time")
        self.current = invocation
        if self._closed:
            self.finish(Outcome("closed"))
            return
        if self.init_error is not None:
            self.finish(self.init_error)
            return
        if self._waiter is not None and not self._waiter.done():
            self._deliver(self._waiter)
        else:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(delivery_timeout_s, self._expire, "init_timeout")

    def _deliver(self, waiter: asyncio.Future[Invocation | None]) -> None:
        invocation = self.current
        assert invocation is not None
        if self._timer is not None:
            self._timer.cancel()
        invocation.delivered_at = time.monotonic()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(invocation.timeout_s, self._expire, "timeout")
        self._waiter = None
        waiter.set_result(invocation)

    def polling(self) -> bool:
        """True while a GET /next is waiting for an invocation."""
        return self._waiter is not None and not self._waiter.done()

    def abandon_poll(self) -> None:
        """The pending poll's connection is gone: forget it, so that a new poll may wait."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        self._waiter = None

    async def next(self) -> Invocation | None:
        """Wait for the next invocation (None once the environment is shut down)."""
        if self.polling():
            # One runtime polls once at a time: a second poll would take the next payload
            # away from it (see RuntimeAPI.next, which refuses it before calling here).
            raise RuntimeError("a GET /next is already pending for this environment")
        if self.init_done_at is None:
            self.init_done_at = time.monotonic()
            if self.on_first_poll is not None:
                self.on_first_poll()
        if self._closed:
            return None
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        invocation = self.current
        if (
            invocation is not None
            and invocation.delivered_at is None
            and not invocation.done.done()
        ):
            self._deliver(waiter)
        return await waiter

    def finish(self, outcome: Outcome) -> bool:
        """Settle the current invocation with `outcome`, unless it is already settled."""
        invocation = self.current
        if invocation is None or invocation.done.done():
            return False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        invocation.done.set_result(outcome)
        return True

    def _expire(self, kind: str) -> None:
        # The Outcome is made when the timer fires, so that its time is the expiry's.
        self.finish(Outcome(kind))

    def release(self) -> None:
        """Forget the settled invocation, so that the next one can be dispatched."""
        self.current = None

    def fail_init(self, outcome: Outcome) -> None:
        """The runtime reported an init error: this and every later dispatch fail with it."""
        self.init_error = outcome
        self.finish(outcome)

    def close(self, outcome: Outcome) -> None:
        """The environment is gone: settle what is in flight and answer any pending poll."""
        self._closed = True
        self.finish(outcome)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        self._waiter = None


async def _read_body(request: web.Request, limit: int) -> tuple[bytes, bool]:
    """Read at most `limit` bytes, draining the rest; says whether the body was longer."""
    # Read from the stream, not request.read(): the app's client_max_size is set for Invoke.
    chunks: list[bytes] = []
    size = 0
    over = False
    async for chunk in request.content.iter_any():
        if size + len(chunk) > limit:
            over = True
            continue
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), over


def _accepted() -> web.Response:
    return web.Response(status=202, body=b'{"status":"OK"}', content_type="application/json")


class RuntimeAPI:
    """aiohttp handlers for /env/{token}/2018-06-01/runtime/...; `lookup` finds a channel.

    `lookup` takes the secret token of the path and returns None for any token that is not
    a live environment's, so that a guess gets the same answer as a stopped environment.
    """

    def __init__(self, lookup: Callable[[str], RuntimeChannel | None]) -> None:
        self._lookup = lookup
        # The request of each channel's pending poll, to tell a dropped poll from a live one.
        self._polls: dict[RuntimeChannel, web.BaseRequest] = {}

    def register(self, app: web.Application) -> None:
        """Mount the Runtime API routes on `app`."""
        base = "/env/{token}/2018-06-01/runtime"
        app.router.add_get(f"{base}/invocation/next", self.next)
        app.router.add_post(f"{base}/invocation/{{request_id}}/response", self.response)
        app.router.add_post(f"{base}/invocation/{{request_id}}/error", self.error)
        app.router.add_post(f"{base}/init/error", self.init_error)

    def _channel(self, request: web.Request) -> RuntimeChannel:
        channel = self._lookup(request.match_info["token"])
        if channel is None:
            # Only an environment that was already shut down gets here; it should exit.
            raise web.HTTPGone(
                text='{"errorType": "Runtime.UnknownEnvironment", '
                '"errorMessage": "this execution environment was shut down"}',
                content_type="application/json",
            )
        return channel

    async def next(self, request: web.Request) -> web.StreamResponse:
        """GET /runtime/invocation/next: long-poll for the next event."""
        channel = self._channel(request)
        if channel.polling():
            pending = self._polls.get(channel)
            transport = pending.transport if pending is not None else None
            if transport is not None and not transport.is_closing():
                # Someone else polls for this environment: never let it take the payload.
                raise web.HTTPConflict(
                    text='{"errorType": "Runtime.ConcurrentPoll", "errorMessage": "a GET '
                    '/runtime/invocation/next is already pending for this environment"}',
                    content_type="application/json",
                )
            channel.abandon_poll()  # the runtime's earlier connection is gone
        self._polls[channel] = request
        try:
            invocation = await channel.next()
        finally:
            if self._polls.get(channel) is request:
                del self._polls[channel]
        if invocation is None:
            raise web.HTTPGone(text="this execution environment was shut down")
        deadline_ms = int(time.time() * 1000 + invocation.timeout_s * 1000)
        return web.Response(
            body=invocation.payload,
            headers={
                # Every header, always: awslambdaric 4.2.2 crashes without Content-Type.
                "Content-Type": "application/json",
                "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": invocation.invoked_arn,
                "Lambda-Runtime-Trace-Id": invocation.trace_id,
                "Lambda-Runtime-Client-Context": invocation.client_context,
                "Lambda-Runtime-Cognito-Identity": "",
            },
        )

    def _in_flight(self, request: web.Request) -> RuntimeChannel:
        channel = self._channel(request)
        current = channel.current
        # Only the request id this environment was handed by GET /next may be answered.
        if (
            current is None
            or current.delivered_at is None
            or current.request_id != request.match_info["request_id"]
        ):
            raise web.HTTPBadRequest(
                text='{"errorType": "InvalidRequestID", "errorMessage": "no invocation '
                f'{request.match_info["request_id"]} is in flight here"}}',
                content_type="application/json",
            )
        return channel

    async def response(self, request: web.Request) -> web.StreamResponse:
        """POST /runtime/invocation/{id}/response: the handler's result."""
        channel = self._in_flight(request)
        body, over = await _read_body(request, MAX_RESPONSE_BYTES)
        channel.finish(Outcome("too_large") if over else Outcome("response", body))
        return _accepted()

    async def error(self, request: web.Request) -> web.StreamResponse:
        """POST /runtime/invocation/{id}/error: the handler raised."""
        channel = self._in_flight(request)
        body, _ = await _read_body(request, MAX_ERROR_BYTES)
        error_type = request.headers.get("Lambda-Runtime-Function-Error-Type")
        channel.finish(Outcome("error", body, error_type))
        return _accepted()

    async def init_error(self, request: web.Request) -> web.StreamResponse:
        """POST /runtime/init/error: the runtime could not load the handler."""
        channel = self._channel(request)
        body, _ = await _read_body(request, MAX_ERROR_BYTES)
        error_type = request.headers.get("Lambda-Runtime-Function-Error-Type")
        channel.fail_init(Outcome("init_error", body, error_type or "Runtime.Unknown"))
        return _accepted()


@dataclass(frozen=True)
class Verdict:
    """What an outcome means to the caller: the answer, and what the log says about it."""

    payload: bytes
    function_error: str | None  # "Unhandled" or None
    status: str | None  # REPORT's Status: None, "error" or "timeout"
    error_type: str | None
    log_lines: tuple[str, ...]  # lines the platform adds before END
    keeps_environment: bool  # False: the environment is thrown away


# Go's names, as Lambda's messages use them.
_SIGNAL_NAMES = {signal.SIGKILL: "killed", signal.SIGTERM: "terminated",
                 signal.SIGSEGV: "segmentation fault", signal.SIGABRT: "aborted"}  # fmt: skip


def _exit_text(status: int | None) -> str:
    """Go's wording for a process end, as Lambda prints it ("exit status 1", "signal: killed")."""
    if status is None:
        return "signal: killed"
    if status >= 0:
        return f"exit status {status}"
    with contextlib.suppress(ValueError):
        sig = signal.Signals(-status)
        return f"signal: {_SIGNAL_NAMES.get(sig, sig.name.lower().removeprefix('sig'))}"
    return f"signal: {-status}"


def _error_json(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


def _platform_failure(error_type: str, message: str) -> Verdict:
    # The environment is gone; Lambda logs the message and the type before END.
    log = (message, error_type)
    return Verdict(_error_json(error_type, message), "Unhandled", "error", error_type, log, False)


def verdict(outcome: Outcome, invocation: Invocation, *, waited_s: float) -> Verdict:
    """Translate an outcome into Lambda's answer; `waited_s` is how long a missing poll took."""
    rid = invocation.request_id
    kind = outcome.kind
    if kind == "response":
        return Verdict(outcome.body, None, None, None, (), True)
    if kind in ("error", "init_error"):
        # The body names the exception; the header is only a fallback for custom runtimes.
        error_type = _body_error_type(outcome.body) or outcome.error_type or "Runtime.Unknown"
        keeps = kind == "error"
        return Verdict(outcome.body, "Unhandled", "error", error_type, (), keeps)
    if kind == "too_large":
        too_large = "Function.ResponseSizeTooLarge"
        limit = f"({MAX_RESPONSE_BYTES} bytes)."
        message = f"Response payload size exceeded maximum allowed payload size {limit}"
        return Verdict(_error_json(too_large, message), "Unhandled", "error", too_large, (), True)
    if kind in ("timeout", "init_timeout"):
        seconds = invocation.timeout_s if kind == "timeout" else waited_s
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")[:-6]
        log = [f"{now}Z {rid} Task timed out after {seconds:.2f} seconds"]
        if kind == "init_timeout":
            log.insert(0, f"[lambdakit] the runtime did not call GET /runtime/invocation/next "
                          f"within {seconds:.2f} seconds")  # fmt: skip
        message = f"RequestId: {rid} Error: Task timed out after {seconds:.2f} seconds"
        timed_out = _error_json("Sandbox.Timedout", message)
        return Verdict(timed_out, "Unhandled", "timeout", None, tuple(log), False)
    if kind == "oom":
        message = f"RequestId: {rid} Error: Runtime exited with error: signal: killed"
        return _platform_failure("Runtime.OutOfMemory", message)
    if kind == "entrypoint":
        message = f"RequestId: {rid} Error: {outcome.body.decode('utf-8', 'replace')}"
        return _platform_failure("Runtime.InvalidEntrypoint", message)
    # "exit" and "closed": the runtime process ended under the invocation.
    text = _exit_text(outcome.exit_status)
    return _platform_failure(
        "Runtime.ExitError", f"RequestId: {rid} Error: Runtime exited with error: {text}"
    )


def _body_error_type(body: bytes) -> str | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    error_type = value.get("errorType") if isinstance(value, dict) else None
    return error_type if isinstance(error_type, str) and error_type else None


# awslambdaric's report of an init failure: "[ERROR] <type>: <message>", then its stack
# trace with the indentation turned into no-break spaces (ERROR_LOG_IDENT).
_INIT_ERROR_LINE = re.compile(r"^\[ERROR\] ([A-Za-z_][\w.]*)(?:: (.*))?$")
_TRACE_HEAD = "Traceback (most recent call last):"
_IDENT = "\u00a0"
_PREFIX_FAILURE = "http.client.InvalidURL: nonnumeric port"


def recover_init_error(lines: list[str], at: float) -> tuple[Outcome, list[str]] | None:
    """The init error of an awslambdaric that exited before its first poll, read from its log.

    awslambdaric 4.2.2 posts /init/error with http.client, which rejects the /env/<token> path
    prefix, so the post never arrives; the runtime has printed ``[ERROR] <type>: <message>``
    and the stack trace first. Only a log that ends in that failed post is read, so that a
    handler's own "[ERROR]" lines are never taken for the runtime's report. Returns the
    outcome (type, message and stack trace as the runtime would have posted them) and the
    log with the failed post's traceback replaced by a note.
    """
    failed = [i for i, text in enumerate(lines) if text.startswith(_PREFIX_FAILURE)]
    if not failed:
        return None
    # The failed post's traceback starts at the last "Traceback" before http/client.py.
    first = next((i for i, text in enumerate(lines) if "http/client.py" in text), failed[-1])
    starts = [i for i in range(first) if lines[i] == _TRACE_HEAD]
    cut = starts[-1] if starts else failed[-1]
    report = [i for i in range(cut) if _INIT_ERROR_LINE.match(lines[i])]
    if not report:
        return None
    error_type, message = _INIT_ERROR_LINE.match(lines[report[-1]]).groups()  # type: ignore[union-attr]
    body = {
        "errorMessage": message or "",
        "errorType": error_type,
        "requestId": "",
        "stackTrace": _stack_trace(lines[report[-1] + 1 : cut]),
    }
    kept = [
        *lines[:cut],
        "[lambdakit] awslambdaric could not post this init error to the Runtime API "
        "(its http.client rejects the /env/<token> prefix); it was read from the log above",
    ]
    return Outcome("init_error", json.dumps(body).encode(), error_type, at=at), kept


def _stack_trace(lines: list[str]) -> list[str]:
    """awslambdaric's stackTrace entries back from the indented lines it printed."""
    if not lines or lines[0] != _TRACE_HEAD:
        return []
    frames: list[str] = []
    for text in lines[1:]:
        if not text.startswith(_IDENT):
            break
        depth = len(text) - len(text.lstrip(_IDENT))
        line = " " * depth + text[depth:] + "\n"
        if depth <= 2 or not frames:
            frames.append(line)  # '  File "...", line N, in f'
        else:
            frames[-1] += line  # the frame's source line
    return frames
