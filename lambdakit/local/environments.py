"""Execution environments: one runtime process each, pooled per function version.

An environment runs ``python -m awslambdaric module.fn`` (python3.x) or the zip's
``bootstrap`` (provided.*), pointed at this server's Runtime API under
``/env/<token>``, where the token is a per-environment secret (the env id, which names its
log stream, grants nothing). It serves one invocation at a time, is reused while warm, and is thrown
away after a timeout, a crash, going over its memory, or ``idle_timeout_s`` of idleness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from lambdakit.errors import LambdakitError
from lambdakit.local.logs import (
    format_end,
    format_report,
    format_start,
    json_report,
    json_runtime_done,
    json_start,
    read_logs,
)
from lambdakit.local.process import (
    FunctionSpec,
    RuntimeProcess,
    descendants_map,
    raise_open_file_limit,
)
from lambdakit.local.runtime import (
    Invocation,
    Outcome,
    RuntimeAPI,
    RuntimeChannel,
    client_context_json,
    recover_init_error,
    verdict,
)

__all__ = ["CapacityExceeded", "EnvironmentManager", "InvokeResult"]

log = logging.getLogger("lambdakit.local.environments")

# How often busy environments' memory is checked (the kernel's peak RSS, so nothing between
# two checks is missed), and how often their child processes are looked up (a scan of every
# process, so rarer).
MEMORY_POLL_S = 0.05
CHILD_SCAN_EVERY = 20
MB = 1024 * 1024
CLOSE_WAIT_S = 5.0


@dataclass(frozen=True)
class InvokeResult:
    """One synchronous invocation's answer and log."""

    payload: bytes  # response body, or the runtime/sandbox error JSON
    function_error: str | None  # "Unhandled" or None
    log: str  # this invocation's log, START ... END, REPORT lines included
    request_id: str
    init_duration_ms: float | None  # set on a cold start


class CapacityExceeded(LambdakitError):
    """No environment may start: the reserved or the account concurrency is in use."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        # "ReservedFunctionConcurrentInvocationLimitExceeded" | "ConcurrentInvocationLimitExceeded"
        self.reason = reason


class EnvironmentManager:
    """Starts, reuses, limits, watches and reaps execution environments."""

    def __init__(
        self,
        *,
        runtime_api: str,
        state_dir: Path,
        account_concurrency: int = 1000,
        idle_timeout_s: float = 300.0,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        init_timeout_s: float = 10.0,
    ) -> None:
        self.runtime_api = runtime_api  # "127.0.0.1:PORT"; may be set after binding
        self.state_dir = Path(state_dir)
        self.account_concurrency = account_concurrency
        self.idle_timeout_s = idle_timeout_s
        self.endpoint_url = endpoint_url
        self.region = region
        # Lambda's init phase limit: a runtime that never polls /next fails after this.
        self.init_timeout_s = init_timeout_s
        # The umask runtime processes get (None: the server's own); see server.serve.
        self.child_umask: int | None = None
        # The AWS_* credentials handed to handlers (None: process.py's test credentials).
        self.credentials: dict[str, str] | None = None
        raise_open_file_limit()
        self._envs: dict[str, RuntimeProcess] = {}
        self._by_token: dict[str, RuntimeProcess] = {}  # Runtime API secret -> environment
        self._idle: dict[tuple[str, str], list[RuntimeProcess]] = {}
        self._busy_by_function: Counter[str] = Counter()
        self._busy_total = 0
        self._capacity_waiters: list[asyncio.Future[None]] = []
        self._watcher: asyncio.Task[None] | None = None
        self._drained: asyncio.Future[None] | None = None  # close() waits on it
        self._closed = False

    # -- wiring ---------------------------------------------------------------------------

    def register(self, app: web.Application) -> None:
        """Mount the Runtime API on `app`, and stop every environment when it shuts down."""
        self.mount_runtime_api(app)
        self.close_on_shutdown(app)

    def mount_runtime_api(self, app: web.Application) -> None:
        """Mount the Runtime API routes on `app` (the server's loopback-only listener)."""
        RuntimeAPI(self._channel).register(app)

    def close_on_shutdown(self, app: web.Application) -> None:
        """Stop every environment when `app` shuts down."""

        async def _close(_app: web.Application) -> None:
            await self.close()

        # on_shutdown, not on_cleanup: pending /next long-polls and the invocations waiting on
        # them must be answered before the server waits for its handlers to finish.
        app.on_shutdown.append(_close)

    def _channel(self, token: str) -> RuntimeChannel | None:
        env = self._by_token.get(token)
        return env.channel if env is not None else None

    def read_logs(self, function_name: str, *, tail: int | None = None) -> list[str]:
        """A function's stored log lines (the last `tail`), formatted like `aws logs tail`."""
        return [event.format() for event in read_logs(self.state_dir, function_name, tail=tail)]

    @property
    def environments(self) -> int:
        """How many environments are alive (busy or idle)."""
        return len(self._envs)

    # -- invoking -------------------------------------------------------------------------

    async def invoke(
        self,
        spec: FunctionSpec,
        payload: bytes,
        *,
        request_id: str,
        invoked_arn: str,
        client_context: str | None = None,
        wait_for_capacity: bool = False,
    ) -> InvokeResult:
        """Run one invocation; raises CapacityExceeded when full and not waiting."""
        if self._closed:
            raise LambdakitError("the environment manager is closed")
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())
        await self._reserve(spec, wait_for_capacity)
        env: RuntimeProcess | None = None
        try:
            env = self._take_or_start(spec)
            invocation = Invocation(
                request_id=request_id,
                payload=payload,
                invoked_arn=invoked_arn,
                timeout_s=spec.timeout_s,
                client_context=client_context_json(client_context),
            )
            return await self._run(env, spec, invocation)
        finally:
            self._unreserve(spec, env)

    async def _run(self, env: RuntimeProcess, spec: FunctionSpec, inv: Invocation) -> InvokeResult:
        cold = env.channel.init_done_at is None
        dispatched_at = time.monotonic()
        env.begin()
        env.channel.dispatch(inv, delivery_timeout_s=self.init_timeout_s)
        try:
            outcome = await inv.done
        except asyncio.CancelledError:
            # The caller gave up (server stopping): the runtime may still be busy with it, so
            # the environment can never be handed another invocation.
            env.kill()
            env.end()
            env.channel.release()
            raise
        output = env.end()
        if outcome.kind == "exit" and env.channel.init_done_at is None:
            recovered = recover_init_error(output, outcome.at)
            if recovered is not None:
                outcome, output = recovered
        peak = env.peak_rss()
        if outcome.kind == "response" and peak > spec.memory_mb * MB:
            # The memory went over between two samples: Lambda would have killed it.
            outcome = Outcome("oom")
        result = verdict(outcome, inv, waited_s=outcome.at - dispatched_at)
        if not result.keeps_environment:
            env.kill()
        env.channel.release()

        init_ms: float | None = None
        if cold:
            init_end = env.channel.init_done_at or outcome.at
            init_ms = (init_end - env.started_at) * 1000
        started = inv.delivered_at or dispatched_at
        duration_ms = (outcome.at - started) * 1000
        now = time.time()
        figures = {
            "duration_ms": duration_ms,
            "memory_size_mb": spec.memory_mb,
            "max_memory_used_mb": max(1, math.ceil(peak / MB)),
            "init_duration_ms": init_ms,
            "status": result.status,
            "error_type": result.error_type,
        }
        if spec.log_format == "JSON":
            # Platform events are INFO: SystemLogLevel WARN leaves them out, as on AWS.
            platform = spec.system_log_level not in ("WARN",)
            started_at = now - (time.monotonic() - dispatched_at)
            head = [json_start(inv.request_id, spec.version, at=started_at)] if platform else []
            lines = [*head, *output, *result.log_lines]
            tail = [
                json_runtime_done(inv.request_id, status=result.status,
                                  error_type=result.error_type, at=now),
                json_report(inv.request_id, at=now, **figures),
            ] if platform else []  # fmt: skip
        else:
            lines = [format_start(inv.request_id, spec.version), *output, *result.log_lines]
            tail = [format_end(inv.request_id), format_report(inv.request_id, **figures)]
        env.stream.write_groups([(now - (time.monotonic() - dispatched_at), lines), (now, tail)])
        if not env.alive:
            env.stream.close()
        return InvokeResult(
            payload=result.payload,
            function_error=result.function_error,
            log="\n".join(lines + tail) + "\n",
            request_id=inv.request_id,
            init_duration_ms=init_ms,
        )

    # -- capacity -------------------------------------------------------------------------

    def _full(self, spec: FunctionSpec) -> CapacityExceeded | None:
        reserved = spec.reserved_concurrency
        if reserved is not None and self._busy_by_function[spec.function_name] >= reserved:
            return CapacityExceeded(
                "ReservedFunctionConcurrentInvocationLimitExceeded",
                f"Rate Exceeded. Function {spec.function_name} has reserved concurrency "
                f"{reserved}, all in use.",
            )
        if self._busy_total >= self.account_concurrency:
            return CapacityExceeded(
                "ConcurrentInvocationLimitExceeded",
                f"Rate Exceeded. The account concurrency limit ({self.account_concurrency}) "
                "is in use.",
            )
        return None

    async def _reserve(self, spec: FunctionSpec, wait: bool) -> None:
        while (full := self._full(spec)) is not None:
            if not wait:
                raise full
            waiter = asyncio.get_running_loop().create_future()
            self._capacity_waiters.append(waiter)
            try:
                await waiter
            finally:
                with contextlib.suppress(ValueError):
                    self._capacity_waiters.remove(waiter)
            if self._closed:
                raise LambdakitError("the environment manager is closed")
        self._busy_by_function[spec.function_name] += 1
        self._busy_total += 1

    def _unreserve(self, spec: FunctionSpec, env: RuntimeProcess | None) -> None:
        self._busy_by_function[spec.function_name] -= 1
        if self._busy_by_function[spec.function_name] <= 0:
            del self._busy_by_function[spec.function_name]
        self._busy_total -= 1
        if env is not None:
            env.last_used = time.monotonic()
            if env.alive and not env.retired and not self._closed:
                self._idle.setdefault(env.key, []).append(env)
            else:
                env.kill()
        for waiter in self._capacity_waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self._busy_total == 0 and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # -- environments ---------------------------------------------------------------------

    def _take_or_start(self, spec: FunctionSpec) -> RuntimeProcess:
        key = (spec.function_name, spec.version)
        idle = self._idle.get(key, [])
        while idle:
            env = idle.pop()  # the most recently used is the warmest
            if env.alive and env.spec.revision == spec.revision:
                return env
            env.kill()
        # Kill idle environments of older revisions: they can never be reused.
        for env in [e for e in self._envs.values() if e.key == key and e.idle_stale(spec)]:
            env.kill()
        if len(self._envs) >= self.account_concurrency:
            self._evict_one()
        env_id = uuid.uuid4().hex
        # The Runtime API's only credential: 256 random bits, given to the process alone.
        token = secrets.token_urlsafe(32)
        env = RuntimeProcess(
            spec,
            env_id,
            state_dir=self.state_dir,
            runtime_api=f"{self.runtime_api}/env/{token}",
            secret=token,
            umask=-1 if self.child_umask is None else self.child_umask,
            credentials=self.credentials,
            endpoint_url=self.endpoint_url or f"http://{self.runtime_api}",
            region=self.region,
            on_gone=self._forget,
        )
        self._envs[env_id] = env
        self._by_token[token] = env
        env.start()
        return env

    def _evict_one(self) -> None:
        """Make room under the account limit by stopping the least recently used idle env."""
        idle = [env for envs in self._idle.values() for env in envs]
        if idle:
            min(idle, key=lambda env: env.last_used).kill()

    def _forget(self, env: RuntimeProcess) -> None:
        self._envs.pop(env.env_id, None)
        self._by_token.pop(env.secret, None)
        if not env.busy:
            env.stream.close()  # a busy one still writes its invocation's log, then closes
        pool = self._idle.get(env.key)
        if pool is not None:
            with contextlib.suppress(ValueError):
                pool.remove(env)
            if not pool:
                del self._idle[env.key]

    async def retire(self, function_name: str, version: str | None = None) -> None:
        """Stop a function's environments (all versions, or one): idle now, busy when done."""
        for env in list(self._envs.values()):
            if env.spec.function_name == function_name and version in (None, env.spec.version):
                env.retired = True
                if not env.busy:
                    env.kill()

    async def close(self) -> None:
        """Kill every environment; invocations in flight end with Runtime.ExitError."""
        self._closed = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        for env in list(self._envs.values()):
            env.kill()
        for waiter in self._capacity_waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self._busy_total:
            # Let the invocations in flight write their answers and logs before we return.
            self._drained = asyncio.get_running_loop().create_future()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._drained), CLOSE_WAIT_S)

    # -- watching ---------------------------------------------------------------------------

    async def _watch(self) -> None:
        """Enforce MemorySize on busy environments; reap idle ones."""
        tick = 0
        while True:
            await asyncio.sleep(MEMORY_POLL_S)
            tick += 1
            try:
                busy = [env for env in self._envs.values() if env.busy]
                if busy and tick % CHILD_SCAN_EVERY == 0:
                    below = descendants_map([env.pid for env in busy if env.pid])
                    for env in busy:
                        env.track_children(below.get(env.pid or -1, ()))
                for env in busy:
                    over = env.peak_rss() > env.spec.memory_mb * MB
                    if over and env.channel.finish(Outcome("oom")):
                        env.kill()
                if tick % 20 == 0:
                    self._reap()
            except Exception:  # the watch must outlive any one bad sample
                log.exception("environment watch failed; continuing")

    def _reap(self) -> None:
        deadline = time.monotonic() - self.idle_timeout_s
        for envs in list(self._idle.values()):
            for env in [env for env in envs if env.last_used < deadline]:
                log.debug("reaping idle environment %s", env.env_id)
                env.kill()
