"""A stub of Lambda's Invoke API for benchmarks: answers at once, so the client is what is timed.

    python benchmarks/stub_lambda.py [--port 0] [--delay-ms 0]   # prints "PORT <n>" once listening

Any GET (GetFunctionConfiguration, as run() resolves its function) is answered with the
configuration of a function of that name. Each `POST .../invocations` is answered 200 with
what Invoke sends (X-Amz-Executed-Version, x-amzn-RequestId, X-Amz-Log-Result with a REPORT
line) and one null output per item of a `{"Items": [...]}` body. HTTP/1.1 keep-alive over
asyncio, no framework: a few µs of the server's CPU per request, so that on a small machine
the client, not the server, is the limit. `--delay-ms` holds each Invoke reply that long
(AWS's network and service time, with no server CPU spent waiting).
`StubLambda` runs it in a subprocess (a context manager with `.endpoint_url`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import subprocess
import sys
from typing import Any

__all__ = ["StubLambda"]

_LOG = base64.b64encode(
    b"START RequestId: 0 Version: $LATEST\nEND RequestId: 0\nREPORT RequestId: 0\t"
    b"Duration: 0.10 ms\tBilled Duration: 1 ms\tMemory Size: 128 MB\tMax Memory Used: 30 MB\t\n"
)
_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Amz-Executed-Version: $LATEST\r\n"
    b"x-amzn-RequestId: 00000000-0000-4000-8000-000000000000\r\nX-Amz-Log-Result: " + _LOG + b"\r\n"
)


_CONFIG = (
    '{"FunctionName": "%s", "FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:%s", '
    '"Version": "$LATEST", "CodeSha256": "c3R1Yg==", "Timeout": 3, "MemorySize": 128, '
    '"Runtime": "python3.11", "Handler": "app.handler", "State": "Active", '
    '"LastModified": "2026-01-01T00:00:00.000+0000", "RevisionId": "1"}'
)


def _configuration(head: bytes) -> bytes:
    name = head.split(b" ", 2)[1].split(b"/")[3].split(b"?")[0].decode()
    body = (_CONFIG % (name, name)).encode()
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"x-amzn-RequestId: 00000000-0000-4000-8000-000000000001\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body
    )


class _Invoke(asyncio.Protocol):
    delay_s = 0.0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15 : head.find(b"\r\n", at) % (len(head) + 1)]) if at >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            if head.startswith(b"get "):
                self.transport.write(_configuration(head))
                continue
            # One output per item (batch_size=1 sends one): a per-record reply.
            items = body.count(b",") + 1 if body not in (b"", b'{"Items":[]}') else 0
            reply = b"[" + b",".join([b"null"] * items) + b"]"
            answer = _HEAD + b"Content-Length: %d\r\n\r\n" % len(reply) + reply
            if self.delay_s:
                # One request at a time per connection (no pipelining): replies stay in order.
                asyncio.get_running_loop().call_later(self.delay_s, self.transport.write, answer)
            else:
                self.transport.write(answer)


async def _serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Invoke, "127.0.0.1", port, backlog=1024)
    print("PORT", server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


class StubLambda:
    """The stub in a subprocess: `with StubLambda() as stub: stub.endpoint_url`."""

    def __init__(self, delay_ms: float = 0) -> None:
        self.delay_ms = delay_ms

    def __enter__(self) -> StubLambda:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--port", "0", "--delay-ms", str(self.delay_ms)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line.startswith("PORT "):
            self.process.kill()
            raise RuntimeError(f"the stub did not start: {line!r}")
        self.endpoint_url = f"http://127.0.0.1:{int(line.split()[1])}"
        return self

    def __exit__(self, *exc: Any) -> None:
        self.process.terminate()
        self.process.wait(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0)
    args = parser.parse_args()
    _Invoke.delay_s = args.delay_ms / 1000
    asyncio.run(_serve(args.port))
