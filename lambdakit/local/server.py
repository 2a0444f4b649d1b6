"""Process entry of `lambdakit local`: builds the app, binds, reports readiness, stops on signals.

One aiohttp app on the public port serves the Lambda REST API and the management endpoints
(faults, code). The Runtime API of every execution environment (under /env/<token>/...) has
an app and a listener of its own, always on 127.0.0.1 and on a port of its own, so that
nothing reaching the public port can poll for payloads or post results.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import random
import signal
import socket
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

__all__ = [
    "ServerConfig",
    "build_app",
    "build_runtime_app",
    "default_state_dir",
    "is_loopback",
    "serve",
]

log = logging.getLogger("lambdakit.local.server")

# Room for a 50 MB zip in base64 inside CreateFunction's JSON; the handlers enforce the
# per-operation limits (6 MB Invoke, 1 MB Event) themselves, with AWS's error codes.
_CLIENT_MAX_SIZE = 72 * 1024 * 1024


@dataclass(frozen=True)
class ServerConfig:
    """How to run the local service. `port=0` picks a free port."""

    host: str = "127.0.0.1"
    port: int = 9001
    state_dir: Path | None = None  # None: default_state_dir()
    region: str = "us-east-1"
    account_concurrency: int = 1000
    account_rps: float | None = None  # requests/s of the account (None: 10 x concurrency)
    idle_timeout_s: float = 300.0
    seed: int | None = None  # seeds alias routing and fault injection, for reproducible tests
    event_retry_delays: tuple[float, ...] = (1.0, 2.0)  # AWS waits 1 then 2 minutes
    event_workers: int = 16  # Event invocations run at once, per function
    parent_pid: int | None = None  # stop when this process is gone (LocalLambda's owner)
    allowed_hosts: tuple[str, ...] = ()  # Host names accepted besides the bound address's
    tls_cert: Path | None = None  # PEM certificate chain: serve HTTPS
    tls_key: Path | None = None  # its PEM private key
    insecure_http: bool = False  # allow plain HTTP off loopback (warned about)
    access_keys: tuple[tuple[str, str], ...] = ()  # (id, secret) allowed to sign requests
    read_timeout_s: float = 30.0  # for a request's headers, and for any pause in its body
    test_clock: float | None = None  # the scheduler's time stands still here until moved
    # Also write the per-user pointer to this service (running.py), for the CLI to find it:
    # `lambdakit local` and `lambdakit lab` do; LocalLambda's own services do not.
    announce: bool = False

    def __post_init__(self) -> None:
        for name in ("state_dir", "tls_cert", "tls_key"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        object.__setattr__(self, "access_keys", tuple(tuple(k) for k in self.access_keys))
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together: give both or neither")
        if not is_loopback(self.host):
            if self.tls_cert is None and not self.insecure_http:
                raise ValueError(
                    f"refusing to listen on {self.host}, which is not loopback, without TLS: "
                    "give --tls-cert and --tls-key (or --insecure-http to accept plain HTTP)"
                )
            if not self.access_keys:
                raise ValueError(
                    f"refusing to listen on {self.host}, which is not loopback, without "
                    "authentication: allow signing keys with --access-key ID:SECRET or "
                    "--keys-file FILE"
                )
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {self.port}")
        if not 0 < self.read_timeout_s <= 3600:
            raise ValueError(f"read_timeout_s must be in (0, 3600], got {self.read_timeout_s}")
        if self.account_concurrency < 1:
            raise ValueError(f"account_concurrency must be >= 1, got {self.account_concurrency}")
        if self.account_rps is not None and not self.account_rps > 0:
            raise ValueError(f"account_rps must be > 0, got {self.account_rps}")


def default_state_dir() -> Path:
    """Where `lambdakit local` keeps functions and logs unless --state-dir is given."""
    import platformdirs

    return Path(platformdirs.user_state_dir("lambdakit")) / "local"


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_app(
    config: ServerConfig, runtime_api: str, endpoint_url: str, public_url: str | None = None
) -> web.Application:
    """The aiohttp app with every route mounted; its cleanup stops environments and events.

    `endpoint_url` is where environments reach the service; `public_url` (default the same)
    is the one clients use, whose origin the cross-site guard accepts.
    """
    from lambdakit.local.api import SERVICE, Service, add_management_routes
    from lambdakit.local.auth import Authenticator, session_credentials
    from lambdakit.local.clock import ManualClock, SystemClock
    from lambdakit.local.destinations import Destinations, add_event_invoke_routes
    from lambdakit.local.environments import EnvironmentManager
    from lambdakit.local.events import Event, EventQueue
    from lambdakit.local.faults import FaultInjector, add_fault_routes
    from lambdakit.local.guard import RequestGuard, allowed_hosts
    from lambdakit.local.invocations import add_invoke_routes, invoke_event, run_event
    from lambdakit.local.layers import add_layer_routes
    from lambdakit.local.policy import add_policy_routes
    from lambdakit.local.protocol import error_middleware
    from lambdakit.local.rates import RateRules
    from lambdakit.local.scheduler import Scheduler
    from lambdakit.local.scheduler_api import add_scheduler_routes
    from lambdakit.local.schedules import ScheduleStore
    from lambdakit.local.state import Store
    from lambdakit.local.urls import add_url_routes
    from lambdakit.local.validation import validation_middleware, validator

    state_dir = config.state_dir or default_state_dir()
    store = Store(state_dir, region=config.region, account_concurrency=config.account_concurrency)
    unfinished = store.load()
    clock = ManualClock(config.test_clock) if config.test_clock is not None else SystemClock()
    schedules = ScheduleStore(state_dir, functions=store, clock=clock.now)
    schedules.load()
    environments = EnvironmentManager(
        runtime_api=runtime_api,
        state_dir=state_dir,
        account_concurrency=config.account_concurrency,
        idle_timeout_s=config.idle_timeout_s,
        endpoint_url=endpoint_url,
        region=config.region,
    )
    service = Service(
        store=store,
        environments=environments,
        faults=FaultInjector(config.seed, path=state_dir / "faults.json"),
        rng=random.Random(config.seed),
        schedules=schedules,
    )
    rps = config.account_rps
    service.rates = RateRules(10.0 * config.account_concurrency if rps is None else rps)
    destinations = Destinations(service, clock=clock.now)

    def finished(event: Event, outcome: str) -> None:
        try:
            if event.tag is not None:  # fired by a schedule: its history records the result
                service.scheduler.event_finished(event.tag, event.event_id, outcome)
        finally:
            destinations.finished(event, outcome)

    service.events = EventQueue(
        lambda event: run_event(service, event),
        directory=state_dir / "events",
        workers=config.event_workers,
        retry_delays=config.event_retry_delays,
        on_finished=finished,
        policy=destinations.policy,
        clock=clock.now,
    )
    service.scheduler = Scheduler(
        schedules,
        clock=clock,
        deliver=lambda name, qualifier, payload, request_id, tag: invoke_event(
            service, name, qualifier, payload, request_id, tag=tag
        ),
        state_dir=state_dir,
    )
    port = urllib.parse.urlsplit(public_url or endpoint_url).port or 0
    guard = RequestGuard(
        hosts=allowed_hosts(config.host, config.allowed_hosts),
        port=port,
        any_address=config.host in ("0.0.0.0", "::"),
    )
    credentials = session_credentials()
    environments.credentials = dict(credentials)
    auth = Authenticator(keys=dict(config.access_keys), region=config.region)
    auth = auth.with_environments(credentials)
    app = web.Application(
        middlewares=[error_middleware, guard.middleware, auth.middleware, validation_middleware],
        client_max_size=_CLIENT_MAX_SIZE,
    )
    app[SERVICE] = service
    validator()  # botocore's model, read now rather than on the first request
    add_management_routes(app)
    add_invoke_routes(app)
    add_layer_routes(app, store.layers)
    add_policy_routes(app)
    add_event_invoke_routes(app)
    # With keys configured, AWS_IAM function URLs take exactly those (never the test keys).
    add_url_routes(app, auth.lookup if auth.enabled else None)
    add_scheduler_routes(app)
    add_fault_routes(app, service.faults, store.record)
    environments.close_on_shutdown(app)

    async def on_startup(app: web.Application) -> None:
        # Code whose unpack was cut short by a stop is unpacked again before it serves.
        for name in unfinished:
            cfg = store.record(name)["latest"]
            service.spawn(service.finish_update(name, cfg["_CodeHex"]))
        requeued = service.events.start()
        if requeued:
            log.info("requeued %d Event invocations left from the last run", requeued)
        service.scheduler.start()  # after the event queue: what came due fires into it

    async def on_cleanup(app: web.Application) -> None:
        await service.scheduler.close()
        await service.events.close()
        for task in list(service.tasks):
            task.cancel()
        await asyncio.gather(*service.tasks, return_exceptions=True)
        await environments.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def build_runtime_app(app: web.Application) -> web.Application:
    """The Runtime API of `app`'s environments, as an app for the loopback-only listener."""
    from lambdakit.local.api import SERVICE

    runtime_app = web.Application()
    app[SERVICE].environments.mount_runtime_api(runtime_app)
    return runtime_app


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


async def serve(config: ServerConfig, on_ready: Callable[[str], None]) -> None:
    """Run until SIGINT/SIGTERM; on_ready gets the endpoint URL once requests are accepted."""
    from lambdakit.local.api import SERVICE
    from lambdakit.local.connection import AwsSite
    from lambdakit.local.running import announce, withdraw

    if not is_loopback(config.host) and config.tls_cert is None:
        log.warning(
            "lambdakit local is listening on %s, not loopback, over plain HTTP "
            "(--insecure-http): signatures are checked, but anyone on the network path can "
            "read payloads and results.",
            config.host,
        )
    ssl_context = None
    if config.tls_cert is not None:
        import ssl

        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(config.tls_cert, config.tls_key)
    # Everything the server writes (records, code, logs, queued events) is private to this
    # user; the handlers it runs keep the umask the server was started with.
    child_umask = os.umask(0o077)
    state_dir = config.state_dir or default_state_dir()
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    sock = _bind(config.host, config.port)
    port = sock.getsockname()[1]
    runtime_sock = _bind("127.0.0.1", 0)
    runtime_api = f"127.0.0.1:{runtime_sock.getsockname()[1]}"
    # Environments run on this machine: reach the server over loopback unless bound elsewhere.
    wildcard = config.host in ("0.0.0.0", "::")
    local_host = "127.0.0.1" if wildcard or is_loopback(config.host) else config.host
    shown_host = f"[{local_host}]" if ":" in local_host else local_host
    scheme = "https" if ssl_context is not None else "http"
    endpoint_url = f"{scheme}://{shown_host}:{port}"
    # With TLS, handlers calling the service (AWS_ENDPOINT_URL_LAMBDA) use a plain-HTTP
    # listener on loopback instead, so they need not trust the certificate; it serves the
    # same app, signatures required alike.
    inner_sock = _bind("127.0.0.1", 0) if ssl_context is not None else None
    inner_url = f"http://127.0.0.1:{inner_sock.getsockname()[1]}" if inner_sock else endpoint_url
    app = build_app(config, runtime_api, inner_url, endpoint_url)
    app[SERVICE].environments.child_umask = child_umask
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    timeouts = {"header_timeout_s": config.read_timeout_s,
                "idle_body_timeout_s": config.read_timeout_s}  # fmt: skip
    site = AwsSite(runner, sock, shutdown_timeout=2.0, ssl_context=ssl_context, **timeouts)
    inner_site = (
        AwsSite(runner, inner_sock, shutdown_timeout=2.0, **timeouts) if inner_sock else None
    )
    runtime_runner = web.AppRunner(build_runtime_app(app), handle_signals=False, access_log=None)
    await runtime_runner.setup()
    runtime_site = web.SockSite(runtime_runner, runtime_sock, shutdown_timeout=2.0)
    stop = asyncio.Event()
    announced: tuple[Path, ...] = ()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    watchdog = None
    if config.parent_pid is not None:
        watchdog = loop.create_task(_watch_parent(config.parent_pid, stop))
    try:
        await runtime_site.start()
        if inner_site is not None:
            await inner_site.start()
        await site.start()
        # Before the ready line: whoever waits for it can find the service by its files.
        announced = announce(state_dir, endpoint_url, pointer=config.announce)
        on_ready(endpoint_url)
        await stop.wait()
        log.info("stopping: closing environments and the event queue")
    finally:
        withdraw(announced)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        if watchdog is not None:
            watchdog.cancel()
        # The public side first: its shutdown stops the environments, which answers the
        # Runtime API's pending polls, so the runtime listener then closes at once.
        await runner.cleanup()
        await runtime_runner.cleanup()


async def _watch_parent(pid: int, stop: asyncio.Event) -> None:
    """Set stop once process pid has exited (checked every half second)."""
    import psutil

    while True:
        try:
            alive = psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            alive = False
        if not alive:
            log.warning("parent process %d is gone: stopping", pid)
            stop.set()
            return
        await asyncio.sleep(0.5)
