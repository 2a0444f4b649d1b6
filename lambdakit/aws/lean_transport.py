"""The lean Invoke path's HTTP/1.1: a request in one send, its reply read with bytes operations.

http.client, under urllib3, costs most of an Invoke's remaining client CPU: a `putheader`
call per header with its checks, headers and body in two sends, a URL re-parsed per request,
two `settimeout` calls, and every reply's headers through the `email` parser. Each blocking
call also hands the GIL to another of the run's threads. `SocketTransport` keeps what
urllib3 does well, making and connecting connections (TLS with the session's CA bundle and
client certificate, connect timeouts), and does the exchange itself: the request head
formatted once per request and sent with its body in one `sendall`, the reply's status line
and headers split from the bytes read, its body by Content-Length or chunks. Its failures
are urllib3's exception types, raised where urllib3 raises them, so that botocore's table
(`connection.botocore_transport_error`) turns them into the errors boto3 raises.

Through a proxy, `Urllib3Transport` sends with the pool's own `urlopen`, which knows
proxies' ways (absolute targets, proxy headers, CONNECT tunnels).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

__all__ = ["Answer", "BrokenBody", "SocketTransport", "Urllib3Transport", "transport_for"]

_HEAD_END = b"\r\n\r\n"
_CHUNK = 65536
# Above this a body goes in its own send: joining it to the head would copy megabytes.
_JOIN_BELOW = 1 << 20
# http.client's bound on a header line (65,536), for the whole head: more is no Lambda reply.
_MAX_HEAD = 65536


@dataclass(frozen=True, slots=True)
class Answer:
    """A reply: status, header pairs as sent, header values by lower-case name, body."""

    status: int
    pairs: tuple[tuple[str, str], ...]
    headers: dict[str, str]
    data: bytes


class BrokenBody(Exception):
    """The reply's head arrived but its body did not: boto3 raises ResponseStreamingError."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def transport_for(http: Any, url: str) -> SocketTransport | Urllib3Transport:
    """The transport for `url` through botocore's HTTP session `http` (its own pool)."""
    try:
        proxy_url = http._proxy_config.proxy_url_for(url)
        pool = http._get_connection_manager(url, proxy_url).connection_from_url(url)
        http._setup_ssl_cert(pool, url, http._verify)
        request_target = http._get_request_target(url, proxy_url)
    except AttributeError as exc:  # a botocore whose HTTP session has changed shape
        from lambdakit.errors import InvalidInput

        raise InvalidInput(
            f"the lean Invoke path cannot serve this client: botocore's HTTP session has "
            f"no {exc.name or 'expected part'}"
        ) from None
    if proxy_url:
        return Urllib3Transport(pool, request_target, proxy_url)
    return SocketTransport(pool, url, request_target)


class Urllib3Transport:
    """POST with the urllib3 pool's own `urlopen`: the way through a proxy."""

    def __init__(self, pool: Any, request_target: str, proxy_url: str | None) -> None:
        self.pool = pool
        self.target = request_target
        self.proxy_url = proxy_url

    def send(self, headers: dict[str, str], body: bytes) -> Answer:
        """POST once; urllib3's error if it fails to send or read (BrokenBody for the body)."""
        from urllib3 import exceptions as url3

        # Content-Length last, where botocore's prepared request has it (http.client would
        # otherwise put it ahead of every header).
        headers = {**headers, "Content-Length": str(len(body))}
        response = self.pool.urlopen(
            "POST", self.target, body=body, headers=headers, retries=False,
            assert_same_host=False, preload_content=False, decode_content=False,
        )  # fmt: skip
        try:
            # Read here rather than preloaded, so that a body that breaks after its head is
            # BrokenBody (boto3's ResponseStreamingError), as on the socket path.
            data = response.read()
        except url3.ReadTimeoutError:
            response.close()
            raise
        except (url3.HTTPError, OSError) as exc:
            response.close()
            raise BrokenBody(exc) from exc
        finally:
            response.release_conn()
        pairs = tuple(response.headers.items())
        return Answer(response.status, pairs, _by_name(pairs), data)

    def close(self) -> None:
        """Nothing: the pool is the client's botocore session's, which may go on using it."""


class SocketTransport:
    """Keep-alive HTTP/1.1 to one endpoint over connections the urllib3 pool makes.

    `send(headers, body)` writes the request line, Host and Accept-Encoding as http.client
    does, then `headers` in their order and Content-Length, and returns the Answer. Idle
    connections wait in a list, at most the pool's size (the client's max_pool_connections)
    of them, the newest reused first, as urllib3 does.
    """

    proxy_url = None

    def __init__(self, pool: Any, url: str, request_target: str) -> None:
        from urllib.parse import urlsplit

        from urllib3.util.timeout import Timeout

        self.pool = pool
        self.url = url
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        default_port = 443 if parts.scheme == "https" else 80
        if parts.port and parts.port != default_port:
            host = f"{host}:{parts.port}"
        # What http.client's putrequest adds ahead of the caller's headers.
        self._start = (
            f"POST {request_target} HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: identity\r\n"
        )
        self.read_timeout = Timeout.resolve_default_timeout(pool.timeout.read_timeout)
        self.connect_timeout = Timeout.resolve_default_timeout(pool.timeout.connect_timeout)
        self._max_idle = max(1, pool.pool.maxsize)
        self._tls = parts.scheme == "https"
        self._idle: list[Any] = []  # list.pop/append are atomic: no lock needed

    def send(self, headers: dict[str, str], body: bytes) -> Answer:
        """POST once: the Answer, or urllib3's exception (BrokenBody once the head is read)."""
        from urllib3 import exceptions as url3

        lines = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
        if lines.count("\n") != len(headers):  # http.client's refusal, as its ValueError
            raise ValueError("a request header value holds a line break")
        head = f"{self._start}{lines}Content-Length: {len(body)}\r\n\r\n".encode("latin-1")
        conn = self._connection()
        sock = conn.sock
        try:
            try:
                if len(body) < _JOIN_BELOW:
                    # The socket's buffer takes a small request whole: no send waits long.
                    sock.sendall(head + body)
                else:
                    # A large body can wait on a peer that reads nothing; urllib3 bounds its
                    # send by the connect timeout, and so does this.
                    sock.settimeout(self.connect_timeout)
                    sock.sendall(head)
                    sock.sendall(body)
                    sock.settimeout(self.read_timeout)
            except (BrokenPipeError, ConnectionResetError):
                pass  # as urllib3: the server may have answered (413) before closing; read it
            except TimeoutError as exc:  # urllib3: an OSError of the send, "Connection aborted"
                conn.close()
                raise url3.ProtocolError("Connection aborted.", exc) from exc
            answer, keep = _read_reply(sock)
        except BrokenBody:
            conn.close()
            raise
        except TimeoutError:
            conn.close()
            raise url3.ReadTimeoutError(
                self.pool, self.url, f"Read timed out. (read timeout={self.read_timeout})"
            ) from None
        except ssl.SSLError as exc:
            conn.close()
            raise url3.SSLError(exc) from exc
        except (OSError, _Malformed) as exc:
            conn.close()
            raise url3.ProtocolError("Connection aborted.", exc) from exc
        if keep and len(self._idle) < self._max_idle:
            self._idle.append(conn)
        else:
            conn.close()
        return answer

    def _connection(self) -> Any:
        """An idle connection still open, or a new one, connected (urllib3's errors)."""
        from urllib3 import exceptions as url3
        from urllib3.util.wait import wait_for_read

        while self._idle:
            try:
                conn = self._idle.pop()
            except IndexError:  # another thread took the last one
                break
            # Readable while idle means the server closed it (or sent what nobody asked for):
            # urllib3's check before reuse, so that no request goes onto a dead connection.
            # Over TLS, decrypted bytes waiting in the SSL object (pending) count as readable.
            sock = conn.sock
            if (
                sock is not None
                and not (self._tls and sock.pending())
                and not wait_for_read(sock, timeout=0.0)
            ):
                return conn
            conn.close()
        conn = self.pool._new_conn()
        try:
            conn.connect()  # TLS and its verification, by the pool's settings
        except url3.HTTPError:
            raise
        except TimeoutError as exc:
            # A TLS handshake that stalls (a TCP connect that does is urllib3's own
            # ConnectTimeoutError, above): urllib3's _raise_timeout makes it a read timeout,
            # at the connect timeout it ran under.
            raise url3.ReadTimeoutError(
                self.pool, self.url, f"Read timed out. (read timeout={self.connect_timeout})"
            ) from exc
        except (ssl.SSLError, ssl.CertificateError) as exc:
            raise url3.SSLError(exc) from exc
        except OSError as exc:
            raise url3.ProtocolError("Connection aborted.", exc) from exc
        # One timeout for the connection's life, the client's read timeout: it bounds each
        # blocking send and receive, as http.client's does.
        conn.sock.settimeout(self.read_timeout)
        return conn

    def close(self) -> None:
        """Close the idle connections."""
        while self._idle:
            try:
                self._idle.pop().close()
            except IndexError:
                break


class _Malformed(Exception):
    """The server's bytes are not an HTTP/1.1 reply."""


def _read_reply(sock: Any) -> tuple[Answer, bool]:
    """Read one reply from `sock`: (the Answer, whether the connection may be reused)."""
    data = b""
    while True:
        end = data.find(_HEAD_END)
        if end < 0:
            if len(data) > _MAX_HEAD:
                raise _Malformed(f"a reply head over {_MAX_HEAD} bytes")
            chunk = sock.recv(_CHUNK)
            if not chunk:
                raise _Malformed(
                    "Remote end closed connection without response"
                    if not data
                    else "the connection closed inside the reply's headers"
                )
            data += chunk
            continue
        status, version, pairs = _parse_head(data[:end])
        data = data[end + 4 :]
        if 100 <= status < 200:  # an interim reply (100 Continue): the real one follows
            continue
        break
    headers = _by_name(pairs)
    connection = headers.get("connection", "").lower()
    keep = "close" not in connection and (version != "HTTP/1.0" or "keep-alive" in connection)
    try:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body, rest = _read_chunked(sock, data)
        elif "content-length" in headers:
            body, rest = _read_exactly(sock, data, int(headers["content-length"]))
        elif status in (204, 304):
            body, rest = b"", data
        else:  # no length given: the body runs to the connection's end
            body, rest, keep = _read_to_close(sock, data), b"", False
        if rest:
            # Bytes after the reply that nobody asked for: the connection is out of step
            # with its requests, and reused, the next request would read them as its reply.
            keep = False
    except BrokenBody:
        raise
    except ValueError as exc:
        raise BrokenBody(exc) from exc
    except TimeoutError:
        raise
    except OSError as exc:
        raise BrokenBody(exc) from exc
    return Answer(status, pairs, headers, body), keep


def _parse_head(head: bytes) -> tuple[int, str, tuple[tuple[str, str], ...]]:
    lines = head.decode("latin-1").split("\r\n")
    # As http.client's _read_status and begin(): fields split on any whitespace, the code an
    # int in 100-999 ("2000" or "20" is no 200), HTTP/0.9 read as 1.0, other than 1.x refused.
    words = lines[0].split(None, 2)
    version = words[0] if words else ""
    try:
        status = int(words[1]) if len(words) > 1 else 0
    except ValueError:
        status = 0
    if not 100 <= status <= 999 or not (version.startswith("HTTP/1.") or version == "HTTP/0.9"):
        raise _Malformed(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    if version == "HTTP/0.9":
        version = "HTTP/1.0"
    pairs: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and pairs:  # an obsolete folded line continues the last
            name, value = pairs.pop()
            pairs.append((name, f"{value} {line.strip()}"))
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise _Malformed(f"a header line without a colon: {line[:80]!r}")
        pairs.append((name.strip(), value.strip()))
    return status, version, tuple(pairs)


def _by_name(pairs: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """Values by lower-case name; repeats joined with ", " (as urllib3's HTTPHeaderDict)."""
    headers: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def _read_exactly(sock: Any, data: bytes, length: int) -> tuple[bytes, bytes]:
    """(`length` bytes: `data` and what follows it on `sock`, the bytes read beyond them)."""
    if length < 0:
        raise ValueError(f"a negative Content-Length: {length}")
    if len(data) >= length:
        return data[:length], data[length:]
    # Pieces as they come, never a buffer of the announced size: the length is the server's
    # word, and a wrong or hostile one must not allocate gigabytes up front. Never fewer
    # than _CHUNK bytes asked for: over TLS, asking for only the bytes still missing leaves
    # the rest of their record inside the SSL object, unseen by the idle check.
    parts, got = [data], len(data)
    while got < length:
        chunk = sock.recv(max(_CHUNK, min(length - got, _CHUNK * 16)))
        if not chunk:
            from urllib3.exceptions import IncompleteRead

            # urllib3's words for it, so that both paths' messages agree.
            short = IncompleteRead(got, length - got)
            raise BrokenBody(ValueError(f"Connection broken: {short!r}", short))
        parts.append(chunk)
        got += len(chunk)
    whole = b"".join(parts)
    return (whole, b"") if got == length else (whole[:length], whole[length:])


def _read_to_close(sock: Any, data: bytes) -> bytes:
    parts = [data]
    while chunk := sock.recv(_CHUNK):
        parts.append(chunk)
    return b"".join(parts)


def _read_chunked(sock: Any, data: bytes) -> tuple[bytes, bytes]:
    """(the body, the bytes read beyond its end)."""
    parts: list[bytes] = []

    def line() -> bytes:
        nonlocal data
        while (at := data.find(b"\r\n")) < 0:
            if len(data) > _MAX_HEAD:
                raise ValueError(f"a chunk-size line over {_MAX_HEAD} bytes")
            chunk = sock.recv(_CHUNK)
            if not chunk:
                raise ValueError("the connection closed inside a chunked body")
            data += chunk
        text, data = data[:at], data[at + 2 :]
        return text

    while True:
        size = int(line().split(b";", 1)[0].strip(), 16)  # ValueError if not hex
        if size == 0:
            while line():  # trailers, up to the empty line
                pass
            return b"".join(parts), data
        whole, rest = _read_exactly(sock, data, size + 2)
        parts.append(whole[:size])
        if whole[size:] != b"\r\n":
            raise ValueError("a chunk not followed by CRLF")
        data = rest
