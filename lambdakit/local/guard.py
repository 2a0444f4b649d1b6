"""The cross-site request guard: Host, Origin and Content-Type checks on the public port.

A web page in the analyst's browser can reach 127.0.0.1 too. Three checks keep it out:

- **Host** must name the address the service is bound to (loopback names and IPs by
  default), so that a DNS-rebinding page, whose requests carry its own host name, is refused;
- a browser **Origin** (or `Sec-Fetch-Site: cross-site`) other than the service's own is
  refused unless the request is SigV4-signed, which a page cannot do without a preflight that
  is never granted;
- the Lambda API's JSON operations take only `application/json` or the
  `application/x-amz-json-*` types that boto3 sends, never the form and `text/plain` types a
  page may post without a preflight. Invoke takes what boto3 sends (no type) or a JSON or
  binary type, never those.

Paths outside the Lambda API and the management endpoints (function URLs, which answer CORS
from their own configuration) get the Host check only.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from lambdakit.local.checks import ApiError

__all__ = ["RequestGuard", "allowed_hosts", "is_api_path"]

_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
# The Lambda REST API (dated paths), the Scheduler's (undated) and lambdakit's management
# endpoints.
_API_PATH = re.compile(
    r"^/(?:\d{4}-\d\d-\d\d/|(?:schedules|schedule-groups|tags)(?:/|$)"
    r"|_lambdakit/(?:faults|code|clock|schedules)(?:/|$))"
)
_INVOKE_PATH = re.compile(r"^/\d{4}-\d\d-\d\d/functions/[^/]+/invocations$")
# What a page may send without a CORS preflight (the "CORS-safelisted" request types).
_SIMPLE_TYPES = frozenset(
    {"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"}
)
_BINARY_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})
_SIGNED_PREFIX = "AWS4-HMAC-SHA256 "


def is_api_path(path: str) -> bool:
    """True for the Lambda and Scheduler APIs' paths and the management endpoints."""
    return _API_PATH.match(path) is not None


def allowed_hosts(bind_host: str, extra: tuple[str, ...] = ()) -> frozenset[str]:
    """Host names (without port, lower-case) the service answers to when bound to bind_host."""
    names = set(_LOOPBACK_NAMES) | {name.lower().strip("[]") for name in extra}
    host = bind_host.lower().strip("[]")
    if host in ("0.0.0.0", "::"):
        # Bound to every address: this machine's names and addresses, as the network sees it.
        hostname = socket.gethostname().lower()
        names |= {hostname, socket.getfqdn().lower()}
        with contextlib.suppress(OSError):
            names |= {info[4][0].lower() for info in socket.getaddrinfo(hostname, None)}
    else:
        names.add(host)
    return frozenset(names)


def _host_name(host: str) -> str:
    """The name of a Host header value, without its port ('[::1]:9001' -> '::1')."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _refused(message: str) -> ApiError:
    return ApiError(403, "AccessDeniedException", message)


@dataclass(frozen=True)
class RequestGuard:
    """The checks for one bound address; `middleware` applies them to every request."""

    hosts: frozenset[str]
    port: int
    any_address: bool = False  # bound to 0.0.0.0/::, where any IP literal names this host

    def check(self, request: web.BaseRequest) -> None:
        """Raise the ApiError refusing `request`, if it is one a page could have forged."""
        raw_host = request.headers.get("Host")
        if not raw_host:
            raise _refused("A Host header is required.")
        name = _host_name(raw_host)
        if name not in self.hosts and not (self.any_address and _is_ip(name)):
            raise _refused(
                f"Host {raw_host[:100]!r} is not an address this service is bound to "
                f"(accepted: {', '.join(sorted(self.hosts))})."
            )
        path = request.path
        if not is_api_path(path):
            return
        signed = request.headers.get("Authorization", "").startswith(_SIGNED_PREFIX)
        if not signed:
            self._check_origin(request)
        if request.method in ("POST", "PUT", "PATCH") and _has_body(request):
            self._check_content_type(request, invoke=bool(_INVOKE_PATH.match(path)))

    def _check_origin(self, request: web.BaseRequest) -> None:
        origin = request.headers.get("Origin")
        if origin is not None and not self._own_origin(origin):
            raise _refused(
                f"Cross-origin request from {origin[:100]!r} refused: the Lambda API takes "
                "requests from its own origin, or SigV4-signed ones."
            )
        if request.headers.get("Sec-Fetch-Site", "").lower() in ("cross-site", "same-site"):
            raise _refused("Cross-site request refused: sign it with SigV4.")

    def _own_origin(self, origin: str) -> bool:
        match = re.fullmatch(r"(https?)://(\[[^\]]+\]|[^:/]+)(?::(\d+))?", origin.strip().lower())
        if match is None:
            return False  # "null" (a sandboxed page or a file) and anything malformed
        scheme, host, port = match.groups()
        default = 443 if scheme == "https" else 80
        name = host.strip("[]")
        known = name in self.hosts or (self.any_address and _is_ip(name))
        return known and int(port or default) == self.port

    def _check_content_type(self, request: web.BaseRequest, *, invoke: bool) -> None:
        raw = request.headers.get("Content-Type")
        kind = (raw or "").split(";", 1)[0].strip().lower()
        json_type = kind == "application/json" or kind.startswith("application/x-amz-json-")
        if json_type or (invoke and (raw is None or kind in _BINARY_TYPES)):
            return
        if invoke and kind not in _SIMPLE_TYPES and not kind.startswith("text/"):
            return
        wanted = "application/json" if not invoke else "application/json (or no type)"
        raise ApiError(
            415,
            "UnsupportedMediaTypeException",
            f"Content-Type {raw!r} is not accepted here: send {wanted}.",
        )

    @web.middleware
    async def middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """aiohttp middleware applying `check` (mount it inside the error middleware)."""
        self.check(request)
        return await handler(request)


def _has_body(request: web.BaseRequest) -> bool:
    return bool(request.content_length) or request.headers.get("Transfer-Encoding") is not None
