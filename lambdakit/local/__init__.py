"""lambdakit local: an embedded AWS Lambda service speaking the real REST API.

    with LocalLambda() as local:
        client = local.client()          # a boto3 Lambda client bound to it
        client.list_functions()

The server runs in a subprocess (`python -m lambdakit local`), so a notebook kernel or a test
session never shares its event loop or its signal handlers.
"""

from __future__ import annotations

import atexit
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path
from typing import Any

from lambdakit.errors import LocalServiceError

__all__ = ["LocalLambda"]

_READY_PREFIX = "lambdakit local listening on "
_BOUND = re.compile(r"\(bound (.+):(\d+), ")


class LocalLambda:
    """The local Lambda service in a subprocess, as a context manager.

    state_dir=None uses a temporary folder removed on exit; give a folder to keep functions
    across runs. port=0 picks a free port. `seed` makes alias routing and injected faults
    reproducible. `event_retry_delays` are the waits before an Event's 2nd and 3rd attempts.

    `access_key=(id, secret)` makes the service accept only requests SigV4-signed with that
    key (and `.client()`, `set_faults()` sign with it). A `host` off loopback needs it, and
    `tls_cert`/`tls_key` (or `insecure_http=True`); it warns with a `UserWarning`.
    `ca_bundle` is what clients verify the certificate with (default: `tls_cert`).
    `bound` is the (host, port) the server actually bound. `read_timeout_s` bounds the wait
    for a request's headers, and any pause in its body.

    `test_clock` (an aware datetime, or True for now) gives the scheduler a clock that moves
    only through `.clock.advance(seconds)` / `.clock.set(when)`, which return once every run
    due on the way has fired; only the scheduler reads it.

    `announce=True` also writes the per-user pointer that `lambdakit local faults/logs`
    follow (local/running.py), as `lambdakit local` does; by default only
    `<state_dir>/service.json` is written.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str] | None = None,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        region: str = "us-east-1",
        account_concurrency: int = 1000,
        account_rps: float | None = None,
        idle_timeout_s: float = 300.0,
        seed: int | None = None,
        event_retry_delays: tuple[float, ...] = (1.0, 2.0),
        startup_timeout_s: float = 60.0,
        access_key: tuple[str, str] | None = None,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        insecure_http: bool = False,
        ca_bundle: str | os.PathLike[str] | None = None,
        read_timeout_s: float = 30.0,
        test_clock: datetime.datetime | bool | None = None,
        announce: bool = False,
    ) -> None:
        self._given_state_dir = Path(state_dir) if state_dir is not None else None
        self.port = port
        self.host = host
        self.region = region
        self.account_concurrency = account_concurrency
        self.account_rps = account_rps
        self.idle_timeout_s = idle_timeout_s
        self.seed = seed
        self.event_retry_delays = tuple(event_retry_delays)
        self.startup_timeout_s = startup_timeout_s
        self.access_key = tuple(access_key) if access_key is not None else None
        self.tls_cert = Path(tls_cert) if tls_cert is not None else None
        self.tls_key = Path(tls_key) if tls_key is not None else None
        self.insecure_http = insecure_http
        self.ca_bundle = Path(ca_bundle) if ca_bundle is not None else self.tls_cert
        self.bound: tuple[str, int] | None = None
        self.read_timeout_s = read_timeout_s
        self.test_clock = self._clock_start(test_clock)
        self.announce = announce
        self.state_dir: Path | None = self._given_state_dir
        self.endpoint_url: str | None = None
        self._process: subprocess.Popen[str] | None = None
        self._temp_dir: str | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        where = self.endpoint_url or "not started"
        return f"LocalLambda({where}, {state}, state_dir={self.state_dir})"

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def server_log(self) -> Path:
        """The server's own log (stderr), inside the state folder."""
        if self.state_dir is None:
            raise LocalServiceError("LocalLambda has not been started")
        return self.state_dir / "server.log"

    def start(self) -> LocalLambda:
        """Start the server and wait for its ready line."""
        if self.running:
            return self
        if self._given_state_dir is None:
            self._temp_dir = tempfile.mkdtemp(prefix="lambdakit-local-")
            self.state_dir = Path(self._temp_dir)
        assert self.state_dir is not None
        # Private: the state holds code, payloads and logs (mkdtemp's folder is 0700 too).
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "lambdakit", "local",
            "--host", self.host, "--port", str(self.port), "--state-dir", str(self.state_dir),
            "--region", self.region, "--account-concurrency", str(self.account_concurrency),
            "--idle-timeout", str(self.idle_timeout_s),
            "--event-retry-delays", ",".join(f"{d:g}" for d in self.event_retry_delays),
            "--read-timeout", f"{self.read_timeout_s:g}",
        ]  # fmt: skip
        if self.seed is not None:
            command += ["--seed", str(self.seed)]
        if self.account_rps is not None:
            command += ["--account-rps", f"{self.account_rps:g}"]
        if self.access_key is not None:
            command += ["--access-key", ":".join(self.access_key)]
        if self.tls_cert is not None and self.tls_key is not None:
            command += ["--tls-cert", str(self.tls_cert), "--tls-key", str(self.tls_key)]
        if self.insecure_http:
            command += ["--insecure-http"]
        if self.test_clock is not None:
            command += ["--test-clock", self.test_clock.isoformat()]
        if self.announce:
            command += ["--announce"]
        # The server has its own session (a notebook's Ctrl-C must not reach it), so it
        # watches this process instead and exits if it dies without calling stop().
        command += ["--exit-with-parent", str(os.getpid())]
        log_fd = os.open(self.server_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with open(log_fd, "ab") as stderr:
            self._process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=stderr, text=True, bufsize=1,
                start_new_session=True,  # a Ctrl-C in the notebook must not hit the server
            )  # fmt: skip
        self.endpoint_url = self._wait_ready()
        atexit.register(self.stop)
        from lambdakit.local.server import is_loopback

        if not is_loopback(self.host):
            warnings.warn(
                f"lambdakit local is listening on {self.host} (bound {self.bound}), not "
                "loopback: anyone who can reach this machine can try it; only requests signed "
                "with its access key are served.",
                UserWarning,
                stacklevel=2,
            )
        return self

    @staticmethod
    def _clock_start(value: datetime.datetime | bool | None) -> datetime.datetime | None:
        if value is None or value is False:
            return None
        if value is True:
            return datetime.datetime.now(datetime.timezone.utc)
        if not isinstance(value, datetime.datetime) or value.tzinfo is None:
            raise LocalServiceError(
                f"test_clock must be a timezone-aware datetime or True, got {value!r}"
            )
        return value

    @property
    def clock(self) -> Any:
        """The scheduler's test clock (a local.clock.ClockControl); needs test_clock=."""
        from lambdakit.local.clock import ClockControl

        if self.test_clock is None:
            raise LocalServiceError(
                "this service runs its scheduler on the system clock: start it with "
                "LocalLambda(test_clock=...) to move time"
            )

        def request(method: str, body: dict[str, Any] | None) -> dict[str, Any]:
            reply = self._management(method, "/_lambdakit/clock", body, what="the test clock")
            self.test_clock = datetime.datetime.fromtimestamp(reply["Now"], datetime.timezone.utc)
            return reply

        return ClockControl(request)

    def _wait_ready(self) -> str:
        assert self._process is not None and self._process.stdout is not None
        found: list[str] = []
        done = threading.Event()
        stdout = self._process.stdout

        def drain() -> None:
            # Reads the ready line, then keeps the pipe empty so the server never blocks on it.
            for line in stdout:
                if not found and line.startswith(_READY_PREFIX):
                    found.append(line[len(_READY_PREFIX) :].split()[0])
                    bound = _BOUND.search(line)
                    if bound is not None:
                        self.bound = (bound.group(1).strip("[]"), int(bound.group(2)))
                    done.set()
            done.set()

        threading.Thread(target=drain, name="lambdakit-local-stdout", daemon=True).start()
        done.wait(self.startup_timeout_s)
        if found:
            return found[0]
        try:  # its output ended or the wait ran out: did it exit?
            status: int | None = self._process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            status = None
        self.stop()
        what = (
            f"exited with status {status}"
            if status is not None
            else f"did not become ready within {self.startup_timeout_s:g} s"
        )
        raise LocalServiceError(f"lambdakit local {what}; its log:\n{self._log_tail()}")

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.server_log.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and every environment it started."""
        process, self._process = self._process, None
        atexit.unregister(self.stop)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                # Its environments share its session: take them down with it.
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def restart(self, *, test_clock: datetime.datetime | None = None) -> LocalLambda:
        """Stop and start again on the same state folder (and port, when one was given).

        A test clock goes on from where it was, or from `test_clock` (the service was
        stopped until then: runs due meanwhile were missed).
        """
        if test_clock is not None:
            self.test_clock = self._clock_start(test_clock)
        elif self.test_clock is not None and self.running:
            self.clock.now()  # remember where it stands
        keep = self._temp_dir
        self._temp_dir = None  # keep the temporary state across the restart
        self.stop()
        self._temp_dir = keep
        if self._given_state_dir is None:
            self._given_state_dir = self.state_dir
        return self.start()

    def client(self, **config: Any) -> Any:
        """A boto3 Lambda client for this service: dummy credentials, no botocore retries.

        Keyword arguments override botocore Config settings (read_timeout, max_pool_connections,
        retries, ...).
        """
        return self._boto_client("lambda", config)

    def scheduler_client(self, **config: Any) -> Any:
        """A boto3 EventBridge Scheduler client for this service (the same port, settings)."""
        return self._boto_client("scheduler", config)

    def _boto_client(self, service: str, config: dict[str, Any]) -> Any:
        import boto3
        from botocore.config import Config

        if self.endpoint_url is None:
            raise LocalServiceError("LocalLambda has not been started")
        settings: dict[str, Any] = {
            "retries": {"total_max_attempts": 1, "mode": "standard"},
            "read_timeout": 910,  # above Lambda's longest timeout: never re-invoke on a timeout
            "connect_timeout": 5,
            "max_pool_connections": 32,
        }
        settings.update(config)
        key_id, secret = self.access_key or ("lambdakit", "lambdakit")
        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            verify=str(self.ca_bundle) if self.ca_bundle is not None else None,
            config=Config(**settings),
        )

    def set_faults(
        self,
        function_name: str,
        *,
        throttle_rate: float = 0.0,
        error_rate: float = 0.0,
        latency_ms: float = 0.0,
        seed: int | None = None,
        throttle_reason: str = "ConcurrentInvocationLimitExceeded",
        max_rps: float | None = None,
    ) -> dict[str, Any]:
        """Inject faults into a function's invocations (replacing earlier settings).

        Example: ``local.set_faults("fn", throttle_rate=0.3, seed=1)``; a seed makes the
        sequence of throttles and errors reproducible. `throttle_reason` is the Reason the
        injected 429s carry; `max_rps` refuses requests beyond that many per second with
        Reason FunctionInvocationRateLimitExceeded, as Lambda's rate rule does.
        """
        settings = {"throttle_rate": throttle_rate, "error_rate": error_rate,
                    "latency_ms": latency_ms, "seed": seed, "throttle_reason": throttle_reason,
                    "max_rps": max_rps}  # fmt: skip
        return self._faults_request("PUT", function_name, settings)

    def faults(self, function_name: str) -> dict[str, Any]:
        """A function's fault settings ({} when none)."""
        return self._faults_request("GET", function_name)

    def clear_faults(self, function_name: str) -> None:
        """Remove a function's injected faults."""
        self._faults_request("DELETE", function_name)

    def _faults_request(
        self, method: str, function_name: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        path = f"/_lambdakit/faults/{urllib.parse.quote(function_name)}"
        return self._management(method, path, body, what=f"faults of {function_name!r}")

    def _management(
        self, method: str, path: str, body: dict[str, Any] | None, *, what: str
    ) -> dict[str, Any]:
        """One call to a /_lambdakit endpoint; its JSON reply, or LocalServiceError."""
        if self.endpoint_url is None:
            raise LocalServiceError("LocalLambda has not been started")
        data = json.dumps(body).encode() if body is not None else None
        url = f"{self.endpoint_url}{path}"
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if self.access_key is not None:
            headers = self._signed(method, url, data, headers)
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        context = None
        if self.ca_bundle is not None:
            import ssl

            context = ssl.create_default_context(cafile=str(self.ca_bundle))
        try:
            with urllib.request.urlopen(request, timeout=120, context=context) as response:
                text = response.read()
        except urllib.error.HTTPError as exc:
            reply = json.loads(exc.read() or b"{}")
            detail = reply.get("message") or reply.get("Message") or exc.reason
            raise LocalServiceError(f"{what}: {detail}") from None
        return json.loads(text) if text else {}

    def schedule_history(self, name: str, group: str = "default") -> list[dict[str, Any]]:
        """A schedule's firings, oldest first (see lambdakit.local.firings), from the state dir."""
        from lambdakit.local.firings import read_history

        if self.state_dir is None:
            raise LocalServiceError("LocalLambda has not been started")
        return read_history(self.state_dir, name, group)

    def dead_letters(self, queue: str) -> list[dict[str, Any]]:
        """The dead-letter records kept for a DeadLetterConfig queue (its ARN or name)."""
        from lambdakit.local.firings import read_dead_letters

        if self.state_dir is None:
            raise LocalServiceError("LocalLambda has not been started")
        return read_dead_letters(self.state_dir, queue)

    def _signed(
        self, method: str, url: str, data: bytes | None, headers: dict[str, str]
    ) -> dict[str, str]:
        """`headers` plus a SigV4 signature by this service's access key (service lambda)."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        assert self.access_key is not None
        request = AWSRequest(method=method, url=url, data=data or b"", headers=headers)
        SigV4Auth(Credentials(*self.access_key), "lambda", self.region).add_auth(request)
        return dict(request.headers.items())

    def logs(self, function_name: str, tail: int | None = None) -> list[str]:
        """A function's stored log lines (the last `tail` when given), oldest first."""
        from lambdakit.local.logs import read_logs

        if self.state_dir is None:
            raise LocalServiceError("LocalLambda has not been started")
        return [event.message for event in read_logs(self.state_dir, function_name, tail=tail)]

    def __enter__(self) -> LocalLambda:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
