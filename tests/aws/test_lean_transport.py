"""The lean path's own HTTP/1.1 exchange: every way a server can reply, read as boto3 reads it.

A raw-socket server answers each request with scripted bytes (chunked bodies, a body running
to the connection's end, `Connection: close`, a reply cut short, a broken status line, an
interim 100 Continue, repeated headers), and both paths, boto3's and the lean one, must give
the same Outcome for each. Then what only the lean transport does: connections kept alive
and reused, a connection the server closed while idle never used, large bodies whole.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from typing import Any

import pytest

from lambdakit.aws.lean_transport import SocketTransport, transport_for
from lambdakit.invocation import CONNECTION_ERROR, OK, SERVICE_ERROR, TIMEOUT
from tests.aws.test_lean_invoker import _test_ca, batch_of, both

HEAD = b"HTTP/1.1 200 OK\r\nX-Amz-Executed-Version: 3\r\nx-amzn-RequestId: raw-1\r\n"


class RawServer:
    """Loopback server: reads whole requests, answers each with `script(request)`'s bytes.

    `script` returns the bytes to send, or (bytes, "close") to close the connection after
    them. Every request is kept in `requests`, with the number of its connection.
    """

    def __init__(self, tls: Any = None) -> None:
        self.script: Any = lambda request: HEAD + b"Content-Length: 3\r\n\r\n[1]"
        self.requests: list[tuple[int, bytes]] = []
        self.connections = 0
        self.tls = tls  # an ssl.SSLContext: HTTPS
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.sock.getsockname()[1]}"
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.open.append(conn)
            threading.Thread(target=self._serve, args=(conn, self.connections), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        # A client that gave up on a reply closes while it is sent: not the test's failure.
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            if self.tls:
                conn = self.tls.wrap_socket(conn, server_side=True)
            self._exchange(conn, number)

    def _exchange(self, conn: socket.socket, number: int) -> None:
        data = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(1 << 20)
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                while len(data) < length:
                    data += conn.recv(1 << 20)
                request, data = head + b"\r\n\r\n" + data[:length], data[length:]
                self.requests.append((number, request))
                reply = self.script(request)
                close = isinstance(reply, tuple)
                reply = reply[0] if close else reply
                # A list: its pieces sent apart (a TLS record each), a moment between them.
                for at, piece in enumerate(reply if isinstance(reply, list) else [reply]):
                    if at:
                        time.sleep(0.2)
                    conn.sendall(piece)
                if close:
                    return

    def close_idle(self) -> None:
        """Close every connection from the server's side, as an idle timeout does."""
        for conn in self.open:
            with contextlib.suppress(OSError):  # one the client closed already
                conn.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.close_idle()
        self.sock.close()


@pytest.fixture
def raw():
    server = RawServer()
    yield server
    server.close()


def _chunked(request: bytes) -> bytes:
    chunks = b"2;ext=1\r\n[4\r\n1\r\n]\r\n0\r\nX-T: 1\r\n\r\n"  # an extension, a trailer
    return HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunks


SCRIPTS = {
    "chunked": (_chunked, OK),
    "to_close": (lambda r: (HEAD + b"Connection: close\r\n\r\n[5]", "close"), OK),
    "connection_close": (
        lambda r: (HEAD + b"Connection: close\r\nContent-Length: 3\r\n\r\n[6]", "close"),
        OK,
    ),
    "continue_first": (
        lambda r: b"HTTP/1.1 100 Continue\r\n\r\n" + HEAD + b"Content-Length: 3\r\n\r\n[7]",
        OK,
    ),
    "repeated_header": (
        lambda r: HEAD + b"X-Extra: a\r\nX-Extra: b\r\nContent-Length: 3\r\n\r\n[8]",
        OK,
    ),
    "cut_in_body": (lambda r: (HEAD + b"Content-Length: 30\r\n\r\n[9", "close"), CONNECTION_ERROR),
    # boto3 (http.client) reads this as a whole 200 reply without a body; see below.
    "cut_in_head": (lambda r: (b"HTTP/1.1 200 OK\r\nX-Amz-Exec", "close"), CONNECTION_ERROR),
    "no_reply": (lambda r: (b"", "close"), CONNECTION_ERROR),
    # A terabyte announced, three bytes sent: read as it comes, never allocated up front
    # (http.client allocates the announced length, so boto3 raises MemoryError: not compared).
    "lying_length": (
        lambda r: (HEAD + b"Content-Length: 1000000000000\r\n\r\n[1]", "close"),
        CONNECTION_ERROR,
    ),
    "not_http": (lambda r: (b"SSH-2.0-OpenSSH\r\n\r\n", "close"), CONNECTION_ERROR),
    # No x-amzn-RequestId: botocore's parser takes x-amz-request-id instead.
    "request_id_fallback": (
        lambda r: (
            b"HTTP/1.1 200 OK\r\nX-Amz-Executed-Version: 3\r\nx-amz-request-id: rid-2\r\n"
            b"Content-Length: 3\r\n\r\n[1]"
        ),
        OK,
    ),
    "error_chunked": (
        lambda r: (
            b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4\r\noops\r\n0\r\n\r\n"
        ),
        SERVICE_ERROR,
    ),
}


@pytest.mark.parametrize("kind", list(SCRIPTS))
def test_both_paths_read_every_reply_shape_alike(raw, kind):
    script, expected = SCRIPTS[kind]
    raw.script = script
    boto, lean = both(raw.url, read_timeout=5)
    theirs = boto.invoke(batch_of([1])) if kind != "lying_length" else None
    ours = lean.invoke(batch_of([1]))
    if kind == "lying_length":
        assert ours.error_type == "ResponseStreamingError"
    elif kind == "cut_in_head":
        # http.client takes a head cut short for a complete one (logging a parse defect),
        # and boto3 then reads a 200 with no body. The lean path says the connection broke:
        # a retryable failure instead of a reply that never came. Neither passes as success.
        assert theirs.outcome != OK
        assert (ours.outcome, ours.error_type) == (CONNECTION_ERROR, "ConnectionClosedError")
    else:
        assert ours == theirs
    assert ours.outcome == expected, ours
    if expected == OK:
        assert ours.executed_version == "3"
    # A connection the reply ends (or breaks) is never reused: the next request gets a new one.
    again = lean.invoke(batch_of([2]))
    assert again.outcome == expected


def test_an_endless_head_is_refused(raw):
    # http.client refuses a header line over 64 KiB; the lean path a head over 64 KiB.
    # The head never ends and the connection stays open: without the bound the client would
    # read until its read timeout (a TIMEOUT), with it the reply is refused at once.
    raw.script = lambda request: HEAD + b"X-Long: " + b"a" * 200_000
    _, lean = both(raw.url, read_timeout=20)
    outcome = lean.invoke(batch_of([1]))
    assert (outcome.outcome, outcome.error_type) == (CONNECTION_ERROR, "ConnectionClosedError")


def test_connections_are_kept_alive_and_reused(raw):
    _, lean = both(raw.url)
    for index in range(5):
        assert lean.invoke(batch_of([index])).outcome == OK
    assert raw.connections == 1
    assert [number for number, _ in raw.requests] == [1] * 5


def test_a_connection_closed_while_idle_is_never_used(raw):
    _, lean = both(raw.url)
    assert lean.invoke(batch_of([1])).outcome == OK
    raw.close_idle()  # the server's idle timeout
    outcome = lean.invoke(batch_of([2]))
    assert outcome.outcome == OK, outcome  # not a ConnectionClosedError
    assert raw.connections == 2
    assert len(raw.requests) == 2  # each request sent once


def test_a_large_body_arrives_whole(raw):
    items = ["x" * 1000] * 3000  # 3 MB: head and body go in separate sends
    big = b"[" + b",".join([b'"' + b"y" * 1000 + b'"'] * 3000) + b"]"
    raw.script = lambda request: HEAD + b"Content-Length: %d\r\n\r\n" % len(big) + big
    _, lean = both(raw.url)
    outcome = lean.invoke(batch_of(items))
    assert outcome.outcome == OK
    assert outcome.outputs == ["y" * 1000] * 3000
    (_, request), body = raw.requests[0], batch_of(items).body
    assert request.endswith(b"\r\n\r\n" + body)


def test_the_request_head_is_what_http_client_writes(raw):
    boto, lean = both(raw.url)
    boto.invoke(batch_of([1]))
    lean.invoke(batch_of([1]))
    (_, theirs), (_, ours) = raw.requests
    # Request line, then Host and Accept-Encoding as http.client's putrequest puts them.
    assert ours.split(b"\r\n")[:3] == theirs.split(b"\r\n")[:3]
    assert ours.split(b"\r\n")[1] == b"Host: " + raw.url.removeprefix("http://").encode()


def test_a_header_value_with_a_line_break_is_refused(raw):
    _, lean = both(raw.url)
    transport = lean._transport
    assert isinstance(transport, SocketTransport)
    with pytest.raises(ValueError, match="line break"):
        transport.send({"X-Bad": "a\r\nInjected: 1"}, b"{}")
    assert raw.requests == []


def test_the_transport_is_picked_by_proxy(raw, monkeypatch):
    _, lean = both(raw.url)
    assert type(lean._transport).__name__ == "SocketTransport"
    monkeypatch.setenv("HTTP_PROXY", raw.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    _, proxied = both("http://lambda.example.invalid:8080")
    assert type(proxied._transport).__name__ == "Urllib3Transport"
    http = proxied.client._endpoint.http_session
    assert type(transport_for(http, proxied.url)).__name__ == "Urllib3Transport"


# Status lines as http.client reads them (`line.split(None, 2)`, the code by int() in
# 100-999, HTTP/1.x or HTTP/1.0 / 0.9): a line it refuses is never a reply on the lean path,
# and one it reads is read alike.
STATUS_LINES = {
    "four_digits": (b"HTTP/1.1 2000 OK", CONNECTION_ERROR),
    "two_digits": (b"HTTP/1.1 20", CONNECTION_ERROR),
    "below_100": (b"HTTP/1.1 099 Odd", CONNECTION_ERROR),
    "no_space_after_code": (b"HTTP/1.1 200OK", CONNECTION_ERROR),
    "not_ascii_digits": (b"HTTP/1.1 \xb200 OK", CONNECTION_ERROR),
    "http_2": (b"HTTP/2 200 OK", CONNECTION_ERROR),
    "leading_zero": (b"HTTP/1.1 0200 OK", OK),
    "two_spaces": (b"HTTP/1.1  200 OK", OK),
    "tab": (b"HTTP/1.1\t200\tOK", OK),
    "no_reason": (b"HTTP/1.1 200", OK),
    "http_0_9": (b"HTTP/0.9 200 OK", OK),
}


@pytest.mark.parametrize("kind", list(STATUS_LINES))
def test_status_lines_are_read_as_http_client_reads_them(raw, kind):
    line, expected = STATUS_LINES[kind]
    raw.script = lambda request: (line + b"\r\nContent-Length: 3\r\n\r\n[1]", "close")
    boto, lean = both(raw.url, read_timeout=5)
    theirs, ours = boto.invoke(batch_of([1])), lean.invoke(batch_of([1]))
    assert ours == theirs
    assert ours.outcome == expected, ours
    if expected == OK:
        assert ours.http_status == 200


def test_bytes_left_in_a_tls_record_after_a_reply_never_answer_the_next_request(
    tmp_path, monkeypatch
):
    # The body's end and bytes nobody asked for (here a whole second reply) come in one TLS
    # record after the body's start. Reading only the body's missing bytes leaves the rest
    # decrypted inside the SSL object, where the idle check (the socket readable?) cannot see
    # it: the reused connection's next "reply" is then those bytes, another request's answer.
    ca, cert, key = _test_ca(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = RawServer(tls=context)
    stale = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n[999]"
    replies = iter(
        [
            [HEAD + b"Content-Length: 4\r\n\r\n[1", b"1]" + stale],
            HEAD + b"Content-Length: 4\r\n\r\n[22]",
        ]
    )
    server.script = lambda request: next(replies)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(ca))
    try:
        _, lean = both(server.url, read_timeout=5)
        assert lean.invoke(batch_of([1])).outputs == [11]
        second = lean.invoke(batch_of([2]))
        assert (second.outcome, second.outputs) == (OK, [22]), second
    finally:
        server.close()


def test_the_request_id_falls_back_as_botocore_reads_it(raw):
    raw.script = SCRIPTS["request_id_fallback"][0]
    boto, lean = both(raw.url, read_timeout=5)
    assert boto.invoke(batch_of([1])).request_id == lean.invoke(batch_of([1])).request_id
    assert lean.invoke(batch_of([1])).request_id == "rid-2"


@pytest.mark.parametrize(
    "reply",
    [
        HEAD + b"Content-Length: 30\r\n\r\n[9",  # cut short
        HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n[1]\r\n0\r\n\r\n",  # a bad chunk
    ],
    ids=["cut_body", "bad_chunk"],
)
def test_a_body_that_breaks_through_a_proxy_is_boto3s_streaming_error(raw, monkeypatch, reply):
    raw.script = lambda request: (reply, "close")
    monkeypatch.setenv("HTTP_PROXY", raw.url)  # the raw server answers as the proxy
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    boto, lean = both("http://lambda.example.invalid:8080", read_timeout=5)
    assert type(lean._transport).__name__ == "Urllib3Transport"
    theirs, ours = boto.invoke(batch_of([1])), lean.invoke(batch_of([1]))
    assert (ours.outcome, ours.error_type) == (CONNECTION_ERROR, "ResponseStreamingError")
    assert (theirs.outcome, theirs.error_type) == (ours.outcome, ours.error_type)


def test_a_send_that_stalls_is_a_connection_error_at_the_connect_timeout():
    # A peer that takes the connection and reads nothing: the request's send fills the
    # buffers and waits. urllib3 bounds the send by the connect timeout and calls it a broken
    # connection (retried), never a read timeout (a function that may still be running).
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # never accepted: the kernel completes the handshake, nobody reads
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        boto, lean = both(url, read_timeout=120, connect_timeout=1)
        big = batch_of(["x" * 1000] * 12_000)  # 12 MB: more than every buffer on the way
        theirs, ours = boto.invoke(big), lean.invoke(big)
        assert (ours.outcome, ours.error_type) == (CONNECTION_ERROR, "ConnectionClosedError")
        assert (theirs.outcome, theirs.error_type) == (ours.outcome, ours.error_type)
    finally:
        listener.close()


def test_a_tls_handshake_that_stalls_is_the_same_timeout_as_boto3s(raw):
    # The raw server takes the connection and never answers the ClientHello.
    boto, lean = both(raw.url.replace("http://", "https://"), read_timeout=120, connect_timeout=1)
    theirs, ours = boto.invoke(batch_of([1])), lean.invoke(batch_of([1]))
    assert (ours.outcome, ours.error_type) == (TIMEOUT, "ReadTimeoutError")
    assert (theirs.outcome, theirs.error_type, theirs.error_message) == (
        ours.outcome,
        ours.error_type,
        ours.error_message,
    )
