"""HTTP connections of the public port: AWS-shaped answers to protocol errors, read timeouts.

aiohttp answers a request it cannot parse (headers over 8 KB, a negative or non-numeric
Content-Length, garbage after a body) with a plain-text 400, and a parse error in a packet
that also held a complete request lost that request's reply. `AwsConnection` answers with
the JSON body and `x-amzn-ErrorType` header every other error has, feeds the parser one
header block at a time so that the requests before the error are still answered, and then
closes the connection. It also bounds how long a client may take to send its headers and,
between two packets, its body.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from aiohttp import web
from aiohttp.http import RawRequestMessage
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from lambdakit.local.checks import ApiError

__all__ = ["HEADER_TIMEOUT_S", "IDLE_BODY_TIMEOUT_S", "AwsConnection", "AwsSite"]

HEADER_TIMEOUT_S = 30.0  # from a request's first byte to the end of its headers
IDLE_BODY_TIMEOUT_S = 30.0  # longest pause while a body is still arriving
KEEPALIVE_TIMEOUT_S = 75.0  # an idle keep-alive connection is closed after this
_MAX_SPLITS = 16  # header blocks fed one by one per packet (pipelined requests)
_HEADER_END = b"\r\n\r\n"


def _error_bytes(status: int, reason: str, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 error response with AWS's JSON body, for writing to a transport."""
    body = json.dumps({"Type": "User", "message": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nx-amzn-ErrorType: {code}\r\n"
        f"x-amzn-RequestId: {uuid.uuid4()}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class AwsConnection(RequestHandler):
    """aiohttp's request handler with AWS-shaped protocol errors and read timeouts."""

    def __init__(
        self,
        manager: Any,
        *,
        loop: asyncio.AbstractEventLoop,
        header_timeout_s: float = HEADER_TIMEOUT_S,
        idle_body_timeout_s: float = IDLE_BODY_TIMEOUT_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self._header_timeout_s = header_timeout_s
        self._idle_body_timeout_s = idle_body_timeout_s
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body: Any = None  # the StreamReader of the body being received
        self._parse_failed = False

    def data_received(self, data: bytes) -> None:
        """Feed the parser up to the end of each header block, then the rest."""
        start = 0
        for _ in range(_MAX_SPLITS):
            end = data.find(_HEADER_END, start)
            if end < 0 or end + len(_HEADER_END) >= len(data):
                break
            self._feed(data[start : end + len(_HEADER_END)])
            start = end + len(_HEADER_END)
        self._feed(data[start:] if start else data)

    def _feed(self, data: bytes) -> None:
        if self._parse_failed or not data:
            return
        in_body = self._body is not None and not self._body.is_eof()
        queued = len(self._messages)
        super().data_received(data)
        fresh = list(self._messages)[queued:]
        for message, payload in fresh:
            if not isinstance(message, RawRequestMessage):
                # An error entry: the parser gave up, and nothing after it is parsed.
                self._parse_failed = True
            elif not payload.is_eof():
                self._body = payload
        loop = self._loop
        if fresh and self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        elif not fresh and not in_body and self._header_timer is None:
            # The first bytes of a request whose headers have not ended yet.
            self._header_timer = loop.call_later(self._header_timeout_s, self._headers_expired)
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        if self._body is not None and not self._body.is_eof():
            self._body_timer = loop.call_later(self._idle_body_timeout_s, self._body_expired)
        else:
            self._body = None

    def _headers_expired(self) -> None:
        self._header_timer = None
        transport = self.transport
        if transport is not None and not transport.is_closing():
            message = f"The request headers did not arrive within {self._header_timeout_s:g} s."
            reply = _error_bytes(408, "Request Timeout", "RequestTimeoutException", message)
            transport.write(reply)
        self.force_close()

    def _body_expired(self) -> None:
        self._body_timer = None
        body, self._body = self._body, None
        if body is not None and not body.is_eof():
            # The handler waiting on the body gets this error, and answers it as AWS would.
            body.set_exception(
                ApiError(
                    408,
                    "RequestTimeoutException",
                    f"The request body stopped arriving for {self._idle_body_timeout_s:g} s "
                    "before its Content-Length was reached.",
                )
            )
        self.keep_alive(False)  # the 408 is the connection's last reply

    def connection_lost(self, exc: BaseException | None) -> None:
        """Stop the timers with the connection."""
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None
        super().connection_lost(exc)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """An AWS error reply for what aiohttp could not parse; the connection then closes."""
        if request.writer.output_size > 0:
            raise ConnectionError("the response was already started; cannot send an error")
        if status >= 500:
            self.log_exception("Error handling request", exc_info=exc)
            code, text = "ServiceException", "lambdakit local failed to handle the request."
        elif isinstance(exc, LineTooLong) or "too large" in (message or "").lower():
            status, code = 431, "RequestHeaderFieldsTooLargeException"
            text = f"Request header fields too large ({self.max_field_size} bytes at most)."
        else:
            code = "InvalidRequestContentException"
            detail = exc.message if isinstance(exc, HttpProcessingError) else message
            text = f"Could not parse the HTTP request: {str(detail or 'malformed')[:200]}"
        key = "Message" if code == "ServiceException" else "message"
        response = web.json_response(
            {"Type": "User" if status < 500 else "Service", key: text},
            status=status,
            headers={"x-amzn-ErrorType": code, "x-amzn-RequestId": str(uuid.uuid4())},
        )
        response.force_close()
        return response


class AwsSite(web.SockSite):
    """A SockSite whose connections are AwsConnection (with these read timeouts)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        sock: Any,
        *,
        header_timeout_s: float = HEADER_TIMEOUT_S,
        idle_body_timeout_s: float = IDLE_BODY_TIMEOUT_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(runner, sock, **kwargs)
        self._timeouts = {
            "header_timeout_s": header_timeout_s,
            "idle_body_timeout_s": idle_body_timeout_s,
        }

    async def start(self) -> None:
        """Listen on the socket, with AwsConnection for every connection."""
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None

        def connection() -> AwsConnection:
            return AwsConnection(
                server,
                loop=loop,
                access_log=None,
                keepalive_timeout=KEEPALIVE_TIMEOUT_S,
                **self._timeouts,
            )

        self._server = await loop.create_server(
            connection, sock=self._sock, ssl=self._ssl_context, backlog=self._backlog
        )
